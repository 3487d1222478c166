//! One supervisor thread per worker, in the parent: it hands chunks from
//! the pool's queue to its worker in batches, delivers each reply, and
//! watches for the worker's death, its task's deadline and its retirement.
//!
//! Chunks are pipelined: a worker holds a few chunks beyond the one it
//! runs, so it never waits for the supervisor (a hand-off costs ~1 µs, a
//! trivial task far less). How many depends on the measured chunk time:
//! up to [`WINDOW`] for tiny chunks (then the supervisor naps between
//! bursts of replies instead of spinning on the worker's CPU), one for chunks of a millisecond or
//! more, so long tasks still spread evenly over the workers. The worker
//! runs its chunks in order and replies to each, so when it dies the first
//! unanswered chunk is the one it was running: that chunk fails, the
//! others go back to the front of the queue (they never started).
//!
//! A supervisor never waits in `send` while a reply may be coming: the
//! jobs it sent and whose replies have not come stay within what the link
//! takes unread ([`WorkerLink::room`]); a job larger than that goes alone,
//! when the worker holds nothing. Else, with messages larger than the
//! pipe's ring both ways, the supervisor would wait for the worker to read
//! its next jobs while the worker waits for it to read a reply.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::inbox::{Done, Fail, Inbox};
use super::link::{WorkerHandle, WorkerLink, PIPE_RECORD};
use super::timeline::{Recorder, TaskEvent};
use super::wire::{self, JobWire};
use crate::error::{Error, Result};
use crate::observe::{debug_event, info_event, warn_event, Status};
use crate::start::StartMethod;

/// The most chunks a worker holds: enough that a worker running tiny
/// tasks stays busy while its supervisor naps (see `wait_reply`).
pub(crate) const WINDOW: usize = 1024;

/// Jobs messages stop growing at this size (the pipe moves 64 KiB between
/// two publications).
const MESSAGE: usize = 64 << 10;

/// How long a supervisor naps while its worker runs many tiny chunks.
const NAP: Duration = Duration::from_micros(50);

/// How often a waiting supervisor looks at the pool's flags.
const CHECK: Duration = Duration::from_millis(50);

/// The first wait before another try to start a replacement worker that
/// could not start for want of resources; it doubles up to [`LAST_RETRY`].
const FIRST_RETRY: Duration = Duration::from_millis(10);

/// The longest wait between two tries to start a replacement worker.
const LAST_RETRY: Duration = Duration::from_secs(1);

/// How long work may wait with no worker at all, none able to start,
/// before the pool breaks.
const PATIENCE: Duration = Duration::from_secs(30);

/// What a supervisor whose replacement worker could not start does next.
enum Retry {
    /// Try to start it again.
    Again,
    /// The pool stopped: stop this slot, failing what it holds.
    Stop(Fail),
    /// The pool is closed and has nothing left to run: no worker needed.
    Done,
    /// Work has waited too long with no worker: break the pool.
    GiveUp,
}

/// True if `e` is a shortage that passes: no descriptor (`EMFILE`,
/// `ENFILE`), no process (`EAGAIN`), no memory (`ENOMEM`), wherever in its
/// chain of causes the OS error is.
fn short_of_resources(e: &Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<io::Error>() {
            if matches!(
                io.raw_os_error(),
                Some(libc::EMFILE | libc::ENFILE | libc::EAGAIN | libc::ENOMEM)
            ) {
                return true;
            }
        }
        cause = c.source();
    }
    false
}

/// A chunk waiting for, or held by, a worker.
pub(crate) struct Chunk {
    pub(crate) id: u64,
    /// The function's offset (a `fn(A) -> R`, or a starmap's `T::Fn`).
    pub(crate) func: i64,
    /// The chunk runner's offset (a `ChunkFn`).
    pub(crate) chunk_fn: i64,
    pub(crate) args: Vec<u8>,
    pub(crate) inbox: Arc<Inbox>,
    pub(crate) tag: usize,
}

impl Chunk {
    fn fail(self, why: &Fail) {
        self.inbox.deliver(self.tag, Done::Failed(why.clone()));
    }

    /// The bytes it takes in the link until its worker reads it, at most:
    /// as if it went in a jobs message of its own.
    fn wire_len(&self) -> usize {
        PIPE_RECORD + 1 + wire::JOB_HEAD + self.args.len()
    }
}

