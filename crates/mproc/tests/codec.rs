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

/// The checked-in fuzz seeds of well-formed manager requests still decode
/// (the format's bytes are those the corpus was written in), and the
/// malformed ones are refused with a typed error (a truncated batch inside
/// a well-formed request is the server's protocol error).
#[test]
fn the_fuzz_corpus_speaks_the_format() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/manager_request");
    for (seed, ok) in [
        ("hello", true),
        ("object_count", true),
        ("create_named_dict", true),
        ("dict_insert_with_refs", true),
        ("huge_vec", false),
        ("list_extend_truncated", false),
    ] {
        let bytes = std::fs::read(dir.join(seed)).unwrap();
        let r = mproc::__private::fuzz::manager_request(&bytes);
        assert_eq!(r.is_ok(), ok, "{seed}: {r:?}");
        if seed == "huge_vec" {
            assert!(matches!(r, Err(mproc::Error::Decode(_))), "{seed}: {r:?}");
        }
    }
}
