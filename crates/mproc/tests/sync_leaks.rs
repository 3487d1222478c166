//! Nothing leaks: every synchronisation object lives in a memfd that is
//! closed (and unmapped) with its last handle, here and in the children it
//! travelled to. Alone in its binary, so that no other test opens
//! descriptors while this one counts them.

use mproc::__private::open_fd_count;
use mproc::{Barrier, BoundedSemaphore, Condition, Event, Lock, RLock, Semaphore};

type Objects = (
    Lock,
    RLock,
    Semaphore,
    BoundedSemaphore,
    Event,
    Condition,
    Barrier,
);

fn touch((lock, rlock, sem, bsem, event, cond, barrier): Objects) {
    drop(lock.lock().unwrap());
    drop(rlock.lock().unwrap());
    drop(sem.permit().unwrap());
    drop(bsem.permit().unwrap());
    event.set();
    drop(cond.lock().unwrap());
    barrier.wait().unwrap();
}

#[test]
fn objects_and_their_travels_leak_no_descriptor() {
    mproc::spawn(drop::<()>, ()).unwrap().join().unwrap(); // the fork server
    let before = open_fd_count();
    for _ in 0..20 {
        let objects: Objects = (
            Lock::new().unwrap(),
            RLock::new().unwrap(),
            Semaphore::new(1).unwrap(),
            BoundedSemaphore::new(1).unwrap(),
            Event::new().unwrap(),
            Condition::new().unwrap(),
            Barrier::new(1).unwrap(),
        );
        let mine = objects.clone();
        mproc::spawn(touch, objects).unwrap().join().unwrap();
        assert!(mine.4.is_set());
        assert!(open_fd_count() > before, "the objects are still held here");
    }
    assert_eq!(open_fd_count(), before);
}
