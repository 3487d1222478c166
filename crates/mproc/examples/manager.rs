//! A shared dict and list, updated by several processes through a
//! `Manager` (Python's `multiprocessing.Manager()`).
//!
//! `cargo run --example manager`

use mproc::manager::{DictProxy, ListProxy, LockProxy};
use mproc::{Manager, Process};

/// Each worker counts words in its share of the text, adds its counts to
/// the shared dict in one batch, and logs itself in the shared list.
fn worker(
    (id, words, counts, log, lock): (
        u32,
        Vec<String>,
        DictProxy<String, u32>,
        ListProxy<String>,
        LockProxy,
    ),
) {
    let mut mine = std::collections::HashMap::<String, u32>::new();
    for w in words {
        *mine.entry(w).or_default() += 1;
    }
    // Read-modify-write across processes: hold the manager's lock.
    lock.acquire().unwrap();
    let keys: Vec<String> = mine.keys().cloned().collect();
    let before = counts.get_many(&keys).unwrap();
    let merged = keys.into_iter().zip(before).map(|(k, old)| {
        let n = mine[&k] + old.unwrap_or(0);
        (k, n)
    });
    counts.update(merged).unwrap();
    lock.release().unwrap();
    log.push(&format!(
        "worker {id} counted {} distinct words",
        mine.len()
    ))
    .unwrap();
}

fn main() -> mproc::Result<()> {
    let text = "the quick brown fox jumps over the lazy dog the fox again";
    let words: Vec<String> = text.split(' ').map(str::to_string).collect();

    let mut manager = Manager::start()?;
    let counts = manager.dict::<String, u32>()?;
    let log = manager.list::<String>()?;
    let lock = manager.lock()?;

    let mut workers: Vec<Process> = words
        .chunks(4)
        .enumerate()
        .map(|(i, chunk)| {
            let args = (
                i as u32,
                chunk.to_vec(),
                counts.clone(),
                log.clone(),
                lock.clone(),
            );
            Process::new(worker, args)
        })
        .collect();
    for p in &mut workers {
        p.start()?;
    }
    for p in &mut workers {
        p.join()?;
    }

    let mut all = counts.snapshot()?;
    all.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    println!("counts: {all:?}");
    let mut lines = log.to_vec()?;
    lines.sort();
    for line in lines {
        println!("{line}");
    }
    assert_eq!(counts.get(&"the".to_string())?, Some(3));
    manager.shutdown()
}
