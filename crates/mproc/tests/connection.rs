//! `Listener`, `Client` and `SocketConnection`: addresses, the
//! authentication handshake, and interoperability with the machine's
//! CPython (`python3`, which speaks the legacy HMAC-MD5 dialect up to 3.11
//! and `{sha256}` from 3.12).
//!
//! Rewritten from the behaviours CPython's `_TestListener`,
//! `_TestListenerClient` and `_TestAuthentication` check. No test sleeps to
//! synchronise: Python prints its address when it listens, and a stalled
//! handshake is bounded by the listener's handshake timeout.

// Without `legacy-md5` the CPython tests (3.11 speaks MD5) are left out.
#![cfg_attr(not(feature = "legacy-md5"), allow(dead_code))]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::raw_connect;
use mproc::{Address, AuthError, Client, Error, Listener, SocketConnection};

const KEY: &[u8] = b"the key";

fn temp_path(tag: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("mproc-conn-{tag}-{}.sock", std::process::id()))
}

fn python(script: &str, arg: &str) -> std::process::Child {
    Command::new("python3")
        .args(["-c", script, arg])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs")
}

fn finish(child: std::process::Child) -> (bool, String, String) {
    let out = child.wait_with_output().unwrap();
    let s = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
    (out.status.success(), s(out.stdout), s(out.stderr))
}

fn auth_kind(e: Error) -> AuthError {
    match e {
        Error::Authentication(k) => k,
        e => panic!("expected an authentication error, got {e:?}"),
    }
}

const PY_CLIENT: &str = r#"
import sys
from multiprocessing.connection import Client
host, port, key = sys.argv[1].split(",")
c = Client((host, int(port)), authkey=key.encode())
c.send_bytes(b"hello from python")
assert c.recv_bytes() == b"x" * 100000
c.send_bytes(b"")
c.close()
"#;

#[test]
#[cfg(feature = "legacy-md5")] // the machine's python3 is 3.11
fn a_cpython_client_talks_to_an_mproc_listener() {
    let l = Listener::bind(&Address::tcp("127.0.0.1:0").unwrap(), Some(KEY)).unwrap();
    let Address::Tcp(a) = l.address().clone() else {
        unreachable!()
    };
    let py = python(PY_CLIENT, &format!("127.0.0.1,{},the key", a.port()));
    let conn = l.accept::<()>().unwrap();
    assert_eq!(conn.recv_bytes().unwrap(), b"hello from python");
    conn.send_bytes(&vec![b'x'; 100_000]).unwrap();
    assert_eq!(conn.recv_bytes().unwrap(), b"");
    assert!(matches!(conn.recv_bytes(), Err(Error::Disconnected)));
    let (ok, _, err) = finish(py);
    assert!(ok, "{err}");
}

#[test]
#[cfg(feature = "legacy-md5")] // the machine's python3 is 3.11
fn a_cpython_client_with_a_wrong_key_fails_on_both_sides() {
    let l = Listener::bind(&Address::tcp("127.0.0.1:0").unwrap(), Some(KEY)).unwrap();
    let Address::Tcp(a) = l.address().clone() else {
        unreachable!()
    };
    let py = python(PY_CLIENT, &format!("127.0.0.1,{},another key", a.port()));
    let e = l.accept::<()>().unwrap_err();
    assert_eq!(auth_kind(e), AuthError::DigestReceivedWrong);
    let (ok, _, err) = finish(py);
    assert!(!ok);
    assert!(
        err.contains("AuthenticationError: digest sent was rejected"),
        "{err}"
    );
}

const PY_LISTENER: &str = r#"
import sys
from multiprocessing.connection import Listener
path, key = sys.argv[1].split(",")
with Listener(path, authkey=key.encode()) as l:
    print("ready", flush=True)
    try:
        c = l.accept()
    except Exception as e:
        print(type(e).__name__, e, flush=True)
        sys.exit(3)
    c.send_bytes(c.recv_bytes().upper())
    c.close()
"#;

