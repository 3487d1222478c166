//! Trust: no code address decoded from bytes another process wrote is
//! called unless this process vouches for it.
//!
//! A `Barrier` carries its action as an offset in the executable. A child
//! (a compromised worker, say) that sends its parent a barrier whose action
//! the parent never chose must not make the parent run it, nor crash it:
//! the parent gets `Error::UntrustedCode`. A barrier the parent made, sent
//! to a child at start and back, keeps its action in both.
//!
//! The forged messages are a lookalike of the barrier's wire form, sent
//! over a connection re-typed by a test-only hook: what is under test is
//! the receiver's decoding.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use common::GENEROUS;
use mproc::{Barrier, Connection, Error, Event, Pipe, Process, Queue, StartMethod};
use serde::{Deserialize, Serialize};

/// Set if `evil` ever runs in this process.
static EVIL_RAN: AtomicBool = AtomicBool::new(false);

/// A function the test process never vouches for: only children make
/// references to it.
fn evil() {
    EVIL_RAN.store(true, Ordering::SeqCst);
}

/// A harmless action the children make barriers with, to take its real
/// offset and the executable's identity from the wire.
fn innocent() {}

/// Runs of `counted` in this process.
static ACTIONS: AtomicU32 = AtomicU32::new(0);

fn counted() {
    ACTIONS.fetch_add(1, Ordering::SeqCst);
}

/// A `Barrier` on the wire: its shared block (a descriptor, as an
/// `Event`'s), parties, default timeout, and action (its offset and the
/// executable's identity).
#[derive(Serialize, Deserialize)]
struct Lookalike {
    block: Event,
    parties: u32,
    timeout: Option<Duration>,
    action: Option<(i64, Vec<u8>)>,
}

/// A real barrier as its lookalike (through a pipe within this process).
fn wire_of(barrier: &Barrier) -> Lookalike {
    let (rx, tx) = Pipe::<Barrier>::one_way().unwrap();
    tx.send(barrier).unwrap();
    let rx: Connection<Lookalike> = mproc::__private::cast_connection(rx);
    rx.recv().unwrap()
}

/// A real barrier with the action `innocent`, as its lookalike.
fn innocent_wire() -> Lookalike {
    wire_of(&Barrier::builder(1).action(innocent).build().unwrap())
}

fn addr(f: fn()) -> i64 {
    f as usize as i64
}

/// How a child forges the action it sends.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
enum Forge {
    /// A real barrier whose action is `evil`, made in the child.
    OwnEvil,
    /// A barrier whose `innocent` offset was moved to `evil`'s.
    TamperedToEvil,
    /// A barrier whose offset is this garbage.
    Garbage(i64),
}

fn forged(forge: Forge) -> Lookalike {
    let mut wire = innocent_wire();
    let action = wire.action.as_mut().expect("an action");
    match forge {
        Forge::OwnEvil => unreachable!("sent as a real barrier"),
        Forge::TamperedToEvil => action.0 += addr(evil) - addr(innocent),
        Forge::Garbage(offset) => action.0 = offset,
    }
    wire
}

/// The child: sends one barrier carrying a forged action on `conn`, then
/// an honest barrier without an action.
fn send_forged((conn, forge): (Connection<Barrier>, Forge)) {
    if let Forge::OwnEvil = forge {
        let barrier = Barrier::builder(1).action(evil).build().unwrap();
        conn.send(&barrier).unwrap();
    }
    let conn: Connection<Lookalike> = mproc::__private::cast_connection(conn);
    if !matches!(forge, Forge::OwnEvil) {
        conn.send(&forged(forge)).unwrap();
    }
    conn.send(&wire_of(&Barrier::new(1).unwrap())).unwrap();
}

/// The parent's side: the barrier is refused with `UntrustedCode`, and if
/// it were accepted, waiting on it would run the action here.
fn assert_refused(got: mproc::Result<Barrier>, what: &str) {
    match got {
        Err(Error::UntrustedCode { offset, signature }) => {
            assert!(signature.contains("fn()"), "{what}: {signature}");
            let _ = offset;
        }
        Err(e) => panic!("{what}: another error: {e}"),
        Ok(barrier) => {
            // The old behaviour: the action runs in this process.
            let _ = barrier.wait_timeout(GENEROUS);
            panic!(
                "{what}: the barrier was accepted (evil ran here: {})",
                EVIL_RAN.load(Ordering::SeqCst)
            );
        }
    }
    assert!(!EVIL_RAN.load(Ordering::SeqCst), "{what}: evil ran here");
}

fn over_pipe(method: StartMethod, forge: Forge) {
    let (rx, tx) = Pipe::<Barrier>::one_way().unwrap();
    let mut child = Process::new(send_forged, (tx, forge)).start_method(method);
    child.start().unwrap();
    let got = rx.recv_timeout(GENEROUS);
    assert_refused(got, &format!("{method:?} {forge:?}"));
    // The connection still works after the refusal.
    let honest = rx.recv_timeout(GENEROUS).unwrap();
    assert_eq!(honest.wait().unwrap(), 0);
    child.join().unwrap();
    assert_eq!(child.exitcode(), Some(0), "{method:?} {forge:?}");
}

#[test]
fn a_childs_own_action_is_not_run_by_its_parent() {
    let _g = common::shared();
    for method in mproc::all_start_methods() {
        over_pipe(method, Forge::OwnEvil);
    }
}

