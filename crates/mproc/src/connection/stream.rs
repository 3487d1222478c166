//! A connected socket, Unix or TCP, with deadlines.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixStream};
use std::time::{Duration, Instant};

use super::Address;
use crate::sys::keep_above_stdio;

/// One connected socket.
#[derive(Debug)]
pub(crate) enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Stream {
    /// Connects to `addr`, giving up after `timeout` (TCP; a Unix connect
    /// does not wait).
    pub(crate) fn connect(addr: &Address, timeout: Option<Duration>) -> io::Result<Stream> {
        match addr {
            Address::Unix(p) => Ok(Stream::Unix(keep_above_stdio(UnixStream::connect(p)?)?)),
            Address::Abstract(n) => {
                let s = UnixStream::connect_addr(&UnixAddr::from_abstract_name(n)?)?;
                Ok(Stream::Unix(keep_above_stdio(s)?))
            }
            Address::Tcp(a) => {
                let s = match timeout {
                    Some(t) => TcpStream::connect_timeout(a, t.max(Duration::from_millis(1)))?,
                    None => TcpStream::connect(a)?,
                };
                s.set_nodelay(true)?;
                Ok(Stream::Tcp(keep_above_stdio(s)?))
            }
        }
    }

    /// Bounds every following read by `deadline` (`None`: no bound).
    pub(crate) fn set_deadline(&self, deadline: Option<Instant>) -> io::Result<()> {
        let t = match deadline {
            None => None,
            Some(d) => Some(
                d.checked_duration_since(Instant::now())
                    .filter(|t| !t.is_zero())
                    .ok_or_else(|| io::Error::from(io::ErrorKind::TimedOut))?,
            ),
        };
        match self {
            Stream::Unix(s) => s.set_read_timeout(t),
            Stream::Tcp(s) => s.set_read_timeout(t),
        }
    }

    pub(crate) fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_nonblocking(on),
            Stream::Tcp(s) => s.set_nonblocking(on),
        }
    }

    /// Who is at the other end, for operators' events: a TCP peer's
    /// address, a Unix peer's pid and uid.
    #[cfg_attr(not(feature = "tracing"), allow(dead_code))]
    pub(crate) fn peer(&self) -> String {
        match self {
            Stream::Tcp(s) => s
                .peer_addr()
                .map_or_else(|e| format!("unknown ({e})"), |a| a.to_string()),
            Stream::Unix(s) => crate::sys::fdpass::peer_credentials(s.as_fd()).map_or_else(
                |e| format!("unknown ({e})"),
                |(pid, uid)| format!("pid {pid} uid {uid}"),
            ),
        }
    }

    pub(crate) fn shutdown(&self) {
        let _ = match self {
            Stream::Unix(s) => s.shutdown(Shutdown::Both),
            Stream::Tcp(s) => s.shutdown(Shutdown::Both),
        };
    }
}

impl Read for &Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => (&*s).read(buf),
            Stream::Tcp(s) => (&*s).read(buf),
        }
    }
}

impl Write for &Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => (&*s).write(buf),
            Stream::Tcp(s) => (&*s).write(buf),
        }
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => (&*s).write_vectored(bufs),
            Stream::Tcp(s) => (&*s).write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Unix(s) => s.as_fd(),
            Stream::Tcp(s) => s.as_fd(),
        }
    }
}
