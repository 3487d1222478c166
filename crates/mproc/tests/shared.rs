//! Value, Array, RawValue and RawArray across processes.
//!
//! The behaviours CPython's `Lib/test/_test_multiprocessing.py` checks for
//! `Value`/`Array`/`RawValue`/`RawArray` (`_TestValue`, `_TestArray`:
//! values of each type written by a child, `get_lock`, a lock shared by
//! construction, arrays from a size or a sequence, out-of-range access),
//! rewritten for Rust's types, plus what CPython does not have: a value's
//! lock held by a process that is killed is recovered, not hung.

use std::fmt::Debug;
use std::time::Duration;

use bytemuck::{CheckedBitPattern, NoUninit, Pod, Zeroable};
use mproc::{
    Array, Connection, Error, Lock, LockError, Pipe, Plain, Process, RLock, RawArray, RawValue,
    Recover, SharedLock, Value,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable, Serialize, Deserialize)]
#[repr(C)]
struct Point {
    x: f64,
    y: i32,
    z: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, NoUninit, CheckedBitPattern, Serialize, Deserialize)]
#[repr(C)]
struct Flagged {
    id: u16,
    on: bool,
    off: bool,
}

/// Everything a child can be given to write.
type Objects<T> = (Value<T>, RawValue<T>, Array<T>, RawArray<T>, Vec<T>);

/// Writes `vals[0]` in the value, `vals[1]` in the raw value, `vals` in
/// the array and `vals` reversed in the raw array.
fn write_all<T: Plain>((v, rv, a, ra, vals): Objects<T>) {
    v.set(vals[0]).unwrap();
    rv.set(vals[1]);
    a.write_from(0, &vals).unwrap();
    for (i, x) in vals.iter().rev().enumerate() {
        ra.set(i, *x).unwrap();
    }
}

fn round_trip<T>(initial: T, vals: [T; 3])
where
    T: Plain + Zeroable + PartialEq + Debug + Serialize + DeserializeOwned,
{
    let v = Value::new(initial).unwrap();
    let rv = RawValue::new(initial).unwrap();
    let a = Array::<T>::new(3).unwrap();
    let ra = RawArray::<T>::new(3).unwrap();
    let args = (v.clone(), rv.clone(), a.clone(), ra.clone(), vals.to_vec());
    mproc::spawn(write_all::<T>, args).unwrap().join().unwrap();
    let mut rev = vals;
    rev.reverse();
    assert_eq!(v.get().unwrap(), vals[0]);
    assert_eq!(rv.get(), vals[1]);
    assert_eq!(a.to_vec().unwrap(), vals);
    assert_eq!(ra.to_vec(), rev);
}

#[test]
fn each_supported_type_written_by_a_child() {
    round_trip(0i8, [-1, i8::MIN, i8::MAX]);
    round_trip(0u8, [1, 2, u8::MAX]);
    round_trip(0i16, [-300, i16::MIN, i16::MAX]);
    round_trip(0u16, [300, 2, u16::MAX]);
    round_trip(0i32, [-70_000, i32::MIN, i32::MAX]);
    round_trip(0u32, [70_000, 2, u32::MAX]);
    round_trip(0i64, [-1 << 40, i64::MIN, i64::MAX]);
    round_trip(0u64, [1 << 40, 2, u64::MAX]);
    round_trip(0i128, [-1 << 100, i128::MIN, i128::MAX]);
    round_trip(0u128, [1 << 100, 2, u128::MAX]);
    round_trip(0isize, [-5, isize::MIN, isize::MAX]);
    round_trip(0usize, [5, 0, usize::MAX]);
    round_trip(0f32, [1.5, -0.25, f32::MAX]);
    round_trip(0f64, [std::f64::consts::PI, -1e300, f64::MIN_POSITIVE]);
    round_trip(false, [true, false, true]);
    round_trip('\0', ['a', 'é', '🦀']);
    round_trip([0u8; 4], [[1, 2, 3, 4], [5; 4], [255; 4]]);
    let p = |x: f64, y, z| Point { x, y, z };
    round_trip(p(0.0, 0, 0), [p(1.0, -2, 3), p(-4.5, 5, 6), p(7.0, -8, 9)]);
}

