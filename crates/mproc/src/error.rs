//! The crate's error type.

use std::io;

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in mproc.
///
/// Marked `#[non_exhaustive]`: new failure modes are added without breaking
/// your `match`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system call failed.
    #[error("{context}: {source}")]
    Io {
        /// What mproc was doing.
        context: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A value could not be serialised.
    #[error("cannot encode value: {0}")]
    Encode(#[source] CodecError),
    /// Bytes received could not be decoded as the expected type.
    #[error("cannot decode value: {0}")]
    Decode(#[source] CodecError),
    /// The child runs a different executable than the parent, so a function
    /// offset cannot be trusted; the child refused to run it.
    #[error("binary mismatch: parent runs build {expected}, child runs build {found}")]
    BinaryMismatch {
        /// The parent's executable identity (hex).
        expected: String,
        /// The child's executable identity (hex).
        found: String,
    },
    /// The child could not read or accept its first frame.
    #[error("child {pid} failed to start: {reason}")]
    Bootstrap {
        /// The child's pid.
        pid: i32,
        /// What went wrong, as the child or the parent saw it.
        reason: String,
    },
    /// The child panicked.
    #[error("child {pid} panicked at {location}: {message}")]
    Panicked {
        /// The child's pid.
        pid: i32,
        /// The panic message.
        message: String,
        /// `file:line:column` of the panic.
        location: String,
    },
    /// The child exited with a non-zero status before returning a value.
    #[error("child {pid} exited with status {code}")]
    Exited {
        /// The child's pid.
        pid: i32,
        /// The exit status.
        code: i32,
    },
    /// The child was killed by a signal.
    #[error("child {pid} was killed by signal {signal}")]
    Signaled {
        /// The child's pid.
        pid: i32,
        /// The signal number.
        signal: i32,
    },
    /// The call is not valid in the object's current state (starting a
    /// process twice, joining one never started, using a closed handle...).
    #[error("{0}")]
    InvalidState(&'static str),
    /// A bad argument (an unknown start method name...).
    #[error("{0}")]
    InvalidArgument(String),
    /// A timed wait ran out of time.
    #[error("timed out")]
    Timeout,
    /// Nothing to receive right now (`try_recv`).
    #[error("nothing to receive")]
    Empty,
    /// The other end is closed: no more messages will arrive, or a message
    /// sent now would never be read.
    #[error("the other end is closed")]
    Disconnected,
    /// The message did not fit in the buffer given to `recv_bytes_into`; it
    /// is returned whole.
    #[error("buffer too short: the message has {} bytes", .message.len())]
    BufferTooShort {
        /// The message, which has been consumed from the connection.
        message: Vec<u8>,
    },
    /// A lock was acquired from a holder that died holding it (see
    /// [`LockError`](crate::LockError) to keep the lock instead).
    #[error("the previous holder of the lock died holding it")]
    OwnerDied,
    /// A named shared-memory segment already exists
    /// ([`SharedMemory::create`](crate::SharedMemory::create)).
    #[error("shared memory '{name}' already exists")]
    AlreadyExists {
        /// The name asked for.
        name: String,
    },
    /// No shared-memory segment has this name
    /// ([`SharedMemory::open`](crate::SharedMemory::open),
    /// [`unlink`](crate::SharedMemory::unlink)).
    #[error("shared memory '{name}' not found")]
    NotFound {
        /// The name asked for.
        name: String,
    },
    /// An index past the end of an
    /// [`Array`](crate::Array), a [`RawArray`](crate::RawArray) or a
    /// [`SharedMemory`](crate::SharedMemory) segment.
    #[error("index {index} out of range for length {len}")]
    OutOfRange {
        /// The first index asked for that is past the end (for a range
        /// that starts inside and runs out: `len`).
        index: usize,
        /// The length of the object.
        len: usize,
    },
    /// A [`Barrier`](crate::Barrier) is broken: a party timed out, the
    /// barrier was aborted or reset while parties waited, or its action
    /// panicked. Python's `BrokenBarrierError`.
    #[error("the barrier is broken")]
    BrokenBarrier,
    /// A queue is full (`try_put` on a bounded [`Queue`](crate::Queue)).
    #[error("the queue is full")]
    Full,
    /// A queue was shut down
    /// ([`Queue::shutdown`](crate::Queue::shutdown)): no more puts, and no
    /// more gets once it is empty. Python's `ShutDown`.
    #[error("the queue is shut down")]
    ShutDown,
    /// A pool task ran past the pool's task timeout; its worker was
    /// terminated and replaced.
    #[error("task timed out after {after:?}; worker {pid} was terminated")]
    TaskTimeout {
        /// The worker that ran it.
        pid: i32,
        /// The timeout.
        after: std::time::Duration,
    },
    /// The pool was terminated (or dropped) before the task ran.
    #[error("the pool was terminated")]
    PoolTerminated,
    /// The pool is broken: a worker died under the
    /// [`break_on_worker_death`](crate::PoolBuilder::break_on_worker_death)
    /// policy, or a replacement worker could not start. Python's
    /// `BrokenProcessPool`.
    #[error("the pool is broken: {reason}")]
    PoolBroken {
        /// What broke it.
        reason: String,
    },
    /// The peer broke the protocol (bad framing, out-of-range indices).
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The authentication handshake of a [`Listener`](crate::Listener) or
    /// [`Client`](crate::Client) failed; the kind says which side saw what.
    /// Python's `AuthenticationError`.
    #[error("authentication failed: {0}")]
    Authentication(AuthError),
    /// An operation failed in a [`Manager`](crate::Manager)'s server (as
    /// Python re-raises the referent's exception in the caller).
    #[error("manager server: {0}")]
    Remote(RemoteError),
    /// The [`Manager`](crate::Manager)'s server is gone (shut down, killed)
    /// or unreachable; proxy calls fail with this instead of waiting.
    #[error("the manager's server is gone")]
    ManagerGone,
    /// A function offset received from another process names code this
    /// process does not vouch for (it neither made that function reference
    /// itself nor received it from its parent), or not as this type: it is
    /// refused, never called. A peer (a child's result, a `Connection`, a
    /// `Queue`, a manager client) cannot make this process run code of its
    /// choice.
    #[error("refused to call code at offset {offset:#x} as `{signature}`: this process does not vouch for it")]
    UntrustedCode {
        /// The offset from this executable's anchor, as received.
        offset: i64,
        /// The type it was to be called as.
        signature: String,
    },
    /// Not enough memory to create a shared object: `/dev/shm` is full
    /// (a named [`SharedMemory`](crate::SharedMemory); Docker gives 64 MiB),
    /// a memory limit (a cgroup's) leaves no room for an anonymous one, or
    /// the size is over the process's file size limit (`ulimit -f`).
    /// Shared memory is reserved whole when created, so this comes from the
    /// constructor rather than as a `SIGBUS` at a later write; nothing is
    /// left behind. Objects that grow (a queue's or a pipe's ring) reserve
    /// each part before writing it: their `put`/`send` returns this with
    /// nothing written, and may succeed once memory is freed.
    #[error("no space for {requested} bytes of {what}: {source}")]
    NoSpace {
        /// What was being created.
        what: String,
        /// The bytes asked for.
        requested: usize,
        /// The OS error (`ENOSPC`: the file system is full; `ENOMEM`: a
        /// memory limit; `EFBIG`: the file size limit).
        #[source]
        source: io::Error,
    },
    /// A pool task failed on another host's worker (an MPI rank): where,
    /// and the failure as a local pool would report it (`Panicked`,
    /// `Signaled`, `Exited`, `TaskTimeout`...).
    #[error("on rank {rank} ({host}): {error}")]
    OnRank {
        /// The MPI rank whose worker ran the task.
        rank: usize,
        /// That rank's host name.
        host: String,
        /// What happened there.
        #[source]
        error: Box<Error>,
    },
    /// An awaitable call (feature `tokio`) was polled outside a tokio
    /// runtime: create its future inside one (with I/O enabled).
    #[error("no tokio runtime: await mproc's futures inside a tokio runtime with I/O enabled")]
    NoAsyncRuntime,
    /// The child (or the pool worker running the task) was ended by one of
    /// its resource [`Limits`](crate::Limits): an allocation failed under
    /// its memory cap (Rust's allocation-failure abort), or it used up its
    /// CPU time (`SIGXCPU`, then `SIGKILL`). An abort, a crash or a kill
    /// for any other reason is [`Error::Signaled`], even with limits set.
    #[error("child {pid} exceeded its {limit} limit ({})", match limit {
        crate::Limit::CpuTime => format!("{cap} s"),
        _ => format!("{cap} bytes"),
    })]
    LimitExceeded {
        /// The child's pid.
        pid: i32,
        /// Which limit.
        limit: crate::Limit,
        /// The limit's value: bytes for [`Limit::Memory`](crate::Limit::Memory),
        /// seconds for [`Limit::CpuTime`](crate::Limit::CpuTime).
        cap: u64,
        /// The exit code it ended with (`-N`: signal N).
        code: i32,
    },
}

