//! Server objects that make callers wait: queues and semaphores.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::protocol::{BarrierOp, Bytes, Kind, Op, QueueOp, SemaphoreOp};
use super::served::{made, out, Built, Served};
use crate::error::RemoteError;

type Out = Result<Bytes, RemoteError>;

/// Waits on `cv` until `ready` holds or `micros` pass (`None`: forever);
/// returns the guard and whether `ready` holds.
fn wait_until<'a, T>(
    m: &'a Mutex<T>,
    cv: &Condvar,
    micros: Option<u64>,
    mut ready: impl FnMut(&T) -> bool,
) -> (MutexGuard<'a, T>, bool) {
    let until = micros.map(|us| Instant::now() + Duration::from_micros(us));
    let mut g = m.lock().unwrap_or_else(|p| p.into_inner());
    while !ready(&g) {
        g = match until {
            None => cv.wait(g).unwrap_or_else(|p| p.into_inner()),
            Some(until) => {
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return (g, false);
                }
                cv.wait_timeout(g, left)
                    .unwrap_or_else(|p| p.into_inner())
                    .0
            }
        };
    }
    (g, true)
}

#[derive(Default)]
struct QueueState {
    items: VecDeque<Bytes>,
    /// Items put and not yet marked done (`JoinableQueue`).
    unfinished: u64,
}

/// A FIFO queue, bounded by `maxsize` (0: unbounded), with
/// `JoinableQueue`'s task accounting.
pub(crate) struct Queue {
    state: Mutex<QueueState>,
    changed: Condvar,
    maxsize: usize,
}

impl Served for Queue {
    fn serve(&self, _conn: u64, op: Op) -> Option<Out> {
        let Op::Queue(op) = op else { return None };
        Some(self.op(op))
    }
}

impl Queue {
    pub(crate) fn build(kind: &Kind, _init: &[u8]) -> Option<Built> {
        let Kind::Queue(max) = kind else { return None };
        made(Queue::new(*max as usize))
    }

    fn new(maxsize: usize) -> Queue {
        Queue {
            state: Mutex::new(QueueState::default()),
            changed: Condvar::new(),
            maxsize,
        }
    }

    fn op(&self, op: QueueOp) -> Out {
        let (m, cv) = (&self.state, &self.changed);
        match op {
            QueueOp::Put(item, us) => {
                let max = self.maxsize;
                let (mut g, room) = wait_until(m, cv, us, |s| max == 0 || s.items.len() < max);
                if room {
                    g.items.push_back(item);
                    g.unfinished += 1;
                    cv.notify_all();
                }
                out(&room)
            }
            QueueOp::Get(us) => {
                let (mut g, any) = wait_until(m, cv, us, |s| !s.items.is_empty());
                let item = if any { g.items.pop_front() } else { None };
                if item.is_some() {
                    cv.notify_all();
                }
                out(&item)
            }
            QueueOp::Len => out(&(m.lock().unwrap_or_else(|p| p.into_inner()).items.len() as u64)),
            QueueOp::TaskDone => {
                let mut g = m.lock().unwrap_or_else(|p| p.into_inner());
                if g.unfinished == 0 {
                    return Err(RemoteError::Failed(
                        "task_done() called too many times".into(),
                    ));
                }
                g.unfinished -= 1;
                cv.notify_all();
                out(&())
            }
            QueueOp::Join(us) => out(&wait_until(m, cv, us, |s| s.unfinished == 0).1),
            QueueOp::Full => {
                let len = m.lock().unwrap_or_else(|p| p.into_inner()).items.len();
                out(&(self.maxsize > 0 && len >= self.maxsize))
            }
        }
    }
}

/// A counter: `acquire` waits for it to be positive and takes one.
pub(crate) struct Semaphore {
    count: Mutex<u64>,
    changed: Condvar,
    /// For a bounded semaphore, the most `release` may raise it to.
    bound: Option<u64>,
}

