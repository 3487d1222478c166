//! `Listener`: accepts authenticated connections on an address.

use std::net::TcpListener;
use std::os::fd::AsFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixListener};
use std::time::{Duration, Instant};

use super::stream::Stream;
use super::{auth, Address, SocketConnection};
use crate::error::{Error, Result};
use crate::sys::fdpass;

/// How long an accepted peer has to finish the handshake by default.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug)]
enum Sock {
    Unix(UnixListener),
    Tcp(TcpListener),
}

/// Listens on an address, as Python's `multiprocessing.connection.Listener`.
///
/// With a key, each accepted peer must pass the mutual challenge–response
/// handshake (HMAC-SHA256, or CPython 3.11's HMAC-MD5) before `accept`
/// returns it; nothing the peer sends is decoded before that, each
/// handshake read is capped at 256 bytes, and a peer that stalls is dropped
/// after the handshake timeout. A TCP listener without a key must be asked
/// for with [`ListenerBuilder::allow_unauthenticated_tcp`].
///
/// A Unix socket file is removed when its listener is closed or dropped;
/// after [`close`](Listener::close), `accept` is an error.
///
/// ```
/// use mproc::{Address, Error, Listener};
///
/// let dir = std::env::temp_dir().join(format!("mproc-doc-{}.sock", std::process::id()));
/// let mut l = Listener::bind(&Address::unix(&dir), Some(b"key"))?;
/// assert!(dir.exists());
/// // The address is taken:
/// assert!(Listener::bind(&Address::unix(&dir), Some(b"key")).is_err());
/// l.close();
/// assert!(!dir.exists());
/// assert!(matches!(l.accept::<()>(), Err(Error::InvalidState(_))));
/// // Plain TCP needs an opt-in:
/// assert!(Listener::bind(&Address::tcp("127.0.0.1:0")?, None).is_err());
/// # Ok::<(), mproc::Error>(())
/// ```
#[derive(Debug)]
pub struct Listener {
    sock: Option<Sock>,
    address: Address,
    authkey: Option<Vec<u8>>,
    handshake_timeout: Duration,
    owner: u32,
}

/// Options for a [`Listener`]; see [`Listener::builder`].
#[derive(Debug, Clone)]
pub struct ListenerBuilder {
    address: Address,
    authkey: Option<Vec<u8>>,
    allow_plain_tcp: bool,
    handshake_timeout: Duration,
}

impl ListenerBuilder {
    /// The key peers must prove they hold.
    pub fn authkey(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.authkey = Some(key.into());
        self
    }

    /// Lets a TCP listener run without a key: anyone who reaches the port
    /// can send messages.
    pub fn allow_unauthenticated_tcp(mut self) -> Self {
        self.allow_plain_tcp = true;
        self
    }

    /// How long an accepted peer has to complete the handshake
    /// ([`DEFAULT_HANDSHAKE_TIMEOUT`] by default).
    pub fn handshake_timeout(mut self, t: Duration) -> Self {
        self.handshake_timeout = t;
        self
    }

    /// Binds and listens.
    pub fn bind(self) -> Result<Listener> {
        if self.address.is_tcp() && self.authkey.is_none() && !self.allow_plain_tcp {
            return Err(Error::InvalidArgument(
                "a TCP listener without an authkey needs allow_unauthenticated_tcp()".into(),
            ));
        }
        let (sock, address) = bind(&self.address).map_err(Error::io("cannot bind a listener"))?;
        Ok(Listener {
            sock: Some(sock),
            address,
            authkey: self.authkey,
            handshake_timeout: self.handshake_timeout,
            owner: std::process::id(),
        })
    }
}

fn bind(addr: &Address) -> std::io::Result<(Sock, Address)> {
    Ok(match addr {
        Address::Unix(p) => (Sock::Unix(UnixListener::bind(p)?), addr.clone()),
        Address::Abstract(n) => {
            let l = UnixListener::bind_addr(&UnixAddr::from_abstract_name(n)?)?;
            (Sock::Unix(l), addr.clone())
        }
        Address::Tcp(a) => {
            let l = TcpListener::bind(a)?;
            let local = l.local_addr()?;
            (Sock::Tcp(l), Address::Tcp(local))
        }
    })
}