#[test]
fn an_action_tampered_to_an_unvouched_function_is_refused() {
    let _g = common::shared();
    for method in mproc::all_start_methods() {
        over_pipe(method, Forge::TamperedToEvil);
    }
}

#[test]
fn a_garbage_action_offset_is_refused_without_a_crash() {
    let _g = common::shared();
    for garbage in [1, -1, 0x1234_5678, i64::MAX, i64::MIN, 0] {
        over_pipe(StartMethod::Spawn, Forge::Garbage(garbage));
    }
}

fn put_own_evil(queue: Queue<Barrier>) {
    let barrier = Barrier::builder(1).action(evil).build().unwrap();
    queue.put(barrier).unwrap();
}

#[test]
fn a_barrier_put_in_a_queue_by_a_child_keeps_no_unvouched_action() {
    let _g = common::shared();
    let queue = Queue::<Barrier>::new().unwrap();
    let mut child = Process::new(put_own_evil, queue.clone()).start_method(StartMethod::Spawn);
    child.start().unwrap();
    let got = queue.get_timeout(GENEROUS);
    child.join().unwrap();
    let got = got.map_err(|e| match e {
        mproc::GetError::Failed(e) => e,
        other => panic!("{other}"),
    });
    assert_refused(got, "queue");
    // The queue stays usable.
    let mut child = Process::new(put_own_evil, queue.clone()).start_method(StartMethod::Spawn);
    child.start().unwrap();
    let got = queue.get_timeout(GENEROUS).map_err(|e| match e {
        mproc::GetError::Failed(e) => e,
        other => panic!("{other}"),
    });
    assert_refused(got, "queue, second item");
    child.join().unwrap();
}

/// The child: runs the parent's barrier (its action runs here), sends it
/// back with the count of runs here.
fn wait_and_return((barrier, back): (Barrier, Connection<(Barrier, u32)>)) {
    assert_eq!(barrier.wait().unwrap(), 0);
    back.send(&(barrier, ACTIONS.load(Ordering::SeqCst)))
        .unwrap();
}

#[test]
fn a_parents_action_runs_in_its_child_and_after_the_round_trip() {
    let _g = common::shared();
    let barrier = Barrier::builder(1).action(counted).build().unwrap();
    for method in mproc::all_start_methods() {
        let (rx, tx) = Pipe::<(Barrier, u32)>::one_way().unwrap();
        let mut child = Process::new(wait_and_return, (barrier.clone(), tx)).start_method(method);
        child.start().unwrap();
        let (back, runs_there) = rx.recv_timeout(GENEROUS).unwrap();
        child.join().unwrap();
        assert_eq!(child.exitcode(), Some(0), "{method:?}");
        // Forked children inherit this process's count.
        assert!(
            runs_there >= 1,
            "{method:?}: the action did not run in the child"
        );
        let before = ACTIONS.load(Ordering::SeqCst);
        assert_eq!(back.wait().unwrap(), 0);
        assert_eq!(ACTIONS.load(Ordering::SeqCst), before + 1, "{method:?}");
    }
}

/// A grandchild's own action reaches its parent (our child), which does
/// not vouch for it either: refused there too, whatever the depth.
fn relay(back: Connection<String>) {
    let (rx, tx) = Pipe::<Barrier>::one_way().unwrap();
    let mut child =
        Process::new(send_forged, (tx, Forge::OwnEvil)).start_method(StartMethod::Spawn);
    child.start().unwrap();
    let verdict = match rx.recv_timeout(GENEROUS) {
        Err(Error::UntrustedCode { .. }) => "refused".to_string(),
        Err(e) => format!("error: {e}"),
        Ok(_) => "accepted".to_string(),
    };
    child.join().unwrap();
    back.send(&verdict).unwrap();
}

#[test]
fn a_child_refuses_its_own_childs_action_too() {
    let _g = common::shared();
    let (rx, tx) = Pipe::<String>::one_way().unwrap();
    let mut child = Process::new(relay, tx).start_method(StartMethod::Spawn);
    child.start().unwrap();
    assert_eq!(rx.recv_timeout(GENEROUS).unwrap(), "refused");
    child.join().unwrap();
}

/// A pool initializer: the parent's barrier, whose action runs here.
fn init_wait(barrier: Barrier) {
    assert_eq!(barrier.wait().unwrap(), 0);
}

#[test]
fn a_parents_barrier_reaches_pool_workers_through_the_initializer() {
    let _g = common::shared();
    let barrier = Barrier::builder(1).action(counted).build().unwrap();
    for method in [StartMethod::Spawn, StartMethod::ForkServer] {
        let pool = mproc::Pool::builder()
            .processes(2)
            .start_method(method)
            .initializer(init_wait, barrier.clone())
            .build()
            .unwrap();
        // Each worker ran the action once in its initializer.
        let runs = pool
            .map(|_: u32| ACTIONS.load(Ordering::SeqCst), 0..8)
            .unwrap();
        assert!(runs.iter().all(|&n| n == 1), "{method:?}: {runs:?}");
        let sums = pool
            .starmap(|a: u32, b: u32| a + b, [(1, 2), (3, 4)])
            .unwrap();
        assert_eq!(sums, [3, 7]);
        assert_eq!(pool.apply(|x: u8| x * 2, 21).unwrap(), 42);
    }
}
