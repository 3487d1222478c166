//! `Pipe` and `Connection`: messages between two processes.
//!
//! Each direction of a pipe is a ring in shared memory; a Unix socket pair
//! beside the rings carries OS handles (by `SCM_RIGHTS`), wake-ups for
//! [`wait`](crate::wait()), and the peer's hang-up. A message costs no system
//! call while the peer is awake; a waiting end spins briefly, then sleeps
//! on a futex. See `README.md` in this folder for the design.
//!
//! | file        | what                                                        |
//! |-------------|-------------------------------------------------------------|
//! | `mod.rs`    | the public `Pipe` and `Connection<T>`                       |
//! | `end.rs`    | one end, untyped: messages of bytes through the rings       |
//! | `ring.rs`   | one direction: the ring's shared words, copies and waits    |
//! | `record.rs` | a message's header in the ring                              |
//! | `layout.rs` | the shared region: where the rings are, its header          |
//! | `side.rs`   | the socket beside the rings                                 |
//! | `sink.rs`   | where a received message goes                               |
//! | `aio.rs`    | the futures (feature `tokio`): `recv_async`, `send_async`... |

#[cfg(feature = "tokio")]
mod aio;
mod end;
mod layout;
mod record;
mod ring;
mod side;
mod sink;
#[cfg(test)]
mod tests;

use std::marker::PhantomData;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::de::{DeserializeOwned, Error as _};
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::codec::{self, WireFd};
use crate::error::{Error, Result};
use crate::sys::fdpass;
use crate::wait::Waitable;
use end::End;
use layout::{Shared, RING_CAP};
use sink::{Dst, Message};

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
        pair(2, RING_CAP, [(true, true), (true, true)])
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
        pair(1, RING_CAP, [(true, false), (false, true)])
    }
}

/// Two connected ends over `rings` rings of `cap` bytes; `dirs[e]` is end
/// `e`'s `(readable, writable)`.
fn pair<T>(
    rings: usize,
    cap: u32,
    dirs: [(bool, bool); 2],
) -> Result<(Connection<T>, Connection<T>)> {
    let (a, b) = fdpass::stream_pair().map_err(Error::io("cannot create a pipe"))?;
    let shared = Arc::new(Shared::create(rings, cap)?);
    let end = |sock, id: usize| {
        let (r, w) = dirs[id];
        End::new(sock, shared.clone(), id, r, w)
            .map(|end| Connection::from_end(end, r, w))
            .map_err(Error::Protocol)
    };
    Ok((end(a, 0)?, end(b, 1)?))
}

/// One end of a [`Pipe`], carrying messages of type `T` (and raw bytes).
///
/// Messages keep their boundaries and their order, whatever their size: a
/// message larger than the ring is streamed through it while the receiver
/// copies it out. OS handles inside a message (other connections...) travel
/// with it. A connection can be given to a child in its arguments, or sent
/// inside a message, and keeps its direction there.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use mproc::{Connection, Error, Pipe};
///
/// let (a, b) = Pipe::<Connection<String>>::new()?;
/// assert!(!b.poll(Duration::ZERO)?);
///
/// // A connection inside a message: the receiver gets a working end.
/// let (mine, theirs) = Pipe::<String>::new()?;
/// a.send(&theirs)?;
/// drop(theirs);
/// let theirs = b.recv()?;
/// theirs.send(&"hi".to_string())?;
/// assert_eq!(mine.recv()?, "hi");
///
/// // Raw bytes, and a buffer too short for them.
/// a.send_bytes(b"hello")?;
/// let mut buf = [0u8; 2];
/// match b.recv_bytes_into(&mut buf) {
///     Err(Error::BufferTooShort { message }) => assert_eq!(message, b"hello"),
///     other => panic!("{other:?}"),
/// }
///
/// // End of file once every copy of the other end is closed.
/// drop(theirs);
/// assert!(matches!(mine.recv(), Err(Error::Disconnected)));
/// # Ok::<(), mproc::Error>(())
/// ```
///
/// # Caveats
///
/// A connection is for one user at a time, as in Python. Threads of one
/// process may share it (their sends, and their receives, take turns), but
/// two *processes* that send (or receive) on copies of the same end at once
/// garble the stream: the receiver then gets [`Error::Protocol`] or wrong
/// messages, never undefined behaviour.
///
/// A message sent to a peer that was killed (rather than closed) may be
/// accepted into the ring; a later send, once the ring is full, reports
/// [`Error::Disconnected`].
///
/// A child started by [`StartMethod::Fork`](crate::StartMethod::Fork)
/// inherits a copy of every end open in the parent, so an end kept by the
/// parent is not fully closed (and its peer sees no end of file) until such
/// a child exits, as with Python's fork.
pub struct Connection<T> {
    end: Option<End>,
    readable: bool,
    writable: bool,
    _type: PhantomData<fn(T) -> T>,
}

