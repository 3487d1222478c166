//! The side channel of items holding OS handles: the queue's
//! `SOCK_SEQPACKET` pair, the tag that names each message, the put of a
//! `HANDLES` record and the take of its descriptors (see `README.md`,
//! *Items holding OS handles*, for what a kill leaves and who cleans up).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::aio::Side;
use super::core::{Core, Res, Stop, Wait};
use super::header::{self, record_len, Kind};
use super::wait::{acquire, Unlocked, SLICE};
use crate::codec::{self, WireFd};
use crate::error::{Error, Result};
use crate::sys::fdpass;

/// The socket pair that carries the descriptors of items holding OS
/// handles, shared by every handle of a queue: producers send on the
/// first, consumers receive on the second (see `README.md`).
#[derive(Clone)]
pub(super) struct Chan(Arc<[OwnedFd; 2]>);

impl Chan {
    pub(super) fn new() -> Result<Chan> {
        let (a, b) = fdpass::packet_pair().map_err(Error::io("cannot create a queue's socket"))?;
        Ok(Chan(Arc::new([a, b])))
    }
    pub(super) fn tx(&self) -> BorrowedFd<'_> {
        self.0[0].as_fd()
    }
    pub(super) fn rx(&self) -> BorrowedFd<'_> {
        self.0[1].as_fd()
    }
}

/// A descriptor serialised through the codec's side table.
struct FdRef<'a>(BorrowedFd<'a>);

impl Serialize for FdRef<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        codec::serialize_fd(self.0, s)
    }
}

impl Serialize for Chan {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        (FdRef(self.tx()), FdRef(self.rx())).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Chan {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let (WireFd(a), WireFd(b)) = Deserialize::deserialize(d)?;
        Ok(Chan(Arc::new([a, b])))
    }
}

/// The bytes before the encoded item in a `HANDLES` record: the tag of
/// its message on the socket (`u64`), the number of descriptors (`u32`)
/// and 4 zero bytes.
const HANDLES_PREFIX: usize = 16;

/// A tag for the socket message of the item put as number `seq`: the
/// low half tells it from a message a killed producer sent for the same
/// number but never published.
pub(super) fn handles_tag(seq: u32) -> u64 {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Relaxed).wrapping_mul(0x9e37_79b9);
    header::join(seq, n ^ std::process::id())
}

impl Core {
    /// Appends an item holding descriptors: one `HANDLES` record, its
    /// descriptors sent on the socket first, both under the put lock. The
    /// socket is never waited on holding the lock.
    pub(super) fn put_handles(&self, bytes: &[u8], fds: &[OwnedFd], wait: Wait) -> Res<()> {
        let len = record_len(HANDLES_PREFIX + bytes.len());
        if fds.len() > fdpass::MAX_FDS || len > self.chunk() {
            return Err(Stop::Failed(Error::InvalidArgument(format!(
                "a queue item holding OS handles takes at most {} handles and {} bytes",
                fdpass::MAX_FDS,
                self.chunk() - 8 - HANDLES_PREFIX
            ))));
        }
        let mut data = vec![0u8; HANDLES_PREFIX];
        data.extend_from_slice(bytes);
        data[8..12].copy_from_slice(&(fds.len() as u32).to_le_bytes());
        let fds = fdpass::borrow_all(fds);
        loop {
            if self.is_shut_down() {
                return Err(Stop::ShutDown);
            }
            let held = (acquire(&self.put_lock, wait)?, Unlocked(self, Side::Put));
            self.repair_put()?;
            self.pace(wait, true);
            self.wait_room(len, true, wait)?;
            let put = header::split(self.h().tail.load(SeqCst)).0;
            let tag = handles_tag(put);
            data[..8].copy_from_slice(&tag.to_le_bytes());
            let sent = fdpass::try_send_packet(self.chan.tx(), &tag.to_le_bytes(), &fds)
                .map_err(Error::io("cannot pass a queue item's OS handles"))?;
            if sent {
                return self.commit(Kind::Handles, &data, true);
            }
            // The socket is full of other items' handles: wait for the
            // consumers without the lock.
            drop(held);
            let deadline = match wait {
                Wait::Try => return Err(Stop::Busy),
                Wait::Until(d) => Some(d),
                Wait::Forever => Some(Instant::now() + SLICE),
            };
            let ready = fdpass::wait_writable(self.chan.tx(), deadline)
                .map_err(Error::io("cannot wait on a queue's socket"))?;
            if !ready && matches!(wait, Wait::Until(_)) {
                return Err(Stop::Timeout);
            }
        }
    }

    /// Reads the `HANDLES` record at `head` (`len` bytes): its item into
    /// `out`, its descriptors from the socket. Messages older than its
    /// tag (sent by producers killed before they published) are dropped;
    /// `None` if its message is gone (taken by a consumer killed before it
    /// freed the record: the item is lost with it).
    pub(super) fn take_handles(
        &self,
        head: u32,
        len: usize,
        out: &mut Vec<u8>,
    ) -> Res<Option<Vec<OwnedFd>>> {
        if len < HANDLES_PREFIX {
            return Err(Stop::Failed(Error::Protocol(format!(
                "queue record of handles of {len} bytes"
            ))));
        }
        self.append(head.wrapping_add(8), len, out)?;
        let tag = u64::from_le_bytes(out[..8].try_into().unwrap_or_default());
        out.drain(..HANDLES_PREFIX);
        let io = || Error::io("cannot take a queue item's OS handles");
        loop {
            let mut b = [0u8; 8];
            let Some(n) = fdpass::peek_packet(self.chan.rx(), &mut b).map_err(io())? else {
                return Ok(None);
            };
            let seen = if n == 8 { u64::from_le_bytes(b) } else { 0 };
            let ahead = header::split(seen).0.wrapping_sub(header::split(tag).0);
            if seen != tag && ahead != 0 && ahead < 1 << 31 {
                return Ok(None); // a later item's
            }
            let taken = fdpass::recv_tagged(self.chan.rx(), &mut b, true).map_err(io())?;
            let fds = taken.map(|(_, fds)| fds).unwrap_or_default();
            if seen == tag {
                return Ok(Some(fds));
            }
            drop(fds); // a dead producer's
        }
    }
}