fn python_listener(tag: &str, key: &str) -> (std::process::Child, Address) {
    let path = temp_path(tag);
    let _ = std::fs::remove_file(&path);
    let mut py = python(PY_LISTENER, &format!("{},{key}", path.display()));
    let mut line = String::new();
    BufReader::new(py.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ready\n");
    (py, Address::unix(path))
}

#[test]
#[cfg(feature = "legacy-md5")] // the machine's python3 is 3.11
fn an_mproc_client_talks_to_a_cpython_listener() {
    let (py, addr) = python_listener("pyl", "the key");
    let conn = Client::connect::<()>(&addr, Some(KEY)).unwrap();
    conn.send_bytes(b"shout").unwrap();
    assert_eq!(conn.recv_bytes().unwrap(), b"SHOUT");
    let (ok, _, err) = finish(py);
    assert!(ok, "{err}");
    assert!(!std::fs::exists(addr.to_string()).unwrap());
}

#[test]
#[cfg(feature = "legacy-md5")] // the machine's python3 is 3.11
fn an_mproc_client_with_a_wrong_key_fails_on_both_sides() {
    let (py, addr) = python_listener("pyl-wrong", "another key");
    let e = Client::connect::<()>(&addr, Some(KEY)).unwrap_err();
    assert_eq!(auth_kind(e), AuthError::DigestSentRejected);
    let (ok, out, _) = finish(py);
    assert!(!ok);
    assert!(
        out.contains("AuthenticationError digest received was wrong"),
        "{out}"
    );
}

fn pair_over(addr: &Address, server_key: &[u8], client_key: &[u8]) -> (Result<()>, Result<()>) {
    let l = Listener::bind(addr, Some(server_key)).unwrap();
    let addr = l.address().clone();
    let client_key = client_key.to_vec();
    let t = thread::spawn(move || Client::connect::<()>(&addr, Some(&client_key)).map(drop));
    let server = l.accept::<()>().map(drop);
    (server, t.join().unwrap())
}

type Result<T> = mproc::Result<T>;

#[test]
fn wrong_keys_between_mproc_peers_fail_with_distinct_errors() {
    let (s, c) = pair_over(&Address::unique_abstract().unwrap(), KEY, b"nope");
    assert_eq!(auth_kind(s.unwrap_err()), AuthError::DigestReceivedWrong);
    assert_eq!(auth_kind(c.unwrap_err()), AuthError::DigestSentRejected);
}

#[test]
fn every_family_carries_typed_messages() {
    let path = temp_path("families");
    for addr in [
        Address::unix(&path),
        Address::unique_abstract().unwrap(),
        Address::tcp("127.0.0.1:0").unwrap(),
    ] {
        let l = Listener::bind(&addr, Some(KEY)).unwrap();
        let at = l.address().clone();
        let t = thread::spawn(move || {
            let c = Client::connect::<(u32, String)>(&at, Some(KEY)).unwrap();
            c.send(&(7, "seven".into())).unwrap();
            c.recv().unwrap()
        });
        let s: SocketConnection<(u32, String)> = l.accept().unwrap();
        let (n, word) = s.recv().unwrap();
        s.send(&(n * 2, word.to_uppercase())).unwrap();
        assert_eq!(t.join().unwrap(), (14, "SEVEN".to_string()));
    }
    assert!(!path.exists(), "the socket file outlived its listener");
}

#[test]
fn an_oversized_preauth_message_is_refused_unread() {
    let addr = Address::unique_abstract().unwrap();
    let l = Listener::bind(&addr, Some(KEY)).unwrap();
    let Address::Abstract(name) = &addr else {
        unreachable!()
    };
    let name = name.clone();
    let t = thread::spawn(move || {
        use std::os::linux::net::SocketAddrExt;
        let a = std::os::unix::net::SocketAddr::from_abstract_name(&name).unwrap();
        let mut s = UnixStream::connect_addr(&a).unwrap();
        let mut challenge = [0u8; 4 + 11 + 8 + 40];
        s.read_exact(&mut challenge).unwrap();
        // Announce a 1 GiB answer, then send some of it.
        s.write_all(&(1i32 << 30).to_be_bytes()).unwrap();
        let _ = s.write_all(&[0u8; 4096]);
    });
    let e = l.accept::<()>().unwrap_err();
    assert!(matches!(auth_kind(e), AuthError::Malformed(_)));
    t.join().unwrap();
}

/// Reads one frame (CPython's short form) from a raw socket.
fn read_frame(s: &mut impl Read) -> std::io::Result<Vec<u8>> {
    let mut head = [0u8; 4];
    s.read_exact(&mut head)?;
    let mut body = vec![0u8; i32::from_be_bytes(head) as usize];
    s.read_exact(&mut body)?;
    Ok(body)
}

fn write_frame(s: &mut impl Write, body: &[u8]) -> std::io::Result<()> {
    s.write_all(&[&(body.len() as i32).to_be_bytes()[..], body].concat())
}

#[test]
fn garbage_instead_of_an_answer_is_refused() {
    let addr = Address::unique_abstract().unwrap();
    let l = Listener::bind(&addr, Some(KEY)).unwrap();
    let mut peer = raw_connect(&addr);
    peer.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap(); // a guard
    let challenge = read_frame(&mut peer).unwrap();
    assert!(challenge.starts_with(b"#CHALLENGE#{sha256}"));
    write_frame(&mut peer, &[0xAB; 100]).unwrap();
    let e = l.accept::<()>().unwrap_err();
    assert!(matches!(auth_kind(e), AuthError::Malformed(_)));
    assert_eq!(read_frame(&mut peer).unwrap(), b"#FAILURE#");
}

/// Whether the listener hangs up on `peer` (end of file or a reset)
/// within `guard`.
fn hung_up_within(peer: &mut UnixStream, guard: Duration) -> bool {
    peer.set_read_timeout(Some(guard)).unwrap();
    let mut buf = [0u8; 256];
    loop {
        match peer.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {} // the challenge
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[test]
fn a_silent_peer_is_dropped_after_the_handshake_timeout() {
    let addr = Address::unique_abstract().unwrap();
    let l = Listener::builder(addr.clone())
        .authkey(KEY)
        .handshake_timeout(Duration::from_millis(200))
        .bind()
        .unwrap();
    let mut silent = raw_connect(&addr);
    let t0 = Instant::now();
    assert!(hung_up_within(&mut silent, Duration::from_secs(10)));
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    // Dropped without a word: `accept` has nothing to say about it.
    assert!(matches!(
        l.accept_timeout::<()>(Duration::from_millis(50)),
        Err(Error::Timeout)
    ));
}

#[test]
fn accept_and_connect_time_out() {
    let l = Listener::bind(&Address::unique_abstract().unwrap(), Some(KEY)).unwrap();
    let t0 = Instant::now();
    assert!(matches!(
        l.accept_timeout::<()>(Duration::from_millis(50)),
        Err(Error::Timeout)
    ));
    assert!(t0.elapsed() >= Duration::from_millis(50));
    // A listener that never answers the handshake: the client gives up,
    // with an error of its own.
    let quiet = Listener::bind(&Address::unique_abstract().unwrap(), None).unwrap();
    let t0 = Instant::now();
    let e = Client::connect_timeout::<()>(quiet.address(), Some(KEY), Duration::from_millis(100));
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert_eq!(auth_kind(e.unwrap_err()), AuthError::HandshakeTimeout);
}

#[test]
fn a_closed_listener_refuses_accept_and_frees_its_address() {
    let path = temp_path("closed");
    let addr = Address::unix(&path);
    let mut l = Listener::bind(&addr, Some(KEY)).unwrap();
    assert!(matches!(
        Listener::bind(&addr, Some(KEY)),
        Err(Error::Io { .. })
    ));
    l.close();
    assert!(!path.exists());
    assert!(matches!(l.accept::<()>(), Err(Error::InvalidState(_))));
    // The address can be bound again.
    drop(Listener::bind(&addr, Some(KEY)).unwrap());
    assert!(!path.exists());
}

#[test]
fn a_used_tcp_port_cannot_be_bound_twice() {
    let l = Listener::bind(&Address::tcp("127.0.0.1:0").unwrap(), Some(KEY)).unwrap();
    assert!(matches!(
        Listener::bind(l.address(), Some(KEY)),
        Err(Error::Io { .. })
    ));
}

#[test]
fn tcp_without_a_key_needs_an_opt_in() {
    let addr = Address::tcp("127.0.0.1:0").unwrap();
    assert!(matches!(
        Listener::bind(&addr, None),
        Err(Error::InvalidArgument(_))
    ));
    let l = Listener::builder(addr)
        .allow_unauthenticated_tcp()
        .bind()
        .unwrap();
    let at = l.address().clone();
    let t = thread::spawn(move || Client::connect::<u8>(&at, None).unwrap().send(&5));
    assert_eq!(l.accept::<u8>().unwrap().recv().unwrap(), 5);
    t.join().unwrap().unwrap();
}

#[test]
fn handles_cannot_travel_over_a_socket() {
    let l = Listener::bind(&Address::unique_abstract().unwrap(), Some(KEY)).unwrap();
    let at = l.address().clone();
    let t = thread::spawn(move || Client::connect::<mproc::Connection<u8>>(&at, Some(KEY)));
    let _s = l.accept::<()>().unwrap();
    let c = t.join().unwrap().unwrap();
    let (a, _b) = mproc::Pipe::<u8>::new().unwrap();
    assert!(matches!(c.send(&a), Err(Error::Encode(_))));
}

/// Writes `bytes` raw (no framing) to the abstract listener `addr`.
fn raw_peer(addr: &Address, bytes: Vec<u8>) -> UnixStream {
    use std::os::linux::net::SocketAddrExt;
    let Address::Abstract(name) = addr else {
        unreachable!()
    };
    let a = std::os::unix::net::SocketAddr::from_abstract_name(name).unwrap();
    let mut s = UnixStream::connect_addr(&a).unwrap();
    s.write_all(&bytes).unwrap();
    s
}

#[test]
fn the_long_length_form_is_read_and_bounded() {
    let l = Listener::bind(&Address::unique_abstract().unwrap(), None).unwrap();
    // The 8-byte form (-1, then the length), as CPython sends over 2 GiB.
    let long = |n: u64| [(-1i32).to_be_bytes().to_vec(), n.to_be_bytes().to_vec()].concat();
    let _p = raw_peer(l.address(), [long(5), b"hello".to_vec()].concat());
    assert_eq!(l.accept::<()>().unwrap().recv_bytes().unwrap(), b"hello");
    // 3 GiB announced: refused by a bounded receive, before any allocation.
    let _q = raw_peer(l.address(), long(3 << 30));
    let e = l.accept::<()>().unwrap().recv_bytes_max(1024).unwrap_err();
    assert!(matches!(e, Error::Protocol(_)), "{e:?}");
}

#[test]
fn a_peer_dribbling_its_answer_is_dropped_at_the_handshake_deadline() {
    let addr = Address::unique_abstract().unwrap();
    let l = Listener::builder(addr.clone())
        .authkey(KEY)
        .handshake_timeout(Duration::from_millis(600))
        .bind()
        .unwrap();
    // Announces a 100-byte answer, then sends a byte every 100 ms: each
    // read is quick, the whole would take 10 s.
    let mut peer = raw_peer(&addr, 100i32.to_be_bytes().to_vec());
    let dribbler = {
        thread::spawn(move || {
            // A guard: gives up after 20 s (100 bytes would have been sent).
            for _ in 0..200 {
                if peer.write_all(b"x").is_err() {
                    return true;
                }
                thread::sleep(Duration::from_millis(100));
            }
            false
        })
    };
    let t0 = Instant::now();
    // The listener hangs up on it at the deadline: its writes fail.
    let cut_off = dribbler.join().unwrap();
    let took = t0.elapsed();
    assert!(cut_off, "the dribbler was never dropped");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    // Dropped without a word: `accept` has nothing to say about it.
    assert!(matches!(
        l.accept_timeout::<()>(Duration::from_millis(50)),
        Err(Error::Timeout)
    ));
}

/// Adler-32, as Python's `zlib.adler32`.
fn adler32(data: &[u8]) -> u32 {
    const MOD: u32 = 65521;
    let (mut a, mut b) = (1u32, 0u32);
    // 5552 bytes is the most before `b` could overflow a u32.
    for chunk in data.chunks(5552) {
        for &x in chunk {
            a += u32::from(x);
            b += a;
        }
        a %= MOD;
        b %= MOD;
    }
    (b << 16) | a
}

const PY_HUGE: &str = r#"
import sys, zlib
from multiprocessing.connection import Client
path, n_up, n_down = sys.argv[1].split(",")
c = Client(path, authkey=b"the key")
data = b"mpro" * (int(n_up) // 4)
c.send_bytes(str(zlib.adler32(data)).encode())
c.send_bytes(data)
del data
want = int(c.recv_bytes())
got = c.recv_bytes()
ok = len(got) == int(n_down) and zlib.adler32(got) == want
del got
c.send_bytes(b"ok" if ok else b"bad")
c.close()
"#;

/// One message of 2 GiB and a few bytes each way with CPython, in its
/// 8-byte length form; checked by length and Adler-32, not printed.
#[test]
#[cfg(feature = "legacy-md5")] // the machine's python3 is 3.11
fn messages_over_2_gib_travel_both_ways_with_cpython() {
    let up: usize = (1 << 31) + 4; // a multiple of 4: b"mpro" * k
    let down: usize = (1 << 31) + 10; // a multiple of 2: b"ab" * k
    let path = temp_path("huge");
    let _ = std::fs::remove_file(&path);
    let l = Listener::bind(&Address::unix(&path), Some(KEY)).unwrap();
    let t0 = Instant::now();
    let py = python(PY_HUGE, &format!("{},{up},{down}", path.display()));
    let conn = l.accept::<()>().unwrap();
    let want: u32 = String::from_utf8(conn.recv_bytes().unwrap())
        .unwrap()
        .parse()
        .unwrap();
    let t1 = Instant::now();
    let got = conn.recv_bytes().unwrap();
    let t_recv = t1.elapsed();
    assert_eq!(got.len(), up);
    let t2 = Instant::now();
    assert_eq!(adler32(&got), want);
    let t_sum = t2.elapsed();
    assert_eq!(&got[..8], b"mprompro");
    drop(got);
    let t_up = t0.elapsed();
    let data = b"ab".repeat(down / 2);
    conn.send_bytes(adler32(&data).to_string().as_bytes())
        .unwrap();
    conn.send_bytes(&data).unwrap();
    drop(data);
    assert_eq!(conn.recv_bytes().unwrap(), b"ok");
    let (ok, _, err) = finish(py);
    assert!(ok, "{err}");
    eprintln!(
        "2 GiB with CPython: receive {:.1} s, checksum {:.1} s, up {:.1} s, both ways {:.1} s",
        t_recv.as_secs_f64(),
        t_sum.as_secs_f64(),
        t_up.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
}

/// CPython 3.12's `multiprocessing.connection` (the `{sha256}` dialect),
/// from the `multiprocess` source distribution, fetched once into the
/// target directory by `tests/py/fetch_multiprocess.py` (`.ci/run` does it
/// ahead); `None` when there is no python3 (the tests then print a note
/// and skip).
fn py312() -> Option<&'static str> {
    static ROOT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    ROOT.get_or_init(|| {
        if Command::new("python3").arg("--version").output().is_err() {
            eprintln!("note: no python3: the CPython 3.12 handshake tests are skipped");
            return None;
        }
        let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let out = Command::new("python3")
            .arg(here.join("tests/py/fetch_multiprocess.py"))
            .arg(here.join("../../target/py312-multiprocess"))
            .output()
            .expect("python3 runs");
        assert!(
            out.status.success(),
            "cannot fetch CPython 3.12's connection module (pip, network?): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(String::from_utf8(out.stdout).unwrap().trim().to_string())
    })
    .as_deref()
}

/// Runs CPython 3.12's Client or Listener under the machine's python3,
/// recording the first bytes of every response it sends and checks.
const PY312: &str = r#"
import sys
root, role, path, key = sys.argv[1].split("|")
sys.path.insert(0, root)
import multiprocess.connection as mc
assert mc.__file__.startswith(root), mc.__file__
seen = []
create, verify = mc._create_response, mc._verify_challenge
def recording_create(authkey, message):
    r = create(authkey, message)
    seen.append("sent " + r[:8].decode("latin-1"))
    return r
def recording_verify(authkey, message, response):
    seen.append("got " + response[:8].decode("latin-1"))
    return verify(authkey, message, response)
mc._create_response, mc._verify_challenge = recording_create, recording_verify
if role == "client":
    c = mc.Client(path, authkey=key.encode())
    c.send_bytes(b"from 3.12")
    assert c.recv_bytes() == b"FROM 3.12"
    c.close()
else:
    with mc.Listener(path, authkey=key.encode()) as l:
        print("ready", flush=True)
        try:
            c = l.accept()
        except Exception as e:
            print(type(e).__name__, e, seen, flush=True)
            sys.exit(3)
        c.send_bytes(c.recv_bytes().upper())
        c.close()
print(seen, flush=True)
"#;

fn python312(root: &str, role: &str, path: &Path, key: &str) -> std::process::Child {
    python(PY312, &format!("{root}|{role}|{}|{key}", path.display()))
}

#[test]
fn a_cpython_312_client_authenticates_with_sha256_both_ways() {
    let Some(root) = py312() else { return };
    let path = temp_path("py312c");
    let _ = std::fs::remove_file(&path);
    let l = Listener::bind(&Address::unix(&path), Some(KEY)).unwrap();
    let py = python312(root, "client", &path, "the key");
    let conn = l.accept::<()>().unwrap();
    let msg = conn.recv_bytes().unwrap();
    conn.send_bytes(&msg.to_ascii_uppercase()).unwrap();
    let (ok, out, err) = finish(py);
    assert!(ok, "{err}");
    // Python answered mproc's challenge, then checked mproc's answer to
    // its own: both in the {sha256} dialect.
    assert!(out.contains("'sent {sha256}', 'got {sha256}'"), "{out}");
}

#[test]
fn a_cpython_312_client_with_a_wrong_key_fails_on_both_sides() {
    let Some(root) = py312() else { return };
    let path = temp_path("py312c-wrong");
    let _ = std::fs::remove_file(&path);
    let l = Listener::bind(&Address::unix(&path), Some(KEY)).unwrap();
    let py = python312(root, "client", &path, "another key");
    let e = l.accept::<()>().unwrap_err();
    assert_eq!(auth_kind(e), AuthError::DigestReceivedWrong);
    let (ok, _, err) = finish(py);
    assert!(!ok);
    assert!(
        err.contains("AuthenticationError: digest sent was rejected"),
        "{err}"
    );
}

fn python312_listener(root: &str, tag: &str, key: &str) -> (std::process::Child, Address) {
    let path = temp_path(tag);
    let _ = std::fs::remove_file(&path);
    let mut py = python312(root, "listener", &path, key);
    let mut line = String::new();
    BufReader::new(py.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ready\n");
    (py, Address::unix(path))
}

#[test]
fn an_mproc_client_authenticates_with_a_cpython_312_listener() {
    let Some(root) = py312() else { return };
    let (py, addr) = python312_listener(root, "py312l", "the key");
    let conn = Client::connect::<()>(&addr, Some(KEY)).unwrap();
    conn.send_bytes(b"from 3.12").unwrap();
    assert_eq!(conn.recv_bytes().unwrap(), b"FROM 3.12");
    let (ok, out, err) = finish(py);
    assert!(ok, "{err}");
    // The listener checked mproc's answer, then answered mproc.
    assert!(out.contains("'got {sha256}', 'sent {sha256}'"), "{out}");
}

#[test]
fn an_mproc_client_with_a_wrong_key_fails_with_a_cpython_312_listener() {
    let Some(root) = py312() else { return };
    let (py, addr) = python312_listener(root, "py312l-wrong", "another key");
    let e = Client::connect::<()>(&addr, Some(KEY)).unwrap_err();
    assert_eq!(auth_kind(e), AuthError::DigestSentRejected);
    let (ok, out, _) = finish(py);
    assert!(!ok);
    assert!(
        out.contains("AuthenticationError digest received was wrong ['got {sha256}']"),
        "{out}"
    );
}

// ---- Keys that are not keys -------------------------------------------

#[test]
fn an_empty_key_is_no_key() {
    let tcp = Address::tcp("127.0.0.1:0").unwrap();
    for e in [
        Listener::bind(&tcp, Some(b"")).unwrap_err(),
        Listener::builder(tcp.clone())
            .authkey(Vec::new())
            .bind()
            .unwrap_err(),
    ] {
        assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
    }
    // On a local socket it is a keyless listener: a keyless client (or
    // one with an empty key) talks to it with no handshake.
    let l = Listener::bind(&Address::unique_abstract().unwrap(), Some(b"")).unwrap();
    let at = l.address().clone();
    let t = thread::spawn(move || {
        let c = Client::connect::<u8>(&at, Some(b"")).unwrap();
        c.send(&7).unwrap();
        c.recv().unwrap()
    });
    let s = l.accept::<u8>().unwrap();
    assert_eq!(s.recv().unwrap(), 7);
    s.send(&8).unwrap();
    assert_eq!(t.join().unwrap(), 8);
}

#[test]
fn a_keyless_client_of_a_keyed_listener_fails_at_connect() {
    let path = temp_path("keyless");
    for addr in [
        Address::unix(&path),
        Address::unique_abstract().unwrap(),
        Address::tcp("127.0.0.1:0").unwrap(),
    ] {
        let l = Listener::bind(&addr, Some(KEY)).unwrap();
        for key in [None, Some(&b""[..])] {
            assert_eq!(
                key_required(l.address(), key),
                AuthError::KeyRequired,
                "{addr:?}"
            );
        }
    }
}

/// The error of a keyless client of a keyed listener: at connect, or on a
/// machine too loaded for the listener to speak within
/// `Client::KEYLESS_CHALLENGE_WAIT`, at the first receive.
fn key_required(addr: &Address, key: Option<&[u8]>) -> AuthError {
    match Client::connect::<()>(addr, key) {
        Err(e) => auth_kind(e),
        Ok(c) => {
            eprintln!("note: the challenge came after the connect's wait");
            auth_kind(c.recv_bytes().unwrap_err())
        }
    }
}

#[test]
fn a_late_challenge_fails_the_first_receive() {
    // A listener that only speaks once the client is connected (as a
    // CPython listener does when it calls `accept` late).
    let addr = Address::unique_abstract().unwrap();
    let Address::Abstract(name) = &addr else {
        unreachable!()
    };
    use std::os::linux::net::SocketAddrExt;
    let raw = std::os::unix::net::UnixListener::bind_addr(
        &std::os::unix::net::SocketAddr::from_abstract_name(name).unwrap(),
    )
    .unwrap();
    let c = Client::connect::<()>(&addr, None).unwrap();
    let (mut s, _) = raw.accept().unwrap();
    write_frame(&mut s, &[&b"#CHALLENGE#{sha256}"[..], &[1u8; 40]].concat()).unwrap();
    assert_eq!(
        auth_kind(c.recv_bytes().unwrap_err()),
        AuthError::KeyRequired
    );
    // Only the first message is looked at.
    let c = Client::connect::<()>(&addr, None).unwrap();
    let (mut s, _) = raw.accept().unwrap();
    write_frame(&mut s, b"hello").unwrap();
    write_frame(&mut s, b"#CHALLENGE# is just bytes now").unwrap();
    assert_eq!(c.recv_bytes().unwrap(), b"hello");
    assert_eq!(c.recv_bytes().unwrap(), b"#CHALLENGE# is just bytes now");
    // A listener that speaks first without a challenge: its message is
    // left for the client to read.
    let c = Client::connect::<()>(&addr, None);
    let (mut s, _) = raw.accept().unwrap();
    write_frame(&mut s, b"welcome").unwrap();
    assert_eq!(c.unwrap().recv_bytes().unwrap(), b"welcome");
}

const PY_LATE_LISTENER: &str = r#"
import sys
from multiprocessing.connection import Listener
path, key = sys.argv[1].split(",")
with Listener(path, authkey=key.encode()) as l:
    print("ready", flush=True)
    sys.stdin.readline()
    try:
        c = l.accept()
    except Exception as e:
        print(type(e).__name__, flush=True)
        sys.exit(0)
"#;

#[test]
fn a_keyless_client_of_a_keyed_cpython_listener_fails_typed() {
    // At connect: the CPython listener is already in `accept`.
    let (py, addr) = python_listener("pyl-keyless", "the key");
    assert_eq!(key_required(&addr, None), AuthError::KeyRequired);
    let (ok, out, _) = finish(py);
    assert!(!ok, "{out}"); // its handshake failed
                           // Late: CPython calls `accept` only after the client has connected.
    let path = temp_path("pyl-late");
    let _ = std::fs::remove_file(&path);
    let mut py = Command::new("python3")
        .args([
            "-c",
            PY_LATE_LISTENER,
            &format!("{},the key", path.display()),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut out = BufReader::new(py.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    let c = Client::connect::<()>(&Address::unix(&path), None).unwrap();
    py.stdin.take().unwrap().write_all(b"go\n").unwrap();
    assert_eq!(
        auth_kind(c.recv_bytes().unwrap_err()),
        AuthError::KeyRequired
    );
    drop(c);
    line.clear();
    out.read_line(&mut line).unwrap();
    assert!(line.contains("Error"), "{line}");
    assert!(py.wait().unwrap().success());
}

/// Python, run as the user `nobody`, connects to the abstract `name`,
/// sends a message and prints what it gets back (or `closed`).
const PY_OTHER_USER: &str = r#"
import socket, struct, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect("\0" + sys.argv[1])
s.settimeout(20)  # a guard
try:
    s.sendall(struct.pack("!i", 5) + b"hello")
    data = s.recv(100)
except (ConnectionResetError, BrokenPipeError):
    data = b""
except socket.timeout:
    print("no answer", flush=True)
    sys.exit(0)
print("closed" if not data else "answered", flush=True)
"#;

fn as_nobody(name: &[u8]) -> Option<std::process::Child> {
    use std::os::unix::process::CommandExt;
    Command::new("python3")
        .args(["-c", PY_OTHER_USER, std::str::from_utf8(name).unwrap()])
        .uid(65534)
        .gid(65534)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()
}

#[test]
fn a_keyless_abstract_listener_accepts_only_its_own_user() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root to run a peer as another user");
        return;
    }
    let addr = Address::unique_abstract().unwrap();
    let Address::Abstract(name) = addr.clone() else {
        unreachable!()
    };
    let l = Listener::bind(&addr, None).unwrap();
    let Some(py) = as_nobody(&name) else {
        eprintln!("skipped: no python3");
        return;
    };
    // The other user's peer is dropped, never returned by `accept`.
    let (ok, out, err) = finish(py);
    assert!(ok, "{err}");
    assert_eq!(out, "closed\n");
    assert!(matches!(
        l.accept_timeout::<()>(Duration::from_millis(100)),
        Err(Error::Timeout)
    ));
    // Its own user is served.
    let at = addr.clone();
    let t = thread::spawn(move || Client::connect::<u8>(&at, None).unwrap().send(&1));
    assert_eq!(l.accept::<u8>().unwrap().recv().unwrap(), 1);
    t.join().unwrap().unwrap();
    drop(l);
    // With the opt-in, every user is.
    let l = Listener::builder(addr)
        .allow_unauthenticated_abstract()
        .bind()
        .unwrap();
    let py = as_nobody(&name).unwrap();
    let s = l.accept::<()>().unwrap();
    assert_eq!(s.recv_bytes().unwrap(), b"hello");
    s.send_bytes(b"hi").unwrap();
    let (ok, out, err) = finish(py);
    assert!(ok, "{err}");
    assert_eq!(out, "answered\n");
}

// ---- Accepting while others stall ---------------------------------------

#[test]
fn silent_sockets_do_not_delay_a_good_client() {
    let addr = Address::unique_abstract().unwrap();
    let l = Listener::bind(&addr, Some(KEY)).unwrap();
    let silent: Vec<UnixStream> = (0..50).map(|_| raw_connect(&addr)).collect();
    let t0 = Instant::now();
    let at = addr.clone();
    let t = thread::spawn(move || Client::connect::<u8>(&at, Some(KEY)).unwrap().send(&9));
    let conn = l.accept_timeout::<u8>(Duration::from_secs(15)).unwrap();
    assert_eq!(conn.recv().unwrap(), 9);
    t.join().unwrap().unwrap();
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(5), "took {took:?}");
    drop(silent);
}

#[test]
fn more_silent_sockets_than_pending_handshakes_do_not_lock_a_client_out() {
    // Over TCP, more silent peers than the listener keeps handshakes for:
    // the newest peer is always served.
    let l = Listener::bind(&Address::tcp("127.0.0.1:0").unwrap(), Some(KEY)).unwrap();
    let Address::Tcp(a) = *l.address() else {
        unreachable!()
    };
    let mut silent = Vec::new();
    for _ in 0..300 {
        // A full backlog would make a connect wait: bounded.
        match std::net::TcpStream::connect_timeout(&a, Duration::from_secs(1)) {
            Ok(s) => silent.push(s),
            Err(_) => break, // the backlog is full: enough
        }
    }
    let t0 = Instant::now();
    let at = l.address().clone();
    let t = thread::spawn(move || Client::connect::<u8>(&at, Some(KEY)).unwrap().send(&3));
    let conn = l.accept_timeout::<u8>(Duration::from_secs(15)).unwrap();
    assert_eq!(conn.recv().unwrap(), 3);
    t.join().unwrap().unwrap();
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
}

#[test]
fn accept_timeout_bounds_the_whole_call() {
    let addr = Address::unique_abstract().unwrap();
    let l = Listener::bind(&addr, Some(KEY)).unwrap();
    let _silent = raw_connect(&addr);
    let t0 = Instant::now();
    assert!(matches!(
        l.accept_timeout::<()>(Duration::from_millis(200)),
        Err(Error::Timeout)
    ));
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_secs(2),
        "{took:?}"
    );
}

#[test]
fn a_client_of_a_listener_that_never_answers_times_out_typed() {
    // A socket that is listened on but never accepted from: the connect
    // succeeds (the backlog), the handshake never starts.
    let raw = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = Address::Tcp(raw.local_addr().unwrap());
    let t0 = Instant::now();
    let e =
        Client::connect_timeout::<()>(&addr, Some(KEY), Duration::from_millis(300)).unwrap_err();
    assert_eq!(auth_kind(e), AuthError::HandshakeTimeout);
    assert!(t0.elapsed() < Duration::from_secs(5));
}
