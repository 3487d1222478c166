//! Events and spans for operators: through `tracing` with the `tracing`
//! feature, nothing at all without it (the macros expand to no code, and
//! their arguments are not evaluated).
//!
//! Levels: `warn` for what an operator should look at (a refused
//! authentication, a worker that died, a retried or timed-out task), `info`
//! for lifecycle steps (a pool terminated, a worker replaced), `debug` for
//! the ordinary flow (a process started, a connection accepted, a task
//! run). Targets are the module paths (`mproc::pool::supervisor`, ...), so
//! `RUST_LOG=mproc=debug` selects them all.

/// A `debug` event (see the module).
macro_rules! debug_event {
    ($($t:tt)*) => {
        #[cfg(feature = "tracing")]
        {
            ::tracing::debug!($($t)*);
        }
    };
}

/// An `info` event (see the module).
macro_rules! info_event {
    ($($t:tt)*) => {
        #[cfg(feature = "tracing")]
        {
            ::tracing::info!($($t)*);
        }
    };
}

/// A `warn` event (see the module).
macro_rules! warn_event {
    ($($t:tt)*) => {
        #[cfg(feature = "tracing")]
        {
            ::tracing::warn!($($t)*);
        }
    };
}

/// A `debug` span entered until the end of the enclosing scope.
macro_rules! debug_scope {
    ($($t:tt)*) => {
        #[cfg(feature = "tracing")]
        let _entered = ::tracing::debug_span!($($t)*).entered();
    };
}

pub(crate) use {debug_event, debug_scope, info_event, warn_event};
