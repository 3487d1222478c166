//! `Manager` and `ManagerBuilder`: starting, reaching and stopping a server.

use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::dict::DictProxy;
use super::list::{ArrayProxy, ListProxy};
use super::protocol::Packed;
use super::protocol::{enc, Kind, Op};
use super::proxy::{Handle, Target};
use super::queue::QueueProxy;
use super::register::{Entry, Proxy, Servable};
use super::server::{self, Setup};
use super::sync::{
    BarrierProxy, ConditionProxy, EventProxy, LockProxy, RLockProxy, SemaphoreProxy,
};
use super::values::{NamespaceProxy, ValueProxy};
use crate::connection::{encode_plain, Address};
use crate::error::{Error, Result};
use crate::{Pipe, Process, StartMethod};

/// How long the server has to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`Manager::shutdown`] waits for the server to exit before it
/// terminates it (CPython's `shutdown_timeout`).
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(1);

/// Shared objects held by a server process and reached through proxies, as
/// Python's `multiprocessing.Manager()` (a `SyncManager`).
///
/// [`start`](Manager::start) runs the server in a child process (which
/// ignores `SIGINT`) on a fresh Linux abstract address with a random key;
/// [`serve`](Manager::serve) does the same on an address and key of your
/// choice, and [`connect`](Manager::connect) reaches such a server from
/// another process. Proxies (`dict`, `list`, `namespace`, `value`, `lock`,
/// `event`, registered types) can be passed to children in their arguments
/// and reconnect there. An error raised in the server comes back as
/// [`Error::Remote`]; once the server is gone every call fails with
/// [`Error::ManagerGone`] instead of waiting.
///
/// # Cost
///
/// Every proxy call is a round trip to the server. To a server on this
/// machine (a Unix or abstract address, as with [`start`](Manager::start))
/// each proxy's connection moves, after the handshake, to a
/// [`Pipe`](crate::Pipe) in shared memory: about a microsecond and a half
/// on an idle machine, some 1.5 times a bare `Pipe` round trip, at the cost
/// of a server thread per connection that spins briefly after each call
/// and up to 1 MiB of shared memory per busy connection. Over TCP a call
/// costs a socket round trip (tens of microseconds). Prefer the batch
/// calls (`update`, `get_many`, `snapshot`, `extend`, `to_vec`) and, for
/// hot data, shared memory ([`Value`](crate::Value),
/// [`Array`](crate::Array)) or message passing.
///
/// # Caveats
///
/// A serialised proxy carries the server's address and key: send proxies
/// only to processes you trust.
///
/// # Lifetime of objects
///
/// An object lives while some proxy, in any process, refers to it, as in
/// CPython: the server counts references, a clone or a serialised copy
/// takes one, a drop gives one back (without waiting), and a process that
/// exits or is killed gives back those its connections held. A proxy
/// stored inside another object (a list in a dict) keeps its object
/// alive until the holder is freed (even if the element was removed
/// first). Named objects ([`dict_named`](Manager::dict_named) and the
/// like) live until the server stops, and so do objects whose serialised
/// proxies were never deserialised. [`object_count`](Manager::object_count)
/// tells how many objects the server holds.
///
/// ```
/// use mproc::{manager::DictProxy, Manager, Process};
///
/// fn work((d, n): (DictProxy<u32, u32>, u32)) {
///     d.insert(&n, &(n * n)).unwrap();
/// }
///
/// let mut m = Manager::start()?;
/// let d = m.dict::<u32, u32>()?;
/// let mut ps: Vec<Process> = (0..3).map(|n| Process::new(work, (d.clone(), n))).collect();
/// for p in &mut ps { p.start()?; }
/// for p in &mut ps { p.join()?; }
/// let mut all = d.snapshot()?;
/// all.sort();
/// assert_eq!(all, vec![(0, 0), (1, 1), (2, 4)]);
/// m.shutdown()?;
/// # Ok::<(), mproc::Error>(())
/// ```
pub struct Manager {
    target: Arc<Target>,
    control: Handle,
    server: Option<Process>,
    /// The process that started the server: only it stops it (a copy of
    /// this handle in a forked child does not).
    owner: u32,
}

