//! The server: a process that owns the objects and answers proxies, one
//! thread per authenticated connection (a proxy waiting on a lock blocks
//! only its own).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::link::Link;
use super::protocol::{Bytes, Kind, Op, Packed, Reply, Request};
use super::proxy::Target;
use super::register::{Entry, Factory};
use super::served::{self, decode_init, Built, Served};
use crate::connection::{Listener, SocketConnection};
use crate::error::{Error, RemoteError};
use crate::observe::{debug_event, debug_scope, info_event, warn_event};
use crate::Connection;

/// How long a peer has to authenticate before the server drops it.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the server process is started with.
#[derive(Serialize, Deserialize)]
pub(crate) struct Setup {
    pub(crate) target: Target,
    pub(crate) registry: Vec<Entry>,
    /// Receives `Ok(actual address)` once listening, or why not.
    pub(crate) ready: Connection<Result<crate::Address, String>>,
}

/// The references to one object.
#[derive(Default)]
struct Refs {
    /// Every reference: connections', transit ones, other objects'.
    count: u64,
    /// Those in transit (taken by `Share`, not adopted yet).
    transit: u64,
    /// A named object lives until the server stops.
    named: bool,
    /// The objects this one holds a reference to (proxies in its elements).
    holds: Vec<u64>,
}

/// An object and the kind it was made as.
struct Held {
    kind: Kind,
    object: Arc<dyn Served>,
}

struct State {
    objects: Mutex<HashMap<u64, Held>>,
    /// Locked before `objects` when both are.
    refs: Mutex<HashMap<u64, Refs>>,
    names: Mutex<HashMap<String, u64>>,
    next: AtomicU64,
    next_conn: AtomicU64,
    registry: HashMap<String, Factory>,
    stopping: AtomicBool,
    target: Target,
}

/// The server process's task.
pub(crate) fn main(setup: Setup) {
    let _ = crate::sys::proc::ignore_sigint();
    let listener = Listener::builder(setup.target.address.clone())
        .authkey(setup.target.authkey.clone())
        .handshake_timeout(HANDSHAKE_TIMEOUT)
        .bind();
    let listener = match listener {
        Ok(l) => l,
        Err(e) => {
            let _ = setup.ready.send(&Err(e.to_string()));
            return;
        }
    };
    let mut target = setup.target;
    target.address = listener.address().clone();
    info_event!(address = %target.address, "manager server listening");
    let _ = setup.ready.send(&Ok(target.address.clone()));
    drop(setup.ready);
    let state = Arc::new(State {
        objects: Mutex::new(HashMap::new()),
        refs: Mutex::new(HashMap::new()),
        names: Mutex::new(HashMap::new()),
        next: AtomicU64::new(1),
        next_conn: AtomicU64::new(1),
        registry: setup
            .registry
            .iter()
            .map(|e| (e.typeid.clone(), e.factory()))
            .collect(),
        stopping: AtomicBool::new(false),
        target,
    });
    serve(&listener, &state);
    info_event!(address = %state.target.address, "manager server stopped");
}

/// Serves each authenticated peer on a thread of its own. Handshakes run
/// in the listener's acceptor thread (bounded, no thread per peer), so a
/// flood of sockets that never authenticate costs no threads. A thread
/// that cannot be started (a thread or address-space limit) costs only
/// that connection, which is closed; the server keeps serving.
fn serve(listener: &Listener, state: &Arc<State>) {
    static TOLD: AtomicBool = AtomicBool::new(false);
    while !state.stopping.load(Ordering::SeqCst) {
        match listener.accept::<()>() {
            Ok(conn) => {
                let st = state.clone();
                let started = std::thread::Builder::new()
                    .name("mproc-manager-conn".into())
                    .spawn(move || handle(conn, &st));
                if let Err(e) = started {
                    warn_event!(error = %e, "manager connection closed: no thread to serve it");
                    if !TOLD.swap(true, Ordering::Relaxed) {
                        eprintln!(
                            "mproc manager server: cannot start a thread for a connection \
                             ({e}); such connections are closed"
                        );
                    }
                }
            }
            Err(Error::InvalidState(_)) => return,
            Err(_) => {}
        }
    }
}

fn handle(conn: SocketConnection<()>, state: &Arc<State>) {
    let id = state.next_conn.fetch_add(1, Ordering::Relaxed);
    debug_scope!("manager connection", id, peer = %conn.peer());
    debug_event!("manager connection served");
    let mut conn = Link::Socket(conn);
    // The references this connection holds, by object.
    let mut held: HashMap<u64, u64> = HashMap::new();
    while let Ok(bytes) = conn.recv_bytes() {
        let reply: Reply = match crate::connection::decode_plain::<Request>(&bytes) {
            Ok(req) if matches!(req.op, Op::Upgrade) => {
                match conn.upgrade(&state.target.address) {
                    Some(link) => conn = link,
                    None => break,
                }
                continue;
            }
            Ok(req) => {
                let stop = matches!(req.op, Op::Shutdown);
                let r = dispatch(state, id, &mut held, req);
                if stop {
                    let _ = conn.send_bytes(&encode(&r));
                    stop_serving(state);
                    return;
                }
                r
            }
            Err(e) => {
                warn_event!(error = %e, "manager request refused: it does not decode");
                Err(RemoteError::Failed(format!("bad request: {e}")))
            }
        };
        if conn.send_bytes(&encode(&reply)).is_err() {
            break;
        }
    }
    // Closed (or its process died): a sort it had begun ends, and what it
    // held goes.
    debug_event!(
        objects = held.len(),
        "manager connection ended; its references go"
    );
    end_sorts(state, id, held.keys());
    for (object, n) in held {
        for _ in 0..n {
            decref(state, object);
        }
    }
}

