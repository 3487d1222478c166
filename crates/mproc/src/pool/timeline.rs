//! The task timeline: which worker ran each chunk, from when to when.
//!
//! Recorded by the supervisors in the parent (see [`PoolBuilder::record_timeline`](super::PoolBuilder::record_timeline)),
//! exported as Chrome trace-event JSON or as an ASCII chart.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

/// One chunk's run on a worker, in a [`Timeline`].
///
/// Times are monotonic, relative to the pool's start, and **measured by
/// the supervisor thread in the parent**, not in the worker: `start` is
/// when the worker received the chunk or finished its previous one
/// (whichever is later), `end` is when the parent received its reply (or
/// saw the worker's pipe close, or gave up on it at the task timeout,
/// before stopping it). So each
/// time includes a hand-off (a few µs); for chunks shorter than about
/// 100 µs, replies read in a burst make the times coarse.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TaskEvent {
    /// The chunk's number in the pool, in submission order from 0 (with
    /// chunksize 1, one number per task).
    pub task: u64,
    /// The chunk's index in its own call (`map`, `imap`...).
    pub chunk: usize,
    /// The worker's slot, `0..processes` (a replacement keeps the slot of
    /// the worker it replaces; process names say `PoolWorker-{worker + 1}`).
    pub worker: usize,
    /// The pid of the worker process that ran it.
    pub pid: i32,
    /// When it started, since the pool started.
    pub start: Duration,
    /// When it ended, since the pool started (`end >= start`).
    pub end: Duration,
    /// Whether the worker replied; `false` when the worker died running
    /// it or was stopped at the task timeout.
    pub replied: bool,
    /// The worker's resident memory in bytes when the chunk ended, as the
    /// worker read it (`/proc/self/statm`) before replying; `None` when it
    /// did not reply. The largest of a worker's events is its peak as the
    /// chunk boundaries sample it (what a chunk allocated and freed before
    /// its end does not show).
    pub memory: Option<u64>,
}

/// The recorded runs of a pool's chunks, from [`Pool::timeline`](crate::Pool::timeline).
///
/// ```
/// let pool = mproc::Pool::builder().processes(2).record_timeline(true).build()?;
/// pool.map_chunked(|x: u32| x + 1, 0..8, Some(1))?;
/// let t = pool.take_timeline();
/// assert_eq!(t.events().len(), 8);
/// println!("{}", t.to_ascii(60));
/// std::fs::write(std::env::temp_dir().join("pool-trace.json"), t.to_chrome_trace())?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Timeline {
    events: Vec<TaskEvent>,
    workers: usize,
}

/// Where the supervisors record.
pub(crate) struct Recorder {
    events: Mutex<Vec<TaskEvent>>,
}

