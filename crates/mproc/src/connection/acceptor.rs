//! The background acceptor of a [`Listener`](super::Listener): one thread
//! that accepts peers and runs their handshakes concurrently, driven by
//! `poll`, so that a silent or slow peer holds up nobody else.
//!
//! - A handshake in progress costs a socket and a few hundred bytes, no
//!   thread. At most [`MAX_PENDING`] are in progress; a peer accepted
//!   beyond that evicts the oldest one (a flood of silent sockets cannot
//!   keep a new peer out: each new one is served first). Each is dropped
//!   at its own deadline (the listener's handshake timeout).
//! - Authenticated peers wait in a queue for `accept`; while
//!   [`MAX_READY`] wait there, new peers stay in the kernel's backlog.
//! - A failed handshake (wrong key, garbage) is queued as its error for
//!   `accept` to return, as CPython's `accept` raises it; a peer that
//!   times out or hangs up mid-handshake is just dropped.
//! - Out of descriptors (`EMFILE`), the oldest handshake in progress is
//!   dropped, or, with none, the listening socket rests for a moment.
//! - The thread stops when the listener is closed or dropped (a byte-less
//!   wake-up: the listener drops its end of a socket pair), and with it
//!   every socket it held.

use std::collections::VecDeque;
use std::io;
use std::net::TcpListener;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::auth::{FrameReader, Responder, Step};
use super::frame;
use super::stream::Stream;
use crate::error::{AuthError, Error, Result};
use crate::observe::{debug_event, warn_event};
use crate::sys::{fdpass, keep_above_stdio};

/// The most handshakes in progress at once.
pub(crate) const MAX_PENDING: usize = 128;
/// The most authenticated peers (or handshake errors) waiting for `accept`.
pub(crate) const MAX_READY: usize = 64;
/// How long the listening socket rests when no descriptor is left.
const REST: Duration = Duration::from_millis(50);
/// The most peers taken from the backlog in one round.
const ACCEPT_BATCH: usize = 32;

/// The listening socket.
#[derive(Debug)]
pub(crate) enum Sock {
    Unix(UnixListener),
    Tcp(TcpListener),
}

impl Sock {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Sock::Unix(l) => l.as_fd(),
            Sock::Tcp(l) => l.as_fd(),
        }
    }

    fn set_nonblocking(&self) -> io::Result<()> {
        match self {
            Sock::Unix(l) => l.set_nonblocking(true),
            Sock::Tcp(l) => l.set_nonblocking(true),
        }
    }

    fn accept(&self) -> io::Result<Stream> {
        match self {
            Sock::Unix(l) => l
                .accept()
                .and_then(|(s, _)| Ok(Stream::Unix(keep_above_stdio(s)?))),
            Sock::Tcp(l) => l.accept().and_then(|(s, _)| {
                s.set_nodelay(true)?;
                Ok(Stream::Tcp(keep_above_stdio(s)?))
            }),
        }
    }
}

/// What the acceptor checks.
pub(crate) struct Policy {
    /// The key peers must prove they hold (`None`: no handshake).
    pub(crate) authkey: Option<Arc<[u8]>>,
    /// How long a peer has to finish the handshake.
    pub(crate) timeout: Duration,
    /// Accept only peers of this process's user (or root), by their
    /// `SO_PEERCRED` (keyless abstract sockets).
    pub(crate) same_user_only: bool,
}

#[derive(Default)]
struct Ready {
    items: VecDeque<Result<Stream>>,
    /// The thread has ended (closed listener).
    stopped: bool,
}

struct Shared {
    ready: Mutex<Ready>,
    cond: Condvar,
}

/// The running acceptor; stops (and joins its thread) when dropped.
pub(crate) struct Acceptor {
    shared: Arc<Shared>,
    /// Dropped to wake the thread and stop it.
    wake: Option<UnixStream>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acceptor").finish_non_exhaustive()
    }
}

