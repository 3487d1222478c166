//! What a child runs: the tasks a [`Process`](super::Process) carries until
//! it starts, each as the start methods take it ([`start::Payload`]).

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec::{self, Frame};
use crate::error::{Error, Result};
use crate::identity::ProcessInfo;
use crate::start::{FirstFrame, ForkedBody, Payload, Settings};
use crate::task::Wire;

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
    fn forked(self: Box<Self>, want_result: bool) -> Result<ForkedBody> {
        let FnTask { f, args } = *self;
        Ok(encoding(want_result, move || f(args)))
    }

    fn first_frame(
        self: Box<Self>,
        me: ProcessInfo,
        settings: Settings,
        want_result: bool,
    ) -> Result<FirstFrame> {
        let FnTask { f, args } = *self;
        let wire = Wire::new(f, &args)?;
        drop(args);
        let body = wire.first_frame(want_result, me, settings)?;
        Ok(FirstFrame::Task {
            body,
            args: wire.args,
        })
    }
}

/// Any closure: runs under `Fork` only.
pub(crate) struct ClosureTask<F>(pub(crate) F);

impl<F, R> Payload for ClosureTask<F>
where
    F: FnOnce() -> R + Send + 'static,
    R: Serialize + 'static,
{
    fn forked(self: Box<Self>, want_result: bool) -> Result<ForkedBody> {
        Ok(encoding(want_result, self.0))
    }

    fn first_frame(
        self: Box<Self>,
        _me: ProcessInfo,
        _settings: Settings,
        _want: bool,
    ) -> Result<FirstFrame> {
        Err(Error::InvalidState(
            "a closure can only run in a child started by fork",
        ))
    }
}

/// `f`, its value encoded when the parent wants it.
fn encoding<R: Serialize>(want_result: bool, f: impl FnOnce() -> R + Send + 'static) -> ForkedBody {
    Box::new(move || {
        let r = f();
        if want_result {
            codec::encode(&r)
        } else {
            Ok(Frame::default())
        }
    })
}

/// Raw bytes in place of the first frame, followed by end of file (tests of
/// a child's refusal of garbage and of truncated frames).
pub(crate) struct RawFrame(pub(crate) Vec<u8>);

impl Payload for RawFrame {
    fn forked(self: Box<Self>, _want: bool) -> Result<ForkedBody> {
        Err(Error::InvalidState("a forked child reads no first frame"))
    }

    fn first_frame(
        self: Box<Self>,
        _me: ProcessInfo,
        _settings: Settings,
        _want: bool,
    ) -> Result<FirstFrame> {
        Ok(FirstFrame::Raw(self.0))
    }
}
