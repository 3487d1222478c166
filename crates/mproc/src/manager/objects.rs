//! The server's plain objects (dict, list, namespace, value, lock, event)
//! and what each operation does to them; each is [`Served`] and built
//! from its line in `served.rs`'s table.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::protocol::{
    Bytes, DictOp, EventOp, Kind, ListOp, LockOp, NamespaceOp, Op, Packed, ValueOp,
};
use super::served::{decode_init, made, out, Built, Served};
use crate::error::RemoteError;

type Out = Result<Bytes, RemoteError>;

/// A dict: `Dict` behind its lock.
pub(crate) struct SharedDict(Mutex<Dict>);

impl SharedDict {
    pub(crate) fn build(kind: &Kind, init: &[u8]) -> Option<Built> {
        let Kind::Dict = kind else { return None };
        match decode_init::<Vec<(Bytes, Bytes)>>(init) {
            Ok(items) => made(SharedDict(Mutex::new(items.into_iter().collect()))),
            Err(e) => Some(Err(e)),
        }
    }
}

impl Served for SharedDict {
    fn serve(&self, _conn: u64, op: Op) -> Option<Out> {
        let Op::Dict(op) = op else { return None };
        Some(dict(&self.0, op))
    }
}

/// A namespace: named values.
pub(crate) struct Namespace(Mutex<HashMap<String, Bytes>>);

impl Namespace {
    pub(crate) fn build(kind: &Kind, _init: &[u8]) -> Option<Built> {
        let Kind::Namespace = kind else { return None };
        made(Namespace(Mutex::new(HashMap::new())))
    }
}

impl Served for Namespace {
    fn serve(&self, _conn: u64, op: Op) -> Option<Out> {
        let Op::Namespace(op) = op else { return None };
        Some(namespace(&self.0, op))
    }
}

/// A value, kept encoded.
pub(crate) struct Value(Mutex<Bytes>);

impl Value {
    pub(crate) fn build(kind: &Kind, init: &[u8]) -> Option<Built> {
        let Kind::Value = kind else { return None };
        made(Value(Mutex::new(Bytes(init.to_vec()))))
    }
}

impl Served for Value {
    fn serve(&self, _conn: u64, op: Op) -> Option<Out> {
        let Op::Value(op) = op else { return None };
        Some(value(&self.0, op))
    }
}

/// A manager lock: a flag with no owner (any proxy may release it).
pub(crate) struct Lock(Flag);

impl Lock {
    pub(crate) fn build(kind: &Kind, _init: &[u8]) -> Option<Built> {
        let Kind::Lock = kind else { return None };
        made(Lock(Flag::default()))
    }
}

impl Served for Lock {
    fn serve(&self, _conn: u64, op: Op) -> Option<Out> {
        let Op::Lock(op) = op else { return None };
        Some(self.0.lock_op(op))
    }
}

/// An event: a flag to wait for.
pub(crate) struct Event(Flag);

impl Event {
    pub(crate) fn build(kind: &Kind, _init: &[u8]) -> Option<Built> {
        let Kind::Event = kind else { return None };
        made(Event(Flag::default()))
    }
}

impl Served for Event {
    fn serve(&self, _conn: u64, op: Op) -> Option<Out> {
        let Op::Event(op) = op else { return None };
        Some(self.0.event_op(op))
    }
}

/// A boolean and a condition variable to wait for it to change.
#[derive(Default)]
struct Flag {
    state: Mutex<bool>,
    changed: Condvar,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn failed(e: crate::Error) -> RemoteError {
    RemoteError::Failed(e.to_string())
}

fn dict(m: &Mutex<Dict>, op: DictOp) -> Out {
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
        DictOp::PopItem => match d.pop_last() {
            Some(kv) => out(&kv),
            None => Err(RemoteError::EmptyDict),
        },
    }
}

