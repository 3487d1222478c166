//! The thread that owns MPI, in every rank: start-up (initialisation, the
//! build check), then the driver's hub (rank 0) or a worker rank's loop.
//!
//! Nothing here blocks in MPI: sends are immediate and, while one is in
//! flight, incoming messages are taken (two ranks sending each other large
//! messages at once would otherwise wait for each other forever); an idle
//! loop sleeps on its channel a little longer each time (MPI's own
//! blocking calls busy-poll a core).

use std::collections::HashMap;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use mpi::point_to_point::{Destination, MatchedReceiveVec, Source};
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::Threading;

use super::wire::{self, DATA, ENDED, EXIT, FAILED, KILL, START, STARTED, STOP, TERM, UNKNOWN};
use super::RankInfo;
use crate::error::Error;
use crate::pool::backend::{Config, LocalWorker, WorkerLink};
use crate::pool::{Init, WorkerHandle};
use crate::start::StartMethod;
use crate::sys::fnref;

/// What the pool's threads ask of the MPI thread, on rank 0.
#[derive(Debug)]
pub(crate) enum Cmd {
    /// Deliver what rank workers send about worker `id` here.
    Register(u64, Sender<Event>),
    /// Send this message to that rank.
    Send(usize, Vec<u8>),
    /// The job ends.
    Exit,
}

/// What a worker rank said about one of its workers.
#[derive(Debug)]
pub(crate) enum Event {
    Started(i32),
    Failed(i32, String),
    Data(Vec<u8>),
    Ended(i32),
}

/// A build-identity record's size: digest, CPU count, host name.
const RECORD: usize = 256;
const DIGEST: usize = 32;
const HOST_MAX: usize = RECORD - DIGEST - 6;

/// The longest an idle loop sleeps before it looks at MPI again.
const LONGEST_NAP: Duration = Duration::from_millis(1);

/// This host's name (its UTS namespace's).
pub(crate) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into())
}

/// The MPI thread: initialises MPI, checks that every rank runs this
/// build, tells `init` this rank's role (`Some(ranks)` on rank 0, `None`
/// elsewhere), then serves until the job ends and finalises MPI.
pub(crate) fn run(cmds: Receiver<Cmd>, role: Sender<Option<Vec<RankInfo>>>) {
    let Some((universe, _)) = mpi::initialize_with_threading(Threading::Serialized) else {
        eprintln!("mproc::mpi: MPI was already initialised");
        return;
    };
    let world = universe.world();
    let rank = world.rank() as usize;
    let ranks = check_builds(&world);
    if rank == 0 {
        if role.send(Some(ranks)).is_err() {
            return;
        }
        Hub::new(&world).run(cmds);
    } else {
        let me = ranks[rank].clone();
        fatal_panics(rank, me.host.clone());
        let _ = role.send(None);
        Rank::new(&world).run();
    }
    // Every rank gets here once rank 0 said EXIT: MPI_Finalize.
    drop(universe);
}

/// After this, a panic on this worker rank (never user code: that runs in
/// the rank's worker processes) ends the job with a message, never
/// unwinding into MPI.
fn fatal_panics(rank: usize, host: String) {
    std::panic::set_hook(Box::new(move |info| {
        eprintln!("mproc::mpi: rank {rank} ({host}) failed: {info}; ending the job");
        std::process::abort();
    }));
}

/// Gathers every rank's build digest, CPU count and host name; on rank 0,
/// ends the job at once if one rank runs another build.
fn check_builds(world: &SimpleCommunicator) -> Vec<RankInfo> {
    use mpi::collective::CommunicatorCollectives;
    use sha2::Digest;
    let mut mine = [0u8; RECORD];
    mine[..DIGEST].copy_from_slice(&sha2::Sha256::digest(crate::sys::image::identity()));
    let cpus = crate::cpu_count() as u32;
    mine[DIGEST..DIGEST + 4].copy_from_slice(&cpus.to_le_bytes());
    let host = host_name();
    let name = &host.as_bytes()[..host.len().min(HOST_MAX)];
    mine[DIGEST + 4..DIGEST + 6].copy_from_slice(&(name.len() as u16).to_le_bytes());
    mine[DIGEST + 6..DIGEST + 6 + name.len()].copy_from_slice(name);
    let size = world.size() as usize;
    let mut all = vec![0u8; RECORD * size];
    world.all_gather_into(&mine[..], &mut all[..]);
    let records: Vec<&[u8]> = all.chunks(RECORD).collect();
    let ranks: Vec<RankInfo> = records
        .iter()
        .map(|r| {
            let cpus = u32::from_le_bytes(r[DIGEST..DIGEST + 4].try_into().expect("4 bytes"));
            let len = u16::from_le_bytes(r[DIGEST + 4..DIGEST + 6].try_into().expect("2 bytes"));
            let len = (len as usize).min(HOST_MAX);
            RankInfo {
                host: String::from_utf8_lossy(&r[DIGEST + 6..DIGEST + 6 + len]).into_owned(),
                cpus: cpus.max(1) as usize,
            }
        })
        .collect();
    if world.rank() == 0 {
        let odd: Vec<String> = (records.iter().enumerate())
            .filter(|(_, r)| r[..DIGEST] != records[0][..DIGEST])
            .map(|(i, _)| format!("rank {i} on host {}", ranks[i].host))
            .collect();
        if !odd.is_empty() {
            eprintln!(
                "mproc::mpi: {} runs another build of this program than rank 0 \
                 (on host {}); every rank must run the same executable: ending the job",
                odd.join(", "),
                ranks[0].host
            );
            world.abort(3);
        }
    }
    ranks
}

