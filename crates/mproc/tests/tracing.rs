//! What an operator sees through `tracing`: a subscriber installed for
//! this test binary records every event (process, level, target, fields,
//! and the fields of the spans it is in) and the tests look for the ones
//! their scenario must produce.
//!
//! The records go to an unlinked file opened for appending, one line of
//! JSON per event written by a single `write`: a forked process (a pool
//! worker, a manager's server started by fork) inherits the subscriber and
//! the file, so its events land beside the parent's.
#![cfg(feature = "tracing")]

mod common;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use mproc::{
    Address, Client, Error, Listener, Lock, LockError, Manager, Pool, Process, StartMethod,
};
use serde_json::{json, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// An event or span's fields, each as text (`%` fields by `Display`).
#[derive(Default)]
struct Fields(BTreeMap<String, String>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().into(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
}

/// The layer: appends each event to the file.
struct Capture(File);

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        let mut f = Fields::default();
        attrs.record(&mut f);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(f);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut f = Fields::default();
        event.record(&mut f);
        let spans: Vec<Value> = ctx
            .event_scope(event)
            .map(|scope| {
                scope
                    .from_root()
                    .map(|s| {
                        let ext = s.extensions();
                        let fields = ext.get::<Fields>().map(|f| f.0.clone()).unwrap_or_default();
                        json!({ "name": s.name(), "fields": fields })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut line = json!({
            "pid": std::process::id(),
            "level": event.metadata().level().as_str(),
            "target": event.metadata().target(),
            "fields": f.0,
            "spans": spans,
        })
        .to_string();
        line.push('\n');
        // One `write` on an `O_APPEND` file: whole lines, whichever
        // process writes, and no lock a fork could inherit held.
        let _ = (&self.0).write_all(line.as_bytes());
    }
}

/// One recorded event.
#[derive(Debug, Clone)]
struct Ev {
    pid: u32,
    level: String,
    target: String,
    fields: BTreeMap<String, String>,
    /// The fields of the spans it was in, outermost first.
    spans: Vec<(String, BTreeMap<String, String>)>,
}

impl Ev {
    fn message(&self) -> &str {
        self.field("message")
    }
    fn field(&self, name: &str) -> &str {
        self.fields.get(name).map_or("", String::as_str)
    }
    fn span_field(&self, name: &str) -> &str {
        (self.spans.iter().rev())
            .find_map(|(_, f)| f.get(name))
            .map_or("", String::as_str)
    }
}

/// The file's reading end (the subscriber is installed once).
fn reader() -> &'static Mutex<File> {
    static READER: OnceLock<Mutex<File>> = OnceLock::new();
    READER.get_or_init(|| {
        let path = std::env::temp_dir().join(format!("mproc-tracing-{}", std::process::id()));
        let writer = File::options()
            .create_new(true)
            .append(true)
            .open(&path)
            .unwrap();
        let reader = File::open(&path).unwrap();
        std::fs::remove_file(&path).unwrap(); // no file outlives the test
        tracing::subscriber::set_global_default(
            tracing_subscriber::registry().with(Capture(writer)),
        )
        .unwrap();
        Mutex::new(reader)
    })
}

/// Every event recorded so far, by every process.
fn events() -> Vec<Ev> {
    let mut r = reader().lock().unwrap();
    let mut text = String::new();
    r.seek(SeekFrom::Start(0)).unwrap();
    r.read_to_string(&mut text).unwrap();
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| {
            let map = |v: &Value| -> BTreeMap<String, String> {
                (v.as_object().into_iter().flatten())
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            };
            Ev {
                pid: v["pid"].as_u64().unwrap() as u32,
                level: v["level"].as_str().unwrap().into(),
                target: v["target"].as_str().unwrap().into(),
                fields: map(&v["fields"]),
                spans: (v["spans"].as_array().into_iter().flatten())
                    .map(|s| (s["name"].as_str().unwrap().into(), map(&s["fields"])))
                    .collect(),
            }
        })
        .collect()
}

/// Waits (bounded: a guard, not a pause) for an event that `pred` accepts.
fn wait_for(what: &str, pred: impl Fn(&Ev) -> bool) -> Ev {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let all = events();
        if let Some(e) = all.iter().find(|e| pred(e)) {
            return e.clone();
        }
        assert!(Instant::now() < deadline, "no event {what} in:\n{all:#?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits for an event at `level` whose message is `message` and whose
/// fields include `fields`.
fn wait_event(level: &str, message: &str, fields: &[(&str, &str)]) -> Ev {
    wait_for(&format!("{level} {message:?} {fields:?}"), |e| {
        e.level == level && e.message() == message && fields.iter().all(|(k, v)| e.field(k) == *v)
    })
}

/// A fresh path in the temporary directory (the test removes it).
fn temp_path(tag: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::env::temp_dir().join(format!("mproc-tracing-{tag}-{}-{n}", std::process::id()))
}

#[test]
fn a_refused_authentication_is_a_warning_naming_peer_and_reason() {
    reader();
    let listener = Listener::bind(&Address::tcp("127.0.0.1:0").unwrap(), Some(b"right")).unwrap();
    let addr = listener.address().clone();
    let err = Client::connect::<()>(&addr, Some(b"wrong")).unwrap_err();
    assert!(matches!(err, Error::Authentication(_)), "{err:?}");
    let refused = wait_for("refused", |e| {
        e.level == "WARN"
            && e.message() == "connection refused: authentication failed"
            && e.field("peer").starts_with("127.0.0.1:")
    });
    assert!(!refused.field("reason").is_empty(), "{refused:?}");
    // The client is told too, with the server's address.
    wait_event(
        "WARN",
        "connection refused by the server: authentication failed",
        &[("address", &addr.to_string())],
    );
    // `accept` reports it too, as Python's does.
    assert!(matches!(
        listener.accept::<()>(),
        Err(Error::Authentication(_))
    ));
    // And a good client is accepted and authenticated, at debug level.
    let ok = std::thread::spawn(move || Client::connect::<()>(&addr, Some(b"right")).map(drop));
    listener.accept::<()>().unwrap();
    ok.join().unwrap().unwrap();
    wait_for("authenticated", |e| {
        e.level == "DEBUG"
            && e.message() == "connection authenticated"
            && e.field("peer").starts_with("127.0.0.1:")
    });
}

#[test]
fn a_manager_server_warns_of_a_refused_connection_with_its_reason() {
    let _g = common::shared();
    reader();
    // Started by fork, the server process reports to this subscriber.
    let server = Manager::builder()
        .address(Address::tcp("127.0.0.1:0").unwrap())
        .authkey(&b"manager key"[..])
        .start_method(StartMethod::Fork)
        .start()
        .unwrap();
    let addr = server.address().clone();
    assert!(matches!(
        Manager::connect(&addr, b"wrong key"),
        Err(Error::Authentication(_))
    ));
    let refused = wait_for("the server's refusal", |e| {
        e.level == "WARN"
            && e.message() == "connection refused: authentication failed"
            && e.target.starts_with("mproc::connection")
            && e.field("peer").starts_with("127.0.0.1:")
    });
    assert!(
        refused.field("reason").contains("digest"),
        "the reason names the failed check: {refused:?}"
    );
    assert_ne!(
        refused.pid,
        std::process::id(),
        "told by the server process"
    );
    // A good client is served, in a span naming its peer.
    let client = Manager::connect(&addr, b"manager key").unwrap();
    let d = client.dict::<u32, u32>().unwrap();
    d.insert(&1, &2).unwrap();
    wait_for("served", |e| {
        e.message() == "manager connection served" && e.span_field("peer").starts_with("127.0.0.1:")
    });
}

/// Dies by SIGKILL the first time it sees `x == 3`, leaving its pid in
/// `mark`; returns the pid of the process that ran it.
fn fragile((x, mark): (u32, PathBuf)) -> u32 {
    if x == 3 && std::fs::create_dir(&mark).is_ok() {
        std::fs::write(mark.join("pid"), std::process::id().to_string()).unwrap();
        // SAFETY: signals this very process.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    }
    std::process::id()
}

#[test]
fn a_killed_worker_is_told_with_pid_status_and_task_then_the_retry_and_its_replacement() {
    let _g = common::shared();
    reader();
    let mark = temp_path("retry");
    let pool = Pool::builder()
        .processes(1)
        .retry_on_worker_death(1)
        .build()
        .unwrap();
    let items = (0..5).map(|x| (x, mark.clone()));
    let pids = pool.map_chunked(fragile, items, Some(1)).unwrap();
    let dead: u32 = std::fs::read_to_string(mark.join("pid"))
        .unwrap()
        .parse()
        .unwrap();
    std::fs::remove_dir_all(&mark).unwrap();
    let dead = dead.to_string();
    let died = wait_event(
        "WARN",
        "pool worker died running a task",
        &[
            ("pid", &dead),
            ("status", "signal 9 (SIGKILL)"),
            ("code", "-9"),
        ],
    );
    assert_eq!(died.target, "mproc::pool::supervisor");
    let chunk = died.field("chunk").to_string();
    assert!(chunk.parse::<u64>().is_ok(), "{died:?}");
    wait_event(
        "WARN",
        "pool task retried: its worker died",
        &[("chunk", &chunk), ("attempt", "1"), ("max", "1")],
    );
    // The retry ran on the replacement, which the pool told of.
    let new = pids[3].to_string();
    wait_event(
        "INFO",
        "pool worker replaced",
        &[
            ("old_pid", &dead),
            ("new_pid", &new),
            ("slot", "0"),
            ("cause", "died"),
        ],
    );
    wait_event(
        "DEBUG",
        "pool worker started",
        &[("pid", &new), ("slot", "0")],
    );
}

fn whoami(_: ()) -> u32 {
    std::process::id()
}

fn sleepy(x: u32) -> u32 {
    if x == 1 {
        std::thread::sleep(Duration::from_secs(600));
    }
    x
}

#[test]
fn a_timed_out_task_is_a_warning_and_its_worker_is_replaced() {
    let _g = common::shared();
    reader();
    let pool = Pool::builder()
        .processes(1)
        .task_timeout(Duration::from_millis(300))
        .grace_period(Duration::from_millis(100))
        .build()
        .unwrap();
    let pid = match pool.apply(sleepy, 1) {
        Err(Error::TaskTimeout { pid, after }) => {
            assert_eq!(after, Duration::from_millis(300));
            pid.to_string()
        }
        other => panic!("{other:?}"),
    };
    let timed_out = wait_event(
        "WARN",
        "pool task timed out: its worker is stopped",
        &[("pid", &pid), ("timeout_ms", "300"), ("slot", "0")],
    );
    assert!(
        timed_out.field("chunk").parse::<u64>().is_ok(),
        "{timed_out:?}"
    );
    wait_event(
        "INFO",
        "pool worker replaced",
        &[("old_pid", &pid), ("cause", "timed out")],
    );
    // Not a death: the pool stopped it.
    let all = events();
    assert!(
        !all.iter()
            .any(|e| e.message().starts_with("pool worker died") && e.field("pid") == pid),
        "{all:#?}"
    );
    assert_eq!(pool.apply(sleepy, 2).unwrap(), 2, "the replacement works");
}

#[test]
fn a_worker_past_max_tasks_is_retired_and_replaced_and_the_pool_ends_told() {
    let _g = common::shared();
    reader();
    let mut pool = Pool::builder()
        .processes(1)
        .max_tasks_per_child(1)
        .build()
        .unwrap();
    let old = pool.apply(whoami, ()).unwrap().to_string();
    let new = pool.apply(whoami, ()).unwrap().to_string();
    assert_ne!(old, new);
    wait_event(
        "INFO",
        "pool worker retired: max_tasks_per_child reached",
        &[("pid", &old), ("tasks", "1")],
    );
    wait_event(
        "INFO",
        "pool worker replaced",
        &[("old_pid", &old), ("new_pid", &new), ("cause", "retired")],
    );
    pool.close();
    pool.join().unwrap();
    let me = std::process::id();
    let joined = wait_for("joined", |e| {
        e.pid == me && e.message() == "pool joined: every worker ended"
    });
    assert_eq!(joined.level, "DEBUG");
    // A pool dropped while it works is terminated, told at info.
    let pool = Pool::new(1).unwrap();
    let _pending = pool.apply_async(sleepy, 1).unwrap();
    drop(pool);
    wait_for("terminated", |e| {
        e.pid == me && e.level == "INFO" && e.message() == "pool terminated"
    });
}

fn maybe_panics(x: u32) -> u32 {
    assert!(x != 7, "seven");
    x
}

#[test]
fn a_forked_worker_reports_each_task_run_in_a_debug_span() {
    let _g = common::shared();
    reader();
    let pool = Pool::builder()
        .processes(1)
        .start_method(StartMethod::Fork)
        .build()
        .unwrap();
    let worker = pool.pids()[0].to_string();
    let out = pool
        .map_results_chunked(maybe_panics, [6, 7], Some(1))
        .unwrap();
    assert!(out[0].is_ok() && out[1].is_err());
    for outcome in ["ok", "panic"] {
        let ran = wait_for(outcome, |e| {
            e.message() == "pool task ran"
                && e.field("outcome") == outcome
                && e.span_field("pid") == worker
        });
        assert_eq!(ran.level, "DEBUG");
        assert_eq!(ran.target, "mproc::pool::worker");
        assert_eq!(ran.pid.to_string(), worker, "told by the worker itself");
        assert_eq!(ran.spans.last().unwrap().0, "pool task");
        assert!(ran.span_field("chunk").parse::<u64>().is_ok(), "{ran:?}");
        assert!(ran.field("duration_us").parse::<u64>().is_ok(), "{ran:?}");
    }
}

#[test]
fn a_pipe_end_tells_once_that_its_peer_is_gone() {
    reader();
    let (a, b) = mproc::Pipe::<u32>::new().unwrap();
    let me = std::process::id().to_string();
    drop(b);
    assert!(matches!(a.recv(), Err(Error::Disconnected)));
    assert!(matches!(a.recv(), Err(Error::Disconnected)));
    wait_event(
        "DEBUG",
        "pipe peer gone: every copy of the other end closed or its process died",
        &[("on", "recv"), ("pid", &me)],
    );
    assert!(matches!(a.send(&1), Err(Error::Disconnected)));
    wait_event(
        "DEBUG",
        "pipe peer gone: every copy of the other end closed or its process died",
        &[("on", "send"), ("pid", &me)],
    );
    assert!(matches!(a.send(&1), Err(Error::Disconnected)));
}

fn hold_and_exit(lock: Lock) {
    lock.acquire().unwrap();
    std::process::exit(0);
}

#[test]
fn a_lock_taken_over_from_a_dead_holder_is_a_warning() {
    let _g = common::shared();
    reader();
    let lock = Lock::new().unwrap();
    let mut p = Process::new(hold_and_exit, lock.clone());
    p.start().unwrap();
    p.join().unwrap();
    assert!(matches!(lock.acquire(), Err(LockError::OwnerDied(_))));
    let me = std::process::id().to_string();
    wait_event(
        "WARN",
        "lock taken over: its holder died holding it",
        &[("pid", &me)],
    );
    lock.release().unwrap();
}
