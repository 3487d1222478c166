//! Length-prefixed frames on a Unix stream socket, with file descriptors
//! attached by `SCM_RIGHTS`.
//!
//! Wire form: an 8-byte little-endian length, then that many bytes. The
//! descriptors ride on the first `sendmsg` of the frame (at most
//! [`MAX_FDS`]), so a reader gets them with the length.

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Instant;

use rustix::event::{poll, PollFd, PollFlags};
use rustix::net::{
    recvmsg, sendmsg, socketpair, AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage,
    RecvFlags, ReturnFlags, SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketFlags,
    SocketType,
};

use super::{above_stdio, remaining, timespec};

/// The kernel's limit on descriptors in one message (`SCM_MAX_FD`).
pub(crate) const MAX_FDS: usize = 253;

/// A connected pair of Unix stream sockets, close-on-exec.
pub(crate) fn stream_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    unix_pair(SocketType::STREAM)
}

fn unix_pair(kind: SocketType) -> io::Result<(OwnedFd, OwnedFd)> {
    let (a, b) = socketpair(AddressFamily::UNIX, kind, SocketFlags::CLOEXEC, None)?;
    Ok((above_stdio(a)?, above_stdio(b)?))
}

/// A pipe (read end, write end), close-on-exec, both above stdio.
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    Ok((above_stdio(r)?, above_stdio(w)?))
}

/// Moves received descriptors above stdio (see [`above_stdio`]).
fn take_rights(rights: impl Iterator<Item = OwnedFd>, fds: &mut Vec<OwnedFd>) -> io::Result<()> {
    for fd in rights {
        fds.push(above_stdio(fd)?);
    }
    Ok(())
}

/// Sends one frame: `body` with `fds` attached. Never raises `SIGPIPE`.
pub(crate) fn send_frame(
    sock: BorrowedFd<'_>,
    body: &[u8],
    fds: &[BorrowedFd<'_>],
) -> io::Result<()> {
    let len = (body.len() as u64).to_le_bytes();
    let flags = SendFlags::NOSIGNAL;
    let iov = [IoSlice::new(&len), IoSlice::new(body)];
    let mut sent = send_with_fds(sock, &iov, fds, flags)?;
    let total = len.len() + body.len();
    let mut empty = SendAncillaryBuffer::default();
    while sent < total {
        let iov = if sent < len.len() {
            [IoSlice::new(&len[sent..]), IoSlice::new(body)]
        } else {
            [IoSlice::new(&body[sent - len.len()..]), IoSlice::new(&[])]
        };
        sent += retry(|| sendmsg(sock, &iov, &mut empty, flags))?;
    }
    Ok(())
}

/// One `sendmsg` of `iov` with `fds` attached (at most [`MAX_FDS`]); the
/// bytes sent.
fn send_with_fds(
    sock: BorrowedFd<'_>,
    iov: &[IoSlice<'_>],
    fds: &[BorrowedFd<'_>],
    flags: SendFlags,
) -> io::Result<usize> {
    if fds.len() > MAX_FDS {
        return Err(too_many_fds(fds.len()));
    }
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() {
        control.push(SendAncillaryMessage::ScmRights(fds));
    }
    retry(|| sendmsg(sock, iov, &mut control, flags))
}

/// Receives one frame of at most `max_len` bytes. `Ok(None)` on a clean end
/// of file before the frame starts; `TimedOut` when `deadline` passes first.
pub(crate) fn recv_frame(
    sock: BorrowedFd<'_>,
    deadline: Option<Instant>,
    max_len: u64,
) -> io::Result<Option<(Vec<u8>, Vec<OwnedFd>)>> {
    let mut len = [0u8; 8];
    let mut fds = Vec::new();
    let got = recv_some(sock, &mut len, &mut fds, deadline)?;
    if got == 0 {
        return Ok(None);
    }
    fill(sock, &mut len[got..], &mut fds, deadline)?;
    let n = u64::from_le_bytes(len);
    if n > max_len {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {n} bytes exceeds the limit of {max_len}"),
        ));
    }
    // Grow the buffer as the bytes arrive, never to more than twice what
    // came: a garbage length below `max_len` must not allocate (and abort
    // on) terabytes before the truncation is seen.
    let n = usize::try_from(n).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
    let mut body = Vec::new();
    while body.len() < n {
        let start = body.len();
        body.resize(n.min(start.max(1 << 16) * 2), 0);
        fill(sock, &mut body[start..], &mut fds, deadline)?;
    }
    Ok(Some((body, fds)))
}

fn fill(
    sock: BorrowedFd<'_>,
    mut buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
    deadline: Option<Instant>,
) -> io::Result<()> {
    while !buf.is_empty() {
        let n = recv_some(sock, buf, fds, deadline)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "frame truncated by end of file",
            ));
        }
        buf = &mut buf[n..];
    }
    Ok(())
}

