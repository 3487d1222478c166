//! `ListProxy<T>`: a list held by the server.

use std::cmp::Ordering;
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::protocol::{enc, enc_probe, Bytes, ListOp, Op, Packed};
use super::proxy::Handle;
use crate::error::{Error, Result};

/// A proxy to a list in a [`Manager`](crate::Manager)'s server, as
/// Python's `ListProxy`. Indices follow Python: negative ones count from
/// the end, and one out of range is
/// [`RemoteError::IndexOutOfRange`](crate::RemoteError).
///
/// The server never decodes elements: [`index`](ListProxy::index) and
/// [`count`](ListProxy::count) compare encodings, and
/// [`sort`](ListProxy::sort) sorts in the calling process.
///
/// ```
/// use mproc::{Error, RemoteError};
///
/// let m = mproc::Manager::start()?;
/// let l = m.list::<i32>()?;
/// l.extend([1, 2, 3])?;
/// l.push(&4)?;
/// assert_eq!(l.get(-1)?, 4);
/// assert_eq!(l.pop()?, 4);
/// assert_eq!(l.to_vec()?, vec![1, 2, 3]);
/// assert!(matches!(
///     l.get(10),
///     Err(Error::Remote(RemoteError::IndexOutOfRange { index: 10, len: 3 }))
/// ));
/// # Ok::<(), mproc::Error>(())
/// ```
#[derive(Debug, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct ListProxy<T> {
    pub(crate) handle: Handle,
    #[serde(skip)]
    _t: PhantomData<fn(T) -> T>,
}

impl<T> Clone for ListProxy<T> {
    fn clone(&self) -> Self {
        ListProxy {
            handle: self.handle.clone(),
            _t: PhantomData,
        }
    }
}

fn dec<T: DeserializeOwned>(b: &[u8]) -> Result<T> {
    crate::connection::decode_plain(b)
}

impl<T: Serialize + DeserializeOwned> ListProxy<T> {
    pub(crate) fn new(handle: Handle) -> Self {
        ListProxy {
            handle,
            _t: PhantomData,
        }
    }

    fn call<R: DeserializeOwned>(&self, op: ListOp) -> Result<R> {
        self.handle.call(Op::List(op))
    }

    /// Appends `value` (`l.append(value)`).
    #[doc(alias = "append")]
    pub fn push(&self, value: &T) -> Result<()> {
        self.call(ListOp::Push(enc(value)?))
    }

    /// Appends every value, in one round trip.
    pub fn extend(&self, values: impl IntoIterator<Item = T>) -> Result<()> {
        let mut p = Packed::default();
        for v in values {
            p.push(&v)?;
        }
        self.call(ListOp::Extend(p))
    }

    /// The element at `index` (`l[index]`).
    pub fn get(&self, index: i64) -> Result<T> {
        dec(&self.call::<Bytes>(ListOp::Get(index))?)
    }

    /// Replaces the element at `index`; returns the old one.
    pub fn set(&self, index: i64, value: &T) -> Result<T> {
        dec(&self.call::<Bytes>(ListOp::Set(index, enc(value)?))?)
    }

    /// Inserts before `index` (`l.insert(index, value)`).
    pub fn insert(&self, index: i64, value: &T) -> Result<()> {
        self.call(ListOp::Insert(index, enc(value)?))
    }

    /// Removes and returns the last element (`l.pop()`).
    pub fn pop(&self) -> Result<T> {
        dec(&self.call::<Bytes>(ListOp::Pop(None))?)
    }

    /// Removes and returns the element at `index` (`l.pop(index)`).
    pub fn pop_at(&self, index: i64) -> Result<T> {
        dec(&self.call::<Bytes>(ListOp::Pop(Some(index)))?)
    }

