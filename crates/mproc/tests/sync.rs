//! Lock, RLock, Semaphore, BoundedSemaphore, Event, Condition and Barrier
//! across processes.
//!
//! Provenance: the behaviours CPython's `Lib/test/_test_multiprocessing.py`
//! checks for these objects (`_TestLock`, `_TestSemaphore`,
//! `_TestCondition`, `_TestEvent`, `_TestBarrier`, the latter itself taken
//! from `Lib/test/lock_tests.py`), rewritten in Rust with the objects passed
//! to child processes in their arguments. Where CPython appends to a shared
//! list or bumps a `Value`, these tests release a `Semaphore` used as a
//! counter. Added: the failure paths CPython cannot offer (a holder killed
//! with SIGKILL, a barrier party killed).
//!
//! No test sleeps to synchronise: they wait on events, semaphores and
//! joins. A few children sleep to *be late* (the behaviour under test), and
//! timings are asserted as lower bounds with generous upper guards.

use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use mproc::{
    Barrier, BoundedSemaphore, Condition, Error, Event, Lock, LockError, Process, RLock, Semaphore,
    StartMethod,
};

/// An upper guard for waits that should end at once: generous, so that a
/// loaded machine does not fail the suite.
const GENEROUS: Duration = Duration::from_secs(10);

/// Waits for `n` permits of `sem`, each within [`GENEROUS`].
fn take(sem: &Semaphore, n: u32) {
    for i in 0..n {
        assert!(
            sem.acquire_timeout(GENEROUS).unwrap(),
            "permit {i} of {n} never came"
        );
    }
}

fn start(p: &mut Process) {
    p.start().unwrap();
}

fn join_ok(p: &mut Process) {
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0), "child {} failed", p.get_name());
}

// ---------------------------------------------------------------- Lock

/// `_TestLock.test_lock`.
#[test]
fn lock_sequence() {
    let lock = Lock::new().unwrap();
    lock.acquire().unwrap();
    assert!(!lock.try_acquire().unwrap());
    assert!(lock.is_locked());
    lock.release().unwrap();
    assert!(lock.release().is_err(), "releasing an unlocked lock");
    assert!(lock.try_acquire().unwrap());
    lock.release().unwrap();
}

/// `_TestLock.test_rlock`.
#[test]
fn rlock_sequence() {
    let lock = RLock::new().unwrap();
    lock.acquire().unwrap();
    lock.acquire().unwrap();
    lock.acquire().unwrap();
    lock.release().unwrap();
    lock.release().unwrap();
    lock.release().unwrap();
    assert!(lock.release().is_err());
}

fn hold_until((lock, held, done): (Lock, Event, Event)) {
    let _g = lock.lock().unwrap();
    held.set();
    done.wait().unwrap();
}

fn try_lock_and_release((lock, rlock): (Lock, RLock)) -> (bool, bool, bool) {
    (
        lock.try_acquire().unwrap(),
        lock.release().is_err(),
        rlock.release().is_err(),
    )
}

/// A lock held in one process is held for the others; only the owner
/// releases it (DESIGN.md, decision 9).
#[test]
fn lock_is_shared_and_owned() {
    let (lock, held, done) = (
        Lock::new().unwrap(),
        Event::new().unwrap(),
        Event::new().unwrap(),
    );
    let mut p = Process::new(hold_until, (lock.clone(), held.clone(), done.clone()));
    start(&mut p);
    held.wait().unwrap();
    assert!(!lock.try_acquire().unwrap());
    assert!(lock.is_locked());
    assert!(lock.release().is_err(), "release by a non-owner process");
    done.set();
    join_ok(&mut p);
    assert!(lock.acquire_timeout(GENEROUS).unwrap());

    // Held here: a child can neither take nor release it.
    let rlock = RLock::new().unwrap();
    let _g = rlock.lock().unwrap();
    let (took, lock_refused, rlock_refused) =
        mproc::spawn(try_lock_and_release, (lock.clone(), rlock.clone()))
            .unwrap()
            .join()
            .unwrap();
    assert!(!took && lock_refused && rlock_refused);
    // Nor can another thread of this process.
    thread::scope(|s| {
        s.spawn(|| {
            assert!(lock.release().is_err());
            assert!(rlock.release().is_err());
        });
    });
    lock.release().unwrap();
}

fn hold_both_forever((lock, rlock, held, never): (Lock, RLock, Event, Event)) {
    lock.acquire().unwrap();
    rlock.acquire().unwrap();
    rlock.acquire().unwrap();
    held.set();
    never.wait().unwrap();
}

