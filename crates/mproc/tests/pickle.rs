//! Objects, not bytes, between mproc and the machine's CPython: a
//! `SocketConnection` made `pickled` against `multiprocessing.connection`'s
//! `send(obj)`/`recv()`, both ways, and the pickles it must refuse.
//!
//! Without `python3` each test prints a note and returns.
#![cfg(feature = "pickle")]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::{Child, Command, Stdio};

use mproc::{Address, Error, Listener, SocketConnection};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

const KEY: &[u8] = b"pickle key";

fn have_python() -> bool {
    let ok = Command::new("python3").arg("-V").output().is_ok();
    if !ok {
        eprintln!("note: no python3: the pickle round trips are skipped");
    }
    ok
}

/// Starts `python3` running `body` with `c`, a `Client` connected to a
/// fresh loopback listener, and returns it with our end of that connection.
fn python_peer<T>(body: &str) -> (Child, SocketConnection<T>) {
    let listener = Listener::bind(&Address::tcp("127.0.0.1:0").unwrap(), Some(KEY)).unwrap();
    let Address::Tcp(at) = listener.address().clone() else {
        unreachable!()
    };
    let script = format!(
        "import sys, os, pickle, math, collections\n\
         from multiprocessing.connection import Client\n\
         c = Client(('127.0.0.1', {}), authkey={:?}.encode())\n\
         {body}\n\
         c.close()\n",
        at.port(),
        std::str::from_utf8(KEY).unwrap(),
    );
    let child = Command::new("python3")
        .args(["-c", &script])
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 starts");
    let conn = listener.accept::<T>().unwrap().pickled();
    (child, conn)
}