fn recv_some(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
    deadline: Option<Instant>,
) -> io::Result<usize> {
    if deadline.is_some() && !wait_readable(sock, deadline)? {
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "timed out waiting for a frame",
        ));
    }
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = retry(|| recvmsg(sock, &mut iov, &mut control, RecvFlags::CMSG_CLOEXEC))?;
    let mut moved = Ok(());
    for m in control.drain() {
        if let RecvAncillaryMessage::ScmRights(rights) = m {
            moved = moved.and(take_rights(rights, fds));
        }
    }
    moved?;
    Ok(msg.bytes)
}

/// Waits until `fd` is readable (or hung up). `false` on timeout.
pub(crate) fn wait_readable(fd: BorrowedFd<'_>, deadline: Option<Instant>) -> io::Result<bool> {
    loop {
        let ts = remaining(deadline).map(timespec);
        let mut pfd = [PollFd::new(&fd, PollFlags::IN)];
        match poll(&mut pfd, ts.as_ref()) {
            Ok(0) => return Ok(false),
            Ok(_) => return Ok(true),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Waits until any of `fds` is readable; returns the indices that are.
pub(crate) fn wait_any(
    fds: &[BorrowedFd<'_>],
    deadline: Option<Instant>,
) -> io::Result<Vec<usize>> {
    loop {
        let ts = remaining(deadline).map(timespec);
        let mut pfds: Vec<PollFd<'_>> = fds
            .iter()
            .map(|fd| PollFd::new(fd, PollFlags::IN))
            .collect();
        match poll(&mut pfds, ts.as_ref()) {
            Ok(_) => {
                return Ok(pfds
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| !p.revents().is_empty())
                    .map(|(i, _)| i)
                    .collect())
            }
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// True when the peer of a stream socket has closed every copy of its end.
pub(crate) fn peer_hung_up(sock: BorrowedFd<'_>) -> bool {
    let mut pfd = [PollFd::new(&sock, PollFlags::RDHUP)];
    let zero = timespec(std::time::Duration::ZERO);
    match poll(&mut pfd, Some(&zero)) {
        Ok(_) => pfd[0]
            .revents()
            .intersects(PollFlags::HUP | PollFlags::RDHUP | PollFlags::ERR),
        Err(_) => false,
    }
}

/// Sends bytes on a socket without `SIGPIPE`.
pub(crate) fn send_all(sock: BorrowedFd<'_>, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        let n = retry(|| rustix::net::send(sock, buf, SendFlags::NOSIGNAL))?;
        buf = &buf[n..];
    }
    Ok(())
}

/// Sends the single byte `tag` with `fds` attached (at most [`MAX_FDS`]).
/// Never raises `SIGPIPE`. With `nonblocking`, `Ok(false)` when the socket
/// buffer is full.
pub(crate) fn send_tag(
    sock: BorrowedFd<'_>,
    tag: u8,
    fds: &[BorrowedFd<'_>],
    nonblocking: bool,
) -> io::Result<bool> {
    let mut flags = SendFlags::NOSIGNAL;
    if nonblocking {
        flags |= SendFlags::DONTWAIT;
    }
    let iov = [IoSlice::new(std::slice::from_ref(&tag))];
    match send_with_fds(sock, &iov, fds, flags) {
        Ok(_) => Ok(true),
        Err(e) if nonblocking && e.kind() == io::ErrorKind::WouldBlock => Ok(false),
        Err(e) => Err(e),
    }
}

/// Receives bytes and the descriptors attached to them. A stream read stops
/// right after bytes that carry descriptors, so the descriptors (if any)
/// belong to the last byte received. `Ok(None)`: nothing to read
/// (`nonblocking`); `Ok(Some((0, _)))`: end of file; `InvalidData`:
/// descriptors were dropped by the kernel (`MSG_CTRUNC`).
pub(crate) fn recv_tagged(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    nonblocking: bool,
) -> io::Result<Option<(usize, Vec<OwnedFd>)>> {
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut iov = [IoSliceMut::new(buf)];
    let mut flags = RecvFlags::CMSG_CLOEXEC;
    if nonblocking {
        flags |= RecvFlags::DONTWAIT;
    }
    let msg = match retry(|| recvmsg(sock, &mut iov, &mut control, flags)) {
        Ok(msg) => msg,
        Err(e) if nonblocking && e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut fds = Vec::new();
    let mut moved = Ok(());
    for m in control.drain() {
        if let RecvAncillaryMessage::ScmRights(rights) = m {
            moved = moved.and(take_rights(rights, &mut fds));
        }
    }
    moved?;
    if msg.flags.contains(ReturnFlags::CTRUNC) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "descriptors were truncated",
        ));
    }
    Ok(Some((msg.bytes, fds)))
}

fn too_many_fds(n: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("a frame can carry at most {MAX_FDS} descriptors, not {n}"),
    )
}

fn retry<T>(mut f: impl FnMut() -> rustix::io::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(rustix::io::Errno::INTR) => continue,
            r => return r.map_err(Into::into),
        }
    }
}

/// A connected pair of Unix `SOCK_SEQPACKET` sockets (message boundaries
/// kept, no limit on queued messages but the send buffer), close-on-exec.
pub(crate) fn packet_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    unix_pair(SocketType::SEQPACKET)
}

