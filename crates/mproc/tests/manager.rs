//! `Manager` and its proxies, with a real server process.
//!
//! The behaviours CPython's `_TestContainers`, `_TestNamespace`,
//! `_TestManagerRestart`, `_TestRemoteManager` and the manager lock test of
//! `_TestLock` check, rewritten: list and dict operations, nested proxies,
//! namespace attributes, proxies used from children (and after a fork), a
//! manager lock acquired by a child that exits, a dead server, a restart on
//! the same TCP address; reference counting (objects freed with their last
//! proxy, kept by a copy in transit or by a holder, given back by a killed
//! child) and a peer dribbling its handshake. No test sleeps to synchronise
//! (the server's object count is polled, with a guard, after drops that do
//! not wait for it).

mod common;

use std::path::Path;
use std::time::Duration;

use mproc::manager::{DictProxy, EventProxy, ListProxy, LockProxy, Servable, ValueProxy};
use mproc::{Address, AuthError, Error, Manager, Process, RemoteError};

fn run<A>(f: fn(A), args: A)
where
    A: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
{
    let mut p = Process::new(f, args);
    p.start().unwrap();
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0));
}

fn alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn list_operations_follow_python() {
    let _g = common::shared();
    let m = Manager::start().unwrap();
    let l = m.list::<i32>().unwrap();
    l.extend(0..5).unwrap();
    l.insert(0, &-1).unwrap();
    l.insert(100, &99).unwrap();
    assert_eq!(l.to_vec().unwrap(), vec![-1, 0, 1, 2, 3, 4, 99]);
    assert_eq!(l.set(-2, &40).unwrap(), 4);
    assert_eq!(l.pop_at(0).unwrap(), -1);
    assert_eq!(l.pop().unwrap(), 99);
    assert_eq!(l.len().unwrap(), 5);
    l.clear().unwrap();
    assert!(matches!(
        l.pop(),
        Err(Error::Remote(RemoteError::IndexOutOfRange { len: 0, .. }))
    ));
}

#[test]
fn dict_operations_and_batches() {
    let _g = common::shared();
    let m = Manager::start().unwrap();
    let d = m.dict::<String, Vec<u8>>().unwrap();
    assert!(d.is_empty().unwrap());
    d.update((0..1000).map(|i| (i.to_string(), vec![i as u8])))
        .unwrap();
    assert_eq!(d.len().unwrap(), 1000);
    assert_eq!(
        d.get_many(&["7".into(), "nope".into()]).unwrap(),
        vec![Some(vec![7]), None]
    );
    assert_eq!(d.insert(&"7".into(), &vec![70]).unwrap(), Some(vec![7]));
    assert!(d.contains_key(&"7".into()).unwrap());
    assert_eq!(d.remove(&"7".into()).unwrap(), Some(vec![70]));
    assert_eq!(d.snapshot().unwrap().len(), 999);
    assert_eq!(d.keys().unwrap().len(), 999);
    d.clear().unwrap();
    assert_eq!(d.len().unwrap(), 0);
}

#[test]
fn proxies_nest() {
    let _g = common::shared();
    let m = Manager::start().unwrap();
    let outer = m.dict::<String, ListProxy<u32>>().unwrap();
    let inner = m.list::<u32>().unwrap();
    inner.push(&1).unwrap();
    outer.insert(&"a".into(), &inner).unwrap();
    let again = outer.get(&"a".into()).unwrap().unwrap();
    again.push(&2).unwrap();
    assert_eq!(inner.to_vec().unwrap(), vec![1, 2]);
}

#[test]
fn namespace_attributes() {
    let _g = common::shared();
    let m = Manager::start().unwrap();
    let ns = m.namespace().unwrap();
    assert!(!ns.set("a", &1i32).unwrap());
    assert!(ns.set("a", &2i32).unwrap());
    ns.set("b", &"two".to_string()).unwrap();
    assert_eq!(ns.get::<i32>("a").unwrap(), Some(2));
    assert_eq!(ns.get::<String>("b").unwrap().as_deref(), Some("two"));
    assert_eq!(ns.names().unwrap(), vec!["a", "b"]);
    assert!(!ns.delete("c").unwrap());
}

fn child_uses_proxies(
    (d, l, v, e): (
        DictProxy<u32, u32>,
        ListProxy<u32>,
        ValueProxy<u64>,
        EventProxy,
    ),
) {
    d.update((0..10).map(|i| (i, i * 2))).unwrap();
    l.extend(0..10).unwrap();
    v.set(&(v.get().unwrap() + 1)).unwrap();
    e.set().unwrap();
}

