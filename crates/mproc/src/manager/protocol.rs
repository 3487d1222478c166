//! What proxies and the server say to each other.
//!
//! Each request is one message (mproc's codec, `crate::codec`) on an
//! authenticated [`SocketConnection`](crate::SocketConnection); the server
//! answers each with one [`Reply`]. Elements (keys, values, items) are
//! encoded by the proxy and kept as bytes by the server, which never decodes
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

// Hashes as its bytes (`Vec<u8>` hashes as `[u8]`): a map keyed by `Bytes`
// can be searched with a borrowed slice, without a copy.
impl std::borrow::Borrow<[u8]> for Bytes {
    fn borrow(&self) -> &[u8] {
        &self.0
    }
}

/// Encodes an element bound for the server (the proxies in it go with the
/// next call, see [`collecting`](super::outgoing::collecting)).
pub(crate) fn enc<T: Serialize + ?Sized>(value: &T) -> crate::Result<Bytes> {
    super::outgoing::collecting(|| crate::connection::encode_plain(value)).map(Bytes)
}

/// Encodes a value only to compare it with stored elements (`index`,
/// `count`): the bytes are those a stored copy has, and the proxies in it
/// take no reference (nothing is stored).
pub(crate) fn enc_probe<T: Serialize + ?Sized>(value: &T) -> crate::Result<Bytes> {
    crate::codec::sizing(|| crate::connection::encode_plain(value)).map(Bytes)
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
    /// Objects whose proxies the request's elements hold, each with a
    /// transit reference: the object the request addresses (or creates)
    /// takes them over, except a queue (its getter adopts them).
    pub(crate) refs: Vec<u64>,
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
    Queue(QueueOp),
    Semaphore(SemaphoreOp),
    Barrier(BarrierOp),
    Reentrant(ReentrantOp),
    /// A call on a registered type: its encoded request.
    Custom(Bytes),
    /// One more reference for this connection.
    Incref,
    /// One reference fewer for this connection.
    Decref,
    /// A transit reference, held by no connection, for a copy of a proxy
    /// on its way.
    Share,
    /// Turns a transit reference into this connection's (or takes a new
    /// one when none is in transit).
    Adopt,
    /// Gives a transit reference back.
    Release,
    /// How many objects the server holds.
    ObjectCount,
    /// Moves this connection to a pipe (see `link.rs`).
    Upgrade,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Kind {
    Dict,
    List,
    Namespace,
    Value,
    Lock,
    Event,
    /// A queue holding at most this many items (0: no bound).
    Queue(u64),
    /// A semaphore with this initial value; bounded or not.
    Semaphore(u64, bool),
    /// A barrier for this many parties.
    Barrier(u64),
    /// A reentrant lock, also a condition variable.
    Reentrant,
    Custom(String),
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum DictOp {
    Get(Bytes),
    Insert(Bytes, Bytes),
    Remove(Bytes),
    Contains(Bytes),
    Len,
    /// Keys and values alternate.
    Update(Packed),
    GetMany(Vec<Bytes>),
    Items,
    Keys,
    Clear,
    /// Removes and returns the last inserted entry (`popitem`).
    PopItem,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ListOp {
    Push(Bytes),
    Extend(Packed),
    Get(i64),
    Set(i64, Bytes),
    Insert(i64, Bytes),
    Pop(Option<i64>),
    Len,
    Snapshot,
    Clear,
    /// `l[start:stop:step]`, bounds as Python takes them (`None`: the
    /// default for the step's direction); the elements, `Packed`.
    Slice {
        start: Option<i64>,
        stop: Option<i64>,
        step: i64,
    },
    /// The first index in `l[start:stop]` whose element encodes as this.
    Index(Bytes, Option<i64>, Option<i64>),
    /// How many elements encode as this.
    Count(Bytes),
    Reverse,
    /// Starts a sort on this connection: returns the list's version and
    /// its elements (`Packed`); other connections' changes wait until
    /// `SortEnd` or until this connection closes.
    SortBegin,
    /// Ends this connection's sort. With `(version, perm)`, returns
    /// whether the list is still at that version, and if so makes it
    /// `old[perm[0]], old[perm[1]], ...` (no `perm`: it is sorted already).
    /// `None` only ends the sort (it failed in the proxy).
    SortEnd(Option<(u64, Option<Vec<u32>>)>),
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

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum QueueOp {
    /// Waits up to this many microseconds for room; returns whether the
    /// item went in.
    Put(Bytes, Option<u64>),
    /// Waits up to this many microseconds; returns the item, if any.
    Get(Option<u64>),
    Len,
    TaskDone,
    /// Waits until every item put was marked done; returns whether so.
    Join(Option<u64>),
    /// Whether a bounded queue holds `maxsize` items.
    Full,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum SemaphoreOp {
    Acquire(Option<u64>),
    Release,
    Value,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ReentrantOp {
    /// Waits up to this many microseconds; returns whether it was taken.
    Acquire(Option<u64>),
    Release,
    /// Condition wait: up to this many microseconds; returns whether it
    /// was notified.
    Wait(Option<u64>),
    /// Wakes up to this many waiters.
    Notify(u64),
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum BarrierOp {
    /// Waits up to this many microseconds; the arrival index, or `None`
    /// when the barrier is broken.
    Wait(Option<u64>),
    Abort,
    Reset,
    Waiting,
    Broken,
    Parties,
}

/// Many elements in one buffer, each after its length (`u32`, little
/// endian): a batch costs one allocation to build and none to walk.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Packed(pub(crate) Bytes);

impl Packed {
    /// Encodes `value` at the end.
    pub(crate) fn push<T: Serialize + ?Sized>(&mut self, value: &T) -> crate::Result<()> {
        let buf = &mut (self.0).0;
        let at = buf.len();
        buf.extend_from_slice(&[0; 4]);
        if let Err(e) =
            super::outgoing::collecting(|| crate::codec::encode_plain_into(value, &mut *buf))
        {
            buf.truncate(at);
            return Err(e);
        }
        self.seal(at)
    }

    /// Appends already encoded bytes.
    pub(crate) fn push_raw(&mut self, bytes: &[u8]) -> crate::Result<()> {
        let buf = &mut (self.0).0;
        let at = buf.len();
        buf.extend_from_slice(&[0; 4]);
        buf.extend_from_slice(bytes);
        self.seal(at)
    }

    /// Writes the length of the element that starts at `at`.
    fn seal(&mut self, at: usize) -> crate::Result<()> {
        let buf = &mut (self.0).0;
        let n = u32::try_from(buf.len() - at - 4)
            .map_err(|_| crate::Error::InvalidArgument("an element over 4 GiB".into()))?;
        buf[at..at + 4].copy_from_slice(&n.to_le_bytes());
        Ok(())
    }

    /// The elements in order; a truncated buffer ends with an error.
    pub(crate) fn iter(&self) -> impl Iterator<Item = Result<&[u8], String>> + '_ {
        let mut rest: &[u8] = &self.0;
        std::iter::from_fn(move || {
            if rest.is_empty() {
                return None;
            }
            let Some((len, tail)) = rest.split_first_chunk::<4>() else {
                rest = &[];
                return Some(Err("truncated batch".into()));
            };
            let n = u32::from_le_bytes(*len) as usize;
            if tail.len() < n {
                rest = &[];
                return Some(Err("truncated batch".into()));
            }
            let (item, tail) = tail.split_at(n);
            rest = tail;
            Some(Ok(item))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_round_trips_and_refuses_truncation() {
        let mut p = Packed::default();
        p.push(&7u64).unwrap();
        p.push("hi").unwrap();
        p.push_raw(&[]).unwrap();
        let items: Vec<&[u8]> = p.iter().map(Result::unwrap).collect();
        assert_eq!(items.len(), 3);
        assert_eq!(items[0], 7u64.to_le_bytes());
        assert!(items[2].is_empty());
        let mut cut = p;
        (cut.0).0.pop();
        assert!(cut.iter().any(|r| r.is_err()));
        let lying = Packed(Bytes(vec![255, 255, 255, 255, 1]));
        assert!(lying.iter().next().unwrap().is_err());
    }

    fn b(x: &[u8]) -> Bytes {
        Bytes(x.to_vec())
    }

    fn packed() -> Packed {
        let mut p = Packed::default();
        p.push(&1u64).unwrap();
        p.push("v").unwrap();
        p
    }

    /// One request per operation (every variant of every op), each with
    /// references and odd values.
    fn every_request() -> Vec<Request> {
        let t = Some(1_500_000);
        let mut ops = vec![
            Op::Hello,
            Op::Shutdown,
            Op::Create {
                kind: Kind::Custom("Counter".into()),
                name: Some("named".into()),
                init: b(&[1, 2]),
            },
            Op::Custom(b(b"call")),
            Op::Incref,
            Op::Decref,
            Op::Share,
            Op::Adopt,
            Op::Release,
            Op::ObjectCount,
            Op::Upgrade,
        ];
        for kind in [
            Kind::Dict,
            Kind::List,
            Kind::Namespace,
            Kind::Value,
            Kind::Lock,
            Kind::Event,
            Kind::Queue(3),
            Kind::Semaphore(2, true),
            Kind::Barrier(4),
            Kind::Reentrant,
        ] {
            ops.push(Op::Create {
                kind,
                name: None,
                init: Bytes::default(),
            });
        }
        ops.extend(
            [
                DictOp::Get(b(b"k")),
                DictOp::Insert(b(b"k"), b(b"v")),
                DictOp::Remove(b(b"k")),
                DictOp::Contains(b(b"k")),
                DictOp::Len,
                DictOp::Update(packed()),
                DictOp::GetMany(vec![b(b"a"), Bytes::default()]),
                DictOp::Items,
                DictOp::Keys,
                DictOp::Clear,
                DictOp::PopItem,
            ]
            .map(Op::Dict),
        );
        ops.extend(
            [
                ListOp::Push(b(b"x")),
                ListOp::Extend(packed()),
                ListOp::Get(-1),
                ListOp::Set(2, b(b"y")),
                ListOp::Insert(i64::MIN, b(b"z")),
                ListOp::Pop(None),
                ListOp::Pop(Some(-2)),
                ListOp::Len,
                ListOp::Snapshot,
                ListOp::Clear,
                ListOp::Slice {
                    start: None,
                    stop: Some(-1),
                    step: -2,
                },
                ListOp::Index(b(b"x"), Some(1), None),
                ListOp::Count(b(b"x")),
                ListOp::Reverse,
                ListOp::SortBegin,
                ListOp::SortEnd(None),
                ListOp::SortEnd(Some((7, None))),
                ListOp::SortEnd(Some((7, Some(vec![2, 0, 1])))),
            ]
            .map(Op::List),
        );
        ops.extend(
            [
                NamespaceOp::Get("a".into()),
                NamespaceOp::Set("a".into(), b(b"1")),
                NamespaceOp::Delete("a".into()),
                NamespaceOp::Names,
            ]
            .map(Op::Namespace),
        );
        ops.extend([ValueOp::Get, ValueOp::Set(b(b"v"))].map(Op::Value));
        ops.extend([LockOp::Acquire(t), LockOp::Release, LockOp::Locked].map(Op::Lock));
        ops.extend(
            [
                EventOp::Set,
                EventOp::Clear,
                EventOp::IsSet,
                EventOp::Wait(None),
            ]
            .map(Op::Event),
        );
        ops.extend(
            [
                QueueOp::Put(b(b"item"), t),
                QueueOp::Get(None),
                QueueOp::Len,
                QueueOp::TaskDone,
                QueueOp::Join(t),
                QueueOp::Full,
            ]
            .map(Op::Queue),
        );
        ops.extend(
            [
                SemaphoreOp::Acquire(t),
                SemaphoreOp::Release,
                SemaphoreOp::Value,
            ]
            .map(Op::Semaphore),
        );
        ops.extend(
            [
                BarrierOp::Wait(t),
                BarrierOp::Abort,
                BarrierOp::Reset,
                BarrierOp::Waiting,
                BarrierOp::Broken,
                BarrierOp::Parties,
            ]
            .map(Op::Barrier),
        );
        ops.extend(
            [
                ReentrantOp::Acquire(None),
                ReentrantOp::Release,
                ReentrantOp::Wait(t),
                ReentrantOp::Notify(u64::MAX),
            ]
            .map(Op::Reentrant),
        );
        ops.into_iter()
            .enumerate()
            .map(|(i, op)| Request {
                id: i as u64,
                op,
                refs: vec![i as u64, u64::MAX],
            })
            .collect()
    }

    /// Which top-level operation: no wildcard, so a new operation must be
    /// added to [`every_request`] too.
    fn which(op: &Op) -> usize {
        match op {
            Op::Hello => 0,
            Op::Shutdown => 1,
            Op::Create { .. } => 2,
            Op::Dict(_) => 3,
            Op::List(_) => 4,
            Op::Namespace(_) => 5,
            Op::Value(_) => 6,
            Op::Lock(_) => 7,
            Op::Event(_) => 8,
            Op::Queue(_) => 9,
            Op::Semaphore(_) => 10,
            Op::Barrier(_) => 11,
            Op::Reentrant(_) => 12,
            Op::Custom(_) => 13,
            Op::Incref => 14,
            Op::Decref => 15,
            Op::Share => 16,
            Op::Adopt => 17,
            Op::Release => 18,
            Op::ObjectCount => 19,
            Op::Upgrade => 20,
        }
    }

    #[test]
    fn every_request_round_trips_and_refuses_truncation() {
        let requests = every_request();
        let mut seen: Vec<usize> = requests.iter().map(|r| which(&r.op)).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen, (0..=20).collect::<Vec<_>>());
        for req in &requests {
            let bytes = crate::codec::encode_plain(req).unwrap();
            let back: Request = crate::codec::decode_plain(&bytes).unwrap();
            assert_eq!(format!("{back:?}"), format!("{req:?}"));
            for cut in 0..bytes.len() {
                let r = crate::codec::decode_plain::<Request>(&bytes[..cut]);
                assert!(
                    matches!(r, Err(crate::Error::Decode(_))),
                    "{req:?} cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn replies_round_trip() {
        let replies: Vec<Reply> = vec![
            Ok(b(&7u64.to_le_bytes())),
            Ok(Bytes::default()),
            Err(crate::error::RemoteError::NoSuchObject(3)),
            Err(crate::error::RemoteError::Failed("why".into())),
        ];
        for reply in replies {
            let bytes = crate::codec::encode_plain(&reply).unwrap();
            assert_eq!(crate::codec::decode_plain::<Reply>(&bytes).unwrap(), reply);
        }
    }

    #[test]
    fn a_push_that_fails_leaves_the_batch_as_it_was() {
        struct Fails;
        impl Serialize for Fails {
            fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
                Err(serde::ser::Error::custom("no"))
            }
        }
        let mut p = packed();
        let before = (p.0).0.clone();
        assert!(p.push(&(1u8, Fails)).is_err());
        assert_eq!((p.0).0, before);
        assert_eq!(p.iter().filter(Result::is_ok).count(), 2);
    }
}
