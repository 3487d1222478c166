//! One typed function reference: a function of this executable named by its
//! offset from the anchor ([`image::offset_of`]), callable only when this
//! process vouches for it.
//!
//! Functions travel between processes as offsets (both run the same
//! executable, checked through its identity, so an offset names the same
//! code in both). An offset read from bytes another process wrote is an
//! address of that process's choice: this module is the one place where an
//! offset becomes a `fn` again, and it does so only for an offset in this
//! process's *vouched set*:
//!
//! - [`FnRef::new`]: this process turned a real function into a reference;
//!   it vouches for that offset, as that type.
//! - [`trusting_parent`]: while it runs, offsets decoded on this thread are
//!   vouched for on arrival. It wraps exactly the decoding of bytes this
//!   process's parent wrote (a task child's first frame, a pool worker's
//!   job pipe): the parent already chooses what its child runs.
//! - Anything else ([`FnRef::checked`] outside that scope) must already be
//!   in the set, else [`Untrusted`].
//!
//! The set is keyed by offset *and* the function's type (a hash of
//! [`std::any::type_name`]): an offset vouched for as `fn(u32) -> u32` is
//! not callable as `fn()`. It is a fixed lock-free table, so that a child
//! forked while another thread inserts inherits no held lock, and a lookup
//! (one per pool chunk and function) is a few loads.

use std::cell::Cell;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};

use super::image;

/// A function pointer type: the only types an [`FnRef`] names.
///
/// # Safety
///
/// `Self` is a function pointer type and [`addr`](FnPtr::addr) returns
/// `self as usize`. Implemented here only, for `fn(A, ..) -> R` of 0 to 8
/// arguments (no higher-ranked lifetimes: a function that takes a slice
/// takes it owned or shared, as `pool::worker::ChunkFn` does).
pub(crate) unsafe trait FnPtr: Copy {
    /// The function's address.
    fn addr(self) -> usize;
}

macro_rules! fn_ptr {
    ($($t:ident),*) => {
        // SAFETY: `fn(..) -> R` is a function pointer type, and `as usize`
        // is its address.
        unsafe impl<$($t,)* R> FnPtr for fn($($t),*) -> R {
            fn addr(self) -> usize {
                self as usize
            }
        }
    };
}

fn_ptr!();
fn_ptr!(A);
fn_ptr!(A, B);
fn_ptr!(A, B, C);
fn_ptr!(A, B, C, D);
fn_ptr!(A, B, C, D, E);
fn_ptr!(A, B, C, D, E, F);
fn_ptr!(A, B, C, D, E, F, G);
fn_ptr!(A, B, C, D, E, F, G, H);

/// A function of type `F` (a function pointer type) of this executable that
/// this process vouches for: made by [`FnRef::new`] from a real `F`, or by
/// [`FnRef::checked`] from an offset found in (or, from the parent, added
/// to) the vouched set. Travels as [`offset`](FnRef::offset).
pub(crate) struct FnRef<F> {
    offset: i64,
    _f: PhantomData<F>,
}

impl<F> Clone for FnRef<F> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<F> Copy for FnRef<F> {}

impl<F> PartialEq for FnRef<F> {
    fn eq(&self, other: &Self) -> bool {
        self.offset == other.offset
    }
}

impl<F> Eq for FnRef<F> {}

impl<F> std::fmt::Debug for FnRef<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "FnRef<{}>({:#x})",
            std::any::type_name::<F>(),
            self.offset
        )
    }
}

/// An offset this process does not vouch for as the type asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Untrusted {
    /// The offset from the anchor.
    pub(crate) offset: i64,
    /// The type it was to be called as.
    pub(crate) signature: &'static str,
}

impl<F: FnPtr> FnRef<F> {
    /// The function `f` of this process, vouched for from now on.
    pub(crate) fn new(f: F) -> Self {
        let offset = image::offset_of(f.addr());
        // A full table leaves this reference callable here (it was made
        // from a real `F`) but not vouched for when it comes back.
        vouch(offset, type_key::<F>());
        FnRef {
            offset,
            _f: PhantomData,
        }
    }

