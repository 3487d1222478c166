//! The get path: the consumer's state machine over the records of the
//! ring ([`At`]), the wait for data, and the repair of an item whose
//! producer died streaming it (see `README.md`, *A get*). Items holding OS
//! handles are taken by `handles.rs`.

use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering::{Acquire, Relaxed, SeqCst};
use std::time::Instant;

use super::aio::Side;
use super::core::{Core, Res, Stop, Wait};
use super::header::{self, record_len, Kind};
use super::wait::{acquire, Unlocked, SLICE};

/// Looks at `tail` a consumer that found no record makes at once, before
/// it spins and sleeps.
const QUICK_LOOKS: u32 = 2;

/// Where the get-lock holder is in the stream of records. Every record is
/// freed as soon as it is read (one store of `head`, counting the item at
/// its `WHOLE`, `LAST` or `HANDLES`), whatever the state; the state says
/// what its payload is for and what comes next:
///
/// | state      | `WHOLE`, `HANDLES`  | `FIRST`            | `MORE`    | `LAST`              | `ABORT`             |
/// |------------|---------------------|--------------------|-----------|---------------------|---------------------|
/// | `Between`  | the item: return    | collect → `InItem` | dropped   | dropped             | —                   |
/// | `InItem`   | void what was collected, then as `Between` | void, then as `Between` | collect | collect: return | void → `Between` |
/// | `Skipping` | as `Between`        | as `Between`       | dropped   | → `Between` (the item is lost) | → `Between` |
///
/// A `HANDLES` whose message went with a killed consumer is dropped, as
/// its item is. A `PAD` is freed in any state and changes nothing. `get_open` (in the
/// header) is 1 from a `FIRST` to its `LAST` or `ABORT` (and cleared by a
/// `HANDLES`), so that a consumer killed `InItem` leaves the next one
/// `Skipping`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum At {
    /// Between items: the next record should start one (`WHOLE`, `FIRST`
    /// or `HANDLES`).
    Between,
    /// Inside an item streamed in chunks, collecting them into `out` since
    /// its `FIRST`. The wait for the next chunk ignores the call's `wait`
    /// and shutdown (its producer finishes or voids the item) and looks at
    /// the producer every [`SLICE`].
    InItem,
    /// Skipping the rest of an item that a consumer killed inside it left
    /// (`get_open` was 1 when the lock was taken): its `MORE`s, up to its
    /// `LAST` (which counts it, lost) or `ABORT`, or until an item starts.
    Skipping,
}

impl Kind {
    /// Whether a record of this kind starts an item: anything collected
    /// before it is a partial item without its end, void.
    #[inline]
    fn starts_item(self) -> bool {
        matches!(self, Kind::Whole | Kind::First | Kind::Handles)
    }
}

impl Core {
    /// Takes the oldest item's bytes into `out` (cleared first), within
    /// `wait`; returns the descriptors they refer to.
    pub(super) fn get(&self, out: &mut Vec<u8>, wait: Wait) -> Res<Vec<OwnedFd>> {
        let _held = (acquire(&self.get_lock, wait)?, Unlocked(self, Side::Get));
        self.get_locked(out, wait)
    }