impl From<crate::sys::fnref::Untrusted> for Error {
    fn from(u: crate::sys::fnref::Untrusted) -> Error {
        Error::UntrustedCode {
            offset: u.offset,
            signature: u.signature.to_string(),
        }
    }
}

/// An error raised by a [`Manager`](crate::Manager)'s server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum RemoteError {
    /// A list index past the end, or a pop from an empty list (Python's
    /// `IndexError`).
    #[error("index {index} out of range for length {len}")]
    IndexOutOfRange {
        /// The index asked for.
        index: i64,
        /// The list's length.
        len: u64,
    },
    /// A manager lock released while nobody holds it.
    #[error("release of an unlocked lock")]
    NotLocked,
    /// An `RLock` or `Condition` used by a proxy that does not hold it
    /// (each proxy handle is an owner; a clone is another).
    #[error("the lock is not held by this proxy")]
    NotOwner,
    /// The object does not exist on this server.
    #[error("no object #{0} on the server")]
    NoSuchObject(u64),
    /// The object exists but is of another kind (a name used for a dict
    /// and then asked for as a list...).
    #[error("object {0} is of another kind")]
    WrongKind(String),
    /// No type is registered under this name.
    #[error("no type registered as {0:?}")]
    UnknownType(String),
    /// A registered type's method failed, or its request did not decode.
    #[error("{0}")]
    Failed(String),
    /// `index` found no element equal to the value in the range searched
    /// (Python's `ValueError: x is not in list`).
    #[error("the value is not in the list")]
    NotInList,
    /// `popitem` on an empty dict (Python's `KeyError: 'popitem(): dictionary
    /// is empty'`).
    #[error("popitem(): the dict is empty")]
    EmptyDict,
}