/// Sends `msg` to `rank` without blocking in MPI: while it is in flight,
/// incoming messages go to `incoming`.
fn send_to(
    world: &SimpleCommunicator,
    rank: usize,
    msg: &[u8],
    mut incoming: impl FnMut(Vec<u8>, usize),
) {
    mpi::request::scope(|scope| {
        let mut req = world
            .process_at_rank(rank as i32)
            .immediate_send(scope, msg);
        loop {
            match req.test() {
                Ok(_) => break,
                Err(r) => req = r,
            }
            match world.any_process().immediate_matched_probe() {
                Some(probed) => {
                    let (bytes, status) = probed.matched_receive_vec::<u8>();
                    incoming(bytes, status.source_rank() as usize);
                }
                None => thread::yield_now(),
            }
        }
    });
}

/// Takes one incoming message, if one is there.
fn take_one(world: &SimpleCommunicator) -> Option<(Vec<u8>, usize)> {
    let probed = world.any_process().immediate_matched_probe()?;
    let (bytes, status) = probed.matched_receive_vec::<u8>();
    Some((bytes, status.source_rank() as usize))
}

/// How long an idle loop waits on its channel: yields first, then naps
/// that grow to [`LONGEST_NAP`].
fn nap(idle: &mut u32) -> Option<Duration> {
    *idle = idle.saturating_add(1);
    if *idle < 64 {
        thread::yield_now();
        return None;
    }
    let micros = 10u64 << (*idle - 64).min(7);
    Some(Duration::from_micros(micros).min(LONGEST_NAP))
}

/// Rank 0's MPI thread: moves the pool's messages to the ranks and what
/// the ranks say to the links (by worker id).
struct Hub<'w> {
    world: &'w SimpleCommunicator,
    links: HashMap<u64, Sender<Event>>,
}

impl<'w> Hub<'w> {
    fn new(world: &'w SimpleCommunicator) -> Self {
        Hub {
            world,
            links: HashMap::new(),
        }
    }

    fn run(mut self, cmds: Receiver<Cmd>) {
        let mut idle = 0;
        loop {
            let mut busy = false;
            let cmd = match cmds.try_recv() {
                Ok(c) => Some(c),
                Err(TryRecvError::Empty) => None,
                Err(TryRecvError::Disconnected) => Some(Cmd::Exit),
            };
            if let Some(c) = cmd {
                busy = true;
                if !self.command(c) {
                    return self.exit();
                }
            }
            while let Some((bytes, from)) = take_one(self.world) {
                busy = true;
                self.incoming(bytes, from);
            }
            if busy {
                idle = 0;
            } else if let Some(d) = nap(&mut idle) {
                match cmds.recv_timeout(d) {
                    Ok(c) => {
                        idle = 0;
                        if !self.command(c) {
                            return self.exit();
                        }
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => return self.exit(),
                }
            }
        }
    }

    /// Does `c`; `false` on [`Cmd::Exit`].
    fn command(&mut self, c: Cmd) -> bool {
        match c {
            Cmd::Register(id, tx) => {
                self.links.insert(id, tx);
            }
            Cmd::Send(rank, msg) => {
                let world = self.world;
                send_to(world, rank, &msg, |b, from| self.incoming(b, from));
            }
            Cmd::Exit => return false,
        }
        true
    }

    fn incoming(&mut self, bytes: Vec<u8>, _from: usize) {
        let Some((kind, id, payload)) = wire::parse(&bytes) else {
            return;
        };
        let event = match kind {
            STARTED => Event::Started(wire::int(payload).unwrap_or(0)),
            FAILED => Event::Failed(
                wire::int(payload).unwrap_or(0),
                String::from_utf8_lossy(payload.get(4..).unwrap_or_default()).into_owned(),
            ),
            DATA => Event::Data(payload.to_vec()),
            ENDED => Event::Ended(wire::int(payload).unwrap_or(UNKNOWN)),
            _ => return,
        };
        let ended = matches!(event, Event::Ended(_) | Event::Failed(..));
        if let Some(tx) = self.links.get(&id) {
            let _ = tx.send(event);
        }
        if ended {
            self.links.remove(&id);
        }
    }

    /// Tells every rank the job ends.
    fn exit(mut self) {
        let world = self.world;
        for rank in 1..world.size() as usize {
            send_to(world, rank, &wire::msg(EXIT, 0, &[]), |b, from| {
                self.incoming(b, from)
            });
        }
    }
}

/// One local worker of a worker rank, as the MPI thread holds it.
struct Local {
    feed: Sender<Vec<u8>>,
    handle: Arc<dyn WorkerHandle>,
}

/// What a worker rank's helper threads tell its MPI thread, in order.
enum Up {
    /// Worker `id` started: here is how to reach it.
    Started(u64, Local),
    /// Send this to rank 0.
    Send(Vec<u8>),
    /// Worker `id` ended and was reaped.
    Gone(u64),
}

/// A worker rank's MPI thread: starts local workers as rank 0 asks, moves
/// messages between rank 0 and them.
struct Rank<'w> {
    world: &'w SimpleCommunicator,
    up: Sender<Up>,
    ups: Receiver<Up>,
    workers: HashMap<u64, Local>,
    /// Workers to SIGKILL at these times (a stop's grace ends).
    kills: Vec<(Instant, u64)>,
    exiting: bool,
}