#[test]
fn proxies_travel_to_children() {
    let _g = common::shared();
    let m = Manager::start().unwrap();
    let (d, l, v, e) = (
        m.dict().unwrap(),
        m.list().unwrap(),
        m.value(41u64).unwrap(),
        m.event().unwrap(),
    );
    run(
        child_uses_proxies,
        (d.clone(), l.clone(), v.clone(), e.clone()),
    );
    assert!(e.is_set().unwrap());
    assert_eq!(v.get().unwrap(), 42);
    assert_eq!(d.get(&9).unwrap(), Some(18));
    assert_eq!(l.len().unwrap(), 10);
}

#[test]
fn a_proxy_reconnects_after_fork() {
    let _g = common::shared();
    let m = Manager::start().unwrap();
    let l = m.list::<u32>().unwrap();
    l.push(&1).unwrap(); // connected in the parent
    let l2 = l.clone();
    let got = mproc::fork(move || {
        l2.push(&2).unwrap();
        l2.len().unwrap()
    })
    .unwrap()
    .join()
    .unwrap();
    assert_eq!(got, 2);
    l.push(&3).unwrap(); // the parent's socket was not disturbed
    assert_eq!(l.to_vec().unwrap(), vec![1, 2, 3]);
}

fn take_and_exit(lock: LockProxy) {
    lock.acquire().unwrap();
}

#[test]
fn a_lock_taken_by_a_child_that_exits_stays_locked_until_released() {
    let _g = common::shared();
    let m = Manager::start().unwrap();
    let lock = m.lock().unwrap();
    run(take_and_exit, lock.clone());
    assert!(lock.locked().unwrap());
    assert!(!lock.try_acquire().unwrap());
    lock.release().unwrap();
    assert!(lock.try_acquire().unwrap());
    lock.release().unwrap();
    assert!(matches!(
        lock.release(),
        Err(Error::Remote(RemoteError::NotLocked))
    ));
}

fn wait_then_set((go, done): (EventProxy, EventProxy)) {
    go.wait().unwrap();
    done.set().unwrap();
}

#[test]
fn events_wake_a_waiting_child() {
    let _g = common::shared();
    let m = Manager::start().unwrap();
    let (go, done) = (m.event().unwrap(), m.event().unwrap());
    let mut p = Process::new(wait_then_set, (go.clone(), done.clone()));
    p.start().unwrap();
    assert!(!done.wait_timeout(Duration::from_millis(20)).unwrap());
    go.set().unwrap();
    assert!(done.wait_timeout(common::GENEROUS).unwrap());
    p.join().unwrap();
}

#[test]
fn names_find_the_same_object_and_kinds_are_checked() {
    let _g = common::shared();
    let m = Manager::start().unwrap();
    let a = m.dict_named::<u8, u8>("shared").unwrap();
    a.insert(&1, &2).unwrap();
    let b = m.dict_named::<u8, u8>("shared").unwrap();
    assert_eq!(b.get(&1).unwrap(), Some(2));
    assert!(matches!(
        m.list_named::<u8>("shared"),
        Err(Error::Remote(RemoteError::WrongKind(_)))
    ));
}

#[test]
fn a_dead_server_makes_calls_fail_not_hang() {
    let _g = common::shared();
    let m = Manager::start().unwrap();
    let d = m.dict::<u8, u8>().unwrap();
    let lock = m.lock().unwrap();
    lock.acquire().unwrap();
    let waiter = lock.clone();
    let t = std::thread::spawn(move || waiter.acquire());
    let pid = m.pid().unwrap();
    let st = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    // The blocked acquire returns, and so does every later call.
    assert!(matches!(t.join().unwrap(), Err(Error::ManagerGone)));
    assert!(matches!(d.get(&1), Err(Error::ManagerGone)));
    assert!(matches!(m.dict::<u8, u8>(), Err(Error::ManagerGone)));
}

#[test]
fn shutdown_and_drop_stop_the_server() {
    let _g = common::shared();
    let mut m = Manager::start().unwrap();
    let pid = m.pid().unwrap();
    let l = m.list::<u8>().unwrap();
    m.shutdown().unwrap();
    assert!(!alive(pid));
    assert!(matches!(l.len(), Err(Error::ManagerGone)));
    m.shutdown().unwrap();

    let m = Manager::start().unwrap();
    let pid = m.pid().unwrap();
    drop(m);
    assert!(!alive(pid));
}

