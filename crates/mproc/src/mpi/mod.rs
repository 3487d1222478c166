//! The same [`Pool`](crate::Pool) across hosts, on MPI (`mpirun`, `srun`),
//! with each task still isolated in a worker process of its own.
//!
//! Every rank runs the same program (SPMD). [`init`] at the top of `main`
//! sends every rank but 0 into mproc's worker loop (those ranks never
//! return from it: they exit when rank 0 is done) and returns a [`World`]
//! on rank 0, the driver, where [`PoolBuilder::mpi`](crate::PoolBuilder::mpi)
//! builds pools whose workers run on the other ranks:
//!
//! ```no_run
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//!
//! fn main() -> Result<(), mproc::Error> {
//!     let world = mproc::mpi::init()?; // ranks != 0 stay in here
//!     let pool = mproc::Pool::builder().mpi(&world).build()?;
//!     let squares = pool.map(square, 0..1000)?;
//!     println!("{} workers on {} ranks: {}", pool.processes(), world.size(), squares[999]);
//!     Ok(())
//! }
//! ```
//!
//! Run it with `mpirun -n 4 ./app` (or `srun --mpi=pmix -n 4 ./app`); run
//! without a launcher, `init` returns a world of one process and the pool
//! is local: the same program runs on a laptop and on a cluster.
//!
//! # Failures
//!
//! A rank does not run tasks itself: it runs them in local mproc worker
//! processes, so a task that panics, aborts, segfaults or is killed fails
//! alone, as in a local pool, with its error wrapped in
//! [`Error::OnRank`] (its rank and host); the rank
//! replaces the worker and the job goes on. MPI itself is fail-stop: the
//! loss of a whole rank or host (its daemon or rank process killed, the
//! host down) ends the job, which `mpirun` reports; nothing hangs.
//!
//! Every rank must run the same build: [`init`] compares them (one
//! allgather) and ends the job at once, naming the host, if one differs.
//!
//! One thread owns MPI in each process (MPI is not for many threads); the
//! pool's threads reach it through channels, and no user code runs in a
//! rank's own process, so no panic ever unwinds into MPI.

mod link;
mod owner;
mod wire;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

pub(crate) use link::RankWorker;

use crate::error::{Error, Result};

/// The MPI job as rank 0 sees it, from [`init`]: build pools on it with
/// [`PoolBuilder::mpi`](crate::PoolBuilder::mpi). Dropping it (at the end
/// of `main`) ends the job: the other ranks leave their loop and exit.
/// Drop the pools built on it first (declared after it, they are).
pub struct World {
    inner: Option<Inner>,
}

struct Inner {
    driver: Arc<Driver>,
    thread: Option<JoinHandle<()>>,
}

/// What every rank told at start-up.
#[derive(Clone, Debug)]
pub(crate) struct RankInfo {
    pub(crate) host: String,
    pub(crate) cpus: usize,
}

/// Rank 0's side of the job: the channel to the thread that owns MPI,
/// what each rank is.
#[derive(Debug)]
pub(crate) struct Driver {
    cmds: Sender<owner::Cmd>,
    ranks: Vec<RankInfo>,
    /// Slots in turn, by rank: every worker rank once per CPU, interleaved.
    order: Vec<usize>,
    next_id: AtomicU64,
}

impl Driver {
    fn new(cmds: Sender<owner::Cmd>, ranks: Vec<RankInfo>) -> Driver {
        let mut order = Vec::new();
        let most = ranks.iter().skip(1).map(|r| r.cpus).max().unwrap_or(0);
        for round in 0..most {
            for (rank, info) in ranks.iter().enumerate().skip(1) {
                if round < info.cpus {
                    order.push(rank);
                }
            }
        }
        Driver {
            cmds,
            ranks,
            order,
            next_id: AtomicU64::new(1),
        }
    }

    /// Whether there are ranks to run workers on.
    pub(crate) fn has_workers(&self) -> bool {
        self.ranks.len() > 1
    }

    /// A pool's default size: every worker rank's CPUs.
    pub(crate) fn default_processes(&self) -> usize {
        self.order.len().max(1)
    }

    /// The rank of a pool's `slot`.
    pub(crate) fn rank_of(&self, slot: usize) -> usize {
        match self.order.get(slot) {
            Some(&r) => r,
            None => 1 + slot % (self.ranks.len() - 1),
        }
    }

    pub(crate) fn host(&self, rank: usize) -> &str {
        &self.ranks[rank].host
    }

    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
}

