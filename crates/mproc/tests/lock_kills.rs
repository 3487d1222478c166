//! `Lock`s and `RLock`s whose holders and waiters are SIGKILLed at random
//! moments.
//!
//! - Waiters killed while a busy holder takes and releases the lock without
//!   end: a process that lives still gets the lock every time it asks, and
//!   nothing waits past its guard. The window this guards: a lock that wakes
//!   one sleeper on unlock (glibc's robust mutex did) loses that wake when
//!   the sleeper is being killed; the busy holder retakes the lock by its
//!   fast path, which does not mark waiters, so no later unlock wakes the
//!   other sleepers. mproc's unlock wakes every sleeper instead. The window
//!   is a few microseconds wide; the queue's kill test met it about once in
//!   180 kills.
//! - Holders killed at random points of their critical section, many times:
//!   the next acquirer takes over (told `OwnerDied`), no increment that
//!   finished is lost, and no two processes are ever inside at once.
//!
//! `MPROC_LOCK_KILL_ROUNDS` sets the number of rounds (default [`ROUNDS`]),
//! `MPROC_LOCK_KILL_SEED` the seed.

mod common;

use common::Rng;

use std::time::{Duration, Instant};

use mproc::{Lock, LockError, LockGuard, LockResult, Process, RLock, RawArray, RawValue};

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
    fn lock(&self) -> LockResult<LockGuard<'_>> {
        match self {
            AnyLock::Plain(l) => l.lock(),
            AnyLock::Reentrant(l) => l.lock(),
        }
    }

    fn is_locked_now(&self) -> bool {
        match self {
            AnyLock::Plain(l) => l.is_locked(),
            AnyLock::Reentrant(l) => l.is_locked(),
        }
    }

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

// ------------------------------------------------- holders killed inside

/// The words of the shared record the workers update under the lock.
const TOTAL: usize = 0;
/// `owner + 1` while a worker is inside its critical section, else 0.
const INSIDE: usize = 1;
/// Times a worker found someone else inside (must stay 0).
const VIOLATIONS: usize = 2;
/// Acquisitions that reported `OwnerDied`.
const RECOVERIES: usize = 3;
/// Increments finished by worker slot `i` at `SLOTS + i`.
const SLOTS: usize = 4;
/// Worker slots per round.
const WORKERS: usize = 3;

/// Adds one to `TOTAL` and to its own slot, under the lock, without end.
/// Invariant while nobody is inside: `TOTAL` is the sum of the slots. An
/// `RLock` is taken three levels deep.
fn increment((lock, record, slot): (AnyLock, RawArray<u64>, usize)) {
    let me = slot as u64 + 1;
    loop {
        let (guard, died) = match lock.lock() {
            Ok(g) => (g, false),
            Err(LockError::OwnerDied(g)) => (g, true),
            Err(LockError::Failed(e)) => panic!("lock failed: {e}"),
        };
        let inside = record.get(INSIDE).unwrap();
        if died {
            bump(&record, RECOVERIES);
            if inside != 0 {
                repair(&record);
            }
        } else if inside != 0 {
            bump(&record, VIOLATIONS);
        }
        record.set(INSIDE, me).unwrap();
        bump(&record, TOTAL);
        let nested = match &lock {
            AnyLock::Reentrant(l) => Some((l.lock().unwrap(), l.lock().unwrap())),
            AnyLock::Plain(_) => None,
        };
        bump(&record, SLOTS + slot);
        if record.get(INSIDE).unwrap() != me {
            bump(&record, VIOLATIONS);
        }
        record.set(INSIDE, 0).unwrap();
        drop(nested);
        drop(guard);
    }
}

fn bump(record: &RawArray<u64>, i: usize) {
    record.set(i, record.get(i).unwrap() + 1).unwrap();
}

/// What a holder that died inside left: `TOTAL` may be one ahead of the
/// slots (it died between the two increments). The slots are the truth.
fn repair(record: &RawArray<u64>) {
    let sum: u64 = (0..WORKERS).map(|i| record.get(SLOTS + i).unwrap()).sum();
    record.set(TOTAL, sum).unwrap();
    record.set(INSIDE, 0).unwrap();
}