impl Listener {
    /// Listens on `addr`; peers must hold `authkey` (`None`: no
    /// authentication, refused for TCP).
    pub fn bind(addr: &Address, authkey: Option<&[u8]>) -> Result<Listener> {
        let mut b = Self::builder(addr.clone());
        b.authkey = authkey.map(<[u8]>::to_vec);
        b.bind()
    }

    /// A builder for the other options.
    pub fn builder(addr: Address) -> ListenerBuilder {
        ListenerBuilder {
            address: addr,
            authkey: None,
            allow_plain_tcp: false,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }

    /// The address peers connect to (a TCP port 0 resolved to the real one).
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// Waits for a peer and authenticates it.
    pub fn accept<T>(&self) -> Result<SocketConnection<T>> {
        self.accept_until(None)
    }

    /// As [`accept`](Listener::accept), giving up with [`Error::Timeout`]
    /// if no peer arrives within `timeout` (the handshake has its own).
    pub fn accept_timeout<T>(&self, timeout: Duration) -> Result<SocketConnection<T>> {
        self.accept_until(Some(Instant::now() + timeout))
    }

    fn accept_until<T>(&self, deadline: Option<Instant>) -> Result<SocketConnection<T>> {
        self.accept_pending(deadline)?.authenticate()
    }

    /// Takes the next peer without authenticating it: the caller runs
    /// [`Pending::authenticate`] (on another thread, so that a slow peer
    /// does not hold up the others).
    pub(crate) fn accept_pending(&self, deadline: Option<Instant>) -> Result<Pending> {
        let sock = self
            .sock
            .as_ref()
            .ok_or(Error::InvalidState("listener is closed"))?;
        let fd = match sock {
            Sock::Unix(l) => l.as_fd(),
            Sock::Tcp(l) => l.as_fd(),
        };
        if !fdpass::wait_readable(fd, deadline).map_err(Error::io("cannot accept"))? {
            return Err(Error::Timeout);
        }
        let stream = match sock {
            Sock::Unix(l) => l.accept().map(|(s, _)| Stream::Unix(s)),
            Sock::Tcp(l) => l.accept().and_then(|(s, _)| {
                s.set_nodelay(true)?;
                Ok(Stream::Tcp(s))
            }),
        }
        .map_err(Error::io("cannot accept"))?;
        Ok(Pending {
            stream,
            authkey: self.authkey.clone(),
            timeout: self.handshake_timeout,
        })
    }

    /// Stops listening and removes a Unix socket file. Idempotent.
    pub fn close(&mut self) {
        if self.sock.take().is_some() && self.owner == std::process::id() {
            if let Address::Unix(p) = &self.address {
                let _ = std::fs::remove_file(p);
            }
        }
    }

    /// Whether [`close`](Listener::close) was called.
    pub fn is_closed(&self) -> bool {
        self.sock.is_none()
    }
}

/// An accepted peer that has not authenticated yet.
pub(crate) struct Pending {
    stream: Stream,
    authkey: Option<Vec<u8>>,
    timeout: Duration,
}

impl Pending {
    /// Runs the listener's half of the handshake (when it has a key),
    /// bounded by its handshake timeout.
    pub(crate) fn authenticate<T>(self) -> Result<SocketConnection<T>> {
        if let Some(key) = &self.authkey {
            let deadline = Some(Instant::now() + self.timeout);
            handshake(&self.stream, key, deadline)?;
        }
        Ok(SocketConnection::new(self.stream))
    }
}

fn handshake(stream: &Stream, key: &[u8], deadline: Option<Instant>) -> Result<()> {
    let mut io = auth::Bounded::new(stream, deadline);
    auth::deliver_challenge(&mut io, key)?;
    auth::answer_challenge(&mut io, key)?;
    stream
        .set_deadline(None)
        .map_err(Error::io("cannot clear a timeout"))
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.close();
    }
}
