//! The transport under a proxy's connection: the socket it connected on,
//! or, for a server on this machine, a [`Pipe`] (rings in shared memory).
//!
//! A call over a Unix socket costs two system calls each way and a kernel
//! wake-up of the peer (about 4 µs, tens when the machine is busy); over a
//! pipe it costs none while both sides are awake. So a proxy that reached
//! its server by a Unix address (always so for [`Manager::start`]) asks to
//! upgrade right after the handshake:
//!
//! 1. the proxy sends [`Op::Upgrade`] on the socket;
//! 2. the server answers `Ok` (or an error: a server over TCP, or one that
//!    does not know the request; the proxy then stays on the socket);
//! 3. the proxy makes a pipe and sends the server's end over the socket,
//!    descriptors by `SCM_RIGHTS` (one frame, outside the socket's usual
//!    framing; nothing else is on the socket at that moment);
//! 4. the server answers `Ok` on the socket once it holds its end, and from
//!    then on requests and replies travel through the pipe.
//!
//! A side that has waited 100 ms for a message (an idle proxy's server
//! thread, a proxy whose call blocks in the server) then sleeps in the
//! kernel on the pipe's socket, which a sender pokes: an idle connection
//! costs no wake-ups.
//!
//! The socket stays open beside the pipe for the connection's life. The
//! proxy keeps no copy of the server's end, so a server that dies hangs up
//! the pipe and the proxy's call fails with
//! [`Error::ManagerGone`](crate::Error::ManagerGone) (within the pipe's
//! 20 ms watch slice), never hangs. A server over TCP is never asked.
//!
//! [`Manager::start`]: crate::Manager::start
//! [`Pipe`]: crate::Pipe

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use super::protocol::{Op, Reply, Request};
use super::proxy::Target;
use crate::connection::{decode_plain, encode_plain, Address, SocketConnection};
use crate::error::{Error, RemoteError, Result};
use crate::pipe::{Connection, Pipe};
use crate::{codec, sys::fdpass};

/// How long the server waits for the pipe after it said yes.
const PIPE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a pipe link waits for a message the pipe's way (a spin, then a
/// futex that wakes every 20 ms to look for a hang-up) before it waits on
/// the socket alone: an idle connection then costs no wake-ups.
const IDLE: Duration = Duration::from_millis(100);

/// The largest frame that can carry a pipe's end.
const PIPE_FRAME_MAX: u64 = 1024;

/// One connection between a proxy (or the server) and the other side.
pub(crate) enum Link {
    /// Requests and replies on the socket.
    Socket(SocketConnection<()>),
    /// Requests and replies through a pipe; the socket stays open beside it.
    Pipe {
        pipe: Connection<()>,
        _socket: SocketConnection<()>,
    },
}

impl Link {
    pub(crate) fn send_bytes(&self, buf: &[u8]) -> Result<()> {
        match self {
            Link::Socket(s) => s.send_bytes(buf),
            Link::Pipe { pipe, .. } => pipe.send_bytes(buf),
        }
    }

    pub(crate) fn recv_bytes(&self) -> Result<Vec<u8>> {
        match self {
            Link::Socket(s) => s.recv_bytes(),
            Link::Pipe { pipe, .. } => {
                // Quiet for a while (an idle proxy, a call blocked in the
                // server): sleep in the kernel on the pipe's socket, which
                // the sender pokes, rather than in the pipe's 20 ms slices.
                loop {
                    match pipe.recv_bytes_timeout(IDLE) {
                        Err(Error::Timeout) => crate::wait::wait(&[pipe], None)?,
                        r => return r,
                    };
                }
            }
        }
    }

    /// Whether requests travel through a pipe.
    #[cfg(test)]
    pub(crate) fn is_pipe(&self) -> bool {
        matches!(self, Link::Pipe { .. })
    }

    /// The proxy's side: after the handshake on `socket`, upgrades to a
    /// pipe when the server is on this machine and agrees.
    pub(crate) fn open(target: &Target, socket: SocketConnection<()>) -> Result<Link> {
        if !local(&target.address) {
            return Ok(Link::Socket(socket));
        }
        let ask = encode_plain(&Request {
            id: 0,
            op: Op::Upgrade,
            refs: Vec::new(),
        })?;
        socket.send_bytes(&ask)?;
        if decode_plain::<Reply>(&socket.recv_bytes()?)?.is_err() {
            return Ok(Link::Socket(socket));
        }
        let (mine, theirs) = Pipe::<()>::new()?;
        let frame = codec::encode(&theirs)?;
        fdpass::send_frame(socket.as_fd(), &frame.bytes, &frame.borrowed_fds())
            .map_err(Error::io("cannot hand a pipe to the manager"))?;
        // Only the server may hold its end: else its death would not hang
        // up the pipe.
        drop((frame, theirs));
        match decode_plain::<Reply>(&socket.recv_bytes()?)? {
            Ok(_) => Ok(Link::Pipe {
                pipe: mine,
                _socket: socket,
            }),
            Err(_) => Ok(Link::Socket(socket)),
        }
    }

