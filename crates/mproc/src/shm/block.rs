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
use std::sync::atomic::{
    AtomicI32, AtomicI64, AtomicU16, AtomicU32, AtomicU64, AtomicU8, AtomicUsize,
};
use std::sync::Arc;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::cells::Cells;
use super::plain::Plain;
use crate::codec::{self, WireFd};
use crate::error::{Error, Result};
use crate::sys::robust::RobustMutex;
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
    /// The block's file (device, inode): the same for every mapping of it
    /// in every process, and no other live file's.
    pub(crate) fn identity(&self) -> std::io::Result<(u64, u64)> {
        self.region.identity()
    }

    /// `len` cells of `U` in the data area, after checking they fit.
    pub(crate) fn cells<U: Plain>(&self, len: usize) -> std::result::Result<Cells<U>, String> {
        Cells::new(self.region.clone(), data_offset::<T>(), len)
    }
}

// SAFETY: a zero-sized header has no bytes to mutate.
unsafe impl ShmSafe for () {}

/// The parts a shared state block is built of ([`shm_state!`] checks every
/// field against this list): each is `Sync`, every bit pattern is a value
/// of it, and it is changed only through its own atomic operations.
macro_rules! shm_safe_atomics {
    ($($atomic:ty),*) => {$(
        // SAFETY: an atomic integer has the layout of its integer, whose
        // every bit pattern is a value, and is mutated only atomically
        // through `&self` (a race with another process is an atomic race).
        unsafe impl ShmSafe for $atomic {}
    )*};
}
shm_safe_atomics!(
    AtomicU8,
    AtomicU16,
    AtomicU32,
    AtomicU64,
    AtomicI32,
    AtomicI64,
    AtomicUsize
);

// SAFETY: plain bytes (a block's padding): every pattern is a value, and
// a `&u8` cannot mutate (no interior mutability), so no one in this process
// writes it through the block; the padding of a state block is never
// written after the block is made (zero-filled).
unsafe impl ShmSafe for u8 {}

// SAFETY: an array of `ShmSafe` elements: its bytes are the elements',
// with no padding between them, so the elements' promises cover it.
unsafe impl<T: ShmSafe, const N: usize> ShmSafe for [T; N] {}

// SAFETY: `RobustMutex` (`sys/robust.rs`) is three atomics (a `u64` and
// two `u32`s, `#[repr(C)]`, no padding) changed only by atomic operations
// of its owner protocol; every bit pattern is a state it tolerates (a
// stale or foreign owner reads as a dead owner).
unsafe impl ShmSafe for RobustMutex {}

/// Declares a `#[repr(C)]` struct that lives in shared memory (the header
/// of a [`ShmBlock`]) and makes it [`ShmSafe`] after checking, at compile
/// time, that every field is `ShmSafe` itself (atomics, byte padding,
/// arrays of them, other declared state). The layers above write their
/// state blocks with it instead of an `unsafe impl` of their own.
///
/// ```ignore
/// shm_state! {
///     struct EventState {
///         word: AtomicU32,
///         sleepers: AtomicU32,
///     }
/// }
/// ```
macro_rules! shm_state {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $($(#[$fmeta:meta])* $fvis:vis $field:ident : $ty:ty),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[repr(C)]
        $vis struct $name {
            $($(#[$fmeta])* $fvis $field: $ty),*
        }

        const _: () = {
            const fn every_field_is_shm_safe<T: $crate::shm::block::ShmSafe>() {}
            $(every_field_is_shm_safe::<$ty>();)*
        };

        #[allow(unsafe_code)] // the substrate's own promise, checked above
        // SAFETY: `#[repr(C)]` and every field `ShmSafe` (the `const`
        // above does not compile otherwise): every bit pattern of the
        // struct is a value (padding bytes included: `repr(C)` padding is
        // never read as a field), it is `Sync`, and all mutation goes
        // through the fields' atomics.
        unsafe impl $crate::shm::block::ShmSafe for $name {}
    };
}
pub(crate) use shm_state;

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