/// The chunks a worker holds (sent, not answered yet), oldest first, and
/// their bytes on the wire ([`Chunk::wire_len`]).
#[derive(Default)]
struct Held {
    chunks: VecDeque<Chunk>,
    bytes: usize,
}

impl Held {
    fn len(&self) -> usize {
        self.chunks.len()
    }

    fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    fn extend(&mut self, jobs: Vec<Chunk>) {
        self.bytes += jobs.iter().map(Chunk::wire_len).sum::<usize>();
        self.chunks.extend(jobs);
    }

    fn push_front(&mut self, job: Chunk) {
        self.bytes += job.wire_len();
        self.chunks.push_front(job);
    }

    fn pop_front(&mut self) -> Option<Chunk> {
        let job = self.chunks.pop_front()?;
        self.bytes -= job.wire_len();
        Some(job)
    }

    /// Takes them all, oldest first.
    fn drain(&mut self) -> std::collections::vec_deque::Drain<'_, Chunk> {
        self.bytes = 0;
        self.chunks.drain(..)
    }
}

/// The pool's fixed settings.
pub(crate) struct Config {
    pub(crate) processes: usize,
    pub(crate) method: StartMethod,
    pub(crate) init: Option<super::worker::Init>,
    pub(crate) max_tasks: Option<usize>,
    /// Resident bytes past which a worker retires after its chunk.
    pub(crate) max_memory: Option<u64>,
    pub(crate) task_timeout: Option<Duration>,
    pub(crate) grace: Duration,
    pub(crate) break_on_death: bool,
    pub(crate) record_timeline: bool,
    pub(crate) retries: usize,
    /// Every worker's limits.
    pub(crate) limits: crate::Limits,
    /// Whether `retries` also re-runs chunks whose worker a limit ended.
    pub(crate) retry_limits: bool,
    /// Where the workers run when not here (a backend's), if anywhere.
    pub(crate) remote: Option<Arc<dyn super::remote::Remote>>,
}

/// What the pool and its supervisors share.
pub(crate) struct Shared {
    pub(crate) cfg: Config,
    state: Mutex<State>,
    work: Condvar,
    next_id: AtomicU64,
    /// When the pool started: the timeline's zero.
    pub(crate) epoch: Instant,
    /// Where chunk runs are recorded, if asked.
    pub(crate) timeline: Option<Recorder>,
    /// The callback thread, once a result with callbacks asked for it.
    pub(crate) callbacks: Mutex<Option<super::callback::Runner>>,
}

pub(crate) struct State {
    pub(crate) queue: VecDeque<Chunk>,
    pub(crate) closed: bool,
    pub(crate) terminated: bool,
    pub(crate) broken: Option<String>,
    /// Each slot's current worker, for `terminate` and breaking.
    pub(crate) workers: Vec<Option<Arc<dyn WorkerHandle>>>,
    /// Supervisors waiting for work.
    idle: usize,
    /// How many times each chunk was re-run after its worker died (only
    /// chunks that were; see `retry_on_worker_death`).
    retried: HashMap<u64, usize>,
}

