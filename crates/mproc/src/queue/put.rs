//! The put path: an item in one record (`WHOLE`), or streamed in chunks
//! (`FIRST`, `MORE`..., `LAST`) with room for an `ABORT` always kept, the
//! repair of an item a producer killed mid-stream left open, the wait for
//! room, and the write-then-publish of one record (see `README.md`, *A
//! put*). Items holding OS handles take `handles.rs`'s path.

use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};

use super::aio::Side;
use super::core::{Core, Res, Stop, Wait};
use super::header::{self, encode_header, record_len, Kind};
use super::wait::{acquire, Unlocked};
use crate::error::Error;

impl Core {
    /// Appends one item (encoded bytes and the descriptors they refer
    /// to), within `wait`.
    pub(super) fn put(&self, bytes: &[u8], fds: &[OwnedFd], wait: Wait) -> Res<()> {
        if fds.is_empty() {
            self.put_bytes(bytes, wait)
        } else {
            self.put_handles(bytes, fds, wait)
        }
    }

    /// Appends one item that encodes to `n` bytes, in one `WHOLE` record
    /// (`record_len(n)` is at most a chunk), within `wait`: `encode` writes
    /// the `n` bytes straight into the ring (a size pass, then one copy
    /// from the value into the ring), or into a buffer first where the
    /// record's place is not one piece of memory (it wraps at the ring's
    /// end or crosses a segment's), and returns the descriptors the item
    /// holds. An item holding some goes the way of `put_handles` (its
    /// bytes copied out again; such items are rare and slow anyway).
    ///
    /// Nothing is visible before the `tail` store of `publish`: an encoder
    /// that fails leaves the queue as it was (the bytes written past `tail`
    /// are overwritten by the next record), and so does a producer killed
    /// inside `encode`.
    pub(super) fn put_encoded(
        &self,
        n: usize,
        wait: Wait,
        encode: impl FnOnce(&mut [u8]) -> crate::error::Result<Vec<OwnedFd>>,
    ) -> Res<()> {
        let len = record_len(n);
        if len > self.chunk() {
            return Err(Stop::Failed(Error::InvalidState(
                "queue record larger than a chunk",
            )));
        }
        if self.is_shut_down() {
            return Err(Stop::ShutDown);
        }
        let held = (acquire(&self.put_lock, wait)?, Unlocked(self, Side::Put));
        self.repair_put()?;
        self.pace(wait, true);
        let (put, tail) = self.wait_room(len, true, wait)?;
        self.reserve(tail, len)?;
        let head = encode_header(Kind::Whole, n as u32);
        let mut encode = Some(encode);
        let filled = self.fill(tail, 8 + n, |record| {
            record[..8].copy_from_slice(&head);
            encode.take().map(|encode| encode(&mut record[8..]))
        })?;
        let fds = match (filled.flatten(), encode) {
            (Some(fds), _) => fds?,
            (None, Some(encode)) => {
                let mut record = vec![0u8; 8 + n];
                record[..8].copy_from_slice(&head);
                let fds = encode(&mut record[8..])?;
                self.write(tail, &record)?;
                fds
            }
            (None, None) => return Err(Stop::Failed(Error::InvalidState("encoder lost"))),
        };
        if !fds.is_empty() {
            let mut bytes = vec![0u8; n];
            self.read(tail.wrapping_add(8), &mut bytes)?;
            drop(held);
            return self.put_handles(&bytes, &fds, wait);
        }
        self.finish(put, tail, len, true);
        Ok(())
    }

    fn put_bytes(&self, bytes: &[u8], wait: Wait) -> Res<()> {
        if self.is_shut_down() {
            return Err(Stop::ShutDown);
        }
        let _held = (acquire(&self.put_lock, wait)?, Unlocked(self, Side::Put));
        self.repair_put()?;
        self.pace(wait, record_len(bytes.len()) <= self.chunk());
        if record_len(bytes.len()) <= self.chunk() {
            return self.put_record(Kind::Whole, bytes, true, 0, wait);
        }
        if matches!(wait, Wait::Try) {
            // Streamed only if every chunk fits now: a `try_put` never
            // waits for a consumer.
            let chunks = bytes.len().div_ceil(self.chunk() - 8);
            self.wait_room(chunks * self.chunk() + 8, true, Wait::Try)?;
        }
        self.stream(bytes, wait)
    }

    /// Voids the chunks of an item whose producer died streaming it (the
    /// caller holds the put lock): room for the `ABORT` record is always
    /// reserved while streaming.
    pub(super) fn repair_put(&self) -> Res<()> {
        if self.h().put_open.load(SeqCst) != 0 {
            crate::observe::warn_event!("queue: an item whose producer died putting it is voided");
            self.put_record(Kind::Abort, &[], false, 0, Wait::Try)?;
            self.h().put_open.store(0, SeqCst);
        }
        Ok(())
    }

