//! The server: a process that owns the objects and answers proxies, one
//! thread per connection (a proxy waiting on a lock blocks only its own).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::link::Link;
use super::objects::{self, Flag, Object};
use super::protocol::{Bytes, Kind, Op, Packed, Reply, Request};
use super::proxy::Target;
use super::register::{Entry, Factory};
use super::waiting::{Barrier, Queue, Semaphore};
use crate::connection::{Listener, SocketConnection};
use crate::error::{Error, RemoteError};
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

struct State {
    objects: Mutex<HashMap<u64, Arc<Object>>>,
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
    let _ = setup.ready.send(&Ok(target.address.clone()));
    drop(setup.ready);
    let state = Arc::new(State {
        objects: Mutex::new(HashMap::new()),
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
}

fn serve(listener: &Listener, state: &Arc<State>) {
    while !state.stopping.load(Ordering::SeqCst) {
        match listener.accept_pending(None) {
            Ok(peer) => {
                let state = state.clone();
                // The handshake runs on the peer's thread: a peer that
                // stalls holds up nobody else.
                std::thread::spawn(move || {
                    if let Ok(conn) = peer.authenticate() {
                        handle(conn, &state);
                    }
                });
            }
            Err(Error::InvalidState(_)) => return,
            Err(_) => {}
        }
    }
}

fn handle(conn: SocketConnection<()>, state: &Arc<State>) {
    let id = state.next_conn.fetch_add(1, Ordering::Relaxed);
    let mut conn = Link::Socket(conn);
    while let Ok(bytes) = conn.recv_bytes() {
        let reply: Reply = match crate::connection::decode_plain::<Request>(&bytes) {
            Ok(req) if matches!(req.op, Op::Upgrade) => {
                match conn.upgrade(&state.target.address) {
                    Some(link) => conn = link,
                    None => return,
                }
                continue;
            }
            Ok(req) => {
                let stop = matches!(req.op, Op::Shutdown);
                let r = dispatch(state, id, req);
                if stop {
                    let _ = conn.send_bytes(&encode(&r));
                    stop_serving(state);
                    return;
                }
                r
            }
            Err(e) => Err(RemoteError::Failed(format!("bad request: {e}"))),
        };
        if conn.send_bytes(&encode(&reply)).is_err() {
            return;
        }
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
fn dispatch(state: &State, conn: u64, req: Request) -> Reply {
    let object = |id: u64| {
        let objects = state.objects.lock().unwrap_or_else(|p| p.into_inner());
        objects
            .get(&id)
            .cloned()
            .ok_or(RemoteError::NoSuchObject(id))
    };
    let wrong = |id: u64| Err(RemoteError::WrongKind(format!("#{id}")));
    match req.op {
        Op::Hello | Op::Shutdown => objects::out(&()),
        Op::Upgrade => Err(RemoteError::Failed("an upgrade comes alone".into())),
        Op::Create { kind, name, init } => create(state, kind, name, init),
        Op::Dict(op) => match &*object(req.id)? {
            Object::Dict(m) => objects::dict(m, op),
            _ => wrong(req.id),
        },
        Op::List(op) => match &*object(req.id)? {
            Object::List(m) => objects::list(m, op),
            _ => wrong(req.id),
        },
        Op::Namespace(op) => match &*object(req.id)? {
            Object::Namespace(m) => objects::namespace(m, op),
            _ => wrong(req.id),
        },
        Op::Value(op) => match &*object(req.id)? {
            Object::Value(m) => objects::value(m, op),
            _ => wrong(req.id),
        },
        Op::Lock(op) => match &*object(req.id)? {
            Object::Lock(f) => f.lock_op(op),
            _ => wrong(req.id),
        },
        Op::Event(op) => match &*object(req.id)? {
            Object::Event(f) => f.event_op(op),
            _ => wrong(req.id),
        },
        Op::Queue(op) => match &*object(req.id)? {
            Object::Queue(q) => q.op(op),
            _ => wrong(req.id),
        },
        Op::Semaphore(op) => match &*object(req.id)? {
            Object::Semaphore(s) => s.op(op),
            _ => wrong(req.id),
        },
        Op::Barrier(op) => match &*object(req.id)? {
            Object::Barrier(b) => b.op(op),
            _ => wrong(req.id),
        },
        Op::Reentrant(op) => match &*object(req.id)? {
            Object::Reentrant(r) => r.op(conn, op),
            _ => wrong(req.id),
        },
        Op::Custom(call) => match &*object(req.id)? {
            Object::Custom(_, m) => m
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .call_bytes(&call),
            _ => wrong(req.id),
        },
    }
}

/// Makes an object (or finds the one called `name`, which must be of the
/// same kind) and returns its id.
fn create(state: &State, kind: Kind, name: Option<String>, init: Bytes) -> Reply {
    let mut names = state.names.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(id) = name.as_ref().and_then(|n| names.get(n)) {
        let objects = state.objects.lock().unwrap_or_else(|p| p.into_inner());
        return match objects.get(id) {
            Some(o) if same_kind(o, &kind) => objects::out(id),
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
        .insert(id, Arc::new(object));
    if let Some(n) = name {
        names.insert(n, id);
    }
    objects::out(&id)
}

fn decode_init<T: serde::de::DeserializeOwned>(init: &[u8]) -> Result<T, RemoteError> {
    crate::connection::decode_plain(init).map_err(|e| RemoteError::Failed(e.to_string()))
}

fn build(state: &State, kind: &Kind, init: &[u8]) -> Result<Object, RemoteError> {
    Ok(match kind {
        Kind::Dict => {
            let items: Vec<(Bytes, Bytes)> = decode_init(init)?;
            Object::Dict(Mutex::new(items.into_iter().collect()))
        }
        Kind::List => {
            let items: Packed = decode_init(init)?;
            let items = items
                .iter()
                .map(|b| b.map(|b| Bytes(b.to_vec())))
                .collect::<Result<_, String>>()
                .map_err(RemoteError::Failed)?;
            Object::List(Mutex::new(items))
        }
        Kind::Namespace => Object::Namespace(Mutex::new(HashMap::new())),
        Kind::Value => Object::Value(Mutex::new(Bytes(init.to_vec()))),
        Kind::Lock => Object::Lock(Flag::default()),
        Kind::Event => Object::Event(Flag::default()),
        Kind::Queue(max) => Object::Queue(Queue::new(*max as usize)),
        Kind::Reentrant => Object::Reentrant(Default::default()),
        Kind::Barrier(parties) => Object::Barrier(Barrier::new(*parties)),
        Kind::Semaphore(value, bounded) => Object::Semaphore(Semaphore::new(*value, *bounded)),
        Kind::Custom(typeid) => {
            let f = state
                .registry
                .get(typeid)
                .ok_or_else(|| RemoteError::UnknownType(typeid.clone()))?;
            Object::Custom(typeid.clone(), Mutex::new(f(init)?))
        }
    })
}

fn same_kind(o: &Object, kind: &Kind) -> bool {
    matches!(
        (o, kind),
        (Object::Dict(_), Kind::Dict)
            | (Object::List(_), Kind::List)
            | (Object::Namespace(_), Kind::Namespace)
            | (Object::Value(_), Kind::Value)
            | (Object::Lock(_), Kind::Lock)
            | (Object::Event(_), Kind::Event)
            | (Object::Queue(_), Kind::Queue(_))
            | (Object::Semaphore(_), Kind::Semaphore(..))
            | (Object::Barrier(_), Kind::Barrier(_))
            | (Object::Reentrant(_), Kind::Reentrant)
    ) || matches!((o, kind), (Object::Custom(a, _), Kind::Custom(b)) if a == b)
}