/// A holder killed with SIGKILL: the next acquirer gets the lock and
/// `OwnerDied` (CPython hangs here: python/cpython#88304).
#[test]
fn killed_holder_is_reported() {
    let (lock, rlock) = (Lock::new().unwrap(), RLock::new().unwrap());
    let (held, never) = (Event::new().unwrap(), Event::new().unwrap());
    let mut p = Process::new(
        hold_both_forever,
        (lock.clone(), rlock.clone(), held.clone(), never),
    );
    start(&mut p);
    assert!(held.wait_timeout(GENEROUS).unwrap());
    p.kill().unwrap();
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(-9));

    match lock.acquire() {
        Err(LockError::OwnerDied(())) => {}
        other => panic!("expected OwnerDied, got {other:?}"),
    }
    lock.release().unwrap();
    lock.acquire().unwrap(); // clean now
    lock.release().unwrap();

    let guard = match rlock.lock() {
        Err(LockError::OwnerDied(g)) => g,
        other => panic!("expected OwnerDied, got {other:?}"),
    };
    assert!(
        rlock.is_locked(),
        "the guard of an owner death holds the lock"
    );
    thread::scope(|s| {
        let other = s.spawn(|| rlock.try_acquire().unwrap()).join().unwrap();
        assert!(!other, "another thread got a lock the guard holds");
    });
    drop(guard);
    assert!(!rlock.is_locked(), "the dead owner's levels are gone");
    let _clean = rlock.lock().unwrap();
}

fn hold_value_forever((value, held, never): (mproc::Value<u64>, Event, Event)) {
    let mut guard = value.lock().unwrap();
    *guard = 7;
    held.set();
    never.wait().unwrap();
}

/// `lock()` after an owner death gives a guard that holds the lock (it
/// used to release it on the way out), for a `Lock` and a `Value`.
#[test]
fn the_guard_of_an_owner_death_holds_the_lock() {
    let (held, never) = (Event::new().unwrap(), Event::new().unwrap());
    let value = mproc::Value::new(0u64).unwrap();
    let mut p = Process::new(hold_value_forever, (value.clone(), held.clone(), never));
    start(&mut p);
    assert!(held.wait_timeout(GENEROUS).unwrap());
    p.kill().unwrap();
    p.join().unwrap();
    let guard = match value.lock() {
        Err(LockError::OwnerDied(g)) => g,
        other => panic!("expected OwnerDied, got {other:?}"),
    };
    assert_eq!(*guard, 7);
    assert!(value.get_lock().is_locked());
    thread::scope(|s| {
        let other = s
            .spawn(|| value.get_lock().try_acquire().unwrap())
            .join()
            .unwrap();
        assert!(!other, "another thread got the value's lock");
    });
    drop(guard);
    assert!(!value.get_lock().is_locked());
}

fn lock_and_die((lock, held): (Lock, Event)) {
    std::mem::forget(lock.lock().unwrap());
    held.set();
    // Ends without releasing: the thread is gone, the lock is not.
}

/// A holder that ended holding the lock is seen dead by `try_acquire` and
/// by a timed acquisition alone (nobody blocks forever), and even before
/// it is reaped (a zombie: its parent is this thread, which has not joined
/// it yet).
#[test]
fn a_dead_holder_is_seen_by_try_and_timed_acquisitions_before_its_reaping() {
    mproc::set_fork_warning(false);
    for timed in [false, true] {
        let lock = Lock::new().unwrap();
        let held = Event::new().unwrap();
        let mut p = Process::new(lock_and_die, (lock.clone(), held.clone()))
            .start_method(StartMethod::Fork);
        start(&mut p);
        assert!(held.wait_timeout(GENEROUS).unwrap());
        let deadline = Instant::now() + GENEROUS;
        let got = loop {
            let r = match timed {
                false => lock.try_acquire(),
                true => lock.acquire_timeout(Duration::from_millis(5)),
            };
            match r {
                Ok(false) if Instant::now() < deadline => thread::yield_now(),
                other => break other,
            }
        };
        assert!(matches!(got, Err(LockError::OwnerDied(true))), "{got:?}");
        lock.release().unwrap();
        join_ok(&mut p);
    }
}

// ---------------------------------------------------------------- Semaphore

/// `_TestSemaphore._test_semaphore` and `test_semaphore`.
#[test]
fn semaphore_sequence() {
    let sem = Semaphore::new(2).unwrap();
    assert_eq!(sem.value(), 2);
    sem.acquire().unwrap();
    assert_eq!(sem.value(), 1);
    sem.acquire().unwrap();
    assert_eq!(sem.value(), 0);
    assert!(!sem.try_acquire());
    assert_eq!(sem.value(), 0);
    sem.release().unwrap();
    assert_eq!(sem.value(), 1);
    sem.release().unwrap();
    assert_eq!(sem.value(), 2);
    sem.release().unwrap(); // unbounded
    assert_eq!(sem.value(), 3);
}

/// `_TestSemaphore.test_bounded_semaphore`.
#[test]
fn bounded_semaphore_refuses_over_release() {
    let sem = BoundedSemaphore::new(2).unwrap();
    sem.acquire().unwrap();
    sem.acquire().unwrap();
    sem.release().unwrap();
    sem.release().unwrap();
    assert_eq!(sem.value(), 2);
    assert!(matches!(sem.release(), Err(Error::InvalidState(_))));
    assert_eq!(sem.value(), 2);
    let over = mproc::spawn(|s: BoundedSemaphore| s.release().is_err(), sem.clone())
        .unwrap()
        .join()
        .unwrap();
    assert!(over, "a child's over-release is refused too");
    assert!(Semaphore::new(mproc::SEM_VALUE_MAX + 1).is_err());
}