/// Options for a [`Manager`]'s server; see [`Manager::builder`].
#[derive(Debug, Default)]
pub struct ManagerBuilder {
    address: Option<Address>,
    authkey: Option<Vec<u8>>,
    registry: Vec<Entry>,
    method: Option<StartMethod>,
}

impl ManagerBuilder {
    /// Where the server listens (default: a fresh abstract address).
    pub fn address(mut self, address: Address) -> Self {
        self.address = Some(address);
        self
    }

    /// The key clients must hold (default: 32 random bytes). An empty key
    /// is no key: refused on TCP, and on a Linux abstract address only
    /// clients of the server's user (or root) may connect.
    pub fn authkey(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.authkey = Some(key.into());
        self
    }

    /// How the server process starts (default: [`get_start_method`] at
    /// [`start`](ManagerBuilder::start)).
    ///
    /// [`get_start_method`]: crate::get_start_method
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.method = Some(method);
        self
    }

    /// Lets the server hold objects of type `T`, made by
    /// [`Manager::create`] under the name `typeid` (CPython's
    /// `BaseManager.register`).
    pub fn register<T: Servable>(mut self, typeid: &str) -> Self {
        self.registry.push(Entry::new::<T>(typeid));
        self
    }

    /// Starts the server process and waits until it listens.
    pub fn start(self) -> Result<Manager> {
        let address = match self.address {
            Some(a) => a,
            None => Address::unique_abstract()?,
        };
        if address.is_tcp() && self.authkey.as_ref().is_some_and(Vec::is_empty) {
            return Err(Error::InvalidArgument(
                "a TCP manager needs a non-empty authkey (an empty key is no key)".into(),
            ));
        }
        let authkey = match self.authkey {
            Some(k) => k,
            None => {
                let mut k = vec![0u8; 32];
                crate::connection::auth::random(&mut k)?;
                k
            }
        };
        let (ready_rx, ready_tx) = Pipe::one_way()?;
        let setup = Setup {
            target: Target { address, authkey },
            registry: self.registry,
            ready: ready_tx,
        };
        let authkey = setup.target.authkey.clone();
        let mut p = Process::new(server::main, setup)
            .name("SyncManager")
            .daemon(true);
        if let Some(method) = self.method {
            p = p.start_method(method);
        }
        p.start()?;
        let address = match ready_rx.recv_timeout(START_TIMEOUT) {
            Ok(Ok(a)) => a,
            Ok(Err(why)) => {
                let _ = p.join();
                return Err(Error::InvalidArgument(format!(
                    "manager cannot listen: {why}"
                )));
            }
            Err(e) => {
                let _ = p.kill();
                let _ = p.join();
                return Err(e);
            }
        };
        let target = Arc::new(Target { address, authkey });
        Ok(Manager {
            control: Handle::control(target.clone()),
            target,
            server: Some(p),
            owner: std::process::id(),
        })
    }
}

impl Manager {
    /// Starts a server process on a fresh abstract address with a random
    /// key.
    pub fn start() -> Result<Manager> {
        Self::builder().start()
    }

    /// A builder: address, key, registered types.
    pub fn builder() -> ManagerBuilder {
        ManagerBuilder::default()
    }

    /// Starts a server process listening on `address` with `authkey`, for
    /// other processes to [`connect`](Manager::connect) to. On TCP the key
    /// must not be empty ([`Error::InvalidArgument`]).
    pub fn serve(address: &Address, authkey: &[u8]) -> Result<Manager> {
        Self::builder()
            .address(address.clone())
            .authkey(authkey)
            .start()
    }

    /// Reaches a server started elsewhere. This handle does not own the
    /// server: dropping it leaves the server running.
    pub fn connect(address: &Address, authkey: &[u8]) -> Result<Manager> {
        let target = Arc::new(Target {
            address: address.clone(),
            authkey: authkey.to_vec(),
        });
        let control = Handle::control(target.clone());
        control.call::<()>(Op::Hello)?;
        Ok(Manager {
            target,
            control,
            server: None,
            owner: std::process::id(),
        })
    }

    /// The server's address (a TCP port 0 resolved to the real one).
    pub fn address(&self) -> &Address {
        &self.target.address
    }

    /// The key the server wants.
    pub fn authkey(&self) -> &[u8] {
        &self.target.authkey
    }