#[test]
fn the_server_ignores_sigint() {
    let _g = common::shared();
    let m = Manager::start().unwrap();
    let v = m.value(1u8).unwrap();
    let pid = m.pid().unwrap();
    let st = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(v.get().unwrap(), 1);
}

#[derive(Default)]
struct Tally(Vec<String>);

impl Servable for Tally {
    type Init = ();
    type Call = Option<String>; // Some: record it; None: count
    type Reply = usize;
    fn create(_: ()) -> Self {
        Tally::default()
    }
    fn call(&mut self, call: Option<String>) -> Result<usize, String> {
        match call {
            Some(s) if s.is_empty() => Err("empty name".into()),
            Some(s) => {
                self.0.push(s);
                Ok(self.0.len())
            }
            None => Ok(self.0.len()),
        }
    }
}

#[test]
fn remote_manager_over_tcp_with_a_registered_type() {
    let _g = common::shared();
    let key = b"remote key";
    let server = Manager::builder()
        .address(Address::tcp("127.0.0.1:0").unwrap())
        .authkey(&key[..])
        .register::<Tally>("Tally")
        .start()
        .unwrap();
    let addr = server.address().clone();
    let client = Manager::connect(&addr, key).unwrap();
    let t = client.create_named::<Tally>("Tally", "votes", ()).unwrap();
    assert_eq!(t.call(Some("ann".into())).unwrap(), 1);
    let t2 = server.create_named::<Tally>("Tally", "votes", ()).unwrap();
    assert_eq!(t2.call(None).unwrap(), 1);
    assert!(matches!(
        t.call(Some(String::new())),
        Err(Error::Remote(RemoteError::Failed(m))) if m == "empty name"
    ));
    assert!(matches!(
        client.create::<Tally>("Nope", ()),
        Err(Error::Remote(RemoteError::UnknownType(_)))
    ));
    let wrong = Manager::connect(&addr, b"wrong key");
    assert!(matches!(
        wrong,
        Err(Error::Authentication(AuthError::DigestSentRejected))
    ));
}

#[test]
fn a_manager_restarts_on_the_same_tcp_address() {
    let _g = common::shared();
    let mut first = Manager::serve(&Address::tcp("127.0.0.1:0").unwrap(), b"k").unwrap();
    let addr = first.address().clone();
    first.dict::<u8, u8>().unwrap().insert(&1, &1).unwrap();
    first.shutdown().unwrap();
    let second = Manager::serve(&addr, b"k").unwrap();
    assert_eq!(second.address(), &addr);
    assert!(second.dict::<u8, u8>().unwrap().is_empty().unwrap());
}

#[test]
fn a_unix_socket_file_is_removed_with_its_server() {
    let _g = common::shared();
    let path = std::env::temp_dir().join(format!("mproc-mgr-{}.sock", std::process::id()));
    let mut m = Manager::serve(&Address::unix(&path), b"k").unwrap();
    assert!(path.exists());
    let other = Manager::connect(&Address::unix(&path), b"k").unwrap();
    other.value(3u8).unwrap();
    m.shutdown().unwrap();
    assert!(!path.exists());
}

#[test]
fn a_silent_peer_does_not_hold_up_the_server() {
    let _g = common::shared();
    let m = Manager::start().unwrap();
    // Connects, never answers the challenge.
    let Address::Abstract(name) = m.address() else {
        unreachable!("a manager listens on an abstract address by default")
    };
    use std::os::linux::net::SocketAddrExt;
    let a = std::os::unix::net::SocketAddr::from_abstract_name(name).unwrap();
    let silent = std::os::unix::net::UnixStream::connect_addr(&a).unwrap();
    let t0 = std::time::Instant::now();
    let v = m.value(5u8).unwrap();
    assert_eq!(v.get().unwrap(), 5);
    assert!(t0.elapsed() < Duration::from_secs(2));
    drop(silent);
}

fn produce((q, n): (mproc::manager::QueueProxy<u32>, u32)) {
    for i in 0..n {
        q.put(&i).unwrap();
    }
    q.join().unwrap(); // until the parent marked every item done
}

#[test]
fn a_bounded_queue_between_a_child_and_its_parent() {
    let _g = common::shared();
    let m = Manager::start().unwrap();
    let q = m.queue::<u32>(3).unwrap();
    let mut p = Process::new(produce, (q.clone(), 50));
    p.start().unwrap();
    let mut got = Vec::new();
    for _ in 0..50 {
        got.push(q.get_timeout(common::GENEROUS).unwrap());
        assert!(q.qsize().unwrap() <= 3);
        q.task_done().unwrap();
    }
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0));
    assert_eq!(got, (0..50).collect::<Vec<_>>());
    assert!(matches!(q.try_get(), Err(Error::Empty)));
    assert!(matches!(
        q.task_done(),
        Err(Error::Remote(RemoteError::Failed(_)))
    ));
}

