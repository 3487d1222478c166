//! At the descriptor limit: a process that has used up RLIMIT_NOFILE can
//! still join its fork-server children and learn their true exit status,
//! and a pool reports each worker's real end, then works again once
//! descriptors are free. Its own binary with one test: the limit is lowered
//! for the whole process.

mod common;

use std::fs::File;

use common::GENEROUS;
use mproc::{Connection, Error, Pipe, Pool, StartMethod};

/// Exits with the code it is told (after the parent ran out of descriptors).
fn exit_when_told(conn: Connection<i32>) {
    let code = conn.recv().unwrap_or(99);
    std::process::exit(code);
}

fn square(x: u64) -> u64 {
    x * x
}

/// A pool task: `-1` aborts (SIGABRT), `-2` panics, others exit with that
/// code.
fn end_worker(how: i32) -> i32 {
    match how {
        -1 => std::process::abort(),
        -2 => panic!("task panicked on purpose"),
        code => std::process::exit(code),
    }
}

fn nofile() -> libc::rlimit {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit to fill.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    lim
}

fn set_nofile(lim: &libc::rlimit) {
    // SAFETY: `lim` is a valid rlimit.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, lim) }, 0);
}

/// Opens descriptors until the process has none left (EMFILE).
fn exhaust() -> Vec<File> {
    let mut hog = Vec::new();
    loop {
        match File::open("/dev/null") {
            Ok(f) => hog.push(f),
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::EMFILE), "{e}");
                return hog;
            }
        }
    }
}

#[test]
fn at_the_descriptor_limit_joins_and_the_pool_report_the_truth() {
    let _g = common::exclusive();
    let ctx = mproc::get_context(Some(StartMethod::ForkServer));
    let pool = Pool::builder()
        .processes(3)
        .start_method(StartMethod::ForkServer)
        .build()
        .unwrap();
    assert_eq!(pool.apply(square, 4).unwrap(), 16);
    let (here, there) = Pipe::new().unwrap();
    let mut p = ctx.process(exit_when_told, there);
    p.start().unwrap();

    let saved = nofile();
    set_nofile(&libc::rlimit {
        rlim_cur: (mproc::__private::open_fd_count() as u64 + 64).min(saved.rlim_cur),
        rlim_max: saved.rlim_max,
    });
    let hog = exhaust();

    // A joined fork-server child: its own status, not an error or a
    // made-up signal.
    here.send(&3).unwrap();
    let joined = p.join_timeout(GENEROUS);
    // Workers that exit, abort or panic while no descriptor is free: each
    // reported as it ended (the third worker takes the panic while the
    // first two wait for descriptors to start their replacements).
    let exited = pool.apply(end_worker, 7);
    let aborted = pool.apply(end_worker, -1);
    let panicked = pool.apply(end_worker, -2);
    drop(hog);
    set_nofile(&saved);

    assert!(joined.unwrap(), "the child did not end");
    assert_eq!(p.exitcode(), Some(3));
    assert!(
        matches!(exited, Err(Error::Exited { code: 7, .. })),
        "{exited:?}"
    );
    assert!(
        matches!(
            aborted,
            Err(Error::Signaled {
                signal: libc::SIGABRT,
                ..
            })
        ),
        "{aborted:?}"
    );
    assert!(
        matches!(panicked, Err(Error::Panicked { .. })),
        "{panicked:?}"
    );
    // Descriptors are back: the pool has replaced its workers and works.
    assert_eq!(
        pool.map(square, 0..20u64).unwrap(),
        (0..20u64).map(|x| x * x).collect::<Vec<_>>()
    );
    drop(pool);
}
