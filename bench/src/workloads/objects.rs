//! `python_object_roundtrip`: Python objects (a dict of 10 entries and a
//! list of 1,000 floats) sent to a CPython process and back over a Unix
//! socket, pickled both ways. The peer is the same `python3` echo loop for
//! both runners (`python/objects.py echo`); only the measuring side
//! differs: an mproc `Listener` with a `pickled()` connection, or CPython's
//! own `Listener`. The figure says whether mproc costs a Python peer more
//! than another Python process would.

use std::collections::BTreeMap;
use std::process::{Child, Command};

use mproc::{Address, Listener, SocketConnection};

use super::Workload;
use crate::cpython;
use crate::harness::{micros_per_op, Kind, Mode, Result, Runner, Session};
use crate::stats::Better;

const KEY: &str = "mproc-bench objects";

pub fn workloads() -> Vec<Workload> {
    vec![Workload {
        name: "python_object_roundtrip",
        unit: "us/rtt",
        better: Better::Lower,
        about: "a dict of 10 entries and a list of 1,000 floats, pickled, to a CPython echo process and back over a Unix socket",
        pinned: false,
        runners,
    }]
}

fn runners(mode: Mode) -> Vec<Runner> {
    let n = mode.pick(20, 2_000, 5_000);
    vec![
        Runner::new(
            Kind::Mproc,
            "Listener (Unix path) + SocketConnection::pickled(): send / recv of (dict, list)",
            move || Objects::session(n),
        ),
        cpython::runner(
            "multiprocessing.connection.Listener (Unix path): conn.send / conn.recv of (dict, list)",
            "objects.py",
            vec!["roundtrip".into(), n.to_string()],
        ),
    ]
}

/// The object: Python's `({"key0": 0, ...}, [0.0, 1/7, ...])`.
type Object = (BTreeMap<String, i64>, Vec<f64>);

fn object() -> Object {
    (
        (0..10).map(|i| (format!("key{i}"), i)).collect(),
        (0..1000).map(|i| i as f64 / 7.0).collect(),
    )
}

struct Objects {
    /// `None` only while dropping.
    conn: Option<SocketConnection<Object>>,
    peer: Child,
    dir: std::path::PathBuf,
    object: Object,
    n: usize,
}

impl Objects {
    fn session(n: usize) -> Result<Box<dyn Session>> {
        if cpython::version().is_none() {
            return Err("no python: the peer is a python3 process".into());
        }
        let dir = std::env::temp_dir().join(format!("mproc-bench-objects-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("objects.sock");
        let listener = Listener::bind(&Address::unix(&path), Some(KEY.as_bytes()))?;
        let peer = Command::new(cpython::interpreter())
            .arg(cpython::script("objects.py"))
            .args(["echo", path.to_str().ok_or("temp path is not UTF-8")?, KEY])
            .spawn()?;
        let conn = listener.accept::<Object>()?.pickled();
        Ok(Box::new(Objects {
            conn: Some(conn),
            peer,
            dir,
            object: object(),
            n,
        }))
    }
}

impl Session for Objects {
    fn rep(&mut self) -> Result<f64> {
        let (Some(conn), object) = (&self.conn, &self.object) else {
            return Err("closed".into());
        };
        let mut back = None;
        let us = micros_per_op(self.n, || {
            conn.send(object)?;
            back = Some(conn.recv()?);
            Ok(())
        })?;
        match back.as_ref() == Some(object) {
            true => Ok(us),
            false => Err("the echo differs from what was sent".into()),
        }
    }
}

impl Drop for Objects {
    fn drop(&mut self) {
        // Python's `None` (a pickled `()`) ends the echo loop.
        if let Some(conn) = self.conn.take() {
            let _ = conn.cast::<()>().send(&());
        }
        let _ = self.peer.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
