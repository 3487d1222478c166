//! The codec's round trips, its bytes, and its refusals.

use super::testing::{bytes_of, garbage, refuses_damage, round_trip};
use super::*;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct WithFd {
    name: String,
    fd: WireFd,
}

#[test]
fn values_round_trip() {
    let f = encode(&(1u32, "two".to_string(), vec![3.0f64])).unwrap();
    let v: (u32, String, Vec<f64>) = decode(&f.bytes, f.fds).unwrap();
    assert_eq!(v, (1, "two".into(), vec![3.0]));
}

#[test]
fn handles_ride_in_the_side_table() {
    let (a, _b) = crate::sys::fdpass::stream_pair().unwrap();
    let f = encode(&WithFd {
        name: "x".into(),
        fd: WireFd(a),
    })
    .unwrap();
    assert_eq!(f.fds.len(), 1);
    let v: WithFd = decode(&f.bytes, f.fds).unwrap();
    assert_eq!(v.name, "x");
}

#[test]
fn decode_extend_appends() {
    let f = encode(&vec![3u64, 4]).unwrap();
    let mut out = vec![1u64, 2];
    decode_extend(&f.bytes, &mut out).unwrap();
    assert_eq!(out, [1, 2, 3, 4]);
    assert!(decode_extend::<u64>(&f.bytes[..12], &mut out).is_err());
}

#[test]
fn garbage_is_a_decode_error() {
    let e = decode::<String>(&[0xff; 9], Vec::new()).unwrap_err();
    assert!(matches!(e, Error::Decode(_)), "{e}");
}

#[test]
fn a_missing_handle_is_a_decode_error() {
    let e = decode::<WireFd>(&0u32.to_le_bytes(), Vec::new()).unwrap_err();
    assert!(e.to_string().contains("missing"), "{e}");
}

// ------------------------------------------------------------ helpers

fn is_decode_error<T: std::fmt::Debug>(r: Result<T>) -> bool {
    matches!(r, Err(Error::Decode(_)))
}

// ------------------------------------------------------------ the bytes

