//! Values on the wire: serde with mproc's own binary format ([`format`]),
//! and OS handles beside the bytes.
//!
//! This module is the only one that knows the format: everything else
//! encodes and decodes through the functions here, so the format can change
//! in one place. The format is chosen by measurement on mproc's own messages
//! (see `format`'s documentation).
//!
//! A value that holds OS handles (a [`Connection`](crate::Connection), later
//! queues, locks and shared memory) serialises each handle as an index into
//! a side table of descriptors. The table travels with the bytes by
//! `SCM_RIGHTS`; decoding takes each descriptor back by its index. Outside
//! [`encode`] and [`decode`] (for example with `serde_json`) a handle refuses
//! to serialise: a descriptor number means nothing in another process.

use std::cell::{Cell, RefCell};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use serde::de::{DeserializeOwned, Error as _};
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{CodecError, Error, Result};
use crate::sys::fnref::{FnPtr, FnRef, Untrusted};

mod format;
#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;

use format::{Count, Fill, WireError};

thread_local! {
    /// Set while a serialiser only measures (a size pass).
    static SIZING: Cell<bool> = const { Cell::new(false) };
}

/// Runs a serialiser's size pass: a value whose serialisation has a side
/// effect (a manager proxy takes a transit reference) skips it while
/// [`is_sizing`] says so, since the bytes measured are never sent.
pub(crate) fn sizing<R>(f: impl FnOnce() -> R) -> R {
    let was = SIZING.with(|s| s.replace(true));
    let r = f();
    SIZING.with(|s| s.set(was));
    r
}

/// Whether this thread is inside [`sizing`].
pub(crate) fn is_sizing() -> bool {
    SIZING.with(Cell::get)
}

/// Encoded bytes and the descriptors they refer to.
#[derive(Debug, Default)]
pub(crate) struct Frame {
    pub(crate) bytes: Vec<u8>,
    pub(crate) fds: Vec<OwnedFd>,
}

impl Frame {
    pub(crate) fn borrowed_fds(&self) -> Vec<BorrowedFd<'_>> {
        crate::sys::fdpass::borrow_all(&self.fds)
    }
}

thread_local! {
    static OUTGOING: RefCell<Option<Vec<OwnedFd>>> = const { RefCell::new(None) };
    static INCOMING: RefCell<Option<Vec<Option<OwnedFd>>>> = const { RefCell::new(None) };
    /// The function offset the decoding under way refused, if any: serde
    /// carries only a message, the decoder's caller gets the typed error.
    static REFUSED: Cell<Option<Untrusted>> = const { Cell::new(None) };
}

/// Records that decoding met an offset this process does not vouch for;
/// returns the message for serde's error (the decode entry points turn it
/// back into [`Error::UntrustedCode`]).
pub(crate) fn refuse_untrusted(u: Untrusted) -> String {
    let message = Error::from(u.clone()).to_string();
    REFUSED.with(|r| r.set(Some(u)));
    message
}

/// Runs a decoder; an error is [`Error::UntrustedCode`] if it came from a
/// refused function offset, else [`Error::Decode`].
fn decoding<T>(decode: impl FnOnce() -> format::Result<T>) -> Result<T> {
    REFUSED.with(|r| r.set(None));
    let r = decode();
    let refused = REFUSED.with(|r| r.take());
    r.map_err(|e| match refused {
        Some(u) => Error::from(u),
        None => Error::Decode(codec_error(e)),
    })
}

fn codec_error(e: WireError) -> CodecError {
    CodecError(Box::new(e))
}

fn encode_error(e: WireError) -> Error {
    Error::Encode(codec_error(e))
}

/// A function reference travels as its offset; decoding checks that this
/// process vouches for it ([`FnRef::checked`]).
impl<F: FnPtr> Serialize for FnRef<F> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_i64(self.offset())
    }
}

impl<'de, F: FnPtr> Deserialize<'de> for FnRef<F> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let offset = i64::deserialize(d)?;
        FnRef::checked(offset).map_err(|u| D::Error::custom(refuse_untrusted(u)))
    }
}

/// Encodes `value`, appending to `out`; returns the descriptors it holds.
pub(crate) fn encode_into<T: Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
) -> Result<Vec<OwnedFd>> {
    let saved = OUTGOING.with(|t| t.borrow_mut().replace(Vec::new()));
    let r = format::serialize_into(value, out);
    let fds = OUTGOING
        .with(|t| std::mem::replace(&mut *t.borrow_mut(), saved))
        .unwrap_or_default();
    r.map_err(encode_error)?;
    Ok(fds)
}

/// Encodes `value` into `out`, which must be exactly as long as its
/// encoding (see [`encoded_len`]); returns the descriptors it holds.
pub(crate) fn encode_exact<T: Serialize + ?Sized>(
    value: &T,
    out: &mut [u8],
) -> Result<Vec<OwnedFd>> {
    let saved = OUTGOING.with(|t| t.borrow_mut().replace(Vec::new()));
    let len = out.len();
    let mut fill = Fill { buf: out, at: 0 };
    let r = format::serialize_into(value, &mut fill);
    let written = fill.at;
    let fds = OUTGOING
        .with(|t| std::mem::replace(&mut *t.borrow_mut(), saved))
        .unwrap_or_default();
    r.map_err(encode_error)?;
    if written != len {
        return Err(Error::InvalidArgument(
            "a value encoded to fewer bytes than its encoded size".into(),
        ));
    }
    Ok(fds)
}