fn worker(lock: &AnyLock, record: &RawArray<u64>, slot: usize) -> Process {
    let mut p = Process::new(increment, (lock.clone(), record.clone(), slot)).daemon(true);
    p.start().expect("start a worker");
    p
}

/// Waits until `TOTAL` has grown by `by` (read without the lock: a
/// snapshot is enough to see progress).
fn progresses(record: &RawArray<u64>, by: u64) -> bool {
    let from = record.get(TOTAL).unwrap();
    common::eventually(GUARD, || record.get(TOTAL).unwrap() >= from + by)
}

#[test]
fn holders_killed_inside_lose_no_finished_increment() {
    let _g = common::shared();
    let rounds = env_or("MPROC_LOCK_KILL_ROUNDS", ROUNDS as u64 / 3);
    let seed = env_or("MPROC_LOCK_KILL_SEED", 0x0dd_10c4);
    let mut rng = Rng(seed | 1);
    let mut recoveries = 0;
    let mut kills = 0;
    for round in 0..rounds {
        let lock = if round % 2 == 0 {
            AnyLock::Plain(Lock::new().unwrap())
        } else {
            AnyLock::Reentrant(RLock::new().unwrap())
        };
        let record = RawArray::<u64>::new(SLOTS + WORKERS).unwrap();
        let mut workers: Vec<Process> = (0..WORKERS).map(|i| worker(&lock, &record, i)).collect();
        for _ in 0..KILLS {
            assert!(
                progresses(&record, 50),
                "round {round} (seed {seed:#x}): no progress"
            );
            std::thread::sleep(Duration::from_micros(rng.below(2_000)));
            let i = rng.below(WORKERS as u64) as usize;
            let victim = std::mem::replace(&mut workers[i], worker(&lock, &record, i));
            stop(victim);
            kills += 1;
        }
        assert!(
            progresses(&record, 50),
            "round {round} (seed {seed:#x}): no progress at the end"
        );
        workers.into_iter().for_each(stop);
        // Every holder is dead now; take the lock over and check.
        let died = match lock.lock() {
            Ok(g) => {
                drop(g);
                false
            }
            Err(LockError::OwnerDied(g)) => {
                drop(g);
                true
            }
            Err(e) => panic!("{e}"),
        };
        if record.get(INSIDE).unwrap() != 0 {
            assert!(died, "round {round}: left inside by a living owner?");
            repair(&record);
        }
        recoveries += record.get(RECOVERIES).unwrap() + u64::from(died);
        let sum: u64 = (0..WORKERS).map(|i| record.get(SLOTS + i).unwrap()).sum();
        assert_eq!(
            record.get(VIOLATIONS).unwrap(),
            0,
            "round {round}: two inside at once"
        );
        assert_eq!(
            record.get(TOTAL).unwrap(),
            sum,
            "round {round}: increments lost"
        );
        assert!(!lock.is_locked_now(), "round {round}: the lock stays held");
    }
    assert!(
        recoveries > 0,
        "no kill landed inside the lock in {kills} kills"
    );
    assert!(
        recoveries <= kills + rounds,
        "more owner deaths ({recoveries}) than kills ({kills})"
    );
}

// ------------------------------------------------ the woken waiter killed

/// Pins the calling process to `cpu`.
fn pin(cpu: usize) -> bool {
    // SAFETY: a zeroed `cpu_set_t` is an empty set; `CPU_SET` writes inside
    // it; `sched_setaffinity` reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

/// Events of the woken-waiter scenario.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Scene {
    lock: Lock,
    held: mproc::Event,
    go: mproc::Event,
    retaken: mproc::Event,
    go2: mproc::Event,
    got: mproc::Event,
    /// 1 while the hog runs; the test sets 2 to stop it.
    hog: RawValue<u32>,
}