/// `_TestSemaphore.test_timeout`.
#[test]
fn semaphore_timeouts() {
    let sem = Semaphore::new(0).unwrap();
    let t = Instant::now();
    assert!(!sem.try_acquire());
    assert!(!sem.acquire_timeout(Duration::ZERO).unwrap());
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "a zero timeout blocked"
    );
    let t = Instant::now();
    assert!(!sem.acquire_timeout(Duration::from_millis(100)).unwrap());
    let waited = t.elapsed();
    assert!(waited >= Duration::from_millis(100), "{waited:?}");
    assert!(waited < GENEROUS, "{waited:?}");
}

fn bounded_section((sem, inside, over, done): (Semaphore, Semaphore, Semaphore, Semaphore)) {
    for _ in 0..200 {
        let _permit = sem.permit().unwrap();
        inside.release().unwrap();
        if inside.value() > 2 {
            over.release().unwrap();
        }
        assert!(inside.try_acquire());
    }
    done.release().unwrap();
}

/// At most `value` processes hold a permit at once; permits released in
/// children reach the parent.
#[test]
fn semaphore_bounds_a_section_across_processes() {
    let sem = Semaphore::new(2).unwrap();
    let (inside, over, done) = (
        Semaphore::new(0).unwrap(),
        Semaphore::new(0).unwrap(),
        Semaphore::new(0).unwrap(),
    );
    let mut children: Vec<_> = (0..4)
        .map(|_| {
            Process::new(
                bounded_section,
                (sem.clone(), inside.clone(), over.clone(), done.clone()),
            )
        })
        .collect();
    children.iter_mut().for_each(start);
    take(&done, 4);
    children.iter_mut().for_each(join_ok);
    assert_eq!(over.value(), 0, "more than 2 processes held a permit");
    assert_eq!(sem.value(), 2);
}

fn release_after(sem: Semaphore) {
    sem.release().unwrap();
}

/// A parent blocked on an empty semaphore is woken by a child's release.
#[test]
fn semaphore_release_wakes_another_process() {
    let sem = Semaphore::new(0).unwrap();
    let mut children: Vec<_> = (0..3)
        .map(|_| Process::new(release_after, sem.clone()))
        .collect();
    children.iter_mut().for_each(start);
    for _ in 0..3 {
        sem.acquire().unwrap();
    }
    children.iter_mut().for_each(join_ok);
    assert_eq!(sem.value(), 0);
}

// ---------------------------------------------------------------- Event

fn set_later(event: Event) {
    thread::sleep(Duration::from_millis(50)); // late on purpose
    event.set();
}

/// `_TestEvent.test_event`.
#[test]
fn event_sequence_and_timings() {
    let event = Event::new().unwrap();
    assert!(!event.is_set());

    let t = Instant::now();
    assert!(!event.wait_timeout(Duration::ZERO).unwrap());
    assert!(t.elapsed() < Duration::from_secs(1));

    let t = Instant::now();
    assert!(!event.wait_timeout(Duration::from_millis(100)).unwrap());
    let waited = t.elapsed();
    assert!(waited >= Duration::from_millis(100), "{waited:?}");
    assert!(waited < GENEROUS, "{waited:?}");

    event.set();
    assert!(event.is_set());
    event.wait().unwrap();
    assert!(event.wait_timeout(Duration::from_millis(100)).unwrap());
    event.clear();
    assert!(!event.is_set());

    let mut p = Process::new(set_later, event.clone());
    start(&mut p);
    assert!(event.wait_timeout(GENEROUS).unwrap());
    assert!(event.is_set());
    join_ok(&mut p);
}

fn wait_then_report((event, ready, woken): (Event, Semaphore, Semaphore)) {
    ready.release().unwrap();
    assert!(event.wait_timeout(GENEROUS).unwrap());
    woken.release().unwrap();
}

/// One `set` releases every waiting process and thread.
#[test]
fn event_set_releases_all_waiters() {
    let event = Event::new().unwrap();
    let (ready, woken) = (Semaphore::new(0).unwrap(), Semaphore::new(0).unwrap());
    let mut children: Vec<_> = (0..3)
        .map(|_| {
            Process::new(
                wait_then_report,
                (event.clone(), ready.clone(), woken.clone()),
            )
        })
        .collect();
    children.iter_mut().for_each(start);
    thread::scope(|s| {
        for _ in 0..2 {
            let args = (event.clone(), ready.clone(), woken.clone());
            s.spawn(move || wait_then_report(args));
        }
        take(&ready, 5);
        event.set();
        take(&woken, 5);
    });
    children.iter_mut().for_each(join_ok);
}

fn event_echo((ping, pong): (Event, Event)) {
    for _ in 0..1000 {
        assert!(ping.wait_timeout(GENEROUS).unwrap());
        ping.clear();
        pong.set();
    }
}

/// Ping-pong between two processes: no wake-up is lost.
#[test]
fn event_ping_pong() {
    let (ping, pong) = (Event::new().unwrap(), Event::new().unwrap());
    let mut p = Process::new(event_echo, (ping.clone(), pong.clone()));
    start(&mut p);
    for _ in 0..1000 {
        ping.set();
        assert!(pong.wait_timeout(GENEROUS).unwrap());
        pong.clear();
    }
    join_ok(&mut p);
}