    /// The number of elements.
    pub fn len(&self) -> Result<usize> {
        Ok(self.call::<u64>(ListOp::Len)? as usize)
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// A copy of every element, in one round trip (`l[:]`).
    #[doc(alias = "snapshot")]
    pub fn to_vec(&self) -> Result<Vec<T>> {
        let all: Packed = self.call(ListOp::Snapshot)?;
        all.iter()
            .map(|b| dec(b.map_err(Error::Protocol)?))
            .collect()
    }

    /// Removes every element.
    pub fn clear(&self) -> Result<()> {
        self.call(ListOp::Clear)
    }

    /// The elements in `range`, in one round trip: Python's `l[a:b]`.
    /// Bounds follow Python: negative ones count from the end, and bounds
    /// out of range are clamped (an empty range gives an empty `Vec`,
    /// never an error).
    ///
    /// ```
    /// let m = mproc::Manager::start()?;
    /// let l = m.list::<char>()?;
    /// l.extend("abcde".chars())?;
    /// assert_eq!(l.slice(1..3)?, ['b', 'c']); // l[1:3]
    /// assert_eq!(l.slice(-2..)?, ['d', 'e']); // l[-2:]
    /// assert_eq!(l.slice(..=-2)?, ['a', 'b', 'c', 'd']); // l[:-1]
    /// assert_eq!(l.slice(-100..100)?.len(), 5); // clamped
    /// assert!(l.slice(3..1)?.is_empty());
    /// # Ok::<(), mproc::Error>(())
    /// ```
    #[doc(alias = "__getitem__")]
    pub fn slice(&self, range: impl RangeBounds<i64>) -> Result<Vec<T>> {
        let (start, stop) = python_bounds(&range);
        self.slice_step(start, stop, 1)
    }

    /// The elements of Python's `l[start:stop:step]`, in one round trip
    /// (`None` leaves a bound out, as `l[::-1]` does). A step of zero is
    /// [`Error::InvalidArgument`] (Python's `ValueError`).
    ///
    /// ```
    /// let m = mproc::Manager::start()?;
    /// let l = m.list::<u8>()?;
    /// l.extend(0..6)?;
    /// assert_eq!(l.slice_step(None, None, 2)?, [0, 2, 4]); // l[::2]
    /// assert_eq!(l.slice_step(None, None, -1)?, [5, 4, 3, 2, 1, 0]); // l[::-1]
    /// assert_eq!(l.slice_step(Some(-1), Some(1), -2)?, [5, 3]); // l[-1:1:-2]
    /// assert!(l.slice_step(None, None, 0).is_err());
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn slice_step(&self, start: Option<i64>, stop: Option<i64>, step: i64) -> Result<Vec<T>> {
        if step == 0 {
            return Err(Error::InvalidArgument("slice step cannot be zero".into()));
        }
        let all: Packed = self.call(ListOp::Slice { start, stop, step })?;
        all.iter()
            .map(|b| dec(b.map_err(Error::Protocol)?))
            .collect()
    }

    /// The index of the first element equal to `value` (`l.index(value)`);
    /// none is [`RemoteError::NotInList`](crate::RemoteError::NotInList)
    /// (Python's `ValueError`).
    ///
    /// Elements are compared by their encoding, as the server keeps them
    /// (as dict keys are): values of one type that are equal encode
    /// equally for the usual types, but floats compare by bits (`-0.0` is
    /// not `0.0`, and a NaN finds a NaN with the same bits).
    ///
    /// ```
    /// use mproc::{Error, RemoteError};
    ///
    /// let m = mproc::Manager::start()?;
    /// let l = m.list::<String>()?;
    /// l.extend(["a", "b", "a"].map(String::from))?;
    /// assert_eq!(l.index(&"a".into())?, 0);
    /// assert!(matches!(
    ///     l.index(&"z".into()),
    ///     Err(Error::Remote(RemoteError::NotInList))
    /// ));
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn index(&self, value: &T) -> Result<usize> {
        self.index_in(value, ..)
    }

    /// As [`index`](ListProxy::index), looking only at the elements in
    /// `range` (Python's `l.index(value, start, stop)`, bounds as
    /// [`slice`](ListProxy::slice) takes them); the index returned counts
    /// from the start of the list.
    ///
    /// ```
    /// let m = mproc::Manager::start()?;
    /// let l = m.list::<u8>()?;
    /// l.extend([7, 8, 7, 8])?;
    /// assert_eq!(l.index_in(&7, 1..)?, 2); // l.index(7, 1)
    /// assert_eq!(l.index_in(&8, -1..)?, 3); // l.index(8, -1)
    /// assert!(l.index_in(&7, 3..).is_err());
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn index_in(&self, value: &T, range: impl RangeBounds<i64>) -> Result<usize> {
        let (start, stop) = python_bounds(&range);
        let at: u64 = self.call(ListOp::Index(enc_probe(value)?, start, stop))?;
        Ok(at as usize)
    }

    /// How many elements equal `value` (`l.count(value)`), compared by
    /// encoding as [`index`](ListProxy::index) does.
    ///
    /// ```
    /// let m = mproc::Manager::start()?;
    /// let l = m.list::<i32>()?;
    /// l.extend([1, 2, 1, 1])?;
    /// assert_eq!(l.count(&1)?, 3);
    /// assert_eq!(l.count(&5)?, 0);
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn count(&self, value: &T) -> Result<usize> {
        Ok(self.call::<u64>(ListOp::Count(enc_probe(value)?))? as usize)
    }

    /// Reverses the list in place, on the server (`l.reverse()`).
    ///
    /// ```
    /// let m = mproc::Manager::start()?;
    /// let l = m.list::<u8>()?;
    /// l.extend([1, 2, 3])?;
    /// l.reverse()?;
    /// assert_eq!(l.to_vec()?, [3, 2, 1]);
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn reverse(&self) -> Result<()> {
        self.call(ListOp::Reverse)
    }

    /// Sorts the list in ascending order (`l.sort()`); the sort is stable.
    ///
    /// The server cannot compare elements (it never decodes them), so this
    /// process does: it takes the elements, sorts them here and sends back
    /// only the new order. The sort is atomic all the same: from the
    /// moment the elements are taken until the order is applied, changes
    /// from other proxies wait (reads do not), so an element appended
    /// meanwhile by another process is neither lost nor left unsorted: it
    /// lands after the sorted list. If this process dies halfway, its
    /// connection closes and the waiting changes go ahead on the unsorted
    /// list. The list travels here whole and its new order (4 bytes an
    /// element) goes back.
    ///
    /// The comparison must not change this list through another proxy:
    /// that change would wait for this sort to end, which waits for it.
    ///
    /// ```
    /// let m = mproc::Manager::start()?;
    /// let l = m.list::<String>()?;
    /// l.extend(["pear", "apple", "fig"].map(String::from))?;
    /// l.sort()?;
    /// assert_eq!(l.to_vec()?, ["apple", "fig", "pear"]);
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn sort(&self) -> Result<()>
    where
        T: Ord,
    {
        self.sort_by(T::cmp)
    }

    /// Sorts the list by the key `f` gives each element (`l.sort(key=f)`),
    /// stably, as [`sort`](ListProxy::sort) does. `f` runs in this process.
    ///
    /// ```
    /// let m = mproc::Manager::start()?;
    /// let l = m.list::<String>()?;
    /// l.extend(["ccc", "a", "bb", "b"].map(String::from))?;
    /// l.sort_by_key(|s| s.len())?;
    /// assert_eq!(l.to_vec()?, ["a", "b", "bb", "ccc"]); // "a" stays before "b"
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn sort_by_key<K: Ord>(&self, mut f: impl FnMut(&T) -> K) -> Result<()> {
        self.sort_by(|a, b| f(a).cmp(&f(b)))
    }

    /// Sorts the list with the comparison `compare`, stably, as
    /// [`sort`](ListProxy::sort) does. Python's `l.sort(reverse=True)` is
    /// `l.sort_by(|a, b| b.cmp(a))` (equal elements keep their order).
    ///
    /// ```
    /// let m = mproc::Manager::start()?;
    /// let l = m.list::<(u8, char)>()?;
    /// l.extend([(1, 'a'), (2, 'b'), (1, 'c')])?;
    /// l.sort_by(|x, y| y.0.cmp(&x.0))?;
    /// assert_eq!(l.to_vec()?, [(2, 'b'), (1, 'a'), (1, 'c')]);
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn sort_by(&self, mut compare: impl FnMut(&T, &T) -> Ordering) -> Result<()> {
        loop {
            let (version, all): (u64, Packed) = self.call(ListOp::SortBegin)?;
            // Ends the sort if anything below fails or panics.
            let mut begun = Begun(Some(self));
            let values = all
                .iter()
                .map(|b| dec::<T>(b.map_err(Error::Protocol)?))
                .collect::<Result<Vec<T>>>()?;
            let n = u32::try_from(values.len())
                .map_err(|_| Error::InvalidArgument("sort of a list over 2^32 elements".into()))?;
            let mut perm: Vec<u32> = (0..n).collect();
            perm.sort_by(|&a, &b| compare(&values[a as usize], &values[b as usize]));
            begun.0 = None;
            let sorted = perm.iter().zip(0..).all(|(&p, i)| p == i);
            let perm = (!sorted).then_some(perm);
            // Not applied only if this proxy's own connection changed the
            // list meanwhile (another thread using this very handle).
            if self.call::<bool>(ListOp::SortEnd(Some((version, perm))))? {
                return Ok(());
            }
        }
    }
}

/// A sort begun on the server, ended on drop unless disarmed.
struct Begun<'a, T: Serialize + DeserializeOwned>(Option<&'a ListProxy<T>>);

