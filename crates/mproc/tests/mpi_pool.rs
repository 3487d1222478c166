//! The pool on MPI, across 3 ranks on this machine.
//!
//! Run by plain `cargo test --features mpi --test mpi_pool` (no harness): it
//! re-executes itself under `mpirun -n 3` inside a loopback-only network
//! namespace made for the run (OpenMPI listens on every interface), under
//! `timeout --foreground`, once per case, and checks each run's status and
//! that no process of it is left. Skipped, with a note, where `mpirun`,
//! `unshare` or `ip` is missing or the namespace cannot be made.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mproc::{Error, Pool};

const CASE: &str = "MPROC_MPI_TEST_CASE";
const TOKEN: &str = "MPROC_MPI_TEST_TOKEN";

fn main() {
    match std::env::var(CASE) {
        Ok(case) if std::env::var_os("OMPI_COMM_WORLD_SIZE").is_some() => ranks(&case),
        _ => driver(),
    }
}

// ---------------------------------------------------------------- outside

fn driver() {
    if let Some(why) = missing() {
        println!("mpi_pool: skipped: {why}");
        return;
    }
    let t = Instant::now();
    let out = run("pool", 300);
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "the pool cases failed: {:?}",
        out.status
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("mpi_pool: all cases passed"),
        "the run did not finish its cases"
    );
    println!("mpi_pool: pool cases: ok ({:.1?})", t.elapsed());

    mismatch();
    two_hosts();

    let t = Instant::now();
    let out = run("driver_panic", 120);
    let took = t.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a driver that panics ends the job with a failure: {:?}\n{stderr}",
        out.status
    );
    assert!(stderr.contains("the driver gives up"), "{stderr}");
    assert!(
        took < Duration::from_secs(30),
        "the job took {took:?} to end"
    );
    println!(
        "mpi_pool: driver panic: the job ended in {took:.1?}, status {:?}",
        out.status
    );
    println!("test result: ok");
}

/// A rank running another build of the program is refused at start-up,
/// by name, and the job ends at once.
fn mismatch() {
    let exe = std::env::current_exe().expect("the test's path");
    let mut bytes = std::fs::read(&exe).unwrap();
    // Another build: its GNU build-id changed (or, without one, its
    // content, which then identifies it).
    match build_id_at(&bytes) {
        Some(at) => bytes[at] ^= 0xff,
        None => bytes.push(0),
    }
    let other = std::env::temp_dir().join(format!("mproc-mpi-other-{}", std::process::id()));
    std::fs::write(&other, &bytes).unwrap();
    drop(bytes);
    let mut perm = std::fs::metadata(&exe).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(&other, perm).unwrap();
    let t = Instant::now();
    let out = run_on("mismatch", 120, &exe, &other);
    let took = t.elapsed();
    std::fs::remove_file(&other).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}{stderr}");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let named = format!("rank 2 on host {} runs another build", host.trim());
    assert!(stderr.contains(&named), "{stdout}{stderr}");
    assert!(!stdout.contains("not refused"), "{stdout}");
    assert!(
        took < Duration::from_secs(30),
        "the job took {took:?} to end"
    );
    println!("mpi_pool: another build on rank 2: refused by name in {took:.1?}");
}

