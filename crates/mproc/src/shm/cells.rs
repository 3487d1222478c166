//! `len` plain values at a place in a shared mapping.

use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::plain::{self, Plain, MAX_ALIGN};
use crate::sys::shm::SharedRegion;

/// `len` values of `T` in a shared mapping, with this process's record of
/// whether a guard borrows them.
///
/// Invariant: no reference into the cells exists in this process except
/// one made by [`Cells::slice_mut`], whose caller holds the lock that guards
/// the cells and has set the borrow flag ([`Cells::borrow`]) first; the
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
    /// A guard of this process holds the cells (see the type's invariant).
    borrowed: AtomicBool,
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
    /// and marked them borrowed ([`borrow`](Self::borrow) returned `true`),
    /// and the slice lives no longer than the lock and the borrow.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn slice_mut(&self) -> &mut [T] {
        // SAFETY: bounds and alignment were checked in `new`, validity by
        // the caller; the lock keeps other processes out and the borrow
        // flag other references of this process (caller).
        unsafe { std::slice::from_raw_parts_mut(self.ptr(), self.len()) }
    }

    /// The number of cells.
    pub(crate) fn len(&self) -> usize {
        self.inner.len
    }

    /// Marks the cells borrowed by a guard; `false` if they already are
    /// (the calling thread re-entered a re-entrant lock while its guard
    /// lives).
    ///
    /// Only the holder of the cells' lock touches the flag, so a load and a
    /// store suffice (the lock orders them between threads).
    pub(crate) fn borrow(&self) -> bool {
        if self.is_borrowed() {
            return false;
        }
        self.inner.borrowed.store(true, Ordering::Relaxed);
        true
    }

    /// Whether a guard of this process holds the cells.
    pub(crate) fn is_borrowed(&self) -> bool {
        self.inner.borrowed.load(Ordering::Relaxed)
    }

    /// Ends a borrow (also after an owner death, whose guard is gone).
    pub(crate) fn unborrow(&self) {
        self.inner.borrowed.store(false, Ordering::Relaxed);
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
                borrowed: AtomicBool::new(false),
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

/// The cells lent to the holder of their lock, checked: `&[T]` and
/// `&mut [T]` until it drops, which ends the borrow before the guard `G`
/// (the lock held) is released.
pub(crate) struct Lent<'a, T, G> {
    cells: &'a Cells<T>,
    // Dropped after `Drop::drop` ended the borrow.
    _guard: G,
}

impl<T: Plain> Cells<T> {
    /// Lends the cells to the holder of `guard` after checking their
    /// values; gives `guard` back if a guard of this process already
    /// borrows them (the calling thread re-entered a re-entrant lock).
    ///
    /// # Safety
    ///
    /// `guard` holds the lock that every process takes before it writes
    /// these cells through a `Lent` or a slice, and keeps it until dropped.
    ///
    /// # Panics
    ///
    /// If a cell does not hold a valid `T` (see [`Plain`]); never for `Pod`
    /// types. The borrow ends and `guard` is dropped first.
    pub(crate) unsafe fn lend<G>(&self, guard: G) -> Result<Lent<'_, T, G>, G> {
        if !self.borrow() {
            return Err(guard);
        }
        let lent = Lent {
            cells: self,
            _guard: guard,
        };
        // SAFETY: the lock is held (caller) and the cells borrowed by
        // `lent`, so no one else writes them and no reference into them is
        // alive. A panic here drops `lent`, which ends the borrow and
        // releases the lock.
        unsafe { self.check_valid() };
        Ok(lent)
    }
}

impl<T, G> Lent<'_, T, G> {
    pub(crate) fn slice(&self) -> &[T] {
        // SAFETY: `lend`'s caller vouched for the lock, `lend` set the
        // borrow and checked the values; the shared borrow of `self`
        // excludes `slice_mut` meanwhile.
        unsafe { self.cells.slice_mut() }
    }

    pub(crate) fn slice_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `slice`; the exclusive borrow of `self` makes this
        // the only reference.
        unsafe { self.cells.slice_mut() }
    }
}

impl<T, G> Drop for Lent<'_, T, G> {
    fn drop(&mut self) {
        // Before `_guard` releases the lock (fields drop after this).
        self.cells.unborrow();
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