/// The bytes of each serde shape (those bincode 1 wrote with fixed-width
/// integers, which mproc used before: checked byte for byte against it).
#[test]
fn each_shape_has_its_bytes() {
    #[derive(Serialize)]
    enum E {
        A,
        B(u8),
        C { x: u16, y: bool },
    }
    #[derive(Serialize)]
    struct Unit;
    assert_eq!(bytes_of(&true), [1]);
    assert_eq!(bytes_of(&0x0102u16), [2, 1]);
    assert_eq!(bytes_of(&-2i32), [0xfe, 0xff, 0xff, 0xff]);
    assert_eq!(bytes_of(&7u64), [7, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(bytes_of(&1u128)[..2], [1, 0]);
    assert_eq!(bytes_of(&1.0f64), 1.0f64.to_le_bytes());
    assert_eq!(bytes_of(&'é'), "é".as_bytes());
    assert_eq!(bytes_of("ab"), [2, 0, 0, 0, 0, 0, 0, 0, b'a', b'b']);
    assert_eq!(bytes_of(&None::<u8>), [0]);
    assert_eq!(bytes_of(&Some(5u8)), [1, 5]);
    assert_eq!(bytes_of(&()), [0u8; 0]);
    assert_eq!(bytes_of(&Unit), [0u8; 0]);
    assert_eq!(bytes_of(&vec![1u8, 2]), [2, 0, 0, 0, 0, 0, 0, 0, 1, 2]);
    assert_eq!(bytes_of(&(1u8, 2u8)), [1, 2]);
    assert_eq!(bytes_of(&E::A), [0, 0, 0, 0]);
    assert_eq!(bytes_of(&E::B(9)), [1, 0, 0, 0, 9]);
    assert_eq!(bytes_of(&E::C { x: 3, y: false }), [2, 0, 0, 0, 3, 0, 0]);
    let map = std::collections::BTreeMap::from([(1u8, 2u8)]);
    assert_eq!(bytes_of(&map), [1, 0, 0, 0, 0, 0, 0, 0, 1, 2]);
}

#[test]
fn the_same_value_gives_the_same_bytes() {
    let v = (
        "key".to_string(),
        vec![Some(1u32), None],
        std::collections::BTreeMap::from([("b", 2), ("a", 1)]),
    );
    assert_eq!(bytes_of(&v), bytes_of(&v.clone()));
    assert_eq!(encode(&v).unwrap().bytes, bytes_of(&v));
}

// ------------------------------------------------------------ refusals

#[test]
fn damaged_bytes_are_decode_errors() {
    #[derive(Debug, Serialize, Deserialize)]
    enum Shape {
        Dot,
        Line(Vec<u64>),
        Named {
            name: String,
            tags: Vec<String>,
            at: Option<(i32, f64)>,
        },
    }
    let shapes = vec![
        Shape::Dot,
        Shape::Line(vec![1, 2, 3]),
        Shape::Named {
            name: "ℓine".into(),
            tags: vec!["a".into(), String::new()],
            at: Some((-1, 0.5)),
        },
    ];
    refuses_damage::<Vec<Shape>>(&bytes_of(&shapes));
    refuses_damage::<(u64, String, char, bool)>(&bytes_of(&(7u64, "x", '€', true)));
    refuses_damage::<crate::identity::ProcessInfo>(&bytes_of(&info()));
    for e in remote_errors() {
        refuses_damage::<crate::error::RemoteError>(&bytes_of(&e));
    }
}

#[test]
fn garbage_never_panics() {
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    for len in 0..300 {
        let bytes = garbage(&mut rng, len);
        let _ = decode_plain::<Vec<String>>(&bytes);
        let _ = decode_plain::<std::collections::HashMap<u32, Vec<u8>>>(&bytes);
        let _ = decode_plain::<Vec<Option<(char, bool)>>>(&bytes);
        let mut out = Vec::new();
        let _ = decode_extend::<(u64, i8)>(&bytes, &mut out);
    }
}

#[test]
fn malformed_scalars_are_decode_errors() {
    assert!(is_decode_error(decode_plain::<bool>(&[2])));
    assert!(is_decode_error(decode_plain::<Option<u8>>(&[2, 0])));
    assert!(is_decode_error(decode_plain::<char>(&[0xff])));
    assert!(is_decode_error(decode_plain::<char>(&[0xed, 0xa0, 0x80]))); // a surrogate
    let mut not_utf8 = bytes_of(&2u64);
    not_utf8.extend_from_slice(&[0xc3, 0x28]);
    assert!(is_decode_error(decode_plain::<String>(&not_utf8)));
}

#[test]
fn a_forged_length_allocates_nothing_and_fails() {
    let huge = bytes_of(&u64::MAX);
    assert!(is_decode_error(decode_plain::<String>(&huge)));
    assert!(is_decode_error(decode_plain::<Vec<u64>>(&huge)));
    let mut almost = bytes_of(&(1u64 << 40));
    almost.extend_from_slice(&[0; 64]);
    assert!(is_decode_error(decode_plain::<Vec<u8>>(&almost)));
    assert!(is_decode_error(decode_plain::<
        std::collections::HashMap<u8, u8>,
    >(&almost)));
}

#[test]
fn items_that_take_no_bytes_are_bounded() {
    // Before (bincode 1): a `BTreeSet<()>` claiming 2^64 items spun for
    // ever; a `Vec<()>` "decoded" as 2^64 - 1 items.
    let e = decode_plain::<std::collections::BTreeSet<()>>(&bytes_of(&u64::MAX)).unwrap_err();
    assert!(e.to_string().contains("no bytes"), "{e}");
    let e = decode_plain::<Vec<()>>(&bytes_of(&u64::MAX)).unwrap_err();
    assert!(e.to_string().contains("no bytes"), "{e}");
    // A real one decodes.
    let units = vec![(); 100_000];
    assert_eq!(
        decode_plain::<Vec<()>>(&bytes_of(&units)).unwrap().len(),
        100_000
    );
}

#[test]
fn nesting_is_bounded_both_ways() {
    #[derive(Debug, Serialize, Deserialize)]
    struct Node(Option<Box<Node>>);
    fn chain(n: usize) -> Node {
        (0..n).fold(Node(None), |inner, _| Node(Some(Box::new(inner))))
    }
    fn unchain(mut n: Node) {
        // Dropped iteratively: a deep chain would overflow the stack.
        while let Some(next) = n.0.take() {
            n = *next;
        }
    }
    let ok = chain(200);
    let back: Node = decode_plain(&bytes_of(&ok)).unwrap();
    unchain(back);
    unchain(ok);
    let deep = chain(format::MAX_DEPTH as usize);
    assert!(matches!(encode(&deep), Err(Error::Encode(_))));
    unchain(deep);
    // Forged: 1 (Some) repeated far deeper than allowed (bincode 1 overflowed
    // the stack and aborted the process).
    let forged = vec![1u8; 1_000_000];
    assert!(is_decode_error(decode_plain::<Node>(&forged)));
}

#[test]
fn a_self_describing_type_is_refused() {
    let e = decode_plain::<serde_json::Value>(&[0; 8]).unwrap_err();
    assert!(e.to_string().contains("describe"), "{e}");
}

#[test]
fn exact_encoding_checks_the_length() {
    let v = (1u32, "abc");
    let n = encoded_len(&v).unwrap();
    let mut buf = vec![0u8; n + 1];
    assert!(encode_exact(&v, &mut buf[..n - 1]).is_err());
    assert!(encode_exact(&v, &mut buf).is_err());
    encode_exact(&v, &mut buf[..n]).unwrap();
    assert_eq!(buf[..n], bytes_of(&v));
}

#[test]
fn measuring_is_sizing() {
    struct Probe;
    impl Serialize for Probe {
        fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
            s.serialize_bool(is_sizing())
        }
    }
    assert_eq!(encoded_len(&Probe).unwrap(), 1);
    assert!(SIZING.with(|s| !s.get()));
    assert_eq!(encode(&Probe).unwrap().bytes, [0]);
}

#[test]
fn encode_errors_say_why() {
    struct Fails;
    impl Serialize for Fails {
        fn serialize<S: Serializer>(&self, _: S) -> std::result::Result<S::Ok, S::Error> {
            Err(S::Error::custom("no, thanks"))
        }
    }
    let e = encode(&Fails).unwrap_err();
    assert!(
        matches!(e, Error::Encode(_)) && e.to_string().contains("no, thanks"),
        "{e}"
    );
    let unsized_seq = std::iter::from_fn(|| None::<u8>);
    struct Seq<I>(std::cell::RefCell<I>);
    impl<I: Iterator<Item = u8>> Serialize for Seq<I> {
        fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
            s.collect_seq(self.0.borrow_mut().by_ref().filter(|_| true))
        }
    }
    let e = encode(&Seq(std::cell::RefCell::new(unsized_seq))).unwrap_err();
    assert!(e.to_string().contains("known length"), "{e}");
}

