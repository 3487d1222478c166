//! What a child inherits from its parent besides its task: descriptors
//! (only `Fork` children get the parent's), stdio (`/dev/null` where a
//! daemon parent has none), and its name in `ps`.

mod common;

use std::os::fd::{AsFd, AsRawFd};
use std::path::PathBuf;
use std::process::Command;

use mproc::StartMethod;
use rustix::event::{poll, PollFd, PollFlags};
use rustix::fs::{Mode, OFlags};

/// Where descriptor `n` of the calling process leads, if it is open.
fn fd_target(n: i32) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/self/fd/{n}")).ok()
}

#[test]
fn only_fork_children_inherit_the_parents_descriptors() {
    let _g = common::exclusive();
    // Opened without close-on-exec, as a C library or `libc::open` would.
    let file = rustix::fs::open(
        std::env::current_exe().unwrap(),
        OFlags::RDONLY,
        Mode::empty(),
    )
    .unwrap();
    let n = file.as_raw_fd();
    let ours = fd_target(n);
    assert!(ours.is_some());
    // The fork server must start while the descriptor is open.
    mproc::__private::kill_fork_server();
    for m in mproc::all_start_methods() {
        let theirs = mproc::get_context(Some(m))
            .spawn(fd_target, n)
            .unwrap()
            .join()
            .unwrap();
        if m == StartMethod::Fork {
            assert_eq!(theirs, ours, "a forked child inherits, as in CPython");
        } else {
            assert_ne!(theirs, ours, "{m:?} child inherited descriptor {n}");
        }
    }
    let server = mproc::__private::fork_server_pid().unwrap();
    let held = std::fs::read_link(format!("/proc/{server}/fd/{n}")).ok();
    assert_ne!(held, ours, "the fork server holds descriptor {n}");
}

fn wait_for(ev: mproc::Event) {
    ev.wait_timeout(common::LONG).unwrap();
}

#[test]
fn a_pipe_end_a_child_inherited_by_accident_does_not_hide_end_of_file() {
    let _g = common::exclusive();
    mproc::__private::kill_fork_server();
    for m in [StartMethod::Spawn, StartMethod::ForkServer] {
        // Without close-on-exec.
        let (r, w) = rustix::pipe::pipe().unwrap();
        let ev = mproc::Event::new().unwrap();
        let child = mproc::get_context(Some(m))
            .spawn(wait_for, ev.clone())
            .unwrap();
        drop(w);
        // The child still runs: end of file only if it holds no copy.
        let mut pfd = [PollFd::new(&r, PollFlags::IN)];
        let guard = rustix::time::Timespec {
            tv_sec: common::GENEROUS.as_secs() as i64,
            tv_nsec: 0,
        };
        let ready = poll(&mut pfd, Some(&guard)).unwrap();
        let mut buf = [0u8; 1];
        let eof = ready == 1 && rustix::io::read(r.as_fd(), &mut buf).unwrap() == 0;
        ev.set();
        child.join().unwrap();
        assert!(eof, "{m:?}: the reader saw no end of file");
    }
}

/// What a child's name is in `ps`.
fn comm(_: ()) -> String {
    std::fs::read_to_string("/proc/self/comm").unwrap()
}

#[test]
fn children_bear_the_programs_name() {
    let _g = common::shared();
    let ours = comm(());
    for m in mproc::all_start_methods() {
        let theirs = mproc::get_context(Some(m))
            .spawn(comm, ())
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(theirs, ours, "{m:?}");
    }
    if let Some(server) = mproc::__private::fork_server_pid() {
        let name = std::fs::read_to_string(format!("/proc/{server}/comm")).unwrap();
        assert_eq!(name, ours, "the fork server");
    }
}

fn chatty(x: u64) -> u64 {
    println!("a child's line on stdout");
    eprintln!("a child's line on stderr");
    x * 2
}

/// Whether a file the child opens gets a number above stdio: it does when
/// the child has stdio (`/dev/null` where its parent had none).
fn opens_above_stdio(_: ()) -> bool {
    std::fs::File::open("/dev/null").unwrap().as_raw_fd() > 2
}

/// Not a check by itself: a daemon-like program the next test runs. It
/// closes its stdin, stdout and stderr, then starts a child of each
/// method, and writes what they returned to the file `DAEMON_REPORT`.
#[test]
fn daemon_probe() {
    let Some(report) = std::env::var_os("DAEMON_REPORT") else {
        return;
    };
    mproc::set_fork_warning(false);
    for fd in 0..3 {
        // SAFETY: closing the standard descriptors of this probe process
        // (started only by the test below); nothing here holds them as
        // owned objects, and std's stdio handles accept a closed descriptor.
        unsafe { rustix::io::close(fd) };
    }
    let mut lines = vec![format!(
        "a listener and its clients keep stdio free: {:?}",
        listener_keeps_stdio_free()
    )];
    for m in mproc::all_start_methods() {
        let got = mproc::get_context(Some(m))
            .spawn(chatty, 21)
            .and_then(|h| h.join());
        lines.push(format!("{}: {got:?}", m.name()));
        let got = mproc::get_context(Some(m))
            .spawn(opens_above_stdio, ())
            .and_then(|h| h.join());
        lines.push(format!("{} opens above stdio: {got:?}", m.name()));
    }
    std::fs::write(report, lines.join("\n")).unwrap();
}

/// With 0, 1 and 2 closed: a keyed `Listener`, a `Client` and the accepted
/// connection exchange a message, and none of their sockets took a
/// standard descriptor.
fn listener_keeps_stdio_free() -> mproc::Result<bool> {
    use mproc::{Address, Client, Listener};
    let addr = Address::unique_abstract()?;
    let listener = Listener::bind(&addr, Some(b"key"))?;
    let client = std::thread::spawn(move || {
        let c = Client::connect::<u32>(&addr, Some(b"key"))?;
        c.send(&7)?;
        c.recv()
    });
    let served = listener.accept::<u32>()?;
    let got = served.recv()?;
    served.send(&(got + 1))?;
    let answer = client.join().expect("client thread")?;
    let stdio_closed = (0..3).all(|fd| {
        // SAFETY: F_GETFD only reads the descriptor's flags.
        unsafe { libc::fcntl(fd, libc::F_GETFD) == -1 }
    });
    Ok(answer == 8 && stdio_closed)
}

#[test]
fn children_of_a_parent_without_stdio_start_and_report() {
    let _g = common::shared();
    let report = std::env::temp_dir().join(format!("mproc-daemon-{}", std::process::id()));
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["daemon_probe", "--exact", "--nocapture", "--test-threads=1"])
        .env("DAEMON_REPORT", &report)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    let text = std::fs::read_to_string(&report).unwrap_or_default();
    let _ = std::fs::remove_file(&report);
    assert!(status.success(), "{status:?} {text}");
    assert!(
        text.contains("a listener and its clients keep stdio free: Ok(true)"),
        "{text}"
    );
    for m in mproc::all_start_methods() {
        assert!(
            text.contains(&format!("{}: Ok(42)", m.name())),
            "{m:?}: {text}"
        );
        assert!(
            text.contains(&format!("{} opens above stdio: Ok(true)", m.name())),
            "{m:?}: {text}"
        );
    }
}
