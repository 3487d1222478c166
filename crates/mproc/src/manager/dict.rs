//! `DictProxy<K, V>`: a dict held by the server.

use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::protocol::{enc, Bytes, DictOp, Op, Packed};
use super::proxy::Handle;
use crate::error::{Error, Result};

/// Keeps `K` and `V` in the type without owning either (always `Send` and `Sync`).
type Entries<K, V> = fn((K, V)) -> (K, V);

/// A proxy to a dict in a [`Manager`](crate::Manager)'s server, as
/// Python's `DictProxy`. Keys are compared by their encoding (equal
/// keys of one type encode equally). Entries keep their insertion order,
/// as in Python: [`keys`](DictProxy::keys) and
/// [`snapshot`](DictProxy::snapshot) list them in it, a key whose value is
/// replaced keeps its place, and [`popitem`](DictProxy::popitem) takes the
/// last one.
///
/// Each call is one round trip to the server: use the batch calls
/// ([`update`](DictProxy::update), [`get_many`](DictProxy::get_many),
/// [`snapshot`](DictProxy::snapshot)) rather than a call per element.
///
/// ```
/// let m = mproc::Manager::start()?;
/// let d = m.dict::<String, u32>()?;
/// d.insert(&"a".into(), &1)?;
/// d.update([("b".to_string(), 2), ("c".to_string(), 3)])?;
/// assert_eq!(d.get(&"b".into())?, Some(2));
/// assert_eq!(d.get_many(&["c".into(), "z".into()])?, vec![Some(3), None]);
/// assert_eq!(d.len()?, 3);
/// # Ok::<(), mproc::Error>(())
/// ```
#[derive(Debug, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct DictProxy<K, V> {
    pub(crate) handle: Handle,
    #[serde(skip)]
    _t: PhantomData<Entries<K, V>>,
}

impl<K, V> Clone for DictProxy<K, V> {
    fn clone(&self) -> Self {
        DictProxy {
            handle: self.handle.clone(),
            _t: PhantomData,
        }
    }
}

fn dec<T: DeserializeOwned>(b: &[u8]) -> Result<T> {
    crate::connection::decode_plain(b)
}

fn dec_opt<T: DeserializeOwned>(b: Option<Bytes>) -> Result<Option<T>> {
    b.as_deref().map(dec).transpose()
}

impl<K, V> DictProxy<K, V>
where
    K: Serialize + DeserializeOwned,
    V: Serialize + DeserializeOwned,
{
    pub(crate) fn new(handle: Handle) -> Self {
        DictProxy {
            handle,
            _t: PhantomData,
        }
    }

    fn call<R: DeserializeOwned>(&self, op: DictOp) -> Result<R> {
        self.handle.call(Op::Dict(op))
    }

    /// The value for `key`, if any (`d.get(key)`).
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        dec_opt(self.call(DictOp::Get(enc(key)?))?)
    }

    /// Sets `key` to `value`; returns the previous value (`d[key] = value`).
    #[doc(alias = "__setitem__")]
    pub fn insert(&self, key: &K, value: &V) -> Result<Option<V>> {
        dec_opt(self.call(DictOp::Insert(enc(key)?, enc(value)?))?)
    }

    /// Removes `key`; returns its value (`d.pop(key, None)`).
    #[doc(alias = "pop")]
    pub fn remove(&self, key: &K) -> Result<Option<V>> {
        dec_opt(self.call(DictOp::Remove(enc(key)?))?)
    }

    /// Whether `key` is present (`key in d`).
    pub fn contains_key(&self, key: &K) -> Result<bool> {
        self.call(DictOp::Contains(enc(key)?))
    }

    /// The number of entries.
    pub fn len(&self) -> Result<usize> {
        Ok(self.call::<u64>(DictOp::Len)? as usize)
    }

    /// Whether the dict is empty.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Inserts every pair, in one round trip (`d.update(...)`).
    pub fn update(&self, items: impl IntoIterator<Item = (K, V)>) -> Result<()> {
        let mut p = Packed::default();
        for (k, v) in items {
            p.push(&k)?;
            p.push(&v)?;
        }
        self.call(DictOp::Update(p))
    }

    /// The values of `keys`, in one round trip.
    pub fn get_many(&self, keys: &[K]) -> Result<Vec<Option<V>>> {
        let keys = keys.iter().map(enc).collect::<Result<Vec<_>>>()?;
        let got: Vec<Option<Bytes>> = self.call(DictOp::GetMany(keys))?;
        got.into_iter().map(dec_opt).collect()
    }

    /// A copy of every entry, in one round trip (`d.copy()`, `d.items()`).
    #[doc(alias = "items")]
    #[doc(alias = "copy")]
    pub fn snapshot(&self) -> Result<Vec<(K, V)>> {
        let items: Packed = self.call(DictOp::Items)?;
        let mut it = items.iter();
        let mut all = Vec::new();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            let k = dec(k.map_err(Error::Protocol)?)?;
            all.push((k, dec(v.map_err(Error::Protocol)?)?));
        }
        Ok(all)
    }

    /// Every key.
    pub fn keys(&self) -> Result<Vec<K>> {
        let keys: Vec<Bytes> = self.call(DictOp::Keys)?;
        keys.iter().map(|k| dec(k)).collect()
    }

    /// Removes every entry.
    pub fn clear(&self) -> Result<()> {
        self.call(DictOp::Clear)
    }

    /// Removes and returns the entry inserted last (`d.popitem()`, LIFO as
    /// in Python 3.7+); replacing a value does not move its key. An empty
    /// dict is [`RemoteError::EmptyDict`](crate::RemoteError::EmptyDict)
    /// (Python's `KeyError`).
    ///
    /// ```
    /// use mproc::{Error, RemoteError};
    ///
    /// let m = mproc::Manager::start()?;
    /// let d = m.dict::<char, u32>()?;
    /// d.update([('a', 1), ('b', 2)])?;
    /// d.insert(&'a', &10)?; // 'a' keeps its place
    /// assert_eq!(d.popitem()?, ('b', 2));
    /// assert_eq!(d.popitem()?, ('a', 10));
    /// assert!(matches!(d.popitem(), Err(Error::Remote(RemoteError::EmptyDict))));
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn popitem(&self) -> Result<(K, V)> {
        let (k, v): (Bytes, Bytes) = self.call(DictOp::PopItem)?;
        Ok((dec(&k)?, dec(&v)?))
    }
}
