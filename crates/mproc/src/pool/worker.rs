//! The worker process: runs chunks sent by its supervisor, one reply each.
//!
//! A panic fails its item only: the worker catches it (its hook records
//! the message and location and prints nothing) and goes on. SIGINT is
//! blocked, so Ctrl-C in a terminal reaches the parent alone, which decides
//! (see `Pool`'s docs).

use std::cell::RefCell;
use std::ops::Range;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::panic::{self, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::wire::{self, Status};
use crate::codec::{self, WireFd};
use crate::observe::{count_panic, TaskRun};
use crate::pipe::Connection;
use crate::sys::fnref::{self, FnRef};

/// One item's outcome inside a reply.
#[derive(Serialize, Deserialize)]
pub(crate) enum ItemOut<R> {
    Ok(R),
    Panicked { message: String, location: String },
    Encode(String),
}

/// Runs the function at offset `func` over an encoded `Vec<A>`, appending
/// the reply's body to the buffer it takes and gives back (owned values: a
/// function reference names no type with higher-ranked lifetimes).
pub(crate) type ChunkFn = fn(i64, ChunkArgs, Vec<u8>) -> (Status, Vec<u8>);

/// A chunk's encoded arguments: a range of the jobs message that holds it.
pub(crate) struct ChunkArgs {
    msg: Rc<Vec<u8>>,
    range: Range<usize>,
}

impl ChunkArgs {
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.msg[self.range.clone()]
    }
}

/// Runs the initializer at offset `func` on its encoded arguments and
/// their handles.
pub(crate) type InitFn = fn(i64, Vec<u8>, Vec<OwnedFd>);

/// An initializer: its function, its runner, its encoded arguments and the
/// OS handles they carry (a queue, a lock...). The pool keeps the handles
/// open for its whole life: every worker, replacements included, receives
/// duplicates of them in its start arguments.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Init {
    /// A `fn(A)`, checked by its runner.
    func: i64,
    /// Checked when the worker decodes its arguments (from its parent).
    runner: FnRef<InitFn>,
    bytes: Vec<u8>,
    fds: Handles,
}

impl Init {
    /// The initializer `f` over `args`.
    pub(crate) fn new<A: Serialize + DeserializeOwned>(f: fn(A), args: &A) -> crate::Result<Init> {
        let runner: InitFn = init_runner::<A>;
        let frame = codec::encode(args)?;
        Ok(Init {
            func: FnRef::new(f).offset(),
            runner: FnRef::new(runner),
            bytes: frame.bytes,
            fds: Handles(Arc::new(frame.fds)),
        })
    }

    /// Whether its arguments carry OS handles (which reach only local
    /// workers).
    pub(crate) fn has_handles(&self) -> bool {
        !self.fds.0.is_empty()
    }

    /// Runs it (in the worker).
    fn run(self) {
        let fds = Arc::try_unwrap(self.fds.0)
            .unwrap_or_else(|shared| shared.iter().filter_map(|fd| fd.try_clone().ok()).collect());
        self.runner.get()(self.func, self.bytes, fds);
    }
}

/// Descriptors shared by every copy of an [`Init`]; they travel through the
/// codec's side table (each message carries duplicates).
#[derive(Clone, Debug)]
struct Handles(Arc<Vec<OwnedFd>>);

impl Serialize for Handles {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for fd in self.0.iter() {
            seq.serialize_element(&BorrowedWireFd(fd.as_fd()))?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for Handles {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let fds = Vec::<WireFd>::deserialize(d)?;
        Ok(Handles(Arc::new(fds.into_iter().map(|w| w.0).collect())))
    }
}

/// A descriptor serialised by duplicate, without owning it.
struct BorrowedWireFd<'a>(BorrowedFd<'a>);

impl Serialize for BorrowedWireFd<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        codec::serialize_fd(self.0, s)
    }
}

/// What a worker starts with.
#[derive(Serialize, Deserialize)]
pub(crate) struct WorkerArgs {
    pub(crate) conn: Connection<()>,
    /// The initializer, if any.
    pub(crate) init: Option<Init>,
    /// Whether and how the worker watches its resident memory.
    pub(crate) memory: MemoryWatch,
}

/// What a worker does with its resident memory after each chunk.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub(crate) struct MemoryWatch {
    /// Measure it and report it with the reply (the timeline records it).
    pub(crate) report: bool,
    /// Retire after the chunk that leaves it above this many bytes
    /// (`max_memory_per_child`): measured whatever `report` says.
    pub(crate) max: Option<u64>,
}

impl MemoryWatch {
    fn wanted(&self) -> bool {
        self.report || self.max.is_some()
    }
}

thread_local! {
    static LAST_PANIC: RefCell<Option<(String, String)>> = const { RefCell::new(None) };
}

