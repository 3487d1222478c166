//! Where finished chunks land: one inbox per call (`map`, an `imap`, an
//! `AsyncResult`), filled by the supervisor threads, emptied by the caller.
//!
//! A delivery wakes the caller only when it is what the caller waits for
//! (the last chunk of a `map`, the next chunk of an ordered `imap`): a
//! `Condvar` notification is a system call, too dear per chunk.

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use serde::de::DeserializeOwned;

use super::wire::Status;
use super::worker::ItemOut;
use crate::codec;
use crate::error::{CodecError, Error, Result};

/// Where a worker runs when it is not on this host's pool: an MPI rank
/// (its failures say so).
#[derive(Debug)]
pub(crate) struct Place {
    pub(crate) rank: usize,
    pub(crate) host: String,
}

impl Place {
    /// `error`, as it happened there.
    pub(crate) fn wrap(&self, error: Error) -> Error {
        Error::OnRank {
            rank: self.rank,
            host: self.host.clone(),
            error: Box::new(error),
        }
    }
}

/// A chunk that failed as a whole, every item with the same cause.
#[derive(Clone, Debug)]
pub(crate) enum Fail {
    /// The worker holding it died.
    Died { pid: i32, code: i32 },
    /// The worker holding it was ended by one of its limits.
    Limit {
        pid: i32,
        limit: crate::Limit,
        cap: u64,
        code: i32,
    },
    /// It ran past the task timeout; its worker was killed.
    Timeout {
        pid: i32,
        after: std::time::Duration,
    },
    /// The pool was terminated first.
    Terminated,
    /// The pool broke (policy, or a replacement worker could not start).
    Broken(String),
    /// The worker holding it is gone, but how it ended could not be
    /// learnt (an OS error, kept as its errno: `Fail` is cloned).
    Unknown { errno: i32 },
    /// One of the above, on a worker at this place.
    At(Arc<Place>, Box<Fail>),
}

impl Fail {
    /// The failure itself, wherever it happened.
    pub(crate) fn root(&self) -> &Fail {
        match self {
            Fail::At(_, f) => f.root(),
            f => f,
        }
    }

    pub(crate) fn to_error(&self) -> Error {
        match self {
            Fail::At(place, f) => place.wrap(f.to_error()),
            Fail::Died { pid, code } if *code < 0 => Error::Signaled {
                pid: *pid,
                signal: -code,
            },
            Fail::Died { pid, code } => Error::Exited {
                pid: *pid,
                code: *code,
            },
            Fail::Limit {
                pid,
                limit,
                cap,
                code,
            } => Error::LimitExceeded {
                pid: *pid,
                limit: *limit,
                cap: *cap,
                code: *code,
            },
            Fail::Timeout { pid, after } => Error::TaskTimeout {
                pid: *pid,
                after: *after,
            },
            Fail::Terminated => Error::PoolTerminated,
            Fail::Broken(reason) => Error::PoolBroken {
                reason: reason.clone(),
            },
            Fail::Unknown { errno } => Error::Io {
                context: "cannot learn how a pool worker ended",
                source: std::io::Error::from_raw_os_error(*errno),
            },
        }
    }
}

/// How a chunk ended.
pub(crate) enum Done {
    /// The worker replied.
    Reply {
        pid: i32,
        status: Status,
        body: Vec<u8>,
        /// Where the worker runs, if not on this host's pool.
        place: Option<Arc<Place>>,
    },
    /// It failed as a whole.
    Failed(Fail),
}

impl Done {
    /// Whether every item succeeded.
    pub(crate) fn all_ok(&self) -> bool {
        matches!(
            self,
            Done::Reply {
                status: Status::AllOk,
                ..
            }
        )
    }

    /// For a chunk whose every item returned: appends its `n` values to
    /// `out` (decoded in place, no vector of results in between) and
    /// returns `None`. Otherwise `out` is left as it was and the chunk's
    /// outcomes come item by item.
    pub(crate) fn values_into<R: DeserializeOwned>(
        self,
        n: usize,
        out: &mut Vec<R>,
    ) -> Option<Vec<Result<R>>> {
        if let Done::Reply {
            status: Status::AllOk,
            body,
            ..
        } = &self
        {
            let len = out.len();
            match codec::decode_extend(body, out) {
                Ok(()) if out.len() - len == n => return None,
                _ => out.truncate(len),
            }
        }
        let mut items = Vec::with_capacity(n);
        self.items(n, &mut items);
        Some(items)
    }

    /// The chunk's `n` items, each a value or why there is none.
    pub(crate) fn items<R: DeserializeOwned>(self, n: usize, out: &mut impl Extend<Result<R>>) {
        let (pid, body, place) = match self {
            Done::Failed(f) => return out.extend((0..n).map(|_| Err(f.to_error()))),
            Done::Reply {
                status: Status::BadArgs,
                body,
                ..
            } => {
                let why = String::from_utf8_lossy(&body).into_owned();
                return out
                    .extend((0..n).map(|_| Err(Error::Decode(CodecError(why.clone().into())))));
            }
            Done::Reply {
                status: Status::AllOk,
                body,
                ..
            } => {
                return match codec::decode::<Vec<R>>(&body, Vec::new()) {
                    Ok(values) => out.extend(values.into_iter().map(Ok)),
                    Err(e) => {
                        let why = e.to_string();
                        out.extend(
                            (0..n).map(|_| Err(Error::Decode(CodecError(why.clone().into())))),
                        )
                    }
                };
            }
            Done::Reply {
                pid, body, place, ..
            } => (pid, body, place),
        };
        let there = |e: Error| match &place {
            Some(p) => p.wrap(e),
            None => e,
        };
        match codec::decode::<Vec<ItemOut<R>>>(&body, Vec::new()) {
            Ok(items) => out.extend(items.into_iter().map(|item| match item {
                ItemOut::Ok(r) => Ok(r),
                ItemOut::Panicked { message, location } => Err(there(Error::Panicked {
                    pid,
                    message,
                    location,
                })),
                ItemOut::Encode(m) => Err(there(Error::Encode(CodecError(m.into())))),
            })),
            Err(e) => {
                let why = e.to_string();
                out.extend((0..n).map(|_| Err(Error::Decode(CodecError(why.clone().into())))))
            }
        }
    }
}