/// Handles travel under every start method.
#[test]
fn event_travels_under_every_start_method() {
    mproc::set_fork_warning(false);
    for method in [
        StartMethod::Fork,
        StartMethod::Spawn,
        StartMethod::ForkServer,
    ] {
        let event = Event::new().unwrap();
        let mut p = Process::new(|e: Event| e.set(), event.clone()).start_method(method);
        start(&mut p);
        assert!(event.wait_timeout(GENEROUS).unwrap(), "{method}");
        join_ok(&mut p);
    }
}

// ---------------------------------------------------------------- Condition

/// CPython's `_TestCondition.f`: announce sleeping, wait, announce woken.
fn cond_waiter(
    (cond, sleeping, woken, timeout): (Condition, Semaphore, Semaphore, Option<Duration>),
) {
    let _g = cond.lock().unwrap();
    sleeping.release().unwrap();
    match timeout {
        None => cond.wait().unwrap(),
        Some(t) => {
            cond.wait_timeout(t).unwrap();
        }
    }
    woken.release().unwrap();
}

/// Starts 3 waiting processes and 3 waiting threads; returns the processes.
fn six_waiters<'s>(
    s: &'s thread::Scope<'s, '_>,
    cond: &Condition,
    sleeping: &Semaphore,
    woken: &Semaphore,
    timeout: Option<Duration>,
) -> Vec<Process> {
    let mut children: Vec<_> = (0..3)
        .map(|_| {
            Process::new(
                cond_waiter,
                (cond.clone(), sleeping.clone(), woken.clone(), timeout),
            )
        })
        .collect();
    children.iter_mut().for_each(start);
    for _ in 0..3 {
        let args = (cond.clone(), sleeping.clone(), woken.clone(), timeout);
        s.spawn(move || cond_waiter(args));
    }
    children
}

fn notify(cond: &Condition, n: usize) {
    let _g = cond.lock().unwrap();
    cond.notify(n).unwrap();
}

/// `_TestCondition.test_notify_n`: notify(2) of 6 waiters wakes exactly 2.
#[test]
fn condition_notify_n_wakes_exactly_n() {
    let cond = Condition::new().unwrap();
    let (sleeping, woken) = (Semaphore::new(0).unwrap(), Semaphore::new(0).unwrap());
    thread::scope(|s| {
        let mut children = six_waiters(s, &cond, &sleeping, &woken, None);
        take(&sleeping, 6);
        // Each released `sleeping` holding the lock and waits, so once the
        // lock is ours all six are waiting.
        assert!(!woken.acquire_timeout(Duration::from_millis(50)).unwrap());

        notify(&cond, 2);
        take(&woken, 2);
        assert!(
            !woken.acquire_timeout(Duration::from_millis(100)).unwrap(),
            "notify(2) woke more than 2"
        );

        notify(&cond, 4);
        take(&woken, 4);

        notify(&cond, 3); // nobody left: nothing happens
        assert_eq!(woken.value(), 0);
        children.iter_mut().for_each(join_ok);
    });
}

/// `_TestCondition.test_notify` and `test_notify_all`.
#[test]
fn condition_notify_one_then_all() {
    let cond = Condition::new().unwrap();
    let (sleeping, woken) = (Semaphore::new(0).unwrap(), Semaphore::new(0).unwrap());
    thread::scope(|s| {
        // Waiters that time out, on their own.
        let mut timed = six_waiters(s, &cond, &sleeping, &woken, Some(Duration::from_millis(50)));
        take(&sleeping, 6);
        take(&woken, 6);
        timed.iter_mut().for_each(join_ok);

        let mut children = six_waiters(s, &cond, &sleeping, &woken, None);
        take(&sleeping, 6);
        notify(&cond, 1);
        take(&woken, 1);
        assert!(!woken.acquire_timeout(Duration::from_millis(50)).unwrap());
        {
            let _g = cond.lock().unwrap();
            cond.notify_all().unwrap();
        }
        take(&woken, 5);
        children.iter_mut().for_each(join_ok);
    });
}

/// A consumer of the bounded stress test: takes items under the condition
/// until `total` have been taken.
fn consume((cond, items, taken, total): (Condition, Semaphore, Semaphore, u32)) {
    let _g = cond.lock().unwrap();
    loop {
        let ready = cond
            .wait_for_timeout(|| items.value() > 0 || taken.value() >= total, GENEROUS)
            .unwrap();
        assert!(ready, "a consumer starved: a notification was lost");
        if taken.value() >= total {
            return;
        }
        assert!(items.try_acquire());
        taken.release().unwrap();
        if taken.value() >= total {
            cond.notify_all().unwrap();
            return;
        }
    }
}

fn produce((cond, items, n): (Condition, Semaphore, u32)) {
    for _ in 0..n {
        let _g = cond.lock().unwrap();
        items.release().unwrap();
        cond.notify(1).unwrap();
    }
}

