//! The calls Python users expect on manager proxies, each made from a
//! child process: list slicing, `index`, `count`, `sort`, `reverse`;
//! dict `popitem`; queue `full`. Expected values are what CPython 3.11
//! gives for the same calls. A sort runs in the proxy's process (the server
//! never decodes elements): the tests check it is atomic against another
//! process appending, and that a sorter that dies or fails halfway lets the
//! list go.

mod common;

use std::ops::Bound;
use std::time::Duration;

use mproc::manager::{DictProxy, EventProxy, ListProxy, QueueProxy};
use mproc::{Error, Manager, RemoteError};

/// Runs `f(args)` in a child and waits for it: the child's assertions
/// are the test's.
fn in_child<A, R>(f: fn(A) -> R, args: A) -> R
where
    A: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
    R: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
{
    mproc::spawn(f, args).unwrap().join().unwrap()
}

fn not_in_list<T>(r: mproc::Result<T>) -> bool {
    matches!(r, Err(Error::Remote(RemoteError::NotInList)))
}

fn slices(l: ListProxy<i32>) {
    let v = |s: &[i32]| s.to_vec();
    // l = list(range(10)); l[a:b]
    assert_eq!(l.slice(2..5).unwrap(), v(&[2, 3, 4]));
    assert_eq!(l.slice(-3..).unwrap(), v(&[7, 8, 9]));
    assert_eq!(l.slice(..-7).unwrap(), v(&[0, 1, 2]));
    assert_eq!(l.slice(-100..100).unwrap(), (0..10).collect::<Vec<_>>());
    assert_eq!(l.slice(..).unwrap(), (0..10).collect::<Vec<_>>());
    let (five, two) = (5, 2); // l[5:2]
    assert_eq!(l.slice(five..two).unwrap(), v(&[]));
    assert_eq!(l.slice(10..).unwrap(), v(&[]));
    assert_eq!(l.slice(i64::MIN..i64::MAX).unwrap().len(), 10);
    // Inclusive and exclusive bounds: `..=-1` is the whole list, `..=-2`
    // is l[:-1]; an excluded start of -1 is past the end.
    assert_eq!(l.slice(..=-1).unwrap().len(), 10);
    assert_eq!(l.slice(..=-2).unwrap(), (0..9).collect::<Vec<_>>());
    assert_eq!(l.slice(..=3).unwrap(), v(&[0, 1, 2, 3]));
    assert_eq!(
        l.slice((Bound::Excluded(2), Bound::Included(4))).unwrap(),
        v(&[3, 4])
    );
    assert_eq!(
        l.slice((Bound::Excluded(-1), Bound::Unbounded)).unwrap(),
        v(&[])
    );
    // l[a:b:step]
    assert_eq!(l.slice_step(None, None, 2).unwrap(), v(&[0, 2, 4, 6, 8]));
    assert_eq!(
        l.slice_step(None, None, -1).unwrap(),
        (0..10).rev().collect::<Vec<_>>()
    );
    assert_eq!(l.slice_step(Some(8), Some(2), -2).unwrap(), v(&[8, 6, 4]));
    assert_eq!(
        l.slice_step(Some(-1), Some(-100), -3).unwrap(),
        v(&[9, 6, 3, 0])
    );
    assert_eq!(l.slice_step(Some(100), None, -4).unwrap(), v(&[9, 5, 1]));
    assert_eq!(l.slice_step(Some(2), Some(8), 3).unwrap(), v(&[2, 5]));
    assert_eq!(l.slice_step(Some(5), Some(5), 1).unwrap(), v(&[]));
    assert_eq!(l.slice_step(Some(-2), Some(-5), -1).unwrap(), v(&[8, 7, 6]));
    assert_eq!(l.slice_step(Some(0), None, -1).unwrap(), v(&[0]));
    assert_eq!(l.slice_step(None, None, i64::MIN).unwrap(), v(&[9]));
    // ValueError: slice step cannot be zero
    assert!(matches!(
        l.slice_step(None, None, 0),
        Err(Error::InvalidArgument(_))
    ));
    // Nothing changed.
    assert_eq!(l.to_vec().unwrap(), (0..10).collect::<Vec<_>>());
}