impl<T: Serialize + DeserializeOwned> Drop for Begun<'_, T> {
    fn drop(&mut self) {
        if let Some(l) = self.0 {
            let _ = l.call::<bool>(ListOp::SortEnd(None));
        }
    }
}

/// A Rust range as Python's slice bounds (`None`: left out). `..=b`
/// includes `b`, so `..=-1` runs to the end.
fn python_bounds(range: &impl RangeBounds<i64>) -> (Option<i64>, Option<i64>) {
    let start = match range.start_bound() {
        Bound::Included(&a) => Some(a),
        Bound::Excluded(&-1) => Some(i64::MAX),
        Bound::Excluded(&a) => Some(a.saturating_add(1)),
        Bound::Unbounded => None,
    };
    let stop = match range.end_bound() {
        Bound::Excluded(&b) => Some(b),
        Bound::Included(&-1) => None,
        Bound::Included(&b) => Some(b.saturating_add(1)),
        Bound::Unbounded => None,
    };
    (start, stop)
}

/// A proxy to a fixed-length array in a [`Manager`](crate::Manager)'s
/// server (Python's `manager.Array(typecode, seq)`): elements can be read
/// and replaced, never added or removed.
///
/// ```
/// let m = mproc::Manager::start()?;
/// let a = m.array(vec![0u8; 4])?;
/// a.set(1, &7)?;
/// assert_eq!(a.get(-3)?, 7);
/// assert_eq!(a.len()?, 4);
/// assert_eq!(a.to_vec()?, vec![0, 7, 0, 0]);
/// assert!(a.set(4, &1).is_err());
/// # Ok::<(), mproc::Error>(())
/// ```
#[derive(Debug, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct ArrayProxy<T>(ListProxy<T>);

