//! A local worker process of a worker rank, as rank 0's supervisor sees
//! it: a [`WorkerLink`] whose messages go through the MPI thread.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::owner::{start_payload, Cmd, Event};
use super::wire::{self, DATA, KILL, START, STOP, TERM, UNKNOWN};
use super::Driver;
use crate::error::{Error, Result};
use crate::pool::backend::{Config, WorkerLink};
use crate::pool::{Place, WorkerHandle};

/// How long a worker rank may take to start a worker (a rank that is lost
/// ends the job anyway: this only guards against the unforeseen).
const START_PATIENCE: Duration = Duration::from_secs(120);

/// How long a stopped worker may take to be reported gone, beyond its
/// grace.
const STOP_PATIENCE: Duration = Duration::from_secs(30);

/// One worker process on a worker rank.
pub(crate) struct RankWorker {
    cmds: Sender<Cmd>,
    rank: usize,
    id: u64,
    pid: i32,
    place: Arc<Place>,
    events: Receiver<Event>,
    /// Replies received and not yet taken.
    inbox: RefCell<VecDeque<Vec<u8>>>,
    /// How it ended, once the rank said so.
    ended: Cell<Option<i32>>,
}

/// What `terminate` and a breaking pool hold of a [`RankWorker`].
struct RemoteHandle {
    cmds: Sender<Cmd>,
    rank: usize,
    id: u64,
    pid: i32,
}

impl WorkerHandle for RemoteHandle {
    fn pid(&self) -> i32 {
        self.pid
    }

    fn terminate(&self) {
        let _ = self
            .cmds
            .send(Cmd::Send(self.rank, wire::msg(TERM, self.id, &[])));
    }

    fn kill(&self) {
        let _ = self
            .cmds
            .send(Cmd::Send(self.rank, wire::msg(KILL, self.id, &[])));
    }
}

fn gone() -> Error {
    Error::Io {
        context: "the pool worker on an MPI rank is gone",
        source: io::ErrorKind::BrokenPipe.into(),
    }
}

fn hub_gone() -> Error {
    Error::Io {
        context: "the MPI job is ending",
        source: io::ErrorKind::BrokenPipe.into(),
    }
}

impl RankWorker {
    /// Files `e`; `false` if the hub is gone.
    fn take(&self, e: Event) {
        match e {
            Event::Data(m) => self.inbox.borrow_mut().push_back(m),
            Event::Ended(code) => self.ended.set(Some(code)),
            Event::Failed(..) => self.ended.set(Some(UNKNOWN)),
            Event::Started(_) => {}
        }
    }

    /// Takes what arrived, without waiting.
    fn drain(&self) {
        while let Ok(e) = self.events.try_recv() {
            self.take(e);
        }
    }

    fn end_code(code: i32) -> io::Result<i32> {
        if code == UNKNOWN {
            Err(io::Error::other(
                "how the worker on an MPI rank ended is not known",
            ))
        } else {
            Ok(code)
        }
    }
}

impl WorkerLink for RankWorker {
    fn start(cfg: &Config, slot: usize) -> Result<Self> {
        let driver = cfg
            .remote
            .as_ref()
            .and_then(|r| r.as_any().downcast_ref::<Driver>())
            .ok_or(Error::InvalidState("not an MPI pool"))?;
        let rank = driver.rank_of(slot);
        let id = driver.next_id();
        let place = Arc::new(Place {
            rank,
            host: driver.host(rank).to_string(),
        });
        let payload = start_payload(cfg)?;
        let (tx, events) = mpsc::channel();
        let cmds = driver.cmds.clone();
        cmds.send(Cmd::Register(id, tx)).map_err(|_| hub_gone())?;
        cmds.send(Cmd::Send(rank, wire::msg(START, id, &payload)))
            .map_err(|_| hub_gone())?;
        let pid = match events.recv_timeout(START_PATIENCE) {
            Ok(Event::Started(pid)) => pid,
            Ok(Event::Failed(errno, why)) => {
                let e = if errno != 0 {
                    Error::Io {
                        context: "cannot start a pool worker",
                        source: io::Error::from_raw_os_error(errno),
                    }
                } else {
                    Error::PoolBroken {
                        reason: format!("a worker could not start: {why}"),
                    }
                };
                return Err(place.wrap(e));
            }
            Ok(Event::Ended(code)) => {
                return Err(place.wrap(Error::PoolBroken {
                    reason: format!("a worker ended as it started ({code})"),
                }))
            }
            Ok(Event::Data(_)) | Err(RecvTimeoutError::Timeout) => {
                return Err(place.wrap(Error::PoolBroken {
                    reason: "a worker did not start".into(),
                }))
            }
            Err(RecvTimeoutError::Disconnected) => return Err(hub_gone()),
        };
        Ok(RankWorker {
            cmds,
            rank,
            id,
            pid,
            place,
            events,
            inbox: RefCell::new(VecDeque::new()),
            ended: Cell::new(None),
        })
    }

