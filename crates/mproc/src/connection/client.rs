//! `Client`: connects to a [`Listener`](super::Listener).

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use super::stream::Stream;
use super::{auth, frame, Address, SocketConnection, DEFAULT_HANDSHAKE_TIMEOUT};
use crate::error::{AuthError, Error, Result};
use crate::observe::warn_event;
use crate::sys::fdpass;

/// Connects to a listener, as Python's `multiprocessing.connection.Client`.
///
/// With a key, the client answers the listener's challenge, then
/// challenges it in turn (both must hold the same key); a wrong key is
/// [`AuthError::DigestSentRejected`](crate::AuthError) here and
/// [`AuthError::DigestReceivedWrong`](crate::AuthError) at the listener.
/// A listener that does not finish the handshake within
/// [`DEFAULT_HANDSHAKE_TIMEOUT`](crate::DEFAULT_HANDSHAKE_TIMEOUT)
/// (or the time given to [`connect_timeout`](Client::connect_timeout)) is
/// [`AuthError::HandshakeTimeout`](crate::AuthError).
///
/// Without a key (`None` or an empty key) nothing is exchanged, but the
/// client waits up to [`Client::KEYLESS_CHALLENGE_WAIT`] for a challenge: a
/// listener that wants a key fails the connect with
/// [`AuthError::KeyRequired`](crate::AuthError), and a challenge that
/// arrives later fails the first receive the same way.
///
/// ```
/// use mproc::{Address, AuthError, Client, Error, Listener};
///
/// let nobody = Address::abstract_name("mproc-doc-nobody-listens");
/// assert!(matches!(Client::connect::<()>(&nobody, None), Err(Error::Io { .. })));
///
/// let keyed = Listener::bind(&Address::unique_abstract()?, Some(b"key"))?;
/// // Without the key: refused at connect (or, should the listener be slow
/// // to speak, at the first receive).
/// let refused = Client::connect::<()>(keyed.address(), None).and_then(|c| c.recv_bytes());
/// assert!(matches!(refused, Err(Error::Authentication(AuthError::KeyRequired))));
/// # Ok::<(), mproc::Error>(())
/// ```
pub struct Client;

impl Client {
    /// How long a keyless [`Client`] waits, after connecting, for a challenge
    /// that would say the listener wants a key. An mproc listener sends it as
    /// soon as the connection is made (its acceptor runs in the background),
    /// so this only needs to cover a context switch or two; a later challenge
    /// is still caught by the first receive. Keyless clients are rare (a key
    /// is the default everywhere but on local sockets), and this is what each
    /// of their connections costs.
    pub const KEYLESS_CHALLENGE_WAIT: Duration = Duration::from_millis(50);

    /// Connects to `addr`; see [`Client`].
    pub fn connect<T>(addr: &Address, authkey: Option<&[u8]>) -> Result<SocketConnection<T>> {
        Self::connect_until(addr, authkey, None, Self::KEYLESS_CHALLENGE_WAIT)
    }

    /// Connects to `addr`, giving up if the connection and the handshake
    /// take longer than `timeout`: [`Error::Timeout`] if the connection
    /// itself is not made in time,
    /// [`AuthError::HandshakeTimeout`](crate::AuthError) if the handshake
    /// is not finished in time.
    pub fn connect_timeout<T>(
        addr: &Address,
        authkey: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<SocketConnection<T>> {
        Self::connect_until(
            addr,
            authkey,
            Some(Instant::now() + timeout),
            Self::KEYLESS_CHALLENGE_WAIT,
        )
    }

    /// As [`connect_timeout`](Self::connect_timeout), for a peer known to
    /// share this key (a manager's own proxies): a keyless connection does
    /// not wait for a challenge that its server will not send (a late one
    /// still fails the first receive).
    pub(crate) fn connect_known<T>(
        addr: &Address,
        authkey: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<SocketConnection<T>> {
        let deadline = Some(Instant::now() + timeout);
        Self::connect_until(addr, authkey, deadline, Duration::ZERO)
    }

    fn connect_until<T>(
        addr: &Address,
        authkey: Option<&[u8]>,
        deadline: Option<Instant>,
        keyless_wait: Duration,
    ) -> Result<SocketConnection<T>> {
        let stream = Stream::connect(addr, crate::sys::remaining(deadline))
            .map_err(|e| frame::map_io(e, "cannot connect"))?;
        match authkey.filter(|k| !k.is_empty()) {
            Some(key) => {
                let bound = Instant::now() + DEFAULT_HANDSHAKE_TIMEOUT;
                let deadline = deadline.map_or(bound, |d| d.min(bound));
                if let Err(e) = handshake(&stream, key, deadline) {
                    warn_event!(
                        address = %addr,
                        reason = %e,
                        "connection refused by the server: authentication failed"
                    );
                    return Err(e);
                }
                Ok(SocketConnection::new(stream))
            }
            None => {
                let wait = Instant::now() + keyless_wait;
                refuse_challenge(&stream, deadline.map_or(wait, |d| d.min(wait)))?;
                Ok(SocketConnection::new(stream).refusing_challenge())
            }
        }
    }
}

fn handshake(stream: &Stream, key: &[u8], deadline: Instant) -> Result<()> {
    let mut io = auth::Bounded::new(stream, Some(deadline));
    let done =
        auth::answer_challenge(&mut io, key).and_then(|()| auth::deliver_challenge(&mut io, key));
    match done {
        Err(Error::Timeout) => Err(Error::Authentication(AuthError::HandshakeTimeout)),
        Err(e) => Err(e),
        Ok(()) => stream
            .set_deadline(None)
            .map_err(Error::io("cannot clear a timeout")),
    }
}

/// Waits until `deadline` for the listener to speak first; a challenge is
/// [`AuthError::KeyRequired`]. What else it sent stays unread.
fn refuse_challenge(stream: &Stream, deadline: Instant) -> Result<()> {
    let fd = stream.as_fd();
    if !fdpass::wait_readable(fd, Some(deadline)).map_err(Error::io("cannot poll a socket"))? {
        return Ok(());
    }
    let mut head = [0u8; 16];
    let n = fdpass::peek_packet(fd, &mut head)
        .map_err(Error::io("cannot peek at a socket"))?
        .unwrap_or(0);
    if auth::is_challenge_frame(&head[..n]) {
        return Err(Error::Authentication(AuthError::KeyRequired));
    }
    Ok(())
}