/// Producers and consumers in four processes and two threads, each item
/// announced by one `notify(1)`: a lost notification starves a consumer.
#[test]
fn condition_producers_and_consumers() {
    let cond = Condition::new().unwrap();
    let (items, taken) = (Semaphore::new(0).unwrap(), Semaphore::new(0).unwrap());
    let (per_producer, producers) = (500, 3);
    let total = per_producer * producers;
    let mut consumers: Vec<_> = (0..2)
        .map(|_| Process::new(consume, (cond.clone(), items.clone(), taken.clone(), total)))
        .collect();
    consumers.iter_mut().for_each(start);
    let mut makers: Vec<_> = (0..2)
        .map(|_| Process::new(produce, (cond.clone(), items.clone(), per_producer)))
        .collect();
    makers.iter_mut().for_each(start);
    thread::scope(|s| {
        let args = (cond.clone(), items.clone(), taken.clone(), total);
        s.spawn(move || consume(args));
        produce((cond.clone(), items.clone(), per_producer));
    });
    makers.iter_mut().for_each(join_ok);
    consumers.iter_mut().for_each(join_ok);
    assert_eq!((taken.value(), items.value()), (total, 0));
}

fn waitfor_child((cond, state, success): (Condition, Semaphore, Event)) {
    let _g = cond.lock().unwrap();
    state.release().unwrap(); // state = 1
    cond.notify(1).unwrap();
    cond.wait_for(|| state.value() == 5).unwrap();
    if state.value() == 5 {
        success.set();
    }
}

/// `_TestCondition.test_waitfor` (`state` a semaphore's value).
#[test]
fn condition_wait_for() {
    let cond = Condition::new().unwrap();
    let (state, success) = (Semaphore::new(0).unwrap(), Event::new().unwrap());
    let mut p = Process::new(
        waitfor_child,
        (cond.clone(), state.clone(), success.clone()),
    );
    {
        let _g = cond.lock().unwrap();
        start(&mut p);
        let ok = cond
            .wait_for_timeout(|| state.value() == 1, GENEROUS)
            .unwrap();
        assert!(ok);
    }
    for _ in 0..4 {
        let _g = cond.lock().unwrap();
        state.release().unwrap();
        cond.notify(1).unwrap();
    }
    join_ok(&mut p);
    assert!(success.is_set());
}

fn waitfor_timeout_child((cond, state, ready): (Condition, Semaphore, Event)) -> (bool, Duration) {
    let _g = cond.lock().unwrap();
    ready.set();
    let t = Instant::now();
    let r = cond
        .wait_for_timeout(|| state.value() == 4, Duration::from_millis(100))
        .unwrap();
    (r, t.elapsed())
}

/// `_TestCondition.test_waitfor_timeout`: notified while the predicate stays
/// false, `wait_for_timeout` returns `false` after the timeout.
#[test]
fn condition_wait_for_timeout() {
    let cond = Condition::new().unwrap();
    let (state, ready) = (Semaphore::new(0).unwrap(), Event::new().unwrap());
    let h = mproc::spawn(
        waitfor_timeout_child,
        (cond.clone(), state.clone(), ready.clone()),
    )
    .unwrap();
    assert!(ready.wait_timeout(GENEROUS).unwrap());
    for _ in 0..3 {
        notify(&cond, 1);
    }
    let (result, waited) = h.join().unwrap();
    assert!(!result);
    assert!(waited >= Duration::from_millis(100), "{waited:?}");
    assert!(waited < GENEROUS, "{waited:?}");
}

fn notify_when_started((cond, started): (Condition, Event)) {
    started.wait().unwrap();
    let _g = cond.lock().unwrap();
    cond.notify(1).unwrap();
}

/// `_TestCondition.test_wait_result`: `false` on timeout, `true` when
/// notified.
#[test]
fn condition_wait_result() {
    let cond = Condition::new().unwrap();
    let _g = cond.lock().unwrap();
    let t = Instant::now();
    assert!(!cond.wait_timeout(Duration::from_millis(100)).unwrap());
    assert!(t.elapsed() >= Duration::from_millis(100));
    assert!(!cond.wait_timeout(Duration::ZERO).unwrap());

    let started = Event::new().unwrap();
    let mut p = Process::new(notify_when_started, (cond.clone(), started.clone()));
    start(&mut p);
    started.set(); // the child notifies once our wait released the lock
    assert!(cond.wait_timeout(GENEROUS).unwrap());
    drop(_g);
    join_ok(&mut p);
}

fn take_rlock((cond, got): (Condition, Event)) {
    let _g = cond.lock().unwrap();
    got.set();
    cond.notify(1).unwrap();
}

/// A wait releases every level of an RLock held three times, and restores
/// all three.
#[test]
fn condition_wait_releases_every_rlock_level() {
    let rlock = RLock::new().unwrap();
    let cond = Condition::with_lock(rlock.clone()).unwrap();
    for _ in 0..3 {
        cond.acquire().unwrap();
    }
    let got = Event::new().unwrap();
    let mut p = Process::new(take_rlock, (cond.clone(), got.clone()));
    start(&mut p);
    assert!(cond.wait_for_timeout(|| got.is_set(), GENEROUS).unwrap());
    join_ok(&mut p);
    for _ in 0..3 {
        cond.release().unwrap();
    }
    assert!(cond.release().is_err(), "exactly three levels came back");
    assert!(!rlock.is_locked());
}

