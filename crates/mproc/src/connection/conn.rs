//! `SocketConnection<T>`: an authenticated socket carrying framed messages.

use std::io::{self, BufReader, Read};
use std::marker::PhantomData;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::frame;
use super::stream::Stream;
use crate::error::{AuthError, Error, Result};
use crate::sys::fdpass;

/// One end of a connection made by a [`Listener`](crate::Listener) or a
/// [`Client`](crate::Client): Python's `multiprocessing.connection.Connection`
/// over a socket.
///
/// Messages are framed as CPython frames them (a 4-byte big-endian length,
/// or `-1` and an 8-byte length over 2 GiB), so [`send_bytes`] and
/// [`recv_bytes`] talk to a Python peer. [`send`] and [`recv`] carry `T`
/// encoded with mproc's binary serde format (a Python peer would see bytes,
/// not pickles, unless the connection is [`pickled`](Self::pickled)). OS
/// handles cannot travel over a socket connection; a value holding one is
/// refused.
///
/// Sends from several threads do not interleave, nor do receives.
///
/// [`send_bytes`]: SocketConnection::send_bytes
/// [`recv_bytes`]: SocketConnection::recv_bytes
/// [`send`]: SocketConnection::send
/// [`recv`]: SocketConnection::recv
///
/// # Examples
///
/// ```
/// use mproc::{Address, Client, Listener};
///
/// let listener = Listener::bind(&Address::unique_abstract()?, Some(b"secret"))?;
/// let addr = listener.address().clone();
/// let t = std::thread::spawn(move || -> mproc::Result<String> {
///     let conn = Client::connect::<String>(&addr, Some(b"secret"))?;
///     conn.send(&"ping".to_string())?;
///     conn.recv()
/// });
/// let conn = listener.accept::<String>()?;
/// assert_eq!(conn.recv()?, "ping");
/// conn.send(&"pong".to_string())?;
/// assert_eq!(t.join().unwrap()?, "pong");
/// # Ok::<(), mproc::Error>(())
/// ```
#[derive(Debug)]
pub struct SocketConnection<T = Vec<u8>> {
    stream: Arc<Stream>,
    send_lock: Mutex<()>,
    /// Reads ahead: a small message costs one `read`, not two.
    reader: Mutex<BufReader<Reader>>,
    timed: AtomicBool,
    /// A keyless client's connection: its first message must not be a
    /// challenge (the listener wanted a key).
    no_challenge: AtomicBool,
    /// `send` and `recv` carry pickles (see [`pickled`](Self::pickled)).
    pickled: bool,
    _t: PhantomData<fn(T) -> T>,
}

impl<T> SocketConnection<T> {
    pub(crate) fn new(stream: Stream) -> Self {
        let stream = Arc::new(stream);
        SocketConnection {
            reader: Mutex::new(BufReader::with_capacity(READ_AHEAD, Reader(stream.clone()))),
            stream,
            send_lock: Mutex::new(()),
            timed: AtomicBool::new(false),
            no_challenge: AtomicBool::new(false),
            pickled: false,
            _t: PhantomData,
        }
    }

    /// Who is at the other end, for operators' events.
    #[cfg_attr(not(feature = "tracing"), allow(dead_code))]
    pub(crate) fn peer(&self) -> String {
        self.stream.peer()
    }

    /// Marks a keyless client's connection: a challenge as its first
    /// message is [`AuthError::KeyRequired`](crate::AuthError::KeyRequired).
    pub(crate) fn refusing_challenge(self) -> Self {
        self.no_challenge.store(true, Ordering::Relaxed);
        self
    }

    /// Sends `buf` as one message.
    pub fn send_bytes(&self, buf: &[u8]) -> Result<()> {
        let _g = self.send_lock.lock().unwrap_or_else(|p| p.into_inner());
        frame::send(&*self.stream, buf)
    }

    /// Receives one message; [`Error::Disconnected`] once the peer closed.
    pub fn recv_bytes(&self) -> Result<Vec<u8>> {
        self.recv_bytes_until(None, u64::MAX)
    }

    /// Receives one message of at most `max` bytes, as Python's
    /// `recv_bytes(maxlength)`: a longer one is an [`Error::Protocol`] and
    /// the connection should be dropped.
    pub fn recv_bytes_max(&self, max: usize) -> Result<Vec<u8>> {
        self.recv_bytes_until(None, max as u64)
    }

    /// Receives one message, waiting at most `timeout` for it to complete.
    pub fn recv_bytes_timeout(&self, timeout: Duration) -> Result<Vec<u8>> {
        self.recv_bytes_until(Some(Instant::now() + timeout), u64::MAX)
    }

    pub(crate) fn recv_bytes_until(&self, deadline: Option<Instant>, max: u64) -> Result<Vec<u8>> {
        let mut reader = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        if deadline.is_some() || self.timed.load(Ordering::Relaxed) {
            self.stream
                .set_deadline(deadline)
                .map_err(|e| frame::map_io(e, "cannot set a receive timeout"))?;
            self.timed.store(deadline.is_some(), Ordering::Relaxed);
        }
        let msg = frame::recv(&mut *reader, max)?;
        if self.no_challenge.load(Ordering::Relaxed) {
            self.no_challenge.store(false, Ordering::Relaxed);
            if super::auth::is_challenge(&msg) {
                return Err(Error::Authentication(AuthError::KeyRequired));
            }
        }
        Ok(msg)
    }