#[test]
fn structs_with_bool_fields_are_plain() {
    let f = |id, on| Flagged { id, on, off: !on };
    let v = Value::new(f(1, true)).unwrap();
    let a = Array::from_slice(&[f(2, false), f(3, true)]).unwrap();
    fn flip((v, a): (Value<Flagged>, Array<Flagged>)) {
        v.lock().unwrap().on = false;
        for x in a.lock().unwrap().iter_mut() {
            x.id *= 10;
            x.on = !x.on;
        }
    }
    mproc::spawn(flip, (v.clone(), a.clone()))
        .unwrap()
        .join()
        .unwrap();
    let got = v.get().unwrap();
    assert_eq!((got.id, got.on, got.off), (1, false, false));
    let ids: Vec<(u16, bool)> = a.to_vec().unwrap().iter().map(|x| (x.id, x.on)).collect();
    assert_eq!(ids, [(20, true), (30, false)]);
}

#[test]
fn arrays_from_a_size_or_a_slice() {
    let zeros = Array::<u32>::new(5).unwrap();
    assert_eq!((zeros.len(), zeros.is_empty()), (5, false));
    assert_eq!(zeros.to_vec().unwrap(), [0; 5]);
    let from = Array::from_slice(&[1u32, 2, 3]).unwrap();
    let mut buf = [0u32; 2];
    from.read_into(1, &mut buf).unwrap();
    assert_eq!(buf, [2, 3]);
    let raw = RawArray::from_slice(&[9i8, 8]).unwrap();
    assert_eq!(raw.to_vec(), [9, 8]);

    let empty = Array::<u64>::new(0).unwrap();
    assert!(empty.is_empty());
    assert!(empty.lock().unwrap().is_empty());
    fn len_of(a: Array<u64>) -> usize {
        a.len()
    }
    assert_eq!(mproc::spawn(len_of, empty).unwrap().join().unwrap(), 0);
    assert!(RawArray::<u8>::from_slice(&[]).unwrap().is_empty());
}

fn out_of_range<T: Debug>(r: Result<T, Error>, index: usize, len: usize) {
    match r {
        Err(Error::OutOfRange { index: i, len: l }) => assert_eq!((i, l), (index, len)),
        other => panic!("expected OutOfRange {{ {index}, {len} }}, got {other:?}"),
    }
}

#[test]
fn out_of_range_is_an_error_not_a_panic() {
    let a = Array::<i32>::new(3).unwrap();
    out_of_range(a.get(3).map_err(Error::from), 3, 3);
    out_of_range(a.set(usize::MAX, 1).map_err(Error::from), usize::MAX, 3);
    out_of_range(a.read_into(2, &mut [0; 2]).map_err(Error::from), 3, 3);
    out_of_range(a.write_from(4, &[1]).map_err(Error::from), 4, 3);
    out_of_range(
        a.write_from(usize::MAX, &[1, 2]).map_err(Error::from),
        usize::MAX,
        3,
    );
    assert_eq!(a.to_vec().unwrap(), [0; 3], "nothing written");

    let r = RawArray::<u8>::new(2).unwrap();
    out_of_range(r.get(2), 2, 2);
    out_of_range(r.set(7, 1), 7, 2);
    out_of_range(r.read_into(1, &mut [0; 2]), 2, 2);
    out_of_range(r.write_from(0, &[1, 2, 3]), 2, 2);
    assert_eq!(r.to_vec(), [0, 0]);
    assert_eq!(
        Error::OutOfRange { index: 3, len: 3 }.to_string(),
        "index 3 out of range for length 3"
    );
}

/// Whether the child could take the lock of `v` right now.
fn value_lock_free(v: Value<i32>) -> bool {
    v.try_lock().unwrap().is_some()
}

fn lock_free(lock: Lock) -> bool {
    lock.try_lock().unwrap().is_some()
}

#[test]
fn get_lock_is_the_lock_of_the_value() {
    let v = Value::new(5i32).unwrap();
    assert!(!v.get_lock().is_locked());
    let held = v.get_lock().lock().unwrap();
    assert!(v.get_lock().is_locked());
    let free = mproc::spawn(value_lock_free, v.clone()).unwrap();
    assert!(!free.join().unwrap(), "the child sees the value locked");
    // The default lock is an RLock: the holder may still use the value.
    v.set(v.get().unwrap() + 1).unwrap();
    drop(held);
    assert!(mproc::spawn(value_lock_free, v.clone())
        .unwrap()
        .join()
        .unwrap());
    assert_eq!(v.get().unwrap(), 6);
}

