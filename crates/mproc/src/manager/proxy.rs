//! The connection under every proxy: one per handle, made on first use and
//! again after a fork; and the references a handle holds on its object.
//!
//! # References
//!
//! An object lives while some handle refers to it (CPython's
//! `incref`/`decref`). The server counts, per object, the references each
//! connection holds, those in transit, and those held by other objects:
//!
//! - a handle made by the manager holds one reference on its own
//!   connection (the object is created on that connection);
//! - a clone, or a serialised copy, first takes a *transit* reference
//!   (`Share`) on the original's connection; the copy adopts it
//!   (`Adopt`) when it first connects, in the process that made it (a copy
//!   inherited through `fork` takes a fresh reference instead);
//! - dropping a handle sends `Decref` on its connection without waiting;
//!   a handle that never connected gives its transit reference back
//!   (`Release`, best effort, short timeout);
//! - a connection that closes (its process exited, or was killed) gives
//!   back every reference it held;
//! - a proxy encoded inside an element stored in another object (a list
//!   in a dict) is held by that object until the object is freed (the
//!   encoded copy says it carries no transit reference: a copy read back
//!   takes a fresh one on first use, and one dropped unused costs
//!   nothing); a proxy put on a queue stays in transit until the getter
//!   adopts it.
//!
//! A serialised copy that is never deserialised leaks its transit
//! reference until the server stops, as in CPython.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::link::Link;
use super::outgoing;
use super::protocol::{Op, Reply, Request};
use crate::connection::{Address, Client, SocketConnection};
use crate::error::{Error, Result};

/// How long connecting to a manager (handshake included) may take.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a dropped handle may spend giving its transit reference back.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(2);

/// Where a server is and the key it wants.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Target {
    pub(crate) address: Address,
    pub(crate) authkey: Vec<u8>,
}

/// An object on a server and this process's connection to it.
///
/// A clone or a copy received in another process opens its own
/// connection, on first use; a handle used after a fork reconnects (the
/// parent's socket is never shared).
pub(crate) struct Handle {
    pub(crate) target: Arc<Target>,
    pub(crate) id: u64,
    conn: Mutex<Option<(u32, Link)>>,
    /// The process this handle was made in.
    origin: u32,
    /// A transit reference waits to be adopted on the first connection.
    pending: AtomicBool,
}

impl Handle {
    /// A handle holding no reference (the manager's own, id 0).
    pub(crate) fn control(target: Arc<Target>) -> Handle {
        Handle::with(target, 0, false)
    }

    fn with(target: Arc<Target>, id: u64, pending: bool) -> Handle {
        Handle {
            target,
            id,
            conn: Mutex::new(None),
            origin: std::process::id(),
            pending: AtomicBool::new(pending),
        }
    }

    /// Creates an object on a connection of its own, which holds the new
    /// object's first reference.
    pub(crate) fn create(target: Arc<Target>, op: Op) -> Result<Handle> {
        let conn = Link::open(&target, connect(&target)?).map_err(gone)?;
        let refs = outgoing::take(&target.address);
        let reply = send_and_wait(&conn, &Request { id: 0, op, refs })?;
        let id: u64 = crate::connection::decode_plain(&reply.map_err(Error::Remote)?)?;
        let h = Handle::with(target, id, false);
        *h.conn.lock().unwrap_or_else(|p| p.into_inner()) = Some((std::process::id(), conn));
        Ok(h)
    }

    /// Sends `op` and decodes the result as `R`. A server that is gone (or
    /// goes while the call waits) is [`Error::ManagerGone`].
    pub(crate) fn call<R: DeserializeOwned>(&self, op: Op) -> Result<R> {
        let refs = outgoing::take(&self.target.address);
        let bytes = self.round_trip(&Request {
            id: self.id,
            op,
            refs,
        })?;
        crate::connection::decode_plain(&bytes)
    }

    fn round_trip(&self, req: &Request) -> Result<super::protocol::Bytes> {
        let mut g = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        self.round_trip_on(&mut g, req)
    }