impl Acceptor {
    /// Starts the acceptor thread on `sock`.
    pub(crate) fn start(sock: Sock, policy: Policy) -> Result<Acceptor> {
        sock.set_nonblocking()
            .map_err(Error::io("cannot make a listener non-blocking"))?;
        let (wake, woken) = UnixStream::pair()
            .and_then(|(a, b)| Ok((keep_above_stdio(a)?, keep_above_stdio(b)?)))
            .map_err(Error::io("cannot make a listener's wake-up pair"))?;
        let shared = Arc::new(Shared {
            ready: Mutex::new(Ready::default()),
            cond: Condvar::new(),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("mproc-acceptor".into())
            .spawn(move || {
                // Set however `run` ends (a panic included): `accept`
                // then fails instead of waiting forever.
                let _stopped = Stopped(&s);
                run(&sock, &policy, &s, &woken);
            })
            .map_err(Error::io("cannot start a listener's acceptor thread"))?;
        Ok(Acceptor {
            shared,
            wake: Some(wake),
            thread: Some(thread),
        })
    }

    /// The next authenticated peer (or a failed handshake's error), waiting
    /// until `deadline`.
    pub(crate) fn next(&self, deadline: Option<Instant>) -> Result<Stream> {
        let mut ready = self.shared.ready.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(item) = ready.items.pop_front() {
                return item;
            }
            if ready.stopped {
                return Err(Error::InvalidState("listener is closed"));
            }
            ready = match deadline {
                None => self
                    .shared
                    .cond
                    .wait(ready)
                    .unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let left = d
                        .checked_duration_since(Instant::now())
                        .filter(|t| !t.is_zero())
                        .ok_or(Error::Timeout)?;
                    self.shared
                        .cond
                        .wait_timeout(ready, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
    }

    /// Stops the thread and closes every socket it held. Only the process
    /// that started the thread may call this (a forked copy has no thread,
    /// and shares the wake-up socket with its parent).
    pub(crate) fn stop(mut self) {
        drop(self.wake.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let mut ready = self.shared.ready.lock().unwrap_or_else(|p| p.into_inner());
        ready.items.clear();
    }

    /// Forgets the acceptor without signalling it (in a forked child: the
    /// thread belongs to the parent).
    pub(crate) fn forget(mut self) {
        drop(self.thread.take());
        // Closing this process's copy of the wake-up end does not wake the
        // parent's thread: the parent holds its own copy.
        drop(self.wake.take());
    }
}

/// Marks the acceptor stopped when dropped, and wakes `accept`.
struct Stopped<'a>(&'a Shared);

impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        let mut ready = self.0.ready.lock().unwrap_or_else(|p| p.into_inner());
        ready.stopped = true;
        ready.items.clear();
        self.0.cond.notify_all();
    }
}

/// A peer in the middle of its handshake.
struct Handshake {
    stream: Stream,
    responder: Responder,
    reader: FrameReader,
    deadline: Instant,
}

impl Handshake {
    /// Reads what the peer sent and answers it: `Some` once finished.
    fn advance(&mut self) -> Option<Result<()>> {
        loop {
            let msg = match self.reader.read_from(&self.stream) {
                Ok(Some(msg)) => msg,
                Ok(None) => return None,
                Err(e) => return Some(Err(e)),
            };
            let mut reply = None;
            let step = self.responder.on_message(&msg, &mut reply);
            if let Some(reply) = reply {
                // Small: it fits in an empty socket buffer; a peer that
                // lets it fill is dropped (`WouldBlock` is an error here).
                if let Err(e) = frame::send(&self.stream, &reply) {
                    return Some(step.and(Err(e)));
                }
            }
            match step {
                Ok(Step::More) => {}
                Ok(Step::Done) => return Some(Ok(())),
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

/// Whether a failed handshake's error is worth returning from `accept`
/// (the peer spoke, and spoke wrongly); the others are dropped quietly.
fn reported(e: &Error) -> bool {
    matches!(e, Error::Authentication(k) if *k != AuthError::HandshakeTimeout)
}

fn run(sock: &Sock, policy: &Policy, shared: &Shared, woken: &UnixStream) {
    let mut pending: VecDeque<Handshake> = VecDeque::new();
    let mut rest_until: Option<Instant> = None;
    loop {
        // Peers out of time are dropped (deadlines come in arrival order).
        let now = Instant::now();
        while pending.front().is_some_and(|h| h.deadline <= now) {
            let _late = pending.pop_front();
            warn_event!(
                peer = %_late.map(|h| h.stream.peer()).unwrap_or_default(),
                "connection dropped: its handshake did not finish in time"
            );
        }
        if rest_until.is_some_and(|t| t <= now) {
            rest_until = None;
        }
        let room = {
            let ready = shared.ready.lock().unwrap_or_else(|p| p.into_inner());
            ready.items.len() < MAX_READY
        };
        let listening = room && rest_until.is_none();
        let mut fds: Vec<BorrowedFd<'_>> = Vec::with_capacity(pending.len() + 2);
        fds.push(woken.as_fd());
        if listening {
            fds.push(sock.as_fd());
        }
        let first_peer = fds.len();
        fds.extend(pending.iter().map(|h| h.stream.as_fd()));
        // Wakes for the next deadline, a rest's end, or (when the ready
        // queue is full) now and then to see whether `accept` made room.
        let mut deadline = pending.front().map(|h| h.deadline);
        for t in [rest_until, (!room).then(|| now + REST)]
            .into_iter()
            .flatten()
        {
            deadline = Some(deadline.map_or(t, |d| d.min(t)));
        }
        let readable = match fdpass::wait_any(&fds, deadline) {
            Ok(r) => r,
            Err(_e) => {
                // ENOMEM and the like: try again a moment later.
                warn_event!(error = %_e, "listener cannot poll; resting");
                std::thread::sleep(REST);
                continue;
            }
        };
        drop(fds);
        if readable.first() == Some(&0) {
            return; // the listener is closing
        }
        let mut finished: Vec<(usize, Result<()>)> = Vec::new();
        for &i in &readable {
            if i >= first_peer {
                let k = i - first_peer;
                if let Some(done) = pending[k].advance() {
                    finished.push((k, done));
                }
            }
        }
        // Highest index first, so the others stay valid.
        for (k, done) in finished.into_iter().rev() {
            let h = pending.remove(k).expect("a pending handshake");
            match done {
                Ok(()) => {
                    debug_event!(peer = %h.stream.peer(), "connection authenticated");
                    deliver(shared, finish(h.stream));
                }
                Err(e) => {
                    warn_event!(
                        peer = %h.stream.peer(),
                        reason = %e,
                        "connection refused: authentication failed"
                    );
                    if reported(&e) {
                        deliver(shared, Err(e));
                    }
                }
            }
        }
        if listening && readable.contains(&1) {
            rest_until = accept_some(sock, policy, shared, &mut pending);
        }
    }
}

/// Takes peers from the backlog; returns when to listen again if out of
/// descriptors.
fn accept_some(
    sock: &Sock,
    policy: &Policy,
    shared: &Shared,
    pending: &mut VecDeque<Handshake>,
) -> Option<Instant> {
    for _ in 0..ACCEPT_BATCH {
        let stream = match sock.accept() {
            Ok(s) => s,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if fdpass::out_of_resources(&e) => {
                warn_event!(error = %e, "listener out of descriptors: dropping the oldest handshake or resting");
                if pending.pop_front().is_some() {
                    continue;
                }
                return Some(Instant::now() + REST);
            }
            // A peer that went away before it was taken, and the like.
            Err(_) => continue,
        };
        if policy.same_user_only && !fdpass::peer_is_same_user(stream.as_fd()).unwrap_or(false) {
            warn_event!(
                peer = %stream.peer(),
                "connection refused: another user on a keyless abstract socket"
            );
            continue; // dropped
        }
        let Some(key) = &policy.authkey else {
            debug_event!(peer = %stream.peer(), "connection accepted (no key)");
            deliver(shared, Ok(stream));
            continue;
        };
        debug_event!(peer = %stream.peer(), "connection accepted; handshake begins");
        if let Some(h) = begin(stream, key.clone(), policy.timeout) {
            if pending.len() >= MAX_PENDING {
                let _evicted = pending.pop_front();
                warn_event!(
                    peer = %_evicted.map(|h| h.stream.peer()).unwrap_or_default(),
                    max = MAX_PENDING,
                    "connection dropped: too many handshakes at once, the oldest goes"
                );
            }
            pending.push_back(h);
        }
    }
    None
}

/// Sends the challenge at once; `None` if the peer cannot take it.
fn begin(stream: Stream, key: Arc<[u8]>, timeout: Duration) -> Option<Handshake> {
    stream.set_nonblocking(true).ok()?;
    let (responder, first) = Responder::start(key).ok()?;
    frame::send(&stream, &first).ok()?;
    Some(Handshake {
        stream,
        responder,
        reader: FrameReader::default(),
        deadline: Instant::now() + timeout,
    })
}

/// An authenticated stream, back to blocking mode.
fn finish(stream: Stream) -> Result<Stream> {
    stream
        .set_nonblocking(false)
        .map_err(Error::io("cannot make a connection blocking"))?;
    Ok(stream)
}

fn deliver(shared: &Shared, item: Result<Stream>) {
    let mut ready = shared.ready.lock().unwrap_or_else(|p| p.into_inner());
    // Errors never crowd out peers: beyond the bound they are dropped.
    if item.is_err() && ready.items.len() >= MAX_READY {
        return;
    }
    ready.items.push_back(item);
    shared.cond.notify_one();
}
