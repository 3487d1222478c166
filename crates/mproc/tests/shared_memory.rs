//! SharedMemory: names, owners, crash cleanup and cross-process writes.
//!
//! The behaviours CPython's `_TestSharedMemory` checks (create/attach by
//! name, the real size on attach, `FileExistsError` and
//! `FileNotFoundError`, size 0 refused, unlink by one process, writes seen
//! by another), rewritten; plus the crash case CPython leaves to its
//! resource tracker: an owner killed leaves no name behind.
//!
//! Every test uses names of its own (with this process's pid) and checks
//! that none is left in `/dev/shm`.

use std::path::Path;

use mproc::{Connection, Error, Pipe, Process, SharedMemory};

/// A name unique to this test process.
fn name(what: &str) -> String {
    format!("test-{what}-{}", std::process::id())
}

fn file_of(name: &str) -> String {
    format!("/dev/shm/mproc.{name}")
}

fn exists(name: &str) -> bool {
    Path::new(&file_of(name)).exists()
}

#[test]
fn create_open_and_unlink_errors_are_typed() {
    let n = name("errors");
    let owner = SharedMemory::create(&n, 10).unwrap();
    assert!(exists(&n));
    match SharedMemory::create(&n, 10) {
        Err(Error::AlreadyExists { name }) => assert_eq!(name, n),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    let missing = name("errors-missing");
    match SharedMemory::open(&missing) {
        Err(Error::NotFound { name }) => assert_eq!(name, missing),
        other => panic!("expected NotFound, got {other:?}"),
    }
    let zero = name("errors-zero");
    assert!(matches!(
        SharedMemory::create(&zero, 0),
        Err(Error::InvalidArgument(_))
    ));
    assert!(!exists(&zero), "nothing left by a refused create");
    assert!(matches!(
        SharedMemory::anonymous(0),
        Err(Error::InvalidArgument(_))
    ));
    for bad in ["", "a/b", "nul\0", &"x".repeat(300)] {
        assert!(matches!(
            SharedMemory::create(bad, 1),
            Err(Error::InvalidArgument(_))
        ));
    }
    owner.unlink().unwrap();
    assert!(!exists(&n));
    assert!(matches!(owner.unlink(), Err(Error::NotFound { .. })));
    assert!(matches!(
        SharedMemory::anonymous(1).unwrap().unlink(),
        Err(Error::InvalidState(_))
    ));
}

#[test]
fn open_reads_the_real_size() {
    let n = name("size");
    let owner = SharedMemory::create(&n, 12345).unwrap();
    let other = SharedMemory::open(&n).unwrap();
    assert_eq!(other.size(), 12345);
    assert_eq!(other.name(), Some(n.as_str()));
    assert!(owner.is_owner() && !other.is_owner());
    drop((owner, other));
    assert!(!exists(&n));
}

fn write_by_name((name, at, bytes): (String, usize, Vec<u8>)) -> bool {
    let shm = SharedMemory::open(&name).unwrap();
    shm.write(at, &bytes).unwrap();
    shm.is_owner()
}

fn write_by_handle((shm, at, bytes): (SharedMemory, usize, Vec<u8>)) -> bool {
    shm.write(at, &bytes).unwrap();
    shm.is_owner()
}

#[test]
fn a_child_writes_through_a_named_segment() {
    let n = name("named");
    let shm = SharedMemory::create(&n, 64).unwrap();
    let args = (n.clone(), 3, b"by name".to_vec());
    assert!(!mproc::spawn(write_by_name, args).unwrap().join().unwrap());
    let args = (shm.clone(), 20, b"by handle".to_vec());
    let child_owner = mproc::spawn(write_by_handle, args).unwrap().join().unwrap();
    assert!(!child_owner, "a child never owns the segment");
    let mut buf = [0u8; 7];
    shm.read(3, &mut buf).unwrap();
    assert_eq!(&buf, b"by name");
    assert_eq!(&shm.to_vec()[20..29], b"by handle");
    assert!(exists(&n), "neither child unlinked it");
    drop(shm);
    assert!(!exists(&n));
}

#[test]
fn a_child_writes_through_an_anonymous_segment() {
    let shm = SharedMemory::anonymous(1 << 20).unwrap();
    let args = (shm.clone(), (1 << 20) - 5, b"tail!".to_vec());
    mproc::spawn(write_by_handle, args).unwrap().join().unwrap();
    let v = shm.to_vec();
    assert_eq!(&v[v.len() - 5..], b"tail!");
    assert!(v[..v.len() - 5].iter().all(|&b| b == 0));
}

#[test]
fn reads_and_writes_are_bounds_checked() {
    let shm = SharedMemory::anonymous(16).unwrap();
    assert!(matches!(
        shm.write(10, &[0; 7]),
        Err(Error::OutOfRange { index: 16, len: 16 })
    ));
    assert!(matches!(
        shm.read(17, &mut [0; 1]),
        Err(Error::OutOfRange { index: 17, len: 16 })
    ));
    // Unaligned starts and odd lengths go through the word-wise copy.
    let data: Vec<u8> = (1..=13).collect();
    shm.write(3, &data).unwrap();
    let mut back = [0u8; 13];
    shm.read(3, &mut back).unwrap();
    assert_eq!(back.to_vec(), data);
    shm.write(16, &[]).unwrap();
}

fn drop_attached(name: String) {
    drop(SharedMemory::open(&name).unwrap());
}

#[test]
fn the_owner_unlinks_on_drop_attachers_never_do() {
    let n = name("owner");
    let owner = SharedMemory::create(&n, 8).unwrap();
    let clone = owner.clone();
    drop(SharedMemory::open(&n).unwrap());
    mproc::spawn(drop_attached, n.clone())
        .unwrap()
        .join()
        .unwrap();
    mproc::spawn(write_by_handle, (owner.clone(), 0, vec![1]))
        .unwrap()
        .join()
        .unwrap();
    assert!(exists(&n), "attachers and children leave the name");
    drop(owner);
    assert!(exists(&n), "a clone of the owner still lives");
    let attached = SharedMemory::open(&n).unwrap();
    drop(clone);
    assert!(!exists(&n), "the owner's last handle unlinks");
    assert_eq!(attached.to_vec()[0], 1, "mappings outlive the name");
    assert!(matches!(
        SharedMemory::open(&n),
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn the_owner_does_not_unlink_a_newer_segment_of_the_same_name() {
    let n = name("newer");
    let first = SharedMemory::create(&n, 8).unwrap();
    SharedMemory::open(&n).unwrap().unlink().unwrap(); // an attacher unlinks
    let second = SharedMemory::create(&n, 8).unwrap();
    drop(first);
    assert!(exists(&n), "the first owner left the second's name alone");
    drop(second);
    assert!(!exists(&n));
}

/// Creates the segment `name`, says so, and waits to be killed.
fn create_and_hang((name, tell): (String, Connection<()>)) {
    let shm = SharedMemory::create(&name, 4096).unwrap();
    shm.write(0, b"left behind").unwrap();
    tell.send(&()).unwrap();
    loop {
        std::thread::park();
    }
}

#[test]
fn the_name_of_a_killed_owner_is_swept() {
    let n = name("killed");
    let (here, there) = Pipe::new().unwrap();
    let mut p = Process::new(create_and_hang, (n.clone(), there));
    p.start().unwrap();
    here.recv().unwrap();
    assert!(exists(&n));
    let attached = SharedMemory::open(&n).unwrap();
    assert!(exists(&n), "a live owner's name is not swept");
    p.kill().unwrap();
    p.join().unwrap();
    // The next create (or open) by anyone sweeps it (perhaps another
    // test's, already).
    let other = SharedMemory::create(&name("killed-next"), 1).unwrap();
    assert!(!exists(&n), "swept");
    assert!(matches!(
        SharedMemory::open(&n),
        Err(Error::NotFound { .. })
    ));
    let mut buf = [0u8; 11];
    attached.read(0, &mut buf).unwrap();
    assert_eq!(&buf, b"left behind", "an attacher keeps its mapping");
    drop(other);
}

#[test]
fn abandoned_files_are_swept_and_live_ones_kept() {
    // A published file no one holds the lock of (an owner gone before it
    // could unlink), and a staging file of a dead process.
    let stale = name("stale");
    std::fs::write(file_of(&stale), b"x").unwrap();
    fn pid(_: ()) -> u32 {
        std::process::id()
    }
    let dead = mproc::spawn(pid, ()).unwrap().join().unwrap();
    let staging = format!("/dev/shm/mproc-new.{dead}.{}", std::process::id());
    std::fs::write(&staging, b"x").unwrap();
    let live = SharedMemory::create(&name("live"), 1).unwrap();
    SharedMemory::sweep().unwrap();
    assert!(!exists(&stale));
    assert!(!Path::new(&staging).exists());
    assert!(exists(&name("live")));
    drop(live);
    assert!(!exists(&name("live")));
}

#[test]
fn a_forked_child_does_not_unlink_its_parents_segment() {
    let n = name("forked");
    let shm = SharedMemory::create(&n, 8).unwrap();
    let in_child = shm.clone();
    // The test harness has other threads; the child only touches memory and
    // a descriptor it owns, and glibc's malloc is fork-safe.
    mproc::set_fork_warning(false);
    let owner_in_child = mproc::fork(move || {
        in_child.write(0, &[42]).unwrap();
        in_child.is_owner() // dropped here, in the child
    })
    .unwrap()
    .join()
    .unwrap();
    assert!(!owner_in_child);
    assert!(exists(&n));
    assert_eq!(shm.to_vec()[0], 42);
    drop(shm);
    assert!(!exists(&n));
}