/// Two emulated hosts, A and B: network namespaces joined by a veth pair
/// (addresses that exist only inside them), each with its own host name;
/// OpenMPI reaches B through an agent script instead of ssh. Rank 0 runs on
/// A, ranks 1 and 2 on B. The pool runs across them; then every process of
/// B is killed mid-run: the job ends within seconds, with a message, and
/// nothing of it is left.
fn two_hosts() {
    let id = std::process::id();
    let hosts = match Hosts::make(id) {
        Ok(h) => h,
        Err(why) => {
            println!("mpi_pool: two hosts: skipped: {why}");
            return;
        }
    };
    let token = format!("{id}-two_hosts");
    let script = format!(
        "ip netns exec {a} unshare --uts --mount sh -c \
         'mount -t tmpfs tmpfs /dev/shm && hostname {a} && exec \"$0\" \"$@\"' \
         mpirun --allow-run-as-root -n 3 --host 10.77.0.1:1,10.77.0.2:2 \
         --mca plm_rsh_agent {agent} --mca plm_rsh_no_tree_spawn 1 \
         --mca btl self,vader,tcp --mca btl_tcp_if_include 10.77.0.0/24 \
         --mca oob_tcp_if_include 10.77.0.0/24 \
         -x {CASE} -x {TOKEN} {exe}",
        a = hosts.a,
        agent = hosts.agent.display(),
        exe = std::env::current_exe().unwrap().display(),
    );
    let mut child = Command::new("timeout")
        .args(["--foreground", "-k", "5", "120", "sh", "-c", &script])
        .env(CASE, "two_hosts")
        .env(TOKEN, &token)
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("timeout runs");
    let stderr = child.stderr.take().unwrap();
    let errors = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    let mut line = String::new();
    while std::io::BufRead::read_line(&mut stdout, &mut line).unwrap_or(0) > 0 {
        seen.push_str(&line);
        if line.contains("mpi_pool: two hosts: running") {
            break;
        }
        line.clear();
    }
    assert!(seen.contains("mpi_pool: two hosts: map ok"), "{seen}");
    // Host B is lost: every process in its network namespace dies.
    let t = Instant::now();
    let killed = hosts.kill_b();
    assert!(killed > 0, "nothing ran on host B");
    let status = child.wait().unwrap();
    let took = t.elapsed();
    let rest = std::io::read_to_string(stdout).unwrap_or_default();
    let errors = errors.join().unwrap();
    assert_ne!(
        status.code(),
        Some(124),
        "the job hung after host B died:\n{seen}{rest}{errors}"
    );
    assert!(!status.success(), "{seen}{rest}{errors}");
    assert!(
        took < Duration::from_secs(20),
        "the job took {took:?} to end"
    );
    assert!(!rest.contains("two hosts: finished"), "{rest}");
    assert!(
        errors.contains("lost communication") || errors.contains("remote daemon"),
        "{errors}"
    );
    let left = leftovers(&token, Duration::from_secs(10));
    assert!(left.is_empty(), "processes left: {left:?}");
    println!(
        "mpi_pool: two hosts: the pool ran across them; host B lost ({killed} processes): \
         the job ended in {took:.1?}, status {status:?}"
    );
}

/// The two emulated hosts; dropping them removes them.
struct Hosts {
    a: String,
    b: String,
    agent: PathBuf,
}

