//! Where a received message goes: the caller's buffer, a new vector, or
//! nowhere (a body too large to allocate is consumed and dropped, so that
//! the ring stays in step).

use std::os::fd::OwnedFd;

use super::ring::Ring;
use crate::error::{Error, Result};

/// From this size on, a new vector for a message asks for huge pages.
const HUGE_MESSAGE: usize = 8 << 20;

/// Where a received message goes.
pub(super) enum Dst<'b> {
    /// Into a new vector.
    Vec,
    /// Into this buffer if it fits (else into a new vector).
    Buf(&'b mut [u8]),
    /// Into this vector (cleared first) if the message has at most this
    /// many bytes (else into a new vector).
    Reuse(Vec<u8>, usize),
}

/// A received message.
pub(super) struct Message {
    /// The bytes, unless they went into the caller's buffer.
    pub(super) bytes: Option<Vec<u8>>,
    /// The message's length.
    pub(super) len: usize,
    /// The descriptors that came with it.
    pub(super) fds: Vec<OwnedFd>,
}

/// The destination of a message's body.
pub(super) enum Sink<'b> {
    Buf(&'b mut [u8]),
    Vec(Vec<u8>),
    /// Too big to allocate: the body is consumed and dropped.
    Discard,
}

impl<'b> Sink<'b> {
    pub(super) fn new(dst: Dst<'b>, len: usize) -> Self {
        match dst {
            Dst::Buf(buf) if buf.len() >= len => Sink::Buf(&mut buf[..len]),
            Dst::Reuse(mut v, keep) if len <= keep => {
                v.clear();
                match v.try_reserve(len) {
                    Ok(()) => Sink::Vec(v),
                    Err(_) => Sink::Discard,
                }
            }
            _ => {
                let mut v = Vec::new();
                match v.try_reserve_exact(len) {
                    Ok(()) => {
                        if len >= HUGE_MESSAGE {
                            crate::sys::shm::advise_huge_pages(&mut v);
                        }
                        Sink::Vec(v)
                    }
                    Err(_) => Sink::Discard,
                }
            }
        }
    }

    /// Copies `n` bytes at ring index `at`, which are bytes `done..done + n`
    /// of the message.
    pub(super) fn fill(&mut self, ring: &Ring<'_>, at: u32, done: usize, n: usize) {
        match self {
            Sink::Buf(buf) => ring.read(at, &mut buf[done..done + n]),
            Sink::Vec(v) => ring.append(at, n, v),
            Sink::Discard => {}
        }
    }

    pub(super) fn finish(self, len: usize, fds: Vec<OwnedFd>) -> Result<Message> {
        let bytes = match self {
            Sink::Buf(_) => None,
            Sink::Vec(v) => Some(v),
            Sink::Discard => {
                return Err(Error::io("cannot receive a message")(std::io::Error::new(
                    std::io::ErrorKind::OutOfMemory,
                    format!("no memory for a message of {len} bytes (dropped)"),
                )))
            }
        };
        Ok(Message { bytes, len, fds })
    }
}
