//! A function and its arguments on the wire.
//!
//! The first frame a spawned child reads is a [`Header`] followed by the
//! encoded arguments. The header names the function and its monomorphised
//! trampoline by their offsets from an anchor in this executable, and
//! carries the executable's identity: a child running another build refuses
//! (`Error::BinaryMismatch`) rather than jump to an offset that means
//! something else in its code. It also says who the child is and who its
//! parent is (`crate::identity`), and carries the per-child [`Settings`]
//! the child applies to itself before the task runs.
//!
//! Layer: above `sys/`, `codec` and `identity`; below `start/`, which reads
//! the header in the bootstrap, and `process/`, which writes it.

use std::os::fd::OwnedFd;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::codec::{self, Frame};
use crate::error::{Error, Result};
use crate::identity::{self, ProcessInfo};
use crate::sys::fnref::{self, FnRef};
use crate::sys::image;

/// Bumped whenever the header's layout changes (2: [`Settings`] added; 3:
/// [`Settings::limits`] and [`Outcome::OutOfMemory`]).
pub(crate) const WIRE_VERSION: u32 = 3;

/// Frames larger than this are refused before allocation (garbage lengths).
pub(crate) const MAX_FRAME: u64 = 1 << 40;

/// What a child must know before it can run its task.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Header {
    pub(crate) version: u32,
    pub(crate) identity: Vec<u8>,
    pub(crate) func: i64,
    pub(crate) trampoline: i64,
    pub(crate) want_result: bool,
    pub(crate) me: ProcessInfo,
    pub(crate) parent: ProcessInfo,
    pub(crate) settings: Settings,
}

/// What a child applies to itself before its task runs, chosen per child
/// by its `Process` and carried in its task header (a forked child gets
/// them in memory). Applied in one place, `start::bootstrap::apply`.
///
/// A field added here changes the header's layout: bump [`WIRE_VERSION`]
/// with it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Settings {
    /// The child's resource limits (`crate::limits::apply`).
    pub(crate) limits: crate::Limits,
}

/// How a child's task ended, sent to the parent on the control socket.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Outcome {
    /// The task returned; the encoded value (empty unless it was wanted).
    Returned(Vec<u8>),
    /// The task panicked.
    Panicked { message: String, location: String },
    /// The child refused its first frame.
    Refused(String),
    /// The child runs another executable than the one the header names.
    Mismatch { expected: Vec<u8>, found: Vec<u8> },
    /// The task returned a value that could not be encoded.
    Encode(String),
    /// An allocation failed under the child's memory cap and it aborts:
    /// sent from its `SIGABRT` handler (`sys::rlimit::report_enomem_abort`),
    /// never decoded as a value.
    OutOfMemory,
}

/// Decodes `A` (the first frame's body from the given index), runs the
/// function, encodes `R`. Takes the body owned: a function reference names
/// only types without higher-ranked lifetimes (`FnPtr`).
pub(crate) type Trampoline = fn(i64, Vec<u8>, usize, Vec<OwnedFd>, bool) -> Result<Frame>;

fn trampoline<A: DeserializeOwned, R: Serialize>(
    func: i64,
    body: Vec<u8>,
    start: usize,
    fds: Vec<OwnedFd>,
    want_result: bool,
) -> Result<Frame> {
    // The function and its arguments come from the parent, which chose
    // what this child runs: what they name is vouched for. The function
    // itself runs outside that scope.
    let (f, args) = fnref::trusting_parent(|| {
        let f = FnRef::<fn(A) -> R>::checked(func)?;
        let args: A = codec::decode(&body[start..], fds)?;
        Ok::<_, Error>((f, args))
    })?;
    drop(body);
    let r = f.get()(args);
    if want_result {
        codec::encode(&r)
    } else {
        Ok(Frame::default())
    }
}

/// A task ready for the wire: function offsets and encoded arguments.
pub(crate) struct Wire {
    pub(crate) func: i64,
    pub(crate) trampoline: i64,
    pub(crate) args: Frame,
}

impl Wire {
    pub(crate) fn new<A: Serialize + DeserializeOwned, R: Serialize>(
        f: fn(A) -> R,
        args: &A,
    ) -> Result<Self> {
        let t: Trampoline = trampoline::<A, R>;
        Ok(Wire {
            func: FnRef::new(f).offset(),
            trampoline: FnRef::new(t).offset(),
            args: codec::encode(args)?,
        })
    }

    /// The first frame's body: header length, header, arguments.
    pub(crate) fn first_frame(
        &self,
        want_result: bool,
        me: ProcessInfo,
        settings: Settings,
    ) -> Result<Vec<u8>> {
        self.first_frame_claiming(image::identity().to_vec(), want_result, me, settings)
    }

    fn first_frame_claiming(
        &self,
        identity: Vec<u8>,
        want_result: bool,
        me: ProcessInfo,
        settings: Settings,
    ) -> Result<Vec<u8>> {
        let header = Header {
            version: WIRE_VERSION,
            identity,
            func: self.func,
            trampoline: self.trampoline,
            want_result,
            me,
            parent: identity::current_process(),
            settings,
        };
        let mut body = vec![0u8; 4];
        codec::encode_into(&header, &mut body)?;
        let hlen = (body.len() - 4) as u32;
        body[..4].copy_from_slice(&hlen.to_le_bytes());
        body.extend_from_slice(&self.args.bytes);
        Ok(body)
    }
}