    fn round_trip_on(
        &self,
        g: &mut Option<(u32, Link)>,
        req: &Request,
    ) -> Result<super::protocol::Bytes> {
        let me = std::process::id();
        if g.as_ref().is_none_or(|(pid, _)| *pid != me) {
            let socket = connect(&self.target)?;
            let conn = Link::open(&self.target, socket).map_err(gone)?;
            if self.id != 0 {
                // This connection's reference: the transit one waiting
                // here, or a new one (after a fork, or a lost connection).
                let adopt = me == self.origin && self.pending.swap(false, Ordering::SeqCst);
                let op = if adopt { Op::Adopt } else { Op::Incref };
                let r = send_and_wait(&conn, &Request::on(self.id, op))?;
                r.map_err(Error::Remote)?;
            }
            *g = Some((me, conn));
        }
        let conn = &g.as_ref().expect("connected just above").1;
        let r = send_and_wait(conn, req);
        if r.is_err() {
            *g = None;
        }
        r?.map_err(Error::Remote)
    }

    /// Takes a transit reference for a copy of this handle (best effort:
    /// a copy without one takes a fresh reference when it connects).
    fn share(&self) -> bool {
        if self.id == 0 {
            return false;
        }
        // Not `call`: that would take the handles collected so far.
        let req = Request::on(self.id, Op::Share);
        match self.conn.try_lock() {
            Ok(mut g) => self.round_trip_on(&mut g, &req).is_ok(),
            Err(std::sync::TryLockError::Poisoned(p)) => {
                self.round_trip_on(&mut p.into_inner(), &req).is_ok()
            }
            // Another thread waits on this connection (a lock, an event):
            // a transit reference belongs to no connection, so a short
            // one of its own does.
            Err(std::sync::TryLockError::WouldBlock) => connect(&self.target)
                .and_then(|conn| send_and_wait(&Link::Socket(conn), &req))
                .is_ok_and(|r| r.is_ok()),
        }
    }
}

impl Request {
    fn on(id: u64, op: Op) -> Request {
        Request {
            id,
            op,
            refs: Vec::new(),
        }
    }
}

fn send_and_wait(conn: &Link, req: &Request) -> Result<Reply> {
    let bytes = crate::connection::encode_plain(req)?;
    conn.send_bytes(&bytes).map_err(gone)?;
    crate::connection::decode_plain(&conn.recv_bytes().map_err(gone)?)
}

/// Connects to the server behind `target`.
pub(crate) fn connect(target: &Target) -> Result<SocketConnection<()>> {
    Client::connect_known(&target.address, Some(&target.authkey), CONNECT_TIMEOUT).map_err(gone)
}

/// A server that refuses connections or hangs up is gone.
fn gone(e: Error) -> Error {
    match e {
        Error::Disconnected | Error::Io { .. } | Error::Protocol(_) => Error::ManagerGone,
        e => e,
    }
}

impl Clone for Handle {
    fn clone(&self) -> Self {
        let transit = self.share();
        Handle::with(self.target.clone(), self.id, transit)
    }
}

impl Drop for Handle {
    /// Gives the reference back, never waiting for an answer; a server
    /// that is gone is ignored.
    fn drop(&mut self) {
        if self.id == 0 {
            return;
        }
        let me = std::process::id();
        let conn = self.conn.get_mut().unwrap_or_else(|p| p.into_inner());
        match conn.take() {
            Some((pid, conn)) if pid == me => {
                if let Ok(b) = crate::connection::encode_plain(&Request::on(self.id, Op::Decref)) {
                    let _ = conn.send_bytes(&b);
                }
            }
            _ if me == self.origin && *self.pending.get_mut() => {
                let key = &self.target.authkey;
                let c =
                    Client::connect_timeout::<()>(&self.target.address, Some(key), RELEASE_TIMEOUT);
                if let (Ok(c), Ok(b)) = (
                    c,
                    crate::connection::encode_plain(&Request::on(self.id, Op::Release)),
                ) {
                    let _ = c.send_bytes(&b);
                }
            }
            _ => {}
        }
    }
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "object #{} at {}", self.id, self.target.address)
    }
}

impl Serialize for Handle {
    /// Takes a transit reference, which the deserialised copy adopts (or,
    /// inside an element bound for the server, which the object holding
    /// the element takes over: copies read back from it take their own).
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut transit = false;
        if !crate::codec::is_sizing() {
            let shared = self.share();
            if !outgoing::collect(&self.target.address, self.id) {
                transit = shared;
            }
        }
        (&*self.target, self.id, transit).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Handle {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let (target, id, transit) = <(Target, u64, bool)>::deserialize(d)?;
        Ok(Handle::with(Arc::new(target), id, transit && id != 0))
    }
}
