//! Cells and the lock that guards them, paired here and nowhere else:
//! what `Value` and `Array` are made of, and the one place their cells are
//! lent as `&mut [T]` to the holder of that lock.
//!
//! Lending is safe because every part of its argument is checked here:
//! - the caller holds the lock ([`RobustMutex::held_by_caller`]), and its
//!   level is *pinned* for as long as the lent slice lives, so no other
//!   release (a hand `release()`, a condition's wait) can free it early;
//! - the cells are paired with that lock by construction: either they are
//!   the lock block's own data area, or they are in a block of their own
//!   whose header names the lock's memfd (device and inode) when it is
//!   made, checked whenever the pair is rebuilt from the wire;
//! - the lent mark lives in shared memory beside the cells (the lender's
//!   thread identity), so the same cells reached through a second mapping
//!   of this process (a handle received twice) are not lent twice, and a
//!   mark left by a thread that died holding the lock is recognised as
//!   stale (it names another thread than the present holder).

use std::sync::atomic::{AtomicU64, Ordering};

use super::block::{shm_state, ShmBlock};
use super::cells::Cells;
use super::plain::Plain;
use crate::error::{Error, Result};
use crate::sys::robust::{self, RobustMutex};

shm_state! {
    /// The header of a lock's block: the mutex, and the lent mark of the
    /// cells a `Value::new` keeps in the block's data area.
    pub(crate) struct LockHeader {
        pub(crate) mutex: RobustMutex,
        lent: AtomicU64,
    }
}

shm_state! {
    /// The header of a block of cells guarded by a lock of another block:
    /// their lent mark, and the lock's file (device, inode).
    pub(crate) struct ApartHeader {
        lent: AtomicU64,
        lock_dev: AtomicU64,
        lock_ino: AtomicU64,
    }
}

/// Why cells were not lent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The calling thread already holds a lent slice of these cells (it
    /// re-entered a re-entrant lock).
    Reentered,
    /// The calling thread does not hold the cells' lock.
    NotHeld,
}

/// `len` cells and the block of the lock that guards them.
pub(crate) struct Guarded<T> {
    cells: Cells<T>,
    lock: ShmBlock<LockHeader>,
    apart: Option<ShmBlock<ApartHeader>>,
}

impl<T> Clone for Guarded<T> {
    fn clone(&self) -> Self {
        Guarded {
            cells: self.cells.clone(),
            lock: self.lock.clone(),
            apart: self.apart.clone(),
        }
    }
}

impl<T: Plain> Guarded<T> {
    /// The first `len` cells of the lock block's own data area.
    pub(crate) fn in_lock(
        lock: &ShmBlock<LockHeader>,
        len: usize,
    ) -> std::result::Result<Self, String> {
        Ok(Guarded {
            cells: lock.cells(len)?,
            lock: lock.clone(),
            apart: None,
        })
    }

    /// `len` zeroed cells in a new block of their own, guarded by `lock`.
    pub(crate) fn create_apart(
        lock: &ShmBlock<LockHeader>,
        len: usize,
        bytes: usize,
    ) -> Result<Self> {
        let block = ShmBlock::<ApartHeader>::create("mproc-array", bytes)?;
        let (dev, ino) = lock
            .identity()
            .map_err(Error::io("cannot stat a lock's block"))?;
        let header = block.header();
        header.lock_dev.store(dev, Ordering::Relaxed);
        header.lock_ino.store(ino, Ordering::Relaxed);
        Self::apart(lock, block, len).map_err(Error::InvalidArgument)
    }

    /// The cells of `block` (made by [`create_apart`](Self::create_apart)
    /// for `lock`): refused unless `block` names `lock`'s file.
    pub(crate) fn apart(
        lock: &ShmBlock<LockHeader>,
        block: ShmBlock<ApartHeader>,
        len: usize,
    ) -> std::result::Result<Self, String> {
        let (dev, ino) = lock
            .identity()
            .map_err(|e| format!("cannot stat a lock's block: {e}"))?;
        let header = block.header();
        if (
            header.lock_dev.load(Ordering::Relaxed),
            header.lock_ino.load(Ordering::Relaxed),
        ) != (dev, ino)
        {
            return Err(
                "a shared array arrived with another lock than the one that guards it".into(),
            );
        }
        Ok(Guarded {
            cells: block.cells(len)?,
            lock: lock.clone(),
            apart: Some(block),
        })
    }
}

impl<T> Guarded<T> {
    /// The cells (relaxed atomic copies in and out).
    pub(crate) fn cells(&self) -> &Cells<T> {
        &self.cells
    }

    /// The block of cells apart from the lock, if they are.
    pub(crate) fn apart_block(&self) -> Option<&ShmBlock<ApartHeader>> {
        self.apart.as_ref()
    }

    #[inline]
    fn mutex(&self) -> &RobustMutex {
        &self.lock.header().mutex
    }