/// Waiting or notifying without the lock is an error, over a `Lock` as over
/// an `RLock`, and in another thread than the holder's.
#[test]
fn condition_requires_the_lock() {
    for cond in [
        Condition::new().unwrap(),
        Condition::with_lock(Lock::new().unwrap()).unwrap(),
    ] {
        assert!(matches!(
            cond.wait(),
            Err(LockError::Failed(Error::InvalidState(_)))
        ));
        assert!(matches!(
            cond.wait_timeout(Duration::ZERO),
            Err(LockError::Failed(Error::InvalidState(_)))
        ));
        assert!(matches!(cond.notify(1), Err(Error::InvalidState(_))));
        assert!(matches!(cond.notify_all(), Err(Error::InvalidState(_))));
        let _g = cond.lock().unwrap();
        cond.notify(1).unwrap();
        thread::scope(|s| {
            s.spawn(|| {
                assert!(cond.notify(1).is_err());
                assert!(cond.wait_timeout(Duration::ZERO).is_err());
            });
        });
    }
}

fn notify_and_hang((cond, holding, never): (Condition, Event, Event)) {
    let _g = cond.lock().unwrap();
    cond.notify(1).unwrap();
    holding.set();
    never.wait().unwrap();
}

/// The lock's holder dies while a thread waits: the waiter takes the lock
/// back and learns it through `OwnerDied`.
#[test]
fn condition_wait_reports_owner_death() {
    let cond = Condition::with_lock(Lock::new().unwrap()).unwrap();
    let (holding, never) = (Event::new().unwrap(), Event::new().unwrap());
    let ready = Event::new().unwrap();
    let mut p = Process::new(notify_and_hang, (cond.clone(), holding.clone(), never));
    thread::scope(|s| {
        let waiter = s.spawn(|| {
            let _g = cond.lock().unwrap();
            ready.set();
            let r = cond.wait_timeout(GENEROUS);
            cond.notify(1).unwrap(); // the lock is this thread's again
            r
        });
        assert!(ready.wait_timeout(GENEROUS).unwrap());
        start(&mut p); // it gets the lock once the thread waits
        assert!(holding.wait_timeout(GENEROUS).unwrap());
        p.kill().unwrap();
        p.join().unwrap();
        match waiter.join().unwrap() {
            Err(LockError::OwnerDied(notified)) => assert!(notified),
            other => panic!("expected OwnerDied, got {other:?}"),
        }
    });
}

/// In a child's main thread (where mproc forks directly): holds a lock,
/// forks, and asks whether the grandchild believes it holds the lock.
fn fork_while_holding(cond: Condition) -> bool {
    mproc::set_fork_warning(false);
    let _g = cond.lock().unwrap();
    cond.notify(1).unwrap(); // this thread's id is cached now
    let theirs = cond.clone();
    mproc::fork(move || theirs.notify(1).is_err())
        .unwrap()
        .join()
        .unwrap()
}

/// A forked child's only thread is not the thread that forked it: it must
/// not think it holds the parent's lock (the cached thread id is
/// forgotten at fork).
#[test]
fn forked_child_does_not_hold_the_parents_lock() {
    let cond = Condition::with_lock(Lock::new().unwrap()).unwrap();
    let refused = mproc::spawn(fork_while_holding, cond)
        .unwrap()
        .join()
        .unwrap();
    assert!(refused, "the grandchild took its parent's lock for its own");
}

// ---------------------------------------------------------------- Barrier

/// CPython's `_TestBarrier.multipass`, counting with semaphores: in each
/// round, everyone arrives before anyone leaves.
fn lockstep((barrier, arrived, left, rounds): (Barrier, Semaphore, Semaphore, u32)) {
    let m = barrier.parties() as u32;
    for i in 0..rounds {
        arrived.release().unwrap();
        assert_eq!(left.value(), i * m, "round {i}: someone left early");
        barrier.wait_timeout(GENEROUS).unwrap();
        left.release().unwrap();
        assert_eq!(
            arrived.value(),
            (i + 1) * m,
            "round {i}: someone arrived late"
        );
        barrier.wait_timeout(GENEROUS).unwrap();
    }
}

/// `_TestBarrier.test_barrier` and `test_thousand`: 1,000 rounds in
/// lockstep with 5 processes.
#[test]
fn barrier_lockstep_1000_rounds_5_processes() {
    let barrier = Barrier::new(5).unwrap();
    let (arrived, left) = (Semaphore::new(0).unwrap(), Semaphore::new(0).unwrap());
    let mut children: Vec<_> = (0..5)
        .map(|_| {
            Process::new(
                lockstep,
                (barrier.clone(), arrived.clone(), left.clone(), 1000),
            )
        })
        .collect();
    children.iter_mut().for_each(start);
    children.iter_mut().for_each(join_ok);
    assert_eq!(arrived.value(), 5000);
    assert!(!barrier.is_broken());
}