#[test]
fn slices_follow_python_from_a_child() {
    let _g = common::shared();
    let m = Manager::start().unwrap();
    let l = m.list::<i32>().unwrap();
    l.extend(0..10).unwrap();
    in_child(slices, l.clone());
    let empty = m.list::<i32>().unwrap();
    assert!(empty.slice(..).unwrap().is_empty());
    assert!(empty.slice_step(None, None, -1).unwrap().is_empty());
}

fn index_and_count((l, f): (ListProxy<String>, ListProxy<f64>)) {
    let s = |x: &str| x.to_string();
    // l = ['a', 'b', 'a', 'c', 'a']
    assert_eq!(l.index(&s("a")).unwrap(), 0);
    assert_eq!(l.index(&s("c")).unwrap(), 3);
    assert_eq!(l.index_in(&s("a"), 1..).unwrap(), 2); // l.index('a', 1)
    assert_eq!(l.index_in(&s("a"), -2..).unwrap(), 4); // l.index('a', -2)
    assert_eq!(l.index_in(&s("c"), -100..100).unwrap(), 3);
    assert!(not_in_list(l.index_in(&s("a"), 3..4))); // ValueError
    let (four, one) = (4, 1);
    assert!(not_in_list(l.index_in(&s("a"), four..one)));
    assert!(not_in_list(l.index(&s("z"))));
    assert_eq!(l.count(&s("a")).unwrap(), 3);
    assert_eq!(l.count(&s("c")).unwrap(), 1);
    assert_eq!(l.count(&s("z")).unwrap(), 0);
    // Compared by encoding: -0.0 is not 0.0 (Python says it is), a NaN
    // finds the same NaN (Python's `==` says no, its `is` says yes).
    assert_eq!(f.index(&-0.0).unwrap(), 1);
    assert_eq!(f.count(&0.0).unwrap(), 1);
    assert_eq!(f.index(&f64::NAN).unwrap(), 2);
}

#[test]
fn index_and_count_from_a_child() {
    let _g = common::shared();
    let m = Manager::start().unwrap();
    let l = m.list::<String>().unwrap();
    l.extend(["a", "b", "a", "c", "a"].map(String::from))
        .unwrap();
    let f = m.list::<f64>().unwrap();
    f.extend([0.0, -0.0, f64::NAN]).unwrap();
    in_child(index_and_count, (l.clone(), f));
    assert!(not_in_list(m.list::<u8>().unwrap().index(&0)));
    assert_eq!(m.list::<u8>().unwrap().count(&0).unwrap(), 0);
}

fn sorts((ints, words, pairs): (ListProxy<i64>, ListProxy<String>, ListProxy<(u8, u32)>)) {
    ints.sort().unwrap();
    assert_eq!(ints.to_vec().unwrap(), vec![-7, -1, 0, 0, 3, 5, 42]);
    ints.sort_by(|a, b| b.cmp(a)).unwrap(); // l.sort(reverse=True)
    assert_eq!(ints.to_vec().unwrap(), vec![42, 5, 3, 0, 0, -1, -7]);
    ints.reverse().unwrap();
    assert_eq!(ints.to_vec().unwrap(), vec![-7, -1, 0, 0, 3, 5, 42]);
    ints.sort().unwrap(); // sorted already
    assert_eq!(ints.len().unwrap(), 7);

    words.sort().unwrap();
    assert_eq!(words.to_vec().unwrap(), ["Zebra", "apple", "apple", "fig"]);
    words.sort_by_key(|w| w.to_lowercase()).unwrap();
    assert_eq!(words.to_vec().unwrap(), ["apple", "apple", "fig", "Zebra"]);

    // Stable: equal keys keep their order (the second field numbers them).
    pairs.sort_by_key(|p| p.0).unwrap();
    let got = pairs.to_vec().unwrap();
    assert_eq!(got, [(1, 0), (1, 3), (1, 5), (2, 1), (2, 4), (3, 2)]);
    // reverse=True is stable too.
    pairs.sort_by(|a, b| b.0.cmp(&a.0)).unwrap();
    let got = pairs.to_vec().unwrap();
    assert_eq!(got, [(3, 2), (2, 1), (2, 4), (1, 0), (1, 3), (1, 5)]);
}