/// Holds the lock; on `go` releases it and at once tries to take it back
/// (the fast path that marks no waiter); releases it on `go2`.
fn scene_holder(s: Scene) {
    assert!(pin(0));
    s.lock.acquire().unwrap();
    s.held.set();
    s.go.wait().unwrap();
    s.lock.release().unwrap();
    let again = s.lock.try_acquire().unwrap();
    s.retaken.set();
    s.go2.wait().unwrap();
    if again {
        s.lock.release().unwrap();
    }
}

/// A waiter on CPU 1: the one the unlock wakes first (it slept first).
fn scene_victim(s: Scene) {
    assert!(pin(1));
    s.lock.acquire().unwrap();
    s.lock.release().unwrap();
}

/// The waiter that must not be left asleep.
fn scene_survivor(s: Scene) {
    assert!(pin(0));
    s.lock.acquire().unwrap();
    s.got.set();
    s.lock.release().unwrap();
}

/// Keeps CPU 1 from the victim: a real-time spinner (bounded to 5 s).
fn scene_hog(s: Scene) -> bool {
    if !pin(1) {
        return false;
    }
    let param = libc::sched_param { sched_priority: 1 };
    // SAFETY: `param` is a valid `sched_param` for the call.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) } != 0 {
        return false;
    }
    s.hog.set(1);
    let t = Instant::now();
    while s.hog.get() != 2 && t.elapsed() < Duration::from_secs(5) {
        std::hint::spin_loop();
    }
    true
}

fn asleep_on_a_futex(p: &Process) -> bool {
    let pid = p.pid().expect("started");
    std::fs::read_to_string(format!("/proc/{pid}/wchan")).is_ok_and(|w| w.contains("futex"))
}

/// The lost wake-up, made to happen: two waiters sleep; the holder
/// releases and retakes the lock at once, while the waiter its unlock woke
/// cannot run (a real-time spinner holds its CPU) and is then SIGKILLed.
/// A lock that wakes one sleeper per unlock (glibc's robust mutex did)
/// left the other waiter asleep for ever after (or, with naps, for a
/// nap); it must get the lock.
#[test]
fn a_waiter_killed_as_it_is_woken_takes_no_wake_up_with_it() {
    let _g = common::exclusive();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus < 2 {
        eprintln!("skipped: needs 2 CPUs");
        return;
    }
    let scene = Scene {
        lock: Lock::new().unwrap(),
        held: mproc::Event::new().unwrap(),
        go: mproc::Event::new().unwrap(),
        retaken: mproc::Event::new().unwrap(),
        go2: mproc::Event::new().unwrap(),
        got: mproc::Event::new().unwrap(),
        hog: RawValue::new(0).unwrap(),
    };
    let start = |f: fn(Scene)| {
        let mut p = Process::new(f, scene.clone()).daemon(true);
        p.start().unwrap();
        p
    };
    let mut holder = start(scene_holder);
    assert!(scene.held.wait_timeout(GUARD).unwrap());
    let victim = start(scene_victim);
    assert!(common::eventually(GUARD, || asleep_on_a_futex(&victim)));
    let mut survivor = start(scene_survivor);
    assert!(common::eventually(GUARD, || asleep_on_a_futex(&survivor)));
    let mut hog = Process::new(scene_hog, scene.clone()).daemon(true);
    hog.start().unwrap();
    if !common::eventually(GUARD, || scene.hog.get() == 1 || !hog.is_alive())
        || scene.hog.get() != 1
    {
        eprintln!("skipped: cannot run a real-time spinner on CPU 1");
        scene.hog.set(2);
        [victim, survivor, hog, holder].into_iter().for_each(stop);
        return;
    }
    scene.go.set();
    assert!(scene.retaken.wait_timeout(GUARD).unwrap());
    victim.kill().unwrap();
    scene.hog.set(2);
    assert!(hog.join_timeout(GUARD).unwrap());
    stop(victim);
    scene.go2.set();
    let got = scene.got.wait_timeout(GUARD).unwrap();
    assert!(holder.join_timeout(GUARD).unwrap());
    if !got {
        let _ = survivor.kill();
    }
    assert!(survivor.join_timeout(GUARD).unwrap());
    assert!(got, "the surviving waiter was left asleep");
}
