//! The messages between the supervisor and a worker, framed by hand: the
//! chunk hand-off is the pool's hot path.
//!
//! | message        | layout                                                  |
//! |----------------|---------------------------------------------------------|
//! | jobs (→ worker)| `b'J'`, then per job: id u64, func i64, chunk fn i64, len u32, args |
//! | quit (→ worker)| `b'Q'`                                                  |
//! | ready (← worker)| `b'R'`: the initializer ran                            |
//! | reply (← worker)| body, then resident bytes u64, id u64, [`Status`] u8 (`| RETIRING`) |
//!
//! The resident bytes are the worker's after the chunk, 0 when it does not
//! measure them; [`RETIRING`] in the status byte says the worker passed its
//! memory threshold with this chunk and runs no more (the chunks it holds
//! never started). All integers little-endian. A reply's header comes last so that the
//! worker appends it to the body it encoded and the supervisor cuts it off,
//! neither copying the body.

use std::ops::Range;

/// A chunk as it travels: which functions (offsets from this executable's
/// anchor, checked by the worker), and the encoded `Vec<A>`.
pub(crate) struct JobWire<'a> {
    pub(crate) id: u64,
    pub(crate) func: i64,
    pub(crate) chunk_fn: i64,
    pub(crate) args: &'a [u8],
}

/// A job as the worker parses it: its arguments as a range of the message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct JobAt {
    pub(crate) id: u64,
    pub(crate) func: i64,
    pub(crate) chunk_fn: i64,
    pub(crate) args: Range<usize>,
}

/// How a chunk ended, in a reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Status {
    /// Every item returned; the body is an encoded `Vec<R>`.
    AllOk = 0,
    /// Some item failed (panic, result that does not encode); the body is
    /// an encoded `Vec<ItemOut<R>>`.
    SomeFailed = 1,
    /// The arguments did not decode; the body is the reason, UTF-8.
    BadArgs = 2,
}

pub(crate) const JOBS: u8 = b'J';
pub(crate) const QUIT: u8 = b'Q';
pub(crate) const READY: u8 = b'R';

/// The bit of a reply's status byte that says the worker retires.
pub(crate) const RETIRING: u8 = 0x80;

/// What a reply's trailer says besides its id and status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Tail {
    /// The worker's resident memory after the chunk, if it measures it.
    pub(crate) rss: Option<u64>,
    /// The worker passed its memory threshold: it runs nothing more.
    pub(crate) retiring: bool,
}

/// The bytes of a reply's trailer.
const TAIL: usize = 17;

/// The bytes of a job in a jobs message besides its arguments: id, func,
/// chunk fn, len.
pub(crate) const JOB_HEAD: usize = 28;

/// Appends one job to a jobs message (which starts with [`JOBS`]).
pub(crate) fn put_job(buf: &mut Vec<u8>, job: &JobWire<'_>) {
    buf.extend_from_slice(&job.id.to_le_bytes());
    buf.extend_from_slice(&job.func.to_le_bytes());
    buf.extend_from_slice(&job.chunk_fn.to_le_bytes());
    buf.extend_from_slice(&(job.args.len() as u32).to_le_bytes());
    buf.extend_from_slice(job.args);
}

/// The jobs of a jobs message (tag byte included), their arguments as
/// ranges of `msg`; `None` if malformed.
pub(crate) fn jobs(msg: &[u8]) -> Option<Vec<JobAt>> {
    let mut out = Vec::new();
    let mut at = 1;
    while at < msg.len() {
        let body = &msg[at..];
        let id = u64::from_le_bytes(body.get(..8)?.try_into().ok()?);
        let func = i64::from_le_bytes(body.get(8..16)?.try_into().ok()?);
        let chunk_fn = i64::from_le_bytes(body.get(16..24)?.try_into().ok()?);
        let len = u32::from_le_bytes(body.get(24..JOB_HEAD)?.try_into().ok()?) as usize;
        body.get(JOB_HEAD..JOB_HEAD.checked_add(len)?)?;
        out.push(JobAt {
            id,
            func,
            chunk_fn,
            args: at + JOB_HEAD..at + JOB_HEAD + len,
        });
        at += JOB_HEAD + len;
    }
    Some(out)
}

/// Makes `body` a reply: appends the trailer.
pub(crate) fn seal_reply(body: &mut Vec<u8>, id: u64, status: Status, tail: Tail) {
    body.extend_from_slice(&tail.rss.unwrap_or(0).to_le_bytes());
    body.extend_from_slice(&id.to_le_bytes());
    body.push(status as u8 | if tail.retiring { RETIRING } else { 0 });
}

/// A reply's id, status, trailer and body; `None` if malformed.
pub(crate) fn parse_reply(mut msg: Vec<u8>) -> Option<(u64, Status, Tail, Vec<u8>)> {
    let at = msg.len().checked_sub(TAIL)?;
    let rss = u64::from_le_bytes(msg[at..at + 8].try_into().ok()?);
    let id = u64::from_le_bytes(msg[at + 8..at + 16].try_into().ok()?);
    let byte = msg[at + 16];
    let status = match byte & !RETIRING {
        0 => Status::AllOk,
        1 => Status::SomeFailed,
        2 => Status::BadArgs,
        _ => return None,
    };
    let tail = Tail {
        rss: (rss != 0).then_some(rss),
        retiring: byte & RETIRING != 0,
    };
    msg.truncate(at);
    Some((id, status, tail, msg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_round_trip() {
        let mut buf = vec![JOBS];
        for (id, args) in [(7u64, &b"abc"[..]), (8, &b""[..])] {
            let job = JobWire {
                id,
                func: -5,
                chunk_fn: 9,
                args,
            };
            put_job(&mut buf, &job);
        }
        let jobs = jobs(&buf).unwrap();
        assert_eq!(jobs.len(), 2);
        assert_eq!(
            (jobs[0].id, jobs[0].func, &buf[jobs[0].args.clone()]),
            (7, -5, &b"abc"[..])
        );
        assert_eq!(
            (jobs[1].id, jobs[1].chunk_fn, &buf[jobs[1].args.clone()]),
            (8, 9, &b""[..])
        );
        assert!(super::jobs(&buf[..5]).is_none());
    }

    #[test]
    fn reply_round_trip() {
        let mut r = b"xy".to_vec();
        seal_reply(&mut r, 3, Status::SomeFailed, Tail::default());
        assert_eq!(
            parse_reply(r),
            Some((3, Status::SomeFailed, Tail::default(), b"xy".to_vec()))
        );
        let mut r = Vec::new();
        let tail = Tail {
            rss: Some(5 << 20),
            retiring: true,
        };
        seal_reply(&mut r, 4, Status::AllOk, tail);
        assert_eq!(parse_reply(r), Some((4, Status::AllOk, tail, Vec::new())));
        assert_eq!(parse_reply(vec![0; 9]), None);
        assert_eq!(
            parse_reply(vec![0; TAIL]),
            Some((0, Status::AllOk, Tail::default(), Vec::new()))
        );
        assert_eq!(parse_reply(vec![7; TAIL]), None);
    }
}