#[test]
fn values_and_arrays_share_a_given_lock() {
    let lock = Lock::new().unwrap();
    let v = Value::with_lock(1u64, lock.clone()).unwrap();
    let a = Array::<u8, Lock>::with_lock(2, lock.clone()).unwrap();
    let b = Array::from_slice_with_lock(&[1.0f32], lock.clone()).unwrap();
    {
        let _g = v.lock().unwrap();
        assert!(lock.is_locked());
        // The same (non-re-entrant) lock guards a: this thread holds it, so
        // a try fails (as Python's `acquire(False)`).
        assert!(matches!(a.try_lock(), Ok(None)));
        assert!(!mproc::spawn(lock_free, lock.clone())
            .unwrap()
            .join()
            .unwrap());
    }
    assert!(mproc::spawn(lock_free, lock.clone())
        .unwrap()
        .join()
        .unwrap());

    fn bump((v, a, b): (Value<u64, Lock>, Array<u8, Lock>, Array<f32, Lock>)) {
        *v.lock().unwrap() += 1;
        a.set(1, 9).unwrap();
        b.lock().unwrap()[0] *= 4.0;
        // One lock: holding it through v's guard shuts out b's guard.
        let _g = v.lock().unwrap();
        assert!(matches!(b.try_lock(), Ok(None)), "a Lock is not re-entrant");
    }
    mproc::spawn(bump, (v.clone(), a.clone(), b.clone()))
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(v.get().unwrap(), 2);
    assert_eq!(a.to_vec().unwrap(), [0, 9]);
    assert_eq!(b.get(0).unwrap(), 4.0);

    let rl = RLock::new().unwrap();
    let x = Value::with_lock(0i32, rl.clone()).unwrap();
    let _outer = rl.lock().unwrap();
    x.set(3).unwrap(); // re-entered by the holder
    assert_eq!(x.get().unwrap(), 3);
}

fn add_many<L: SharedLock>((v, a, n): (Value<i64, L>, Array<i64, L>, u32)) {
    for _ in 0..n {
        *v.lock().unwrap() += 1;
        let mut g = a.lock().unwrap();
        g[0] += 1;
        g[1] -= 1;
    }
}

#[test]
fn locked_read_modify_write_from_two_processes_is_exact() {
    const N: u32 = 20_000;
    let v = Value::new(0i64).unwrap();
    let a = Array::<i64>::new(2).unwrap();
    let hs: Vec<_> = (0..2)
        .map(|_| mproc::spawn(add_many::<RLock>, (v.clone(), a.clone(), N)).unwrap())
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    assert_eq!(v.get().unwrap(), 2 * i64::from(N));
    assert_eq!(a.to_vec().unwrap(), [2 * i64::from(N), -2 * i64::from(N)]);

    let lock = Lock::new().unwrap();
    let v = Value::with_lock(0i64, lock.clone()).unwrap();
    let a = Array::with_lock(2, lock).unwrap();
    let hs: Vec<_> = (0..2)
        .map(|_| mproc::spawn(add_many::<Lock>, (v.clone(), a.clone(), N)).unwrap())
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    assert_eq!(v.get().unwrap(), 2 * i64::from(N));
}

#[test]
fn a_guard_is_not_aliased_by_its_own_thread() {
    let v = Value::new(1u8).unwrap();
    let mut g = v.lock().unwrap();
    *g = 2;
    assert!(matches!(
        v.get(),
        Err(LockError::Failed(Error::InvalidState(_)))
    ));
    assert!(matches!(
        v.set(3),
        Err(LockError::Failed(Error::InvalidState(_)))
    ));
    assert!(v.lock().is_err());
    assert!(v.try_lock().is_err());
    assert_eq!(format!("{v:?}"), "Value(<locked>)");
    *g += 1;
    drop(g);
    assert_eq!(v.get().unwrap(), 3);
    assert_eq!(format!("{v:?}"), "Value(3)");

    // With a plain Lock the re-entry is refused by the lock itself.
    let w = Value::with_lock(0u8, Lock::new().unwrap()).unwrap();
    let _g = w.lock().unwrap();
    assert!(w.get().is_err());

    let a = Array::from_slice(&[1u8]).unwrap();
    let _ga = a.lock().unwrap();
    assert!(a.get(0).is_err());
    assert!(a.to_vec().is_err());
}

#[test]
fn other_threads_wait_for_the_guard() {
    let v = Value::new(0u32).unwrap();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..1000 {
                    *v.lock().unwrap() += 1;
                }
            });
        }
    });
    assert_eq!(v.get().unwrap(), 4000);
}