    /// The server process's pid, if this handle started it.
    pub fn pid(&self) -> Option<i32> {
        self.server.as_ref().and_then(Process::pid)
    }

    fn make(&self, kind: Kind, name: Option<&str>, init: Vec<u8>) -> Result<Handle> {
        let op = Op::Create {
            kind,
            name: name.map(str::to_string),
            init: super::protocol::Bytes(init),
        };
        Handle::create(self.target.clone(), op)
    }

    fn empty<T: Serialize>() -> Result<Vec<u8>> {
        encode_plain(&Vec::<T>::new())
    }

    /// A new empty dict.
    pub fn dict<K, V>(&self) -> Result<DictProxy<K, V>>
    where
        K: Serialize + DeserializeOwned,
        V: Serialize + DeserializeOwned,
    {
        let h = self.make(Kind::Dict, None, Self::empty::<(u8, u8)>()?)?;
        Ok(DictProxy::new(h))
    }

    /// The dict called `name`, made empty if it does not exist yet: how
    /// separate processes find the same object.
    pub fn dict_named<K, V>(&self, name: &str) -> Result<DictProxy<K, V>>
    where
        K: Serialize + DeserializeOwned,
        V: Serialize + DeserializeOwned,
    {
        let h = self.make(Kind::Dict, Some(name), Self::empty::<(u8, u8)>()?)?;
        Ok(DictProxy::new(h))
    }

    /// A new empty list.
    pub fn list<T: Serialize + DeserializeOwned>(&self) -> Result<ListProxy<T>> {
        let h = self.make(Kind::List, None, encode_plain(&Packed::default())?)?;
        Ok(ListProxy::new(h))
    }

    /// The list called `name`, made empty if it does not exist yet.
    pub fn list_named<T: Serialize + DeserializeOwned>(&self, name: &str) -> Result<ListProxy<T>> {
        let h = self.make(Kind::List, Some(name), encode_plain(&Packed::default())?)?;
        Ok(ListProxy::new(h))
    }

    /// A new list holding `items`, in one round trip.
    pub fn list_from<T: Serialize + DeserializeOwned>(
        &self,
        items: impl IntoIterator<Item = T>,
    ) -> Result<ListProxy<T>> {
        let l = self.list()?;
        l.extend(items)?;
        Ok(l)
    }

    /// A new fixed-length array holding `items` (`manager.Array`).
    #[doc(alias = "Array")]
    pub fn array<T: Serialize + DeserializeOwned>(
        &self,
        items: impl IntoIterator<Item = T>,
    ) -> Result<ArrayProxy<T>> {
        let mut p = Packed::default();
        for x in items {
            p.push(&x)?;
        }
        let h = self.make(Kind::List, None, encode_plain(&p)?)?;
        Ok(ArrayProxy::new(h))
    }

    /// A new namespace.
    #[doc(alias = "Namespace")]
    pub fn namespace(&self) -> Result<NamespaceProxy> {
        let handle = self.make(Kind::Namespace, None, Vec::new())?;
        Ok(NamespaceProxy { handle })
    }

    /// A new value holding `init` (`manager.Value`).
    pub fn value<T: Serialize + DeserializeOwned>(&self, init: T) -> Result<ValueProxy<T>> {
        let h = self.make(Kind::Value, None, enc(&init)?.0)?;
        Ok(ValueProxy::new(h))
    }

    /// A new lock, free.
    pub fn lock(&self) -> Result<LockProxy> {
        let handle = self.make(Kind::Lock, None, Vec::new())?;
        Ok(LockProxy { handle })
    }

    /// A new event, clear.
    pub fn event(&self) -> Result<EventProxy> {
        let handle = self.make(Kind::Event, None, Vec::new())?;
        Ok(EventProxy { handle })
    }

    /// A new queue holding at most `maxsize` items (0: no bound), as
    /// `manager.Queue(maxsize)`; it also counts unfinished items, as
    /// `manager.JoinableQueue()`.
    #[doc(alias = "Queue")]
    #[doc(alias = "JoinableQueue")]
    pub fn queue<T: Serialize + DeserializeOwned>(&self, maxsize: usize) -> Result<QueueProxy<T>> {
        let h = self.make(Kind::Queue(maxsize as u64), None, Vec::new())?;
        Ok(QueueProxy::new(h))
    }