impl Hosts {
    fn make(id: u32) -> Result<Hosts, String> {
        let hosts = Hosts {
            a: format!("mproc-a-{id}"),
            b: format!("mproc-b-{id}"),
            agent: std::env::temp_dir().join(format!("mproc-mpi-agent-{id}")),
        };
        let (a, b) = (&hosts.a, &hosts.b);
        let (va, vb) = (format!("mpa{id}"), format!("mpb{id}"));
        let steps = [
            format!("ip netns add {a}"),
            format!("ip netns add {b}"),
            format!("ip link add {va} netns {a} type veth peer name {vb} netns {b}"),
            format!("ip -n {a} addr add 10.77.0.1/24 dev {va}"),
            format!("ip -n {b} addr add 10.77.0.2/24 dev {vb}"),
            format!("ip -n {a} link set {va} up"),
            format!("ip -n {b} link set {vb} up"),
            format!("ip -n {a} link set lo up"),
            format!("ip -n {b} link set lo up"),
        ];
        for step in &steps {
            let ok = Command::new("sh")
                .args(["-c", step])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                return Err(format!("`{step}` failed"));
            }
        }
        // OpenMPI runs `<agent> <host> <command...>` as it would ssh: run
        // the command in that host's namespaces instead, with a /dev/shm of
        // its own (as a real host has: OpenMPI's shared-memory segments of
        // a host killed mid-run then go with its namespace instead of
        // staying in the machine's /dev/shm).
        let agent = format!(
            "#!/bin/sh\nhost=$1; shift\ncase $host in\n  10.77.0.1) ns={a} ;;\n  *) ns={b} ;;\nesac\n\
             exec ip netns exec $ns unshare --uts --mount sh -c \"mount -t tmpfs tmpfs /dev/shm; hostname $ns; exec $*\"\n"
        );
        std::fs::write(&hosts.agent, agent).map_err(|e| e.to_string())?;
        let mut perm = std::fs::metadata(&hosts.agent).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
        std::fs::set_permissions(&hosts.agent, perm).map_err(|e| e.to_string())?;
        Ok(hosts)
    }

    /// SIGKILLs every process in host B's network namespace, until none is
    /// left; how many.
    fn kill_b(&self) -> usize {
        use std::os::unix::fs::MetadataExt;
        let ino = std::fs::metadata(format!("/run/netns/{}", self.b))
            .unwrap()
            .ino();
        let mark = format!("net:[{ino}]");
        let mut killed = HashSet::new();
        for _ in 0..100 {
            let mut found = false;
            for entry in std::fs::read_dir("/proc").unwrap().flatten() {
                let Some(pid) = entry
                    .file_name()
                    .to_str()
                    .and_then(|s| s.parse::<i32>().ok())
                else {
                    continue;
                };
                let ns = std::fs::read_link(entry.path().join("ns/net"));
                if ns.is_ok_and(|l| l.to_str() == Some(&mark)) {
                    if let Some(p) = rustix::process::Pid::from_raw(pid) {
                        if rustix::process::kill_process(p, rustix::process::Signal::KILL).is_ok() {
                            found |= killed.insert(pid);
                        }
                    }
                }
            }
            if !found {
                break;
            }
        }
        killed.len()
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.agent);
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Rank 0 of the two-host run: a pool across the hosts, then work that
/// host B's loss interrupts.
fn two_hosts_ranks(world: &mproc::mpi::World) {
    let hosts = world.hosts();
    assert!(hosts[0].starts_with("mproc-a-"), "{hosts:?}");
    assert!(
        hosts[1].starts_with("mproc-b-") && hosts[2] == hosts[1],
        "{hosts:?}"
    );
    let pool = Pool::builder().mpi(world).processes(2).build().unwrap();
    let n = 1_000u64;
    for cs in [Some(1), None] {
        let got = pool.map_chunked(square, 0..n, cs).unwrap();
        assert_eq!(got, (0..n).map(square).collect::<Vec<_>>());
    }
    println!("mpi_pool: two hosts: map ok");
    println!("mpi_pool: two hosts: running");
    use std::io::Write;
    std::io::stdout().flush().unwrap();
    let r = pool.map_chunked(nap, 0..10_000u64, Some(1));
    println!("mpi_pool: two hosts: finished: {}", r.is_ok());
}

fn nap(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(20));
    x
}

/// Where the first byte of this ELF file's GNU build-id is, if it has one
/// (a note: name size 4, descriptor size, type 3, "GNU\0", descriptor).
fn build_id_at(elf: &[u8]) -> Option<usize> {
    let tail = [3u8, 0, 0, 0, b'G', b'N', b'U', 0];
    (0..elf.len().saturating_sub(16)).find_map(|i| {
        let note = &elf[i..i + 16];
        let size = u32::from_le_bytes(note[4..8].try_into().unwrap());
        (note[..4] == [4, 0, 0, 0] && note[8..] == tail && (8..=64).contains(&size))
            .then_some(i + 16)
    })
}