impl Shared {
    pub(crate) fn new(cfg: Config) -> Self {
        let n = cfg.processes;
        let timeline = cfg.record_timeline.then(Recorder::new);
        Shared {
            epoch: Instant::now(),
            timeline,
            callbacks: Mutex::new(None),
            cfg,
            state: Mutex::new(State {
                queue: VecDeque::new(),
                closed: false,
                terminated: false,
                broken: None,
                workers: vec![None; n],
                idle: 0,
                retried: HashMap::new(),
            }),
            work: Condvar::new(),
            next_id: AtomicU64::new(0),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Queues jobs; an error if the pool takes no more.
    pub(crate) fn submit(&self, jobs: impl IntoIterator<Item = Chunk>) -> Result<()> {
        let mut st = self.lock();
        st.accepting()?;
        st.queue.extend(jobs);
        let wake = st.idle > 0;
        drop(st);
        if wake {
            self.work.notify_all();
        }
        Ok(())
    }

    /// Wakes every supervisor (close, terminate, break).
    pub(crate) fn wake_all(&self) {
        self.work.notify_all();
    }

    /// Marks the pool broken: fails what is queued, kills every worker (its
    /// supervisor fails what it held).
    fn break_pool(&self, reason: String) {
        let mut st = self.lock();
        if st.broken.is_none() {
            warn_event!(reason = %reason, pending = st.queue.len(), "pool broken");
            st.broken = Some(reason.clone());
        }
        let why = Fail::Broken(reason);
        for job in st.queue.drain(..) {
            job.fail(&why);
        }
        for w in st.workers.iter().flatten() {
            w.kill();
        }
        drop(st);
        self.wake_all();
    }
}

impl State {
    pub(crate) fn accepting(&self) -> Result<()> {
        if self.terminated {
            return Err(Error::PoolTerminated);
        }
        if let Some(reason) = &self.broken {
            return Err(Error::PoolBroken {
                reason: reason.clone(),
            });
        }
        if self.closed {
            return Err(Error::InvalidState("the pool is closed"));
        }
        Ok(())
    }
}

/// Asks the worker to leave (it has nothing left to run) and reaps it.
fn quit<W: WorkerLink>(w: &mut W) {
    let _ = w.send(&[wire::QUIT]);
    if !matches!(w.wait(CHECK * 20), Ok(Some(_))) {
        let _ = w.stop(Duration::ZERO);
    }
}

/// Reaps a worker whose link broke (it is ending on its own: give it
/// time, so that its status is its own, not our SIGTERM); its exit code.
pub(crate) fn reap<W: WorkerLink>(w: &mut W) -> io::Result<i32> {
    match w.wait(Duration::from_secs(2))? {
        Some(code) => Ok(code),
        None => w.stop(Duration::ZERO),
    }
}

/// How a reaped worker ended, for an event.
#[cfg_attr(not(feature = "tracing"), allow(dead_code))]
fn ended_text(ended: &io::Result<i32>) -> String {
    match ended {
        Ok(code) => Status(*code).to_string(),
        Err(e) => format!("unknown ({e})"),
    }
}

/// Why a worker (`pid`) that is gone failed its chunk: how it ended, as
/// [`reap`] learnt it.
pub(crate) fn fail_of(pid: i32, ended: io::Result<i32>) -> Fail {
    match ended {
        Ok(code) => Fail::Died { pid, code },
        Err(e) => Fail::Unknown {
            errno: e.raw_os_error().unwrap_or(libc::EIO),
        },
    }
}

/// Sends `jobs`, several to a message up to [`MESSAGE`] bytes: the worker
/// starts on the first chunk while the next are copied.
fn send_chunks<W: WorkerLink>(w: &W, jobs: &[Chunk], buf: &mut Vec<u8>) -> Result<()> {
    buf.clear();
    for j in jobs {
        if buf.is_empty() {
            buf.push(wire::JOBS);
        }
        let wire = JobWire {
            id: j.id,
            func: j.func,
            chunk_fn: j.chunk_fn,
            args: &j.args,
        };
        wire::put_job(buf, &wire);
        if buf.len() >= MESSAGE {
            w.send(buf)?;
            buf.clear();
        }
    }
    if buf.is_empty() {
        return Ok(());
    }
    w.send(buf)
}

/// What a supervisor does next, decided under the pool's lock.
enum Next {
    /// Send these (maybe none: just wait for a reply).
    Send(Vec<Chunk>),
    /// The pool is closed and drained: let the worker go.
    Quit,
    /// The worker did its `max_tasks`: replace it.
    Retire,
    /// Terminated or broken: kill the worker, fail what it holds.
    Stop(Fail),
}

/// A supervisor: owns one worker slot until the pool ends.
pub(crate) struct Supervisor<W: WorkerLink> {
    shared: Arc<Shared>,
    slot: usize,
    worker: W,
    held: Held,
    /// When the first held chunk started (about).
    head_since: Instant,
    /// Chunks this worker finished.
    done: usize,
    /// Mean chunk time, smoothed.
    mean: Duration,
    /// The worker passed its memory threshold: it runs nothing more.
    retiring: bool,
    buf: Vec<u8>,
}

impl<W: WorkerLink> Supervisor<W> {
    pub(crate) fn new(shared: Arc<Shared>, slot: usize, worker: W) -> Self {
        Supervisor {
            shared,
            slot,
            worker,
            held: Held::default(),
            head_since: Instant::now(),
            done: 0,
            mean: Duration::from_millis(1),
            retiring: false,
            buf: Vec::new(),
        }
    }

    pub(crate) fn run(mut self) {
        loop {
            if std::mem::take(&mut self.retiring) {
                // What it holds never started: to the queue, in order.
                self.requeue();
                info_event!(
                    pid = self.worker.pid(),
                    slot = self.slot,
                    "pool worker retired: max_memory_per_child passed"
                );
                if !self.retire() {
                    return;
                }
            }
            if self.held.len() <= self.window() / 2 {
                match self.next() {
                    Next::Send(jobs) => {
                        if !jobs.is_empty() && !self.send(jobs) {
                            if self.died() {
                                return;
                            }
                            continue;
                        }
                    }
                    Next::Quit => {
                        quit(&mut self.worker);
                        self.shared.lock().workers[self.slot] = None;
                        return;
                    }
                    Next::Retire => {
                        info_event!(
                            pid = self.worker.pid(),
                            slot = self.slot,
                            tasks = self.done,
                            "pool worker retired: max_tasks_per_child reached"
                        );
                        if !self.retire() {
                            return;
                        }
                        continue;
                    }
                    Next::Stop(why) => return self.stop(why),
                }
            }
            if !self.wait_reply() {
                return;
            }
        }
    }

    /// Replaces the worker, which leaves when told; `false` when this
    /// supervisor is done.
    fn retire(&mut self) -> bool {
        match self.replace_worker("retired") {
            Some(mut old) => {
                quit(&mut old);
                true
            }
            None => false,
        }
    }

    /// How many chunks this worker may hold, from the chunk time.
    fn window(&self) -> usize {
        if self.mean < Duration::from_micros(20) {
            WINDOW
        } else if self.mean < Duration::from_millis(1) {
            8
        } else {
            1
        }
    }

    /// Chunks this worker may still take before it retires.
    fn budget(&self) -> usize {
        match self.shared.cfg.max_tasks {
            Some(max) => max.saturating_sub(self.done + self.held.len()),
            None => usize::MAX,
        }
    }

    fn next(&mut self) -> Next {
        let shared = self.shared.clone();
        let mut st = shared.lock();
        loop {
            if st.terminated {
                return Next::Stop(Fail::Terminated);
            }
            if let Some(reason) = &st.broken {
                return Next::Stop(Fail::Broken(reason.clone()));
            }
            let budget = self.budget();
            if !st.queue.is_empty() && budget > 0 {
                let fair = st.queue.len().div_ceil(shared.cfg.processes);
                let room = self.window() - self.held.len();
                // None when none fits beside the chunks held: wait for
                // their replies.
                let n = self.fits(&st.queue, room.min(fair).min(budget).max(1));
                return Next::Send(st.queue.drain(..n).collect());
            }
            if !self.held.is_empty() {
                return Next::Send(Vec::new());
            }
            if budget == 0 {
                return Next::Retire;
            }
            if st.closed {
                return Next::Quit;
            }
            st.idle += 1;
            st = shared.work.wait(st).unwrap_or_else(|e| e.into_inner());
            st.idle -= 1;
        }
    }

    /// How many of the first `n` chunks of `queue` to send now, so that
    /// `send` does not wait: those whose bytes, with those of the chunks
    /// held, fit in the link's room; if none is held, at least one (the
    /// worker, holding nothing, reads it whole before it replies).
    fn fits(&self, queue: &VecDeque<Chunk>, n: usize) -> usize {
        let Some(room) = self.worker.room() else {
            return n;
        };
        let mut used = self.held.bytes;
        let mut k = 0;
        for job in queue.iter().take(n) {
            used = used.saturating_add(job.wire_len());
            if used > room && (k > 0 || !self.held.is_empty()) {
                break;
            }
            k += 1;
        }
        k
    }

    /// Sends `jobs` and holds them; `false` if the worker is gone.
    fn send(&mut self, jobs: Vec<Chunk>) -> bool {
        if self.held.is_empty() {
            if !self.worker.is_alive() {
                // It died idle (killed from outside): nothing of its own
                // fails; these chunks go to its replacement.
                self.held.extend(jobs);
                self.requeue();
                let _ended = reap(&mut self.worker);
                warn_event!(
                    pid = self.worker.pid(),
                    slot = self.slot,
                    status = %ended_text(&_ended),
                    "pool worker died while idle"
                );
                return self.replace_worker("died").is_some() || !self.held.is_empty();
            }
            self.head_since = Instant::now();
        }
        let ok = send_chunks(&self.worker, &jobs, &mut self.buf).is_ok();
        self.held.extend(jobs);
        ok
    }

    /// Waits for one reply (or death, or the deadline); `false` when this
    /// supervisor is done.
    fn wait_reply(&mut self) -> bool {
        if self.window() == WINDOW && self.held.len() > WINDOW / 4 {
            // Tiny chunks and plenty held: rather than spin beside the
            // worker (on a machine with as many CPUs as workers, a
            // spinning supervisor takes a worker's CPU), let it run and
            // take its replies in a burst.
            std::thread::sleep(NAP);
            let before = self.held.len();
            if !self.drain() {
                return false;
            }
            if self.held.len() < before {
                return true;
            }
            // Nothing came: wait as usual (deadlines, flags, death).
        }
        let now = Instant::now();
        let mut until = now + CHECK;
        if let Some(t) = self.shared.cfg.task_timeout {
            until = until.min(self.head_since + t);
        }
        match self.worker.poll(until.saturating_duration_since(now)) {
            Ok(true) => match self.worker.recv() {
                Ok(msg) => self.on_reply(msg),
                Err(_) => !self.died(),
            },
            Ok(false) => self.on_quiet(),
            Err(_) => !self.died(),
        }
    }

    /// Takes the replies there are; `false` when this supervisor is done.
    fn drain(&mut self) -> bool {
        while !self.held.is_empty() {
            match self.worker.poll(Duration::ZERO) {
                Ok(true) => match self.worker.recv() {
                    Ok(msg) => {
                        if !self.on_reply(msg) {
                            return false;
                        }
                    }
                    Err(_) => return !self.died(),
                },
                Ok(false) => return true,
                Err(_) => return !self.died(),
            }
        }
        true
    }

    fn on_reply(&mut self, msg: Vec<u8>) -> bool {
        let Some((id, status, tail, body)) = wire::parse_reply(msg) else {
            return !self.died();
        };
        let Some(job) = self.held.pop_front() else {
            return !self.died();
        };
        debug_assert_eq!(job.id, id);
        let now = Instant::now();
        self.record(&job, now, true, tail.rss);
        self.retiring |= tail.retiring;
        let took = now - self.head_since;
        self.mean = (self.mean * 3 + took) / 4;
        self.head_since = now;
        self.done += 1;
        let pid = self.worker.pid();
        let place = self.worker.place();
        job.inbox.deliver(
            job.tag,
            Done::Reply {
                pid,
                status,
                body,
                place,
            },
        );
        true
    }

    /// Why the whole pool stops, if it does: terminated, or broken.
    fn stop_reason(&self) -> Option<Fail> {
        let st = self.shared.lock();
        if st.terminated {
            Some(Fail::Terminated)
        } else {
            st.broken.clone().map(Fail::Broken)
        }
    }

    /// Nothing arrived in time: a deadline, a flag, or a silent death.
    fn on_quiet(&mut self) -> bool {
        if let Some(why) = self.stop_reason() {
            self.stop(why);
            return false;
        }
        if let (Some(t), false) = (self.shared.cfg.task_timeout, self.held.is_empty()) {
            if self.head_since.elapsed() >= t {
                return self.timed_out(t);
            }
        }
        if !self.worker.is_alive() {
            return !self.died();
        }
        true
    }

    fn timed_out(&mut self, after: Duration) -> bool {
        let pid = self.worker.pid();
        let at = Instant::now();
        // Told now, not after the grace period.
        self.tell_lost(&Fail::Timeout { pid, after }, self.held.chunks.front());
        let _ = self.worker.stop(self.shared.cfg.grace);
        let why = self.placed(Fail::Timeout { pid, after });
        self.lost(why, at)
    }

    /// The worker died: its running chunk fails. `true` if this supervisor
    /// is done.
    fn died(&mut self) -> bool {
        let pid = self.worker.pid();
        let at = Instant::now();
        let ended = reap(&mut self.worker);
        let why = match (&ended, self.worker.limit_exceeded()) {
            (&Ok(code), Some((limit, cap))) => Fail::Limit {
                pid,
                limit,
                cap,
                code,
            },
            _ => fail_of(pid, ended),
        };
        let why = self.placed(why);
        !self.lost(why, at)
    }

    /// `why`, with where the worker runs if it is not local.
    fn placed(&self, why: Fail) -> Fail {
        match self.worker.place() {
            Some(place) => Fail::At(place, Box::new(why)),
            None => why,
        }
    }

    /// The worker is gone: fail the chunk it ran with `why`, requeue the
    /// rest, replace it. `false` when this supervisor is done. `at`: when
    /// it was seen gone or given up on (the timeline's end of that chunk).
    fn lost(&mut self, why: Fail, at: Instant) -> bool {
        if let Some(stop) = self.stop_reason() {
            self.stop(stop);
            return false;
        }
        let mut had_task = false;
        let head = self.held.pop_front();
        if !matches!(why.root(), Fail::Timeout { .. }) {
            self.tell_lost(&why, head.as_ref()); // a timeout was told already
        }
        if let Some(job) = head {
            self.record(&job, at, false, None);
            match self.retry(job, &why) {
                None => {}
                Some(job) => {
                    had_task = true;
                    job.fail(&why);
                }
            }
        }
        self.requeue();
        if had_task && self.shared.cfg.break_on_death {
            let reason = why.to_error().to_string();
            self.shared.break_pool(format!("a worker failed: {reason}"));
            self.stop(Fail::Broken(reason));
            return false;
        }
        let cause = match why.root() {
            Fail::Timeout { .. } => "timed out",
            _ => "died",
        };
        match self.replace_worker(cause) {
            Some(_dead) => true,
            None => false,
        }
    }

    /// Tells the operator that the worker is gone, and why: `head` is the
    /// chunk it was running, if any.
    #[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
    fn tell_lost(&self, why: &Fail, head: Option<&Chunk>) {
        let pid = self.worker.pid();
        let slot = self.slot;
        let _place = self
            .worker
            .place()
            .map(|p| format!("rank {} on {}", p.rank, p.host));
        let _place = _place.as_deref().unwrap_or("local");
        match (why.root(), head) {
            (Fail::Timeout { after, .. }, Some(job)) => warn_event!(
                pid,
                slot,
                place = _place,
                chunk = job.id,
                timeout_ms = after.as_millis() as u64,
                "pool task timed out: its worker is stopped"
            ),
            (Fail::Died { code, .. }, Some(job)) => warn_event!(
                pid,
                slot,
                place = _place,
                status = %Status(*code),
                code,
                chunk = job.id,
                "pool worker died running a task"
            ),
            (Fail::Died { code, .. }, None) => warn_event!(
                pid,
                slot,
                place = _place,
                status = %Status(*code),
                code,
                "pool worker died while idle"
            ),
            (Fail::Unknown { errno }, _) => warn_event!(
                pid,
                slot,
                place = _place,
                chunk = ?head.map(|j| j.id),
                error = %io::Error::from_raw_os_error(*errno),
                "pool worker gone; how it ended cannot be learnt"
            ),
            _ => {}
        }
    }

    /// Holds `job` again, first, to be requeued, if its worker died and
    /// the retry policy allows another run; else gives it back to fail.
    fn retry(&mut self, job: Chunk, why: &Fail) -> Option<Chunk> {
        let max = self.shared.cfg.retries;
        let retried = match why.root() {
            Fail::Died { .. } | Fail::Unknown { .. } => true,
            Fail::Limit { .. } => self.shared.cfg.retry_limits,
            _ => false,
        };
        if max == 0 || !retried {
            return Some(job);
        }
        let mut st = self.shared.lock();
        let runs = st.retried.entry(job.id).or_insert(0);
        if *runs >= max {
            st.retried.remove(&job.id);
            return Some(job);
        }
        *runs += 1;
        let _attempt = *runs;
        drop(st);
        warn_event!(
            chunk = job.id,
            attempt = _attempt,
            max,
            "pool task retried: its worker died"
        );
        self.held.push_front(job);
        None
    }

    /// Records the head chunk's run, ending `now`, if the pool records.
    fn record(&self, job: &Chunk, now: Instant, replied: bool, memory: Option<u64>) {
        if let Some(rec) = &self.shared.timeline {
            let epoch = self.shared.epoch;
            let start = self.head_since.max(epoch) - epoch;
            rec.push(TaskEvent {
                task: job.id,
                chunk: job.tag,
                worker: self.slot,
                pid: self.worker.pid(),
                start,
                end: (now - epoch).max(start),
                replied,
                memory,
            });
        }
    }

    /// Puts held chunks back at the front of the queue, in order.
    fn requeue(&mut self) {
        if self.held.is_empty() {
            return;
        }
        let mut st = self.shared.lock();
        for job in self.held.drain().rev() {
            st.queue.push_front(job);
        }
        drop(st);
        self.shared.wake_all();
    }

    /// Starts a new worker in this slot; the old one, or `None` when this
    /// supervisor is done: the pool stopped or broke, or it was closed and
    /// has nothing left to run while no worker could start.
    ///
    /// A start that fails for want of descriptors, processes or memory is
    /// tried again, less and less often, while the pool waits: such
    /// shortages pass, and the pool must work again when they do. Only if
    /// work waits, no other worker is there to run it and none could start
    /// for [`PATIENCE`] does the pool break, saying why.
    ///
    /// `_cause`: why the old one goes (`died`, `timed out`, `retired`).
    fn replace_worker(&mut self, _cause: &'static str) -> Option<W> {
        let mut delay = FIRST_RETRY;
        let mut stalled = None;
        loop {
            let e = match W::start(&self.shared.cfg, self.slot) {
                Ok(w) => {
                    debug_event!(pid = w.pid(), slot = self.slot, "pool worker started");
                    info_event!(
                        old_pid = self.worker.pid(),
                        new_pid = w.pid(),
                        slot = self.slot,
                        cause = _cause,
                        "pool worker replaced"
                    );
                    self.shared.lock().workers[self.slot] = Some(w.handle());
                    self.done = 0;
                    return Some(std::mem::replace(&mut self.worker, w));
                }
                Err(e) => e,
            };
            let reason = format!("cannot start a replacement worker: {e}");
            warn_event!(
                slot = self.slot,
                error = %e,
                will_retry = short_of_resources(&e),
                "pool worker could not start"
            );
            if short_of_resources(&e) {
                if !self.worker.is_alive() {
                    // Not a worker others can count on meanwhile.
                    self.shared.lock().workers[self.slot] = None;
                }
                match self.wait_to_retry(delay, &mut stalled) {
                    Retry::Again => {
                        delay = (delay * 2).min(LAST_RETRY);
                        continue;
                    }
                    Retry::Stop(why) => {
                        self.stop(why);
                        return None;
                    }
                    Retry::Done => {
                        quit(&mut self.worker);
                        self.shared.lock().workers[self.slot] = None;
                        return None;
                    }
                    Retry::GiveUp => {}
                }
            }
            self.requeue();
            self.shared.break_pool(reason.clone());
            self.stop(Fail::Broken(reason));
            return None;
        }
    }

    /// Waits `delay` (or less, if the pool's state changes) before another
    /// start; what to do then. `stalled`: since when work waits with no
    /// worker to run it.
    fn wait_to_retry(&self, delay: Duration, stalled: &mut Option<Instant>) -> Retry {
        let shared = &self.shared;
        let st = shared.lock();
        if st.terminated {
            return Retry::Stop(Fail::Terminated);
        }
        if let Some(reason) = &st.broken {
            return Retry::Stop(Fail::Broken(reason.clone()));
        }
        if st.closed && st.queue.is_empty() && self.held.is_empty() {
            return Retry::Done;
        }
        let others = (st.workers.iter().enumerate()).any(|(i, w)| i != self.slot && w.is_some());
        if others || st.queue.is_empty() {
            *stalled = None;
        } else if stalled.get_or_insert_with(Instant::now).elapsed() >= PATIENCE {
            return Retry::GiveUp;
        }
        // `wake_all` (close, terminate, break) cuts the wait short.
        drop(shared.work.wait_timeout(st, delay));
        Retry::Again
    }

    /// Kills the worker and fails what it held.
    fn stop(&mut self, why: Fail) {
        let _ = self.worker.stop(self.shared.cfg.grace);
        for job in self.held.drain() {
            job.fail(&why);
        }
        self.shared.lock().workers[self.slot] = None;
    }
}