    /// The offset, for the wire.
    pub(crate) fn offset(self) -> i64 {
        self.offset
    }

    /// The reference an offset names, if this process vouches for it as an
    /// `F`; inside [`trusting_parent`] the offset is vouched for first.
    pub(crate) fn checked(offset: i64) -> Result<Self, Untrusted> {
        let key = type_key::<F>();
        let ok = if FROM_PARENT.with(Cell::get) > 0 {
            vouch(offset, key)
        } else {
            is_vouched(offset, key)
        };
        if ok {
            Ok(FnRef {
                offset,
                _f: PhantomData,
            })
        } else {
            Err(Untrusted {
                offset,
                signature: std::any::type_name::<F>(),
            })
        }
    }

    /// The function.
    pub(crate) fn get(self) -> F {
        let addr = image::anchor_addr().wrapping_add(self.offset as usize);
        // SAFETY: an `FnRef<F>` exists only for an (offset, `F`) pair in the
        // vouched set, which holds (a) offsets `new` took from a real `F` of
        // this process (or of the parent it was forked from, whose code is
        // at the same addresses), for which `addr` is that `F`'s bits again;
        // (b) offsets decoded inside `trusting_parent`, which the parent
        // took with `new` from an `F` of this same executable (its identity
        // is checked before any of its bytes are decoded), so `addr` is the
        // same function here. `F` is a function pointer type (`FnPtr`'s
        // contract), so a `usize` holding a function's address is one. The
        // type key ignores lifetimes, which `FnPtr`'s types have only in
        // their generic arguments, and monomorphised code ignores too.
        unsafe { std::mem::transmute_copy::<usize, F>(&addr) }
    }
}

thread_local! {
    /// Depth of [`trusting_parent`] scopes on this thread.
    static FROM_PARENT: Cell<u32> = const { Cell::new(0) };
}

/// Runs `decode` with this process vouching for every offset decoded on
/// this thread meanwhile. Only for bytes this process's parent wrote: a
/// task child's first frame, a pool worker's job pipe. Never around user
/// code.
pub(crate) fn trusting_parent<T>(decode: impl FnOnce() -> T) -> T {
    struct Leave;
    impl Drop for Leave {
        fn drop(&mut self) {
            FROM_PARENT.with(|d| d.set(d.get() - 1));
        }
    }
    FROM_PARENT.with(|d| d.set(d.get() + 1));
    let _leave = Leave;
    decode()
}

/// Slots in the vouched set: distinct (function, type) pairs a process can
/// vouch for. Programs use tens; the table is in `.bss`, paged in as used.
const SLOTS: usize = 1 << 13;

struct Slot {
    /// The offset; 0: empty (the anchor itself is never a reference).
    offset: AtomicU64,
    /// The type key (odd); 0: the slot is being filled.
    key: AtomicU64,
}

static TABLE: [Slot; SLOTS] = {
    #[allow(clippy::declare_interior_mutable_const)]
    const EMPTY: Slot = Slot {
        offset: AtomicU64::new(0),
        key: AtomicU64::new(0),
    };
    [EMPTY; SLOTS]
};