impl Served for Semaphore {
    fn serve(&self, _conn: u64, op: Op) -> Option<Out> {
        let Op::Semaphore(op) = op else { return None };
        Some(self.op(op))
    }
}

impl Semaphore {
    pub(crate) fn build(kind: &Kind, _init: &[u8]) -> Option<Built> {
        let Kind::Semaphore(value, bounded) = kind else {
            return None;
        };
        made(Semaphore::new(*value, *bounded))
    }

    fn new(value: u64, bounded: bool) -> Semaphore {
        Semaphore {
            count: Mutex::new(value),
            changed: Condvar::new(),
            bound: bounded.then_some(value),
        }
    }

    fn op(&self, op: SemaphoreOp) -> Out {
        match op {
            SemaphoreOp::Acquire(us) => {
                let (mut g, ok) = wait_until(&self.count, &self.changed, us, |n| *n > 0);
                if ok {
                    *g -= 1;
                }
                out(&ok)
            }
            SemaphoreOp::Release => {
                let mut g = self.count.lock().unwrap_or_else(|p| p.into_inner());
                if self.bound.is_some_and(|b| *g >= b) {
                    return Err(RemoteError::Failed(
                        "semaphore released too many times".into(),
                    ));
                }
                *g += 1;
                self.changed.notify_all();
                out(&())
            }
            SemaphoreOp::Value => out(&*self.count.lock().unwrap_or_else(|p| p.into_inner())),
        }
    }
}

#[derive(Default)]
struct BarrierState {
    /// Parties waiting in this generation.
    count: u64,
    generation: u64,
    broken: bool,
    /// The generation whose waiters `reset` turned away.
    reset: Option<u64>,
}

/// A barrier for `parties` callers, as `threading.Barrier`.
pub(crate) struct Barrier {
    state: Mutex<BarrierState>,
    changed: Condvar,
    parties: u64,
}

impl Served for Barrier {
    fn serve(&self, _conn: u64, op: Op) -> Option<Out> {
        let Op::Barrier(op) = op else { return None };
        Some(self.op(op))
    }
}

impl Barrier {
    pub(crate) fn build(kind: &Kind, _init: &[u8]) -> Option<Built> {
        let Kind::Barrier(parties) = kind else {
            return None;
        };
        made(Barrier::new(*parties))
    }

    fn new(parties: u64) -> Barrier {
        Barrier {
            state: Mutex::new(BarrierState::default()),
            changed: Condvar::new(),
            parties,
        }
    }

    fn op(&self, op: BarrierOp) -> Out {
        let lock = || self.state.lock().unwrap_or_else(|p| p.into_inner());
        match op {
            BarrierOp::Wait(us) => out(&self.wait(us)),
            BarrierOp::Abort => {
                lock().broken = true;
                self.changed.notify_all();
                out(&())
            }
            BarrierOp::Reset => {
                let mut g = lock();
                if g.count > 0 {
                    g.reset = Some(g.generation);
                    g.generation += 1;
                    g.count = 0;
                }
                g.broken = false;
                self.changed.notify_all();
                out(&())
            }
            BarrierOp::Waiting => out(&lock().count),
            BarrierOp::Broken => out(&lock().broken),
            BarrierOp::Parties => out(&self.parties),
        }
    }

    /// This caller's arrival index, or `None` if the barrier is or becomes
    /// broken (a timeout breaks it).
    fn wait(&self, us: Option<u64>) -> Option<u64> {
        let mut g = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if g.broken {
            return None;
        }
        let (index, mine) = (g.count, g.generation);
        g.count += 1;
        if g.count == self.parties {
            g.count = 0;
            g.generation += 1;
            self.changed.notify_all();
            return Some(index);
        }
        drop(g);
        let (mut g, done) = wait_until(&self.state, &self.changed, us, |s| {
            s.generation != mine || s.broken
        });
        if g.generation != mine {
            return (g.reset != Some(mine)).then_some(index);
        }
        if !done {
            g.broken = true;
            self.changed.notify_all();
        }
        None
    }
}
