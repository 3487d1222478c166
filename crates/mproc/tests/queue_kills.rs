//! Producers and consumers SIGKILLed at random points, thousands of times:
//! no queue wedges, and every item of a producer that lived is delivered
//! exactly once (a killed producer's at most once).
//!
//! Each round makes a queue (bounded to 1..=64 items, unbounded, or a small
//! byte ring), starts two producers that live (1500 items each), three
//! producers that put without end and two consumers, then kills a producer
//! or a consumer at a random moment (delays drawn from a seeded PRNG) and
//! starts another in its place, three times over, and at last kills every
//! endless producer at once while the two others still put. Consumers
//! count every item they take in shared memory (a count per consumer,
//! producer and sequence number); a consumer killed between taking an item
//! and counting it loses that one item, so each consumer killed allows one
//! missing item, never a duplicate. Every wait is bounded ([`GUARD`]): a
//! wedged queue fails the round instead of hanging the test.
//!
//! `MPROC_QUEUE_KILL_ROUNDS` sets the number of rounds (default
//! [`ROUNDS`]; the soak `a_long_soak_of_kills`, ignored by default, runs
//! `MPROC_QUEUE_KILL_SOAK_ROUNDS`, default 5000); `MPROC_QUEUE_KILL_SEED`
//! the seed. `MPROC_QUEUE_KILL_KEEP_GOING=1` counts the wedged rounds
//! instead of stopping at the first.
//!
//! Before the queue's lock and sleeps were taken in naps, about one round
//! in 30 wedged here (a producer's `put_timeout` expired): glibc's robust
//! mutex lost the wake-up of a producer sleeping on the put lock when the
//! producer it woke was being killed (see `acquire` in `queue/wait.rs`).

mod common;

use common::Rng;

use std::time::{Duration, Instant};

use mproc::{GetError, JoinHandle, Queue, RawArray};

/// The bound of every wait of a round: far beyond what a live queue needs.
const GUARD: Duration = Duration::from_secs(10);
/// Rounds of the default run.
const ROUNDS: usize = 400;
/// Kills per round, beside the final kill of the endless producers.
const KILLS: usize = 3;
/// Items of each producer that lives.
const LIVE_ITEMS: u32 = 1500;
/// Sequence numbers counted per producer (endless producers stop there and
/// wait to be killed).
const SEQS: usize = 4096;
const LIVE_PRODUCERS: usize = 2;
const ENDLESS: usize = 3;
const CONSUMERS: usize = 2;
/// Producer and consumer slots of a round: the first ones and their
/// replacements.
const PRODUCER_SLOTS: usize = LIVE_PRODUCERS + ENDLESS + KILLS;
const CONSUMER_SLOTS: usize = CONSUMERS + KILLS;
/// The producer number of the item that tells a consumer to stop.
const STOP: u32 = u32::MAX;

type Item = (u32, u32, Vec<u8>);

