//! The bandwidth ceiling: one `memcpy` of each message, in one process.
//! Any transfer that leaves the receiver its own copy of the bytes does at
//! least this much work per message.

use std::hint::black_box;

use crate::harness::{gigabytes_per_sec, session, Result, Session};

/// `count` copies of a `size`-byte message into a warm buffer per
/// repetition. GB/s.
pub fn memcpy(size: usize, count: usize) -> Result<Box<dyn Session>> {
    let src = vec![7u8; size];
    let mut dst = vec![0u8; size];
    dst.copy_from_slice(&src);
    session(move || {
        gigabytes_per_sec(size * count, || {
            for _ in 0..count {
                dst.copy_from_slice(black_box(&src));
                black_box(&mut dst);
            }
            Ok(())
        })
    })
}