/// The length of `value`'s encoding (the handles it holds are counted, not
/// kept). It runs inside [`sizing`]: a value whose serialisation has a side
/// effect skips it, since these bytes are never sent.
pub(crate) fn encoded_len<T: Serialize + ?Sized>(value: &T) -> Result<usize> {
    let saved = OUTGOING.with(|t| t.borrow_mut().replace(Vec::new()));
    let mut count = Count::default();
    let r = sizing(|| format::serialize_into(value, &mut count));
    OUTGOING.with(|t| *t.borrow_mut() = saved);
    r.map_err(encode_error)?;
    Ok(count.0)
}

/// Encodes `value` into a new frame.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Frame> {
    let mut bytes = Vec::new();
    let fds = encode_into(value, &mut bytes)?;
    Ok(Frame { bytes, fds })
}

/// Decodes a `T` from `bytes`, giving it the descriptors in `fds`.
/// Descriptors the value does not claim are closed.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8], fds: Vec<OwnedFd>) -> Result<T> {
    let table = fds.into_iter().map(Some).collect();
    let saved = INCOMING.with(|t| t.borrow_mut().replace(table));
    let r = decoding(|| format::deserialize(bytes));
    INCOMING.with(|t| *t.borrow_mut() = saved);
    r
}

/// Decodes an encoded `Vec<T>` that holds no OS handles, appending its
/// items to `out` (no vector of its own in between). On an error `out`
/// may hold some of the items.
pub(crate) fn decode_extend<T: DeserializeOwned>(bytes: &[u8], out: &mut Vec<T>) -> Result<()> {
    decoding(|| format::deserialize_seed(Extend(out), bytes))
}

/// Encodes a value that must not hold OS handles (outside [`encode`] a
/// handle refuses to serialise), measured first inside [`sizing`] so that
/// it is written once into a buffer of the right size.
pub(crate) fn encode_plain<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    let mut count = Count::default();
    sizing(|| format::serialize_into(value, &mut count)).map_err(encode_error)?;
    let mut out = Vec::with_capacity(count.0);
    format::serialize_into(value, &mut out).map_err(encode_error)?;
    Ok(out)
}

/// Encodes a value that must not hold OS handles, appending to `out`. On
/// an error `out` may hold part of the encoding.
pub(crate) fn encode_plain_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<()> {
    format::serialize_into(value, out).map_err(encode_error)
}

/// Decodes a value encoded by [`encode_plain`] (no OS handles).
pub(crate) fn decode_plain<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    decoding(|| format::deserialize(bytes))
}

/// A sequence decoded onto the end of a vector.
struct Extend<'a, T>(&'a mut Vec<T>);

impl<'de, T: Deserialize<'de>> serde::de::DeserializeSeed<'de> for Extend<'_, T> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Extend<'_, T> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a sequence")
    }
    fn visit_seq<S: serde::de::SeqAccess<'de>>(
        self,
        mut seq: S,
    ) -> std::result::Result<(), S::Error> {
        // A length from the wire is a hint, not a promise: reserve no more
        // than 1 MiB ahead of the items themselves.
        let cap = (1 << 20) / std::mem::size_of::<T>().max(1);
        self.0.reserve(seq.size_hint().unwrap_or(0).min(cap));
        while let Some(item) = seq.next_element()? {
            self.0.push(item);
        }
        Ok(())
    }
}

/// An owned descriptor that serialises through the side table.
#[derive(Debug)]
pub(crate) struct WireFd(pub(crate) OwnedFd);

impl AsFd for WireFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl Serialize for WireFd {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        serialize_fd(self.0.as_fd(), s)
    }
}

/// Serialises a descriptor through the side table (a duplicate travels; the
/// caller keeps its own).
pub(crate) fn serialize_fd<S: Serializer>(
    fd: BorrowedFd<'_>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    let dup = fd.try_clone_to_owned().map_err(S::Error::custom)?;
    let index = OUTGOING.with(|t| {
        let mut t = t.borrow_mut();
        let table = t.as_mut()?;
        table.push(dup);
        Some(table.len() - 1)
    });
    match index {
        Some(i) => s.serialize_u32(i as u32),
        None => Err(S::Error::custom(
            "an OS handle can only be serialised by mproc (inside process arguments or messages)",
        )),
    }
}

impl<'de> Deserialize<'de> for WireFd {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let i = u32::deserialize(d)? as usize;
        INCOMING
            .with(|t| t.borrow_mut().as_mut()?.get_mut(i)?.take())
            .map(WireFd)
            .ok_or_else(|| D::Error::custom(format!("OS handle #{i} missing from the message")))
    }
}