fn env(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn counter(consumer: usize, producer: u32, seq: u32) -> usize {
    (consumer * PRODUCER_SLOTS + producer as usize) * SEQS + seq as usize
}

/// Puts `n` items (`None`: without end) numbered from 0; exit status 3 if a
/// put waited [`GUARD`] in vain.
fn produce(q: &Queue<Item>, id: u32, n: Option<u32>, pad: bool) {
    for seq in 0..n.unwrap_or(SEQS as u32) {
        let bytes = if pad { (seq % 61) as usize * 8 } else { 0 };
        if q.put_timeout((id, seq, vec![id as u8; bytes]), GUARD)
            .is_err()
        {
            std::process::exit(3);
        }
    }
    if n.is_none() {
        // An endless producer that ran out of numbers waits to be killed.
        std::thread::sleep(GUARD * 3);
    }
}

/// Takes and counts items until a `STOP`; exit status 4 if a get waited
/// [`GUARD`] in vain.
fn consume(q: &Queue<Item>, counts: &RawArray<u32>, slot: usize) {
    loop {
        match q.get_timeout(GUARD) {
            Ok((STOP, _, _)) => return,
            Ok((id, seq, _)) => {
                let at = counter(slot, id, seq);
                let n = counts.get(at).unwrap();
                counts.set(at, n + 1).unwrap();
            }
            Err(GetError::Timeout) => std::process::exit(4),
            Err(e) => panic!("get: {e}"),
        }
    }
}

struct Round {
    q: Queue<Item>,
    counts: RawArray<u32>,
    pad: bool,
    live: Vec<JoinHandle<()>>,
    endless: Vec<(u32, JoinHandle<()>)>,
    consumers: Vec<(usize, JoinHandle<()>)>,
    next_producer: u32,
    next_consumer: usize,
    killed_consumers: usize,
    kills: usize,
}

impl Round {
    fn start_endless(&mut self) {
        let (q, id, pad) = (self.q.clone(), self.next_producer, self.pad);
        self.next_producer += 1;
        let h = mproc::fork(move || produce(&q, id, None, pad)).unwrap();
        self.endless.push((id, h));
    }

    fn start_consumer(&mut self) {
        let (q, counts, slot) = (self.q.clone(), self.counts.clone(), self.next_consumer);
        self.next_consumer += 1;
        let h = mproc::fork(move || consume(&q, &counts, slot)).unwrap();
        self.consumers.push((slot, h));
    }

    fn kill(&mut self, h: JoinHandle<()>) {
        let mut h = h;
        h.kill().unwrap();
        // SIGKILLed, or done with its items and sleeping: either way gone.
        let r = h.join_timeout(GUARD);
        assert!(
            !matches!(r, Err(mproc::Error::Timeout)),
            "a killed child lives on"
        );
        self.kills += 1;
    }
}

/// One round; `Err` says what wedged.
fn round(rng: &mut Rng, number: usize) -> Result<usize, String> {
    let q = match number % 3 {
        0 => Queue::bounded(1 + rng.below(64) as usize).unwrap(),
        1 => Queue::new().unwrap(),
        _ => Queue::with_byte_limit(0, 4096 << rng.below(4)).unwrap(),
    };
    let counts = RawArray::<u32>::new(CONSUMER_SLOTS * PRODUCER_SLOTS * SEQS).unwrap();
    let mut r = Round {
        q,
        counts,
        pad: rng.below(2) == 0,
        live: Vec::new(),
        endless: Vec::new(),
        consumers: Vec::new(),
        next_producer: LIVE_PRODUCERS as u32,
        next_consumer: 0,
        killed_consumers: 0,
        kills: 0,
    };
    for _ in 0..CONSUMERS {
        r.start_consumer();
    }
    for id in 0..LIVE_PRODUCERS as u32 {
        let (q, pad) = (r.q.clone(), r.pad);
        r.live
            .push(mproc::fork(move || produce(&q, id, Some(LIVE_ITEMS), pad)).unwrap());
    }
    for _ in 0..ENDLESS {
        r.start_endless();
    }
    for _ in 0..KILLS {
        std::thread::sleep(Duration::from_micros(rng.below(2000)));
        if rng.below(4) == 0 {
            let (_, h) = r.consumers.remove(rng.below(CONSUMERS as u64) as usize);
            r.kill(h);
            r.killed_consumers += 1;
            r.start_consumer();
        } else {
            let (_, h) = r.endless.remove(rng.below(ENDLESS as u64) as usize);
            r.kill(h);
            r.start_endless();
        }
    }
    std::thread::sleep(Duration::from_micros(rng.below(2000)));
    for (_, h) in std::mem::take(&mut r.endless) {
        r.kill(h);
    }
    let mut wedged = Vec::new();
    for (i, mut h) in std::mem::take(&mut r.live).into_iter().enumerate() {
        match h.join_timeout(GUARD * 2) {
            Ok(()) => {}
            Err(mproc::Error::Timeout) => {
                h.kill().unwrap();
                let _ = h.join();
                wedged.push(format!("producer {i} hung"));
            }
            Err(e) => wedged.push(format!("producer {i}: {e}")),
        }
    }
    for _ in 0..r.consumers.len() {
        if r.q.put_timeout((STOP, 0, Vec::new()), GUARD).is_err() {
            wedged.push("the stop item did not go in".into());
        }
    }
    for (slot, mut h) in std::mem::take(&mut r.consumers) {
        match h.join_timeout(GUARD * 2) {
            Ok(()) => {}
            Err(mproc::Error::Timeout) => {
                h.kill().unwrap();
                let _ = h.join();
                wedged.push(format!("consumer {slot} hung"));
            }
            Err(e) => wedged.push(format!("consumer {slot}: {e}")),
        }
    }
    if !wedged.is_empty() {
        return Err(format!("round {number}: {}", wedged.join("; ")));
    }
    // Whatever the consumers left (nothing but a killed producer's items
    // published after the stops could be).
    let mut left = Vec::new();
    while let Ok(item) = r.q.try_get() {
        left.push(item);
    }
    assert!(r.q.is_empty());
    check(&r, &left, number);
    Ok(r.kills)
}

/// Every item counted: none twice, and no more missing than consumers
/// killed (a live producer's items all, a killed producer's up to the
/// last one taken).
fn check(r: &Round, left: &[Item], number: usize) {
    let all = r.counts.to_vec();
    let mut per = vec![0u32; PRODUCER_SLOTS * SEQS];
    for consumer in 0..CONSUMER_SLOTS {
        let base = consumer * PRODUCER_SLOTS * SEQS;
        for (i, n) in all[base..base + PRODUCER_SLOTS * SEQS].iter().enumerate() {
            per[i] += n;
        }
    }
    for (id, seq, _) in left {
        assert_ne!(*id, STOP, "round {number}: a stop item left over");
        per[*id as usize * SEQS + *seq as usize] += 1;
    }
    let mut missing = 0;
    for id in 0..r.next_producer as usize {
        let seen = &per[id * SEQS..(id + 1) * SEQS];
        if let Some(seq) = seen.iter().position(|&n| n > 1) {
            panic!(
                "round {number}: item {seq} of producer {id} delivered {} times",
                seen[seq]
            );
        }
        let end = if id < LIVE_PRODUCERS {
            LIVE_ITEMS as usize
        } else {
            seen.iter().rposition(|&n| n == 1).map_or(0, |s| s + 1)
        };
        missing += seen[..end].iter().filter(|&&n| n == 0).count();
        if id < LIVE_PRODUCERS {
            assert!(
                seen[end..].iter().all(|&n| n == 0),
                "round {number}: producer {id} delivered more than it put"
            );
        }
    }
    assert!(
        missing <= r.killed_consumers,
        "round {number}: {missing} items missing, {} consumers killed",
        r.killed_consumers
    );
}

fn run(rounds: usize) {
    let _isolated = common::exclusive();
    let seed = env("MPROC_QUEUE_KILL_SEED").unwrap_or(0x005e_ed0f_ca11);
    let keep_going = env("MPROC_QUEUE_KILL_KEEP_GOING") == Some(1);
    let mut rng = Rng(seed | 1);
    let (start, mut kills, mut wedged) = (Instant::now(), 0, Vec::new());
    for number in 0..rounds {
        match round(&mut rng, number) {
            Ok(k) => kills += k,
            Err(e) if keep_going => {
                eprintln!("{e}");
                wedged.push(e);
            }
            Err(e) => panic!("seed {seed:#x}: {e}"),
        }
    }
    eprintln!(
        "{rounds} rounds, {kills} kills, {} wedged, in {:.1?} (seed {seed:#x})",
        wedged.len(),
        start.elapsed()
    );
    assert!(wedged.is_empty(), "wedged: {wedged:?}");
}

#[test]
fn producers_and_consumers_killed_at_random_points() {
    run(env("MPROC_QUEUE_KILL_ROUNDS").map_or(ROUNDS, |n| n as usize));
}

#[test]
#[ignore = "a soak of several minutes: MPROC_QUEUE_KILL_SOAK_ROUNDS rounds"]
fn a_long_soak_of_kills() {
    run(env("MPROC_QUEUE_KILL_SOAK_ROUNDS").map_or(5000, |n| n as usize));
}
