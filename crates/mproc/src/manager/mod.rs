//! Managers: shared objects held by a server process and reached through
//! proxies, locally or over the network (Python's
//! `multiprocessing.managers`).
//!
//! | file          | what                                                     |
//! |---------------|----------------------------------------------------------|
//! | `builder.rs`  | `Manager`, `ManagerBuilder`: start, connect, shut down   |
//! | `server.rs`   | the server process: accept loop, references, dispatch    |
//! | `served.rs`   | `Served`: every object as the server holds it            |
//! | `builtins.rs` | the table of built-in kinds, one line each               |
//! | `objects.rs`  | the plain built-ins (dict, list, namespace, value, lock, event) |
//! | `protocol.rs` | requests and replies on the wire                         |
//! | `proxy.rs`    | the connection under every proxy (reconnects after fork) |
//! | `outgoing.rs` | the proxies inside an element bound for the server (a leaf) |
//! | `link.rs`     | its transport: the socket, or a pipe to a local server   |
//! | `dict.rs`, `list.rs`, `queue.rs`, `values.rs`, `sync.rs` | the typed proxies |
//! | `waiting.rs`  | server objects that make callers wait (queue, semaphore, barrier) |
//! | `reentrant.rs`| the server's RLock, also its Condition                   |
//! | `register.rs` | user types (`Servable`, served as `Served`), their `Proxy<T>` |

mod builder;
mod builtins;
mod dict;
mod link;
mod list;
mod objects;
mod outgoing;
mod protocol;
mod proxy;
mod queue;
mod reentrant;
mod register;
mod served;
mod server;
mod sync;
mod values;
mod waiting;

pub use builder::{Manager, ManagerBuilder};
pub use dict::DictProxy;
pub use list::{ArrayProxy, ListProxy};
pub use queue::QueueProxy;
pub use register::{Proxy, Servable};
pub(crate) use server::decode_request;
pub use sync::{BarrierProxy, ConditionProxy, EventProxy, LockProxy, RLockProxy, SemaphoreProxy};
pub use values::{NamespaceProxy, ValueProxy};
