//! A message in a ring: a 16-byte header, then its bytes.
//!
//! | bytes  | field   | meaning                                                  |
//! |--------|---------|----------------------------------------------------------|
//! | 0..8   | `len`   | bytes of the message that follow (at most `MAX_FRAME`)   |
//! | 8..12  | `nfds`  | descriptors sent ahead on the socket (at most `MAX_FDS`) |
//! | 12..16 | `check` | [`CHECK`] mixed with `len` and `nfds`                    |
//!
//! All little-endian. The check word makes a reader that lost its place (a
//! peer that wrote garbage, or two writers at once) fail with
//! `Error::Protocol` rather than trust a random length.

use crate::error::{Error, Result};
use crate::sys::fdpass::MAX_FDS;
use crate::task::MAX_FRAME;

/// Bytes of a record header.
pub(super) const HEADER: u32 = 16;
/// "MPrg".
const CHECK: u32 = u32::from_le_bytes(*b"MPrg");

/// A record header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Record {
    /// Bytes of the message.
    pub(super) len: u64,
    /// Descriptors sent ahead on the socket for this message.
    pub(super) nfds: u32,
}

impl Record {
    fn check(self) -> u32 {
        CHECK ^ self.len as u32 ^ (self.len >> 32) as u32 ^ self.nfds.rotate_left(16)
    }

    pub(super) fn encode(self) -> [u8; HEADER as usize] {
        let mut b = [0u8; HEADER as usize];
        b[..8].copy_from_slice(&self.len.to_le_bytes());
        b[8..12].copy_from_slice(&self.nfds.to_le_bytes());
        b[12..].copy_from_slice(&self.check().to_le_bytes());
        b
    }

    /// Decodes and checks a header read from the ring.
    pub(super) fn decode(b: &[u8; HEADER as usize]) -> Result<Record> {
        let word = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let r = Record {
            len: u64::from(word(0)) | u64::from(word(4)) << 32,
            nfds: word(8),
        };
        if word(12) != r.check() || r.len > MAX_FRAME || r.nfds as usize > MAX_FDS {
            return Err(Error::Protocol(format!("corrupt message header {b:02x?}")));
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_garbage_is_refused() {
        let r = Record {
            len: 1 << 33 | 5,
            nfds: 3,
        };
        assert_eq!(Record::decode(&r.encode()).unwrap(), r);
        let mut b = r.encode();
        b[0] ^= 1;
        assert!(matches!(Record::decode(&b), Err(Error::Protocol(_))));
        assert!(Record::decode(&[0; 16]).is_err());
    }
}
