//! What a child runs, and how each start method gets it there.

use std::os::fd::{AsFd, OwnedFd};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::ProcessInfo;
use crate::codec::{self, Frame};
use crate::error::{Error, Result};
use crate::start::{self, StartMethod, Started};
use crate::sys::fdpass;
use crate::task::Wire;

/// A task not yet started. Consumed by `launch`: the arguments move to the
/// child and the parent's copy is dropped (so a pipe end given to a child is
/// closed in the parent).
pub(crate) trait Payload: Send {
    fn launch(
        self: Box<Self>,
        method: StartMethod,
        me: ProcessInfo,
        want_result: bool,
    ) -> Result<Started>;
}

/// A plain function and its arguments: runs under every start method.
pub(crate) struct FnTask<A, R> {
    pub(crate) f: fn(A) -> R,
    pub(crate) args: A,
}

impl<A, R> Payload for FnTask<A, R>
where
    A: Serialize + DeserializeOwned + Send + 'static,
    R: Serialize + DeserializeOwned + Send + 'static,
{
    fn launch(
        self: Box<Self>,
        method: StartMethod,
        me: ProcessInfo,
        want_result: bool,
    ) -> Result<Started> {
        let FnTask { f, args } = *self;
        match method {
            StartMethod::Fork => fork(me, want_result, move || f(args)),
            StartMethod::Spawn | StartMethod::ForkServer => {
                let wire = Wire::new(f, &args)?;
                drop(args);
                send_first_frame(method, &wire, want_result, me)
            }
        }
    }
}

/// Any closure: runs under `Fork` only.
pub(crate) struct ClosureTask<F>(pub(crate) F);

impl<F, R> Payload for ClosureTask<F>
where
    F: FnOnce() -> R + Send + 'static,
    R: Serialize + 'static,
{
    fn launch(
        self: Box<Self>,
        method: StartMethod,
        me: ProcessInfo,
        want_result: bool,
    ) -> Result<Started> {
        if method != StartMethod::Fork {
            return Err(Error::InvalidState(
                "a closure can only run in a child started by fork",
            ));
        }
        fork(me, want_result, self.0)
    }
}

fn fork<R: Serialize>(
    me: ProcessInfo,
    want_result: bool,
    f: impl FnOnce() -> R + Send + 'static,
) -> Result<Started> {
    start::start_fork(
        me,
        Box::new(move |ctl: OwnedFd| {
            start::run_and_exit(ctl, want_result, move || {
                let r = f();
                if want_result {
                    codec::encode(&r)
                } else {
                    Ok(Frame::default())
                }
            })
        }),
    )
}

fn send_first_frame(
    method: StartMethod,
    wire: &Wire,
    want_result: bool,
    me: ProcessInfo,
) -> Result<Started> {
    let body = wire.first_frame(want_result, me)?;
    let started = match method {
        StartMethod::Spawn => start::start_spawn()?,
        _ => start::start_forkserver()?,
    };
    fdpass::send_frame(started.ctl.as_fd(), &body, &wire.args.borrowed_fds())
        .map_err(Error::io("cannot send the task to the child"))?;
    Ok(started)
}

/// Raw bytes in place of the first frame, followed by end of file (tests of
/// a child's refusal of garbage and of truncated frames).
pub(crate) struct RawFrame(pub(crate) Vec<u8>);

impl Payload for RawFrame {
    fn launch(
        self: Box<Self>,
        method: StartMethod,
        _me: ProcessInfo,
        _want: bool,
    ) -> Result<Started> {
        let started = match method {
            StartMethod::Spawn => start::start_spawn()?,
            StartMethod::ForkServer => start::start_forkserver()?,
            StartMethod::Fork => {
                return Err(Error::InvalidState("a forked child reads no first frame"))
            }
        };
        fdpass::send_all(started.ctl.as_fd(), &self.0)
            .map_err(Error::io("cannot send the task to the child"))?;
        rustix::net::shutdown(&started.ctl, rustix::net::Shutdown::Write)
            .map_err(|e| Error::io("shutdown failed")(e.into()))?;
        Ok(started)
    }
}