impl Recorder {
    pub(crate) fn new() -> Self {
        Recorder {
            events: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn push(&self, e: TaskEvent) {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(e);
    }

    pub(crate) fn snapshot(&self, workers: usize, take: bool) -> Timeline {
        let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        let mut events = if take {
            std::mem::take(&mut *events)
        } else {
            events.clone()
        };
        events.sort_by_key(|e| (e.start, e.worker));
        Timeline { events, workers }
    }
}

impl TaskEvent {
    /// How long it ran.
    pub fn duration(&self) -> Duration {
        self.end.saturating_sub(self.start)
    }
}

impl Timeline {
    /// The events, by start time.
    pub fn events(&self) -> &[TaskEvent] {
        &self.events
    }

    /// The number of worker slots (rows of the chart).
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Chrome's trace-event format (JSON): one complete (`"ph": "X"`)
    /// event per chunk, with `pid` and `tid` the worker's pid, times in
    /// µs since the pool started, and the worker's name as metadata. Open
    /// it in Perfetto (ui.perfetto.dev) or `chrome://tracing`.
    pub fn to_chrome_trace(&self) -> String {
        // Written by hand: every string here is ours (no escaping needed
        // beyond what `json_str` does), and a JSON library as a dependency
        // would change type inference in the users' code.
        let mut out = String::from("{\"traceEvents\":[");
        let mut named = std::collections::BTreeSet::new();
        let mut first = true;
        let mut push = |out: &mut String, event: String| {
            if !std::mem::take(&mut first) {
                out.push(',');
            }
            out.push_str(&event);
        };
        for e in &self.events {
            let pid = e.pid;
            if named.insert(pid) {
                let name = json_str(&format!("worker {} (pid {pid})", e.worker + 1));
                for what in ["process_name", "thread_name"] {
                    push(
                        &mut out,
                        format!(
                            "{{\"name\":\"{what}\",\"ph\":\"M\",\"pid\":{pid},\"tid\":{pid},\"args\":{{\"name\":{name}}}}}"
                        ),
                    );
                }
                push(
                    &mut out,
                    format!(
                        "{{\"name\":\"process_sort_index\",\"ph\":\"M\",\"pid\":{pid},\"tid\":{pid},\"args\":{{\"sort_index\":{}}}}}",
                        e.worker
                    ),
                );
            }
            push(
                &mut out,
                format!(
                    "{{\"name\":\"task {}\",\"cat\":\"pool\",\"ph\":\"X\",\"ts\":{:.3},\"dur\":{:.3},\"pid\":{pid},\"tid\":{pid},\"args\":{{\"task\":{},\"chunk\":{},\"worker\":{},\"replied\":{},\"memory\":{}}}}}",
                    e.task,
                    micros(e.start),
                    micros(e.duration()),
                    e.task,
                    e.chunk,
                    e.worker,
                    e.replied,
                    e.memory.map_or("null".to_string(), |m| m.to_string()),
                ),
            );
        }
        out.push_str("],\"displayTimeUnit\":\"ms\"}");
        out
    }

    /// An ASCII chart `width` columns wide: one row per worker slot,
    /// each chunk a bar labelled with its task number on a shared time
    /// axis (from the first start to the last end), then the axis.
    ///
    /// ```text
    /// worker 1 |---- task 0 ----|---- task 2 ----|
    /// worker 2 |---- task 1 ----|-- task 3 --|
    ///          0                            41.2 ms
    /// ```
    ///
    /// A chunk gets at least one column; a bar too short for its label
    /// shows the number alone, or only dashes.
    pub fn to_ascii(&self, width: usize) -> String {
        let width = width.max(1);
        let workers = self
            .workers
            .max(self.events.iter().map(|e| e.worker + 1).max().unwrap_or(0));
        let t0 = self
            .events
            .iter()
            .map(|e| e.start)
            .min()
            .unwrap_or_default();
        let t1 = self.events.iter().map(|e| e.end).max().unwrap_or_default();
        let span = (t1 - t0).as_secs_f64();
        let col = |t: Duration| -> usize {
            if span <= 0.0 {
                return 0;
            }
            (((t - t0).as_secs_f64() / span) * width as f64).round() as usize
        };
        let prefix = format!("worker {workers} ").len();
        let mut text = String::new();
        for w in 0..workers {
            let mut row: Vec<u8> = vec![b' '; width + 1];
            let mut last_end: Option<usize> = None;
            for e in self.events.iter().filter(|e| e.worker == w) {
                let mut a = col(e.start);
                if let Some(p) = last_end {
                    a = a.max(p);
                }
                let b = col(e.end).max(a + 1);
                if row.len() <= b {
                    row.resize(b + 1, b' ');
                }
                row[a] = b'|';
                row[b] = b'|';
                let inner = b - a - 1;
                row[a + 1..b].fill(b'-');
                let full = format!(" task {} ", e.task);
                let short = e.task.to_string();
                let label = if inner >= full.len() + 2 {
                    Some(full)
                } else if inner >= short.len() {
                    Some(short)
                } else {
                    None
                };
                if let Some(label) = label {
                    let at = a + 1 + (inner - label.len()) / 2;
                    row[at..at + label.len()].copy_from_slice(label.as_bytes());
                }
                last_end = Some(b);
            }
            let head = format!("worker {}", w + 1);
            let row = String::from_utf8_lossy(&row);
            let line = format!("{head:<prefix$}{row}");
            let _ = writeln!(text, "{}", line.trim_end());
        }
        let end = format!("{:.1} ms", span * 1e3);
        let gap = (width + 1).saturating_sub(1 + end.len());
        let _ = writeln!(text, "{:prefix$}0{:gap$}{end}", "", "");
        text
    }
}

/// `s` as a JSON string literal.
fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(task: u64, worker: usize, start: u64, end: u64) -> TaskEvent {
        TaskEvent {
            task,
            chunk: task as usize,
            worker,
            pid: 100 + worker as i32,
            start: Duration::from_millis(start),
            end: Duration::from_millis(end),
            replied: true,
            memory: None,
        }
    }

    #[test]
    fn ascii_draws_bars_on_a_shared_axis() {
        let t = Timeline {
            events: vec![
                ev(0, 0, 0, 10),
                ev(1, 1, 0, 10),
                ev(2, 0, 10, 20),
                ev(3, 1, 10, 16),
            ],
            workers: 3,
        };
        let text = t.to_ascii(40);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert_eq!(
            lines[0],
            "worker 1 |----- task 0 ------|----- task 2 ------|"
        );
        assert_eq!(lines[1], "worker 2 |----- task 1 ------|- task 3 --|");
        assert_eq!(lines[2], "worker 3");
        assert!(lines[3].ends_with("20.0 ms"), "{text}");
    }

    #[test]
    fn short_bars_drop_their_labels() {
        let t = Timeline {
            events: vec![ev(12, 0, 0, 1), ev(13, 0, 1, 100)],
            workers: 1,
        };
        let text = t.to_ascii(20);
        assert!(text.starts_with("worker 1 ||"), "{text}");
        assert!(text.contains("task 13"), "{text}");
    }

    #[test]
    fn chrome_trace_has_complete_events() {
        let t = Timeline {
            events: vec![ev(0, 0, 1, 3)],
            workers: 1,
        };
        let v: serde_json::Value = serde_json::from_str(&t.to_chrome_trace()).unwrap();
        let evs = v["traceEvents"].as_array().unwrap();
        let x: Vec<_> = evs.iter().filter(|e| e["ph"] == "X").collect();
        assert_eq!(x.len(), 1);
        assert_eq!(x[0]["ts"], 1000.0);
        assert_eq!(x[0]["dur"], 2000.0);
        assert_eq!(x[0]["pid"], 100);
        assert_eq!(x[0]["name"], "task 0");
        assert_eq!(x[0]["args"]["replied"], true);
        assert!(x[0]["args"]["memory"].is_null());
        let m: Vec<_> = evs.iter().filter(|e| e["ph"] == "M").collect();
        assert_eq!(m[0]["args"]["name"], "worker 1 (pid 100)");
        assert_eq!(json_str("a\"b\\c\n"), r#""a\"b\\c\u000a""#);
        let empty: serde_json::Value =
            serde_json::from_str(&Timeline::default().to_chrome_trace()).unwrap();
        assert!(empty["traceEvents"].as_array().unwrap().is_empty());
    }
}
