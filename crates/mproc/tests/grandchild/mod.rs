//! Grandchildren for the tests of whole process trees: a task starts
//! `sleep <tag>`, whose argument is unique to its test (`sleep` takes
//! fractional seconds: `1000.<random digits>`), and tells the test its pid;
//! the test watches it through a pidfd and scans `/proc` for the tag.
//! A [`Tag`] kills whatever still bears it when dropped, so that a failed
//! test leaks no `sleep`.
#![allow(dead_code)] // each test binary uses its own subset

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// A `sleep` argument no other process bears: 1000 seconds and a fraction
/// made of this test process's pid, the time and a counter.
pub struct Tag(pub String);

impl Tag {
    pub fn new() -> Tag {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let n = N.fetch_add(1, Ordering::Relaxed);
        Tag(format!("1000.{}{:09}{n}", std::process::id(), nanos))
    }

    /// The live processes (not zombies) whose command line bears the tag.
    pub fn bearers(&self) -> Vec<i32> {
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                // A zombie's command line is empty.
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| c.split(|&b| b == 0).any(|arg| arg == self.0.as_bytes()))
            })
            .collect()
    }
}

impl Drop for Tag {
    fn drop(&mut self) {
        for pid in self.bearers() {
            // SAFETY: a signal to a process found by its unique tag.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// Starts `sleep <tag>`, tells its pid on `sent`, then waits for it (so the
/// caller, a task, blocks until it is stopped).
pub fn sleep_and_wait(tag: &str, sent: &mproc::Queue<i32>) {
    let mut sleep = std::process::Command::new("sleep")
        .arg(tag)
        .spawn()
        .expect("sleep starts");
    sent.put(sleep.id() as i32).expect("the pid is sent");
    let _ = sleep.wait();
}

/// A pidfd for `pid`, a process that bears `tag` (checked after the open,
/// so that a reused pid is not watched in its place); `None` if it has
/// already ended.
pub fn watch(pid: i32, tag: &Tag) -> Option<OwnedFd> {
    // SAFETY: a raw `pidfd_open`: no pointer argument.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        assert_eq!(
            e.raw_os_error(),
            Some(libc::ESRCH),
            "pidfd_open({pid}): {e}"
        );
        return None;
    }
    // SAFETY: the descriptor was just opened here and is owned by nobody.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // Just after its exec the new program's command line reads empty for
    // a moment (the kernel releases the parent before it sets the
    // arguments' place): wait for the tag, or the end (a zombie's command
    // line is empty too). No descriptor says when: look every
    // millisecond, within a generous bound.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let fd = Some(fd);
    while !tag.bearers().contains(&pid) {
        if ends_within(&fd, Duration::ZERO) {
            return None;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{pid} runs but is not the tagged sleep"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    fd
}

/// Whether the process behind `pidfd` ends within `timeout` (`None`: it
/// had ended before it was watched).
pub fn ends_within(pidfd: &Option<OwnedFd>, timeout: Duration) -> bool {
    let Some(pidfd) = pidfd else {
        return true;
    };
    let mut p = libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    loop {
        // SAFETY: one live `pollfd`, as many as told.
        let n = unsafe { libc::poll(&mut p, 1, ms) };
        if n >= 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return n > 0;
        }
    }
}