fn start(offset: i64, key: u64) -> usize {
    let h = (offset as u64 ^ key.rotate_left(29)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (h >> (64 - SLOTS.trailing_zeros())) as usize
}

/// Whether (`offset`, `key`) is in the set.
fn is_vouched(offset: i64, key: u64) -> bool {
    if offset == 0 {
        return false;
    }
    let first = start(offset, key);
    for i in 0..SLOTS {
        let slot = &TABLE[(first + i) & (SLOTS - 1)];
        match slot.offset.load(Ordering::Acquire) {
            0 => return false,
            o if o == offset as u64 && slot.key.load(Ordering::Acquire) == key => return true,
            _ => {}
        }
    }
    false
}

/// Adds (`offset`, `key`) to the set; false if it is full (or `offset` is
/// 0). Lock-free: a slot is claimed by one CAS on its offset, then its key
/// is written; a reader or writer that meets a claimed slot whose key is
/// not written yet goes on probing (at worst, one pair takes two slots).
fn vouch(offset: i64, key: u64) -> bool {
    if offset == 0 {
        return false;
    }
    let first = start(offset, key);
    for i in 0..SLOTS {
        let slot = &TABLE[(first + i) & (SLOTS - 1)];
        let mut current = slot.offset.load(Ordering::Acquire);
        if current == 0 {
            match slot.offset.compare_exchange(
                0,
                offset as u64,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    slot.key.store(key, Ordering::Release);
                    return true;
                }
                Err(now) => current = now,
            }
        }
        if current == offset as u64 && slot.key.load(Ordering::Acquire) == key {
            return true;
        }
    }
    false
}

/// `F`'s type as a 64-bit key (odd, so never 0): FNV-1a over its name,
/// eight bytes at a step.
fn type_key<F>() -> u64 {
    let name = std::any::type_name::<F>().as_bytes();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut words = name.chunks_exact(8);
    for w in words.by_ref() {
        h = (h ^ u64::from_le_bytes(w.try_into().expect("8 bytes"))).wrapping_mul(0x100_0000_01b3);
        h ^= h >> 29;
    }
    for &b in words.remainder() {
        h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
    }
    h | 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn double(x: u32) -> u32 {
        x * 2
    }

    fn triple(x: u32) -> u32 {
        x * 3
    }

    fn nothing() {}

    #[test]
    fn a_reference_made_here_is_callable_and_comes_back() {
        let r = FnRef::new(double as fn(u32) -> u32);
        assert_eq!(r.get()(21), 42);
        let back = FnRef::<fn(u32) -> u32>::checked(r.offset()).unwrap();
        assert_eq!(back.get()(4), 8);
    }

    #[test]
    fn an_offset_nobody_vouched_for_is_refused() {
        let off = image::offset_of(triple as fn(u32) -> u32 as usize);
        let e = FnRef::<fn(u32) -> u32>::checked(off).unwrap_err();
        assert_eq!(e.offset, off);
        assert!(e.signature.contains("u32"), "{}", e.signature);
        for garbage in [0, 1, -1, i64::MAX, i64::MIN, 0x1234_5678] {
            assert!(FnRef::<fn()>::checked(garbage).is_err());
        }
    }

    #[test]
    fn a_vouched_offset_is_refused_as_another_type() {
        let r = FnRef::new(double as fn(u32) -> u32);
        assert!(FnRef::<fn()>::checked(r.offset()).is_err());
        assert!(FnRef::<fn(u64) -> u64>::checked(r.offset()).is_err());
    }

    #[test]
    fn the_parent_scope_vouches_and_ends() {
        let off = image::offset_of(nothing as fn() as usize);
        let r = trusting_parent(|| FnRef::<fn()>::checked(off)).unwrap();
        r.get()();
        // Vouched for from now on, in the whole process.
        assert!(FnRef::<fn()>::checked(off).is_ok());
        let other = image::offset_of(nothing as fn() as usize) + 1;
        assert!(FnRef::<fn()>::checked(other).is_err(), "scope ended");
        let _ = std::panic::catch_unwind(|| trusting_parent(|| panic!("in scope")));
        assert!(
            FnRef::<fn()>::checked(other).is_err(),
            "scope ended on a panic"
        );
    }

    #[test]
    fn the_table_takes_many_pairs() {
        for off in 1..1000i64 {
            assert!(vouch(off * 16 + 0x10_0000, 3));
        }
        for off in 1..1000i64 {
            assert!(is_vouched(off * 16 + 0x10_0000, 3));
            assert!(!is_vouched(off * 16 + 0x10_0000, 5));
        }
    }
}