/// Finished chunks by tag.
pub(crate) struct Inbox {
    state: Mutex<State>,
    cv: Condvar,
}

pub(crate) struct State {
    pub(crate) arrived: BTreeMap<usize, Done>,
    /// Chunks delivered so far (taken or not).
    pub(crate) count: usize,
    /// Wake the caller when `count` reaches this...
    wake_at: usize,
    /// ...or when this tag arrives, or (`usize::MAX`) at any arrival.
    wake_tag: Option<usize>,
    /// Run (once) when `count` reaches the number given: a result's
    /// callbacks (it only hands them to the callback thread).
    hook: Option<(usize, Box<dyn FnOnce() + Send>)>,
    /// An awaiting caller's waker, woken where the condition variable is
    /// notified. One slot: an inbox has one consumer (its `AsyncResult`
    /// or `IMap`), as `wake_at` and `wake_tag` already assume.
    #[cfg(feature = "tokio")]
    waker: Option<std::task::Waker>,
}

impl State {
    fn holds(&self, want: Want) -> bool {
        match want {
            Want::Count(n) => self.count >= n,
            Want::Tag(t) => self.arrived.contains_key(&t),
            Want::Any => !self.arrived.is_empty(),
        }
    }

    /// Asks `deliver` to wake the caller when `want` may hold.
    fn announce(&mut self, want: Want) {
        match want {
            Want::Count(n) => self.wake_at = n,
            Want::Tag(t) => self.wake_tag = Some(t),
            Want::Any => self.wake_tag = Some(usize::MAX),
        }
    }
}

/// What a caller waits for.
#[derive(Clone, Copy)]
pub(crate) enum Want {
    /// `count` at least this.
    Count(usize),
    /// This tag arrived.
    Tag(usize),
    /// Any chunk arrived and is not taken.
    Any,
}

impl Inbox {
    pub(crate) fn new() -> Self {
        Inbox {
            state: Mutex::new(State {
                arrived: BTreeMap::new(),
                count: 0,
                wake_at: usize::MAX,
                wake_tag: None,
                hook: None,
                #[cfg(feature = "tokio")]
                waker: None,
            }),
            cv: Condvar::new(),
        }
    }

    pub(crate) fn deliver(&self, tag: usize, done: Done) {
        let mut s = self.lock();
        s.arrived.insert(tag, done);
        s.count += 1;
        let wake = s.count >= s.wake_at || s.wake_tag.is_some_and(|t| t == tag || t == usize::MAX);
        let hook = match &s.hook {
            Some((at, _)) if s.count >= *at => s.hook.take(),
            _ => None,
        };
        if wake {
            s.wake_at = usize::MAX;
            s.wake_tag = None;
        }
        // Only on a wake, under the lock already held: a caller that does
        // not await costs nothing here.
        #[cfg(feature = "tokio")]
        let waker = if wake { s.waker.take() } else { None };
        drop(s);
        if wake {
            self.cv.notify_all();
        }
        #[cfg(feature = "tokio")]
        if let Some(w) = waker {
            w.wake();
        }
        if let Some((_, run)) = hook {
            run();
        }
    }

    /// Runs `run` once `total` chunks arrived (now, if they have).
    pub(crate) fn on_complete(&self, total: usize, run: Box<dyn FnOnce() + Send>) {
        let mut s = self.lock();
        if s.count >= total {
            drop(s);
            return run();
        }
        s.hook = Some((total, run));
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until `want` holds or `deadline` passes; the state if it holds.
    pub(crate) fn wait(
        &self,
        want: Want,
        deadline: Option<Instant>,
    ) -> Option<MutexGuard<'_, State>> {
        let mut s = self.lock();
        loop {
            if s.holds(want) {
                return Some(s);
            }
            s.announce(want);
            s = match deadline {
                None => self.cv.wait(s).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let left = d.checked_duration_since(Instant::now())?;
                    if left.is_zero() {
                        return None;
                    }
                    self.cv
                        .wait_timeout(s, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
    }

    /// As [`wait`](Self::wait) without blocking: the state if `want`
    /// holds, else `waker` is kept to be woken when it may (replacing the
    /// one kept before) and `None`.
    #[cfg(feature = "tokio")]
    pub(crate) fn poll(
        &self,
        want: Want,
        waker: &std::task::Waker,
    ) -> Option<MutexGuard<'_, State>> {
        let mut s = self.lock();
        if s.holds(want) {
            return Some(s);
        }
        s.announce(want);
        match &mut s.waker {
            Some(w) if w.will_wake(waker) => {}
            slot => *slot = Some(waker.clone()),
        }
        None
    }

    /// Drops the kept waker (a future dropped before it completed).
    #[cfg(feature = "tokio")]
    pub(crate) fn forget_waker(&self) {
        let mut s = self.lock();
        let waker = s.waker.take();
        if waker.is_some() {
            // Nobody waits any more: no notification is due.
            s.wake_at = usize::MAX;
            s.wake_tag = None;
        }
        drop(s);
        drop(waker);
    }
}
