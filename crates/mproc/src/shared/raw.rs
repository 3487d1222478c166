//! `RawValue` and `RawArray`: plain data in shared memory, without a lock.

use std::fmt;

use bytemuck::Zeroable;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};
use crate::shm::block::ShmBlock;
use crate::shm::cells::check_range;
use crate::shm::cells::Cells;
use crate::shm::plain::Plain;

/// The bytes of `len` values, as `ShmBlock` wants them (a mapping is never
/// empty, so an empty array still takes one byte).
pub(crate) fn data_len<T>(len: usize) -> Result<usize> {
    len.checked_mul(std::mem::size_of::<T>())
        .map(|n| n.max(1))
        .ok_or_else(|| Error::InvalidArgument(format!("an array of {len} values is too large")))
}

/// Turns a failure to lay cells over a block into an error.
pub(crate) fn layout_error(msg: String) -> Error {
    Error::InvalidArgument(msg)
}

/// An array of plain values in shared memory, without a lock: Python's
/// `multiprocessing.sharedctypes.RawArray`.
///
/// Reads and writes copy whole elements with relaxed atomic loads and
/// stores and nothing more: no lock, no atomicity for elements other than
/// 1, 2, 4 or 8 aligned bytes (wider ones may tear), no ordering between
/// processes. Racing calls are defined behaviour, just not synchronised. Use it for data another mechanism guards (a
/// [`Lock`](crate::Lock) you hold, a [`Pipe`](crate::Pipe) message that
/// says "ready", a join), or where a torn read is acceptable; use
/// [`Array`](crate::Array) otherwise.
///
/// Indexing out of range returns [`Error::OutOfRange`]; it never panics.
///
/// ```
/// use mproc::RawArray;
///
/// fn fill(a: RawArray<u32>) {
///     for i in 0..a.len() {
///         a.set(i, i as u32 * 10).unwrap();
///     }
/// }
///
/// let a = RawArray::<u32>::new(4)?;
/// mproc::spawn(fill, a.clone())?.join()?; // joined: the writes are done
/// assert_eq!(a.to_vec(), [0, 10, 20, 30]);
/// assert!(a.get(4).is_err());
/// # Ok::<(), mproc::Error>(())
/// ```
pub struct RawArray<T> {
    block: ShmBlock<()>,
    cells: Cells<T>,
}

impl<T> Clone for RawArray<T> {
    fn clone(&self) -> Self {
        RawArray {
            block: self.block.clone(),
            cells: self.cells.clone(),
        }
    }
}

impl<T: Plain + Zeroable> RawArray<T> {
    /// `len` zeroed values.
    ///
    /// ```
    /// let a = mproc::RawArray::<f64>::new(3)?;
    /// assert_eq!(a.to_vec(), [0.0; 3]);
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn new(len: usize) -> Result<Self> {
        let block = ShmBlock::<()>::create("mproc-rawarray", data_len::<T>(len)?)?;
        let cells = block.cells(len).map_err(layout_error)?;
        Ok(RawArray { block, cells })
    }
}

impl<T: Plain> RawArray<T> {
    /// An array holding a copy of `values`.
    ///
    /// ```
    /// let a = mproc::RawArray::from_slice(&[1u8, 2, 3])?;
    /// assert_eq!(a.len(), 3);
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn from_slice(values: &[T]) -> Result<Self> {
        let len = values.len();
        let block = ShmBlock::<()>::create("mproc-rawarray", data_len::<T>(len)?)?;
        let cells = block.cells(len).map_err(layout_error)?;
        cells.write_from(0, values);
        Ok(RawArray { block, cells })
    }

    /// The number of values.
    ///
    /// ```
    /// assert_eq!(mproc::RawArray::<i8>::new(5)?.len(), 5);
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn len(&self) -> usize {
        self.cells.len()
    }

    /// Whether the array has no values.
    ///
    /// ```
    /// assert!(mproc::RawArray::<i8>::new(0)?.is_empty());
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value at `index` ([`Error::OutOfRange`] past the end).
    ///
    /// ```
    /// let a = mproc::RawArray::from_slice(&[7i64])?;
    /// assert_eq!(a.get(0)?, 7);
    /// assert!(matches!(a.get(1), Err(mproc::Error::OutOfRange { index: 1, len: 1 })));
    /// # Ok::<(), mproc::Error>(())
    /// ```
    ///
    /// # Panics
    ///
    /// If the bytes are not a valid `T` (see [`Plain`]); never for `Pod`
    /// types.
    pub fn get(&self, index: usize) -> Result<T> {
        check_range(index, 1, self.len())?;
        Ok(self.cells.read(index))
    }

    /// Writes `value` at `index` ([`Error::OutOfRange`] past the end).
    ///
    /// ```
    /// let a = mproc::RawArray::<i64>::new(1)?;
    /// a.set(0, -3)?;
    /// assert_eq!(a.get(0)?, -3);
    /// assert!(a.set(1, 0).is_err());
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn set(&self, index: usize, value: T) -> Result<()> {
        check_range(index, 1, self.len())?;
        self.cells.write(index, value);
        Ok(())
    }