/// What the runs need that this machine lacks, if anything.
fn missing() -> Option<String> {
    for tool in ["mpirun", "unshare", "ip", "timeout"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            return Some(format!("no `{tool}`"));
        }
    }
    let ns = Command::new("unshare")
        .args(["--net", "true"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    (!ns).then(|| "cannot make a network namespace (not root?)".into())
}

/// Runs this test's `case` on 3 ranks, in a loopback-only network
/// namespace, killed after `secs`; checks that nothing of it is left.
fn run(case: &str, secs: u32) -> std::process::Output {
    let exe = std::env::current_exe().expect("the test's path");
    run_on(case, secs, &exe, &exe)
}

/// As [`run`], ranks 0 and 1 running `exe`, rank 2 `last`.
fn run_on(case: &str, secs: u32, exe: &Path, last: &Path) -> std::process::Output {
    let token = format!("{}-{case}", std::process::id());
    let out = Command::new("timeout")
        .args(["--foreground", "-k", "5", &secs.to_string()])
        .args(["unshare", "--net", "sh", "-c"])
        .arg(
            "ip link set lo up && exec mpirun --allow-run-as-root --oversubscribe \
             --mca btl self,vader -n 2 \"$0\" : -n 1 \"$1\"",
        )
        .arg(exe)
        .arg(last)
        .env(CASE, case)
        .env(TOKEN, &token)
        .stdin(Stdio::null())
        .output()
        .expect("timeout runs");
    assert_ne!(out.status.code(), Some(124), "the {case} run timed out");
    let left = leftovers(&token, Duration::from_secs(10));
    assert!(
        left.is_empty(),
        "processes of the {case} run left: {left:?}"
    );
    out
}

/// Processes whose environment holds `token` (the run's), once they are
/// gone or `patience` passed.
fn leftovers(token: &str, patience: Duration) -> Vec<i32> {
    let needle = format!("{TOKEN}={token}");
    let until = Instant::now() + patience;
    loop {
        let mut left = Vec::new();
        for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<i32>().ok())
            else {
                continue;
            };
            let Ok(env) = std::fs::read(entry.path().join("environ")) else {
                continue;
            };
            if env.split(|&b| b == 0).any(|v| v == needle.as_bytes()) {
                left.push(pid);
            }
        }
        if left.is_empty() || Instant::now() >= until {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------- the ranks

fn ranks(case: &str) {
    // Ranks != 0 stay in here until rank 0 drops its world.
    let world = mproc::mpi::init().expect("joins the job");
    assert!(world.is_mpi());
    assert_eq!(world.size(), 3);
    match case {
        "pool" => pool_cases(&world),
        "driver_panic" => driver_panic(&world),
        "mismatch" => println!("mpi_pool: another build was not refused"),
        "two_hosts" => two_hosts_ranks(&world),
        other => panic!("no case {other}"),
    }
}

fn square(x: u64) -> u64 {
    x * x
}

fn pool_cases(world: &mproc::mpi::World) {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(world.hosts(), vec![host.clone(); 3]);
    let local = Pool::new(2).unwrap();
    let pool = Pool::builder().mpi(world).processes(4).build().unwrap();
    assert_eq!(pool.processes(), 4);
    assert_eq!(pool.pids().len(), 4);

    // map, every chunksize; the same as the local pool's.
    let n = 2_000u64;
    for cs in [Some(1), Some(7), None] {
        let there = pool.map_chunked(square, 0..n, cs).unwrap();
        assert_eq!(
            there,
            local.map_chunked(square, 0..n, cs).unwrap(),
            "{cs:?}"
        );
        assert_eq!(there[1999], 1999 * 1999);
    }
    // imap, in order, and unordered.
    for cs in [1, 7] {
        let there: Vec<u64> = pool
            .imap_chunked(square, 0..n, cs)
            .map(Result::unwrap)
            .collect();
        let here: Vec<u64> = local
            .imap_chunked(square, 0..n, cs)
            .map(Result::unwrap)
            .collect();
        assert_eq!(there, here);
        let mut any: Vec<u64> = pool
            .imap_unordered_chunked(square, 0..n, cs)
            .map(Result::unwrap)
            .collect();
        any.sort_unstable();
        assert_eq!(any, here);
    }
    // starmap, apply_async, map_async.
    let pairs: Vec<(u64, u64)> = (0..500).map(|i| (i, i + 1)).collect();
    assert_eq!(
        pool.starmap(|a: u64, b: u64| a * b, pairs.clone()).unwrap(),
        local.starmap(|a: u64, b: u64| a * b, pairs).unwrap()
    );
    let r = pool.apply_async(square, 12).unwrap();
    assert_eq!(r.get().unwrap(), 144);
    let r = pool.map_async(square, 0..100).unwrap();
    assert_eq!(r.get().unwrap(), local.map(square, 0..100).unwrap());
    println!("mpi_pool: map/imap/imap_unordered/starmap/apply_async/map_async: ok");

    failures(&pool, &host);
    timeout(world, &host);
    settings(world);

    pool.close();
    let mut pool = pool;
    pool.join().unwrap();
    println!("mpi_pool: all cases passed");
}

/// Each item of `fragile` marks itself run in this directory, once.
fn marks() -> PathBuf {
    let t = std::env::var(TOKEN).unwrap();
    std::env::temp_dir().join(format!("mproc-mpi-test-{t}"))
}

fn fragile(x: u64) -> u64 {
    let mark = marks().join(x.to_string());
    std::fs::File::create_new(&mark).expect("each item runs once");
    match x {
        10 => panic!("boom at {x}"),
        20 => std::process::abort(),
        30 => {
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL)
                .unwrap();
            unreachable!()
        }
        _ => x * 2,
    }
}

/// A remote panic, abort and SIGKILL each fail their own item only, with
/// rank and host; every other item comes back once.
fn failures(pool: &Pool, host: &str) {
    let dir = marks();
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).unwrap();
    let n = 60u64;
    let out = pool.map_results_chunked(fragile, 0..n, Some(1)).unwrap();
    assert_eq!(out.len(), n as usize);
    for (x, r) in out.iter().enumerate() {
        let x = x as u64;
        let inner = match r {
            Ok(v) => {
                assert!(![10, 20, 30].contains(&x), "{x} succeeded");
                assert_eq!(*v, x * 2);
                continue;
            }
            Err(Error::OnRank {
                rank,
                host: h,
                error,
            }) => {
                assert!((1..3).contains(rank), "rank {rank}");
                assert_eq!(h, host);
                let text = r.as_ref().unwrap_err().to_string();
                assert!(text.contains(&format!("on rank {rank} ({host})")), "{text}");
                error
            }
            Err(e) => panic!("item {x}: {e}"),
        };
        match (x, &**inner) {
            (10, Error::Panicked { message, .. }) => assert!(message.contains("boom at 10")),
            (20, Error::Signaled { signal, .. }) => assert_eq!(*signal, libc_sig("ABRT")),
            (30, Error::Signaled { signal, .. }) => assert_eq!(*signal, libc_sig("KILL")),
            (x, e) => panic!("item {x}: {e}"),
        }
    }
    let ran: HashSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(ran.len(), n as usize, "every item ran exactly once");
    std::fs::remove_dir_all(&dir).unwrap();
    // The pool goes on, with its workers replaced.
    assert_eq!(pool.map(square, 0..10u64).unwrap()[9], 81);
    assert_eq!(pool.pids().len(), 4);
    println!("mpi_pool: remote panic/abort/SIGKILL fail their item only: ok");
}