/// The same end, carrying messages of another type: for tests that forge
/// a message with a lookalike type (what they test is the receiver's
/// decoding). Not part of the API.
#[doc(hidden)]
pub fn __cast_connection<T, U>(mut c: Connection<T>) -> Connection<U> {
    Connection {
        end: c.end.take(),
        readable: c.readable,
        writable: c.writable,
        _type: PhantomData,
    }
}

impl<T> Connection<T> {
    fn from_end(end: End, readable: bool, writable: bool) -> Self {
        Connection {
            end: Some(end),
            readable,
            writable,
            _type: PhantomData,
        }
    }

    fn end(&self) -> Result<&End> {
        self.end
            .as_ref()
            .ok_or(Error::InvalidState("connection is closed"))
    }

    fn reader(&self) -> Result<&End> {
        if !self.readable {
            return Err(Error::InvalidState("connection is write-only"));
        }
        self.end()
    }

    fn writer(&self) -> Result<&End> {
        if !self.writable {
            return Err(Error::InvalidState("connection is read-only"));
        }
        self.end()
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
        self.end.is_none()
    }

    /// Closes this end (dropping it does the same). The peer receives end
    /// of file once every copy of this end (in every process) is closed.
    pub fn close(&mut self) {
        self.end = None;
    }

    /// Sends raw bytes as one message.
    ///
    /// The pipe's shared memory is reserved as messages first reach each
    /// part of it: when memory is short (a memory cgroup's limit), a send
    /// that needs more fails with [`Error::NoSpace`] and sends nothing,
    /// rather than faulting.
    pub fn send_bytes(&self, buf: &[u8]) -> Result<()> {
        self.writer()?.send(buf, &[])
    }

    /// Receives one message as raw bytes. [`Error::Disconnected`] once the
    /// peer is closed and every message has been received.
    pub fn recv_bytes(&self) -> Result<Vec<u8>> {
        let m = self.reader()?.recv(None, Dst::Vec)?;
        Ok(m.bytes.unwrap_or_default())
    }

    /// Receives one message into `buf`, returning its length: straight
    /// from the ring into `buf` (one copy, no allocation), so a buffer
    /// reused from one message to the next is the fastest way to receive
    /// large messages. A message longer than `buf` is consumed and
    /// returned whole in [`Error::BufferTooShort`], as Python keeps it in
    /// its exception.
    ///
    /// ```
    /// let (a, b) = mproc::Pipe::<()>::new()?;
    /// let mut buf = vec![0u8; 1 << 20];
    /// for i in 0..3u8 {
    ///     a.send_bytes(&[i; 1000])?;
    ///     let n = b.recv_bytes_into(&mut buf)?;
    ///     assert_eq!(&buf[..n], &[i; 1000][..]);
    /// }
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn recv_bytes_into(&self, buf: &mut [u8]) -> Result<usize> {
        match self.reader()?.recv(None, Dst::Buf(buf))? {
            Message {
                bytes: Some(message),
                ..
            } => Err(Error::BufferTooShort { message }),
            Message { len, .. } => Ok(len),
        }
    }

    /// Sends a slice of plain data (`u8`, `f64`, `[u32; 4]`, a
    /// `#[derive(Pod)]` struct...) as one message: its bytes go straight
    /// from `items` into the ring, with no encoding and no copy in between
    /// (one copy in all, as [`send_bytes`](Connection::send_bytes) of the
    /// same bytes, which is what the receiver gets). The receiver takes it
    /// with [`recv_pod_into`](Connection::recv_pod_into) (or
    /// [`recv_bytes`](Connection::recv_bytes)). Items travel in this
    /// machine's byte order, for a peer on the same machine.
    ///
    /// ```
    /// let (a, b) = mproc::Pipe::<()>::new()?;
    /// a.send_pod(&[1.5f64, 2.5, 4.0])?;
    /// let mut out = [0f64; 8];
    /// let n = b.recv_pod_into(&mut out)?;
    /// assert_eq!(&out[..n], &[1.5, 2.5, 4.0]);
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn send_pod<P: bytemuck::Pod>(&self, items: &[P]) -> Result<()> {
        self.send_bytes(bytemuck::cast_slice(items))
    }

    /// Receives one message of plain data straight from the ring into
    /// `out`, returning the number of items received (the rest of `out` is
    /// left as it was). No encoding and no buffer in between: one copy.
    ///
    /// As with Python's `recv_bytes_into`, a message longer than `out` is
    /// not lost: it is consumed and returned whole in
    /// [`Error::BufferTooShort`] (as bytes, which
    /// `bytemuck::pod_read_unaligned` turns back into items). A message that is not a whole number of items
    /// (the peer sent something else) is consumed too, and is
    /// [`Error::InvalidArgument`]; its bytes are left at the start of `out`.
    ///
    /// ```
    /// use mproc::Error;
    ///
    /// let (a, b) = mproc::Pipe::<()>::new()?;
    /// a.send_pod(&[7u32; 10])?;
    /// let mut small = [0u32; 4];
    /// match b.recv_pod_into(&mut small) {
    ///     Err(Error::BufferTooShort { message }) => {
    ///         let items: Vec<u32> = message
    ///             .chunks_exact(4)
    ///             .map(bytemuck::pod_read_unaligned)
    ///             .collect();
    ///         assert_eq!(items, [7; 10]);
    ///     }
    ///     other => panic!("{other:?}"),
    /// }
    /// a.send_bytes(&[1, 2, 3])?; // not a whole u32
    /// assert!(matches!(b.recv_pod_into(&mut small), Err(Error::InvalidArgument(_))));
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn recv_pod_into<P: bytemuck::Pod>(&self, out: &mut [P]) -> Result<usize> {
        let size = std::mem::size_of::<P>();
        if size == 0 {
            return Err(Error::InvalidArgument(
                "recv_pod_into needs items of at least one byte".into(),
            ));
        }
        let n = self.recv_bytes_into(bytemuck::cast_slice_mut(out))?;
        if n % size != 0 {
            return Err(Error::InvalidArgument(format!(
                "a message of {n} bytes is not a whole number of {size}-byte items"
            )));
        }
        Ok(n / size)
    }