    #[inline]
    fn pid(&self) -> i32 {
        self.pid
    }

    fn place(&self) -> Option<Arc<Place>> {
        Some(self.place.clone())
    }

    fn handle(&self) -> Arc<dyn WorkerHandle> {
        Arc::new(RemoteHandle {
            cmds: self.cmds.clone(),
            rank: self.rank,
            id: self.id,
            pid: self.pid,
        })
    }

    fn send(&self, msg: &[u8]) -> Result<()> {
        if self.ended.get().is_some() {
            return Err(gone());
        }
        self.cmds
            .send(Cmd::Send(self.rank, wire::msg(DATA, self.id, msg)))
            .map_err(|_| hub_gone())
    }

    fn poll(&self, timeout: Duration) -> Result<bool> {
        let until = Instant::now() + timeout;
        loop {
            if !self.inbox.borrow().is_empty() {
                return Ok(true);
            }
            if self.ended.get().is_some() {
                return Err(gone());
            }
            let left = until.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(e) => self.take(e),
                Err(RecvTimeoutError::Timeout) => return Ok(false),
                Err(RecvTimeoutError::Disconnected) => return Err(hub_gone()),
            }
        }
    }

    fn recv(&self) -> Result<Vec<u8>> {
        loop {
            if let Some(m) = self.inbox.borrow_mut().pop_front() {
                return Ok(m);
            }
            if self.ended.get().is_some() {
                return Err(gone());
            }
            match self.events.recv() {
                Ok(e) => self.take(e),
                Err(_) => return Err(hub_gone()),
            }
        }
    }

    fn is_alive(&self) -> bool {
        self.drain();
        self.ended.get().is_none()
    }

    fn wait(&self, timeout: Duration) -> io::Result<Option<i32>> {
        let until = Instant::now() + timeout;
        loop {
            self.drain();
            if let Some(code) = self.ended.get() {
                return Self::end_code(code).map(Some);
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            match self.events.recv_timeout(left) {
                Ok(e) => self.take(e),
                Err(RecvTimeoutError::Timeout) => return Ok(None),
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(io::Error::other("the MPI job is ending"))
                }
            }
        }
    }

    fn stop(&mut self, grace: Duration) -> io::Result<i32> {
        self.drain();
        if let Some(code) = self.ended.get() {
            return Self::end_code(code);
        }
        let nanos = grace.as_nanos().min(u64::MAX as u128) as u64;
        let msg = wire::msg(STOP, self.id, &nanos.to_le_bytes());
        self.cmds
            .send(Cmd::Send(self.rank, msg))
            .map_err(|_| io::Error::other("the MPI job is ending"))?;
        match self.wait(grace + STOP_PATIENCE)? {
            Some(code) => Ok(code),
            None => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "a worker on an MPI rank was not seen ending",
            )),
        }
    }
}

impl Drop for RankWorker {
    fn drop(&mut self) {
        if self.is_alive() {
            let _ = self
                .cmds
                .send(Cmd::Send(self.rank, wire::msg(KILL, self.id, &[])));
            let _ = self.wait(STOP_PATIENCE);
        }
    }
}