/// Decodes a request and walks its batches, as the server would (for
/// fuzzing: a peer's bytes yield a request or an error).
pub(crate) fn decode_request(bytes: &[u8]) -> crate::Result<()> {
    let req = crate::connection::decode_plain::<Request>(bytes)?;
    let packed = match &req.op {
        Op::Dict(super::protocol::DictOp::Update(p))
        | Op::List(super::protocol::ListOp::Extend(p)) => Some(p),
        _ => None,
    };
    for item in packed.into_iter().flat_map(Packed::iter) {
        item.map_err(Error::Protocol)?;
    }
    Ok(())
}

/// Ends the sorts connection `conn` has in progress on `objects` (every
/// list it began a sort on is among them, see `dispatch`): each object it
/// held hears that it closed.
fn end_sorts<'a>(state: &State, conn: u64, objects: impl Iterator<Item = &'a u64>) {
    let held: Vec<Arc<dyn Served>> = {
        let all = state.objects.lock().unwrap_or_else(|p| p.into_inner());
        objects
            .filter_map(|id| all.get(id).map(|h| h.object.clone()))
            .collect()
    };
    for o in held {
        o.closed(conn);
    }
}

fn encode(reply: &Reply) -> Vec<u8> {
    crate::connection::encode_plain(reply).expect("a reply always encodes")
}

/// Ends the accept loop: sets the flag, then wakes `accept` with a
/// connection of our own.
fn stop_serving(state: &State) {
    state.stopping.store(true, Ordering::SeqCst);
    let _ = super::proxy::connect(&state.target);
}

/// `conn` names the connection the request came on (an owner of locks).
fn dispatch(state: &State, conn: u64, held: &mut HashMap<u64, u64>, req: Request) -> Reply {
    let refs = std::mem::take(&mut { req.refs });
    let keeps = !matches!(req.op, Op::Queue(_));
    if matches!(req.op, Op::List(super::protocol::ListOp::SortBegin)) {
        // Looked at when the connection closes, to end its sort.
        held.entry(req.id).or_default();
    }
    let r = match req.op {
        Op::Create { .. } => dispatch_op(state, conn, req.id, req.op).and_then(|b| {
            let id: u64 = decode_init(&b)?;
            *held.entry(id).or_default() += 1;
            Ok((b, id))
        }),
        Op::Incref => incref(state, req.id)
            .map(|()| {
                *held.entry(req.id).or_default() += 1;
            })
            .and_then(|()| Ok((served::out(&())?, req.id))),
        Op::Decref => {
            if let Some(n) = held.get_mut(&req.id).filter(|n| **n > 0) {
                *n -= 1;
                decref(state, req.id);
            }
            served::out(&()).map(|b| (b, req.id))
        }
        Op::Share => share(state, req.id).and_then(|()| Ok((served::out(&())?, req.id))),
        Op::Adopt => adopt(state, req.id)
            .map(|()| {
                *held.entry(req.id).or_default() += 1;
            })
            .and_then(|()| Ok((served::out(&())?, req.id))),
        Op::Release => {
            release(state, req.id);
            served::out(&()).map(|b| (b, req.id))
        }
        Op::ObjectCount => {
            let n = state
                .objects
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .len() as u64;
            served::out(&n).map(|b| (b, req.id))
        }
        op => dispatch_op(state, conn, req.id, op).map(|b| (b, req.id)),
    };
    match r {
        Ok((b, holder)) => {
            if keeps {
                for r in refs {
                    take_over(state, holder, r);
                }
            }
            Ok(b)
        }
        Err(e) => Err(e),
    }
}

/// One more reference to `id`.
fn incref(state: &State, id: u64) -> Result<(), RemoteError> {
    let mut refs = state.refs.lock().unwrap_or_else(|p| p.into_inner());
    let r = refs.get_mut(&id).ok_or(RemoteError::NoSuchObject(id))?;
    r.count += 1;
    Ok(())
}

