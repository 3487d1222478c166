//! The decoders that read what a peer sends (frames, the handshake before
//! authentication, manager requests) over the checked-in fuzz corpus
//! (`fuzz/corpus/`) and a few thousand pseudo-random and mutated inputs:
//! every input yields `Ok` or a typed error, never a panic, and memory
//! grows with the bytes really received, not with an announced length.
//!
//! A counting global allocator watches the largest single allocation made
//! by the thread being measured.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::PathBuf;

use mproc::__private::fuzz;
use mproc::{AuthError, Error};

struct Counting;

thread_local! {
    /// Whether this thread is being measured, and the largest allocation
    /// (or reallocation) it asked for since then. Const-initialised: no
    /// allocation on first use.
    static MEASURED: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn record(size: usize) {
    if MEASURED.with(Cell::get) {
        LARGEST.with(|l| l.set(l.get().max(size)));
    }
}

// SAFETY: forwards every call to the system allocator unchanged; only
// records sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        // SAFETY: the caller's contract is passed on as is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(new_size);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Runs `f` and returns the largest allocation it made on this thread.
fn largest_during(f: impl FnOnce()) -> usize {
    LARGEST.with(|l| l.set(0));
    MEASURED.with(|m| m.set(true));
    f();
    MEASURED.with(|m| m.set(false));
    LARGEST.with(Cell::get)
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no corpus in {}", dir.display());
    files.iter().map(|f| std::fs::read(f).unwrap()).collect()
}

/// xorshift64: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// A copy of `seed` with a few bytes flipped, inserted, removed, or
    /// a length field overwritten with an extreme value.
    fn mutate(&mut self, seed: &[u8]) -> Vec<u8> {
        let mut v = seed.to_vec();
        for _ in 0..1 + self.below(4) {
            match self.below(5) {
                0 if !v.is_empty() => {
                    let i = self.below(v.len());
                    v[i] ^= 1 << self.below(8);
                }
                1 => {
                    let i = self.below(v.len() + 1);
                    v.insert(i, self.next() as u8);
                }
                2 if !v.is_empty() => {
                    let i = self.below(v.len());
                    v.remove(i);
                }
                3 if v.len() >= 8 => {
                    let i = self.below(v.len() - 7);
                    let extreme = [u64::MAX, 1 << 32, 1 << 31, 0x7fff_ffff, 0];
                    let x = extreme[self.below(extreme.len())];
                    v[i..i + 8].copy_from_slice(&x.to_be_bytes());
                }
                _ => {
                    let cut = self.below(v.len() + 1);
                    v.truncate(cut);
                }
            }
        }
        v
    }

    fn random(&mut self, max_len: usize) -> Vec<u8> {
        (0..self.below(max_len))
            .map(|_| self.next() as u8)
            .collect()
    }
}

/// The inputs for one target: the corpus, mutants of it, random bytes.
fn inputs(target: &str, seed: u64) -> Vec<Vec<u8>> {
    let seeds = corpus(target);
    let mut rng = Rng(seed);
    let mut all = seeds.clone();
    for i in 0..3000 {
        let s = &seeds[i % seeds.len()];
        all.push(rng.mutate(s));
    }
    for _ in 0..1000 {
        all.push(rng.random(96));
    }
    all
}

/// No input allocates more than this (the largest legitimate buffer here
/// is a read-ahead of a few pages).
const ALLOC_BOUND: usize = 4 << 20;

#[test]
fn frames_decode_or_fail_typed() {
    for input in inputs("frames", 0x9E37_79B9_7F4A_7C15) {
        let mut r = Ok(Vec::new());
        let peak = largest_during(|| r = fuzz::frames(&input));
        assert!(peak <= ALLOC_BOUND, "{peak} bytes for {input:?}");
        match r {
            Ok(_) | Err(Error::Protocol(_) | Error::Disconnected) => {}
            Err(e) => panic!("unexpected {e:?} for {input:?}"),
        }
    }
}

#[test]
fn a_huge_length_prefix_allocates_only_what_arrives() {
    for announced in [1u64 << 32, 1 << 40, u64::MAX, (1 << 31) + 5] {
        let mut input = vec![0u8]; // no size limit
        input.extend_from_slice(&(-1i32).to_be_bytes());
        input.extend_from_slice(&announced.to_be_bytes());
        input.extend_from_slice(&[7u8; 3 << 20]);
        let mut r = Ok(Vec::new());
        let peak = largest_during(|| r = fuzz::frames(&input));
        assert!(
            peak <= 2 * input.len(),
            "{peak} bytes for a prefix of {announced}"
        );
        assert!(matches!(r, Err(Error::Protocol(_))), "{r:?}");
    }
}

#[test]
fn handshake_halves_fail_typed() {
    for input in inputs("handshake", 0x2545_F491_4F6C_DD1D) {
        let mut r = (Ok(()), Ok(()));
        let mut polled = Ok(());
        let peak = largest_during(|| {
            r = fuzz::handshake(&input);
            polled = fuzz::polled_handshake(&input);
        });
        assert!(peak <= 4096, "{peak} bytes for {input:?}");
        for half in [r.0, r.1, polled] {
            match half {
                // A fuzzer cannot know the key or the random challenge.
                Ok(()) => panic!("authenticated without the key: {input:?}"),
                Err(Error::Authentication(
                    AuthError::Malformed(_)
                    | AuthError::DigestReceivedWrong
                    | AuthError::DigestSentRejected,
                ))
                | Err(Error::Disconnected | Error::Protocol(_)) => {}
                Err(e) => panic!("unexpected {e:?} for {input:?}"),
            }
        }
    }
}

#[test]
fn manager_requests_decode_or_fail_typed() {
    let mut oks = 0;
    for input in inputs("manager_request", 0xD1B5_4A32_D192_ED03) {
        let mut r = Ok(());
        let peak = largest_during(|| r = fuzz::manager_request(&input));
        assert!(peak <= ALLOC_BOUND, "{peak} bytes for {input:?}");
        match r {
            Ok(()) => oks += 1,
            Err(Error::Decode(_) | Error::Protocol(_)) => {}
            Err(e) => panic!("unexpected {e:?} for {input:?}"),
        }
    }
    assert!(oks > 0, "no input decoded: the corpus is stale");
}

/// Pickles from a peer: data or a typed refusal, never a panic, and no
/// allocation out of proportion to the input (memo references expanded
/// are bounded by the walk before the decoder builds anything).
#[cfg(feature = "pickle")]
#[test]
fn pickles_decode_or_fail_typed() {
    for input in inputs("pickle", 0xD1B5_4A32_D192_ED03) {
        let mut r = Ok(serde_json::Value::Null);
        let peak = largest_during(|| r = mproc::pickle::loads::<serde_json::Value>(&input));
        assert!(
            peak <= (64 << 10).max(64 * input.len()),
            "{peak} bytes for {input:?}"
        );
        match r {
            Ok(_) | Err(Error::Decode(_)) => {}
            Err(e) => panic!("unexpected {e:?} for {input:?}"),
        }
    }
    // The seeds that are attacks are refused, whatever the fuzzing did.
    for name in [
        "evil_global",
        "evil_reduce",
        "evil_deep",
        "evil_laughs",
        "evil_length",
    ] {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/pickle");
        let bytes = std::fs::read(dir.join(name)).unwrap();
        assert!(
            mproc::pickle::loads::<serde_json::Value>(&bytes).is_err(),
            "{name} was accepted"
        );
    }
}