impl<'w> Rank<'w> {
    fn new(world: &'w SimpleCommunicator) -> Self {
        let (up, ups) = mpsc::channel();
        Rank {
            world,
            up,
            ups,
            workers: HashMap::new(),
            kills: Vec::new(),
            exiting: false,
        }
    }

    fn run(mut self) {
        let mut idle = 0;
        while !self.exiting {
            let mut busy = false;
            while let Ok(up) = self.ups.try_recv() {
                busy = true;
                self.on_up(up);
            }
            while let Some((bytes, _)) = take_one(self.world) {
                busy = true;
                self.incoming(&bytes);
            }
            if !self.kills.is_empty() {
                self.kill_due();
            }
            if busy {
                idle = 0;
            } else if let Some(d) = nap(&mut idle) {
                if let Ok(up) = self.ups.recv_timeout(d) {
                    idle = 0;
                    self.on_up(up);
                }
            }
        }
        self.stop_all();
    }

    fn on_up(&mut self, up: Up) {
        match up {
            Up::Started(id, local) => {
                self.workers.insert(id, local);
            }
            Up::Send(msg) => {
                if !self.exiting {
                    let world = self.world;
                    send_to(world, 0, &msg, |b, _| self.incoming(&b));
                }
            }
            Up::Gone(id) => {
                self.workers.remove(&id);
            }
        }
    }

    fn incoming(&mut self, bytes: &[u8]) {
        let Some((kind, id, payload)) = wire::parse(bytes) else {
            return;
        };
        match kind {
            START => self.start(id, payload),
            DATA => {
                if let Some(w) = self.workers.get(&id) {
                    let _ = w.feed.send(payload.to_vec());
                }
            }
            TERM => {
                if let Some(w) = self.workers.get(&id) {
                    w.handle.terminate();
                }
            }
            KILL => {
                if let Some(w) = self.workers.get(&id) {
                    w.handle.kill();
                }
            }
            STOP => {
                if let Some(w) = self.workers.get(&id) {
                    w.handle.terminate();
                    let grace = payload
                        .get(..8)
                        .map_or(0, |b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
                    self.kills
                        .push((Instant::now() + Duration::from_nanos(grace), id));
                }
            }
            EXIT => self.exiting = true,
            _ => {}
        }
    }

    fn kill_due(&mut self) {
        let now = Instant::now();
        let workers = &self.workers;
        self.kills.retain(|&(at, id)| {
            if at > now {
                return true;
            }
            if let Some(w) = workers.get(&id) {
                w.handle.kill();
            }
            false
        });
    }

    /// Starts local worker `id` on a thread of its own (a start takes a
    /// while; the MPI thread goes on), which then reads its replies.
    fn start(&mut self, id: u64, payload: &[u8]) {
        let up = self.up.clone();
        let payload = payload.to_vec();
        let spawned = thread::Builder::new()
            .name(format!("mproc-mpi-worker-{id}"))
            .spawn(move || serve(id, &payload, up));
        if let Err(e) = spawned {
            let _ = self
                .up
                .send(Up::Send(failed(id, &Error::io("cannot start a thread")(e))));
        }
    }

    /// The job ends: kills the workers left, waits (a while) until each
    /// is reaped.
    fn stop_all(&mut self) {
        for w in self.workers.values() {
            w.handle.kill();
        }
        let until = Instant::now() + Duration::from_secs(10);
        while !self.workers.is_empty() {
            let left = until.saturating_duration_since(Instant::now());
            match self.ups.recv_timeout(left) {
                Ok(Up::Gone(id)) => {
                    self.workers.remove(&id);
                }
                Ok(Up::Started(id, local)) => {
                    local.handle.kill();
                    self.workers.insert(id, local);
                }
                Ok(Up::Send(_)) => {}
                Err(_) => break,
            }
        }
    }
}

/// A [`FAILED`] message for worker `id`.
fn failed(id: u64, e: &Error) -> Vec<u8> {
    let mut p = errno_of(e).to_le_bytes().to_vec();
    p.extend_from_slice(e.to_string().as_bytes());
    wire::msg(FAILED, id, &p)
}

/// The OS error somewhere in `e`'s causes, or 0.
fn errno_of(e: &Error) -> i32 {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(n) = c
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.raw_os_error())
        {
            return n;
        }
        cause = c.source();
    }
    0
}

