//! The measuring loop: every runner of a workload is set up, warmed up,
//! then measured in turns (A B C D, A B C D, ...) so that drift in the
//! machine's state hits all of them alike.

use std::fmt;
use std::time::Instant;

use crate::affinity;
use crate::stats::Summary;
use crate::workloads::Workload;

/// How long a run may take; each workload picks its sizes from this.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// A few iterations, for the crate's own test (figures meaningless).
    Tiny,
    /// Under three minutes for everything.
    Quick,
    /// Enough repetitions for a stable median.
    Full,
}

impl Mode {
    /// One of three values, by mode.
    pub fn pick<T>(self, tiny: T, quick: T, full: T) -> T {
        match self {
            Mode::Tiny => tiny,
            Mode::Quick => quick,
            Mode::Full => full,
        }
    }

    /// Measured repetitions per runner by default (a warm-up repetition
    /// comes first).
    pub fn reps(self) -> usize {
        self.pick(2, 5, 11)
    }

    pub fn name(self) -> &'static str {
        self.pick("tiny", "quick", "full")
    }
}

/// The four kinds of runner, in the order they are measured and shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// This project.
    Mproc,
    /// CPython's `multiprocessing` (or `ProcessPoolExecutor`).
    Cpython,
    /// Another Rust crate doing the same job.
    Peer,
    /// The lowest-level program doing the same operation.
    Limit,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Mproc, Kind::Cpython, Kind::Peer, Kind::Limit];

    pub fn key(self) -> &'static str {
        match self {
            Kind::Mproc => "mproc",
            Kind::Cpython => "cpython",
            Kind::Peer => "peer",
            Kind::Limit => "limit",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T> = std::result::Result<T, BoxError>;

/// A runner whose state (children, pipes, buffers) is set up: each call of
/// `rep` is one repetition and returns one figure in the workload's unit.
/// Dropping it tears the state down.
pub trait Session {
    fn rep(&mut self) -> Result<f64>;
}

/// A session whose repetitions are a closure.
pub struct FnSession<F>(pub F);

impl<F: FnMut() -> Result<f64>> Session for FnSession<F> {
    fn rep(&mut self) -> Result<f64> {
        (self.0)()
    }
}

/// Boxes a closure as a session.
pub fn session(f: impl FnMut() -> Result<f64> + 'static) -> Result<Box<dyn Session>> {
    Ok(Box::new(FnSession(f)))
}

/// How to set up one runner of a workload.
pub struct Runner {
    pub kind: Kind,
    /// One line: what exactly this runner does.
    pub what: String,
    /// False for a figure that is computed, not measured (an ideal).
    pub measured: bool,
    pub start: Box<dyn FnOnce() -> Result<Box<dyn Session>>>,
}

impl Runner {
    pub fn new(
        kind: Kind,
        what: impl Into<String>,
        start: impl FnOnce() -> Result<Box<dyn Session>> + 'static,
    ) -> Runner {
        Runner {
            kind,
            what: what.into(),
            measured: true,
            start: Box::new(start),
        }
    }

    /// A runner whose figure is a known constant (an ideal, not measured).
    pub fn ideal(kind: Kind, what: impl Into<String>, value: f64) -> Runner {
        Runner {
            measured: false,
            ..Runner::new(kind, what, move || session(move || Ok(value)))
        }
    }
}

/// What became of one runner.
pub struct Outcome {
    pub kind: Kind,
    pub what: String,
    pub measured: bool,
    /// The figures, or why there are none.
    pub result: std::result::Result<Summary, String>,
}

/// Times `n` calls of `op` and returns microseconds per call.
pub fn micros_per_op(n: usize, mut op: impl FnMut() -> Result<()>) -> Result<f64> {
    let t = Instant::now();
    for _ in 0..n {
        op()?;
    }
    Ok(t.elapsed().as_secs_f64() * 1e6 / n as f64)
}

/// Times `op`, which moves `bytes` bytes, and returns GB/s (1e9 bytes/s).
pub fn gigabytes_per_sec(bytes: usize, op: impl FnOnce() -> Result<()>) -> Result<f64> {
    let t = Instant::now();
    op()?;
    Ok(bytes as f64 / t.elapsed().as_secs_f64() / 1e9)
}

struct Live {
    kind: Kind,
    what: String,
    measured: bool,
    session: Option<Box<dyn Session>>,
    runs: Vec<f64>,
    error: Option<String>,
}

impl Live {
    fn step(&mut self, keep: bool, pin: Option<usize>) {
        let Some(s) = self.session.as_mut() else {
            return;
        };
        match pinned(pin, || s.rep()) {
            Ok(v) if v.is_finite() => {
                if keep {
                    self.runs.push(v)
                }
            }
            Ok(v) => self.fail(format!("not a figure: {v}")),
            Err(e) => self.fail(e.to_string()),
        }
    }

    fn fail(&mut self, why: String) {
        self.error = Some(why);
        self.session = None;
    }

    fn finish(self) -> Outcome {
        let result = match self.error {
            Some(e) => Err(e),
            None => Summary::of(&self.runs).ok_or_else(|| "no figures".to_string()),
        };
        Outcome {
            kind: self.kind,
            what: self.what,
            measured: self.measured,
            result,
        }
    }
}

/// Runs `f` with this thread pinned to `cpu` (if any), then restores its
/// CPUs.
fn pinned<T>(cpu: Option<usize>, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let Some(cpu) = cpu else {
        return f();
    };
    let before = affinity::get()?;
    affinity::pin(Some(cpu))?;
    let r = f();
    affinity::set(&before)?;
    r
}

/// Measures every runner of `workload`: set up all, one warm-up repetition
/// each, then `reps` rounds taking one repetition of each in turn.
pub fn measure(
    workload: &Workload,
    mode: Mode,
    reps: usize,
    mut log: impl FnMut(&str),
) -> Vec<Outcome> {
    let mut runners = (workload.runners)(mode);
    runners.sort_by_key(|r| r.kind);
    let mut live: Vec<Live> = runners
        .into_iter()
        .map(|r| {
            let (session, error) = match (r.start)() {
                Ok(s) => (Some(s), None),
                Err(e) => (None, Some(e.to_string())),
            };
            Live {
                kind: r.kind,
                what: r.what,
                measured: r.measured,
                session,
                runs: Vec::new(),
                error,
            }
        })
        .collect();
    let pin = match workload.pinned {
        true => affinity::child_cpu().map(|_| affinity::PARENT_CPU),
        false => None,
    };
    for l in &mut live {
        l.step(false, pin);
    }
    for round in 0..reps {
        log(&format!("{} round {}/{}", workload.name, round + 1, reps));
        for l in &mut live {
            l.step(true, pin);
        }
    }
    // Tear down in reverse order of set-up.
    let mut outcomes: Vec<Outcome> = live.into_iter().rev().map(Live::finish).collect();
    outcomes.reverse();
    outcomes
}