// ------------------------------------------------------------ the crate's types

fn info() -> crate::identity::ProcessInfo {
    crate::identity::ProcessInfo {
        name: "Process-1:2".into(),
        pid: 4242,
        identity: vec![1, 2],
        daemon: true,
    }
}

fn remote_errors() -> Vec<crate::error::RemoteError> {
    use crate::error::RemoteError as R;
    vec![
        R::IndexOutOfRange { index: -3, len: 2 },
        R::NotLocked,
        R::NotOwner,
        R::NoSuchObject(9),
        R::WrongKind("dict".into()),
        R::UnknownType("T".into()),
        R::Failed("f".into()),
        R::NotInList,
        R::EmptyDict,
    ]
}

#[test]
fn remote_errors_round_trip() {
    for e in remote_errors() {
        assert_eq!(round_trip(&e), e);
        let reply: std::result::Result<Vec<u8>, crate::error::RemoteError> = Err(e.clone());
        assert_eq!(round_trip(&reply), reply);
    }
}

fn twice(x: u64) -> u64 {
    x * 2
}

#[test]
fn function_references_round_trip_and_are_checked() {
    let f = FnRef::<fn(u64) -> u64>::new(twice);
    let back: FnRef<fn(u64) -> u64> = round_trip(&f);
    assert_eq!(back.get()(21), 42);
    assert_eq!(bytes_of(&f), f.offset().to_le_bytes());
    // An offset nobody vouched for is refused with the typed error.
    let forged = bytes_of(&(f.offset() + 1));
    let e = decode::<FnRef<fn(u64) -> u64>>(&forged, Vec::new()).unwrap_err();
    assert!(matches!(e, Error::UntrustedCode { .. }), "{e}");
    // ... and so is one vouched for under another signature.
    let e = decode::<FnRef<fn(u32) -> u32>>(&bytes_of(&f), Vec::new()).unwrap_err();
    assert!(matches!(e, Error::UntrustedCode { .. }), "{e}");
}

