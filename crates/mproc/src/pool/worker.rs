//! The worker process: runs chunks sent by its supervisor, one reply each.
//!
//! A panic fails its item only: the worker catches it (its hook records
//! the message and location and prints nothing) and goes on. SIGINT is
//! blocked, so Ctrl-C in a terminal reaches the parent alone, which decides
//! (see `Pool`'s docs).

use std::cell::RefCell;
use std::panic::{self, AssertUnwindSafe};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::wire::{self, Status};
use crate::codec;
use crate::pipe::Connection;
use crate::task::FnOffset;

/// One item's outcome inside a reply.
#[derive(Serialize, Deserialize)]
pub(crate) enum ItemOut<R> {
    Ok(R),
    Panicked { message: String, location: String },
    Encode(String),
}

/// Runs `func` over an encoded `Vec<A>` into `out`.
pub(crate) type ChunkFn = fn(FnOffset, &[u8], &mut Vec<u8>) -> Status;

/// Runs the initializer `func` on its encoded arguments.
pub(crate) type InitFn = fn(FnOffset, &[u8]);

/// What a worker starts with.
#[derive(Serialize, Deserialize)]
pub(crate) struct WorkerArgs {
    pub(crate) conn: Connection<()>,
    /// The initializer: function, its runner, encoded arguments.
    pub(crate) init: Option<(i64, i64, Vec<u8>)>,
}

thread_local! {
    static LAST_PANIC: RefCell<Option<(String, String)>> = const { RefCell::new(None) };
}

/// The worker's `main`.
pub(crate) fn worker_main(args: WorkerArgs) {
    crate::sys::proc::block_sigint(true);
    if let Some((func, runner, bytes)) = &args.init {
        // SAFETY: the supervisor took `runner` from an `InitFn` and this
        // worker runs the same executable (checked when it started).
        let run: InitFn = unsafe { FnOffset(*runner).get() };
        run(FnOffset(*func), bytes);
    }
    quiet_panics();
    if args.conn.send_bytes(&[wire::READY]).is_err() {
        return;
    }
    let mut out = Vec::new();
    while let Ok(msg) = args.conn.recv_bytes() {
        if msg.first() != Some(&wire::JOBS) {
            return; // QUIT, or garbage
        }
        let Some(jobs) = wire::jobs(&msg[1..]) else {
            return;
        };
        for job in jobs {
            out.clear();
            // SAFETY: as for the initializer: `chunk_fn` is a `ChunkFn` of
            // this same executable.
            let run: ChunkFn = unsafe { job.chunk_fn.get() };
            let status = run(job.func, job.args, &mut out);
            wire::seal_reply(&mut out, job.id, status);
            if args.conn.send_bytes(&out).is_err() {
                return;
            }
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
        LAST_PANIC.with(|l| *l.borrow_mut() = Some((message, location)));
    }));
}

/// The initializer's runner for arguments `A`.
pub(crate) fn init_runner<A: DeserializeOwned>(func: FnOffset, bytes: &[u8]) {
    let args: A = codec::decode(bytes, Vec::new()).expect("initializer arguments decode");
    // SAFETY: `func` was taken from a `fn(A)` by `Builder::initializer`,
    // which chose this very runner for the same `A`.
    let f: fn(A) = unsafe { func.get() };
    f(args)
}

/// The chunk runner for `fn(A) -> R`.
pub(crate) fn chunk_runner<A: DeserializeOwned, R: Serialize>(
    func: FnOffset,
    bytes: &[u8],
    out: &mut Vec<u8>,
) -> Status {
    // SAFETY: `func` was taken from a `fn(A) -> R` by the pool, which chose
    // this very runner for the same `A` and `R`.
    let f: fn(A) -> R = unsafe { func.get() };
    run_items(bytes, out, f)
}

/// Decodes a `Vec<T>`, calls `call` on each item (a panic fails that
/// item), encodes the outcomes into `out`.
pub(crate) fn run_items<T: DeserializeOwned, R: Serialize>(
    bytes: &[u8],
    out: &mut Vec<u8>,
    call: impl Fn(T) -> R,
) -> Status {
    let items: Vec<T> = match codec::decode(bytes, Vec::new()) {
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
