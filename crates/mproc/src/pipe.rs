//! `Pipe` and `Connection`: messages between two processes.
//!
//! A connection is one end of a Unix stream socket pair carrying
//! length-prefixed frames; OS handles inside a message travel beside it by
//! `SCM_RIGHTS`. Messages keep their boundaries. An end can be given to a
//! child inside its arguments and keeps its direction there.

use std::marker::PhantomData;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::codec::{self, WireFd};
use crate::error::{Error, Result};
use crate::sys::fdpass;
use crate::task::MAX_FRAME;
use crate::wait::Waitable;

/// Creates connected pairs of [`Connection`]s, as Python's `Pipe()`.
///
/// ```
/// use mproc::{Pipe, Process, Connection};
///
/// fn child(conn: Connection<String>) {
///     conn.send(&"hello from the child".to_string()).unwrap();
/// }
///
/// let (parent_end, child_end) = Pipe::<String>::new()?;
/// let mut p = Process::new(child, child_end);
/// p.start()?;
/// assert_eq!(parent_end.recv()?, "hello from the child");
/// p.join()?;
/// # Ok::<(), mproc::Error>(())
/// ```
pub struct Pipe<T>(PhantomData<fn(T) -> T>);

impl<T> Pipe<T> {
    /// A duplex pipe: both ends send and receive.
    #[allow(clippy::new_ret_no_self)]
    pub fn new() -> Result<(Connection<T>, Connection<T>)> {
        let (a, b) = fdpass::stream_pair().map_err(Error::io("cannot create a pipe"))?;
        Ok((
            Connection::from_fd(a, true, true),
            Connection::from_fd(b, true, true),
        ))
    }

    /// A one-way pipe, as Python's `Pipe(duplex=False)`: the first end only
    /// receives, the second only sends.
    ///
    /// ```
    /// let (rx, tx) = mproc::Pipe::<u8>::one_way()?;
    /// tx.send(&1)?;
    /// assert_eq!(rx.recv()?, 1);
    /// assert!(rx.send(&2).is_err());
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn one_way() -> Result<(Connection<T>, Connection<T>)> {
        let (a, b) = fdpass::stream_pair().map_err(Error::io("cannot create a pipe"))?;
        Ok((
            Connection::from_fd(a, true, false),
            Connection::from_fd(b, false, true),
        ))
    }
}

/// One end of a [`Pipe`], carrying messages of type `T` (and raw bytes).
///
/// A connection is for one user at a time: two processes or threads that
/// send (or receive) on the same end at once may interleave their data, as
/// in Python.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Connection<T> {
    sock: Option<WireFd>,
    readable: bool,
    writable: bool,
    #[serde(skip)]
    _type: PhantomData<fn(T) -> T>,
}

impl<T> Connection<T> {
    fn from_fd(fd: std::os::fd::OwnedFd, readable: bool, writable: bool) -> Self {
        Connection {
            sock: Some(WireFd(fd)),
            readable,
            writable,
            _type: PhantomData,
        }
    }