    /// The server's side of an [`Op::Upgrade`] that came on this link:
    /// the link to serve from now on (the pipe, or this same socket if the
    /// upgrade failed or is not for this link). `None` when the socket
    /// failed on the way.
    pub(crate) fn upgrade(self, server: &Address) -> Option<Link> {
        let socket = match self {
            Link::Socket(s) if local(server) => s,
            link => {
                let no: Reply = Err(RemoteError::Failed(
                    "only a connection to a local server upgrades".into(),
                ));
                link.send_bytes(&encode_plain(&no).ok()?).ok()?;
                return Some(link);
            }
        };
        let yes: Reply = Ok(Default::default());
        socket.send_bytes(&encode_plain(&yes).ok()?).ok()?;
        let deadline = Some(Instant::now() + PIPE_TIMEOUT);
        let (bytes, fds) = fdpass::recv_frame(socket.as_fd(), deadline, PIPE_FRAME_MAX)
            .ok()
            .flatten()?;
        match codec::decode::<Connection<()>>(&bytes, fds) {
            Ok(pipe) => {
                socket.send_bytes(&encode_plain(&yes).ok()?).ok()?;
                Some(Link::Pipe {
                    pipe,
                    _socket: socket,
                })
            }
            Err(e) => {
                let no: Reply = Err(RemoteError::Failed(format!("not a pipe: {e}")));
                socket.send_bytes(&encode_plain(&no).ok()?).ok()?;
                Some(Link::Socket(socket))
            }
        }
    }
}

/// Whether a server at `address` is on this machine.
fn local(address: &Address) -> bool {
    matches!(address, Address::Unix(_) | Address::Abstract(_))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::connection::{Client, Listener};
    use crate::Manager;

    fn target(m: &Manager) -> Arc<Target> {
        Arc::new(Target {
            address: m.address().clone(),
            authkey: m.authkey().to_vec(),
        })
    }

    fn hello(link: &Link) -> Result<Reply> {
        let req = encode_plain(&Request {
            id: 0,
            op: Op::Hello,
            refs: Vec::new(),
        })?;
        link.send_bytes(&req)?;
        decode_plain(&link.recv_bytes()?)
    }

    fn open(t: &Target) -> Link {
        Link::open(t, super::super::proxy::connect(t).unwrap()).unwrap()
    }

    #[test]
    fn a_local_server_is_reached_through_a_pipe_that_its_death_hangs_up() {
        let m = Manager::start().unwrap();
        let t = target(&m);
        let link = open(&t);
        assert!(link.is_pipe());
        assert!(hello(&link).unwrap().is_ok());
        // A second upgrade on a link that is already a pipe is refused.
        link.send_bytes(
            &encode_plain(&Request {
                id: 0,
                op: Op::Upgrade,
                refs: Vec::new(),
            })
            .unwrap(),
        )
        .unwrap();
        assert!(decode_plain::<Reply>(&link.recv_bytes().unwrap())
            .unwrap()
            .is_err());
        assert!(hello(&link).unwrap().is_ok());
        let pid = m.pid().unwrap();
        crate::sys::proc::kill(pid, libc::SIGKILL).unwrap();
        let t0 = Instant::now();
        assert!(hello(&link).is_err());
        assert!(t0.elapsed() < Duration::from_secs(10));
    }

    /// A reply that comes after the link went to sleep on its socket
    /// (`IDLE`) still arrives, and so does the server's death.
    #[test]
    fn a_long_wait_sleeps_on_the_socket_and_still_sees_replies_and_death() {
        let m = Manager::start().unwrap();
        let lock = m.lock().unwrap();
        lock.acquire().unwrap();
        let (other, waiter) = (lock.clone(), lock.clone());
        let t0 = Instant::now();
        assert!(!other.acquire_timeout(3 * IDLE).unwrap());
        assert!(t0.elapsed() >= 3 * IDLE);
        let t = std::thread::spawn(move || waiter.acquire());
        // The waiter is blocked in the server; give it (by a call that
        // itself waits in the server) time to pass `IDLE` before the kill.
        assert!(!other.acquire_timeout(3 * IDLE).unwrap());
        crate::sys::proc::kill(m.pid().unwrap(), libc::SIGKILL).unwrap();
        assert!(matches!(t.join().unwrap(), Err(Error::ManagerGone)));
    }

    #[test]
    fn a_server_over_tcp_keeps_the_socket() {
        let m = Manager::serve(&Address::tcp("127.0.0.1:0").unwrap(), b"k").unwrap();
        let link = open(&target(&m));
        assert!(!link.is_pipe());
        assert!(hello(&link).unwrap().is_ok());
    }

    #[test]
    fn a_server_that_says_no_keeps_the_socket() {
        let listener = Listener::bind(&Address::unique_abstract().unwrap(), Some(b"k")).unwrap();
        let t = Target {
            address: listener.address().clone(),
            authkey: b"k".to_vec(),
        };
        let server = std::thread::spawn(move || {
            let conn = listener.accept::<()>().unwrap();
            // An older server: every request it does not know fails.
            while conn.recv_bytes().is_ok() {
                let no: Reply = Err(RemoteError::Failed("bad request".into()));
                conn.send_bytes(&encode_plain(&no).unwrap()).unwrap();
            }
        });
        let link = Link::open(&t, Client::connect(&t.address, Some(b"k")).unwrap()).unwrap();
        assert!(!link.is_pipe());
        assert!(hello(&link).unwrap().is_err());
        drop(link);
        server.join().unwrap();
    }
}