fn libc_sig(name: &str) -> i32 {
    match name {
        "ABRT" => 6,
        "KILL" => 9,
        _ => unreachable!(),
    }
}

fn slow(x: u64) -> u64 {
    if x == 1 {
        std::thread::sleep(Duration::from_secs(600));
    }
    x
}

/// A task past `task_timeout` on a remote rank fails with rank and host.
fn timeout(world: &mproc::mpi::World, host: &str) {
    let pool = Pool::builder()
        .mpi(world)
        .processes(2)
        .task_timeout(Duration::from_millis(1500))
        .grace_period(Duration::from_millis(100))
        .build()
        .unwrap();
    let out = pool.map_results_chunked(slow, 0..4u64, Some(1)).unwrap();
    for (x, r) in out.iter().enumerate() {
        match (x, r) {
            (1, Err(Error::OnRank { host: h, error, .. })) => {
                assert_eq!(h, host);
                assert!(matches!(**error, Error::TaskTimeout { .. }), "{error}");
            }
            (x, Ok(v)) => assert_eq!(*v, x as u64),
            (x, Err(e)) => panic!("item {x}: {e}"),
        }
    }
    println!("mpi_pool: task_timeout on a remote rank: ok");
}

static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();

fn seeded(x: u64) -> u64 {
    x + SEED.get().copied().unwrap_or(0)
}

