//! The messages between the driver (rank 0) and a worker rank.
//!
//! Every message is `kind u8, worker id u64, payload`, integers
//! little-endian. A worker id names one local worker process on a rank,
//! for its whole life (a replacement gets a new one).
//!
//! | kind          | way  | payload                                         |
//! |---------------|------|-------------------------------------------------|
//! | [`START`]     | down | start method u8, then the initializer, encoded (or nothing) |
//! | [`DATA`]      | both | one pool message (`pool/wire.rs`), as it is     |
//! | [`TERM`]      | down | none: SIGTERM the worker                        |
//! | [`KILL`]      | down | none: SIGKILL the worker                        |
//! | [`STOP`]      | down | grace in ns u64: SIGTERM, SIGKILL after grace   |
//! | [`EXIT`]      | down | none (id 0): the job ends                       |
//! | [`STARTED`]   | up   | pid i32: the worker is ready                    |
//! | [`FAILED`]    | up   | errno i32 (0: none), then the reason, UTF-8     |
//! | [`ENDED`]     | up   | exit code i32 (negative: signal; [`UNKNOWN`])   |

pub(crate) const START: u8 = b'S';
pub(crate) const DATA: u8 = b'D';
pub(crate) const TERM: u8 = b'T';
pub(crate) const KILL: u8 = b'K';
pub(crate) const STOP: u8 = b'P';
pub(crate) const EXIT: u8 = b'X';
pub(crate) const STARTED: u8 = b's';
pub(crate) const FAILED: u8 = b'f';
pub(crate) const ENDED: u8 = b'e';

/// An [`ENDED`] code saying the end could not be learnt.
pub(crate) const UNKNOWN: i32 = i32::MIN;

/// A message of `kind` for worker `id`.
pub(crate) fn msg(kind: u8, id: u64, payload: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(9 + payload.len());
    m.push(kind);
    m.extend_from_slice(&id.to_le_bytes());
    m.extend_from_slice(payload);
    m
}

/// A message's kind, worker id and payload; `None` if too short.
pub(crate) fn parse(m: &[u8]) -> Option<(u8, u64, &[u8])> {
    let kind = *m.first()?;
    let id = u64::from_le_bytes(m.get(1..9)?.try_into().ok()?);
    Some((kind, id, &m[9..]))
}

/// The `i32` a payload starts with.
pub(crate) fn int(payload: &[u8]) -> Option<i32> {
    Some(i32::from_le_bytes(payload.get(..4)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let m = msg(DATA, 7, b"xyz");
        assert_eq!(parse(&m), Some((DATA, 7, &b"xyz"[..])));
        assert_eq!(parse(&m[..5]), None);
        assert_eq!(int(&(-9i32).to_le_bytes()), Some(-9));
        assert_eq!(int(b"ab"), None);
    }
}