/// Why an authentication handshake failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// This side checked the peer's digest and it was wrong: the peer holds
    /// another key.
    #[error("digest received was wrong")]
    DigestReceivedWrong,
    /// The peer refused this side's digest: the peer holds another key.
    #[error("digest sent was rejected")]
    DigestSentRejected,
    /// The peer did not speak the handshake (garbage, an oversized or
    /// truncated message, an unknown digest).
    #[error("bad handshake: {0}")]
    Malformed(String),
    /// The listener asked for a key (it sent a challenge) and this client
    /// has none (or an empty one).
    #[error("the listener requires an authkey and none was given")]
    KeyRequired,
    /// The handshake did not finish in time: the peer accepted the
    /// connection but never completed (or never started) the handshake.
    #[error("the handshake timed out")]
    HandshakeTimeout,
}

impl Error {
    pub(crate) fn io(context: &'static str) -> impl FnOnce(io::Error) -> Error {
        move |source| Error::Io { context, source }
    }

    /// As [`io`](Error::io), for the creation of `requested` bytes of shared
    /// memory (`what`): lack of room (an error of kind
    /// [`StorageFull`](io::ErrorKind::StorageFull), as
    /// [`reserve`](crate::sys::shm::reserve) makes, or
    /// [`FileTooLarge`](io::ErrorKind::FileTooLarge)) is [`Error::NoSpace`].
    pub(crate) fn shm_create<'a>(
        context: &'static str,
        what: &'a str,
        requested: usize,
    ) -> impl FnOnce(io::Error) -> Error + 'a {
        move |source| {
            use io::ErrorKind::{FileTooLarge, StorageFull};
            if !matches!(source.kind(), StorageFull | FileTooLarge) {
                return Error::Io { context, source };
            }
            // The OS error `reserve` wrapped, or the error itself.
            let wrapped = source.get_ref().and_then(|e| e.downcast_ref::<io::Error>());
            let source = match wrapped.and_then(io::Error::raw_os_error) {
                Some(code) => io::Error::from_raw_os_error(code),
                None => source,
            };
            Error::NoSpace {
                what: what.into(),
                requested,
                source,
            }
        }
    }
}

/// The cause of an encoding or decoding failure.
#[derive(Debug)]
pub struct CodecError(pub(crate) Box<dyn std::error::Error + Send + Sync>);

impl std::fmt::Display for CodecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for CodecError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}
