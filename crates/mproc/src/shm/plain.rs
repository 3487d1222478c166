//! Which types may live in a [`Value`](crate::Value) or an
//! [`Array`](crate::Array), and how their bytes are read and written.

use std::mem::{align_of, size_of};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, AtomicU8};

use bytemuck::{CheckedBitPattern, NoUninit, Zeroable};

/// Plain data that can live in shared memory: a [`Value`](crate::Value),
/// an [`Array`](crate::Array) or their raw forms.
///
/// Implemented for every type that is [`bytemuck::NoUninit`] (no padding, no
/// pointers that mean something only in one process) and
/// [`bytemuck::CheckedBitPattern`] (its valid bit patterns can be checked):
/// every integer and float, `bool`, `char`, arrays of them, and your own
/// `#[repr(C)]` structs deriving `bytemuck::Pod` (or `NoUninit` +
/// `CheckedBitPattern`, for structs with `bool` fields or field-less enums).
/// References, `Box`, `String` and `Vec` are not plain data: their
/// pointers would mean nothing in another process.
///
/// ```compile_fail
/// // A String's pointer would mean nothing in another process.
/// let v = mproc::Value::new(String::from("no"));
/// ```
///
/// Constructors that zero-fill ([`Array::new`](crate::Array::new)) also
/// require [`bytemuck::Zeroable`].
///
/// ```
/// use bytemuck::{Pod, Zeroable};
///
/// #[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
/// #[repr(C)]
/// struct Point {
///     x: f64,
///     y: f64,
/// }
///
/// let p = mproc::Value::new(Point { x: 1.0, y: 2.0 })?;
/// p.lock()?.x += 1.0;
/// assert_eq!(p.get()?, Point { x: 2.0, y: 2.0 });
///
/// let flag = mproc::Value::new(true)?; // bool is not Pod, but is Plain
/// assert!(flag.get()?);
/// # Ok::<(), mproc::Error>(())
/// ```
///
/// # Invalid bit patterns
///
/// For types such as `bool`, `char` or enums, not every bit pattern is a
/// value. mproc only ever writes whole values, but a process killed in the
/// middle of writing a multi-byte value (or two unsynchronised writers of a
/// [`RawValue`](crate::RawValue)) can leave a mix of two. Reading such a
/// mix panics with a message saying so, rather than conjuring an invalid
/// value; `Pod` types have no invalid patterns and never panic.
pub trait Plain: NoUninit + CheckedBitPattern + Send + Sync + 'static {}

impl<T: NoUninit + CheckedBitPattern + Send + Sync + 'static> Plain for T {}

/// The largest alignment a shared data area guarantees (its offset in a
/// page-aligned mapping is a multiple of 64).
pub(crate) const MAX_ALIGN: usize = 64;

/// Panics with the message of the "Invalid bit patterns" section.
#[cold]
fn invalid<T>() -> ! {
    panic!(
        "shared memory holds an invalid bit pattern for {}: a writer died mid-write \
         or wrote without synchronisation",
        std::any::type_name::<T>()
    )
}

/// Reads a `T` that other threads or processes may be writing: relaxed
/// atomic loads (one, for a `T` the size and alignment of a machine word or
/// smaller; byte by byte otherwise, which may tear).
///
/// Atomic, not volatile: a racing volatile access between threads of one
/// process is still a data race, while racing atomics are defined; across
/// processes both compile to the same plain loads. All racing access to a
/// given `T` uses the same width (it depends only on `T`), as mixed-size
/// atomics would require.
///
/// # Safety
///
/// `p` must be valid for reads of `size_of::<T>()` bytes and aligned for
/// `T`, and no reference to those bytes may be alive in this process.
///
/// # Panics
///
/// If the bytes are not a valid `T` (see [`Plain`]).
pub(crate) unsafe fn read<T: Plain>(p: *const T) -> T {
    let mut bits = T::Bits::zeroed();
    let dst = (&mut bits as *mut T::Bits).cast::<u8>();
    // SAFETY: `p` is valid and aligned (caller); `bits` has `T`'s size.
    unsafe { load(p.cast(), dst, size_of::<T>(), align_of::<T>()) };
    if !T::is_valid_bit_pattern(&bits) {
        invalid::<T>();
    }
    // SAFETY: the bits were just checked to be a valid `T`, and
    // `CheckedBitPattern` promises `T` and `T::Bits` share a layout.
    unsafe { std::mem::transmute_copy::<T::Bits, T>(&bits) }
}

/// Writes a `T` that other threads or processes may be reading or writing:
/// relaxed atomic stores, as in [`read`].
///
/// # Safety
///
/// As [`read`], for writes.
pub(crate) unsafe fn write<T: Plain>(p: *mut T, value: T) {
    let src = (&value as *const T).cast::<u8>();
    // SAFETY: as required of the caller; `value` has `T`'s size.
    unsafe { store(src, p.cast(), size_of::<T>(), align_of::<T>()) }
}

/// Copies `dst.len()` bytes from shared memory at `src`, with relaxed
/// atomic byte loads.
///
/// # Safety
///
/// `src` must be valid for reads of `dst.len()` bytes, with no reference to
/// them alive in this process.
pub(crate) unsafe fn read_bytes(src: *const u8, dst: &mut [u8]) {
    // SAFETY: as required of the caller; bytes need no alignment.
    unsafe { load(src, dst.as_mut_ptr(), dst.len(), 1) }
}