fn indices((barrier, rounds): (Barrier, usize)) -> Vec<usize> {
    (0..rounds)
        .map(|_| barrier.wait_timeout(GENEROUS).unwrap())
        .collect()
}

/// `_TestBarrier.test_wait_return`: in each cycle the indices are a
/// permutation of `0..parties` (exactly one party gets 0).
#[test]
fn barrier_indices_are_unique_per_cycle() {
    let barrier = Barrier::new(4).unwrap();
    let handles: Vec<_> = (0..4)
        .map(|_| mproc::spawn(indices, (barrier.clone(), 20)).unwrap())
        .collect();
    let all: Vec<Vec<usize>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    for round in 0..20 {
        let mut seen: Vec<usize> = all.iter().map(|v| v[round]).collect();
        seen.sort();
        assert_eq!(seen, vec![0, 1, 2, 3], "round {round}");
    }
}

static ACTION_RUNS: OnceLock<Semaphore> = OnceLock::new();

fn count_action() {
    ACTION_RUNS
        .get()
        .expect("set before waiting")
        .release()
        .unwrap();
}

fn action_party((barrier, runs, rounds): (Barrier, Semaphore, u32)) {
    let _ = ACTION_RUNS.set(runs);
    for _ in 0..rounds {
        barrier.wait_timeout(GENEROUS).unwrap();
    }
}

/// `_TestBarrier.test_action`: the action runs exactly once per cycle,
/// whichever process arrives last.
#[test]
fn barrier_action_runs_once_per_cycle() {
    let runs = Semaphore::new(0).unwrap();
    let barrier = Barrier::builder(3).action(count_action).build().unwrap();
    let mut children: Vec<_> = (0..3)
        .map(|_| Process::new(action_party, (barrier.clone(), runs.clone(), 10)))
        .collect();
    children.iter_mut().for_each(start);
    children.iter_mut().for_each(join_ok);
    assert_eq!(runs.value(), 10);
}

fn failing_action() {
    panic!("the action fails");
}

fn party_outcome(barrier: Barrier) -> Result<usize, String> {
    barrier.wait_timeout(GENEROUS).map_err(|e| e.to_string())
}

