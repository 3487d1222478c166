//! The connection under every proxy: one per handle, made on first use and
//! again after a fork.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::link::Link;
use super::protocol::{Op, Reply, Request};
use crate::connection::{Address, Client, SocketConnection};
use crate::error::{Error, Result};

/// How long connecting to a manager (handshake included) may take.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

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
}

impl Handle {
    pub(crate) fn new(target: Arc<Target>, id: u64) -> Handle {
        Handle {
            target,
            id,
            conn: Mutex::new(None),
        }
    }

    /// Sends `op` and decodes the result as `R`. A server that is gone (or
    /// goes while the call waits) is [`Error::ManagerGone`].
    pub(crate) fn call<R: DeserializeOwned>(&self, op: Op) -> Result<R> {
        let bytes = self.round_trip(&Request { id: self.id, op })?;
        crate::connection::decode_plain(&bytes)
    }

    fn round_trip(&self, req: &Request) -> Result<super::protocol::Bytes> {
        let mut g = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let me = std::process::id();
        if g.as_ref().is_none_or(|(pid, _)| *pid != me) {
            let socket = connect(&self.target)?;
            *g = Some((me, Link::open(&self.target, socket).map_err(gone)?));
        }
        let conn = &g.as_ref().expect("connected just above").1;
        let r = send_and_wait(conn, req);
        if r.is_err() {
            *g = None;
        }
        r?.map_err(Error::Remote)
    }
}

fn send_and_wait(conn: &Link, req: &Request) -> Result<Reply> {
    let bytes = crate::connection::encode_plain(req)?;
    conn.send_bytes(&bytes).map_err(gone)?;
    crate::connection::decode_plain(&conn.recv_bytes().map_err(gone)?)
}

/// Connects to the server behind `target`.
pub(crate) fn connect(target: &Target) -> Result<SocketConnection<()>> {
    Client::connect_timeout(&target.address, Some(&target.authkey), CONNECT_TIMEOUT).map_err(gone)
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
        Handle::new(self.target.clone(), self.id)
    }
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "object #{} at {}", self.id, self.target.address)
    }
}

impl Serialize for Handle {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        (&*self.target, self.id).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Handle {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let (target, id) = <(Target, u64)>::deserialize(d)?;
        Ok(Handle::new(Arc::new(target), id))
    }
}
