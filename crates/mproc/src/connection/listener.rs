//! `Listener`: accepts authenticated connections on an address.

use std::net::TcpListener;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixListener};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::acceptor::{Acceptor, Policy, Sock};
use super::{Address, SocketConnection};
use crate::error::{Error, Result};
use crate::sys::keep_above_stdio;

/// How long an accepted peer has to finish the handshake by default, and
/// how long a [`Client`](crate::Client) gives a listener to finish it.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);

/// Listens on an address, as Python's `multiprocessing.connection.Listener`.
///
/// With a key, each peer must pass the mutual challenge–response handshake
/// (HMAC-SHA256, or CPython 3.11's HMAC-MD5) before `accept` returns it;
/// nothing the peer sends is decoded before that, each handshake read is
/// capped at 256 bytes, and a peer that stalls is dropped after the
/// handshake timeout. An empty key is no key.
///
/// Peers are accepted and authenticated in the background, concurrently
/// (one thread per listener, driven by `poll`), from the moment the
/// listener is bound: a peer that stays silent holds up nobody else, and
/// [`accept`](Listener::accept) returns the first peer that has
/// authenticated. A peer that fails the handshake (a wrong key, garbage)
/// makes `accept` return its [`Error::Authentication`], as CPython's
/// `accept` raises it; a peer that times out or hangs up mid-handshake is
/// dropped without a word. At most 128 handshakes are in progress at once
/// (a newer peer drops the oldest).
///
/// Who may connect without a key:
/// - TCP: anyone who reaches the port, so it must be asked for with
///   [`ListenerBuilder::allow_unauthenticated_tcp`].
/// - A Linux abstract name: anyone in the network namespace, so only
///   peers running as this process's user (or root) are accepted (checked
///   by `SO_PEERCRED`; others are dropped), unless
///   [`ListenerBuilder::allow_unauthenticated_abstract`] opens it to all.
/// - A Unix socket file: whoever the file's permissions let write to it.
///
/// A Unix socket file is removed when its listener is closed or dropped;
/// after [`close`](Listener::close), `accept` is an error. Closing or
/// dropping the listener stops its background thread and closes every
/// socket it held. The thread belongs to the process that bound the
/// listener: in a forked copy `accept` is [`Error::InvalidState`].
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
/// // Plain TCP needs an opt-in, and an empty key is no key:
/// assert!(Listener::bind(&Address::tcp("127.0.0.1:0")?, None).is_err());
/// assert!(Listener::bind(&Address::tcp("127.0.0.1:0")?, Some(b"")).is_err());
/// # Ok::<(), mproc::Error>(())
/// ```
#[derive(Debug)]
pub struct Listener {
    acceptor: Option<Acceptor>,
    address: Address,
    owner: u32,
}

/// Options for a [`Listener`]; see [`Listener::builder`].
#[derive(Debug, Clone)]
pub struct ListenerBuilder {
    address: Address,
    authkey: Option<Vec<u8>>,
    allow_plain_tcp: bool,
    allow_any_user: bool,
    handshake_timeout: Duration,
}

impl ListenerBuilder {
    /// The key peers must prove they hold (an empty key is no key).
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

    /// Lets a keyless listener on a Linux abstract name accept peers of
    /// every user (by default only this process's user and root may
    /// connect: an abstract name has no file permissions to guard it).
    pub fn allow_unauthenticated_abstract(mut self) -> Self {
        self.allow_any_user = true;
        self
    }

    /// How long an accepted peer has to complete the handshake
    /// ([`DEFAULT_HANDSHAKE_TIMEOUT`] by default).
    pub fn handshake_timeout(mut self, t: Duration) -> Self {
        self.handshake_timeout = t;
        self
    }

    /// Binds and listens; from now on peers are accepted and
    /// authenticated in the background.
    pub fn bind(self) -> Result<Listener> {
        let authkey: Option<Arc<[u8]>> = self.authkey.filter(|k| !k.is_empty()).map(Into::into);
        if self.address.is_tcp() && authkey.is_none() && !self.allow_plain_tcp {
            return Err(Error::InvalidArgument(
                "a TCP listener without an authkey needs allow_unauthenticated_tcp()".into(),
            ));
        }
        let same_user_only = matches!(self.address, Address::Abstract(_))
            && authkey.is_none()
            && !self.allow_any_user;
        let (sock, address) = bind(&self.address).map_err(Error::io("cannot bind a listener"))?;
        let policy = Policy {
            authkey,
            timeout: self.handshake_timeout,
            same_user_only,
        };
        let owner = std::process::id();
        let acceptor = match Acceptor::start(sock, policy) {
            Ok(a) => a,
            Err(e) => {
                if let Address::Unix(p) = &address {
                    let _ = std::fs::remove_file(p);
                }
                return Err(e);
            }
        };
        Ok(Listener {
            acceptor: Some(acceptor),
            address,
            owner,
        })
    }
}

fn bind(addr: &Address) -> std::io::Result<(Sock, Address)> {
    Ok(match addr {
        Address::Unix(p) => (
            Sock::Unix(keep_above_stdio(UnixListener::bind(p)?)?),
            addr.clone(),
        ),
        Address::Abstract(n) => {
            let l = UnixListener::bind_addr(&UnixAddr::from_abstract_name(n)?)?;
            (Sock::Unix(keep_above_stdio(l)?), addr.clone())
        }
        Address::Tcp(a) => {
            let l = keep_above_stdio(TcpListener::bind(a)?)?;
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
            allow_any_user: false,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }

    /// The address peers connect to (a TCP port 0 resolved to the real one).
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// Returns the next authenticated peer, waiting for one; the error of
    /// a peer that failed the handshake (see [`Listener`]).
    pub fn accept<T>(&self) -> Result<SocketConnection<T>> {
        self.accept_until(None)
    }

    /// As [`accept`](Listener::accept), giving up with [`Error::Timeout`]
    /// if no peer has authenticated within `timeout` (the whole call is
    /// bounded by it, whatever peers are in the middle of a handshake).
    pub fn accept_timeout<T>(&self, timeout: Duration) -> Result<SocketConnection<T>> {
        self.accept_until(Some(Instant::now() + timeout))
    }

    fn accept_until<T>(&self, deadline: Option<Instant>) -> Result<SocketConnection<T>> {
        let acceptor = self
            .acceptor
            .as_ref()
            .ok_or(Error::InvalidState("listener is closed"))?;
        if self.owner != std::process::id() {
            return Err(Error::InvalidState(
                "a listener accepts only in the process that bound it",
            ));
        }
        acceptor.next(deadline).map(SocketConnection::new)
    }

    /// Stops listening and removes a Unix socket file. Idempotent.
    pub fn close(&mut self) {
        let Some(acceptor) = self.acceptor.take() else {
            return;
        };
        if self.owner != std::process::id() {
            // A forked copy: the thread and the socket file are the parent's.
            acceptor.forget();
            return;
        }
        acceptor.stop();
        if let Address::Unix(p) = &self.address {
            let _ = std::fs::remove_file(p);
        }
    }

    /// Whether [`close`](Listener::close) was called.
    pub fn is_closed(&self) -> bool {
        self.acceptor.is_none()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.close();
    }
}