/// A start's settings, from a [`START`] payload.
fn start_config(payload: &[u8]) -> crate::Result<Config> {
    let method = match payload.first() {
        Some(1) => StartMethod::Spawn,
        // Forking a process that runs MPI is not safe with every transport:
        // fork from the fork server instead.
        _ => StartMethod::ForkServer,
    };
    let init = match payload.get(1..) {
        Some(b) if !b.is_empty() => {
            // Rank 0 runs this same build (checked at start-up) and chose
            // the initializer: its offsets are vouched for on arrival.
            Some(fnref::trusting_parent(|| {
                crate::codec::decode::<Init>(b, Vec::new())
            })?)
        }
        _ => None,
    };
    Ok(Config {
        processes: 1,
        method,
        init,
        max_tasks: None,
        max_memory: None,
        task_timeout: None,
        grace: Duration::ZERO,
        break_on_death: false,
        record_timeline: false,
        retries: 0,
        limits: crate::Limits::new(),
        retry_limits: false,
        remote: None,
    })
}

/// The [`START`] payload for a pool's settings.
pub(crate) fn start_payload(cfg: &Config) -> crate::Result<Vec<u8>> {
    let mut p = vec![match cfg.method {
        StartMethod::Spawn => 1,
        _ => 0,
    }];
    if let Some(init) = &cfg.init {
        let frame = crate::codec::encode(init)?;
        p.extend_from_slice(&frame.bytes);
    }
    Ok(p)
}

/// How often a worker's reader looks whether its worker still runs.
const CHECK: Duration = Duration::from_millis(50);

/// Starts local worker `id`, then relays its replies up until it ends,
/// reaps it and says how it ended.
fn serve(id: u64, payload: &[u8], up: Sender<Up>) {
    let worker = match start_config(payload).and_then(|cfg| LocalWorker::start(&cfg, id as usize)) {
        Ok(w) => Arc::new(w),
        Err(e) => {
            let _ = up.send(Up::Send(failed(id, &e)));
            return;
        }
    };
    let handle = worker.handle();
    let (feed, feeds) = mpsc::channel::<Vec<u8>>();
    let writer = worker.clone();
    let fed = thread::Builder::new()
        .name(format!("mproc-mpi-feed-{id}"))
        .spawn(move || {
            while let Ok(m) = feeds.recv() {
                if writer.send(&m).is_err() {
                    break;
                }
            }
        });
    if fed.is_err() {
        let _ = up.send(Up::Send(failed(
            id,
            &Error::InvalidState("cannot start a thread"),
        )));
        return;
    }
    let pid = worker.pid();
    let _ = up.send(Up::Started(
        id,
        Local {
            feed,
            handle: handle.clone(),
        },
    ));
    let _ = up.send(Up::Send(wire::msg(STARTED, id, &pid.to_le_bytes())));
    loop {
        match worker.poll(CHECK) {
            Ok(true) => match worker.recv() {
                Ok(m) => {
                    let _ = up.send(Up::Send(wire::msg(DATA, id, &m)));
                }
                Err(_) => break,
            },
            Ok(false) if !worker.is_alive() => {
                // Replies sent before it ended still go up, in order.
                while let Ok(true) = worker.poll(Duration::ZERO) {
                    match worker.recv() {
                        Ok(m) => {
                            let _ = up.send(Up::Send(wire::msg(DATA, id, &m)));
                        }
                        Err(_) => break,
                    }
                }
                break;
            }
            Ok(false) => {}
            Err(_) => break,
        }
    }
    let code = match worker.wait(Duration::from_secs(2)) {
        Ok(Some(code)) => code,
        _ => {
            handle.kill();
            match worker.wait(Duration::from_secs(30)) {
                Ok(Some(code)) => code,
                _ => UNKNOWN,
            }
        }
    };
    let _ = up.send(Up::Send(wire::msg(ENDED, id, &code.to_le_bytes())));
    let _ = up.send(Up::Gone(id));
}
