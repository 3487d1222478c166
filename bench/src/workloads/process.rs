//! Starting and joining processes: `process_start_join_{fork,forkserver,spawn}`
//! (a child that does nothing), `process_start_join_limits` (the same with
//! resource limits, against without) and `spawn_return_value` (an argument
//! in, a value back).

use std::time::Duration;

use mproc::{Limits, Process, StartMethod};

use super::Workload;
use crate::cpython;
use crate::harness::{micros_per_op, session, Kind, Mode, Result, Runner, Session};
use crate::limit::lifecycle::{fork_exit_waitpid, reexec_self, MiniForkServer};
use crate::stats::Better;

pub fn workloads() -> Vec<Workload> {
    vec![
        Workload {
            name: "process_start_join_fork",
            unit: "us/proc",
            better: Better::Lower,
            about: "start + join of a child that does nothing, fork start method",
            pinned: false,
            runners: start_join_fork,
        },
        Workload {
            name: "process_start_join_forkserver",
            unit: "us/proc",
            better: Better::Lower,
            about: "start + join of a child that does nothing, forkserver start method",
            pinned: false,
            runners: start_join_forkserver,
        },
        Workload {
            name: "process_start_join_spawn",
            unit: "us/proc",
            better: Better::Lower,
            about: "start + join of a child that does nothing, spawn start method",
            pinned: false,
            runners: start_join_spawn,
        },
        Workload {
            name: "process_start_join_limits",
            unit: "us/proc",
            better: Better::Lower,
            about: "start + join of a child that does nothing with Limits set (memory, CPU time, nice, open files, core dumps), forkserver; peer: the same without limits",
            pinned: false,
            runners: start_join_limits,
        },
        Workload {
            name: "spawn_return_value",
            unit: "us/proc",
            better: Better::Lower,
            about: "a new process computes 2*i from an argument and hands it back, default start methods",
            pinned: false,
            runners: return_value,
        },
    ]
}

/// Processes per repetition.
fn count(mode: Mode, method: StartMethod) -> usize {
    match method {
        StartMethod::Spawn => mode.pick(2, 10, 40),
        _ => mode.pick(5, 50, 200),
    }
}

fn noop(_: ()) {}

fn double(x: u64) -> u64 {
    2 * x
}

fn mproc_start_join(method: StartMethod, n: usize) -> Runner {
    let what = format!("Process::new(noop, ()).start_method({method:?}): start() + join()");
    mproc_start_join_with(Kind::Mproc, what, method, Limits::new(), n)
}

fn mproc_start_join_with(
    kind: Kind,
    what: String,
    method: StartMethod,
    limits: Limits,
    n: usize,
) -> Runner {
    Runner::new(kind, what, move || {
        session(move || {
            micros_per_op(n, || {
                let mut p = Process::new(noop, ()).start_method(method).limits(limits);
                p.start()?;
                p.join()?;
                match p.exitcode() {
                    Some(0) => Ok(()),
                    code => Err(format!("exit code {code:?}").into()),
                }
            })
        })
    })
}

fn cpython_start_join(method: StartMethod, n: usize) -> Runner {
    cpython::runner(
        format!("get_context('{method}').Process(target=noop): start() + join()"),
        "process.py",
        vec!["start_join".into(), method.name().into(), n.to_string()],
    )
}

fn start_join_fork(mode: Mode) -> Vec<Runner> {
    let n = count(mode, StartMethod::Fork);
    vec![
        mproc_start_join(StartMethod::Fork, n),
        cpython_start_join(StartMethod::Fork, n),
        Runner::new(
            Kind::Limit,
            "fork(); child _exit(0); waitpid()",
            move || fork_exit_waitpid(n),
        ),
    ]
}

fn start_join_forkserver(mode: Mode) -> Vec<Runner> {
    let n = count(mode, StartMethod::ForkServer);
    vec![
        mproc_start_join(StartMethod::ForkServer, n),
        cpython_start_join(StartMethod::ForkServer, n),
        Runner::new(
            Kind::Limit,
            "minimal fork server over a socketpair: request, fork, child _exit(0), reap, status back",
            move || MiniForkServer::session(n),
        ),
    ]
}

fn start_join_spawn(mode: Mode) -> Vec<Runner> {
    let n = count(mode, StartMethod::Spawn);
    vec![
        mproc_start_join(StartMethod::Spawn, n),
        cpython_start_join(StartMethod::Spawn, n),
        Runner::new(
            Kind::Peer,
            "procspawn::spawn((), noop).join() (procspawn 1.0: exec of self)",
            move || procspawn_session(n, |()| (), |_| ()),
        ),
        Runner::new(
            Kind::Limit,
            "Command::new(current_exe()).status(): posix_spawn of this binary, which _exits in a constructor",
            move || reexec_self(n),
        ),
    ]
}

/// The limits of `process_start_join_limits`: every kind the child sets.
/// Nice 0: the same `setpriority` as any other value, without the wait a
/// lower priority adds on a busy machine (which is its purpose, not a cost).
fn bench_limits() -> Limits {
    Limits::new()
        .memory(1 << 30)
        .cpu_time(Duration::from_secs(60))
        .nice(0)
        .open_files(512)
        .core_dumps(false)
}

fn start_join_limits(mode: Mode) -> Vec<Runner> {
    let method = StartMethod::ForkServer;
    let n = count(mode, method);
    vec![
        mproc_start_join_with(
            Kind::Mproc,
            "Process::new(noop, ()).limits(memory 1 GiB, CPU 60 s, nice 0, 512 files, no core): start() + join(), forkserver".into(),
            method,
            bench_limits(),
            n,
        ),
        mproc_start_join_with(
            Kind::Peer,
            "mproc itself without limits: Process::new(noop, ()): start() + join(), forkserver".into(),
            method,
            Limits::new(),
            n,
        ),
    ]
}

/// `n` procspawn children per repetition, each given `arg(i)`.
fn procspawn_session<A, R>(n: usize, f: fn(A) -> R, arg: fn(u64) -> A) -> Result<Box<dyn Session>>
where
    A: serde::Serialize + serde::de::DeserializeOwned + 'static,
    R: serde::Serialize + serde::de::DeserializeOwned + 'static,
{
    let mut i = 0;
    session(move || {
        micros_per_op(n, || {
            i += 1;
            procspawn::spawn(arg(i), f).join()?;
            Ok(())
        })
    })
}

fn return_value(mode: Mode) -> Vec<Runner> {
    let n = mode.pick(5, 30, 100);
    let procspawn_n = mode.pick(5, 30, 100);
    vec![
        Runner::new(
            Kind::Mproc,
            "mproc::spawn(double, i)?.join()? (default start method: forkserver)",
            move || {
                let mut i = 0;
                session(move || {
                    micros_per_op(n, || {
                        i += 1;
                        match mproc::spawn(double, i)?.join()? == 2 * i {
                            true => Ok(()),
                            false => Err("wrong value".into()),
                        }
                    })
                })
            },
        ),
        cpython::runner(
            "forkserver Process(target=f, args=(i, w)) sends 2*i over Pipe(duplex=False); recv() + join()",
            "process.py",
            vec!["return_value".into(), "forkserver".into(), n.to_string()],
        ),
        Runner::new(
            Kind::Peer,
            "procspawn::spawn(i, double).join() (procspawn 1.0: exec of self)",
            move || procspawn_session(procspawn_n, double, |i| i),
        ),
        Runner::new(
            Kind::Limit,
            "minimal fork server: i over a socketpair, forked child writes 2*i back, status back",
            move || MiniForkServer::session(n),
        ),
    ]
}
