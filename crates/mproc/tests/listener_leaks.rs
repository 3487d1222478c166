//! A `Listener` authenticates in one background thread, whatever the
//! number of peers in the middle of a handshake, and dropping it stops that
//! thread and closes every socket it held. Its own test binary, so that no
//! other test starts threads or opens descriptors meanwhile.

mod common;

use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use common::raw_connect;
use mproc::{Address, Client, Listener};

const KEY: &[u8] = b"leak key";

fn threads() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn a_listener_uses_one_thread_and_leaves_nothing_behind() {
    let (threads0, fds0) = (threads(), fds());
    for round in 0..3 {
        let addr = Address::unique_abstract().unwrap();
        let l = Listener::bind(&addr, Some(KEY)).unwrap();
        let silent: Vec<UnixStream> = (0..50).map(|_| raw_connect(&addr)).collect();
        // Good peers, connected from this thread: the handshakes run in
        // the listener's thread meanwhile.
        let c = Client::connect::<u8>(&addr, Some(KEY)).unwrap();
        let s = l.accept::<u8>().unwrap();
        c.send(&round).unwrap();
        assert_eq!(s.recv().unwrap(), round);
        assert_eq!(threads(), threads0 + 1, "one thread per listener");
        // An authenticated peer never taken by `accept`, and one half-way.
        let _unaccepted = Client::connect::<u8>(&addr, Some(KEY)).unwrap();
        let _half = raw_connect(&addr);
        let t = Instant::now();
        drop(l);
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "drop took {:?}",
            t.elapsed()
        );
        assert_eq!(threads(), threads0, "the acceptor thread is gone");
        drop((silent, c, s));
    }
    assert_eq!(fds(), fds0, "every socket is closed");
}
