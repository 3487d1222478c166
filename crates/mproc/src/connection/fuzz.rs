//! Entry points for fuzzing the decoders that read what a peer sends: the
//! frame decoder, the handshake before authentication and the manager's
//! request decoder. Used by the `fuzz/` targets and by mproc's own tests
//! (a checked-in corpus and pseudo-random inputs); not part of the API.
//!
//! Each returns `Ok` or a typed error for every input; a panic is a bug
//! (an assertion on what a decoded message may be).

use std::io::{self, Read, Write};

use crate::error::Result;

/// Decodes frames from `data` until it runs out: the first byte picks the
/// size limit (`0`: none, else `2^(byte % 40)`). Returns the messages'
/// lengths; each is checked against the limit and the input.
pub fn frames(data: &[u8]) -> Result<Vec<usize>> {
    let Some((&pick, mut rest)) = data.split_first() else {
        return Ok(Vec::new());
    };
    let max = match pick {
        0 => u64::MAX,
        b => 1u64 << (b % 40),
    };
    let mut lens = Vec::new();
    while !rest.is_empty() {
        let before = rest.len();
        let msg = super::frame::recv(&mut rest, max)?;
        assert!(msg.len() as u64 <= max, "a message over the limit");
        assert!(msg.len() + 4 <= before, "a message longer than its input");
        lens.push(msg.len());
    }
    Ok(lens)
}

/// A peer whose bytes come from the fuzzer; what is sent to it is dropped.
struct Scripted<'a>(&'a [u8]);

impl Read for Scripted<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for Scripted<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Runs both halves of the handshake against a peer that sends `data`:
/// the listener's order (challenge, then answer) and the client's.
pub fn handshake(data: &[u8]) -> (Result<()>, Result<()>) {
    let key = b"fuzz key";
    let mut peer = Scripted(data);
    let listener = super::auth::deliver_challenge(&mut peer, key)
        .and_then(|()| super::auth::answer_challenge(&mut peer, key));
    let mut peer = Scripted(data);
    let client = super::auth::answer_challenge(&mut peer, key)
        .and_then(|()| super::auth::deliver_challenge(&mut peer, key));
    (listener, client)
}

/// Runs the listener's half of the handshake as a listener's acceptor runs
/// it (a message at a time, read in pieces as they come) against a peer
/// that sends `data`.
pub fn polled_handshake(data: &[u8]) -> Result<()> {
    let (mut responder, _challenge) = super::auth::Responder::start(b"fuzz key"[..].into())?;
    let mut reader = super::auth::FrameReader::default();
    let mut peer = Scripted(data);
    loop {
        let Some(msg) = reader.read_from(&mut peer)? else {
            return Err(crate::Error::Disconnected);
        };
        let mut reply = None;
        if let super::auth::Step::Done = responder.on_message(&msg, &mut reply)? {
            return Ok(());
        }
    }
}