#[test]
fn timeouts_on_a_held_value() {
    let v = Value::new(0i32).unwrap();
    let _held = v.get_lock().lock().unwrap();
    fn try_briefly(v: Value<i32>) -> (bool, bool) {
        let t = v.lock_timeout(Duration::from_millis(20)).unwrap().is_some();
        (v.try_lock().unwrap().is_some(), t)
    }
    let got = mproc::spawn(try_briefly, v.clone())
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(got, (false, false));
}

/// Takes the guard of `v`, writes a half-done update, says so, and waits
/// to be killed.
fn die_holding_value((v, tell): (Value<i32>, Connection<()>)) {
    let mut g = v.lock().unwrap();
    *g = 7;
    tell.send(&()).unwrap();
    loop {
        std::thread::park();
    }
}

fn die_holding_array((a, tell): (Array<u16, Lock>, Connection<()>)) {
    let mut g = a.lock().unwrap();
    g[1] = 5;
    tell.send(&()).unwrap();
    loop {
        std::thread::park();
    }
}

#[test]
fn a_child_killed_holding_the_lock_of_a_value_is_reported() {
    let v = Value::new(0i32).unwrap();
    let (here, there) = Pipe::new().unwrap();
    let mut p = Process::new(die_holding_value, (v.clone(), there));
    p.start().unwrap();
    here.recv().unwrap();
    assert!(v.try_lock().unwrap().is_none(), "held by the child");
    p.kill().unwrap();
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(-9));
    match v.get() {
        Err(LockError::OwnerDied(x)) => assert_eq!(x, 7),
        other => panic!("expected OwnerDied, got {other:?}"),
    }
    assert_eq!(v.get().unwrap(), 7, "reported once");
    *v.lock().unwrap() += 1;
    assert_eq!(v.get().unwrap(), 8);
}

#[test]
fn a_child_killed_holding_the_lock_of_an_array_is_reported() {
    let a = Array::<u16, Lock>::with_lock(2, Lock::new().unwrap()).unwrap();
    let (here, there) = Pipe::new().unwrap();
    let mut p = Process::new(die_holding_array, (a.clone(), there));
    p.start().unwrap();
    here.recv().unwrap();
    p.kill().unwrap();
    p.join().unwrap();
    let g = match a.lock() {
        Err(LockError::OwnerDied(g)) => g,
        other => panic!("expected OwnerDied, got {other:?}"),
    };
    assert_eq!(*g, [0, 5]);
    drop(g);
    assert_eq!(a.lock().recover().unwrap()[1], 5);
}

#[test]
fn handles_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Value<i32>>();
    send_sync::<Value<u8, Lock>>();
    send_sync::<Array<f64>>();
    send_sync::<RawValue<u64>>();
    send_sync::<RawArray<bool>>();
    send_sync::<mproc::SharedMemory>();
}

#[test]
fn raw_values_may_race_between_threads() {
    // Racing get/set are defined (relaxed atomics), just not synchronised:
    // a word-sized value is never torn.
    let v = RawValue::new(0u64).unwrap();
    std::thread::scope(|s| {
        for k in 1..=3u64 {
            let v = &v;
            s.spawn(move || {
                for _ in 0..10_000 {
                    v.set(k * 0x0101_0101_0101_0101);
                    let x = v.get();
                    assert_eq!(x % 0x0101_0101_0101_0101, 0, "torn: {x:#x}");
                }
            });
        }
    });
}

#[test]
fn handles_debug_print() {
    assert_eq!(format!("{:?}", RawValue::new(3u8).unwrap()), "RawValue(3)");
    assert_eq!(
        format!("{:?}", RawArray::from_slice(&[1u8, 2]).unwrap()),
        "RawArray([1, 2])"
    );
    assert_eq!(
        format!("{:?}", Array::from_slice(&[true]).unwrap()),
        "Array([true])"
    );
}

fn try_take(lock: Lock) -> bool {
    let took = lock.try_acquire().unwrap();
    if took {
        lock.release().unwrap();
    }
    took
}

#[test]
fn a_lock_lending_a_value_cannot_be_released_under_its_guard() {
    // The guard's `&mut` must stay exclusive: releasing its lock by hand
    // would let another process write under it.
    let v = Value::with_lock(1i32, Lock::new().unwrap()).unwrap();
    let mut g = v.lock().unwrap();
    let e = v.get_lock().release().unwrap_err();
    assert!(matches!(e, mproc::Error::InvalidState(_)), "{e}");
    assert!(
        !mproc::spawn(try_take, v.get_lock().clone())
            .unwrap()
            .join()
            .unwrap(),
        "another process must still find the lock held"
    );
    *g = 2;
    drop(g);
    assert!(!v.get_lock().is_locked(), "the guard released it");
    assert!(mproc::spawn(try_take, v.get_lock().clone())
        .unwrap()
        .join()
        .unwrap());
    assert_eq!(v.get().unwrap(), 2);
}

