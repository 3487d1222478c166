//! The proxies an element bound for the server carries: while an element
//! is encoded ([`collecting`]), each handle serialised in it is noted
//! here, and the next call on this thread hands their transit references
//! to the object it addresses (see `proxy.rs`, References). A leaf: the
//! wire format (`protocol.rs`) and the proxies (`proxy.rs`) both use it.

use std::cell::{Cell, RefCell};

use crate::connection::Address;

thread_local! {
    /// How deep in [`collecting`] this thread is.
    static COLLECTING: Cell<u32> = const { Cell::new(0) };
    /// Handles serialised while collecting, for the next call to carry.
    static OUTGOING: RefCell<Vec<(Address, u64)>> = const { RefCell::new(Vec::new()) };
}

/// Encodes an element bound for the server: the handles serialised in it
/// are remembered, and the next call hands their transit references to
/// the object it addresses.
pub(crate) fn collecting<R>(f: impl FnOnce() -> R) -> R {
    COLLECTING.with(|c| c.set(c.get() + 1));
    let r = f();
    COLLECTING.with(|c| c.set(c.get() - 1));
    r
}

/// Notes handle `id` of the server at `address`, being serialised, if
/// this thread is [`collecting`]; returns whether it is.
pub(crate) fn collect(address: &Address, id: u64) -> bool {
    if COLLECTING.with(Cell::get) == 0 {
        return false;
    }
    OUTGOING.with(|o| o.borrow_mut().push((address.clone(), id)));
    true
}

/// The ids of this server's handles collected since the last call.
pub(crate) fn take(address: &Address) -> Vec<u64> {
    OUTGOING.with(|o| {
        let all = std::mem::take(&mut *o.borrow_mut());
        // A handle of another server keeps its transit reference there.
        all.into_iter()
            .filter(|(a, _)| a == address)
            .map(|(_, id)| id)
            .collect()
    })
}