#[test]
fn handles_round_trip_and_still_work() {
    use crate::{
        Array, Barrier, BoundedSemaphore, Condition, Event, JoinableQueue, Lock, Pipe, Queue,
        RLock, Semaphore, SimpleQueue, Value,
    };
    let (a, b) = Pipe::<u64>::new().unwrap();
    let a2: crate::Connection<u64> = round_trip(&a);
    a2.send(&7).unwrap();
    assert_eq!(b.recv().unwrap(), 7);

    let q = Queue::<String>::new().unwrap();
    let q2: Queue<String> = round_trip(&q);
    q2.put("via the copy".into()).unwrap();
    assert_eq!(q.get().unwrap(), "via the copy");

    let sq = SimpleQueue::<(u8, u8)>::new().unwrap();
    let sq2: SimpleQueue<(u8, u8)> = round_trip(&sq);
    sq2.put((1, 2)).unwrap();
    assert_eq!(sq.get().unwrap(), (1, 2));

    let jq = JoinableQueue::<u8>::new().unwrap();
    let jq2: JoinableQueue<u8> = round_trip(&jq);
    jq2.put(3).unwrap();
    assert_eq!(jq.get().unwrap(), 3);

    let e = Event::new().unwrap();
    let e2: Event = round_trip(&e);
    e2.set();
    assert!(e.is_set());

    let l = Lock::new().unwrap();
    let l2: Lock = round_trip(&l);
    assert!(l2.try_acquire().unwrap());
    assert!(!l.try_acquire().unwrap());
    l2.release().unwrap();

    let r = RLock::new().unwrap();
    let _r2: RLock = round_trip(&r);

    let s = Semaphore::new(2).unwrap();
    let s2: Semaphore = round_trip(&s);
    assert!(s2.try_acquire());
    assert_eq!(s.value(), 1);

    let bs = BoundedSemaphore::new(1).unwrap();
    let _bs2: BoundedSemaphore = round_trip(&bs);

    let c = Condition::new().unwrap();
    let _c2: Condition = round_trip(&c);

    let barrier = Barrier::new(3).unwrap();
    let barrier2: Barrier = round_trip(&barrier);
    assert_eq!(barrier2.parties(), 3);

    let v = Value::new(5u64).unwrap();
    let v2: Value<u64> = round_trip(&v);
    v2.set(6).unwrap();
    assert_eq!(v.get().unwrap(), 6);

    let arr = Array::<u32>::new(4).unwrap();
    let arr2: Array<u32> = round_trip(&arr);
    arr2.set(3, 9).unwrap();
    assert_eq!(arr.get(3).unwrap(), 9);
    assert_eq!(arr2.len(), 4);
}

#[test]
fn a_handle_outside_mproc_refuses_to_serialise() {
    let (a, _b) = crate::sys::fdpass::stream_pair().unwrap();
    let e = encode_plain(&WireFd(a)).unwrap_err();
    assert!(
        matches!(e, Error::Encode(_)) && e.to_string().contains("OS handle"),
        "{e}"
    );
    let e = serde_json::to_string(&crate::Event::new().unwrap()).unwrap_err();
    assert!(e.to_string().contains("OS handle"), "{e}");
}