fn hold(s: mproc::manager::SemaphoreProxy) {
    s.acquire().unwrap();
}

#[test]
fn semaphores_count_across_processes() {
    let _g = common::shared();
    let m = Manager::start().unwrap();
    let s = m.semaphore(2).unwrap();
    run(hold, s.clone());
    run(hold, s.clone());
    assert_eq!(s.value().unwrap(), 0);
    assert!(!s.acquire_timeout(Duration::from_millis(5)).unwrap());
    s.release().unwrap();
    s.release().unwrap();
    s.release().unwrap(); // not bounded
    assert_eq!(s.value().unwrap(), 3);
}

fn meet(b: mproc::manager::BarrierProxy) -> u64 {
    b.wait_timeout(common::GENEROUS).unwrap()
}

#[test]
fn a_barrier_releases_every_party_with_distinct_indices() {
    let _g = common::shared();
    let m = Manager::start().unwrap();
    let b = m.barrier(3).unwrap();
    let kids: Vec<_> = (0..2)
        .map(|_| mproc::spawn(meet, b.clone()).unwrap())
        .collect();
    let mut idx = vec![b.wait_timeout(common::GENEROUS).unwrap()];
    idx.extend(kids.into_iter().map(|k| k.join().unwrap()));
    idx.sort();
    assert_eq!(idx, vec![0, 1, 2]);
    assert_eq!(b.n_waiting().unwrap(), 0);
    assert_eq!(b.parties().unwrap(), 3);
}

#[test]
fn an_array_keeps_its_length() {
    let _g = common::shared();
    let m = Manager::start().unwrap();
    let a = m.array([1.5f64, 2.5]).unwrap();
    assert_eq!(a.set(0, &0.5).unwrap(), 1.5);
    assert_eq!(a.to_vec().unwrap(), vec![0.5, 2.5]);
    assert!(matches!(
        a.get(2),
        Err(Error::Remote(RemoteError::IndexOutOfRange {
            index: 2,
            len: 2
        }))
    ));
    let l = m.list_from(["x".to_string()]).unwrap();
    assert_eq!(l.to_vec().unwrap(), vec!["x"]);
}

fn wait_for_flag((c, flag): (mproc::manager::ConditionProxy, ValueProxy<bool>)) -> bool {
    c.acquire().unwrap();
    while !flag.get().unwrap() {
        c.wait_timeout(common::GENEROUS).unwrap();
    }
    c.release().unwrap();
    true
}

#[test]
fn a_condition_wakes_a_child_waiting_for_a_predicate() {
    let _g = common::shared();
    let m = Manager::start().unwrap();
    let (c, flag) = (m.condition().unwrap(), m.value(false).unwrap());
    let child = mproc::spawn(wait_for_flag, (c.clone(), flag.clone())).unwrap();
    c.acquire().unwrap();
    flag.set(&true).unwrap();
    c.notify_all().unwrap();
    c.release().unwrap();
    assert!(child.join().unwrap());
    assert!(matches!(
        c.notify(1),
        Err(Error::Remote(RemoteError::NotOwner))
    ));
}

/// The server's object count reaches `n` (drops do not wait for the
/// server, so it is asked until then).
fn count_reaches(m: &Manager, n: usize) -> bool {
    common::eventually(Duration::from_secs(10), || m.object_count().unwrap() == n)
}

#[test]
fn dropped_proxies_free_their_objects() {
    let _g = common::shared();
    let m = Manager::start().unwrap();
    let keep = m.dict::<u8, u8>().unwrap();
    for round in 0..3 {
        let mut made = Vec::new();
        for i in 0..50u32 {
            let l = m.list_from([i, round]).unwrap();
            let again = l.clone();
            made.push((l, m.value(i).unwrap(), m.lock().unwrap()));
            drop(again);
        }
        assert!(m.object_count().unwrap() >= 150);
        drop(made);
        assert!(count_reaches(&m, 1), "{} left", m.object_count().unwrap());
    }
    // A clone keeps the object after the original is dropped.
    let l = m.list_from([7u8]).unwrap();
    let l2 = l.clone();
    drop(l);
    assert_eq!(l2.to_vec().unwrap(), vec![7]);
    drop(l2);
    assert!(count_reaches(&m, 1));
    keep.insert(&1, &1).unwrap();
}