impl<T> Clone for ArrayProxy<T> {
    fn clone(&self) -> Self {
        ArrayProxy(self.0.clone())
    }
}

impl<T: Serialize + DeserializeOwned> ArrayProxy<T> {
    pub(crate) fn new(handle: Handle) -> Self {
        ArrayProxy(ListProxy::new(handle))
    }

    /// The element at `index` (negative: from the end).
    pub fn get(&self, index: i64) -> Result<T> {
        self.0.get(index)
    }

    /// Replaces the element at `index`; returns the old one.
    pub fn set(&self, index: i64, value: &T) -> Result<T> {
        self.0.set(index, value)
    }

    /// The number of elements.
    pub fn len(&self) -> Result<usize> {
        self.0.len()
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> Result<bool> {
        self.0.is_empty()
    }

    /// A copy of every element, in one round trip (`a[:]`).
    pub fn to_vec(&self) -> Result<Vec<T>> {
        self.0.to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_ranges_as_python_bounds() {
        assert_eq!(python_bounds(&(1..3)), (Some(1), Some(3)));
        assert_eq!(python_bounds(&(-2..)), (Some(-2), None));
        assert_eq!(python_bounds(&(..)), (None, None));
        assert_eq!(python_bounds(&(..=-1)), (None, None));
        assert_eq!(python_bounds(&(..=-2)), (None, Some(-1)));
        assert_eq!(python_bounds(&(..=i64::MAX)), (None, Some(i64::MAX)));
        let excluded = (Bound::Excluded(-1), Bound::Unbounded);
        assert_eq!(python_bounds(&excluded), (Some(i64::MAX), None));
        let excluded = (Bound::Excluded(-3), Bound::Excluded(0));
        assert_eq!(python_bounds(&excluded), (Some(-2), Some(0)));
    }
}
