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
    let message = new_challenge()?;
    frame::send(&mut *stream, &[CHALLENGE, &message].concat())?;
    let response = recv_bounded(stream)?;
    let (verdict, result) = judge(key, &message, &response);
    match result {
        Ok(()) => frame::send(&mut *stream, verdict),
        Err(e) => {
            let _ = frame::send(&mut *stream, verdict);
            Err(e)
        }
    }
}

/// A fresh challenge (what follows `#CHALLENGE#`): `{sha256}` and 40
/// random bytes.
fn new_challenge() -> Result<Vec<u8>> {
    let mut message = b"{sha256}".to_vec();
    let mut nonce = [0u8; NONCE_LEN];
    random(&mut nonce)?;
    message.extend_from_slice(&nonce);
    Ok(message)
}

/// The verdict on a peer's `response` to `message`, and the outcome.
fn judge(key: &[u8], message: &[u8], response: &[u8]) -> (&'static [u8], Result<()>) {
    match verify(key, message, response) {
        Ok(()) => (WELCOME, Ok(())),
        Err(e) => (FAILURE, Err(e)),
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
    frame::send(&mut *stream, &answer(key, &got)?)?;
    check_verdict(&recv_bounded(stream)?)
}

/// The answer to a received challenge message (`#CHALLENGE#...`).
fn answer(key: &[u8], got: &[u8]) -> Result<Vec<u8>> {
    let message = got
        .strip_prefix(CHALLENGE)
        .ok_or_else(|| malformed("expected a challenge".into()))?;
    if message.len() < LEGACY_CHALLENGE_LEN {
        return Err(malformed(format!(
            "challenge too short: {} bytes",
            message.len()
        )));
    }
    respond(key, message)
}

fn check_verdict(got: &[u8]) -> Result<()> {
    if got == WELCOME {
        Ok(())
    } else {
        Err(Error::Authentication(AuthError::DigestSentRejected))
    }
}

/// Whether `frame` (a header and what follows, as read or peeked from a
/// socket) starts a challenge: what a keyed listener sends first.
pub(crate) fn is_challenge_frame(frame: &[u8]) -> bool {
    frame.len() >= 4 + CHALLENGE.len()
        && i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]) >= CHALLENGE.len() as i32
        && frame[4..].starts_with(CHALLENGE)
}

/// Whether a received message is a challenge.
pub(crate) fn is_challenge(message: &[u8]) -> bool {
    message.starts_with(CHALLENGE)
}

/// The listener's half of the handshake driven by a poll loop: it is fed
/// the peer's messages one at a time and says what to send back, so that
/// one thread can authenticate many peers at once. The same steps as
/// [`deliver_challenge`] then [`answer_challenge`].
pub(crate) struct Responder {
    key: std::sync::Arc<[u8]>,
    message: Vec<u8>,
    phase: Phase,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waits for the answer to our challenge.
    Response,
    /// Waits for the peer's challenge.
    Challenge,
    /// Waits for the peer's verdict on our answer.
    Verdict,
}

/// What a [`Responder`] made of a message.
pub(crate) enum Step {
    /// More messages are expected.
    More,
    /// The peer is authenticated.
    Done,
}

impl Responder {
    /// A responder and the frame to send first (the challenge).
    pub(crate) fn start(key: std::sync::Arc<[u8]>) -> Result<(Responder, Vec<u8>)> {
        let message = new_challenge()?;
        let first = [CHALLENGE, &message].concat();
        let r = Responder {
            key,
            message,
            phase: Phase::Response,
        };
        Ok((r, first))
    }

    /// Takes the peer's next message; `reply` receives the payload to send
    /// back (also on an error: the `#FAILURE#` verdict).
    pub(crate) fn on_message(&mut self, msg: &[u8], reply: &mut Option<Vec<u8>>) -> Result<Step> {
        match self.phase {
            Phase::Response => {
                let (verdict, result) = judge(&self.key, &self.message, msg);
                *reply = Some(verdict.to_vec());
                result?;
                self.phase = Phase::Challenge;
                Ok(Step::More)
            }
            Phase::Challenge => {
                *reply = Some(answer(&self.key, msg)?);
                self.phase = Phase::Verdict;
                Ok(Step::More)
            }
            Phase::Verdict => {
                check_verdict(msg)?;
                Ok(Step::Done)
            }
        }
    }
}

/// Reads one bounded handshake frame from a non-blocking socket, in as
/// many pieces as it arrives, never past its end (what follows belongs to
/// the connection).
#[derive(Default)]
pub(crate) struct FrameReader {
    head: [u8; 4],
    got: usize,
    body: Option<Vec<u8>>,
}

impl FrameReader {
    /// Reads what is there: `Ok(Some(message))` once complete,
    /// `Ok(None)` when the socket has nothing more for now.
    pub(crate) fn read_from(&mut self, mut r: impl Read) -> Result<Option<Vec<u8>>> {
        loop {
            let buf = match &mut self.body {
                None => &mut self.head[self.got..],
                Some(body) => {
                    if self.got == body.len() {
                        self.got = 0;
                        return Ok(self.body.take());
                    }
                    &mut body[self.got..]
                }
            };
            match r.read(buf) {
                Ok(0) => return Err(Error::Disconnected),
                Ok(n) => self.got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) => return Err(frame::map_io(e, "cannot receive a handshake message")),
            }
            if self.body.is_none() && self.got == 4 {
                let n = i32::from_be_bytes(self.head);
                if n < 0 || n as u64 > MAX_READ {
                    return Err(malformed(format!(
                        "a handshake message announced as {n} bytes (at most {MAX_READ})"
                    )));
                }
                self.body = Some(vec![0; n as usize]);
                self.got = 0;
            }
        }
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