#[test]
fn sort_and_reverse_from_a_child() {
    let _g = common::shared();
    let m = Manager::start().unwrap();
    let ints = m.list::<i64>().unwrap();
    ints.extend([5, -1, 42, 0, -7, 3, 0]).unwrap();
    let words = m.list::<String>().unwrap();
    words
        .extend(["fig", "apple", "Zebra", "apple"].map(String::from))
        .unwrap();
    let pairs = m.list::<(u8, u32)>().unwrap();
    pairs
        .extend([(1, 0), (2, 1), (3, 2), (1, 3), (2, 4), (1, 5)])
        .unwrap();
    in_child(sorts, (ints, words, pairs));
    let empty = m.list::<u8>().unwrap();
    empty.sort().unwrap();
    empty.reverse().unwrap();
    assert!(empty.is_empty().unwrap());
}

const INITIAL: i64 = 500;
const ROUNDS: i64 = 20;
const BATCH: i64 = 50;

/// What the sorter and the appender tell each other: the sorter is in the
/// middle of a sort; the appender is about to push; it has pushed.
type Cue = (ListProxy<i64>, [EventProxy; 3]);

/// Each round, once the sorter is in the middle of a sort, pushes a
/// batch (the first push meets the sort in progress, or follows it).
fn append_during_sorts((l, [in_sort, pushing, pushed]): Cue) {
    for r in 0..ROUNDS {
        assert!(in_sort.wait_timeout(common::GENEROUS).unwrap());
        in_sort.clear().unwrap();
        pushing.set().unwrap();
        for i in 0..BATCH {
            l.push(&(1_000_000 - r * BATCH - i)).unwrap();
        }
        pushed.set().unwrap();
    }
}

/// Sorts `ROUNDS` times; in each sort, waits (in its first comparison)
/// until the appender starts pushing, and after it until it is done (its
/// pushes wait while a sort is in progress).
fn sort_during_appends((l, [in_sort, pushing, pushed]): Cue) {
    for _ in 0..ROUNDS {
        let before = l.len().unwrap();
        let mut first = true;
        l.sort_by(|a, b| {
            if std::mem::take(&mut first) {
                in_sort.set().unwrap();
                assert!(pushing.wait_timeout(common::GENEROUS).unwrap());
                pushing.clear().unwrap();
            }
            a.cmp(b)
        })
        .unwrap();
        // Everything there before the sort is sorted after it: what was
        // appended meanwhile can only follow.
        let after = l.slice(..before as i64).unwrap();
        assert!(after.windows(2).all(|w| w[0] <= w[1]), "unsorted prefix");
        assert!(pushed.wait_timeout(common::GENEROUS).unwrap());
        pushed.clear().unwrap();
    }
}

#[test]
fn a_sort_loses_nothing_appended_meanwhile_by_another_process() {
    let _g = common::shared();
    let m = Manager::start().unwrap();
    let l = m.list::<i64>().unwrap();
    l.extend((0..INITIAL).map(|i| (i * 7919) % INITIAL))
        .unwrap();
    let cue = (l.clone(), [(); 3].map(|()| m.event().unwrap()));
    let appender = mproc::spawn(append_during_sorts, cue.clone()).unwrap();
    let sorter = mproc::spawn(sort_during_appends, cue).unwrap();
    appender.join().unwrap();
    sorter.join().unwrap();
    let mut got = l.to_vec().unwrap();
    let mut want: Vec<i64> = (0..INITIAL)
        .chain((0..ROUNDS * BATCH).map(|i| 1_000_000 - i))
        .collect();
    assert_eq!(got.len(), want.len(), "lost or duplicated elements");
    got.sort();
    want.sort();
    assert_eq!(got, want);
}

/// Begins a sort and stops in the middle of it (in the comparison),
/// until killed.
fn stall_in_sort((l, stalled): (ListProxy<i64>, EventProxy)) {
    l.sort_by(|a, b| {
        stalled.set().unwrap();
        std::thread::sleep(common::LONG);
        a.cmp(b)
    })
    .unwrap();
}

