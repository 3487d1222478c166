//! How the server holds every object, built-in or registered: one trait
//! ([`Served`]) that erases its type, and the table of built-in kinds
//! ([`BUILTINS`]). Adding a built-in object is its type, its `Served`
//! impl and its `build` beside it, plus one line in the table (and its
//! `Kind` and `Op` variants in `protocol.rs`, the wire format).

use std::sync::Arc;

use super::protocol::{Kind, Op, Reply};
use super::{objects, reentrant, waiting};
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

/// Makes a built-in object for `kind` from its encoded init, or `None`
/// when `kind` is not its own.
type Build = fn(&Kind, &[u8]) -> Option<Built>;

/// The built-in objects, one line each.
const BUILTINS: &[Build] = &[
    objects::SharedDict::build,
    objects::List::build,
    objects::Namespace::build,
    objects::Value::build,
    objects::Lock::build,
    objects::Event::build,
    waiting::Queue::build,
    waiting::Semaphore::build,
    waiting::Barrier::build,
    reentrant::Reentrant::build,
];

/// Makes the built-in object `kind` names (`None`: not a built-in kind).
pub(crate) fn build(kind: &Kind, init: &[u8]) -> Option<Built> {
    BUILTINS.iter().find_map(|b| b(kind, init))
}

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

/// Decodes what a request carries (an init, a reply's id).
pub(crate) fn decode_init<T: serde::de::DeserializeOwned>(init: &[u8]) -> Result<T, RemoteError> {
    crate::connection::decode_plain(init).map_err(|e| RemoteError::Failed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_kind_has_one_line() {
        let kinds = [
            Kind::Dict,
            Kind::List,
            Kind::Namespace,
            Kind::Value,
            Kind::Lock,
            Kind::Event,
            Kind::Queue(0),
            Kind::Semaphore(1, true),
            Kind::Barrier(2),
            Kind::Reentrant,
        ];
        let init = |k: &Kind| match k {
            Kind::Dict => crate::connection::encode_plain(&Vec::<(u8, u8)>::new()).unwrap(),
            Kind::List => {
                crate::connection::encode_plain(&super::super::protocol::Packed::default()).unwrap()
            }
            _ => Vec::new(),
        };
        for k in &kinds {
            let n = BUILTINS.iter().filter(|b| b(k, &init(k)).is_some()).count();
            assert_eq!(n, 1, "{k:?}");
            assert!(build(k, &init(k)).unwrap().is_ok(), "{k:?}");
        }
        assert!(build(&Kind::Custom("x".into()), &[]).is_none());
        assert!(same_kind(&Kind::Queue(1), &Kind::Queue(5)));
        assert!(!same_kind(&Kind::Lock, &Kind::Event));
        assert!(!same_kind(
            &Kind::Custom("a".into()),
            &Kind::Custom("b".into())
        ));
    }
}