/// Dies the first time it meets 3 (a retry then succeeds).
fn dies_once(x: u64) -> u64 {
    if x == 3 && std::fs::create_dir(marks().join("died")).is_ok() {
        std::process::abort();
    }
    x
}

/// The pool's settings hold on MPI: initializer, max_tasks_per_child,
/// retry_on_worker_death, timeline, callbacks, terminate.
fn settings(world: &mproc::mpi::World) {
    let pool = Pool::builder()
        .mpi(world)
        .processes(2)
        .initializer(
            |s: u64| {
                let _ = SEED.set(s);
            },
            1000,
        )
        .max_tasks_per_child(5)
        .record_timeline(true)
        .build()
        .unwrap();
    let before: HashSet<i32> = pool.pids().into_iter().collect();
    let got = pool.map_chunked(seeded, 0..40u64, Some(1)).unwrap();
    assert_eq!(got, (1000..1040).collect::<Vec<u64>>());
    // A worker that ran its 5th chunk is replaced after its result is in:
    // the replacement may still be starting when `map` returns.
    let guard = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut after: HashSet<i32> = pool.pids().into_iter().collect();
    while !before.is_disjoint(&after) && std::time::Instant::now() < guard {
        std::thread::sleep(std::time::Duration::from_millis(10));
        after = pool.pids().into_iter().collect();
    }
    assert!(before.is_disjoint(&after), "workers retire after 5 chunks");
    assert_eq!(pool.timeline().events().len(), 40);
    let (tx, rx) = std::sync::mpsc::channel();
    let r = pool
        .apply_async_with(
            seeded,
            1,
            mproc::Callbacks::new().callback(move |v: &u64| tx.send(*v).unwrap()),
        )
        .unwrap();
    assert_eq!(r.get().unwrap(), 1001);
    assert_eq!(rx.recv().unwrap(), 1001);
    let handles = Pool::builder()
        .mpi(world)
        .processes(1)
        .initializer(|q: mproc::Queue<u8>| drop(q), mproc::Queue::new().unwrap());
    assert!(matches!(handles.build(), Err(Error::InvalidArgument(_))));

    let dir = marks();
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).unwrap();
    let retrying = Pool::builder()
        .mpi(world)
        .processes(2)
        .retry_on_worker_death(1)
        .build()
        .unwrap();
    assert_eq!(
        retrying.map_chunked(dies_once, 0..8u64, Some(1)).unwrap(),
        (0..8).collect::<Vec<_>>()
    );
    assert!(dir.join("died").exists());
    std::fs::remove_dir_all(&dir).unwrap();

    let running = retrying.apply_async(slow, 1).unwrap();
    retrying.terminate();
    assert!(matches!(running.get(), Err(Error::PoolTerminated)));
    let mut retrying = retrying;
    retrying.join().unwrap();
    println!("mpi_pool: initializer/max_tasks_per_child/retry/timeline/callbacks/terminate: ok");
}

/// The driver panics while a remote task runs: the job ends, quickly.
fn driver_panic(world: &mproc::mpi::World) {
    let pool = Pool::builder().mpi(world).processes(2).build().unwrap();
    assert_eq!(pool.map(square, 0..100u64).unwrap()[10], 100);
    let _running = pool.apply_async(slow, 1).unwrap();
    panic!("the driver gives up");
}