fn finish(child: Child) {
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn decode_message(e: Error) -> String {
    match e {
        Error::Decode(c) => c.to_string(),
        e => panic!("expected a decode error, got {e:?}"),
    }
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Record {
    name: String,
    id: u64,
    score: f64,
    tags: Vec<String>,
    parent: Option<Box<Record>>,
}

#[test]
fn scalars_round_trip_both_ways() {
    if !have_python() {
        return;
    }
    type Scalars = (
        Option<i64>,
        bool,
        bool,
        i64,
        i64,
        i64,
        u64,
        f64,
        f64,
        String,
        ByteBuf,
    );
    let (py, conn) = python_peer::<Scalars>(
        "v = (None, True, False, -5, 2**63 - 1, -2**63, 2**62, 1.5, float('inf'), \
              'héllo ✓', b'\\x00\\xff' * 1000)\n\
         c.send(v)\n\
         back = c.recv()\n\
         assert back == v, (back, v)\n\
         assert type(back) is tuple and type(back[10]) is bytes",
    );
    let v = conn.recv().unwrap();
    assert_eq!(v.0, None);
    assert!(v.1 && !v.2);
    assert_eq!((v.3, v.4, v.5, v.6), (-5, i64::MAX, i64::MIN, 1 << 62));
    assert_eq!((v.7, v.8), (1.5, f64::INFINITY));
    assert_eq!(v.9, "héllo ✓");
    assert_eq!(v.10.len(), 2000);
    conn.send(&v).unwrap();
    finish(py);
}

#[test]
fn containers_and_nesting_round_trip_both_ways() {
    if !have_python() {
        return;
    }
    type Nested = (
        Vec<i64>,
        HashMap<String, Vec<(i64, String)>>,
        HashSet<i64>,
        HashSet<String>,
        BTreeMap<i64, Option<f64>>,
        Record,
    );
    let (py, conn) = python_peer::<Nested>(
        "rec = {'name': 'child', 'id': 7, 'score': 0.25, 'tags': ['a', 'b'], \
                'parent': {'name': 'root', 'id': 1, 'score': -1.0, 'tags': [], 'parent': None}}\n\
         v = (list(range(1000)), {'k': [(1, 'one'), (2, 'two')], 'e': []}, {1, 2, 3}, \
              frozenset({'x', 'y'}), {1: None, 2: 2.5}, rec)\n\
         c.send(v)\n\
         back = c.recv()\n\
         assert back[0] == v[0] and back[4] == v[4] and back[5] == rec, back\n\
         assert back[1] == {'k': [(1, 'one'), (2, 'two')], 'e': []}, back[1]\n\
         assert sorted(back[2]) == [1, 2, 3] and sorted(back[3]) == ['x', 'y'], back",
    );
    let v = conn.recv().unwrap();
    assert_eq!(v.0, (0..1000).collect::<Vec<_>>());
    assert_eq!(v.1["k"], vec![(1, "one".into()), (2, "two".into())]);
    assert!(v.1["e"].is_empty());
    assert_eq!(v.2, HashSet::from([1, 2, 3]));
    assert_eq!(v.3, HashSet::from(["x".to_string(), "y".to_string()]));
    assert_eq!(v.4, BTreeMap::from([(1, None), (2, Some(2.5))]));
    assert_eq!(v.5.parent.as_ref().unwrap().name, "root");
    assert_eq!(v.5.tags, ["a", "b"]);
    conn.send(&v).unwrap();
    finish(py);
}

#[test]
fn large_payloads_round_trip() {
    if !have_python() {
        return;
    }
    type Big = (Vec<f64>, ByteBuf, Vec<String>);
    let (py, conn) = python_peer::<Big>(
        "v = ([i / 3 for i in range(200000)], os.urandom(20 << 20), ['s%d' % i for i in range(50000)])\n\
         c.send(v)\n\
         back = c.recv()\n\
         assert back[0] == v[0] and back[1] == v[1] and back[2] == v[2]",
    );
    let v = conn.recv().unwrap();
    assert_eq!(v.0.len(), 200_000);
    assert_eq!(v.0[3], 1.0);
    assert_eq!(v.1.len(), 20 << 20);
    assert_eq!(v.2[49_999], "s49999");
    conn.send(&v).unwrap();
    finish(py);
}

#[test]
fn what_does_not_fit_is_a_decode_error_and_the_connection_goes_on() {
    if !have_python() {
        return;
    }
    let (py, conn) = python_peer::<u64>(
        "c.send(-300)\n\
         c.send('not a number')\n\
         c.send(2**200)\n\
         c.send(2**64 - 1)\n\
         c.send(7)",
    );
    // -300 is no u64; a str is no number: typed errors, nothing consumed twice.
    decode_message(conn.recv().unwrap_err());
    decode_message(conn.recv().unwrap_err());
    let m = decode_message(conn.recv().unwrap_err());
    assert!(m.contains("integer longer"), "{m}");
    // Ints from Python are read in i64's range (the decoder's).
    decode_message(conn.recv().unwrap_err());
    assert_eq!(conn.recv().unwrap(), 7);
    finish(py);
}

#[test]
fn code_and_bombs_are_refused_without_running_or_growing() {
    if !have_python() {
        return;
    }
    let (py, conn) = python_peer::<Vec<i64>>(
        "class Evil:\n\
         \x20   def __reduce__(self):\n\
         \x20       return (os.system, ('touch /tmp/mproc-pickle-pwned',))\n\
         c.send(Evil())\n\
         c.send(collections.OrderedDict(a=1))\n\
         x = []\n\
         for _ in range(300):\n\
         \x20   x = [x]\n\
         c.send(x)\n\
         # a billion laughs through the memo: 2**40 ints from a few hundred bytes\n\
         p = [b'\\x80\\x04]K\\x01a\\x94']\n\
         for i in range(40):\n\
         \x20   p.append(b']h' + bytes([i]) + b'ah' + bytes([i]) + b'a\\x94')\n\
         c.send_bytes(b''.join(p) + b'.')\n\
         # a string declared 2**62 bytes long\n\
         c.send_bytes(b'\\x80\\x04\\x8d' + (2**62).to_bytes(8, 'little') + b'abc.')\n\
         # before protocol 5, a bytearray is a call of builtins.bytearray\n\
         c.send(bytearray(b'ba'))\n\
         c.send([1, 2, 3])",
    );
    let m = decode_message(conn.recv().unwrap_err());
    assert!(m.contains("REDUCE") || m.contains("GLOBAL"), "{m}");
    let m = decode_message(conn.recv().unwrap_err());
    assert!(m.contains("GLOBAL") || m.contains("REDUCE"), "{m}");
    let m = decode_message(conn.recv().unwrap_err());
    assert!(m.contains("deeper"), "{m}");
    let m = decode_message(conn.recv().unwrap_err());
    assert!(m.contains("expands"), "{m}");
    let m = decode_message(conn.recv().unwrap_err());
    assert!(m.contains("ends early"), "{m}");
    let m = decode_message(conn.recv().unwrap_err());
    assert!(m.contains("GLOBAL"), "{m}");
    assert_eq!(conn.recv().unwrap(), [1, 2, 3]);
    finish(py);
    assert!(!std::path::Path::new("/tmp/mproc-pickle-pwned").exists());
}

#[test]
fn dumps_and_loads_round_trip_without_python() {
    let r = Record {
        name: "r".into(),
        id: 3,
        score: 2.0,
        tags: vec!["t".into()],
        parent: None,
    };
    let bytes = mproc::pickle::dumps(&r).unwrap();
    assert_eq!(mproc::pickle::loads::<Record>(&bytes).unwrap(), r);
    // Garbage of every length is an error, never a panic.
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    for len in 0..2000 {
        let junk: Vec<u8> = (0..len % 64)
            .map(|_| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng as u8
            })
            .collect();
        let _ = mproc::pickle::loads::<Record>(&junk);
        let mut cut = bytes.clone();
        cut.truncate(len % bytes.len());
        assert!(mproc::pickle::loads::<Record>(&cut).is_err());
    }
}
