//! The server's reentrant lock, which is also a condition variable
//! (`manager.RLock()`, `manager.Condition()`). Its owner is a connection:
//! one proxy handle, as a thread in CPython's server is one connection.

use std::collections::{HashSet, VecDeque};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::protocol::{Bytes, Kind, Op, ReentrantOp};
use super::served::{made, out, Built, Served};
use crate::error::RemoteError;

#[derive(Default)]
struct State {
    owner: Option<u64>,
    depth: u64,
    next_ticket: u64,
    /// Tickets of the callers in `wait`, oldest first.
    waiting: VecDeque<u64>,
    /// Tickets `notify` picked.
    notified: HashSet<u64>,
}

/// A reentrant lock with condition-variable waits.
#[derive(Default)]
pub(crate) struct Reentrant {
    state: Mutex<State>,
    changed: Condvar,
}

impl Served for Reentrant {
    fn serve(&self, conn: u64, op: Op) -> Option<Result<Bytes, RemoteError>> {
        let Op::Reentrant(op) = op else { return None };
        Some(self.op(conn, op))
    }
}

impl Reentrant {
    pub(crate) fn build(kind: &Kind, _init: &[u8]) -> Option<Built> {
        let Kind::Reentrant = kind else { return None };
        made(Reentrant::default())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits on the condvar until `ready` or the deadline; returns the
    /// guard and whether `ready` holds.
    fn wait_for<'a>(
        &'a self,
        mut g: MutexGuard<'a, State>,
        until: Option<Instant>,
        ready: impl Fn(&State) -> bool,
    ) -> (MutexGuard<'a, State>, bool) {
        while !ready(&g) {
            g = match until {
                None => self.changed.wait(g).unwrap_or_else(|p| p.into_inner()),
                Some(t) => {
                    let left = t.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return (g, false);
                    }
                    let r = self.changed.wait_timeout(g, left);
                    r.unwrap_or_else(|p| p.into_inner()).0
                }
            };
        }
        (g, true)
    }

    fn op(&self, me: u64, op: ReentrantOp) -> Result<Bytes, RemoteError> {
        let until = |us: Option<u64>| us.map(|us| Instant::now() + Duration::from_micros(us));
        match op {
            ReentrantOp::Acquire(us) => {
                let free = |s: &State| s.owner.is_none() || s.owner == Some(me);
                let (mut g, ok) = self.wait_for(self.lock(), until(us), free);
                if ok {
                    g.owner = Some(me);
                    g.depth += 1;
                }
                out(&ok)
            }
            ReentrantOp::Release => {
                let mut g = self.owned(me)?;
                g.depth -= 1;
                if g.depth == 0 {
                    g.owner = None;
                    self.changed.notify_all();
                }
                out(&())
            }
            ReentrantOp::Wait(us) => out(&self.wait(me, until(us))?),
            ReentrantOp::Notify(n) => {
                let mut g = self.owned(me)?;
                for _ in 0..n {
                    let Some(t) = g.waiting.pop_front() else {
                        break;
                    };
                    g.notified.insert(t);
                }
                self.changed.notify_all();
                out(&())
            }
        }
    }

    fn owned(&self, me: u64) -> Result<MutexGuard<'_, State>, RemoteError> {
        let g = self.lock();
        match g.owner == Some(me) {
            true => Ok(g),
            false => Err(RemoteError::NotOwner),
        }
    }

    /// Releases the lock entirely, waits for a notification (or the
    /// deadline), takes the lock back at its depth; returns whether it was
    /// notified.
    fn wait(&self, me: u64, until: Option<Instant>) -> Result<bool, RemoteError> {
        let mut g = self.owned(me)?;
        let depth = std::mem::take(&mut g.depth);
        g.owner = None;
        let ticket = g.next_ticket;
        g.next_ticket += 1;
        g.waiting.push_back(ticket);
        self.changed.notify_all();
        let (mut g, notified) = self.wait_for(g, until, |s| s.notified.contains(&ticket));
        g.notified.remove(&ticket);
        g.waiting.retain(|&t| t != ticket);
        let (mut g, _) = self.wait_for(g, None, |s| s.owner.is_none());
        g.owner = Some(me);
        g.depth = depth;
        Ok(notified)
    }
}
