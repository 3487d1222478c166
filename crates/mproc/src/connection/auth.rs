//! Mutual challenge–response authentication, as CPython's
//! `deliver_challenge`/`answer_challenge`.
//!
//! Two dialects share one framing; the lengths tell them apart:
//!
//! | step      | CPython 3.12+ (what mproc sends)            | legacy (CPython ≤ 3.11)    |
//! |-----------|---------------------------------------------|----------------------------|
//! | challenge | `#CHALLENGE#{sha256}` + 40 random bytes      | `#CHALLENGE#` + 20 bytes    |
//! | response  | `{sha256}` + HMAC-SHA256(key, message)       | HMAC-MD5(key, message), 16 bytes |
//! | verdict   | `#WELCOME#` or `#FAILURE#`                   | same                       |
//!
//! `message` is everything after `#CHALLENGE#`, the `{sha256}` prefix
//! included, so a peer cannot downgrade a prefixed challenge. A legacy peer
//! answers a prefixed challenge with a 16-byte MD5 digest over the whole
//! message; mproc accepts that (as CPython 3.12 does) so that CPython 3.11
//! can connect. Every read here is capped at [`MAX_READ`] bytes and nothing
//! is decoded: the payload is compared as bytes.

use std::io::{self, Read, Write};
use std::time::Instant;

use hmac::{Hmac, Mac};
#[cfg(feature = "legacy-md5")]
use md5::Md5;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::frame;
use super::stream::Stream;
use crate::error::{AuthError, Error, Result};

/// The most a peer can make either side read before it is authenticated.
pub(crate) const MAX_READ: u64 = 256;

const CHALLENGE: &[u8] = b"#CHALLENGE#";
const WELCOME: &[u8] = b"#WELCOME#";
const FAILURE: &[u8] = b"#FAILURE#";
const NONCE_LEN: usize = 40;
const LEGACY_CHALLENGE_LEN: usize = 20;
const MD5_LEN: usize = 16;

/// A digest the handshake can use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Digest {
    Md5,
    Sha256,
}

impl Digest {
    fn name(self) -> &'static [u8] {
        match self {
            Digest::Md5 => b"md5",
            Digest::Sha256 => b"sha256",
        }
    }

    /// The HMAC of `message`; `None` for MD5 when the `legacy-md5`
    /// feature is off.
    fn mac(self, key: &[u8], message: &[u8]) -> Option<Vec<u8>> {
        match self {
            #[cfg(feature = "legacy-md5")]
            Digest::Md5 => Some(mac::<Hmac<Md5>>(key, message)),
            #[cfg(not(feature = "legacy-md5"))]
            Digest::Md5 => None,
            Digest::Sha256 => Some(mac::<Hmac<Sha256>>(key, message)),
        }
    }
}

fn mac<M: Mac + hmac::digest::KeyInit>(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut m = <M as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    m.update(message);
    m.finalize().into_bytes().to_vec()
}

/// Fills `buf` with random bytes from the kernel.
pub(crate) fn random(buf: &mut [u8]) -> Result<()> {
    let mut got = 0;
    while got < buf.len() {
        got += rustix::rand::getrandom(&mut buf[got..], rustix::rand::GetRandomFlags::empty())
            .map_err(|e| Error::io("cannot read random bytes")(e.into()))?;
    }
    Ok(())
}

/// Splits a challenge or response into its digest and payload, as
/// CPython's `_get_digest_name_and_payload`: `None` marks the legacy form.
fn split(message: &[u8]) -> Result<(Option<Digest>, &[u8])> {
    if message.len() == LEGACY_CHALLENGE_LEN || message.len() == MD5_LEN {
        return Ok((None, message));
    }
    let end = message.iter().take(12).position(|&b| b == b'}');
    match (message.first(), end) {
        (Some(b'{'), Some(end)) => {
            let digest = match &message[1..end] {
                b"md5" => Digest::Md5,
                b"sha256" => Digest::Sha256,
                other => return Err(malformed(format!("unsupported digest {other:?}"))),
            };
            Ok((Some(digest), &message[end + 1..]))
        }
        _ => Err(malformed(format!(
            "a message of {} bytes without a digest prefix",
            message.len()
        ))),
    }
}

fn malformed(what: String) -> Error {
    Error::Authentication(AuthError::Malformed(what))
}

/// A socket whose every read ends by one deadline: a peer that dribbles
/// its bytes cannot stretch the handshake past it.
pub(crate) struct Bounded<'a> {
    stream: &'a Stream,
    deadline: Option<Instant>,
}

