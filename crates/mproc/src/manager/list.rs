//! `ListProxy<T>`: a list held by the server.

use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::protocol::{enc, Bytes, ListOp, Op, Packed};
use super::proxy::Handle;
use crate::error::{Error, Result};

/// A proxy to a list in a [`Manager`](crate::Manager)'s server, as
/// Python's `ListProxy`. Indices follow Python: negative ones count from
/// the end, and one out of range is
/// [`RemoteError::IndexOutOfRange`](crate::RemoteError).
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
