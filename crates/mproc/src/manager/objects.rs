//! The objects a server holds, and what each operation does to them.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::protocol::{Bytes, DictOp, EventOp, ListOp, LockOp, NamespaceOp, Packed, ValueOp};
use super::register::Served;
use crate::error::RemoteError;

type Out = Result<Bytes, RemoteError>;

/// A server-side object. Elements stay encoded.
pub(crate) enum Object {
    Dict(Mutex<HashMap<Bytes, Bytes>>),
    List(Mutex<Vec<Bytes>>),
    Namespace(Mutex<HashMap<String, Bytes>>),
    Value(Mutex<Bytes>),
    /// A manager lock: a flag with no owner (any proxy may release it).
    Lock(Flag),
    Event(Flag),
    Queue(super::waiting::Queue),
    Semaphore(super::waiting::Semaphore),
    Barrier(super::waiting::Barrier),
    Reentrant(super::reentrant::Reentrant),
    /// A registered type: its name and the object.
    Custom(String, Mutex<Box<dyn Served>>),
}

/// A boolean and a condition variable to wait for it to change.
#[derive(Default)]
pub(crate) struct Flag {
    state: Mutex<bool>,
    changed: Condvar,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn failed(e: crate::Error) -> RemoteError {
    RemoteError::Failed(e.to_string())
}

/// Encodes a result for the reply.
pub(crate) fn out<T: Serialize>(value: &T) -> Out {
    super::protocol::enc(value).map_err(|e| RemoteError::Failed(e.to_string()))
}

pub(crate) fn dict(m: &Mutex<HashMap<Bytes, Bytes>>, op: DictOp) -> Out {
    let mut d = lock(m);
    match op {
        DictOp::Get(k) => out(&d.get(&k)),
        DictOp::Insert(k, v) => out(&d.insert(k, v)),
        DictOp::Remove(k) => out(&d.remove(&k)),
        DictOp::Contains(k) => out(&d.contains_key(&k)),
        DictOp::Len => out(&(d.len() as u64)),
        DictOp::Update(items) => {
            let mut it = items.iter();
            while let Some(k) = it.next() {
                let v = it.next().unwrap_or(Err("a key without a value".into()));
                let (k, v) = (
                    k.map_err(RemoteError::Failed)?,
                    v.map_err(RemoteError::Failed)?,
                );
                // An existing key keeps its allocations: no copy of it, and
                // the value rewritten in place.
                match d.get_mut(k) {
                    Some(old) => {
                        old.0.clear();
                        old.0.extend_from_slice(v);
                    }
                    None => {
                        d.insert(Bytes(k.to_vec()), Bytes(v.to_vec()));
                    }
                }
            }
            out(&())
        }
        DictOp::GetMany(keys) => out(&keys.iter().map(|k| d.get(k)).collect::<Vec<_>>()),
        DictOp::Items => {
            let mut p = Packed::default();
            for (k, v) in d.iter() {
                p.push_raw(k).and_then(|_| p.push_raw(v)).map_err(failed)?;
            }
            out(&p)
        }
        DictOp::Keys => out(&d.keys().collect::<Vec<_>>()),
        DictOp::Clear => out(&d.clear()),
    }
}

/// Python's index rules: negative counts from the end.
fn index(i: i64, len: usize, insert: bool) -> Result<usize, RemoteError> {
    let n = len as i64;
    let j = if i < 0 { i + n } else { i };
    let limit = if insert { n } else { n - 1 };
    if insert {
        return Ok(j.clamp(0, limit) as usize);
    }
    if (0..=limit).contains(&j) {
        Ok(j as usize)
    } else {
        Err(RemoteError::IndexOutOfRange {
            index: i,
            len: len as u64,
        })
    }
}

pub(crate) fn list(m: &Mutex<Vec<Bytes>>, op: ListOp) -> Out {
    let mut l = lock(m);
    match op {
        ListOp::Push(v) => out(&l.push(v)),
        ListOp::Extend(vs) => {
            for v in vs.iter() {
                l.push(Bytes(v.map_err(RemoteError::Failed)?.to_vec()));
            }
            out(&())
        }
        ListOp::Get(i) => out(&l[index(i, l.len(), false)?]),
        ListOp::Set(i, v) => {
            let j = index(i, l.len(), false)?;
            out(&std::mem::replace(&mut l[j], v))
        }
        ListOp::Insert(i, v) => {
            let j = index(i, l.len(), true)?;
            out(&l.insert(j, v))
        }
        ListOp::Pop(i) => {
            let j = index(i.unwrap_or(-1), l.len(), false)?;
            out(&l.remove(j))
        }
        ListOp::Len => out(&(l.len() as u64)),
        ListOp::Snapshot => {
            let mut p = Packed::default();
            for v in l.iter() {
                p.push_raw(v).map_err(failed)?;
            }
            out(&p)
        }
        ListOp::Clear => out(&l.clear()),
    }
}

pub(crate) fn namespace(m: &Mutex<HashMap<String, Bytes>>, op: NamespaceOp) -> Out {
    let mut ns = lock(m);
    match op {
        NamespaceOp::Get(name) => out(&ns.get(&name)),
        NamespaceOp::Set(name, v) => out(&ns.insert(name, v).is_some()),
        NamespaceOp::Delete(name) => out(&ns.remove(&name).is_some()),
        NamespaceOp::Names => {
            let mut names: Vec<&String> = ns.keys().collect();
            names.sort();
            out(&names)
        }
    }
}

pub(crate) fn value(m: &Mutex<Bytes>, op: ValueOp) -> Out {
    let mut v = lock(m);
    match op {
        ValueOp::Get => out(&*v),
        ValueOp::Set(new) => out(&std::mem::replace(&mut *v, new)),
    }
}

fn deadline(micros: Option<u64>) -> Option<Instant> {
    micros.map(|us| Instant::now() + Duration::from_micros(us))
}

impl Flag {
    /// Waits until the flag equals `want` or the deadline passes; returns
    /// the guard and whether it does.
    fn wait_for(&self, want: bool, until: Option<Instant>) -> (MutexGuard<'_, bool>, bool) {
        let mut g = lock(&self.state);
        while *g != want {
            let Some(until) = until else {
                g = self.changed.wait(g).unwrap_or_else(|p| p.into_inner());
                continue;
            };
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return (g, false);
            }
            g = self
                .changed
                .wait_timeout(g, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        (g, true)
    }

    fn put(&self, v: bool) {
        *lock(&self.state) = v;
        self.changed.notify_all();
    }

    pub(crate) fn lock_op(&self, op: LockOp) -> Out {
        match op {
            LockOp::Acquire(us) => {
                let (mut g, free) = self.wait_for(false, deadline(us));
                if free {
                    *g = true;
                }
                out(&free)
            }
            LockOp::Release => {
                let mut g = lock(&self.state);
                if !*g {
                    return Err(RemoteError::NotLocked);
                }
                *g = false;
                drop(g);
                self.changed.notify_all();
                out(&())
            }
            LockOp::Locked => out(&*lock(&self.state)),
        }
    }

    pub(crate) fn event_op(&self, op: EventOp) -> Out {
        match op {
            EventOp::Set => out(&self.put(true)),
            EventOp::Clear => out(&self.put(false)),
            EventOp::IsSet => out(&*lock(&self.state)),
            EventOp::Wait(us) => out(&self.wait_for(true, deadline(us)).1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_index_rules() {
        assert_eq!(index(-1, 3, false).unwrap(), 2);
        assert!(index(3, 3, false).is_err());
        assert!(index(-4, 3, false).is_err());
        assert!(index(0, 0, false).is_err());
        assert_eq!(index(10, 3, true).unwrap(), 3);
        assert_eq!(index(-10, 3, true).unwrap(), 0);
    }
}