#[test]
fn changes_wait_for_a_sort_and_a_killed_sorter_lets_the_list_go() {
    let _g = common::shared();
    let m = Manager::start().unwrap();
    let l = m.list::<i64>().unwrap();
    l.extend([3, 1, 2]).unwrap();
    let stalled = m.event().unwrap();
    let sorter = mproc::spawn(stall_in_sort, (l.clone(), stalled.clone())).unwrap();
    assert!(stalled.wait_timeout(common::GENEROUS).unwrap());
    // Reads go on during the sort; a change waits for it.
    assert_eq!(l.len().unwrap(), 3);
    assert_eq!(l.index(&1).unwrap(), 1);
    let (tx, rx) = std::sync::mpsc::channel();
    let pusher = l.clone();
    let t = std::thread::spawn(move || tx.send(pusher.push(&0)).unwrap());
    assert!(rx.recv_timeout(Duration::from_millis(200)).is_err());
    sorter.kill().unwrap();
    assert!(sorter.join().is_err());
    // The sorter's connection closed: the push goes ahead, on the list as
    // it was (the sort never applied).
    rx.recv_timeout(common::GENEROUS).unwrap().unwrap();
    t.join().unwrap();
    assert_eq!(l.to_vec().unwrap(), vec![3, 1, 2, 0]);
    l.sort().unwrap();
    assert_eq!(l.to_vec().unwrap(), vec![0, 1, 2, 3]);
}

/// A comparison that panics, then a change through another handle.
fn panic_in_sort(l: ListProxy<u8>) {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {})); // an expected panic: no report
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        l.sort_by(|_, _| panic!("no order"))
    }));
    std::panic::set_hook(hook);
    assert!(r.is_err());
    let other = l.clone();
    other.push(&9).unwrap(); // would wait forever if the sort were still on
    l.sort().unwrap();
}

#[test]
fn a_sort_that_fails_in_the_proxy_ends() {
    let _g = common::shared();
    let m = Manager::start().unwrap();
    let l = m.list::<u8>().unwrap();
    l.extend([2, 1]).unwrap();
    let mut child = mproc::spawn(panic_in_sort, l.clone()).unwrap();
    child.join_timeout(common::GENEROUS).unwrap();
    assert_eq!(l.to_vec().unwrap(), vec![1, 2, 9]);
}

fn pop_items(d: DictProxy<String, u32>) {
    let s = |x: &str| x.to_string();
    // d = {'a': 1, 'b': 2, 'c': 3}; d['a'] = 10
    d.insert(&s("a"), &10).unwrap();
    assert_eq!(d.keys().unwrap(), ["a", "b", "c"]);
    assert_eq!(d.popitem().unwrap(), (s("c"), 3));
    assert_eq!(d.popitem().unwrap(), (s("b"), 2));
    // del d['a']; d['x'] = 1; d['a'] = 5: 'a' goes to the end
    assert_eq!(d.remove(&s("a")).unwrap(), Some(10));
    d.insert(&s("x"), &1).unwrap();
    d.insert(&s("a"), &5).unwrap();
    assert_eq!(d.snapshot().unwrap(), [(s("x"), 1), (s("a"), 5)]);
    assert_eq!(d.popitem().unwrap(), (s("a"), 5));
    assert_eq!(d.popitem().unwrap(), (s("x"), 1));
    // KeyError: 'popitem(): dictionary is empty'
    assert!(matches!(
        d.popitem(),
        Err(Error::Remote(RemoteError::EmptyDict))
    ));
    d.update([(s("k"), 7)]).unwrap();
    assert_eq!(d.popitem().unwrap(), (s("k"), 7));
}

#[test]
fn popitem_is_lifo_from_a_child() {
    let _g = common::shared();
    let m = Manager::start().unwrap();
    let d = m.dict::<String, u32>().unwrap();
    d.update([("a", 1), ("b", 2), ("c", 3)].map(|(k, v)| (k.to_string(), v)))
        .unwrap();
    in_child(pop_items, d.clone());
    assert!(d.is_empty().unwrap());
}

fn fullness((bounded, unbounded): (QueueProxy<u32>, QueueProxy<u32>)) {
    assert!(!bounded.full().unwrap());
    bounded.put(&1).unwrap();
    assert!(!bounded.full().unwrap());
    bounded.put(&2).unwrap();
    assert!(bounded.full().unwrap());
    assert_eq!(bounded.get().unwrap(), 1);
    assert!(!bounded.full().unwrap());
    for i in 0..100 {
        unbounded.put(&i).unwrap();
    }
    assert!(!unbounded.full().unwrap());
}

#[test]
fn full_from_a_child() {
    let _g = common::shared();
    let m = Manager::start().unwrap();
    let bounded = m.queue::<u32>(2).unwrap();
    let unbounded = m.queue::<u32>(0).unwrap();
    in_child(fullness, (bounded.clone(), unbounded.clone()));
    assert_eq!(bounded.qsize().unwrap(), 1);
    assert_eq!(unbounded.qsize().unwrap(), 100);
}
