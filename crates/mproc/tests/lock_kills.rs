//! Waiters of a `Lock` and an `RLock` SIGKILLed at random moments while a
//! busy holder takes and releases the lock without end: a process that
//! lives still gets the lock every time it asks, and nothing waits past its
//! guard.
//!
//! The window: glibc's robust mutex wakes one sleeper on unlock. When that
//! sleeper is being killed, the wake dies with it; the busy holder retakes
//! the lock by its fast path, which does not mark waiters, so from then on
//! no unlock wakes the other sleepers. A blocked acquisition therefore
//! sleeps in naps (`SharedMutex::lock_napping`). The window is a few
//! microseconds wide (the kill must land between the wake and the woken
//! waiter's next look at the lock): the queue's kill test met it about once
//! in 180 kills, but this test did not meet it in 4,000 kills of the old
//! code; it checks that every acquisition of a living process is served
//! while waiters die around it, for `Lock` and `RLock` alike.
//!
//! `MPROC_LOCK_KILL_ROUNDS` sets the number of rounds (default [`ROUNDS`]),
//! `MPROC_LOCK_KILL_SEED` the seed.

mod common;

use common::Rng;

use std::time::{Duration, Instant};

use mproc::{Lock, Process, RLock, RawValue};

/// Rounds of the default run.
const ROUNDS: usize = 60;
/// Waiters killed (and replaced) per round.
const KILLS: usize = 12;
/// Acquisitions the counting process makes per round.
const COUNT: u64 = 400;
/// The bound of a round's counting: far beyond what a working lock needs.
const GUARD: Duration = Duration::from_secs(10);

/// Which lock a round uses (both share glibc's robust mutex).
#[derive(Clone, serde::Serialize, serde::Deserialize)]
enum AnyLock {
    Plain(Lock),
    Reentrant(RLock),
}

impl AnyLock {
    fn hold(&self) {
        match self {
            AnyLock::Plain(l) => drop(l.lock().map_err(|e| e.to_string())),
            AnyLock::Reentrant(l) => drop(l.lock().map_err(|e| e.to_string())),
        }
    }
}

/// Takes and releases the lock without end (the busy holder, and the
/// waiters that get killed).
fn churn(lock: AnyLock) {
    loop {
        lock.hold();
    }
}

/// Takes the lock `COUNT` times, counting each in `done`.
fn count(args: (AnyLock, RawValue<u64>)) {
    let (lock, done) = args;
    for _ in 0..COUNT {
        lock.hold();
        done.set(done.get() + 1);
    }
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn started(f: fn(AnyLock), lock: &AnyLock) -> Process {
    let mut p = Process::new(f, lock.clone()).daemon(true);
    p.start().expect("start a churning process");
    p
}

fn stop(mut p: Process) {
    p.kill().expect("kill");
    assert!(
        p.join_timeout(GUARD).expect("join"),
        "a killed process lingers"
    );
}

#[test]
fn killed_waiters_never_leave_a_living_one_asleep() {
    let _g = common::shared();
    let rounds = env_or("MPROC_LOCK_KILL_ROUNDS", ROUNDS as u64);
    let seed = env_or("MPROC_LOCK_KILL_SEED", 0x5eed_10c4);
    let mut rng = Rng(seed | 1);
    for round in 0..rounds {
        let lock = if round % 2 == 0 {
            AnyLock::Plain(Lock::new().unwrap())
        } else {
            AnyLock::Reentrant(RLock::new().unwrap())
        };
        let done = RawValue::new(0u64).unwrap();
        let busy = started(churn, &lock);
        let mut waiters: Vec<Process> = (0..4).map(|_| started(churn, &lock)).collect();
        let mut counter = Process::new(count, (lock.clone(), done.clone())).daemon(true);
        counter.start().unwrap();
        for _ in 0..KILLS {
            std::thread::sleep(Duration::from_micros(rng.below(1_000)));
            let i = rng.below(waiters.len() as u64) as usize;
            stop(waiters.swap_remove(i));
            waiters.push(started(churn, &lock));
        }
        let t = Instant::now();
        let finished = counter.join_timeout(GUARD).unwrap();
        let got = done.get();
        if !finished {
            let _ = counter.kill();
            let _ = counter.join_timeout(GUARD);
        }
        stop(busy);
        waiters.into_iter().for_each(stop);
        assert!(
            finished,
            "round {round} (seed {seed:#x}): the counting process took {got} of {COUNT} \
             acquisitions and then slept {:?} while the lock was busy",
            t.elapsed()
        );
        assert_eq!(counter.exitcode(), Some(0), "round {round}");
        assert_eq!(got, COUNT, "round {round}");
    }
}