/// Sends one message of `body` with `fds` attached (at most [`MAX_FDS`])
/// without waiting: `Ok(false)` when the socket buffer is full. Never
/// raises `SIGPIPE`.
pub(crate) fn try_send_packet(
    sock: BorrowedFd<'_>,
    body: &[u8],
    fds: &[BorrowedFd<'_>],
) -> io::Result<bool> {
    let iov = [IoSlice::new(body)];
    let flags = SendFlags::NOSIGNAL | SendFlags::DONTWAIT;
    match send_with_fds(sock, &iov, fds, flags) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
        Err(e) => Err(e),
    }
}

/// Copies the start of the next message into `buf` without taking it
/// (nor its descriptors: none is installed): `Ok(None)` if there is none.
pub(crate) fn peek_packet(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Option<usize>> {
    let mut control = RecvAncillaryBuffer::new(&mut []);
    let mut iov = [IoSliceMut::new(buf)];
    let flags = RecvFlags::PEEK | RecvFlags::DONTWAIT | RecvFlags::CMSG_CLOEXEC;
    match retry(|| recvmsg(sock, &mut iov, &mut control, flags)) {
        Ok(msg) => Ok(Some(msg.bytes)),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
        Err(e) => Err(e),
    }
}

/// Waits until `fd` can be written to, or `deadline` passes (`false`).
pub(crate) fn wait_writable(fd: BorrowedFd<'_>, deadline: Option<Instant>) -> io::Result<bool> {
    loop {
        let ts = remaining(deadline).map(timespec);
        let mut pfd = [PollFd::new(&fd, PollFlags::OUT)];
        match poll(&mut pfd, ts.as_ref()) {
            Ok(0) => return Ok(false),
            Ok(_) => return Ok(true),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Borrowed views of a list of owned descriptors.
pub(crate) fn borrow_all(fds: &[OwnedFd]) -> Vec<BorrowedFd<'_>> {
    fds.iter().map(|f| f.as_fd()).collect()
}

/// Whether `e` says the process or the system is out of descriptors or
/// memory (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`).
pub(crate) fn out_of_resources(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Whether the process at the other end of the Unix socket `sock` runs
/// with this process's effective uid, or as root (`SO_PEERCRED`: the
/// credentials the peer had when it connected).
/// The pid and uid of a Unix socket's peer (`SO_PEERCRED`).
#[cfg_attr(not(feature = "tracing"), allow(dead_code))]
pub(crate) fn peer_credentials(sock: BorrowedFd<'_>) -> io::Result<(i32, u32)> {
    let cred = rustix::net::sockopt::socket_peercred(sock)?;
    Ok((cred.pid.as_raw_nonzero().get(), cred.uid.as_raw()))
}

pub(crate) fn peer_is_same_user(sock: BorrowedFd<'_>) -> io::Result<bool> {
    let cred = rustix::net::sockopt::socket_peercred(sock)?;
    let uid = cred.uid.as_raw();
    Ok(uid == 0 || uid == rustix::process::geteuid().as_raw())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_round_trip_with_fds() {
        let (a, b) = stream_pair().unwrap();
        let (x, _y) = stream_pair().unwrap();
        send_frame(a.as_fd(), b"hello", &[x.as_fd()]).unwrap();
        let (body, fds) = recv_frame(b.as_fd(), None, 1 << 20).unwrap().unwrap();
        assert_eq!(body, b"hello");
        assert_eq!(fds.len(), 1);
        drop(a);
        assert!(recv_frame(b.as_fd(), None, 1 << 20).unwrap().is_none());
    }

    #[test]
    fn a_huge_length_then_end_of_file_is_a_truncation() {
        let (a, b) = stream_pair().unwrap();
        let mut bytes = ((1u64 << 40) - 1).to_le_bytes().to_vec();
        bytes.extend_from_slice(b"abc");
        send_all(a.as_fd(), &bytes).unwrap();
        drop(a);
        let e = recv_frame(b.as_fd(), None, 1 << 40).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn a_large_frame_arrives_whole() {
        let (a, b) = stream_pair().unwrap();
        let body: Vec<u8> = (0..(3 << 20) + 7).map(|i| (i % 251) as u8).collect();
        let sent = body.clone();
        let t = std::thread::spawn(move || send_frame(a.as_fd(), &sent, &[]).unwrap());
        let (got, _) = recv_frame(b.as_fd(), None, 1 << 40).unwrap().unwrap();
        t.join().unwrap();
        assert_eq!(got, body);
    }

    #[test]
    fn oversized_frame_is_refused() {
        let (a, b) = stream_pair().unwrap();
        send_frame(a.as_fd(), &[0u8; 100], &[]).unwrap();
        let e = recv_frame(b.as_fd(), None, 10).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }
}
