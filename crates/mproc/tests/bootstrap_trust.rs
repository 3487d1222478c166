//! `MPROC_CHILD` runs code only for the process's own parent: a value that
//! is empty, malformed, or names a descriptor that is not a socket from the
//! parent prints one line and lets `main` run; in a secure-execution
//! (setuid) process the variable is ignored; a child neither shows the
//! variable nor lets a program it executes inherit its control socket.
//!
//! The program these tests run with a crafted variable is this test binary
//! itself, told by `BOOT_PROBE` to run only [`probe`], which prints a line:
//! if it is printed, `main` ran, and so nothing from the descriptor did
//! (a child leaves with `_exit` before `main`).

mod common;

use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{Command, Output};

use mproc::StartMethod;
use rustix::fs::{Mode, OFlags};
use rustix::net::{socketpair, AddressFamily, SocketFlags, SocketType};

const MAIN_RAN: &str = "PROBE: main ran";

/// Not a check by itself: what the others run as a program.
#[test]
fn probe() {
    if std::env::var_os("BOOT_PROBE").is_none() {
        return;
    }
    println!(
        "{MAIN_RAN} euid={} MPROC_CHILD={:?}",
        rustix::process::geteuid().as_raw(),
        std::env::var_os("MPROC_CHILD")
    );
    if std::env::var_os("BOOT_PROBE_SPAWN").is_some() {
        for m in [StartMethod::Spawn, StartMethod::ForkServer] {
            let got = mproc::get_context(Some(m))
                .spawn(double, 21)
                .map(|h| h.join());
            println!("PROBE: {m:?} child: {got:?}");
        }
    }
}

fn double(x: u32) -> u32 {
    x * 2
}

fn probe_args() -> [&'static str; 4] {
    ["probe", "--exact", "--nocapture", "--test-threads=1"]
}

fn exe() -> std::path::PathBuf {
    std::env::current_exe().unwrap()
}

/// The lines mproc printed on stderr.
fn mproc_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.starts_with("mproc:"))
        .map(String::from)
        .collect()
}

/// `main` ran, the variable was gone, and mproc said why in one line.
fn assert_main_ran(out: &Output, what: &str, reason: &str) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains(MAIN_RAN),
        "{what}: main did not run: {:?}, stdout {stdout:?}, stderr {:?}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("MPROC_CHILD=None"), "{what}: {stdout}");
    let lines = mproc_lines(out);
    assert_eq!(lines.len(), 1, "{what}: {lines:?}");
    assert!(
        lines[0].starts_with("mproc: ignoring MPROC_CHILD") && lines[0].contains(reason),
        "{what}: {lines:?}"
    );
}

fn run_probe(value: &str) -> Output {
    Command::new(exe())
        .args(probe_args())
        .env("BOOT_PROBE", "1")
        .env("MPROC_CHILD", value)
        .output()
        .unwrap()
}

#[test]
fn an_empty_or_malformed_value_lets_main_run() {
    let _g = common::shared();
    let me = std::process::id();
    for value in [
        String::new(),
        "garbage".into(),
        "task:".into(),
        "task:7".into(),
        "task:x:1".into(),
        "spawn:7:1".into(),
        "task:7:1:2".into(),
        format!("task:1:{me}"),
    ] {
        let out = run_probe(&value);
        assert_main_ran(&out, &value, "");
    }
}

/// A descriptor without close-on-exec, so that a program started through
/// `sh` inherits it. Callers hold the isolation lock exclusively: other
/// tests' children must not inherit it.
fn inheritable_pair() -> (OwnedFd, OwnedFd) {
    socketpair(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::empty(),
        None,
    )
    .unwrap()
}

