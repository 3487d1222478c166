//! The shared header of a queue and the records of its ring.
//!
//! # Header (one memfd; the ring is another, see `sys::ring`)
//!
//! | word            | written by                         | meaning                                                              |
//! |-----------------|------------------------------------|----------------------------------------------------------------------|
//! | `tail`          | put-lock holder                    | `items_put << 32 \| byte_tail`: one store commits a record and its count |
//! | `data_seq`      | put-lock holder; `shutdown`        | futex word consumers sleep on; bumped to wake them                   |
//! | `put_open`      | put-lock holder                    | 1 while a large item is being streamed in chunks, else 0             |
//! | `deep`          | put-lock holder                    | the furthest ring offset written since pages were last given back    |
//! | `laps`          | put-lock holder                    | `PAD`s written to start the ring again (wrapping)                    |
//! | `reserved`      | put-lock holder                    | the ring's bytes from 0 backed by `fallocate` (lowered before a punch) |
//! | `head`          | get-lock holder                    | `items_got << 32 \| byte_head`: one store frees a record and counts it |
//! | `space_seq`     | get-lock holder; `shutdown`        | futex word producers sleep on; bumped to wake them                   |
//! | `get_open`      | get-lock holder                    | 1 while a large item is being read chunk by chunk, else 0            |
//! | `get_sleepers`  | consumers                          | consumers announced asleep on `data_seq`                             |
//! | `put_sleepers`  | producers                          | producers announced asleep on `space_seq`                            |
//! | `cap`           | creator, once                      | bytes in the ring: a power of two, 4 KiB to 1 GiB                    |
//! | `maxsize`       | creator, once                      | the most items in the queue; 0 for no limit                          |
//! | `shut`          | `shutdown`                         | 0 open, 1 shut down (never goes back)                                |
//! | `done`          | `task_done`, immediate `shutdown`  | items marked done (wrapping); unfinished = `items_put - done`        |
//! | `join_sleepers` | `join`                             | joiners announced asleep on `done`                                   |
//! | `get_async`     | `get_async` (feature `tokio`)      | async consumers announced (each also counted in `get_sleepers`)      |
//! | `put_async`     | `put_async` (feature `tokio`)      | async producers announced (each also counted in `put_sleepers`)      |
//! | `join_async`    | `join_async` (feature `tokio`)     | async joiners announced (each also counted in `join_sleepers`)       |
//!
//! An async waiter (`aio.rs`) counts itself in its word's `*_sleepers`
//! too, so that a publisher's one load of `*_sleepers` (which it makes
//! anyway) still tells it whether anyone at all waits; only then does it
//! look at `*_async` and write the queue's eventfd.
//!
//! `byte_tail - byte_head` (wrapping) is at most `cap` and both are
//! multiples of 8; `items_put - items_got` is at most `2^31`. Anything else
//! is a broken or hostile peer: `Error::Protocol`. An opener copies `cap`
//! and `maxsize` once, after checking them against the mapping's size, and
//! never reads them again.
//!
//! # Records
//!
//! A record is an 8-byte header (`len: u32`, `kind: u8`, a 24-bit check)
//! and `len` bytes padded to a multiple of 8, at an 8-aligned index (so a
//! header never wraps; the payload may). Kinds: `WHOLE` (an item), `FIRST`,
//! `MORE`, `LAST` (an item streamed in chunks), `ABORT` (the chunks since
//! the last `FIRST` are void), `PAD` (nothing: the rest of the ring, so
//! that the next record starts at its beginning again), `HANDLES` (an item
//! holding descriptors, sent on the queue's socket: its tag and their
//! number, then the item).

use std::sync::atomic::{AtomicU32, AtomicU64};

use crate::error::{Error, Result};
use crate::shm::block::shm_state;

shm_state! {
    pub(super) struct Header {
        pub(super) tail: AtomicU64,
        pub(super) data_seq: AtomicU32,
        pub(super) put_open: AtomicU32,
        pub(super) deep: AtomicU32,
        pub(super) laps: AtomicU32,
        pub(super) reserved: AtomicU32,
        _line0: [u8; 100],
        pub(super) head: AtomicU64,
        pub(super) space_seq: AtomicU32,
        pub(super) get_open: AtomicU32,
        _line1: [u8; 112],
        pub(super) get_sleepers: AtomicU32,
        pub(super) put_sleepers: AtomicU32,
        pub(super) cap: AtomicU32,
        pub(super) maxsize: AtomicU32,
        pub(super) shut: AtomicU32,
        pub(super) done: AtomicU32,
        pub(super) join_sleepers: AtomicU32,
        pub(super) get_async: AtomicU32,
        pub(super) put_async: AtomicU32,
        pub(super) join_async: AtomicU32,
    }
}

/// Splits a `tail`/`head` word into (item count, byte index).
pub(super) fn split(word: u64) -> (u32, u32) {
    ((word >> 32) as u32, word as u32)
}

/// Joins an item count and a byte index into one word.
pub(super) fn join(items: u32, bytes: u32) -> u64 {
    (u64::from(items) << 32) | u64::from(bytes)
}

/// What a record is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Whole = 1,
    First = 2,
    More = 3,
    Last = 4,
    Abort = 5,
    Pad = 6,
    Handles = 7,
}

const CHECK: u32 = 0x00_71_75_65; // "que"

/// The bytes a record with `len` payload bytes takes in the ring.
pub(super) fn record_len(len: usize) -> usize {
    8 + len.div_ceil(8) * 8
}

pub(super) fn encode_header(kind: Kind, len: u32) -> [u8; 8] {
    let mut h = [0u8; 8];
    h[..4].copy_from_slice(&len.to_le_bytes());
    h[4..].copy_from_slice(&((kind as u32) | (CHECK << 8)).to_le_bytes());
    h
}

/// Parses and checks a record header read from the ring, where `used`
/// bytes are published from its start.
pub(super) fn decode_header(h: [u8; 8], used: u32) -> Result<(Kind, u32)> {
    let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
    let word = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
    let kind = match (word >> 8 == CHECK).then_some(word & 0xff) {
        Some(1) => Kind::Whole,
        Some(2) => Kind::First,
        Some(3) => Kind::More,
        Some(4) => Kind::Last,
        Some(5) => Kind::Abort,
        Some(6) => Kind::Pad,
        Some(7) => Kind::Handles,
        _ => {
            return Err(Error::Protocol(format!(
                "bad queue record header {word:#x}"
            )))
        }
    };
    if record_len(len as usize) > used as usize {
        return Err(Error::Protocol(format!(
            "queue record of {len} bytes overruns the {used} bytes published"
        )));
    }
    Ok((kind, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_and_are_checked() {
        let h = encode_header(Kind::Last, 13);
        assert_eq!(decode_header(h, 24).unwrap(), (Kind::Last, 13));
        assert!(matches!(decode_header(h, 16), Err(Error::Protocol(_))));
        assert!(matches!(
            decode_header([0xff; 8], 1 << 30),
            Err(Error::Protocol(_))
        ));
        assert_eq!(record_len(0), 8);
        assert_eq!(record_len(9), 24);
        assert_eq!(split(join(7, 9)), (7, 9));
    }
}