#[test]
fn an_rlock_lending_an_array_keeps_the_guards_level() {
    let a = Array::<u8>::new(3).unwrap(); // an RLock, as in Python
    let g = a.lock().unwrap();
    // A level taken by hand may go again; the guard's may not.
    a.get_lock().acquire().unwrap();
    a.get_lock().release().unwrap();
    assert!(matches!(
        a.get_lock().release(),
        Err(mproc::Error::InvalidState(_))
    ));
    assert!(a.get_lock().is_locked());
    drop(g);
    assert!(!a.get_lock().is_locked());
    assert!(matches!(
        a.get_lock().release(),
        Err(mproc::Error::InvalidState(_))
    ));
}

#[test]
fn a_condition_cannot_wait_away_the_lock_of_a_live_value_guard() {
    let lock = Lock::new().unwrap();
    let v = Value::with_lock(0u64, lock.clone()).unwrap();
    let cond = mproc::Condition::with_lock(lock.clone()).unwrap();
    let g = v.lock().unwrap();
    let waited = cond.wait_timeout(Duration::from_millis(1));
    assert!(
        matches!(
            waited,
            Err(LockError::Failed(mproc::Error::InvalidState(_)))
        ),
        "{waited:?}"
    );
    assert!(lock.is_locked(), "still held by the guard");
    drop(g);
    assert!(!lock.is_locked());
}

fn die_holding_pinned_value((v, tell): (Value<i32, Lock>, Connection<()>)) {
    let _g = v.lock().unwrap();
    tell.send(&()).unwrap();
    loop {
        std::thread::park();
    }
}

#[test]
fn a_dead_owners_pins_die_with_it() {
    let v = Value::with_lock(5i32, Lock::new().unwrap()).unwrap();
    let (here, there) = Pipe::new().unwrap();
    let mut p = Process::new(die_holding_pinned_value, (v.clone(), there));
    p.start().unwrap();
    here.recv().unwrap();
    p.kill().unwrap();
    p.join().unwrap();
    // Recovered by a hand acquisition: its release must not be refused for
    // the dead child's guard.
    assert!(matches!(
        v.get_lock().acquire(),
        Err(LockError::OwnerDied(()))
    ));
    v.get_lock().release().unwrap();
    assert!(!v.get_lock().is_locked());
    assert_eq!(v.get().unwrap(), 5);
}

fn guard_both((a, b): (Value<i32>, Value<i32>)) -> (bool, bool, bool) {
    let mut g = a.lock().unwrap();
    *g = 9;
    let second_guard = matches!(
        b.lock(),
        Err(LockError::Failed(mproc::Error::InvalidState(_)))
    );
    let second_get = matches!(
        b.get(),
        Err(LockError::Failed(mproc::Error::InvalidState(_)))
    );
    drop(g);
    (second_guard, second_get, b.get().unwrap() == 9)
}

#[test]
fn a_value_received_twice_is_not_lent_twice() {
    // The child maps the value's block once per handle it receives: the
    // mark that refuses a second guard lives in the shared block, not in
    // one mapping.
    let v = Value::new(0i32).unwrap();
    let (guard_refused, get_refused, seen) = mproc::spawn(guard_both, (v.clone(), v.clone()))
        .unwrap()
        .join()
        .unwrap();
    assert!(
        guard_refused,
        "a second guard on the same cells must be refused"
    );
    assert!(get_refused, "a get under the guard must be refused");
    assert!(seen);
    assert_eq!(v.get().unwrap(), 9);
}

fn guard_apart((a, tell): (Array<u32, Lock>, Connection<()>)) {
    let _g = a.lock().unwrap();
    tell.send(&()).unwrap();
    loop {
        std::thread::park();
    }
}

#[test]
fn a_dead_lenders_mark_is_stale_for_the_next_holder() {
    let a = Array::<u32, Lock>::with_lock(4, Lock::new().unwrap()).unwrap();
    let (here, there) = Pipe::new().unwrap();
    let mut p = Process::new(guard_apart, (a.clone(), there));
    p.start().unwrap();
    here.recv().unwrap();
    p.kill().unwrap();
    p.join().unwrap();
    let mut g = a.lock().recover().unwrap();
    g[0] = 1;
    drop(g);
    assert_eq!(a.get(0).unwrap(), 1);
    assert!(!a.get_lock().is_locked());
}
