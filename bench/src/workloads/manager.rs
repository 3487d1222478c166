//! `Manager` proxies: `manager_dict_roundtrip` (one `dict` call, set or
//! get, to the server and back) and `manager_dict_update_100k` (a batch
//! update of 100,000 entries through a proxy). The limit of the round trip
//! is an mproc `Pipe` round trip of a request's size: the transport a proxy
//! to a local server uses.

use mproc::manager::DictProxy;
use mproc::{Connection, Manager, Pipe, Process};

use super::Workload;
use crate::cpython;
use crate::harness::{micros_per_op, Kind, Mode, Result, Runner, Session};
use crate::stats::Better;

const BATCH: u64 = 100_000;

pub fn workloads() -> Vec<Workload> {
    vec![
        Workload {
            name: "manager_dict_roundtrip",
            unit: "us/call",
            better: Better::Lower,
            about:
                "one dict proxy call (alternately d[k] = v and d.get(k)) to the manager's server",
            pinned: false,
            runners: roundtrip,
        },
        Workload {
            name: "manager_dict_update_100k",
            unit: "ms/update",
            better: Better::Lower,
            about: "d.update() of 100,000 u64 -> u64 entries through a dict proxy",
            pinned: false,
            runners: update,
        },
    ]
}

fn roundtrip(mode: Mode) -> Vec<Runner> {
    let n = mode.pick(200, 5_000, 20_000);
    vec![
        Runner::new(
            Kind::Mproc,
            "Manager::start() dict::<u64, u64>(): insert / get, one round trip each",
            move || ProxyCalls::session(n),
        ),
        cpython::runner(
            "Manager().dict(): d[i] = i / d.get(i), one round trip each",
            "manager.py",
            vec!["roundtrip".into(), n.to_string()],
        ),
        Runner::new(
            Kind::Limit,
            format!(
                "mproc Pipe (the transport under a local proxy): {REQUEST} bytes to a child that echoes them"
            ),
            move || PipeEcho::session(n),
        ),
    ]
}

/// About the size of a dict request or reply on the wire.
const REQUEST: usize = 40;

/// The child of the limit runner: echoes until disconnected.
fn echo(conn: Connection<()>) {
    while let Ok(msg) = conn.recv_bytes() {
        if conn.send_bytes(&msg).is_err() {
            break;
        }
    }
}

struct PipeEcho {
    conn: Connection<()>,
    child: Process,
    n: usize,
}

impl PipeEcho {
    fn session(n: usize) -> Result<Box<dyn Session>> {
        let (conn, theirs) = Pipe::<()>::new()?;
        let mut child = Process::new(echo, theirs);
        child.start()?;
        Ok(Box::new(PipeEcho { conn, child, n }))
    }
}

impl Session for PipeEcho {
    fn rep(&mut self) -> Result<f64> {
        let msg = [7u8; REQUEST];
        let conn = &self.conn;
        micros_per_op(self.n, || {
            conn.send_bytes(&msg)?;
            match conn.recv_bytes()?.len() == REQUEST {
                true => Ok(()),
                false => Err("wrong echo".into()),
            }
        })
    }
}

impl Drop for PipeEcho {
    fn drop(&mut self) {
        self.conn.close();
        let _ = self.child.join();
    }
}

fn update(mode: Mode) -> Vec<Runner> {
    let n = mode.pick(1_000, BATCH, BATCH);
    vec![
        Runner::new(
            Kind::Mproc,
            format!("DictProxy::update({n} pairs), one round trip"),
            move || BatchUpdate::session(n),
        ),
        cpython::runner(
            format!("Manager().dict().update({{{n} pairs}})"),
            "manager.py",
            vec!["update".into(), n.to_string()],
        ),
    ]
}

struct ProxyCalls {
    _manager: Manager,
    dict: DictProxy<u64, u64>,
    n: usize,
}

impl ProxyCalls {
    fn session(n: usize) -> Result<Box<dyn Session>> {
        let manager = Manager::start()?;
        let dict = manager.dict()?;
        Ok(Box::new(ProxyCalls {
            _manager: manager,
            dict,
            n,
        }))
    }
}

impl Session for ProxyCalls {
    fn rep(&mut self) -> Result<f64> {
        let d = &self.dict;
        let mut i = 0u64;
        micros_per_op(self.n, || {
            i += 1;
            if i % 2 == 1 {
                d.insert(&(i % 64), &i)?;
            } else if d.get(&((i - 1) % 64))? != Some(i - 1) {
                return Err("the proxy lost a value".into());
            }
            Ok(())
        })
    }
}

struct BatchUpdate {
    _manager: Manager,
    dict: DictProxy<u64, u64>,
    n: u64,
}

impl BatchUpdate {
    fn session(n: u64) -> Result<Box<dyn Session>> {
        let manager = Manager::start()?;
        let dict = manager.dict()?;
        Ok(Box::new(BatchUpdate {
            _manager: manager,
            dict,
            n,
        }))
    }
}

impl Session for BatchUpdate {
    fn rep(&mut self) -> Result<f64> {
        let t = std::time::Instant::now();
        self.dict.update((0..self.n).map(|i| (i, i)))?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        if self.dict.len()? as u64 != self.n {
            return Err("the update lost entries".into());
        }
        Ok(ms)
    }
}