/// Copies `src` into shared memory at `dst`, with relaxed atomic byte
/// stores.
///
/// # Safety
///
/// `dst` must be valid for writes of `src.len()` bytes, with no reference
/// to them alive in this process.
pub(crate) unsafe fn write_bytes(src: &[u8], dst: *mut u8) {
    // SAFETY: as required of the caller.
    unsafe { store(src.as_ptr(), dst, src.len(), 1) }
}

/// The atomic `$atomic` at `$p`; for use inside an `unsafe` block whose
/// argument covers `from_ptr`'s contract (valid, aligned, only accessed
/// atomically while racing).
macro_rules! word {
    ($atomic:ty, $int:ty, $p:expr) => {
        <$atomic>::from_ptr(($p as *const $int).cast_mut())
    };
}

/// Loads `len` bytes at `src` (aligned to `align`) into private memory at
/// `dst`, in one atomic word when `len` is a word size `align` allows.
///
/// # Safety
///
/// `src` valid for `len` racing-but-atomic reads and aligned to `align`;
/// `dst` valid for `len` writes and not shared.
unsafe fn load(src: *const u8, dst: *mut u8, len: usize, align: usize) {
    // SAFETY: (all arms) the caller's promises; the word arms run only
    // when `src` is aligned for the word; `dst` is written unaligned.
    unsafe {
        match len {
            8 if align >= 8 => dst
                .cast::<u64>()
                .write_unaligned(word!(AtomicU64, u64, src).load(Relaxed)),
            4 if align >= 4 => dst
                .cast::<u32>()
                .write_unaligned(word!(AtomicU32, u32, src).load(Relaxed)),
            2 if align >= 2 => dst
                .cast::<u16>()
                .write_unaligned(word!(AtomicU16, u16, src).load(Relaxed)),
            _ => {
                for i in 0..len {
                    *dst.add(i) = word!(AtomicU8, u8, src.add(i)).load(Relaxed);
                }
            }
        }
    }
}

/// Stores `len` bytes of private memory at `src` to `dst` (aligned to
/// `align`), as [`load`] reads them.
///
/// # Safety
///
/// Mirror of [`load`].
unsafe fn store(src: *const u8, dst: *mut u8, len: usize, align: usize) {
    // SAFETY: (all arms) as in `load`.
    unsafe {
        match len {
            8 if align >= 8 => {
                word!(AtomicU64, u64, dst).store(src.cast::<u64>().read_unaligned(), Relaxed)
            }
            4 if align >= 4 => {
                word!(AtomicU32, u32, dst).store(src.cast::<u32>().read_unaligned(), Relaxed)
            }
            2 if align >= 2 => {
                word!(AtomicU16, u16, dst).store(src.cast::<u16>().read_unaligned(), Relaxed)
            }
            _ => {
                for i in 0..len {
                    word!(AtomicU8, u8, dst.add(i)).store(*src.add(i), Relaxed);
                }
            }
        }
    }
}

/// Checks that `len` values at `p` are valid `T`s. Free for `Pod` types
/// (whose `Bits` are themselves): no byte is read.
///
/// # Safety
///
/// `p` must be valid for reads of `len` values and aligned, and no process
/// may write them meanwhile (the caller holds the lock that guards them).
///
/// # Panics
///
/// If one is not a valid `T` (see [`Plain`]).
pub(crate) unsafe fn check<T: Plain>(p: *const T, len: usize) {
    if std::any::TypeId::of::<T>() == std::any::TypeId::of::<T::Bits>() {
        return;
    }
    for i in 0..len {
        // SAFETY: `p.add(i)` is in bounds and unchanging (caller);
        // `T::Bits` accepts any bits.
        let bits = unsafe { &*p.cast::<T::Bits>().add(i) };
        if !T::is_valid_bit_pattern(bits) {
            invalid::<T>();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_width_round_trips() {
        fn round<T: Plain + PartialEq + std::fmt::Debug>(x: T) {
            let mut slot = std::mem::MaybeUninit::<T>::zeroed();
            // SAFETY: `slot` is a private, aligned `T`-sized buffer.
            unsafe {
                write(slot.as_mut_ptr(), x);
                assert_eq!(read(slot.as_ptr()), x);
            }
        }
        round(0xabu8);
        round(0xabcdu16);
        round(0xdead_beefu32);
        round(0x0123_4567_89ab_cdefu64);
        round(u128::MAX - 7);
        round([1u8, 2, 3]);
        round([1u16, 2]);
        round(true);
        round('🦀');
    }

    #[test]
    #[should_panic(expected = "invalid bit pattern for bool")]
    fn an_invalid_pattern_panics_with_a_clear_message() {
        let byte = 2u8;
        // SAFETY: one aligned, private byte.
        unsafe { read::<bool>((&byte as *const u8).cast()) };
    }

    #[test]
    fn byte_copies_cover_any_range() {
        let mut shared = [0u8; 19];
        let data: Vec<u8> = (1..=19).collect();
        // SAFETY: private buffers of the right lengths.
        unsafe { write_bytes(&data, shared.as_mut_ptr()) };
        let mut back = [0u8; 19];
        // SAFETY: as above.
        unsafe { read_bytes(shared.as_ptr(), &mut back) };
        assert_eq!(back.to_vec(), data);
    }
}
