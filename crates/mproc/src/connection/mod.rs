//! Listeners and clients over addresses, as Python's
//! `multiprocessing.connection`: Unix paths, Linux abstract names and TCP,
//! with CPython's framing and authentication handshake.
//!
//! | file          | what                                                   |
//! |---------------|--------------------------------------------------------|
//! | `address.rs`  | `Address`: where to listen or connect                  |
//! | `listener.rs` | `Listener`: bind, accept                               |
//! | `acceptor.rs` | accepting in the background, handshakes concurrently   |
//! | `client.rs`   | `Client`: connect, authenticate                        |
//! | `conn.rs`     | `SocketConnection<T>`: framed messages on a socket     |
//! | `frame.rs`    | CPython's length-prefixed framing                      |
//! | `auth.rs`     | the challenge–response handshake (both dialects)       |
//! | `stream.rs`   | a Unix or TCP socket with deadlines                    |
//! | `fuzz.rs`     | entry points for fuzzing the decoders (not API)        |

mod acceptor;
mod address;
pub(crate) mod auth;
mod client;
mod conn;
pub(crate) mod frame;
pub(crate) mod fuzz;
mod listener;
pub(crate) mod stream;

pub use address::Address;
pub use client::Client;
pub use conn::SocketConnection;
pub(crate) use conn::{decode_plain, encode_plain};
pub use listener::{Listener, ListenerBuilder, DEFAULT_HANDSHAKE_TIMEOUT};