    /// [`get`](Core::get) with the get lock held: runs [`At`] over the
    /// records until an item is complete.
    pub(super) fn get_locked(&self, out: &mut Vec<u8>, wait: Wait) -> Res<Vec<OwnedFd>> {
        // A consumer that died inside a chunked item left the rest of it.
        let mut at = match self.h().get_open.load(SeqCst) {
            0 => At::Between,
            _ => {
                crate::observe::warn_event!(
                    "queue: the rest of an item whose consumer died getting it is skipped"
                );
                At::Skipping
            }
        };
        out.clear();
        loop {
            let Some((word, used)) = self.wait_data(at == At::InItem, wait)? else {
                self.look_at_producer()?;
                continue;
            };
            // The get lock's holder writes `head`, and a producer that
            // frees a `PAD` (checked by `wait_data`).
            let (got, head) = header::split(word);
            let (kind, len) = self.record_at(head, used)?;
            let next = head.wrapping_add(record_len(len as usize) as u32);
            let payload = head.wrapping_add(8);
            if kind.starts_item() {
                at = At::Between;
                out.clear(); // a partial item without its end: void
            }
            match (at, kind) {
                (_, Kind::Pad) => self.free(got, next),
                (_, Kind::Handles) => {
                    let fds = self.take_handles(head, len as usize, out)?;
                    self.free(got.wrapping_add(1), next);
                    self.h().get_open.store(0, SeqCst);
                    match fds {
                        Some(fds) => return Ok(fds),
                        None => out.clear(), // lost with a killed consumer
                    }
                }
                (_, Kind::Whole) => {
                    self.append(payload, len as usize, out)?;
                    self.free(got.wrapping_add(1), next);
                    return Ok(Vec::new());
                }
                (_, Kind::First) => {
                    self.append(payload, len as usize, out)?;
                    self.free(got, next);
                    self.h().get_open.store(1, SeqCst);
                    at = At::InItem;
                }
                (At::InItem, Kind::More) => {
                    self.append(payload, len as usize, out)?;
                    self.free(got, next);
                }
                (At::InItem, Kind::Last) => {
                    self.append(payload, len as usize, out)?;
                    self.free(got.wrapping_add(1), next);
                    self.h().get_open.store(0, SeqCst);
                    return Ok(Vec::new());
                }
                (At::Between | At::Skipping, Kind::More) => self.free(got, next),
                (At::Between | At::Skipping, Kind::Last) => {
                    self.free(got.wrapping_add(1), next);
                    self.h().get_open.store(0, SeqCst);
                    at = At::Between;
                }
                (_, Kind::Abort) => {
                    self.free(got, next);
                    self.h().get_open.store(0, SeqCst);
                    out.clear();
                    at = At::Between;
                }
            }
        }
    }

    /// Waits until a record is published: `Some((head word, used bytes))`
    /// from one reading of `head`, or `None`
    /// after a slice when inside a chunked item (`in_item`), which ignores
    /// `wait` and shutdown: its producer finishes or voids it.
    fn wait_data(&self, in_item: bool, wait: Wait) -> Res<Option<(u64, u32)>> {
        let check = || {
            let word = self.h().head.load(Acquire);
            let (got, head) = header::split(word);
            let (put, tail) = header::split(self.seen_tail.load(Relaxed));
            let hint = tail.wrapping_sub(head);
            let behind = put.wrapping_sub(got) > 1 << 31;
            if hint > 0 && hint <= self.cap && head % 8 == 0 && !behind {
                return Ok(Some((word, hint)));
            }
            let (put, tail, got, head, used, _) = self.indices()?;
            self.seen_tail.store(header::join(put, tail), Relaxed);
            if used == 0 && !in_item && self.is_shut_down() {
                return Err(Stop::ShutDown);
            }
            Ok((used > 0).then_some((header::join(got, head), used)))
        };
        let until = match (in_item, wait) {
            (true, _) => Some(Instant::now() + SLICE),
            (false, Wait::Try) => return check()?.ok_or(Stop::Busy).map(Some),
            (false, Wait::Until(d)) => Some(d),
            (false, Wait::Forever) => None,
        };
        // Look before `wait_on` (whose first look also reads `data_seq`,
        // on `tail`'s line, and whose spin then starts): a stream's next
        // record is often published by the second look. Measured on the
        // small-item stream: going to `wait_on` at once halves the rate.
        // A longer spin of its own here (256 looks at `tail`, a `pause`
        // apart) made the round trip 4x slower on a loaded machine: the
        // waits it left to `wait_on` were the long ones, whose spin then
        // failed more often and shrank its adaptive budget, so the
        // consumer slept (and was woken by a system call) far more often.
        for _ in 0..QUICK_LOOKS {
            if let Some(found) = check()? {
                return Ok(Some(found));
            }
        }
        let (seq, sleepers) = (&self.h().data_seq, &self.h().get_sleepers);
        match self.wait_on(seq, sleepers, until, check)? {
            Some(found) => Ok(Some(found)),
            None if in_item => Ok(None),
            None => Err(Stop::Timeout),
        }
    }

    /// Inside a chunked item and nothing came for a slice: if the put lock
    /// is free (its holder died, or a producer met the void), void the item
    /// on the dead producer's behalf.
    fn look_at_producer(&self) -> Res<()> {
        match acquire(&self.put_lock, Wait::Try) {
            Ok(held) => {
                let _held = (held, Unlocked(self, Side::Put));
                self.repair_put()
            }
            Err(Stop::Busy) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