/// A dict that remembers insertion order, as Python's: an entry keeps
/// its place when its value is replaced, and goes to the end when its key
/// is removed and inserted again. Every operation is O(1) or O(log n);
/// each key is held twice (in the map and in the order).
#[derive(Default)]
pub(crate) struct Dict {
    /// Each key's value and its place in `order`.
    map: HashMap<Bytes, (Bytes, u64)>,
    /// The keys by place.
    order: BTreeMap<u64, Bytes>,
    /// The place the next new key takes.
    next: u64,
}

impl Dict {
    fn get(&self, k: &[u8]) -> Option<&Bytes> {
        self.map.get(k).map(|(v, _)| v)
    }

    fn get_mut(&mut self, k: &[u8]) -> Option<&mut Bytes> {
        self.map.get_mut(k).map(|(v, _)| v)
    }

    fn contains_key(&self, k: &[u8]) -> bool {
        self.map.contains_key(k)
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    fn insert(&mut self, k: Bytes, v: Bytes) -> Option<Bytes> {
        if let Some((old, _)) = self.map.get_mut(&*k) {
            return Some(std::mem::replace(old, v));
        }
        let at = self.next;
        self.next += 1;
        self.order.insert(at, k.clone());
        self.map.insert(k, (v, at));
        None
    }

    fn remove(&mut self, k: &[u8]) -> Option<Bytes> {
        let (v, at) = self.map.remove(k)?;
        self.order.remove(&at);
        Some(v)
    }

    /// The last inserted entry, removed.
    fn pop_last(&mut self) -> Option<(Bytes, Bytes)> {
        let (_, k) = self.order.pop_last()?;
        let (v, _) = self
            .map
            .remove(&k)
            .expect("every key in order is in the map");
        Some((k, v))
    }

    /// The entries in insertion order.
    fn iter(&self) -> impl Iterator<Item = (&Bytes, &Bytes)> {
        self.order.values().map(|k| (k, &self.map[k].0))
    }

    fn keys(&self) -> impl Iterator<Item = &Bytes> {
        self.order.values()
    }

    fn clear(&mut self) {
        self.map.clear();
        self.order.clear();
    }
}

impl FromIterator<(Bytes, Bytes)> for Dict {
    fn from_iter<I: IntoIterator<Item = (Bytes, Bytes)>>(items: I) -> Dict {
        let mut d = Dict::default();
        for (k, v) in items {
            d.insert(k, v);
        }
        d
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

/// Python's slice rules (`PySlice_AdjustIndices`): the first index and
/// how many elements `[start:stop:step]` takes from a list of `len`.
fn slice_indices(start: Option<i64>, stop: Option<i64>, step: i64, len: usize) -> (i128, usize) {
    let (n, step) = (len as i128, step as i128);
    let adjust = |i: i64| {
        let i = i as i128;
        if i < 0 {
            (i + n).max(if step < 0 { -1 } else { 0 })
        } else if i >= n {
            if step < 0 {
                n - 1
            } else {
                n
            }
        } else {
            i
        }
    };
    let start = start.map_or(if step < 0 { n - 1 } else { 0 }, adjust);
    let stop = stop.map_or(if step < 0 { -1 } else { n }, adjust);
    let count = match step {
        s if s < 0 && stop < start => (start - stop - 1) / -s + 1,
        s if s > 0 && start < stop => (stop - start - 1) / s + 1,
        _ => 0,
    };
    (start, count as usize)
}

/// A server list, and the sort in progress on it, if any.
pub(crate) struct List {
    state: Mutex<ListState>,
    /// Signalled when a sort ends.
    sorted: Condvar,
}

struct ListState {
    items: Vec<Bytes>,
    /// Changed by every change of `items`.
    version: u64,
    /// The connection sorting the list: changes from other connections
    /// wait until it is done.
    sorter: Option<u64>,
}

impl List {
    pub(crate) fn build(kind: &Kind, init: &[u8]) -> Option<Built> {
        let Kind::List = kind else { return None };
        let items = decode_init::<Packed>(init).and_then(|items| {
            items
                .iter()
                .map(|b| b.map(|b| Bytes(b.to_vec())))
                .collect::<Result<_, String>>()
                .map_err(RemoteError::Failed)
        });
        match items {
            Ok(items) => made(List::new(items)),
            Err(e) => Some(Err(e)),
        }
    }

    fn new(items: Vec<Bytes>) -> List {
        List {
            state: Mutex::new(ListState {
                items,
                version: 0,
                sorter: None,
            }),
            sorted: Condvar::new(),
        }
    }

    /// Ends the sort `conn` has in progress, if any (it closed).
    fn end_sort(&self, conn: u64) {
        let mut g = lock(&self.state);
        if g.sorter == Some(conn) {
            g.sorter = None;
            self.sorted.notify_all();
        }
    }

    /// Runs `op` for connection `conn`. A change waits while another
    /// connection sorts the list.
    fn op(&self, conn: u64, op: ListOp) -> Out {
        use ListOp::*;
        let mut g = lock(&self.state);
        let changes = matches!(
            op,
            Push(_) | Extend(_) | Set(..) | Insert(..) | Pop(_) | Clear | Reverse | SortBegin
        );
        if changes {
            while g.sorter.is_some_and(|c| c != conn) {
                g = self.sorted.wait(g).unwrap_or_else(|p| p.into_inner());
            }
            g.version = g.version.wrapping_add(1);
        }
        let ListState {
            items: l,
            version,
            sorter,
        } = &mut *g;
        match op {
            Push(v) => out(&l.push(v)),
            Extend(vs) => {
                for v in vs.iter() {
                    l.push(Bytes(v.map_err(RemoteError::Failed)?.to_vec()));
                }
                out(&())
            }
            Get(i) => out(&l[index(i, l.len(), false)?]),
            Set(i, v) => {
                let j = index(i, l.len(), false)?;
                out(&std::mem::replace(&mut l[j], v))
            }
            Insert(i, v) => {
                let j = index(i, l.len(), true)?;
                out(&l.insert(j, v))
            }
            Pop(i) => {
                let j = index(i.unwrap_or(-1), l.len(), false)?;
                out(&l.remove(j))
            }
            Len => out(&(l.len() as u64)),
            Snapshot => packed(l.iter()),
            Clear => out(&l.clear()),
            Slice { start, stop, step } => {
                if step == 0 {
                    return Err(RemoteError::Failed("slice step cannot be zero".into()));
                }
                let (first, count) = slice_indices(start, stop, step, l.len());
                packed((0..count).map(|k| &l[(first + k as i128 * step as i128) as usize]))
            }
            Index(v, start, stop) => {
                let (first, count) = slice_indices(start, stop, 1, l.len());
                let first = first as usize;
                match l[first..first + count].iter().position(|e| *e == v) {
                    Some(i) => out(&((first + i) as u64)),
                    None => Err(RemoteError::NotInList),
                }
            }
            Count(v) => out(&(l.iter().filter(|e| **e == v).count() as u64)),
            Reverse => out(&l.reverse()),
            SortBegin => {
                *sorter = Some(conn);
                let mut p = Packed::default();
                for v in l.iter() {
                    p.push_raw(v).map_err(failed)?;
                }
                out(&(*version, p))
            }
            SortEnd(apply) => {
                if *sorter != Some(conn) {
                    return Err(RemoteError::Failed("no sort in progress".into()));
                }
                *sorter = None;
                self.sorted.notify_all();
                match apply {
                    Some((at, perm)) if at == *version => {
                        if let Some(perm) = perm {
                            permute(l, &perm)?;
                            *version = version.wrapping_add(1);
                        }
                        out(&true)
                    }
                    _ => out(&false),
                }
            }
        }
    }
}

impl Served for List {
    fn serve(&self, conn: u64, op: Op) -> Option<Out> {
        let Op::List(op) = op else { return None };
        Some(self.op(conn, op))
    }

    fn closed(&self, conn: u64) {
        self.end_sort(conn);
    }
}

/// Elements, in one `Packed` reply.
fn packed<'a>(items: impl Iterator<Item = &'a Bytes>) -> Out {
    let mut p = Packed::default();
    for v in items {
        p.push_raw(v).map_err(failed)?;
    }
    out(&p)
}

/// `items` becomes `old[perm[0]], old[perm[1]], ...`; a `perm` that is
/// not a permutation of its indices changes nothing.
fn permute(items: &mut Vec<Bytes>, perm: &[u32]) -> Result<(), RemoteError> {
    let bad = || RemoteError::Failed("not a permutation of the list".into());
    if perm.len() != items.len() {
        return Err(bad());
    }
    let mut seen = vec![false; perm.len()];
    for &i in perm {
        let s = seen.get_mut(i as usize).ok_or_else(bad)?;
        if std::mem::replace(s, true) {
            return Err(bad());
        }
    }
    let mut old: Vec<Bytes> = std::mem::take(items);
    *items = perm
        .iter()
        .map(|&i| std::mem::take(&mut old[i as usize]))
        .collect();
    Ok(())
}

fn namespace(m: &Mutex<HashMap<String, Bytes>>, op: NamespaceOp) -> Out {
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

fn value(m: &Mutex<Bytes>, op: ValueOp) -> Out {
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

    fn lock_op(&self, op: LockOp) -> Out {
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

    fn event_op(&self, op: EventOp) -> Out {
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

    /// `slice_indices` against Python's `range(len)[start:stop:step]`.
    #[test]
    fn python_slice_rules() {
        let take = |start, stop, step, len| {
            let (first, count) = slice_indices(start, stop, step, len);
            (0..count as i128)
                .map(|k| (first + k * step as i128) as usize)
                .collect::<Vec<_>>()
        };
        assert_eq!(take(Some(1), Some(3), 1, 5), vec![1, 2]);
        assert_eq!(take(Some(-2), None, 1, 5), vec![3, 4]);
        assert_eq!(take(Some(-10), Some(10), 1, 5), vec![0, 1, 2, 3, 4]);
        assert_eq!(take(Some(3), Some(1), 1, 5), Vec::<usize>::new());
        assert_eq!(take(None, None, -1, 3), vec![2, 1, 0]);
        assert_eq!(take(Some(10), Some(-10), -2, 5), vec![4, 2, 0]);
        assert_eq!(take(Some(-1), Some(-3), -1, 5), vec![4, 3]);
        assert_eq!(take(None, None, 2, 0), Vec::<usize>::new());
        assert_eq!(take(None, None, i64::MIN, 5), vec![4]);
        assert_eq!(take(Some(i64::MIN), Some(i64::MAX), i64::MAX, 5), vec![0]);
    }

    #[test]
    fn a_permutation_is_checked_before_it_applies() {
        let mut l: Vec<Bytes> = (0..3u8).map(|i| Bytes(vec![i])).collect();
        assert!(permute(&mut l, &[0, 0, 1]).is_err());
        assert!(permute(&mut l, &[0, 1]).is_err());
        assert!(permute(&mut l, &[0, 1, 3]).is_err());
        assert_eq!(l.len(), 3);
        permute(&mut l, &[2, 0, 1]).unwrap();
        assert_eq!(l, vec![Bytes(vec![2]), Bytes(vec![0]), Bytes(vec![1])]);
    }

    #[test]
    fn the_dict_keeps_insertion_order() {
        let b = |s: &str| Bytes(s.as_bytes().to_vec());
        let mut d: Dict = [(b("a"), b("1")), (b("b"), b("2")), (b("c"), b("3"))]
            .into_iter()
            .collect();
        d.insert(b("a"), b("10")); // keeps its place
        assert_eq!(d.remove(b"b"), Some(b("2")));
        d.insert(b("b"), b("20")); // goes to the end
        let keys: Vec<&Bytes> = d.keys().collect();
        assert_eq!(keys, vec![&b("a"), &b("c"), &b("b")]);
        assert_eq!(d.pop_last(), Some((b("b"), b("20"))));
        assert_eq!(d.pop_last(), Some((b("c"), b("3"))));
        assert_eq!(d.pop_last(), Some((b("a"), b("10"))));
        assert_eq!(d.pop_last(), None);
        assert_eq!(d.len(), 0);
    }
}