    fn sock(&self) -> Result<BorrowedFd<'_>> {
        self.sock
            .as_ref()
            .map(|s| s.as_fd())
            .ok_or(Error::InvalidState("connection is closed"))
    }

    fn reader(&self) -> Result<BorrowedFd<'_>> {
        if !self.readable {
            return Err(Error::InvalidState("connection is write-only"));
        }
        self.sock()
    }

    fn writer(&self) -> Result<BorrowedFd<'_>> {
        if !self.writable {
            return Err(Error::InvalidState("connection is read-only"));
        }
        self.sock()
    }

    /// Whether this end can receive.
    pub fn readable(&self) -> bool {
        self.readable
    }

    /// Whether this end can send.
    pub fn writable(&self) -> bool {
        self.writable
    }

    /// Whether [`close`](Connection::close) was called.
    pub fn closed(&self) -> bool {
        self.sock.is_none()
    }

    /// Closes this end (dropping it does the same). The peer receives end
    /// of file once every copy of this end (in every process) is closed.
    pub fn close(&mut self) {
        self.sock = None;
    }

    /// Sends raw bytes as one message.
    pub fn send_bytes(&self, buf: &[u8]) -> Result<()> {
        send_frame(self.writer()?, buf, &[])
    }

    /// Receives one message as raw bytes. [`Error::Disconnected`] once the
    /// peer is closed and every message has been received.
    pub fn recv_bytes(&self) -> Result<Vec<u8>> {
        self.recv_frame(None).map(|(bytes, _)| bytes)
    }

    /// Receives one message into `buf`, returning its length. A message
    /// longer than `buf` is consumed and returned in
    /// [`Error::BufferTooShort`].
    pub fn recv_bytes_into(&self, buf: &mut [u8]) -> Result<usize> {
        let (bytes, _) = self.recv_frame(None)?;
        if bytes.len() > buf.len() {
            return Err(Error::BufferTooShort { message: bytes });
        }
        buf[..bytes.len()].copy_from_slice(&bytes);
        Ok(bytes.len())
    }

    /// Whether a message (or end of file) can be received within `timeout`
    /// (zero: just look).
    pub fn poll(&self, timeout: Duration) -> Result<bool> {
        fdpass::wait_readable(self.reader()?, Some(Instant::now() + timeout))
            .map_err(Error::io("poll failed"))
    }

    fn recv_frame(
        &self,
        deadline: Option<Instant>,
    ) -> Result<(Vec<u8>, Vec<std::os::fd::OwnedFd>)> {
        let sock = self.reader()?;
        if deadline.is_some()
            && !fdpass::wait_readable(sock, deadline).map_err(Error::io("poll failed"))?
        {
            return Err(Error::Timeout);
        }
        match fdpass::recv_frame(sock, None, MAX_FRAME) {
            Ok(Some(frame)) => Ok(frame),
            Ok(None) => Err(Error::Disconnected),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(Error::Disconnected),
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                Err(Error::Protocol(e.to_string()))
            }
            Err(e) => Err(Error::io("cannot receive")(e)),
        }
    }
}

impl<T: Serialize> Connection<T> {
    /// Sends a value. OS handles inside it (connections, later queues and
    /// locks) travel with it.
    pub fn send(&self, value: &T) -> Result<()> {
        let w = self.writer()?;
        let frame = codec::encode(value)?;
        send_frame(w, &frame.bytes, &frame.borrowed_fds())
    }
}

impl<T: DeserializeOwned> Connection<T> {
    /// Receives a value, blocking until one arrives. [`Error::Disconnected`]
    /// once the peer is closed and drained; [`Error::Decode`] for bytes that
    /// are not a `T` (the connection stays usable).
    pub fn recv(&self) -> Result<T> {
        let (bytes, fds) = self.recv_frame(None)?;
        codec::decode(&bytes, fds)
    }

    /// As [`recv`](Connection::recv), waiting at most `timeout`
    /// ([`Error::Timeout`]).
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T> {
        let (bytes, fds) = self.recv_frame(Some(Instant::now() + timeout))?;
        codec::decode(&bytes, fds)
    }

    /// Receives a value if one is ready ([`Error::Empty`] otherwise).
    pub fn try_recv(&self) -> Result<T> {
        match self.recv_timeout(Duration::ZERO) {
            Err(Error::Timeout) => Err(Error::Empty),
            r => r,
        }
    }
}

fn send_frame(sock: BorrowedFd<'_>, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> Result<()> {
    fdpass::send_frame(sock, bytes, fds).map_err(|e| match e.raw_os_error() {
        Some(libc::EPIPE) | Some(libc::ECONNRESET) => Error::Disconnected,
        _ => Error::io("cannot send")(e),
    })
}

impl<T> Waitable for Connection<T> {
    fn wait_fd(&self) -> Result<BorrowedFd<'_>> {
        self.reader()
    }
}

impl<T> std::fmt::Debug for Connection<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("readable", &self.readable)
            .field("writable", &self.writable)
            .field("closed", &self.closed())
            .finish()
    }
}