    #[inline]
    fn lent(&self) -> &AtomicU64 {
        match &self.apart {
            Some(block) => &block.header().lent,
            None => &self.lock.header().lent,
        }
    }

    /// Whether the calling thread, holding the lock, has the cells lent
    /// already (a copy in or out would alias its slice).
    pub(crate) fn lent_to_caller(&self) -> bool {
        self.mutex().held_by_caller()
            && self.lent().load(Ordering::Relaxed) == robust::caller_identity()
    }
}

/// The cells lent to the holder of their lock, checked: `&[T]` and
/// `&mut [T]` until it drops, which clears the mark and unpins the lock's
/// level before the guard `G` (the lock held) is released.
pub(crate) struct Lent<'a, T, G> {
    guarded: &'a Guarded<T>,
    // Dropped after `Drop::drop` cleared the mark and unpinned.
    _guard: G,
}

impl<T: Plain> Guarded<T> {
    /// Lends the cells to the calling thread, which holds their lock
    /// through `guard`, after checking their values; gives `guard` back
    /// with the reason if it does not hold it or holds the cells already.
    ///
    /// # Panics
    ///
    /// If a cell does not hold a valid `T` (see [`Plain`]); never for `Pod`
    /// types. The lend is undone and `guard` dropped first.
    #[inline]
    pub(crate) fn lend<G>(&self, guard: G) -> std::result::Result<Lent<'_, T, G>, (G, Refused)> {
        let mutex = self.mutex();
        let me = robust::caller_identity();
        if !mutex.held_by(me) {
            return Err((guard, Refused::NotHeld));
        }
        // Only the holder writes the mark, so a load and a store suffice
        // (the lock orders them between threads and processes). A mark
        // naming another thread was left by a holder that died.
        if self.lent().load(Ordering::Relaxed) == me {
            return Err((guard, Refused::Reentered));
        }
        self.lent().store(me, Ordering::Relaxed);
        mutex.pin();
        let lent = Lent {
            guarded: self,
            _guard: guard,
        };
        // SAFETY: the calling thread holds the lock every process takes
        // before it writes these cells (checked above; the pairing is made
        // only in this file), its level is pinned until `lent` drops, and
        // the mark keeps every other lend of this thread (through any
        // mapping) out: no one else writes the cells and no reference into
        // them is alive. A panic here drops `lent`, which undoes all that.
        unsafe { self.cells.check_valid() };
        Ok(lent)
    }
}

impl<T, G> Lent<'_, T, G> {
    pub(crate) fn slice(&self) -> &[T] {
        // SAFETY: `lend` established the lock, the pin and the mark and
        // checked the values; the shared borrow of `self` excludes
        // `slice_mut` meanwhile.
        unsafe { self.guarded.cells.slice_mut() }
    }

    pub(crate) fn slice_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `slice`; the exclusive borrow of `self` makes this
        // the only reference.
        unsafe { self.guarded.cells.slice_mut() }
    }
}

impl<T, G> Drop for Lent<'_, T, G> {
    #[inline]
    fn drop(&mut self) {
        // Before `_guard` releases the lock (fields drop after this).
        self.guarded.lent().store(0, Ordering::Relaxed);
        self.guarded.mutex().unpin();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock_block() -> ShmBlock<LockHeader> {
        let block = ShmBlock::<LockHeader>::create("mproc-test-lock", 64).unwrap();
        block.header().mutex.init(true);
        block
    }

    #[test]
    fn cells_apart_are_refused_with_another_lock() {
        let (one, other) = (lock_block(), lock_block());
        let cells = Guarded::<u32>::create_apart(&one, 4, 16).unwrap();
        let block = cells.apart_block().unwrap().clone();
        assert!(Guarded::<u32>::apart(&one, block.clone(), 4).is_ok());
        let e = Guarded::<u32>::apart(&other, block, 4).err().unwrap();
        assert!(e.contains("another lock"), "{e}");
    }

    #[test]
    fn only_the_holder_is_lent_the_cells_and_only_once() {
        let lock = lock_block();
        let cells = Guarded::<u32>::in_lock(&lock, 4).unwrap();
        let (_, why) = cells.lend(()).err().unwrap();
        assert_eq!(why, Refused::NotHeld);
        lock.header().mutex.lock(None).unwrap();
        let mut lent = cells.lend(()).ok().unwrap();
        lent.slice_mut()[1] = 7;
        assert!(cells.lent_to_caller());
        let (_, why) = cells.lend(()).err().unwrap();
        assert_eq!(why, Refused::Reentered);
        // The lent level is pinned: no release under the slice.
        assert!(lock.header().mutex.unlock().is_err());
        drop(lent);
        assert!(!cells.lent_to_caller());
        lock.header().mutex.unlock().unwrap();
        assert_eq!(cells.cells().read(1), 7);
    }
}
