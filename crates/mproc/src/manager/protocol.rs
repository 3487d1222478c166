//! What proxies and the server say to each other.
//!
//! Each request is one bincode message on an authenticated
//! [`SocketConnection`](crate::SocketConnection); the server answers each
//! with one [`Reply`]. Elements (keys, values, items) are encoded by the
//! proxy with bincode and kept as bytes by the server, which never decodes
//! them: the server is the same for every `K`, `V` and `T`.

use std::fmt;
use std::ops::Deref;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An encoded element: serialised as one byte string (a length and a
/// copy), not as a sequence of `u8`s one call each.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub(crate) struct Bytes(pub(crate) Vec<u8>);

impl Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

/// Encodes an element.
pub(crate) fn enc<T: Serialize + ?Sized>(value: &T) -> crate::Result<Bytes> {
    crate::connection::encode_plain(value).map(Bytes)
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_byte_buf(BytesVisitor)
    }
}

struct BytesVisitor;

impl<'de> Visitor<'de> for BytesVisitor {
    type Value = Bytes;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte string")
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
        Ok(Bytes(v.to_vec()))
    }
    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
        Ok(Bytes(v))
    }
}

/// One request: an operation on object `id` (0: the manager itself).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Request {
    pub(crate) id: u64,
    pub(crate) op: Op,
}

/// The answer: the operation's result, encoded, or the server's error.
pub(crate) type Reply = Result<Bytes, crate::error::RemoteError>;

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Op {
    /// Checks the connection (CPython's `'dummy'` request).
    Hello,
    /// Stops the server.
    Shutdown,
    /// Creates an object, or finds the one called `name`; returns its id.
    Create {
        kind: Kind,
        name: Option<String>,
        init: Bytes,
    },
    Dict(DictOp),
    List(ListOp),
    Namespace(NamespaceOp),
    Value(ValueOp),
    Lock(LockOp),
    Event(EventOp),
    /// A call on a registered type: its encoded request.
    Custom(Bytes),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Kind {
    Dict,
    List,
    Namespace,
    Value,
    Lock,
    Event,
    Custom(String),
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum DictOp {
    Get(Bytes),
    Insert(Bytes, Bytes),
    Remove(Bytes),
    Contains(Bytes),
    Len,
    Update(Vec<(Bytes, Bytes)>),
    GetMany(Vec<Bytes>),
    Items,
    Keys,
    Clear,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ListOp {
    Push(Bytes),
    Extend(Vec<Bytes>),
    Get(i64),
    Set(i64, Bytes),
    Insert(i64, Bytes),
    Pop(Option<i64>),
    Len,
    Snapshot,
    Clear,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum NamespaceOp {
    Get(String),
    Set(String, Bytes),
    Delete(String),
    Names,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ValueOp {
    Get,
    Set(Bytes),
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum LockOp {
    /// Waits up to this many microseconds (`None`: forever); returns
    /// whether the lock was taken.
    Acquire(Option<u64>),
    Release,
    Locked,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum EventOp {
    Set,
    Clear,
    IsSet,
    /// Waits up to this many microseconds (`None`: forever).
    Wait(Option<u64>),
}