/// The worker's `main`.
pub(crate) fn worker_main(args: WorkerArgs) {
    crate::sys::proc::block_sigint(true);
    if let Some(init) = args.init {
        init.run();
    }
    quiet_panics();
    if args.conn.send_bytes(&[wire::READY]).is_err() {
        return;
    }
    // Opened after the initializer: a forked worker opens its own.
    let mut rss = args
        .memory
        .wanted()
        .then(crate::sys::proc::ResidentMemory::open)
        .and_then(|r| r.ok())
        .map(Sampler::new);
    let mut out = Vec::new();
    let pid = std::process::id();
    while let Ok(msg) = args.conn.recv_bytes() {
        if msg.first() != Some(&wire::JOBS) {
            return; // QUIT, or garbage
        }
        let Some(jobs) = wire::jobs(&msg) else {
            return;
        };
        let msg = Rc::new(msg);
        for job in jobs {
            out.clear();
            let run = TaskRun::begin(pid, job.id);
            // The job pipe comes from the pool's parent, which chose the
            // functions: their offsets are vouched for on arrival.
            let status = match fnref::trusting_parent(|| FnRef::<ChunkFn>::checked(job.chunk_fn)) {
                Ok(run) => {
                    let chunk = ChunkArgs {
                        msg: msg.clone(),
                        range: job.args,
                    };
                    let status;
                    (status, out) = run.get()(job.func, chunk, std::mem::take(&mut out));
                    status
                }
                Err(e) => {
                    let status;
                    (status, out) = bad_args(e.into(), std::mem::take(&mut out));
                    status
                }
            };
            run.end(matches!(status, Status::AllOk));
            let mut tail = wire::Tail::default();
            if let Some(r) = rss.as_mut() {
                tail.rss = r.after_chunk(args.memory.report);
                tail.retiring =
                    matches!((tail.rss, args.memory.max), (Some(now), Some(max)) if now > max);
            }
            wire::seal_reply(&mut out, job.id, status, tail);
            if args.conn.send_bytes(&out).is_err() {
                return;
            }
            if tail.retiring {
                return retire(&args.conn);
            }
        }
    }
}

/// About the least time between two reads of the worker's resident memory
/// for `max_memory_per_child`: a read costs about a microsecond (and a
/// look at the clock up to 0.1 µs on a virtual machine), a trivial task
/// less.
const MEMORY_READ_GAP: std::time::Duration = std::time::Duration::from_micros(50);

/// The most chunks between two reads.
const MAX_SKIP: u32 = 1024;

/// When the worker reads its resident memory: after every chunk, but for
/// chunks shorter than [`MEMORY_READ_GAP`], after about one in as many as
/// fit in it (measured from the reads: the clock is looked at only then,
/// a count of chunks is all the others cost). A chunk that takes the gap
/// or longer is always followed by a read unless it comes right after a
/// run of tiny ones, and then within that run's count.
struct Sampler {
    rss: crate::sys::proc::ResidentMemory,
    /// Chunks to let pass between reads, and how many are left to pass.
    skip: u32,
    left: u32,
    last: std::time::Instant,
}

impl Sampler {
    fn new(rss: crate::sys::proc::ResidentMemory) -> Self {
        Sampler {
            rss,
            skip: 0,
            left: 0,
            last: std::time::Instant::now(),
        }
    }

    /// After a chunk: the resident bytes, if read now (`always`: the
    /// timeline wants each chunk's).
    fn after_chunk(&mut self, always: bool) -> Option<u64> {
        if !always && self.left > 0 {
            self.left -= 1;
            return None;
        }
        let now = std::time::Instant::now();
        let per_chunk = (now - self.last).as_nanos() / u128::from(self.skip + 1);
        self.last = now;
        let fit = MEMORY_READ_GAP.as_nanos() / per_chunk.max(1);
        self.skip = u32::try_from(fit.saturating_sub(1)).map_or(MAX_SKIP, |s| s.min(MAX_SKIP));
        self.left = self.skip;
        self.rss.bytes()
    }
}

/// Past its memory threshold: runs nothing more (the chunks it holds go
/// back to the queue, its supervisor knows from the flag) and waits for
/// the supervisor's QUIT, so that the supervisor never sends to a worker
/// that has gone.
fn retire(conn: &Connection<()>) {
    while let Ok(msg) = conn.recv_bytes() {
        if msg.first() != Some(&wire::JOBS) {
            return;
        }
    }
}

/// From here on a panic is recorded for its item, not printed.
fn quiet_panics() {
    panic::set_hook(Box::new(|info| {
        let message = match info.payload().downcast_ref::<&str>() {
            Some(s) => (*s).to_string(),
            None => info
                .payload()
                .downcast_ref::<String>()
                .cloned()
                .unwrap_or_else(|| "Box<dyn Any>".into()),
        };
        let location = info.location().map(|l| l.to_string()).unwrap_or_default();
        count_panic();
        LAST_PANIC.with(|l| *l.borrow_mut() = Some((message, location)));
    }));
}

/// The initializer's runner for arguments `A`.
pub(crate) fn init_runner<A: DeserializeOwned>(func: i64, bytes: Vec<u8>, fds: Vec<OwnedFd>) {
    // The initializer came in the worker's first frame, from its parent.
    let (f, args) = fnref::trusting_parent(|| {
        let f = FnRef::<fn(A)>::checked(func).expect("the parent vouches for the initializer");
        let args: A = codec::decode(&bytes, fds).expect("initializer arguments decode");
        (f, args)
    });
    drop(bytes);
    f.get()(args)
}