/// A panicking action breaks the barrier: its party panics, the others get
/// `BrokenBarrier`.
#[test]
fn barrier_failing_action_breaks_it() {
    let barrier = Barrier::builder(3).action(failing_action).build().unwrap();
    let handles: Vec<_> = (0..3)
        .map(|_| mproc::spawn(party_outcome, barrier.clone()).unwrap())
        .collect();
    let mut panicked = 0;
    let mut broken = 0;
    for h in handles {
        match h.join() {
            Err(Error::Panicked { message, .. }) => {
                assert!(message.contains("the action fails"));
                panicked += 1;
            }
            Ok(Err(m)) if m == Error::BrokenBarrier.to_string() => broken += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((panicked, broken), (1, 2));
    assert!(barrier.is_broken());
    assert!(matches!(barrier.wait(), Err(Error::BrokenBarrier)));
}

#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
enum Fate {
    Passed,
    Broken,
    Aborted,
}

/// `_TestBarrier._test_abort_f`.
fn abort_party((barrier, n): (Barrier, usize)) -> Fate {
    match barrier.wait_timeout(GENEROUS) {
        Ok(i) if i == n / 2 => {
            barrier.abort();
            Fate::Aborted
        }
        Ok(_) => match barrier.wait_timeout(GENEROUS) {
            Ok(_) => Fate::Passed,
            Err(Error::BrokenBarrier) => Fate::Broken,
            Err(e) => panic!("{e}"),
        },
        Err(e) => panic!("{e}"),
    }
}

/// `_TestBarrier.test_abort`.
#[test]
fn barrier_abort_breaks_waiters() {
    let n = 5;
    let barrier = Barrier::new(n as u32).unwrap();
    let fates: Vec<Fate> = (0..n)
        .map(|_| mproc::spawn(abort_party, (barrier.clone(), n)).unwrap())
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    assert_eq!(fates.iter().filter(|f| **f == Fate::Aborted).count(), 1);
    assert_eq!(fates.iter().filter(|f| **f == Fate::Broken).count(), n - 1);
    assert!(barrier.is_broken());
}

/// `_TestBarrier._test_reset_f`.
fn reset_party((barrier, n): (Barrier, usize)) -> Fate {
    let fate = if barrier.wait_timeout(GENEROUS).unwrap() == n / 2 {
        let deadline = Instant::now() + GENEROUS;
        while barrier.n_waiting() < n - 1 {
            assert!(Instant::now() < deadline, "the others never came back");
            thread::yield_now();
        }
        barrier.reset();
        Fate::Aborted
    } else {
        match barrier.wait_timeout(GENEROUS) {
            Ok(_) => Fate::Passed,
            Err(Error::BrokenBarrier) => Fate::Broken,
            Err(e) => panic!("{e}"),
        }
    };
    barrier.wait_timeout(GENEROUS).unwrap(); // usable again
    fate
}

/// `_TestBarrier.test_reset`: a reset breaks the waiters and leaves the
/// barrier usable.
#[test]
fn barrier_reset_breaks_waiters_then_works() {
    let n = 4;
    let barrier = Barrier::new(n as u32).unwrap();
    let fates: Vec<Fate> = (0..n)
        .map(|_| mproc::spawn(reset_party, (barrier.clone(), n)).unwrap())
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    assert_eq!(fates.iter().filter(|f| **f == Fate::Broken).count(), n - 1);
    assert!(!barrier.is_broken());
}

/// `_TestBarrier._test_abort_and_reset_f`.
fn abort_and_reset_party((barrier, barrier2, n): (Barrier, Barrier, usize)) -> Fate {
    let fate = match barrier.wait_timeout(GENEROUS) {
        Ok(i) if i == n / 2 => {
            barrier.abort();
            Fate::Aborted
        }
        Ok(_) => match barrier.wait_timeout(GENEROUS) {
            Ok(_) => Fate::Passed,
            Err(_) => Fate::Broken,
        },
        Err(e) => panic!("{e}"),
    };
    // Everyone has left `barrier` when it is reset, and nobody enters it
    // before.
    if barrier2.wait_timeout(GENEROUS).unwrap() == n / 2 {
        barrier.reset();
    }
    barrier2.wait_timeout(GENEROUS).unwrap();
    barrier.wait_timeout(GENEROUS).unwrap();
    fate
}

/// `_TestBarrier.test_abort_and_reset`.
#[test]
fn barrier_abort_then_reset() {
    let n = 4;
    let (barrier, barrier2) = (
        Barrier::new(n as u32).unwrap(),
        Barrier::new(n as u32).unwrap(),
    );
    let fates: Vec<Fate> = (0..n)
        .map(|_| {
            mproc::spawn(
                abort_and_reset_party,
                (barrier.clone(), barrier2.clone(), n),
            )
            .unwrap()
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    assert_eq!(fates.iter().filter(|f| **f == Fate::Broken).count(), n - 1);
    assert!(!barrier.is_broken());
}

/// `_TestBarrier._test_timeout_f`: one party is late; the others' timeout
/// breaks the barrier for everyone, the late one included.
fn late_party((barrier, n, timeout): (Barrier, usize, Option<Duration>)) -> bool {
    if barrier.wait_timeout(GENEROUS).unwrap() == n / 2 {
        thread::sleep(Duration::from_millis(300)); // late on purpose
    }
    let r = match timeout {
        Some(t) => barrier.wait_timeout(t),
        None => barrier.wait(),
    };
    matches!(r, Err(Error::BrokenBarrier))
}

/// `_TestBarrier.test_timeout`.
#[test]
fn barrier_timeout_breaks_it_for_all() {
    let n = 4;
    let barrier = Barrier::new(n as u32).unwrap();
    let handles: Vec<_> = (0..n)
        .map(|_| {
            mproc::spawn(
                late_party,
                (barrier.clone(), n, Some(Duration::from_millis(100))),
            )
            .unwrap()
        })
        .collect();
    for h in handles {
        assert!(h.join().unwrap(), "every party sees the barrier broken");
    }
    assert!(barrier.is_broken());
}

/// `_TestBarrier.test_default_timeout`.
#[test]
fn barrier_default_timeout() {
    let n = 4;
    let barrier = Barrier::builder(n as u32)
        .timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let handles: Vec<_> = (0..n)
        .map(|_| mproc::spawn(late_party, (barrier.clone(), n, None)).unwrap())
        .collect();
    for h in handles {
        assert!(h.join().unwrap());
    }
}

/// `_TestBarrier.test_single_thread`.
#[test]
fn barrier_of_one() {
    let barrier = Barrier::new(1).unwrap();
    for _ in 0..3 {
        assert_eq!(barrier.wait().unwrap(), 0);
    }
    assert_eq!(barrier.n_waiting(), 0);
}

fn pass_once_then_hang((barrier, never): (Barrier, Event)) {
    barrier.wait_timeout(GENEROUS).unwrap();
    never.wait().unwrap();
}

/// A party killed between two cycles: the others, waiting with a timeout,
/// get `BrokenBarrier` instead of hanging.
#[test]
fn killed_party_does_not_hang_the_others() {
    let barrier = Barrier::new(3).unwrap();
    let never = Event::new().unwrap();
    let mut doomed = Process::new(pass_once_then_hang, (barrier.clone(), never.clone()));
    let mut other = Process::new(pass_once_then_hang, (barrier.clone(), never.clone()));
    start(&mut doomed);
    start(&mut other);
    barrier.wait_timeout(GENEROUS).unwrap(); // cycle 1: all three
    doomed.kill().unwrap();
    doomed.join().unwrap();
    let t = Instant::now();
    let h = mproc::spawn(party_outcome, barrier.clone()).unwrap(); // stands in for `other`
    let mine = barrier.wait_timeout(Duration::from_millis(200));
    assert!(matches!(mine, Err(Error::BrokenBarrier)), "{mine:?}");
    assert_eq!(h.join().unwrap(), Err(Error::BrokenBarrier.to_string()));
    assert!(t.elapsed() < GENEROUS);
    other.kill().unwrap();
    other.join().unwrap();
}
