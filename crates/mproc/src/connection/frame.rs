//! CPython's `multiprocessing.connection` framing: a 4-byte big-endian
//! signed length before each message; a length of `-1` is followed by an
//! 8-byte big-endian length (payloads over 2 GiB).

use std::io::{self, IoSlice, Read, Write};

use crate::error::{Error, Result};
use crate::observe::{debug_event, warn_event};

/// The largest payload announced in the short form (Python's `0x7fffffff`).
const SHORT_MAX: usize = 0x7fff_ffff;

/// The header for a payload of `n` bytes; returns the buffer and its length.
pub(crate) fn header(n: usize) -> ([u8; 12], usize) {
    let mut h = [0u8; 12];
    if n > SHORT_MAX {
        h[..4].copy_from_slice(&(-1i32).to_be_bytes());
        h[4..].copy_from_slice(&(n as u64).to_be_bytes());
        (h, 12)
    } else {
        h[..4].copy_from_slice(&(n as i32).to_be_bytes());
        (h, 4)
    }
}

/// Reads a header; `Ok(None)` at a clean end of file.
pub(crate) fn parse_header(r: &mut impl Read) -> Result<Option<u64>> {
    let mut short = [0u8; 4];
    if !read_exact_or_eof(r, &mut short)? {
        return Ok(None);
    }
    match i32::from_be_bytes(short) {
        -1 => {
            let mut long = [0u8; 8];
            read_exact(r, &mut long)?;
            Ok(Some(u64::from_be_bytes(long)))
        }
        n if n < 0 => Err(Error::Protocol(format!("negative message length {n}"))),
        n => Ok(Some(n as u64)),
    }
}

/// Sends one message.
pub(crate) fn send(mut w: impl Write, payload: &[u8]) -> Result<()> {
    let (h, hl) = header(payload.len());
    let mut bufs = [IoSlice::new(&h[..hl]), IoSlice::new(payload)];
    let mut bufs = &mut bufs[..];
    while !bufs.is_empty() {
        match w.write_vectored(bufs) {
            Ok(0) => return Err(Error::Disconnected),
            Ok(n) => IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(map_io(e, "cannot send a message")),
        }
    }
    Ok(())
}

/// Up to this size a message's buffer is allocated whole before it is
/// read; a longer one grows as its bytes arrive, so that a length prefix
/// (up to 2^64 - 1) costs no more memory than the bytes really sent.
const WHOLE_UP_TO: usize = 1 << 20;

/// Receives one message of at most `max` bytes. A longer announced length
/// is a protocol error and nothing of the payload is read.
pub(crate) fn recv(mut r: impl Read, max: u64) -> Result<Vec<u8>> {
    let Some(n) = parse_header(&mut r)? else {
        return Err(hung_up("the peer closed the connection"));
    };
    if n > max {
        return Err(Error::Protocol(format!(
            "message of {n} bytes over the limit of {max}"
        )));
    }
    let n = usize::try_from(n).map_err(|_| Error::Protocol("message too large".into()))?;
    if n <= WHOLE_UP_TO {
        let mut buf = vec![0u8; n];
        read_exact(&mut r, &mut buf)?;
        return Ok(buf);
    }
    // Doubles as bytes arrive: at most twice what the peer really sent.
    let mut buf: Vec<u8> = Vec::new();
    let mut got = 0;
    while got < n {
        if got == buf.len() {
            let grow = n.min(buf.len().saturating_mul(2).max(WHOLE_UP_TO));
            buf.resize(grow, 0);
        }
        match r.read(&mut buf[got..]) {
            Ok(0) => return Err(closed_inside()),
            Ok(k) => got += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(map_io(e, "cannot receive a message")),
        }
    }
    Ok(buf)
}

fn read_exact(r: &mut impl Read, buf: &mut [u8]) -> Result<()> {
    if read_exact_or_eof(r, buf)? || buf.is_empty() {
        Ok(())
    } else {
        Err(Error::Disconnected)
    }
}

/// Fills `buf`; `Ok(false)` if the peer closed before the first byte, an
/// error if it closed in the middle.
fn read_exact_or_eof(r: &mut impl Read, buf: &mut [u8]) -> Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => return Err(closed_inside()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(map_io(e, "cannot receive a message")),
        }
    }
    Ok(true)
}

/// A peer gone: told at `debug` (a peer closing is the ordinary end of a
/// connection).
#[cold]
#[inline(never)]
#[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
fn hung_up(how: &'static str) -> Error {
    debug_event!(how, "connection peer gone");
    Error::Disconnected
}

/// A peer gone in the middle of a message: told at `warn` (it died, or
/// does not speak the protocol).
#[cold]
#[inline(never)]
fn closed_inside() -> Error {
    warn_event!("connection peer gone inside a message");
    Error::Protocol("connection closed inside a message".into())
}

/// Timeouts become [`Error::Timeout`], a reset peer [`Error::Disconnected`].
pub(crate) fn map_io(e: io::Error, context: &'static str) -> Error {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Error::Timeout,
        io::ErrorKind::BrokenPipe
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted => hung_up("the peer reset the connection"),
        _ => Error::Io { context, source: e },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_headers() {
        let (h, n) = header(5);
        assert_eq!(&h[..n], &[0, 0, 0, 5]);
        let (h, n) = header(SHORT_MAX + 1);
        assert_eq!(n, 12);
        assert_eq!(
            parse_header(&mut &h[..n]).unwrap(),
            Some(SHORT_MAX as u64 + 1)
        );
        assert_eq!(parse_header(&mut &h[..4]).ok(), None);
    }

    #[test]
    fn end_of_file_and_negative_lengths() {
        assert_eq!(parse_header(&mut &[][..]).unwrap(), None);
        let e = parse_header(&mut &(-2i32).to_be_bytes()[..]).unwrap_err();
        assert!(matches!(e, Error::Protocol(_)), "{e}");
    }

    /// A poor man's fuzz run: random and mutated frames never panic, never
    /// read past the buffer, and never yield more than the limit.
    #[test]
    fn random_frames_are_refused_or_bounded() {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..20_000 {
            let len = (next() % 40) as usize;
            let mut buf: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if round % 3 == 0 && len >= 4 {
                let n = (next() % (len as u64)) as i32;
                buf[..4].copy_from_slice(&n.to_be_bytes());
            }
            match recv(&buf[..], 256) {
                Ok(msg) => assert!(msg.len() <= 256 && msg.len() + 4 <= buf.len()),
                Err(Error::Protocol(_) | Error::Disconnected) => {}
                Err(e) => panic!("unexpected {e:?}"),
            }
        }
    }
}