#[test]
fn a_proxy_stored_in_another_object_keeps_its_object() {
    let _g = common::shared();
    let m = Manager::start().unwrap();
    let outer = m.dict::<u8, ListProxy<u8>>().unwrap();
    outer.insert(&1, &m.list_from([1u8, 2]).unwrap()).unwrap();
    // The only proxy left is the one encoded in the dict.
    assert!(count_reaches(&m, 2));
    let got = outer.get(&1).unwrap().unwrap();
    assert_eq!(got.to_vec().unwrap(), vec![1, 2]);
    drop(got);
    let again = outer.get(&1).unwrap().unwrap();
    assert_eq!(again.to_vec().unwrap(), vec![1, 2]);
    drop(again);
    // The holder goes, then what it held.
    drop(outer);
    assert!(count_reaches(&m, 0));
}

fn receive_and_use((rx, go): (mproc::Connection<ListProxy<u32>>, EventProxy)) {
    assert!(go.wait_timeout(Duration::from_secs(60)).unwrap());
    let l = rx.recv().unwrap();
    assert_eq!(l.to_vec().unwrap(), vec![1, 2, 3]);
    l.push(&4).unwrap();
}

#[test]
fn a_proxy_sent_to_a_child_survives_the_parent_dropping_it() {
    let _g = common::shared();
    let m = Manager::start().unwrap();
    let l = m.list_from([1u32, 2, 3]).unwrap();
    let witness = l.clone();
    let go = m.event().unwrap();
    let (rx, tx) = mproc::Pipe::one_way().unwrap();
    let mut p = Process::new(receive_and_use, (rx, go.clone()));
    p.start().unwrap();
    tx.send(&l).unwrap();
    drop(l);
    drop(witness);
    // Only the copy in transit refers to the list now (the child waits
    // for `go` before it receives it).
    assert_eq!(m.object_count().unwrap(), 2);
    go.set().unwrap();
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0));
    assert!(count_reaches(&m, 1), "{} left", m.object_count().unwrap());
}

fn hold_forever((l, ready): (ListProxy<u32>, EventProxy)) {
    l.push(&1).unwrap(); // adopted on this child's own connection
    ready.set().unwrap();
    loop {
        std::thread::park();
    }
}

#[test]
fn references_of_a_killed_child_are_given_back() {
    let _g = common::shared();
    let m = Manager::start().unwrap();
    let l = m.list::<u32>().unwrap();
    let ready = m.event().unwrap();
    let mut p = Process::new(hold_forever, (l.clone(), ready.clone()));
    p.start().unwrap();
    assert!(ready.wait_timeout(Duration::from_secs(30)).unwrap());
    drop(l);
    drop(ready);
    // The child still refers to both.
    assert_eq!(m.object_count().unwrap(), 2);
    p.kill().unwrap();
    p.join().unwrap();
    assert!(count_reaches(&m, 0), "{} left", m.object_count().unwrap());
}

