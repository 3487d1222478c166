//! Where the records go in a large ring (see `README.md`, *Where the
//! records go*): pacing a producer to keep its consumers close, starting
//! the ring again with a `PAD` (`rewind`), giving the pages of a backlog
//! back, and reserving the ring's memory before it is written. All of it
//! runs under the put lock.

use std::sync::atomic::Ordering::{Acquire, Relaxed, SeqCst};
use std::time::{Duration, Instant};

use super::core::{Core, Wait};
use super::header::{self, encode_header, Kind};
use crate::error::{Error, Result};
use crate::sys::ring::Ring;

/// A producer that has written this far into a large ring starts again at
/// its beginning as soon as the queue is empty (a `PAD` record covers the
/// rest), so that a queue its consumers keep up with stays in this much
/// memory, warm in the CPUs' caches.
pub(super) const HOT: u32 = 256 << 10;
/// A producer of items streamed in chunks drains the queue and starts the
/// ring again past this (below [`GIVE_BACK`], so that a stream of large
/// items reuses the same pages).
const FAR: u32 = 6 << 20;
/// Before a new item streamed in chunks, a producer more than this many
/// bytes ahead of its consumers waits (while they make progress) until no
/// more than half of it is queued.
const LEAD: u32 = 2 << 20;
/// [`STALL`] for a producer of chunked items: its consumer frees a whole
/// chunk (256 KiB) at a time.
const STALL_LARGE: Duration = Duration::from_millis(1);
/// Before [`HOT`], a producer of small items whose copy of `head` is this
/// many bytes behind reads it again, and waits (as for [`HOT`]) while more
/// than half as many bytes are queued.
const SOFT: u32 = 64 << 10;
/// Starting again from beyond this offset gives the pages written past
/// [`HOT`] back to the system, so that an idle queue does not keep the
/// memory of its largest backlog.
pub(super) const GIVE_BACK: u32 = 8 << 20;
/// Past [`HOT`], how long a producer waits for the queue to drain while
/// its consumers make progress ([`STALL`] without progress ends the wait
/// sooner). It never sleeps, and only bounds how far ahead of its consumers
/// a producer runs while they keep up.
const DRAIN_MAX: Duration = Duration::from_millis(2);
const STALL: Duration = Duration::from_micros(20);
/// `pause`s between two looks at `head` of a producer waiting for a drain
/// (about a microsecond where measured; a `pause` takes 10 to 140 cycles,
/// by CPU): its consumer frees records one by one, and each look pulls
/// `head`'s cache line away from it, so that its next store of `head`
/// waits for the line.
const DRAIN_LOOK: u32 = 128;
/// After a wait for a drain that failed, a producer looks again only after
/// this many more bytes, doubled at each failure up to [`LOOK_MAX`].
pub(super) const LOOK_MIN: u32 = 4 << 10;
pub(super) const LOOK_MAX: u32 = 1 << 20;
/// The ring's memory is reserved (`fallocate`) this much at a time up to
/// [`HOT`], then [`RESERVE_STEP_FAR`] at a time.
const RESERVE_STEP: u32 = 64 << 10;
const RESERVE_STEP_FAR: u32 = 1 << 20;

