//! `NamespaceProxy` and `ValueProxy<T>`.

use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::protocol::{enc, Bytes, NamespaceOp, Op, ValueOp};
use super::proxy::Handle;
use crate::error::Result;

/// A proxy to a namespace in a [`Manager`](crate::Manager)'s server, as
/// Python's `Namespace`: named attributes, each of its own type.
///
/// ```
/// let m = mproc::Manager::start()?;
/// let ns = m.namespace()?;
/// ns.set("x", &10u32)?;
/// ns.set("name", &"bob".to_string())?;
/// assert_eq!(ns.get::<u32>("x")?, Some(10));
/// assert_eq!(ns.names()?, vec!["name".to_string(), "x".to_string()]);
/// assert!(ns.delete("x")?);
/// assert_eq!(ns.get::<u32>("x")?, None);
/// # Ok::<(), mproc::Error>(())
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NamespaceProxy {
    pub(crate) handle: Handle,
}

impl NamespaceProxy {
    fn call<R: DeserializeOwned>(&self, op: NamespaceOp) -> Result<R> {
        self.handle.call(Op::Namespace(op))
    }

    /// The attribute `name`, if set (`getattr(ns, name, None)`). Read it
    /// with the type it was set with.
    pub fn get<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>> {
        let b: Option<Bytes> = self.call(NamespaceOp::Get(name.into()))?;
        b.map(|b| crate::connection::decode_plain(&b)).transpose()
    }

    /// Sets the attribute `name` (`ns.name = value`); returns whether it
    /// was set before.
    pub fn set<T: Serialize>(&self, name: &str, value: &T) -> Result<bool> {
        self.call(NamespaceOp::Set(name.into(), enc(value)?))
    }

    /// Removes the attribute `name`; returns whether it was set.
    pub fn delete(&self, name: &str) -> Result<bool> {
        self.call(NamespaceOp::Delete(name.into()))
    }

    /// The attributes' names, sorted.
    pub fn names(&self) -> Result<Vec<String>> {
        self.call(NamespaceOp::Names)
    }
}

/// A proxy to a single value in a [`Manager`](crate::Manager)'s server, as
/// Python's `manager.Value` (`ValueProxy`).
///
/// ```
/// let m = mproc::Manager::start()?;
/// let v = m.value(1.5f64)?;
/// assert_eq!(v.set(&2.5)?, 1.5);
/// assert_eq!(v.get()?, 2.5);
/// # Ok::<(), mproc::Error>(())
/// ```
#[derive(Debug, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct ValueProxy<T> {
    pub(crate) handle: Handle,
    #[serde(skip)]
    _t: PhantomData<fn(T) -> T>,
}

impl<T> Clone for ValueProxy<T> {
    fn clone(&self) -> Self {
        ValueProxy {
            handle: self.handle.clone(),
            _t: PhantomData,
        }
    }
}

impl<T: Serialize + DeserializeOwned> ValueProxy<T> {
    pub(crate) fn new(handle: Handle) -> Self {
        ValueProxy {
            handle,
            _t: PhantomData,
        }
    }

    /// The value (`v.value`).
    pub fn get(&self) -> Result<T> {
        let b: Bytes = self.handle.call(Op::Value(ValueOp::Get))?;
        crate::connection::decode_plain(&b)
    }

    /// Replaces the value; returns the old one (`v.value = x`).
    pub fn set(&self, value: &T) -> Result<T> {
        let b: Bytes = self.handle.call(Op::Value(ValueOp::Set(enc(value)?)))?;
        crate::connection::decode_plain(&b)
    }
}
