//! How the server holds every object, built-in or registered: one trait,
//! [`Served`], that erases its type. A leaf below the objects: each
//! built-in implements it beside its type, a registered type through
//! `register.rs`, and `builtins.rs` lists the built-in kinds.

use std::sync::Arc;

use super::protocol::{Kind, Op, Reply};
use crate::error::RemoteError;

/// An object the server holds, its type erased: a built-in (dict, list,
/// lock...) or a registered [`Servable`](super::Servable).
///
/// Every call comes from a connection's own thread, and an object does its
/// own locking: a call that waits (a lock, a queue, a barrier) blocks only
/// the connection it came on.
pub(crate) trait Served: Send + Sync {
    /// Answers `op`, sent on connection `conn` (the owner of a reentrant
    /// lock, the sorter of a list), or `None` when `op` is not one of this
    /// object's operations.
    fn serve(&self, conn: u64, op: Op) -> Option<Reply>;

    /// Connection `conn`, which held a reference to this object, closed
    /// (or its process died): what it had begun here ends (a list's sort).
    fn closed(&self, _conn: u64) {}
}

/// An object just made, or why not.
pub(crate) type Built = Result<Arc<dyn Served>, RemoteError>;

/// `object`, made: a `build`'s answer.
pub(crate) fn made(object: impl Served + 'static) -> Option<Built> {
    Some(Ok(Arc::new(object)))
}

/// Whether an object made as `made` is one of kind `wanted` (a named
/// object is found again only as its own kind): the same variant, whatever
/// its parameters (a queue is a queue whatever its bound), and for a
/// registered type the same name.
pub(crate) fn same_kind(made: &Kind, wanted: &Kind) -> bool {
    match (made, wanted) {
        (Kind::Custom(a), Kind::Custom(b)) => a == b,
        _ => std::mem::discriminant(made) == std::mem::discriminant(wanted),
    }
}

/// Encodes a result for the reply.
pub(crate) fn out<T: serde::Serialize>(value: &T) -> Result<super::protocol::Bytes, RemoteError> {
    super::protocol::enc(value).map_err(|e| RemoteError::Failed(e.to_string()))
}

/// Decodes what a request carries (an init, a reply's id).
pub(crate) fn decode_init<T: serde::de::DeserializeOwned>(init: &[u8]) -> Result<T, RemoteError> {
    crate::connection::decode_plain(init).map_err(|e| RemoteError::Failed(e.to_string()))
}