    fn stream(&self, bytes: &[u8], wait: Wait) -> Res<()> {
        self.h().put_open.store(1, SeqCst);
        let n = bytes.chunks(self.chunk() - 8).count();
        for (i, chunk) in bytes.chunks(self.chunk() - 8).enumerate() {
            let kind = match i {
                0 => Kind::First,
                _ if i + 1 == n => Kind::Last,
                _ => Kind::More,
            };
            if let Err(stop) = self.put_record(kind, chunk, kind == Kind::Last, 8, wait) {
                if i > 0 {
                    self.put_record(Kind::Abort, &[], false, 0, Wait::Try)?;
                }
                self.h().put_open.store(0, SeqCst);
                return Err(stop);
            }
        }
        self.h().put_open.store(0, SeqCst);
        Ok(())
    }

    /// Waits for room for `bytes` (and, for the first record of an item,
    /// for the item count to be under `maxsize`); returns the `tail` word
    /// it saw room after (items put, byte index; 8-aligned), which only the
    /// caller, holding the put lock, may change.
    pub(super) fn wait_room(&self, bytes: usize, new_item: bool, wait: Wait) -> Res<(u32, u32)> {
        let check = || {
            if self.is_shut_down() {
                return Err(Stop::ShutDown);
            }
            // First against the last `head` seen (an underestimate of the
            // room: the consumer only frees), so that a put does not pull
            // the consumer's cache line every time; then against the real one.
            let fits = |used: u32, count: u32| {
                let full = new_item && self.maxsize != 0 && count >= self.maxsize;
                used <= self.cap && !full && (self.cap - used) as usize >= bytes
            };
            // The put lock's holder alone writes `tail` (but for a hostile
            // peer: checked by `indices` when the hint runs out, and its
            // alignment here, before anything is written at it).
            let (put, tail) = header::split(self.h().tail.load(Relaxed));
            if tail % 8 != 0 {
                return Err(Stop::Failed(Error::Protocol(format!(
                    "misaligned queue tail {tail}"
                ))));
            }
            let (got, head) = header::split(self.seen_head.load(Relaxed));
            let laps = self.h().laps.load(Relaxed);
            let fresh = self.seen_laps.load(Relaxed) == laps;
            if fresh && fits(tail.wrapping_sub(head), put.wrapping_sub(got)) {
                return Ok(Some((put, tail)));
            }
            let (put, tail, got, head, used, count) = self.indices()?;
            self.seen_head.store(header::join(got, head), Relaxed);
            self.seen_laps.store(laps, Relaxed);
            Ok(fits(used, count).then_some((put, tail)))
        };
        let until = match wait {
            Wait::Try => return check()?.ok_or(Stop::Busy),
            Wait::Until(d) => Some(d),
            Wait::Forever => None,
        };
        let (seq, sleepers) = (&self.h().space_seq, &self.h().put_sleepers);
        self.wait_on(seq, sleepers, until, check)?
            .ok_or(Stop::Timeout)
    }

    /// Writes one record and commits it (with one more item if
    /// `completes`), after waiting for its room plus `reserve` bytes.
    pub(super) fn put_record(
        &self,
        kind: Kind,
        data: &[u8],
        completes: bool,
        reserve: usize,
        wait: Wait,
    ) -> Res<()> {
        let len = record_len(data.len());
        if len + reserve > self.cap as usize {
            return Err(Stop::Failed(Error::InvalidState(
                "queue record larger than its ring",
            )));
        }
        let new_item = matches!(kind, Kind::Whole | Kind::First);
        self.wait_room(len + reserve, new_item, wait)?;
        self.commit(kind, data, completes)
    }

    /// Publishes the record of `len` bytes written at `tail` (with one more
    /// item than `put` if `completes`; the caller holds the put lock).
    #[inline]
    pub(super) fn finish(&self, put: u32, tail: u32, len: usize, completes: bool) {
        let reach = ((tail & (self.cap - 1)) as usize + len).min(self.cap as usize) as u32;
        if reach > self.h().deep.load(Relaxed) {
            self.h().deep.store(reach, Relaxed);
        }
        self.publish(
            put.wrapping_add(completes as u32),
            tail.wrapping_add(len as u32),
        );
    }

    /// Writes one record at `tail` and publishes it (with one more item if
    /// `completes`); the caller holds the put lock and saw room for it.
    pub(super) fn commit(&self, kind: Kind, data: &[u8], completes: bool) -> Res<()> {
        let len = record_len(data.len());
        // The put lock's holder alone writes `tail`: only alignment can be
        // wrong (room was checked against it just now).
        let (put, tail) = header::split(self.h().tail.load(SeqCst));
        if tail % 8 != 0 {
            return Err(Stop::Failed(Error::Protocol(format!(
                "misaligned queue tail {tail}"
            ))));
        }
        self.reserve(tail, len)?;
        self.write(tail, &encode_header(kind, data.len() as u32))?;
        self.write(tail.wrapping_add(8), data)?;
        self.finish(put, tail, len, completes);
        Ok(())
    }
}
