//! User-defined types served by a manager (CPython's `BaseManager.register`).

use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::protocol::{Op, Reply};
use super::proxy::Handle;
use super::served::{Built, Served};
use crate::error::{RemoteError, Result};
use crate::sys::fnref::FnRef;

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

fn failed(e: crate::Error) -> RemoteError {
    RemoteError::Failed(e.to_string())
}

/// A registered object as the server holds it: its calls take turns.
struct Registered<T>(Mutex<T>);

impl<T: Servable> Served for Registered<T> {
    fn serve(&self, _conn: u64, op: Op) -> Option<Reply> {
        let Op::Custom(request) = op else { return None };
        let mut me = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let reply = crate::connection::decode_plain(&request)
            .map_err(failed)
            .and_then(|call| me.call(call).map_err(RemoteError::Failed));
        Some(reply.and_then(|reply| super::served::out(&reply)))
    }
}

/// Makes a registered object from its encoded `Init`.
pub(crate) type Factory = fn(Vec<u8>) -> Built;

pub(crate) fn factory<T: Servable>(init: Vec<u8>) -> Built {
    let init = crate::connection::decode_plain(&init).map_err(failed)?;
    Ok(Arc::new(Registered(Mutex::new(T::create(init)))))
}

/// A registered type's name and its factory, which travels as an offset in
/// this executable. Registered types reach the server only in its first
/// frame, from the process that built the manager: decoded there, the
/// factory is vouched for; a client can only name a registered type, and
/// an `Entry` decoded from anyone else is refused unless the decoding
/// process already vouches for its factory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Entry {
    pub(crate) typeid: String,
    pub(crate) factory: FnRef<Factory>,
}

impl Entry {
    pub(crate) fn new<T: Servable>(typeid: &str) -> Entry {
        let f: Factory = factory::<T>;
        Entry {
            typeid: typeid.to_string(),
            factory: FnRef::new(f),
        }
    }

    pub(crate) fn factory(&self) -> Factory {
        self.factory.get()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;
    use crate::sys::{fnref, image};

    /// A registered type's wire form, as anyone could write it.
    #[derive(Serialize)]
    struct Forged {
        typeid: String,
        factory: i64,
    }

    struct Never;

    impl Servable for Never {
        type Init = ();
        type Call = ();
        type Reply = ();
        fn create(_: ()) -> Self {
            Never
        }
        fn call(&mut self, _: ()) -> std::result::Result<(), String> {
            Ok(())
        }
    }

    /// Registered types reach a server only in its first frame (from the
    /// process that built the manager), decoded with its parent trusted;
    /// a factory from anyone else is refused unless the server vouches
    /// for it already.
    #[test]
    fn a_factory_offset_nobody_vouched_for_is_refused() {
        let f: Factory = factory::<Never>;
        let forged = Forged {
            typeid: "Never".into(),
            factory: image::offset_of(f as usize),
        };
        let frame = codec::encode(&forged).unwrap();
        let e = codec::decode::<Entry>(&frame.bytes, Vec::new()).unwrap_err();
        assert!(
            matches!(&e, crate::Error::UntrustedCode { signature, .. } if signature.contains("Served")),
            "{e}"
        );
        let garbage = codec::encode(&Forged {
            typeid: "Never".into(),
            factory: 0x1234,
        })
        .unwrap();
        assert!(matches!(
            codec::decode::<Entry>(&garbage.bytes, Vec::new()),
            Err(crate::Error::UntrustedCode { .. })
        ));
        // From the parent (the server's first frame): vouched for, callable.
        let entry: Entry =
            fnref::trusting_parent(|| codec::decode(&frame.bytes, Vec::new())).unwrap();
        assert!(entry.factory()(codec::encode(&()).unwrap().bytes).is_ok());
    }

    #[test]
    fn a_registered_entry_comes_back() {
        let entry = Entry::new::<Never>("Never");
        let frame = codec::encode(&entry).unwrap();
        let back: Entry = codec::decode(&frame.bytes, Vec::new()).unwrap();
        assert_eq!(back.factory, entry.factory);
    }
}