/// The chunk runner for `fn(A) -> R`.
pub(crate) fn chunk_runner<A: DeserializeOwned, R: Serialize>(
    func: i64,
    args: ChunkArgs,
    mut out: Vec<u8>,
) -> (Status, Vec<u8>) {
    // From the job pipe: the pool's parent chose this function.
    let f = match fnref::trusting_parent(|| FnRef::<fn(A) -> R>::checked(func)) {
        Ok(f) => f.get(),
        Err(e) => return bad_args(e.into(), out),
    };
    let status = run_items(args.bytes(), &mut out, f);
    (status, out)
}

/// A chunk that cannot run: its reason as the reply's body.
pub(crate) fn bad_args(e: crate::Error, mut out: Vec<u8>) -> (Status, Vec<u8>) {
    out.extend_from_slice(e.to_string().as_bytes());
    (Status::BadArgs, out)
}

/// Decodes a `Vec<T>` (bytes from the job pipe: from the pool's parent,
/// so what they name is vouched for), calls `call` on each item (a panic
/// fails that item), encodes the outcomes into `out`.
pub(crate) fn run_items<T: DeserializeOwned, R: Serialize>(
    bytes: &[u8],
    out: &mut Vec<u8>,
    call: impl Fn(T) -> R,
) -> Status {
    let items: Vec<T> = match fnref::trusting_parent(|| codec::decode(bytes, Vec::new())) {
        Ok(items) => items,
        Err(e) => {
            out.extend_from_slice(e.to_string().as_bytes());
            return Status::BadArgs;
        }
    };
    // The common case first: every item returns, and the reply is a plain
    // `Vec<R>` (no per-item tag to write and read).
    let mut items = items.into_iter();
    let mut values = Vec::with_capacity(items.len());
    let mut failed = None;
    for a in items.by_ref() {
        match panic::catch_unwind(AssertUnwindSafe(|| call(a))) {
            Ok(r) => values.push(r),
            Err(payload) => {
                failed = Some(panicked(&*payload));
                break;
            }
        }
    }
    let Some(first_failure) = failed else {
        if codec::encode_into(&values, out).is_ok() {
            return Status::AllOk;
        }
        out.clear();
        let results = values.into_iter().map(ItemOut::Ok).map(encodable).collect();
        return encode_outs(results, out);
    };
    let mut results: Vec<ItemOut<R>> = values.into_iter().map(ItemOut::Ok).collect();
    results.push(first_failure);
    results.extend(items.map(
        |a| match panic::catch_unwind(AssertUnwindSafe(|| call(a))) {
            Ok(r) => ItemOut::Ok(r),
            Err(payload) => panicked(&*payload),
        },
    ));
    if codec::encode_into(&results, out).is_err() {
        out.clear();
        results = results.into_iter().map(encodable).collect();
        return encode_outs(results, out);
    }
    Status::SomeFailed
}

/// Encodes outcomes that are known to encode.
fn encode_outs<R: Serialize>(results: Vec<ItemOut<R>>, out: &mut Vec<u8>) -> Status {
    codec::encode_into(&results, out).expect("every item encodes now");
    Status::SomeFailed
}

/// A caught panic as an item's outcome.
fn panicked<R>(payload: &(dyn std::any::Any + Send)) -> ItemOut<R> {
    let (message, location) = LAST_PANIC
        .with(|l| l.borrow_mut().take())
        .unwrap_or_else(|| (crate::start::payload_message(payload), String::new()));
    ItemOut::Panicked { message, location }
}

/// The item itself if it encodes, else its encoding error.
fn encodable<R: Serialize>(item: ItemOut<R>) -> ItemOut<R> {
    let mut scratch = Vec::new();
    match codec::encode_into(&item, &mut scratch) {
        Ok(_) => item,
        Err(e) => ItemOut::Encode(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_chunks_are_sampled_and_long_ones_always() {
        let rss = crate::sys::proc::ResidentMemory::open().unwrap();
        let mut s = Sampler::new(rss);
        // Right after the start (no chunk timed yet): read.
        assert!(s.after_chunk(false).is_some());
        // Back-to-back calls: chunks far shorter than the gap.
        let reads = (0..10_000)
            .filter(|_| s.after_chunk(false).is_some())
            .count();
        assert!(reads < 5_000, "{reads} reads of 10,000 tiny chunks");
        // The timeline wants every chunk's.
        assert!((0..10).all(|_| s.after_chunk(true).is_some()));
        // Chunks as long as the gap: read within the count the tiny ones
        // left, then after every one.
        let mut calls = 0;
        loop {
            std::thread::sleep(MEMORY_READ_GAP * 2);
            calls += 1;
            if s.after_chunk(false).is_some() {
                break;
            }
        }
        assert!(calls <= MAX_SKIP as usize + 1);
        for _ in 0..3 {
            std::thread::sleep(MEMORY_READ_GAP * 2);
            assert!(s.after_chunk(false).is_some());
        }
    }
}
