//! Values through the codec as users meet it: what a `put` measures before
//! it writes has no side effect.

use std::time::{Duration, Instant};

use mproc::manager::DictProxy;
use mproc::{Manager, Queue};

/// Polls the server's object count (a proxy's drop does not wait for the
/// server) until it is `want`, or gives up after a generous guard.
fn objects_settle_at(m: &Manager, want: usize) -> usize {
    let guard = Instant::now() + Duration::from_secs(20);
    loop {
        let n = m.object_count().unwrap();
        if n == want || Instant::now() > guard {
            return n;
        }
        std::thread::yield_now();
    }
}

#[test]
fn a_proxy_through_a_queue_leaves_no_reference_behind() {
    let mut m = Manager::start().unwrap();
    {
        let d = m.dict::<u64, u64>().unwrap();
        d.insert(&1, &2).unwrap();
        // Small: measured, then encoded into place; and large: encoded once.
        let q = Queue::<(DictProxy<u64, u64>, Vec<u8>)>::new().unwrap();
        q.put((d.clone(), Vec::new())).unwrap();
        q.put((d.clone(), vec![0; 1 << 16])).unwrap();
        for _ in 0..2 {
            let (copy, _) = q.get().unwrap();
            assert_eq!(copy.get(&1).unwrap(), Some(2));
        }
    }
    assert_eq!(objects_settle_at(&m, 0), 0);
    m.shutdown().unwrap();
}
