//! Helpers for the codec's tests and the tests of the layers above that
//! check their own messages' bytes (`task.rs`).

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{decode, decode_plain, encode, encode_plain, encoded_len};
use crate::error::Error;

/// Encodes and decodes `value` in this process (handles are duplicated).
pub(crate) fn round_trip<T: Serialize + DeserializeOwned>(value: &T) -> T {
    let f = encode(value).unwrap();
    assert_eq!(f.bytes.len(), encoded_len(value).unwrap());
    decode(&f.bytes, f.fds).unwrap()
}

/// `value`'s bytes (no handles).
pub(crate) fn bytes_of<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    encode_plain(value).unwrap()
}

/// Checks what a hostile or damaged copy of `bytes` does when decoded as
/// `T`: every strict prefix and the bytes with one more byte are
/// [`Error::Decode`]; flipped bytes give a value or an error, never a
/// panic.
pub(crate) fn refuses_damage<T: DeserializeOwned>(bytes: &[u8]) {
    for cut in 0..bytes.len() {
        let e = decode_plain::<T>(&bytes[..cut]).err();
        assert!(
            matches!(e, Some(Error::Decode(_))),
            "{} byte prefix of {bytes:?}: {e:?}",
            cut
        );
    }
    let mut longer = bytes.to_vec();
    longer.push(0);
    assert!(matches!(decode_plain::<T>(&longer), Err(Error::Decode(_))));
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..200 {
        let mut b = bytes.to_vec();
        for _ in 0..3 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            if !b.is_empty() {
                let i = (rng as usize) % b.len();
                b[i] = (rng >> 32) as u8;
            }
        }
        let _ = decode_plain::<T>(&b);
    }
}

/// `len` pseudo-random bytes (xorshift from `*seed`, which moves on).
pub(crate) fn garbage(seed: &mut u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|_| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            (*seed >> 24) as u8
        })
        .collect()
}