/// A valid first frame, transport length prefix included, for a task that
/// does nothing and reports its `()`, claiming to come from the executable
/// `identity` (tests of the child's refusal of another build, joined
/// through `start_with_raw_first_frame`'s `JoinHandle<()>`).
#[doc(hidden)]
pub fn __first_frame_claiming(identity: Vec<u8>) -> Vec<u8> {
    fn nothing(_: ()) {}
    let wire = Wire::new(nothing, &()).expect("() always encodes");
    let me = identity::current_process();
    let body = wire
        .first_frame_claiming(identity, true, me, Settings::default())
        .expect("a header always encodes");
    // The transport's framing (`sys::fdpass`): an 8-byte length, the body.
    let mut frame = (body.len() as u64).to_le_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

/// Splits a first frame into its header and the index where its argument
/// bytes start, checking the version and the executable's identity.
pub(crate) fn parse_first_frame(body: &[u8]) -> std::result::Result<(Header, usize), Outcome> {
    let refuse = |m: String| Outcome::Refused(m);
    let hlen = body
        .get(..4)
        .map(|b| u32::from_le_bytes(b.try_into().unwrap()) as usize)
        .ok_or_else(|| refuse("first frame too short".into()))?;
    let header_bytes = body.get(4..4usize.saturating_add(hlen)).ok_or_else(|| {
        refuse(format!(
            "first frame declares a {hlen}-byte header it does not hold"
        ))
    })?;
    let header: Header = codec::decode(header_bytes, Vec::new())
        .map_err(|e| refuse(format!("bad task header: {e}")))?;
    if header.version != WIRE_VERSION {
        return Err(refuse(format!(
            "wire version {} (expected {WIRE_VERSION})",
            header.version
        )));
    }
    if header.identity != image::identity() {
        return Err(Outcome::Mismatch {
            expected: header.identity,
            found: image::identity().to_vec(),
        });
    }
    Ok((header, 4 + hlen))
}

/// Runs a checked task (`parse_first_frame` accepted `body`): the
/// trampoline at its offset, vouched for as the parent's choice.
pub(crate) fn run_wire(
    header: &Header,
    body: Vec<u8>,
    start: usize,
    fds: Vec<OwnedFd>,
) -> Result<Frame> {
    let t = fnref::trusting_parent(|| FnRef::<Trampoline>::checked(header.trampoline))?;
    t.get()(header.func, body, start, fds, header.want_result)
}

/// Hex form of an executable identity, for error messages.
pub(crate) fn hex(id: &[u8]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

impl Outcome {
    /// The parent's view of a refusal.
    pub(crate) fn into_error(self, pid: i32) -> Error {
        match self {
            Outcome::Mismatch { expected, found } => Error::BinaryMismatch {
                expected: hex(&expected),
                found: hex(&found),
            },
            Outcome::Refused(reason) => Error::Bootstrap { pid, reason },
            Outcome::Panicked { message, location } => Error::Panicked {
                pid,
                message,
                location,
            },
            Outcome::Encode(m) => Error::Encode(crate::error::CodecError(m.into())),
            Outcome::Returned(_) => Error::Protocol("unexpected result".into()),
            Outcome::OutOfMemory => Error::Protocol("unexpected memory report".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    //! The first frame's messages on the wire: round trips, and damaged or
    //! random bytes are decode errors, never panics.

    use super::*;
    use crate::codec::decode_plain;
    use crate::codec::testing::{bytes_of, garbage, refuses_damage, round_trip};

    fn info() -> ProcessInfo {
        ProcessInfo {
            name: "Process-1:2".into(),
            pid: 4242,
            identity: vec![1, 2],
            daemon: true,
        }
    }

    fn header() -> Header {
        Header {
            version: WIRE_VERSION,
            identity: vec![0xab; 32],
            func: -12345,
            trampoline: 678,
            want_result: true,
            me: info(),
            parent: ProcessInfo {
                name: "MainProcess".into(),
                pid: 1,
                identity: vec![],
                daemon: false,
            },
            settings: Settings::default(),
        }
    }

    fn outcomes() -> Vec<Outcome> {
        use Outcome;
        vec![
            Outcome::Returned(bytes_of(&(1u8, "r"))),
            Outcome::Panicked {
                message: "boom".into(),
                location: "src/x.rs:1:2".into(),
            },
            Outcome::Refused("no".into()),
            Outcome::Mismatch {
                expected: vec![1],
                found: vec![2],
            },
            Outcome::Encode("bad".into()),
        ]
    }

    #[test]
    fn task_messages_round_trip() {
        let h: Header = round_trip(&header());
        assert_eq!(
            (h.version, h.func, h.trampoline, h.want_result),
            (WIRE_VERSION, -12345, 678, true)
        );
        assert_eq!(
            (h.me, h.parent.pid, h.identity),
            (info(), 1, vec![0xab; 32])
        );
        for o in outcomes() {
            let back: Outcome = round_trip(&o);
            assert_eq!(format!("{back:?}"), format!("{o:?}"));
        }
    }

    #[test]
    fn damaged_messages_are_decode_errors() {
        refuses_damage::<Header>(&bytes_of(&header()));
        for outcome in outcomes() {
            refuses_damage::<Outcome>(&bytes_of(&outcome));
        }
        let e = decode_plain::<Outcome>(&bytes_of(&99u32)).unwrap_err();
        assert!(matches!(e, Error::Decode(_)), "{e}");
    }

    #[test]
    fn garbage_never_panics() {
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        for len in 0..300 {
            let bytes = garbage(&mut rng, len);
            let _ = decode_plain::<Header>(&bytes);
            let _ = decode_plain::<Outcome>(&bytes);
        }
    }
}
