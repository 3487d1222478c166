//! A typed block of shared memory whose handle travels to children.
//!
//! Every shared object (locks, events, values...) is a `#[repr(C)]` header
//! of atomics and glibc objects at the start of an anonymous `memfd`
//! mapping, optionally followed by a data area. Within a process the block
//! is shared by `Clone` (an `Arc`); across processes by serialising it,
//! which sends the memfd beside the bytes; the receiver maps it again. The
//! memory dies with the last process that holds it: a crash leaks nothing.

use std::marker::PhantomData;
use std::os::fd::AsFd;
use std::sync::Arc;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::cells::Cells;
use super::plain::Plain;
use crate::codec::{self, WireFd};
use crate::error::{Error, Result};
use crate::sys::shm::SharedRegion;

/// Types that may live in shared memory and be used through `&T` by many
/// processes at once.
///
/// # Safety
///
/// Every bit pattern (all zeros in particular, and whatever another process
/// may have written) must be a valid `T`, and all mutation must go through
/// atomics or `UnsafeCell`s guarded by a cross-process protocol.
pub(crate) unsafe trait ShmSafe: Sync {}

/// Where the data area starts: after the header, cache-line aligned.
const fn data_offset<T>() -> usize {
    (std::mem::size_of::<T>() + 63) & !63
}

/// A `T` header (and `data_len` bytes after it) in shared memory.
pub(crate) struct ShmBlock<T> {
    region: Arc<SharedRegion>,
    _type: PhantomData<T>,
}

impl<T> Clone for ShmBlock<T> {
    fn clone(&self) -> Self {
        ShmBlock {
            region: self.region.clone(),
            _type: PhantomData,
        }
    }
}

impl<T: ShmSafe> ShmBlock<T> {
    /// A zero-filled block with room for `data_len` bytes after the header,
    /// all reserved ([`Error::NoSpace`] if the memory is not there).
    pub(crate) fn create(name: &str, data_len: usize) -> Result<Self> {
        let len = data_offset::<T>().checked_add(data_len).ok_or_else(|| {
            Error::InvalidArgument(format!("{data_len} bytes of shared memory is too large"))
        })?;
        let region = SharedRegion::create(name, len).map_err(Error::shm_create(
            "cannot create shared memory",
            name,
            len,
        ))?;
        Ok(ShmBlock {
            region: Arc::new(region),
            _type: PhantomData,
        })
    }

    fn from_region(region: SharedRegion) -> std::result::Result<Self, String> {
        if region.len() < data_offset::<T>() {
            return Err(format!(
                "shared block of {} bytes is smaller than its header",
                region.len()
            ));
        }
        Ok(ShmBlock {
            region: Arc::new(region),
            _type: PhantomData,
        })
    }

    /// The header.
    pub(crate) fn header(&self) -> &T {
        // SAFETY: the mapping is at least `data_offset::<T>()` bytes long
        // (checked at creation and on receipt), page-aligned (so aligned for
        // `T`), lives as long as `self.region`, and `T: ShmSafe` makes any
        // content a valid `T` usable through a shared reference.
        unsafe { &*self.region.ptr().cast::<T>() }
    }
}

impl<T> ShmBlock<T> {
    /// `len` cells of `U` in the data area, after checking they fit.
    pub(crate) fn cells<U: Plain>(&self, len: usize) -> std::result::Result<Cells<U>, String> {
        Cells::new(self.region.clone(), data_offset::<T>(), len)
    }
}

// SAFETY: a zero-sized header has no bytes to mutate.
unsafe impl ShmSafe for () {}

impl<T> Serialize for ShmBlock<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        codec::serialize_fd(self.region.as_fd(), s)
    }
}

impl<'de, T: ShmSafe> Deserialize<'de> for ShmBlock<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let WireFd(fd) = WireFd::deserialize(d)?;
        let region = SharedRegion::open(fd).map_err(D::Error::custom)?;
        Self::from_region(region).map_err(D::Error::custom)
    }
}