#[test]
fn a_peer_dribbling_its_handshake_is_dropped_by_the_server() {
    use std::io::{Read, Write};
    use std::os::linux::net::SocketAddrExt;
    let _g = common::shared();
    let m = Manager::start().unwrap();
    let Address::Abstract(name) = m.address() else {
        unreachable!("a manager listens on an abstract address by default")
    };
    let a = std::os::unix::net::SocketAddr::from_abstract_name(name).unwrap();
    let mut peer = std::os::unix::net::UnixStream::connect_addr(&a).unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    // Announces a 200-byte answer, then sends a byte every 100 ms: the
    // whole would take 20 s, each read is quick.
    let mut w = peer.try_clone().unwrap();
    let dribbler = std::thread::spawn(move || {
        let _ = w.write_all(&200i32.to_be_bytes());
        for _ in 0..200 {
            if w.write_all(b"x").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let t0 = std::time::Instant::now();
    // The server's challenge, then its end of file once it gives up.
    let mut got = Vec::new();
    peer.read_to_end(&mut got).unwrap();
    let took = t0.elapsed();
    assert!(got.starts_with(&[0, 0, 0]), "{got:?}");
    assert!(took < Duration::from_secs(15), "dropped after {took:?}");
    drop(peer);
    dribbler.join().unwrap();
    // The server still serves.
    assert_eq!(m.value(1u8).unwrap().get().unwrap(), 1);
}

#[test]
fn a_proxy_clones_while_another_thread_waits_on_it() {
    let _g = common::shared();
    let m = Manager::start().unwrap();
    let e = std::sync::Arc::new(m.event().unwrap());
    let waiter = {
        let e = e.clone();
        std::thread::spawn(move || e.wait_timeout(Duration::from_secs(60)).unwrap())
    };
    // Whether or not the waiter already holds the connection, the clone
    // does not wait for it (it would wait forever: only the clone sets).
    let e2 = EventProxy::clone(&e);
    e2.set().unwrap();
    assert!(waiter.join().unwrap());
    drop((e, e2));
    assert!(count_reaches(&m, 0));
}

#[test]
fn a_proxy_on_a_queue_stays_alive_until_its_getter_drops_it() {
    let _g = common::shared();
    let m = Manager::start().unwrap();
    let q = m.queue::<ListProxy<u8>>(0).unwrap();
    q.put(&m.list_from([5u8]).unwrap()).unwrap();
    // Only the copy on the queue refers to the list: it stays.
    assert_eq!(m.object_count().unwrap(), 2);
    let l = q.get().unwrap();
    assert_eq!(l.to_vec().unwrap(), vec![5]);
    drop(l);
    assert!(count_reaches(&m, 1), "{} left", m.object_count().unwrap());
}

#[test]
fn an_empty_key_is_no_key_and_tcp_refuses_it() {
    let _g = common::shared();
    let tcp = Address::tcp("127.0.0.1:0").unwrap();
    for r in [
        Manager::serve(&tcp, b""),
        Manager::builder().address(tcp.clone()).authkey("").start(),
    ] {
        assert!(matches!(r, Err(Error::InvalidArgument(_))));
    }
}

/// Opens `n` TCP connections to `addr` that never send a byte.
fn idle_sockets(addr: &Address, n: usize) -> Vec<std::net::TcpStream> {
    let Address::Tcp(a) = addr else {
        unreachable!()
    };
    (0..n)
        .map_while(|_| std::net::TcpStream::connect_timeout(a, Duration::from_secs(1)).ok())
        .collect()
}

#[test]
fn a_flood_of_idle_sockets_does_not_stop_the_server() {
    let _g = common::shared();
    let m = Manager::serve(&Address::tcp("127.0.0.1:0").unwrap(), b"flood key").unwrap();
    let pid = m.pid().unwrap();
    let flood = idle_sockets(m.address(), 300);
    assert!(flood.len() >= 100, "only {} sockets", flood.len());
    let t0 = std::time::Instant::now();
    let d = m.dict::<u32, u32>().unwrap();
    d.insert(&1, &2).unwrap();
    assert_eq!(d.get(&1).unwrap(), Some(2));
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    drop(flood);
    assert!(alive(pid));
    assert_eq!(m.object_count().unwrap(), 1);
}

fn vm_size(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmSize:"))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kb * 1024
}

fn limit_address_space(pid: i32, bytes: Option<u64>) {
    use rustix::process::{prlimit, Pid, Resource, Rlimit};
    let lim = Rlimit {
        current: bytes,
        maximum: None,
    };
    prlimit(Pid::from_raw(pid), Resource::As, lim).unwrap();
}

/// A container-style cap: the server's address space is capped just above
/// what it uses, so that no thread stack (2 MiB) can be mapped. Idle
/// sockets flood it; it must neither die nor stop serving the connection
/// it has, and once the cap is lifted it serves new ones.
#[test]
fn a_server_that_cannot_start_threads_survives_a_flood() {
    let _g = common::shared();
    let key = b"capped key";
    let m = Manager::serve(&Address::tcp("127.0.0.1:0").unwrap(), key).unwrap();
    let pid = m.pid().unwrap();
    let d = m.dict::<u32, u32>().unwrap();
    d.insert(&1, &1).unwrap();
    limit_address_space(pid, Some(vm_size(pid) + (1 << 20)));
    let flood = idle_sockets(m.address(), 300);
    // A new client's connection needs a thread the server cannot start:
    // that connection is closed, nothing else.
    let refused = Manager::connect(m.address(), key);
    assert!(refused.is_err(), "a thread could still be started");
    d.insert(&2, &2).unwrap();
    assert_eq!(d.get(&1).unwrap(), Some(1));
    assert!(alive(pid));
    limit_address_space(pid, None);
    drop(flood);
    let other = Manager::connect(m.address(), key).unwrap();
    assert_eq!(other.object_count().unwrap(), 1);
    assert_eq!(d.len().unwrap(), 2);
}