    /// Whether a message (or the peer's hang-up) is ready within `timeout`.
    pub fn poll(&self, timeout: Duration) -> Result<bool> {
        let reader = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        if !reader.buffer().is_empty() {
            return Ok(true);
        }
        fdpass::wait_readable(self.stream.as_fd(), Some(Instant::now() + timeout))
            .map_err(Error::io("cannot poll a connection"))
    }

    /// Shuts the socket down both ways: the peer sees end of file.
    pub fn shutdown(&self) {
        self.stream.shutdown();
    }

    /// The same socket, carrying messages of another type.
    pub fn cast<U>(self) -> SocketConnection<U> {
        SocketConnection {
            stream: self.stream,
            send_lock: self.send_lock,
            reader: self.reader,
            timed: self.timed,
            no_challenge: self.no_challenge,
            pickled: self.pickled,
            _t: PhantomData,
        }
    }

    /// The same connection, with [`send`](Self::send) and
    /// [`recv`](Self::recv) carrying Python's pickles instead of mproc's own
    /// encoding: what CPython's `Connection.send(obj)` and `recv()` speak.
    /// Only data is accepted from the peer (see [`mproc::pickle`](crate::pickle)
    /// for the types and what is refused).
    ///
    /// ```
    /// # if std::process::Command::new("python3").arg("-V").output().is_err() { return Ok(()); }
    /// use mproc::{Address, Listener};
    /// use serde::Deserialize;
    ///
    /// #[derive(Deserialize)]
    /// struct Job {
    ///     name: String,
    ///     ints: Vec<i64>,
    /// }
    ///
    /// let listener = Listener::bind(&Address::tcp("127.0.0.1:0")?, Some(b"key"))?;
    /// let Address::Tcp(at) = listener.address().clone() else { unreachable!() };
    /// let python = format!(
    ///     "from multiprocessing.connection import Client\n\
    ///      c = Client(('127.0.0.1', {}), authkey=b'key')\n\
    ///      c.send({{'name': 'py', 'ints': [1, 2, 3]}})\n\
    ///      c.send(sum(c.recv()))\n",
    ///     at.port()
    /// );
    /// let mut py = std::process::Command::new("python3").args(["-c", &python]).spawn().unwrap();
    ///
    /// let conn = listener.accept::<Job>()?.pickled();
    /// let job = conn.recv()?;
    /// assert_eq!((job.name.as_str(), job.ints.as_slice()), ("py", &[1, 2, 3][..]));
    ///
    /// let conn = conn.cast::<Vec<i64>>();
    /// conn.send(&job.ints)?; // a list for Python
    /// assert_eq!(conn.cast::<i64>().recv()?, 6);
    /// assert!(py.wait().unwrap().success());
    /// # Ok::<(), mproc::Error>(())
    /// ```
    #[cfg(feature = "pickle")]
    #[cfg_attr(docsrs, doc(cfg(feature = "pickle")))]
    pub fn pickled(mut self) -> Self {
        self.pickled = true;
        self
    }

    /// Whether [`send`](Self::send) and [`recv`](Self::recv) carry pickles.
    pub fn is_pickled(&self) -> bool {
        self.pickled
    }
}

impl<T: Serialize> SocketConnection<T> {
    /// Sends `value`, encoded with mproc's codec, or pickled if the
    /// connection is [`pickled`](Self::pickled).
    pub fn send(&self, value: &T) -> Result<()> {
        #[cfg(feature = "pickle")]
        if self.pickled {
            return self.send_bytes(&crate::pickle::dumps(value)?);
        }
        self.send_bytes(&encode_plain(value)?)
    }
}

impl<T: DeserializeOwned> SocketConnection<T> {
    /// Receives a value sent by [`send`](SocketConnection::send).
    pub fn recv(&self) -> Result<T> {
        self.decode(&self.recv_bytes()?)
    }

    /// Receives a value, waiting at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T> {
        self.decode(&self.recv_bytes_timeout(timeout)?)
    }

    fn decode(&self, bytes: &[u8]) -> Result<T> {
        #[cfg(feature = "pickle")]
        if self.pickled {
            return crate::pickle::loads(bytes);
        }
        decode_plain(bytes)
    }
}

/// How much a connection reads ahead.
const READ_AHEAD: usize = 16 * 1024;

/// The socket as the read-ahead buffer's source.
#[derive(Debug)]
struct Reader(Arc<Stream>);

impl Read for Reader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self.0).read(buf)
    }
}

/// Encodes a value that must not hold OS handles (none can cross a
/// socket connection).
pub(crate) fn encode_plain<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    crate::codec::encode_plain(value)
}

/// Decodes a value encoded by [`encode_plain`].
pub(crate) fn decode_plain<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    crate::codec::decode_plain(bytes)
}

impl<T> AsFd for SocketConnection<T> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.stream.as_fd()
    }
}