impl crate::PoolBuilder {
    /// Runs the workers on the other ranks of an MPI job (see
    /// [`mproc::mpi`](crate::mpi)): each task runs in a local worker
    /// process of some rank ≠ 0, so a panic, `abort` or kill fails that
    /// task only, and its error says where ([`Error::OnRank`]). With
    /// [`processes`](Self::processes) unset, each rank runs as many workers
    /// as its host has CPUs; set, `n` workers spread over the ranks in turn.
    /// A `world` that is not an MPI job (the program ran without `mpirun`),
    /// or one without other ranks, leaves the pool local: the same code
    /// runs on a laptop and on a cluster.
    ///
    /// ```
    /// let world = mproc::mpi::init()?; // at the top of `main`
    /// let pool = mproc::Pool::builder().mpi(&world).processes(2).build()?;
    /// assert_eq!(pool.map(|x: u64| x * x, 0..4)?, [0, 1, 4, 9]);
    /// # Ok::<(), mproc::Error>(())
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "mpi")))]
    pub fn mpi(mut self, world: &World) -> Self {
        self.remote = world
            .driver()
            .map(|d| d as Arc<dyn crate::pool::backend::Remote>);
        self
    }
}

impl crate::pool::backend::Remote for Driver {
    fn has_workers(&self) -> bool {
        Driver::has_workers(self)
    }

    fn default_processes(&self) -> usize {
        Driver::default_processes(self)
    }

    fn start(&self, cfg: crate::pool::backend::Config) -> Result<crate::Pool> {
        crate::Pool::start_on::<RankWorker>(cfg)
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl World {
    /// Whether this program runs as an MPI job (under `mpirun`, `srun`...).
    pub fn is_mpi(&self) -> bool {
        self.inner.is_some()
    }

    /// The number of ranks (1 without MPI).
    pub fn size(&self) -> usize {
        self.inner.as_ref().map_or(1, |i| i.driver.ranks.len())
    }

    /// This process's rank: always 0 (the other ranks never leave [`init`]).
    pub fn rank(&self) -> usize {
        0
    }

    /// Each rank's host name, by rank.
    pub fn hosts(&self) -> Vec<String> {
        match &self.inner {
            Some(i) => i.driver.ranks.iter().map(|r| r.host.clone()).collect(),
            None => vec![owner::host_name()],
        }
    }

    pub(crate) fn driver(&self) -> Option<Arc<Driver>> {
        self.inner.as_ref().map(|i| i.driver.clone())
    }
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World")
            .field("size", &self.size())
            .field("hosts", &self.hosts())
            .finish()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if let Some(mut inner) = self.inner.take() {
            let _ = inner.driver.cmds.send(owner::Cmd::Exit);
            if let Some(t) = inner.thread.take() {
                let _ = t.join();
            }
        }
    }
}

/// Whether a launcher started this process as a rank of an MPI job.
fn launched() -> bool {
    [
        "OMPI_COMM_WORLD_SIZE",
        "PMI_SIZE",
        "PMI_RANK",
        "PMIX_RANK",
        "MPI_LOCALNRANKS",
    ]
    .iter()
    .any(|v| std::env::var_os(v).is_some())
}

/// Joins the MPI job, if this program runs as one; call it first in
/// `main`. On every rank but 0 it never returns: the rank serves the pools
/// of rank 0 until rank 0 drops its [`World`], then exits. On rank 0 it
/// returns the [`World`]. Without a launcher it returns a world of one
/// process at once (no MPI is started), on which pools are local.
///
/// Every rank's build is compared with rank 0's; if one differs, the job
/// ends here with a message naming its host. An error if called twice, or
/// if the thread that owns MPI cannot start.
pub fn init() -> Result<World> {
    static STARTED: AtomicBool = AtomicBool::new(false);
    if !launched() {
        return Ok(World { inner: None });
    }
    if STARTED.swap(true, Ordering::SeqCst) {
        return Err(Error::InvalidState("mproc::mpi::init was already called"));
    }
    let (cmds, rx) = mpsc::channel();
    let (ready, role) = mpsc::channel();
    let thread = thread::Builder::new()
        .name("mproc-mpi".into())
        .spawn(move || owner::run(rx, ready))
        .map_err(Error::io("cannot start the thread that owns MPI"))?;
    match role.recv() {
        Ok(Some(ranks)) => Ok(World {
            inner: Some(Inner {
                driver: Arc::new(Driver::new(cmds, ranks)),
                thread: Some(thread),
            }),
        }),
        // A worker rank: it serves on the MPI thread until the job ends.
        Ok(None) => {
            let ok = thread.join().is_ok();
            std::process::exit(if ok { 0 } else { 1 })
        }
        Err(_) => {
            let _ = thread.join();
            Err(Error::InvalidState("MPI could not be initialised"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn driver(cpus: &[usize]) -> Driver {
        let ranks = cpus
            .iter()
            .map(|&cpus| RankInfo {
                host: "h".into(),
                cpus,
            })
            .collect();
        Driver::new(mpsc::channel().0, ranks)
    }

    #[test]
    fn slots_spread_over_the_worker_ranks_by_their_cpus() {
        let d = driver(&[8, 2, 1, 3]);
        assert!(d.has_workers());
        assert_eq!(d.default_processes(), 6);
        let ranks: Vec<usize> = (0..8).map(|s| d.rank_of(s)).collect();
        // Interleaved while each has CPUs left, then in turn.
        assert_eq!(ranks, [1, 2, 3, 1, 3, 3, 1, 2]);
        let alone = driver(&[4]);
        assert!(!alone.has_workers());
    }
}
