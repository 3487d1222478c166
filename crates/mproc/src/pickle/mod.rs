//! Python's pickles, data only: how an mproc program and a CPython one
//! exchange objects rather than bytes.
//!
//! CPython's `Connection.send(obj)` pickles `obj` and `recv()` unpickles.
//! A [`SocketConnection`](crate::SocketConnection) made
//! [`pickled`](crate::SocketConnection::pickled) does the same on mproc's
//! side, so the two speak objects; [`dumps`] and [`loads`] are the codec on
//! its own (for [`send_bytes`](crate::SocketConnection::send_bytes), files,
//! other transports).
//!
//! | Python | Rust (any serde type of that shape) |
//! |---|---|
//! | `None` | `()`, `Option::None` |
//! | `bool` | `bool` |
//! | `int` | `i8` … `i64`, `u8` … `u64`; from Python, ints in `i64`'s range (a larger one, or one that does not fit the type, is a decode error) |
//! | `float` | `f32`, `f64` |
//! | `str` | `String`, `&str` when sending, `char` |
//! | `bytes` | `serde_bytes::ByteBuf` (a `Vec<u8>` is sent as a list of ints); a `bytearray` only from protocol 5 (before it, Python pickles one as a call of `builtins.bytearray`, refused below) |
//! | `list`, `tuple` | `Vec<T>`, tuples, arrays (a Rust tuple is sent as a tuple, a `Vec` as a list) |
//! | `dict` | `HashMap`, `BTreeMap`, structs (field names as `str` keys) |
//! | `set`, `frozenset` | `HashSet`, `BTreeSet`, `Vec` (sent as a list) |
//! | enum variants | `'Variant'`, or `{'Variant': value}` (serde's external tagging) |
//!
//! # Only data
//!
//! A pickle is a program: some opcodes name a global and call it, which is
//! how unpickling runs code. Nothing like that can run here (there is no
//! Python), but a decoder that accepted them would still be a large attack
//! surface, so every pickle received is first walked opcode by opcode and
//! refused unless it is pure data ([`Error::Decode`]
//! naming the opcode): no `GLOBAL`, `STACK_GLOBAL`, `REDUCE`, `BUILD`,
//! `INST`, `OBJ`, `NEWOBJ`, extensions, persistent ids or out-of-band
//! buffers. The walk also bounds what decoding may build, before it builds
//! anything: nesting deeper than 256 levels, more than 16 values per byte of
//! input once memo references are expanded, integers longer than 16 bytes,
//! and lengths past the end of the input are each refused. An instance of a
//! Python class therefore cannot be received; send its fields (a dict, a
//! tuple) instead.
//!
//! Pickles are written with protocol 3 (every Python 3 reads it), strings as
//! UTF-8.
//!
//! The decoder behind the walk is the `serde-pickle` crate.
//!
//! | file       | what                                             |
//! |------------|--------------------------------------------------|
//! | `mod.rs`   | [`dumps`], [`loads`]: the codec                  |
//! | `check.rs` | the walk that admits data only, within bounds    |

mod check;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{CodecError, Error, Result};

pub(crate) use check::Refused;

impl std::error::Error for Refused {}

/// Pickles `value` (protocol 3), as Python's `pickle.dumps`.
///
/// ```
/// use std::collections::BTreeMap;
///
/// let mut m = BTreeMap::new();
/// m.insert("x", 1.5);
/// let bytes = mproc::pickle::dumps(&m)?;
/// let back: BTreeMap<String, f64> = mproc::pickle::loads(&bytes)?;
/// assert_eq!(back["x"], 1.5);
/// # Ok::<(), mproc::Error>(())
/// ```
pub fn dumps<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_pickle::to_vec(value, serde_pickle::SerOptions::new())
        .map_err(|e| Error::Encode(CodecError(Box::new(e))))
}

/// Unpickles `bytes` as a `T`, as Python's `pickle.loads`, accepting data
/// only (see the [module](self)'s "Only data"): anything else, or a pickle
/// whose shape does not fit `T`, is [`Error::Decode`].
///
/// ```
/// // pickle.dumps(("a", [1, 2]), 4) in CPython 3.11:
/// let p = b"\x80\x04\x95\x0f\x00\x00\x00\x00\x00\x00\x00\x8c\x01a\x94]\x94(K\x01K\x02e\x86\x94.";
/// let (s, v): (String, Vec<u32>) = mproc::pickle::loads(p)?;
/// assert_eq!((s.as_str(), v), ("a", vec![1, 2]));
///
/// // os.system("true") is refused, not run:
/// let evil = b"cos\nsystem\n(S'true'\ntR.";
/// assert!(matches!(mproc::pickle::loads::<()>(evil), Err(mproc::Error::Decode(_))));
/// # Ok::<(), mproc::Error>(())
/// ```
pub fn loads<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    check::check(bytes).map_err(|r| Error::Decode(CodecError(Box::new(r))))?;
    let options = serde_pickle::DeOptions::new().decode_strings();
    serde_pickle::from_slice(bytes, options).map_err(|e| Error::Decode(CodecError(Box::new(e))))
}
