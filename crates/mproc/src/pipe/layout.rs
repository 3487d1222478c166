//! The shared region of a pipe: where everything lives, and its header.
//!
//! One memfd per pipe, created by `Pipe::new` and sealed against resizing;
//! both ends map it (an end sent to another process carries a duplicate of
//! the memfd and maps it there).
//!
//! ```text
//! offset             size   contents
//! 0                  128    region header (below)
//! 128 + 512 * r      512    control block of ring r (see `ring.rs`)
//! 4096 + cap * r     cap    data of ring r
//! ```
//!
//! A duplex pipe has two rings, a one-way pipe one. End `e` (0 or 1) reads
//! ring `e` and writes ring `1 - e`: end 0 of a one-way pipe only reads,
//! end 1 only writes, both on ring 0.
//!
//! # Region header
//!
//! | word        | offset | written by            | meaning                                              |
//! |-------------|--------|-----------------------|------------------------------------------------------|
//! | `magic`     | 0      | creator, once         | [`MAGIC`]: this is a pipe region                     |
//! | `version`   | 4      | creator, once         | [`VERSION`] of this layout                           |
//! | `rings`     | 8      | creator, once         | 1 (one-way) or 2 (duplex)                            |
//! | `cap`       | 12     | creator, once         | bytes per ring: a power of two, 4 KiB to 1 GiB       |
//! | `closes[e]` | 16+4e  | every copy of end `e` | bumped when one copy of end `e` closes (a hint only) |
//!
//! An opener reads the first four words once, checks them against the
//! region's size and keeps its own copy: a peer that rewrites them later
//! changes nothing. `closes[e]` tells the other end that a copy of `e` went
//! away, so that it looks at the socket, whose hang-up is the truth (it
//! also covers a process killed before it could bump anything).

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};

use super::ring::Ring;
use crate::error::{Error, Result};
use crate::sys::shm::{reserve, SharedRegion};

/// "mprg": a pipe region.
pub(super) const MAGIC: u32 = u32::from_le_bytes(*b"mprg");
/// The layout's version.
pub(super) const VERSION: u32 = 2;
/// Bytes per ring in the pipes this process creates. Rings from 256 KiB to
/// 1 MiB measured the same; every page of a ring becomes resident once the
/// indices have gone round, so the smaller the better.
pub(super) const RING_CAP: u32 = 512 << 10;

const MAGIC_AT: usize = 0;
const VERSION_AT: usize = 4;
const RINGS_AT: usize = 8;
const CAP_AT: usize = 12;
const CLOSES_AT: usize = 16;
const CONTROL_AT: usize = 128;
/// Bytes of one ring's control block: four 128-byte lines.
pub(super) const CONTROL_LEN: usize = 512;
const DATA_AT: usize = 4096;
const MIN_CAP: u32 = 4096;
const MAX_CAP: u32 = 1 << 30;

/// A mapped pipe region and its checked geometry.
pub(super) struct Shared {
    region: SharedRegion,
    rings: usize,
    cap: u32,
}

impl Shared {
    /// A new region with `rings` rings (1 or 2) of `cap` bytes each. Only
    /// the header page is reserved now ([`Error::NoSpace`] if the memory
    /// is not there); the rings' writers reserve their pages as they first
    /// reach them ([`reserve_ring`](Self::reserve_ring)).
    pub(super) fn create(rings: usize, cap: u32) -> Result<Self> {
        debug_assert!((1..=2).contains(&rings) && cap.is_power_of_two());
        let len = DATA_AT + rings * cap as usize;
        let region = SharedRegion::create_reserving("mproc-pipe", len, DATA_AT)
            .map_err(Error::shm_create("cannot create a pipe", "a pipe", DATA_AT))?;
        let word = |at| region.atomic_u32(at);
        word(MAGIC_AT).store(MAGIC, SeqCst);
        word(VERSION_AT).store(VERSION, SeqCst);
        word(RINGS_AT).store(rings as u32, SeqCst);
        word(CAP_AT).store(cap, SeqCst);
        Ok(Shared { region, rings, cap })
    }

    /// Maps a region received from another process, checking its header.
    pub(super) fn open(fd: OwnedFd) -> Result<Self, String> {
        let region = SharedRegion::open(fd).map_err(|e| format!("cannot map a pipe: {e}"))?;
        if region.len() < DATA_AT {
            return Err(format!("a pipe region of {} bytes", region.len()));
        }
        let word = |at| region.atomic_u32(at).load(SeqCst);
        let (magic, version) = (word(MAGIC_AT), word(VERSION_AT));
        if magic != MAGIC || version != VERSION {
            return Err(format!(
                "not a pipe region (magic {magic:#x}, version {version})"
            ));
        }
        let (rings, cap) = (word(RINGS_AT) as usize, word(CAP_AT));
        let valid_cap = cap.is_power_of_two() && (MIN_CAP..=MAX_CAP).contains(&cap);
        if !(1..=2).contains(&rings) || !valid_cap {
            return Err(format!("bad pipe geometry: {rings} rings of {cap} bytes"));
        }
        if region.len() < DATA_AT + rings * cap as usize || !region.is_size_sealed() {
            return Err("pipe region too small or not sealed".into());
        }
        Ok(Shared { region, rings, cap })
    }

    /// The number of rings (1: one-way, 2: duplex).
    pub(super) fn rings(&self) -> usize {
        self.rings
    }

    /// Ring `r`, which must exist.
    pub(super) fn ring(&self, r: usize) -> Ring<'_> {
        assert!(r < self.rings, "pipe ring {r} of {}", self.rings);
        let control = CONTROL_AT + r * CONTROL_LEN;
        let data = DATA_AT + r * self.cap as usize;
        Ring::new(&self.region, control, data, self.cap)
    }

    /// Reserves bytes `from..to` of ring `r`'s data area (see
    /// [`reserve`]): [`Error::NoSpace`] if the memory is not there.
    pub(super) fn reserve_ring(&self, r: usize, from: u32, to: u32) -> Result<()> {
        assert!(r < self.rings && from <= to && to <= self.cap);
        let at = (DATA_AT + r * self.cap as usize + from as usize) as u64;
        let len = (to - from) as usize;
        reserve(&self.region, at, len as u64).map_err(Error::shm_create(
            "cannot reserve a pipe's ring",
            "a pipe's ring",
            len,
        ))
    }

    /// Bytes per ring.
    pub(super) fn cap(&self) -> u32 {
        self.cap
    }

    /// `closes[end]`.
    pub(super) fn closes(&self, end: usize) -> &AtomicU32 {
        assert!(end < 2);
        self.region.atomic_u32(CLOSES_AT + 4 * end)
    }

    /// The memfd, for sending the region to another process.
    pub(super) fn region(&self) -> &SharedRegion {
        &self.region
    }
}
