//! `len` plain values at a place in a shared mapping.

use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::Arc;

use super::plain::{self, Plain, MAX_ALIGN};
use crate::sys::shm::SharedRegion;

/// `len` values of `T` in a shared mapping.
///
/// Invariant: no reference into the cells exists in this process except
/// one made by [`Cells::slice_mut`], whose only caller is a lend of
/// `guarded.rs` (the lock held and pinned, the cells marked lent); the
/// owners of cells that are never locked (the raw types) never call it.
/// Other processes (and, for the raw types, other threads) may write the
/// bytes at any time: every other access is a relaxed atomic copy
/// (`plain::read`/`plain::write`).
pub(crate) struct Cells<T> {
    inner: Arc<Inner>,
    _type: PhantomData<T>,
}

struct Inner {
    /// Keeps the mapping alive.
    _region: Arc<SharedRegion>,
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: `Inner` holds a pointer into a mapping that lives as long as
// `_region` (itself `Send + Sync`); all access to the pointee follows the
// invariant above, which makes it safe from any thread.
unsafe impl Send for Inner {}
// SAFETY: as above.
unsafe impl Sync for Inner {}

impl<T> Clone for Cells<T> {
    fn clone(&self) -> Self {
        Cells {
            inner: self.inner.clone(),
            _type: PhantomData,
        }
    }
}

impl<T> Cells<T> {
    fn ptr(&self) -> *mut T {
        self.inner.ptr.as_ptr().cast()
    }

    /// The cells as a slice.
    ///
    /// # Safety
    ///
    /// The caller holds the lock that guards the cells (so no other process
    /// writes them), has checked them ([`check_valid`](Self::check_valid))
    /// and marked them lent (so no other reference of this process exists),
    /// and the slice lives no longer than the lock and the mark.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn slice_mut(&self) -> &mut [T] {
        // SAFETY: bounds and alignment were checked in `new`, validity by
        // the caller; the lock keeps other processes out and the lent
        // mark other references of this process (caller).
        unsafe { std::slice::from_raw_parts_mut(self.ptr(), self.len()) }
    }

    /// The number of cells.
    pub(crate) fn len(&self) -> usize {
        self.inner.len
    }
}

impl<T: Plain> Cells<T> {
    /// The cells at `offset` in `region`, after checking that they fit and
    /// are aligned.
    pub(crate) fn new(
        region: Arc<SharedRegion>,
        offset: usize,
        len: usize,
    ) -> Result<Self, String> {
        let size = std::mem::size_of::<T>();
        let align = std::mem::align_of::<T>();
        let bytes = len.checked_mul(size).ok_or("array too large")?;
        if align > MAX_ALIGN {
            return Err(format!(
                "{} needs an alignment of {align}; shared data is aligned to {MAX_ALIGN}",
                std::any::type_name::<T>()
            ));
        }
        if offset > region.len() || bytes > region.len() - offset {
            return Err(format!(
                "{len} x {size} bytes do not fit in a shared block of {} bytes",
                region.len()
            ));
        }
        // SAFETY: `offset <= region.len()`: in bounds or one past the end.
        let p = unsafe { region.ptr().add(offset) };
        if (p as usize) % align != 0 {
            return Err("misaligned shared data".into());
        }
        let ptr = NonNull::new(p).ok_or("null shared data")?;
        Ok(Cells {
            inner: Arc::new(Inner {
                _region: region,
                ptr,
                len,
            }),
            _type: PhantomData,
        })
    }

    /// The value at `i` (checked by the caller: `i < len`).
    pub(crate) fn read(&self, i: usize) -> T {
        assert!(i < self.len());
        // SAFETY: in bounds and aligned (checked in `new`); by the type's
        // invariant no reference of this process aliases it; racing
        // writers are why the load is atomic.
        unsafe { plain::read(self.ptr().add(i)) }
    }

    /// Writes `value` at `i` (checked by the caller: `i < len`).
    pub(crate) fn write(&self, i: usize, value: T) {
        assert!(i < self.len());
        // SAFETY: as in `read`.
        unsafe { plain::write(self.ptr().add(i), value) }
    }

    /// Copies the cells from `start` into `out` (the caller checked the
    /// range).
    pub(crate) fn read_into(&self, start: usize, out: &mut [T]) {
        for (i, slot) in out.iter_mut().enumerate() {
            *slot = self.read(start + i);
        }
    }

    /// Copies `values` into the cells from `start` (the caller checked the
    /// range).
    pub(crate) fn write_from(&self, start: usize, values: &[T]) {
        for (i, v) in values.iter().enumerate() {
            self.write(start + i, *v);
        }
    }

    /// Checks that every cell holds a valid `T`.
    ///
    /// # Safety
    ///
    /// The caller holds the lock that guards the cells, and no reference
    /// into them is alive.
    ///
    /// # Panics
    ///
    /// If one does not (see [`Plain`]); never for `Pod` types.
    pub(crate) unsafe fn check_valid(&self) {
        // SAFETY: bounds and alignment were checked in `new`; nothing writes
        // the cells meanwhile (caller).
        unsafe { plain::check(self.ptr(), self.len()) }
    }
}

/// Fails with [`Error::OutOfRange`] (naming the first index asked for
/// that is past the end) unless `start..start + count` lies in `0..len`.
pub(crate) fn check_range(start: usize, count: usize, len: usize) -> crate::error::Result<()> {
    match start.checked_add(count) {
        Some(end) if end <= len => Ok(()),
        _ => Err(crate::error::Error::OutOfRange {
            index: start.max(len),
            len,
        }),
    }
}
