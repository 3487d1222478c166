//! `Client`: connects to a [`Listener`](super::Listener).

use std::time::{Duration, Instant};

use super::stream::Stream;
use super::{auth, frame, Address, SocketConnection};
use crate::error::{Error, Result};

/// Connects to a listener, as Python's `multiprocessing.connection.Client`.
///
/// With a key, the client answers the listener's challenge, then
/// challenges it in turn (both must hold the same key); a wrong key is
/// [`AuthError::DigestSentRejected`](crate::AuthError) here and
/// [`AuthError::DigestReceivedWrong`](crate::AuthError) at the listener.
/// Without a key nothing is exchanged before the first message.
///
/// ```
/// use mproc::{Address, Client, Error};
///
/// let nobody = Address::abstract_name("mproc-doc-nobody-listens");
/// assert!(matches!(Client::connect::<()>(&nobody, None), Err(Error::Io { .. })));
/// ```
pub struct Client;

impl Client {
    /// Connects to `addr`; see [`Client`].
    pub fn connect<T>(addr: &Address, authkey: Option<&[u8]>) -> Result<SocketConnection<T>> {
        Self::connect_until(addr, authkey, None)
    }

    /// Connects to `addr`, giving up with [`Error::Timeout`] if the
    /// connection and the handshake take longer than `timeout`.
    pub fn connect_timeout<T>(
        addr: &Address,
        authkey: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<SocketConnection<T>> {
        Self::connect_until(addr, authkey, Some(Instant::now() + timeout))
    }

    fn connect_until<T>(
        addr: &Address,
        authkey: Option<&[u8]>,
        deadline: Option<Instant>,
    ) -> Result<SocketConnection<T>> {
        let stream = Stream::connect(addr, crate::sys::remaining(deadline))
            .map_err(|e| frame::map_io(e, "cannot connect"))?;
        if let Some(key) = authkey {
            handshake(&stream, key, deadline)?;
        }
        Ok(SocketConnection::new(stream))
    }
}

fn handshake(stream: &Stream, key: &[u8], deadline: Option<Instant>) -> Result<()> {
    let mut io = auth::Bounded::new(stream, deadline);
    auth::answer_challenge(&mut io, key)?;
    auth::deliver_challenge(&mut io, key)?;
    stream
        .set_deadline(None)
        .map_err(Error::io("cannot clear a timeout"))
}