    /// A copy of all the values.
    ///
    /// ```
    /// let a = mproc::RawArray::from_slice(&[true, false])?;
    /// assert_eq!(a.to_vec(), [true, false]);
    /// # Ok::<(), mproc::Error>(())
    /// ```
    ///
    /// # Panics
    ///
    /// As [`get`](Self::get).
    pub fn to_vec(&self) -> Vec<T> {
        (0..self.len()).map(|i| self.cells.read(i)).collect()
    }

    /// Copies `out.len()` values starting at `start` into `out`
    /// ([`Error::OutOfRange`] if they run past the end).
    ///
    /// ```
    /// let a = mproc::RawArray::from_slice(&[1u16, 2, 3, 4])?;
    /// let mut two = [0u16; 2];
    /// a.read_into(1, &mut two)?;
    /// assert_eq!(two, [2, 3]);
    /// assert!(a.read_into(3, &mut two).is_err());
    /// # Ok::<(), mproc::Error>(())
    /// ```
    ///
    /// # Panics
    ///
    /// As [`get`](Self::get).
    pub fn read_into(&self, start: usize, out: &mut [T]) -> Result<()> {
        check_range(start, out.len(), self.len())?;
        self.cells.read_into(start, out);
        Ok(())
    }

    /// Copies `values` into the array starting at `start`
    /// ([`Error::OutOfRange`] if they run past the end; nothing is written
    /// then).
    ///
    /// ```
    /// let a = mproc::RawArray::<u16>::new(4)?;
    /// a.write_from(2, &[5, 6])?;
    /// assert_eq!(a.to_vec(), [0, 0, 5, 6]);
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn write_from(&self, start: usize, values: &[T]) -> Result<()> {
        check_range(start, values.len(), self.len())?;
        self.cells.write_from(start, values);
        Ok(())
    }
}

impl<T: Plain + fmt::Debug> fmt::Debug for RawArray<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RawArray").field(&self.to_vec()).finish()
    }
}

impl<T> Serialize for RawArray<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        (&self.block, self.cells.len() as u64).serialize(s)
    }
}

impl<'de, T: Plain> Deserialize<'de> for RawArray<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let (block, len) = <(ShmBlock<()>, u64)>::deserialize(d)?;
        let len = usize::try_from(len).map_err(D::Error::custom)?;
        let cells = block.cells(len).map_err(D::Error::custom)?;
        Ok(RawArray { block, cells })
    }
}

/// One plain value in shared memory, without a lock: Python's
/// `multiprocessing.sharedctypes.RawValue`.
///
/// [`get`](Self::get) and [`set`](Self::set) are relaxed atomic copies and
/// nothing more: not synchronised, atomic only for values of 1, 2, 4 or 8
/// aligned bytes (wider ones may tear), not ordered against other memory. Use it
/// for data something else guards, or as a flag that one side writes and
/// the other polls; use [`Value`](crate::Value) for a value several
/// processes update.
///
/// ```
/// use mproc::RawValue;
///
/// fn answer(v: RawValue<u64>) {
///     v.set(42);
/// }
///
/// let v = RawValue::new(0u64)?;
/// mproc::spawn(answer, v.clone())?.join()?;
/// assert_eq!(v.get(), 42);
/// # Ok::<(), mproc::Error>(())
/// ```
pub struct RawValue<T> {
    array: RawArray<T>,
}

impl<T> Clone for RawValue<T> {
    fn clone(&self) -> Self {
        RawValue {
            array: self.array.clone(),
        }
    }
}

impl<T: Plain> RawValue<T> {
    /// A value in shared memory, initially `value`.
    ///
    /// ```
    /// let v = mproc::RawValue::new(1.5f32)?;
    /// assert_eq!(v.get(), 1.5);
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn new(value: T) -> Result<Self> {
        Ok(RawValue {
            array: RawArray::from_slice(&[value])?,
        })
    }

    /// The value now (a relaxed atomic copy).
    ///
    /// ```
    /// let v = mproc::RawValue::new('x')?;
    /// assert_eq!(v.get(), 'x');
    /// # Ok::<(), mproc::Error>(())
    /// ```
    ///
    /// # Panics
    ///
    /// If the bytes are not a valid `T` (see [`Plain`]); never for `Pod`
    /// types.
    pub fn get(&self) -> T {
        self.array.cells.read(0)
    }

    /// Replaces the value (a relaxed atomic copy).
    ///
    /// ```
    /// let v = mproc::RawValue::new(false)?;
    /// v.set(true);
    /// assert!(v.get());
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn set(&self, value: T) {
        self.array.cells.write(0, value)
    }
}

impl<T: Plain + fmt::Debug> fmt::Debug for RawValue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RawValue").field(&self.get()).finish()
    }
}

impl<T> Serialize for RawValue<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.array.serialize(s)
    }
}

impl<'de, T: Plain> Deserialize<'de> for RawValue<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let array = RawArray::deserialize(d)?;
        if array.len() != 1 {
            return Err(D::Error::custom("a RawValue's block holds one value"));
        }
        Ok(RawValue { array })
    }
}
