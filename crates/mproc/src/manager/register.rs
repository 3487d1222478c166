//! User-defined types served by a manager (CPython's `BaseManager.register`).

use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::protocol::{Bytes, Op};
use super::proxy::Handle;
use crate::error::{RemoteError, Result};

/// A type a [`Manager`](crate::Manager)'s server can hold, and the calls it
/// answers: register it with
/// [`ManagerBuilder::register`](crate::manager::ManagerBuilder::register),
/// create one with [`Manager::create`](crate::Manager::create), call it
/// through its [`Proxy`].
///
/// Calls are a request type (an enum, typically) and a reply type; an
/// `Err(String)` from [`call`](Servable::call) comes back as
/// [`RemoteError::Failed`].
///
/// ```
/// use mproc::manager::Servable;
///
/// #[derive(Default)]
/// struct Counter(i64);
///
/// impl Servable for Counter {
///     type Init = i64;
///     type Call = i64; // add this much
///     type Reply = i64; // the new total
///     fn create(start: i64) -> Self {
///         Counter(start)
///     }
///     fn call(&mut self, add: i64) -> Result<i64, String> {
///         self.0 = self.0.checked_add(add).ok_or("overflow")?;
///         Ok(self.0)
///     }
/// }
///
/// let mut m = mproc::Manager::builder().register::<Counter>("Counter").start()?;
/// let c = m.create::<Counter>("Counter", 10)?;
/// assert_eq!(c.call(5)?, 15);
/// assert!(c.call(i64::MAX).is_err());
/// m.shutdown()?;
/// # Ok::<(), mproc::Error>(())
/// ```
pub trait Servable: Send + 'static {
    /// What [`create`](Servable::create) takes.
    type Init: Serialize + DeserializeOwned;
    /// A request.
    type Call: Serialize + DeserializeOwned;
    /// An answer.
    type Reply: Serialize + DeserializeOwned;
    /// Makes the object in the server.
    fn create(init: Self::Init) -> Self;
    /// Answers one request, in the server.
    fn call(&mut self, call: Self::Call) -> std::result::Result<Self::Reply, String>;
}

/// A [`Servable`] with its types erased, as the server keeps it.
pub(crate) trait Served: Send {
    fn call_bytes(&mut self, request: &[u8]) -> std::result::Result<Bytes, RemoteError>;
}

fn failed(e: crate::Error) -> RemoteError {
    RemoteError::Failed(e.to_string())
}

impl<T: Servable> Served for T {
    fn call_bytes(&mut self, request: &[u8]) -> std::result::Result<Bytes, RemoteError> {
        let call = crate::connection::decode_plain(request).map_err(failed)?;
        let reply = self.call(call).map_err(RemoteError::Failed)?;
        super::objects::out(&reply)
    }
}

/// Makes a registered object from its encoded `Init`.
pub(crate) type Factory = fn(&[u8]) -> std::result::Result<Box<dyn Served>, RemoteError>;

pub(crate) fn factory<T: Servable>(
    init: &[u8],
) -> std::result::Result<Box<dyn Served>, RemoteError> {
    let init = crate::connection::decode_plain(init).map_err(failed)?;
    Ok(Box::new(T::create(init)))
}

/// A registered type's name and its factory, as an offset in this
/// executable (the server runs the same one; mproc checks its identity).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Entry {
    pub(crate) typeid: String,
    pub(crate) factory: i64,
}

impl Entry {
    pub(crate) fn new<T: Servable>(typeid: &str) -> Entry {
        let f: Factory = factory::<T>;
        Entry {
            typeid: typeid.to_string(),
            factory: crate::sys::image::offset_of(f as usize),
        }
    }

    pub(crate) fn factory(&self) -> Factory {
        // SAFETY: `factory` was taken from a `Factory` by `Entry::new` in the
        // process that started this server, which runs this same executable
        // (a child's first frame carries the executable's identity and a
        // mismatch is refused before any argument is decoded).
        unsafe { crate::sys::image::fn_from_offset(self.factory) }
    }
}

/// A proxy to a registered object of type `T`.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Proxy<T: Servable> {
    handle: Handle,
    #[serde(skip)]
    _t: PhantomData<fn(T) -> T>,
}

impl<T: Servable> Clone for Proxy<T> {
    fn clone(&self) -> Self {
        Proxy {
            handle: self.handle.clone(),
            _t: PhantomData,
        }
    }
}

impl<T: Servable> Proxy<T> {
    pub(crate) fn new(handle: Handle) -> Self {
        Proxy {
            handle,
            _t: PhantomData,
        }
    }

    /// Sends `call` to the object and returns its reply (one round trip).
    pub fn call(&self, call: T::Call) -> Result<T::Reply> {
        let bytes = super::protocol::enc(&call)?;
        self.handle.call(Op::Custom(bytes))
    }
}