impl Core {
    /// Paces a producer about to write a new item (`small`: in one record)
    /// into a large ring (the caller holds the put lock). Past [`HOT`], it
    /// waits for the queue to drain (a large item: only past [`FAR`]) and
    /// starts the ring again at its beginning; before, a small item whose
    /// producer last saw `head` more than [`SOFT`] bytes ago looks again,
    /// and waits while more than half of that is queued (so that `head`,
    /// stored by the consumer for every item, is read at most once per
    /// `SOFT / 2` bytes outside a wait). Each wait spins, only
    /// while the consumers make progress (none for a `Try`): a consumer
    /// that keeps up is kept close, so the records it reads are still in
    /// the caches, and one that does not costs the producer a few
    /// microseconds now and then.
    pub(super) fn pace(&self, wait: Wait, small: bool) {
        if self.cap < 4 * HOT {
            return;
        }
        let (put, tail) = header::split(self.h().tail.load(Relaxed));
        let pos = tail & (self.cap - 1);
        let far = pos >= HOT;
        if tail % 8 != 0 {
            return;
        }
        let seen = self.seen_head.load(Relaxed) as u32;
        let fresh = self.seen_laps.load(Relaxed) == self.h().laps.load(Relaxed);
        let patient = !matches!(wait, Wait::Try);
        if !small {
            // An item in chunks: its consumer reads one chunk while the
            // next is written, so the producer keeps at most `LEAD` bytes
            // ahead (a wait for a full drain would stop that flow), and
            // drains and starts again only far out. Unpaced, a producer of
            // large items ran hundreds of MiB ahead of its consumer: every
            // page of that backlog was reserved, faulted in by both
            // processes, and punched again at the next start (a quarter of
            // the time of a stream of 1 MiB items went to page faults).
            if pos >= FAR {
                if let Some(got) = self.drain_to(tail, 0, 0, patient, STALL_LARGE) {
                    self.rewind(put, tail, got);
                }
            } else if !fresh || tail.wrapping_sub(seen) > LEAD {
                let _ = self.drain_to(tail, LEAD, LEAD / 2, patient, STALL_LARGE);
            }
            return;
        }
        if !far && fresh && tail.wrapping_sub(seen) <= SOFT {
            return;
        }
        let ahead = self.next_look.load(Relaxed).wrapping_sub(tail);
        if ahead != 0 && ahead <= LOOK_MAX {
            return; // waited in vain not long ago
        }
        let got = self
            .drain_to(tail, SOFT / 2, SOFT / 2, patient, STALL)
            .and_then(|got| match far {
                true => self.drain_to(tail, 0, 0, patient, STALL),
                false => Some(got),
            });
        let Some(got) = got else {
            let step = self.look_step.load(Relaxed).clamp(LOOK_MIN, LOOK_MAX);
            self.next_look.store(tail.wrapping_add(step), Relaxed);
            self.look_step.store((step * 2).min(LOOK_MAX), Relaxed);
            return;
        };
        self.look_step.store(LOOK_MIN, Relaxed);
        if far {
            self.rewind(put, tail, got);
        }
    }

    /// Writes a `PAD` from `tail` (the caller holds the put lock, and every
    /// record up to `tail` is consumed, `got` items in all) to the end of
    /// the ring, frees it, and gives back the pages written far out.
    fn rewind(&self, put: u32, tail: u32, got: u32) {
        let pos = tail & (self.cap - 1);
        let pad = self.cap - pos;
        let end = tail.wrapping_add(pad);
        let header = encode_header(Kind::Pad, pad - 8);
        if self.reserve(tail, 8).is_err() || self.write(tail, &header).is_err() {
            return; // nothing published: the next record goes at `tail`
        }
        let laps = self.h().laps.load(Relaxed).wrapping_add(1);
        self.h().laps.store(laps, Relaxed);
        self.h().tail.store(header::join(put, end), SeqCst);
        // Free the `PAD` at once, unless a consumer already did (it then
        // stored this same word).
        let (from, to) = (header::join(got, tail), header::join(got, end));
        let _ = self.h().head.compare_exchange(from, to, SeqCst, Relaxed);
        self.seen_head.store(to, Relaxed);
        self.seen_laps.store(laps, Relaxed);
        self.next_look.store(end, Relaxed);
        self.give_back(pos);
    }

    /// If more than `enough` bytes up to `tail` are queued, spins (while
    /// the consumers make progress, `head` never still for `stall`; at most
    /// [`DRAIN_MAX`] or 20 `stall`s; not at all unless `patient`) until no
    /// more than `target` are: `Some(items got)`, or `None`.
    fn drain_to(
        &self,
        tail: u32,
        enough: u32,
        target: u32,
        patient: bool,
        stall: Duration,
    ) -> Option<u32> {
        let look = |bound: u32| {
            let word = self.h().head.load(Acquire);
            let (got, head) = header::split(word);
            let used = tail.wrapping_sub(head);
            self.seen_head.store(word, Relaxed);
            self.seen_laps.store(self.h().laps.load(Relaxed), Relaxed);
            (used <= bound).then_some(got)
        };
        if let Some(got) = look(enough) {
            return Some(got);
        }
        if !patient {
            return None;
        }
        let start = Instant::now();
        let (mut last, mut moved) = (self.seen_head.load(Relaxed), start);
        loop {
            for _ in 0..4 {
                for _ in 0..DRAIN_LOOK {
                    std::hint::spin_loop();
                }
                if let Some(got) = look(target) {
                    return Some(got);
                }
            }
            let head = self.seen_head.load(Relaxed);
            let now = Instant::now();
            if head != last {
                (last, moved) = (head, now);
            } else if now - moved > stall {
                return None;
            }
            // At most `DRAIN_MAX`, or 20 stalls (the large items' bound).
            if now - start > DRAIN_MAX.max(stall * 20) {
                return None;
            }
        }
    }