impl<'a> Bounded<'a> {
    pub(crate) fn new(stream: &'a Stream, deadline: Option<Instant>) -> Self {
        Bounded { stream, deadline }
    }
}

impl Read for Bounded<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Each read may wait only for what is left of the whole.
        self.stream.set_deadline(self.deadline)?;
        self.stream.read(buf)
    }
}

impl Write for Bounded<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.write(buf)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.stream.write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Reads one bounded handshake message; an oversized one is refused unread.
fn recv_bounded(stream: &mut impl Read) -> Result<Vec<u8>> {
    frame::recv(stream, MAX_READ).map_err(|e| match e {
        Error::Protocol(what) => malformed(what),
        e => e,
    })
}

/// The checking half: sends a challenge, checks the digest that comes back.
pub(crate) fn deliver_challenge(stream: &mut (impl Read + Write), key: &[u8]) -> Result<()> {
    let mut message = b"{sha256}".to_vec();
    let mut nonce = [0u8; NONCE_LEN];
    random(&mut nonce)?;
    message.extend_from_slice(&nonce);
    frame::send(&mut *stream, &[CHALLENGE, &message].concat())?;
    let response = recv_bounded(stream)?;
    match verify(key, &message, &response) {
        Ok(()) => frame::send(&mut *stream, WELCOME),
        Err(e) => {
            let _ = frame::send(&mut *stream, FAILURE);
            Err(e)
        }
    }
}

fn verify(key: &[u8], message: &[u8], response: &[u8]) -> Result<()> {
    let (digest, mac) = split(response)?;
    let expected = digest
        .unwrap_or(Digest::Md5)
        .mac(key, message)
        .ok_or_else(md5_disabled)?;
    if expected.len() == mac.len() && bool::from(expected.ct_eq(mac)) {
        Ok(())
    } else {
        Err(Error::Authentication(AuthError::DigestReceivedWrong))
    }
}

/// The answering half: proves it knows the key, then reads the verdict.
pub(crate) fn answer_challenge(stream: &mut (impl Read + Write), key: &[u8]) -> Result<()> {
    let got = recv_bounded(stream)?;
    let message = got
        .strip_prefix(CHALLENGE)
        .ok_or_else(|| malformed("expected a challenge".into()))?;
    if message.len() < LEGACY_CHALLENGE_LEN {
        return Err(malformed(format!(
            "challenge too short: {} bytes",
            message.len()
        )));
    }
    frame::send(&mut *stream, &respond(key, message)?)?;
    if recv_bounded(stream)? == WELCOME {
        Ok(())
    } else {
        Err(Error::Authentication(AuthError::DigestSentRejected))
    }
}

fn respond(key: &[u8], message: &[u8]) -> Result<Vec<u8>> {
    let (digest, _) = split(message)?;
    let d = digest.unwrap_or(Digest::Md5);
    let mac = d.mac(key, message).ok_or_else(md5_disabled)?;
    Ok(match digest {
        None => mac,
        Some(d) => [b"{", d.name(), b"}", &mac].concat(),
    })
}

fn md5_disabled() -> Error {
    malformed("the peer speaks HMAC-MD5, and mproc was built without `legacy-md5`".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_and_prefixed_messages_split() {
        assert_eq!(split(&[7; 20]).unwrap().0, None);
        assert_eq!(split(&[7; 16]).unwrap().0, None);
        let (d, rest) = split(b"{sha256}0123456789012345678901234567890123456789").unwrap();
        assert_eq!((d, rest.len()), (Some(Digest::Sha256), 40));
        assert!(split(b"{sha512}0123456789012345678901234").is_err());
        assert!(split(&[b'x'; 40]).is_err());
    }

    #[test]
    fn responses_verify_in_both_dialects() {
        let msg = b"{sha256}0123456789012345678901234567890123456789";
        let r = respond(b"key", msg).unwrap();
        assert!(r.starts_with(b"{sha256}"));
        verify(b"key", msg, &r).unwrap();
        #[cfg(feature = "legacy-md5")]
        verify(b"key", msg, &Digest::Md5.mac(b"key", msg).unwrap()).unwrap();
        let e = verify(b"other", msg, &r).unwrap_err();
        assert!(matches!(
            e,
            Error::Authentication(AuthError::DigestReceivedWrong)
        ));
        let legacy = [9u8; 20];
        #[cfg(feature = "legacy-md5")]
        assert_eq!(respond(b"key", &legacy).unwrap().len(), 16);
        #[cfg(not(feature = "legacy-md5"))]
        assert!(respond(b"key", &legacy).is_err());
    }
}