/// Runs the probe as a child of `sh` (which does not exec it: a command
/// follows), with `MPROC_CHILD=task:<fd>:<parent>`; `parent` is a shell
/// expression (`$$` is the shell, the probe's parent).
fn run_probe_under_sh(fd: i32, parent: &str) -> Output {
    let script = format!(r#"MPROC_CHILD="task:{fd}:{parent}" BOOT_PROBE=1 "$0" "$@"; exit $?"#);
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(exe())
        .args(probe_args())
        .output()
        .unwrap()
}

#[test]
fn a_descriptor_that_is_not_the_parents_socket_runs_nothing() {
    let _g = common::exclusive();
    // A socket pair made by this process, not by the probe's parent (the
    // shell). Our end is closed: a child that trusted the socket would read
    // an end of file and exit 121 before `main`.
    let (ours, theirs) = inheritable_pair();
    drop(ours);
    let out = run_probe_under_sh(theirs.as_raw_fd(), "$$");
    assert_main_ran(&out, "a stranger's socket", "socket comes from pid");
    drop(theirs);

    // A pipe and a regular file are not sockets at all.
    let (r, w) = rustix::pipe::pipe().unwrap();
    let out = run_probe_under_sh(r.as_raw_fd(), "$$");
    assert_main_ran(&out, "a pipe", "not a socket");
    drop((r, w));
    let file = rustix::fs::open(exe(), OFlags::RDONLY, Mode::empty()).unwrap();
    let out = run_probe_under_sh(file.as_raw_fd(), "$$");
    assert_main_ran(&out, "a file", "not a socket");
    // A descriptor that is not open.
    let out = run_probe_under_sh(1000, "$$");
    assert_main_ran(&out, "a closed descriptor", "not a socket");
}

#[test]
fn a_value_naming_a_process_that_is_not_the_parent_says_so_and_exits() {
    let _g = common::exclusive();
    // The socket is ours and the value names us, but the probe's parent is
    // the shell: a child whose parent is gone. It must not run (nor run
    // `main` as an orphan): one line, status 122.
    let (ours, theirs) = inheritable_pair();
    let out = run_probe_under_sh(theirs.as_raw_fd(), &std::process::id().to_string());
    drop(ours);
    assert_eq!(out.status.code(), Some(122), "{out:?}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains(MAIN_RAN));
    let lines = mproc_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains(&format!(
            "process {} is no longer its parent",
            std::process::id()
        )),
        "{lines:?}"
    );
}

/// A setuid-root copy of this binary run by `nobody` with a socket pair
/// from its parent: in secure execution the variable is ignored, and the
/// program's own Spawn and ForkServer children are refused.
#[test]
fn a_setuid_program_ignores_the_variable() {
    let _g = common::exclusive();
    if !rustix::process::geteuid().is_root() || Command::new("setpriv").arg("-V").output().is_err()
    {
        println!("skipped: needs root and setpriv");
        return;
    }
    let dir = std::env::temp_dir().join(format!("mproc-setuid-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join("probe");
    std::fs::copy(exe(), &copy).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let (ours, theirs) = inheritable_pair();
    // Our end is closed: a child that trusted the variable would read an
    // end of file and exit 121 before `main`.
    drop(ours);
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(&copy)
        .args(probe_args())
        .env("BOOT_PROBE", "1")
        .env("BOOT_PROBE_SPAWN", "1")
        .env(
            "MPROC_CHILD",
            format!("task:{}:{}", theirs.as_raw_fd(), std::process::id()),
        )
        .output()
        .unwrap();
    drop(theirs);
    std::fs::remove_dir_all(&dir).unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    if out.status.success() && !stdout.contains("euid=0") {
        println!("skipped: setuid has no effect here (nosuid or no_new_privs): {stdout}");
        return;
    }
    assert_main_ran(&out, "setuid", "secure-execution");
    assert!(stdout.contains("euid=0"), "{stdout}");
    // Its own Spawn and ForkServer children would be secure-execution
    // processes too, and run `main` instead of their task: refused.
    for m in ["Spawn", "ForkServer"] {
        let line = format!("PROBE: {m} child: Err(InvalidState(\"Spawn and ForkServer");
        assert!(stdout.contains(&line), "{m}: {stdout}");
    }
}

/// What a child sees of its start: the variable, and the descriptors a
/// program it executes has (`ls` lists its own: the inherited ones, then the
/// directory it reads, at the lowest free number).
fn grandchild_view(_: ()) -> (Option<String>, Vec<String>) {
    let var = std::env::var("MPROC_CHILD").ok();
    let out = Command::new("ls").arg("/proc/self/fd").output().unwrap();
    let mut fds: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(String::from)
        .collect();
    fds.sort();
    (var, fds)
}

#[test]
fn a_child_hides_the_variable_and_its_control_socket_from_programs_it_runs() {
    let _g = common::shared();
    for m in [StartMethod::Spawn, StartMethod::ForkServer] {
        let (var, fds) = mproc::get_context(Some(m))
            .spawn(grandchild_view, ())
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(var, None, "{m:?}");
        assert_eq!(fds, ["0", "1", "2", "3"], "{m:?}: what `ls` inherited");
    }
}
