//! A fork-server child finds its state and first frame in its socket when
//! it starts if they fit in the socket's buffer (sent before the fork), and
//! gets them after the fork if not: every size around that limit arrives
//! whole, with its descriptors. The pid and pidfd of a child come from the
//! server, so a child that ends before its start returns is still known.

mod common;

use common::GENEROUS;
use mproc::{Connection, Pipe, StartMethod};

/// Sends the length and a checksum of `bytes` on `conn`, returns the bytes.
fn echo_through(args: (Vec<u8>, Connection<(usize, u64)>)) -> Vec<u8> {
    let (bytes, conn) = args;
    let sum = bytes.iter().map(|&b| u64::from(b)).sum();
    conn.send(&(bytes.len(), sum)).unwrap();
    bytes
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

#[test]
fn first_frames_of_every_size_around_the_early_limit_arrive_whole() {
    let ctx = mproc::get_context(Some(StartMethod::ForkServer));
    let k = 1024;
    for len in [
        0,
        k,
        60 * k,
        64 * k - 200,
        64 * k - 40,
        64 * k,
        64 * k + 40,
        100 * k,
        300 * k,
    ] {
        let (here, there) = Pipe::new().unwrap();
        let bytes = pattern(len);
        let h = ctx.spawn(echo_through, (bytes.clone(), there)).unwrap();
        let sum = bytes.iter().map(|&b| u64::from(b)).sum();
        assert!(here.poll(GENEROUS).unwrap(), "{len}: no word");
        assert_eq!(here.recv().unwrap(), (len, sum), "{len}");
        assert_eq!(h.join().unwrap(), bytes, "{len}");
    }
}

fn own_pid(code: i32) -> i32 {
    if code != 0 {
        std::process::exit(code);
    }
    std::process::id() as i32
}

#[test]
fn a_child_that_ends_at_once_is_known_by_its_pid_and_code() {
    let ctx = mproc::get_context(Some(StartMethod::ForkServer));
    for _ in 0..20 {
        let h = ctx.spawn(own_pid, 0).unwrap();
        let pid = h.pid();
        assert_eq!(h.join().unwrap(), pid);
    }
    for code in [3, 7] {
        let mut p = mproc::Process::new(own_pid, code).start_method(StartMethod::ForkServer);
        p.start().unwrap();
        p.join().unwrap();
        // Signals to an ended child change nothing.
        p.terminate().unwrap();
        p.kill().unwrap();
        assert_eq!(p.exitcode(), Some(code));
    }
}
