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

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

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

#[test]
fn garbage_instead_of_an_answer_is_refused() {
    let addr = Address::unique_abstract().unwrap();
    let l = Listener::bind(&addr, Some(KEY)).unwrap();
    let t = thread::spawn(move || {
        // A client without a key: it reads the challenge as a message and
        // sends garbage.
        let c = Client::connect::<()>(&addr, None).unwrap();
        let challenge = c.recv_bytes().unwrap();
        assert!(challenge.starts_with(b"#CHALLENGE#{sha256}"));
        c.send_bytes(&[0xAB; 100]).unwrap();
        c.recv_bytes().unwrap()
    });
    let e = l.accept::<()>().unwrap_err();
    assert!(matches!(auth_kind(e), AuthError::Malformed(_)));
    assert_eq!(t.join().unwrap(), b"#FAILURE#");
}

#[test]
fn a_silent_peer_is_dropped_after_the_handshake_timeout() {
    let addr = Address::unique_abstract().unwrap();
    let l = Listener::builder(addr.clone())
        .authkey(KEY)
        .handshake_timeout(Duration::from_millis(200))
        .bind()
        .unwrap();
    let silent = Client::connect::<()>(&addr, None).unwrap();
    let t0 = Instant::now();
    assert!(matches!(l.accept::<()>(), Err(Error::Timeout)));
    assert!(t0.elapsed() < Duration::from_secs(3));
    drop(silent);
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
    // A listener that never answers the handshake: the client gives up.
    let quiet = Listener::bind(&Address::unique_abstract().unwrap(), None).unwrap();
    let e = Client::connect_timeout::<()>(quiet.address(), Some(KEY), Duration::from_millis(100));
    assert!(matches!(e, Err(Error::Timeout)), "{e:?}");
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
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let dribbler = {
        let stop = stop.clone();
        thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if peer.write_all(b"x").is_err() {
                    return;
                }
                thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let t0 = Instant::now();
    let e = l.accept::<()>().unwrap_err();
    let took = t0.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    dribbler.join().unwrap();
    assert!(matches!(e, Error::Timeout), "{e:?}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
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