    /// The queue called `name`, made with `maxsize` if it does not exist.
    pub fn queue_named<T: Serialize + DeserializeOwned>(
        &self,
        name: &str,
        maxsize: usize,
    ) -> Result<QueueProxy<T>> {
        let h = self.make(Kind::Queue(maxsize as u64), Some(name), Vec::new())?;
        Ok(QueueProxy::new(h))
    }

    /// A new semaphore with count `value`.
    pub fn semaphore(&self, value: u64) -> Result<SemaphoreProxy> {
        let handle = self.make(Kind::Semaphore(value, false), None, Vec::new())?;
        Ok(SemaphoreProxy { handle })
    }

    /// A new semaphore with count `value` that may not be released past it.
    pub fn bounded_semaphore(&self, value: u64) -> Result<SemaphoreProxy> {
        let handle = self.make(Kind::Semaphore(value, true), None, Vec::new())?;
        Ok(SemaphoreProxy { handle })
    }

    /// A new reentrant lock, free.
    pub fn rlock(&self) -> Result<RLockProxy> {
        let handle = self.make(Kind::Reentrant, None, Vec::new())?;
        Ok(RLockProxy { handle })
    }

    /// A new condition variable with its own reentrant lock.
    pub fn condition(&self) -> Result<ConditionProxy> {
        let handle = self.make(Kind::Reentrant, None, Vec::new())?;
        Ok(ConditionProxy { handle })
    }

    /// A new barrier for `parties` callers.
    pub fn barrier(&self, parties: u64) -> Result<BarrierProxy> {
        if parties == 0 {
            return Err(Error::InvalidArgument(
                "a barrier needs at least one party".into(),
            ));
        }
        let handle = self.make(Kind::Barrier(parties), None, Vec::new())?;
        Ok(BarrierProxy { handle })
    }

    /// A new object of the type registered as `typeid`
    /// ([`ManagerBuilder::register`]), made from `init`.
    pub fn create<T: Servable>(&self, typeid: &str, init: T::Init) -> Result<Proxy<T>> {
        let kind = Kind::Custom(typeid.to_string());
        Ok(Proxy::new(self.make(kind, None, enc(&init)?.0)?))
    }

    /// The object of type `typeid` called `name`, made from `init` if it
    /// does not exist yet.
    pub fn create_named<T: Servable>(
        &self,
        typeid: &str,
        name: &str,
        init: T::Init,
    ) -> Result<Proxy<T>> {
        let kind = Kind::Custom(typeid.to_string());
        Ok(Proxy::new(self.make(kind, Some(name), enc(&init)?.0)?))
    }

    /// How many objects the server holds now (a debugging aid: objects
    /// are freed when their last proxy is dropped).
    ///
    /// ```
    /// let m = mproc::Manager::start()?;
    /// let l = m.list::<u8>()?;
    /// let l2 = l.clone();
    /// assert_eq!(m.object_count()?, 1);
    /// drop(l);
    /// assert_eq!(m.object_count()?, 1); // `l2` still refers to it
    /// drop(l2);
    /// // A drop does not wait for the server: ask until it is done.
    /// let t = std::time::Instant::now();
    /// while m.object_count()? != 0 && t.elapsed().as_secs() < 10 {
    ///     std::thread::yield_now();
    /// }
    /// assert_eq!(m.object_count()?, 0);
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn object_count(&self) -> Result<usize> {
        Ok(self.control.call::<u64>(Op::ObjectCount)? as usize)
    }

    /// Stops the server this handle started: asks it to stop, waits a
    /// second, then terminates and finally kills it. Proxies fail with
    /// [`Error::ManagerGone`] afterwards. Does nothing on a handle from
    /// [`connect`](Manager::connect), in a forked copy of the handle, or
    /// after a first call.
    pub fn shutdown(&mut self) -> Result<()> {
        if self.owner != std::process::id() {
            return Ok(());
        }
        let Some(mut p) = self.server.take() else {
            return Ok(());
        };
        let _ = self.control.call::<()>(Op::Shutdown);
        if p.join_timeout(SHUTDOWN_TIMEOUT)? {
            return Ok(());
        }
        p.terminate()?;
        if !p.join_timeout(SHUTDOWN_TIMEOUT)? {
            p.kill()?;
            p.join()?;
        }
        Ok(())
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}