    /// Gives back the pages written past [`HOT`] if records went beyond
    /// [`GIVE_BACK`], all but the page of the `PAD` at `pos` (a consumer
    /// may still be reading it). Nothing past [`HOT`] is queued.
    fn give_back(&self, pos: u32) {
        const PAGE: u32 = 4096;
        let deep = self.h().deep.load(Relaxed).max(pos + 8).min(self.cap);
        if deep <= GIVE_BACK {
            return;
        }
        self.h().deep.store(0, Relaxed);
        // Lowered before the punch: killed in between, this producer
        // leaves pages backed that need not be, never the other way round.
        let reserved = &self.h().reserved;
        reserved.store(reserved.load(Relaxed).min(HOT), Relaxed);
        let (pad_page, after) = (pos / PAGE * PAGE, (pos / PAGE + 1) * PAGE);
        let ring = &self.ring.0;
        if pad_page > HOT {
            ring.punch_hole(HOT as usize, (pad_page - HOT) as usize);
        }
        let end = deep.div_ceil(PAGE) * PAGE;
        if end > after {
            ring.punch_hole(after as usize, (end - after) as usize);
        }
    }

    /// Backs the ring's memory up to the end of `len` bytes at `at` before
    /// they are written (the caller holds the put lock): a write into a
    /// page of a `memfd` that the system cannot back kills the writer
    /// (`SIGBUS`, or the OOM killer) from safe code, where `fallocate`
    /// says `ENOSPC` or `ENOMEM`, and the `put` returns
    /// [`Error::NoSpace`] with nothing written.
    ///
    /// `reserved` (in the header) is a high-water mark: every byte of the
    /// ring below it is backed. It grows in steps ([`RESERVE_STEP`], so the
    /// call stays off the per-item path), from 0 up (a record that wraps
    /// reaches the ring's end, so its second piece, at the start, is below
    /// the mark), and is lowered to [`HOT`] before `give_back` punches the
    /// pages past it. A peer that garbles it can only make this process
    /// fault, as one that punches holes could.
    pub(super) fn reserve(&self, at: u32, len: usize) -> Result<()> {
        let pos = at & (self.cap - 1);
        let reach = (pos as usize + len).min(self.cap as usize) as u32;
        let have = self.h().reserved.load(Relaxed).min(self.cap);
        if reach <= have {
            return Ok(());
        }
        let step = if reach <= HOT {
            RESERVE_STEP
        } else {
            RESERVE_STEP_FAR
        };
        let mut to = reach.next_multiple_of(step).min(self.cap);
        let mut r = reserve_ring(&self.ring.0, have, to - have);
        if r.is_err() && to > reach {
            to = reach; // no room for a step: perhaps for this record
            r = reserve_ring(&self.ring.0, have, to - have);
        }
        match r {
            Ok(()) => {
                self.h().reserved.store(to, Relaxed);
                Ok(())
            }
            Err(e) => Err(Error::shm_create(
                "cannot reserve a queue's memory",
                "a queue's ring",
                (to - have) as usize,
            )(e)),
        }
    }
}

/// `fallocate` of `len` ring bytes at `pos`; in unit tests, a failure can
/// be injected (the kernel's `ENOSPC` is hard to provoke for a `memfd`,
/// whose filesystem has no size limit, as root).
fn reserve_ring(ring: &Ring, pos: u32, len: u32) -> std::io::Result<()> {
    #[cfg(test)]
    if let Some(errno) = super::core::tests::FAIL_RESERVE.with(|f| f.get()) {
        return Err(std::io::Error::from_raw_os_error(errno));
    }
    ring.reserve(pos as usize, len as usize)
}
