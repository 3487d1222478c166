//! The server's built-in objects, one line each: adding one is its type
//! with its [`Served`](super::served::Served) impl and `build` (in its own file), its line here,
//! and its `Kind` and `Op` variants in `protocol.rs` (the wire format).

use super::protocol::Kind;
use super::served::Built;
use super::{objects, reentrant, waiting};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manager::served::same_kind;

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
