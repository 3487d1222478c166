//! Which types may live in a [`Value`](crate::Value) or an
//! [`Array`](crate::Array), and how their bytes are read and written.

use bytemuck::{CheckedBitPattern, NoUninit};

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

/// Reads a `T` with a volatile load.
///
/// # Safety
///
/// `p` must be valid for reads of `size_of::<T>()` bytes and aligned for
/// `T`. Other processes may write the bytes concurrently (a volatile load
/// of memory outside this program's control is the defined way to read it);
/// no thread of *this* process may write them through a reference at the
/// same time.
///
/// # Panics
///
/// If the bytes are not a valid `T` (see [`Plain`]).
pub(crate) unsafe fn read<T: Plain>(p: *const T) -> T {
    // SAFETY: `T::Bits` has `T`'s size and alignment and accepts every bit
    // pattern; `p` is valid and aligned (caller).
    let bits = unsafe { p.cast::<T::Bits>().read_volatile() };
    if !T::is_valid_bit_pattern(&bits) {
        invalid::<T>();
    }
    // SAFETY: the bits were just checked to be a valid `T`, and
    // `CheckedBitPattern` promises `T` and `T::Bits` share a layout.
    unsafe { std::mem::transmute_copy::<T::Bits, T>(&bits) }
}

/// Writes a `T` with a volatile store.
///
/// # Safety
///
/// `p` must be valid for writes of `size_of::<T>()` bytes and aligned for
/// `T`, with no reference to those bytes alive in this process.
pub(crate) unsafe fn write<T: Plain>(p: *mut T, value: T) {
    // SAFETY: as required of the caller.
    unsafe { p.write_volatile(value) }
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
