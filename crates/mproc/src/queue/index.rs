//! The ring's two index words, `tail = items_put << 32 | byte_tail` and
//! `head = items_got << 32 | byte_head`: a checked snapshot of both, and
//! the one `SeqCst` store that commits a record (`publish`) or frees one
//! (`free`), each followed by the wake-up of the other side's sleepers
//! (the Dekker pair of `sys::futex`: the store, then a look at the
//! sleepers counter). A process killed before the store left nothing
//! visible; killed between the store and the wake-up, it left sleepers
//! that their next nap wakes (`wait.rs`).

use std::sync::atomic::Ordering::SeqCst;

use super::core::Core;
use super::header;
use crate::error::{Error, Result};

impl Core {
    /// Checked (items_put, tail, items_got, head, used bytes, items queued).
    ///
    /// `head` is read on both sides of `tail` until it did not move: a
    /// producer that frees a `PAD` moves `head` past any `tail` read
    /// before its `PAD` was published, so only a snapshot of both words at
    /// one instant may be judged (at any instant they are in order).
    pub(super) fn indices(&self) -> Result<(u32, u32, u32, u32, u32, u32)> {
        let mut before = self.h().head.load(SeqCst);
        let (mut word, mut tries) = (self.h().tail.load(SeqCst), 0);
        loop {
            let after = self.h().head.load(SeqCst);
            if after == before || tries == 100 {
                break;
            }
            (before, word, tries) = (after, self.h().tail.load(SeqCst), tries + 1);
        }
        let (put, tail) = header::split(word);
        let (got, head) = header::split(before);
        let (used, count) = (tail.wrapping_sub(head), put.wrapping_sub(got));
        if used > self.cap || count > 1 << 31 || tail % 8 != 0 || head % 8 != 0 {
            return Err(Error::Protocol(format!(
                "queue indices out of order: tail {put}/{tail}, head {got}/{head}"
            )));
        }
        Ok((put, tail, got, head, used, count))
    }

    /// Publishes the records before `byte_tail` and counts `items_put`
    /// (one store of `tail`; the caller holds the put lock and wrote
    /// them), then wakes the consumers asleep on `data_seq`.
    ///
    /// The one fence of a put's protocol (its lock's and the in-process
    /// guard of an in-place encoding's slice aside). The store must be a release (the record's
    /// bytes before it) and must not pass the load of `get_sleepers` after
    /// it (the Dekker pair: a consumer announces itself in `get_sleepers`,
    /// then reads `tail` again before it sleeps; with the load first, both
    /// could miss the other). `SeqCst` gives both in one instruction on
    /// x86 (`xchg`); a release store and a `SeqCst` fence would be a
    /// `mov` and an `mfence`, slower on the AMD CPUs measured. Every other
    /// access of a put is relaxed or an acquire load, ordered by the put
    /// lock or by this store.
    #[inline(always)]
    pub(super) fn publish(&self, items_put: u32, byte_tail: u32) {
        let h = self.h();
        h.tail.store(header::join(items_put, byte_tail), SeqCst);
        self.notify(&h.data_seq, &h.get_sleepers, &h.get_async);
    }

    /// Frees the records before `byte_head` and counts `items_got` (one
    /// store of `head`; the caller holds the get lock and is done with
    /// them), then wakes the producers asleep on `space_seq`.
    ///
    /// The one fence of a get's protocol (its lock's aside), for the
    /// reasons of `publish`: a release (the
    /// record was read before its bytes are handed back) that the load of
    /// `put_sleepers` must not pass.
    #[inline(always)]
    pub(super) fn free(&self, items_got: u32, byte_head: u32) {
        let h = self.h();
        h.head.store(header::join(items_got, byte_head), SeqCst);
        self.notify(&h.space_seq, &h.put_sleepers, &h.put_async);
    }
}