/// One reference to `id` fewer; the last one frees it, and what it held.
fn decref(state: &State, id: u64) {
    let mut refs = state.refs.lock().unwrap_or_else(|p| p.into_inner());
    let mut gone = Vec::new();
    let mut todo = vec![id];
    while let Some(id) = todo.pop() {
        let Some(r) = refs.get_mut(&id) else { continue };
        r.count = r.count.saturating_sub(1);
        if r.count == 0 && !r.named {
            let r = refs.remove(&id).expect("just found");
            todo.extend(r.holds);
            gone.push(id);
        }
    }
    if gone.is_empty() {
        return;
    }
    let freed: Vec<_> = {
        let mut objects = state.objects.lock().unwrap_or_else(|p| p.into_inner());
        gone.iter().filter_map(|id| objects.remove(id)).collect()
    };
    drop(refs);
    // Dropped outside the locks: a caller still inside one keeps it alive.
    drop(freed);
}

/// A transit reference to `id`.
fn share(state: &State, id: u64) -> Result<(), RemoteError> {
    let mut refs = state.refs.lock().unwrap_or_else(|p| p.into_inner());
    let r = refs.get_mut(&id).ok_or(RemoteError::NoSuchObject(id))?;
    r.count += 1;
    r.transit += 1;
    Ok(())
}

/// A transit reference to `id` becomes the caller's (or a new one is
/// taken if none is in transit).
fn adopt(state: &State, id: u64) -> Result<(), RemoteError> {
    let mut refs = state.refs.lock().unwrap_or_else(|p| p.into_inner());
    let r = refs.get_mut(&id).ok_or(RemoteError::NoSuchObject(id))?;
    if r.transit > 0 {
        r.transit -= 1;
    } else {
        r.count += 1;
    }
    Ok(())
}

/// Gives a transit reference to `id` back.
fn release(state: &State, id: u64) {
    let in_transit = {
        let mut refs = state.refs.lock().unwrap_or_else(|p| p.into_inner());
        match refs.get_mut(&id) {
            Some(r) if r.transit > 0 => {
                r.transit -= 1;
                true
            }
            _ => false,
        }
    };
    if in_transit {
        decref(state, id);
    }
}

/// `holder` takes over a transit reference to `id` (a new one if none is
/// in transit); a holder that is gone gives it back.
fn take_over(state: &State, holder: u64, id: u64) {
    let mut refs = state.refs.lock().unwrap_or_else(|p| p.into_inner());
    if !refs.contains_key(&holder) {
        drop(refs);
        release(state, id);
        return;
    }
    let Some(r) = refs.get_mut(&id) else { return };
    if r.transit > 0 {
        r.transit -= 1;
    } else {
        r.count += 1;
    }
    refs.get_mut(&holder).expect("checked").holds.push(id);
}

/// Answers an operation on an object (or on the manager, id 0): the
/// object's own, through [`Served`], whatever its kind.
fn dispatch_op(state: &State, conn: u64, id: u64, op: Op) -> Reply {
    match op {
        Op::Hello | Op::Shutdown => served::out(&()),
        Op::Incref | Op::Decref | Op::Share | Op::Adopt | Op::Release | Op::ObjectCount => Err(
            RemoteError::Failed("a reference operation out of place".into()),
        ),
        Op::Upgrade => Err(RemoteError::Failed("an upgrade comes alone".into())),
        Op::Create { kind, name, init } => create(state, kind, name, init),
        op => {
            let object = {
                let objects = state.objects.lock().unwrap_or_else(|p| p.into_inner());
                let held = objects.get(&id).ok_or(RemoteError::NoSuchObject(id))?;
                held.object.clone()
            };
            object
                .serve(conn, op)
                .unwrap_or_else(|| Err(RemoteError::WrongKind(format!("#{id}"))))
        }
    }
}

/// Makes an object (or finds the one called `name`, which must be of the
/// same kind) and returns its id.
fn create(state: &State, kind: Kind, name: Option<String>, init: Bytes) -> Reply {
    let mut names = state.names.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(id) = name.as_ref().and_then(|n| names.get(n)) {
        let objects = state.objects.lock().unwrap_or_else(|p| p.into_inner());
        return match objects.get(id) {
            Some(o) if served::same_kind(&o.kind, &kind) => {
                let id = *id;
                drop(objects);
                incref(state, id)?;
                served::out(&id)
            }
            _ => Err(RemoteError::WrongKind(format!(
                "{:?}",
                name.unwrap_or_default()
            ))),
        };
    }
    let object = build(state, &kind, &init)?;
    let id = state.next.fetch_add(1, Ordering::Relaxed);
    state
        .objects
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id, Held { kind, object });
    let refs = Refs {
        count: 1,
        named: name.is_some(),
        ..Refs::default()
    };
    state
        .refs
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id, refs);
    if let Some(n) = name {
        names.insert(n, id);
    }
    served::out(&id)
}

/// Makes an object of `kind`: a built-in from its line in the table, a
/// registered type from its factory.
fn build(state: &State, kind: &Kind, init: &[u8]) -> Built {
    if let Kind::Custom(typeid) = kind {
        let f = state
            .registry
            .get(typeid)
            .ok_or_else(|| RemoteError::UnknownType(typeid.clone()))?;
        return f(init.to_vec());
    }
    super::builtins::build(kind, init)
        .unwrap_or_else(|| Err(RemoteError::Failed(format!("no such kind: {kind:?}"))))
}