    /// Whether a message (or end of file) can be received within `timeout`
    /// (zero: just look).
    pub fn poll(&self, timeout: Duration) -> Result<bool> {
        self.reader()?.poll(Some(Instant::now() + timeout))
    }

    /// As [`recv_bytes`](Connection::recv_bytes), waiting at most
    /// `timeout` ([`Error::Timeout`]) for a message to start.
    pub(crate) fn recv_bytes_timeout(&self, timeout: Duration) -> Result<Vec<u8>> {
        Ok(self.recv_message(Some(Instant::now() + timeout))?.0)
    }

    fn recv_message(&self, deadline: Option<Instant>) -> Result<(Vec<u8>, Vec<OwnedFd>)> {
        let m = self.reader()?.recv(deadline, Dst::Vec)?;
        Ok((m.bytes.unwrap_or_default(), m.fds))
    }
}

impl<T: Serialize> Connection<T> {
    /// Sends a value. OS handles inside it (connections, later queues and
    /// locks) travel with it. Errors as for
    /// [`send_bytes`](Connection::send_bytes).
    pub fn send(&self, value: &T) -> Result<()> {
        self.writer()?
            .send_value(|buf| codec::encode_into(value, buf))
    }
}

impl<T: DeserializeOwned> Connection<T> {
    /// Receives a value, blocking until one arrives. [`Error::Disconnected`]
    /// once the peer is closed and drained; [`Error::Decode`] for bytes that
    /// are not a `T` (the connection stays usable).
    pub fn recv(&self) -> Result<T> {
        self.reader()?.recv_with(None, codec::decode)
    }

    /// As [`recv`](Connection::recv), waiting at most `timeout`
    /// ([`Error::Timeout`]) for a message to start.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T> {
        let deadline = Instant::now() + timeout;
        self.reader()?.recv_with(Some(deadline), codec::decode)
    }

    /// Receives a value if one is ready ([`Error::Empty`] otherwise).
    pub fn try_recv(&self) -> Result<T> {
        match self.recv_timeout(Duration::ZERO) {
            Err(Error::Timeout) => Err(Error::Empty),
            r => r,
        }
    }
}

impl<T> Waitable for Connection<T> {
    fn wait_fd(&self) -> Result<BorrowedFd<'_>> {
        Ok(self.reader()?.sock())
    }

    fn arm(&self) -> bool {
        self.reader().is_ok_and(End::arm)
    }

    fn disarm(&self) {
        if let Ok(end) = self.reader() {
            end.disarm();
        }
    }
}

/// A connection on the wire: its socket and region travel in the side
/// table, its end and direction as plain fields.
#[derive(Serialize)]
struct WireOut<'a> {
    #[serde(serialize_with = "serialize_fd")]
    sock: BorrowedFd<'a>,
    #[serde(serialize_with = "serialize_fd")]
    region: BorrowedFd<'a>,
    id: u8,
    readable: bool,
    writable: bool,
}

/// What [`WireOut`] becomes on arrival.
#[derive(Deserialize)]
struct WireIn {
    sock: WireFd,
    region: WireFd,
    id: u8,
    readable: bool,
    writable: bool,
}

fn serialize_fd<S: Serializer>(fd: &BorrowedFd<'_>, s: S) -> std::result::Result<S::Ok, S::Error> {
    codec::serialize_fd(*fd, s)
}

impl<T> Serialize for Connection<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let end = self
            .end
            .as_ref()
            .ok_or_else(|| S::Error::custom("connection is closed"))?;
        WireOut {
            sock: end.sock(),
            region: end.region_fd(),
            id: end.id() as u8,
            readable: self.readable,
            writable: self.writable,
        }
        .serialize(s)
    }
}

impl<'de, T> Deserialize<'de> for Connection<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let w = WireIn::deserialize(d)?;
        let shared = Shared::open(w.region.0).map_err(D::Error::custom)?;
        let end = End::new(
            w.sock.0,
            Arc::new(shared),
            w.id.into(),
            w.readable,
            w.writable,
        )
        .map_err(D::Error::custom)?;
        Ok(Connection::from_end(end, w.readable, w.writable))
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
