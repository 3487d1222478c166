//! One end of a pipe, untyped: messages of bytes (plus descriptors) in and
//! out through the rings of a shared region, with the socket beside them.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::Instant;

use super::layout::Shared;
use super::record::{Record, HEADER};
use super::ring::{Peer, Ring, Waited};
use super::side::{self, Inbox};
use super::sink::{Dst, Message, Sink};
#[cfg(feature = "tokio")]
use crate::aio::Attempt;
use crate::error::{Error, Result};
use crate::observe::debug_event;
use crate::sys::fdpass;
use crate::sys::futex::{TurnGuard, TurnLock};
use crate::task::MAX_FRAME;

/// The largest encoding buffer an end keeps between messages: a value
/// sent or received by [`send_value`](End::send_value) or
/// [`recv_with`](End::recv_with) goes through a buffer reused from one
/// message to the next (no allocation per message); one that grew past
/// this is given back to the allocator after its message.
const KEEP: usize = 64 << 10;

/// What a sender remembers between calls.
struct Tx {
    /// `closes[peer]` when last looked at.
    closes_seen: u32,
    /// The peer's socket hung up (for good).
    peer_gone: bool,
    /// The bytes of the ring, from its start, this process has reserved.
    reserved: u32,
    /// The ring's tail as this sender last published it, and `head + cap`
    /// for a head it saw then: while the tail is still `tail`, bytes up to
    /// `limit` are free without a look at `head` (the reader's line, which
    /// another CPU wrote: a cache miss per message otherwise). Both are
    /// hints; `head` only grows, so space once free stays free.
    tail: u32,
    limit: u32,
    /// The reused buffer of [`send_value`](End::send_value): a record's
    /// header, then the value's encoding.
    buf: Vec<u8>,
}

/// What a receiver remembers between calls.
pub(super) struct Rx {
    inbox: Inbox,
    /// `closes[peer]` when last looked at.
    closes_seen: u32,
    /// The peer's socket hung up (for good): look before waiting.
    peer_gone: bool,
    /// The ring's tail when last loaded: bytes from `head` up to it are
    /// published, so a reader behind it reads on without loading `tail`
    /// (the writer's line). A hint: `tail` only grows.
    avail: u32,
    /// The reused buffer of [`recv_with`](End::recv_with).
    buf: Vec<u8>,
}

impl Rx {
    /// Whether a wait should look at the peer first.
    fn look_first(&mut self, end: &End) -> bool {
        end.peer_closed_since(&mut self.closes_seen) || self.peer_gone
    }

    /// Remembers a hang-up seen by a wait.
    fn note<T>(&mut self, r: Result<T>) -> Result<T> {
        if !self.peer_gone && matches!(r, Err(Error::Disconnected)) {
            self.peer_gone = true;
            peer_gone_seen("recv");
        }
        r
    }
}

/// One end of a pipe.
pub(super) struct End {
    /// `None` only inside `drop`.
    sock: Option<OwnedFd>,
    shared: Arc<Shared>,
    /// 0 or 1: reads ring `id`, writes ring `1 - id`.
    id: usize,
    rx: Option<TurnLock<Rx>>,
    tx: Option<TurnLock<Tx>>,
    /// The wakers of this process's receiving (0) and sending (1) futures
    /// asleep on the socket: the wake bytes of both directions come on the
    /// one socket, so a future that drains bytes wakes the other, whose
    /// byte it may have taken before the reactor saw it.
    /// (Boxed: a connection stays small.)
    #[cfg(feature = "tokio")]
    sides: Box<Sides>,
}

/// The futures asleep on an end's socket, per side (see `End::sides`).
#[cfg(feature = "tokio")]
#[derive(Default)]
struct Sides {
    wakers: std::sync::Mutex<[Option<std::task::Waker>; 2]>,
    /// How many times each side's future was woken by the other's drain:
    /// such a future looks again without waiting for the reactor (which
    /// saw no byte for it).
    kicks: [std::sync::atomic::AtomicU32; 2],
}

impl End {
    /// An end on `sock`; its rings must exist in `shared`.
    pub(super) fn new(
        sock: OwnedFd,
        shared: Arc<Shared>,
        id: usize,
        readable: bool,
        writable: bool,
    ) -> Result<End, String> {
        let has = |r: usize| r < shared.rings();
        if id > 1 || (readable && !has(id)) || (writable && !has(1 - id)) {
            return Err(format!("pipe end {id} has no such ring"));
        }
        let closes_seen = shared.closes(1 - id).load(SeqCst);
        let tx = Tx {
            closes_seen,
            peer_gone: false,
            reserved: 0,
            tail: 0,
            limit: 0,
            buf: Vec::new(),
        };
        let rx = Rx {
            inbox: Inbox::default(),
            closes_seen,
            peer_gone: false,
            avail: 0,
            buf: Vec::new(),
        };
        Ok(End {
            sock: Some(sock),
            id,
            rx: readable.then(|| TurnLock::new(rx)),
            tx: writable.then(|| TurnLock::new(tx)),
            shared,
            #[cfg(feature = "tokio")]
            sides: Default::default(),
        })
    }

    pub(super) fn sock(&self) -> BorrowedFd<'_> {
        self.sock.as_ref().expect("open until dropped").as_fd()
    }

    /// The memfd holding the rings.
    pub(super) fn region_fd(&self) -> BorrowedFd<'_> {
        self.shared.region().as_fd()
    }

    /// 0 or 1.
    pub(super) fn id(&self) -> usize {
        self.id
    }

    /// The region (for tests that play a broken peer).
    #[cfg(test)]
    pub(super) fn shared(&self) -> &Shared {
        &self.shared
    }

    fn read_ring(&self) -> Ring<'_> {
        self.shared.ring(self.id)
    }

    fn write_ring(&self) -> Ring<'_> {
        self.shared.ring(1 - self.id)
    }

    fn peer_gone(&self) -> bool {
        fdpass::peer_hung_up(self.sock())
    }

    /// Whether a copy of the peer closed since `seen` (which is updated).
    fn peer_closed_since(&self, seen: &mut u32) -> bool {
        let now = self.shared.closes(1 - self.id).load(SeqCst);
        std::mem::replace(seen, now) != now
    }

    /// How a wait learns that the peer is gone.
    fn peer(&self, look_first: bool) -> Peer<impl Fn() -> bool + '_> {
        Peer {
            gone: || self.peer_gone(),
            look_first,
        }
    }

    /// Sends one message: `bytes`, with `fds` beside it. The bytes go
    /// straight from `bytes` into the ring (one copy).
    pub(super) fn send(&self, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> Result<()> {
        let mut tx = lock(self.tx.as_ref())?;
        self.send_locked(&mut tx, &mut [], bytes, fds)
    }

    /// Sends one message that `encode` appends to an empty buffer (and
    /// whose descriptors it returns). The buffer is this end's own, reused
    /// from one message to the next: no allocation per message, and a small
    /// message goes into the ring in one copy with its header.
    pub(super) fn send_value(
        &self,
        encode: impl FnOnce(&mut Vec<u8>) -> Result<Vec<OwnedFd>>,
    ) -> Result<()> {
        let mut tx = lock(self.tx.as_ref())?;
        self.send_value_locked(&mut tx, encode)
    }

    fn send_value_locked(
        &self,
        tx: &mut Tx,
        encode: impl FnOnce(&mut Vec<u8>) -> Result<Vec<OwnedFd>>,
    ) -> Result<()> {
        let mut buf = std::mem::take(&mut tx.buf);
        buf.clear();
        buf.extend_from_slice(&[0; HEADER as usize]);
        let r = encode(&mut buf).and_then(|fds| {
            let fds = fdpass::borrow_all(&fds);
            self.send_locked(tx, &mut buf, &[], &fds)
        });
        if buf.capacity() <= KEEP {
            tx.buf = buf;
        }
        r
    }

    /// Sends the message `pre[HEADER..] ++ bytes`; `pre` is empty or
    /// starts with room for the header, which is written there.
    fn send_locked(
        &self,
        tx: &mut Tx,
        pre: &mut [u8],
        bytes: &[u8],
        fds: &[BorrowedFd<'_>],
    ) -> Result<()> {
        let len = (pre.len() + bytes.len()).saturating_sub(pre.len().min(HEADER as usize));
        if len as u64 > MAX_FRAME {
            return Err(Error::InvalidArgument(format!(
                "a message of {len} bytes is over the limit of {MAX_FRAME}"
            )));
        }
        self.check_peer(tx)?;
        let ring = self.write_ring();
        self.reserve(tx, &ring, len)?;
        if !fds.is_empty() {
            side::send_fds(self.sock(), fds)?;
        }
        let header = Record {
            len: len as u64,
            nfds: fds.len() as u32,
        }
        .encode();
        if let Some(room) = pre.get_mut(..HEADER as usize) {
            room.copy_from_slice(&header);
        }
        let r = self.write_record(tx, &ring, &header, pre, bytes);
        let gone = matches!(r, Err(Error::Disconnected));
        if gone && !tx.peer_gone {
            peer_gone_seen("send");
        }
        tx.peer_gone = gone;
        r
    }

    /// Reserves the pages of the ring a record of `len` bytes will write
    /// (from its tail) that this process has not reserved yet, so that no
    /// write into the ring can fault for lack of memory: [`Error::NoSpace`]
    /// before anything is sent. A ring is reserved from its start as its
    /// writers first reach each part of it (all of it once a record wraps),
    /// so a pipe that carries small messages holds a few pages, not its
    /// whole rings, and creating one costs no more than before.
    fn reserve(&self, tx: &mut Tx, ring: &Ring<'_>, len: usize) -> Result<()> {
        let cap = self.shared.cap();
        if tx.reserved >= cap {
            return Ok(());
        }
        const PAGE: u32 = 4096;
        let end = (ring.tail() & (cap - 1)) as u64 + HEADER as u64 + len as u64;
        let want = match u32::try_from(end) {
            // Whole pages, at least twice as many as before: a few calls
            // in all, and at most twice the pages written.
            Ok(end) if end < cap => end.next_multiple_of(PAGE).max(2 * tx.reserved).min(cap),
            _ => cap,
        };
        if want > tx.reserved {
            self.shared.reserve_ring(1 - self.id, tx.reserved, want)?;
            tx.reserved = want;
        }
        Ok(())
    }

    /// `Disconnected` if a copy of the peer closed and it was the last.
    fn check_peer(&self, tx: &mut Tx) -> Result<()> {
        if self.peer_closed_since(&mut tx.closes_seen) {
            let gone = self.peer_gone();
            if gone && !tx.peer_gone {
                peer_gone_seen("send");
            }
            tx.peer_gone = gone;
        }
        if tx.peer_gone {
            return Err(Error::Disconnected);
        }
        Ok(())
    }

    /// Writes a record, publishing it in chunks, so that the reader copies
    /// one while the next is written. The header goes out with the first
    /// chunk. The record is `header ++ pre[HEADER..] ++ body`, where `pre`
    /// is empty or starts with the header itself: then a record that fits
    /// in a chunk goes into the ring in one copy.
    fn write_record<'a>(
        &self,
        tx: &mut Tx,
        ring: &Ring<'_>,
        header: &[u8; HEADER as usize],
        pre: &'a [u8],
        mut body: &'a [u8],
    ) -> Result<()> {
        let chunk = ring.chunk();
        // Our own last tail, unless another copy of this end wrote since
        // (then the ring's own, which `space` checks against `head`).
        let mut tail = match ring.writer_tail() {
            t if t == tx.tail => t,
            _ => ring.tail(),
        };
        let mut pre_body = pre.get(HEADER as usize..).unwrap_or(&[]);
        let total = pre_body.len() + body.len();
        let first = HEADER + total.min(chunk) as u32;
        let mut free = self.space(tx, ring, tail, first)?;
        if pre.len() >= HEADER as usize && pre.len() as u32 <= first.min(free) {
            // The common small message: header and bytes in one copy.
            ring.write(tail, pre);
            tail = tail.wrapping_add(pre.len() as u32);
            free -= pre.len() as u32;
            pre_body = &[];
        } else {
            ring.write(tail, header);
            tail = tail.wrapping_add(HEADER);
            free -= HEADER;
        }
        loop {
            // Bytes of `pre_body` first, then of `body`.
            let mut room = chunk.min(free as usize);
            for part in [&mut pre_body, &mut body] {
                let n = part.len().min(room);
                if n > 0 {
                    ring.write(tail, &part[..n]);
                }
                tail = tail.wrapping_add(n as u32);
                *part = &part[n..];
                room -= n;
            }
            ring.publish_tail(tail);
            tx.tail = tail;
            if ring.take_armed() {
                side::send_wake(self.sock());
            }
            let left = pre_body.len() + body.len();
            if left == 0 {
                return Ok(());
            }
            free = self.space(tx, ring, tail, left.min(chunk) as u32)?;
        }
    }

    /// Waits until `need` bytes are free after `tail`; the bytes free.
    /// Trusts the space it saw free last time while nobody else wrote.
    fn space(&self, tx: &mut Tx, ring: &Ring<'_>, tail: u32, need: u32) -> Result<u32> {
        let free = tx.limit.wrapping_sub(tail);
        if tail == tx.tail && (need..=ring.cap()).contains(&free) {
            return Ok(free);
        }
        match ring.wait_space(tail, need, self.peer(false))? {
            Waited::Ready(free) => {
                tx.tail = tail;
                tx.limit = tail.wrapping_add(free);
                Ok(free)
            }
            Waited::Timeout | Waited::PeerGone => Err(Error::Disconnected),
        }
    }

    /// Receives one message. `deadline` bounds the wait for its start; once
    /// it has started, the rest is awaited however long it takes (unless the
    /// peer goes away).
    pub(super) fn recv(&self, deadline: Option<Instant>, dst: Dst<'_>) -> Result<Message> {
        let mut rx = lock(self.rx.as_ref())?;
        self.recv_locked(&mut rx, deadline, dst)
    }

    /// Receives one message and gives its bytes and descriptors to `f`
    /// (which decodes them). A message of at most [`KEEP`] bytes lands in
    /// this end's reused buffer: no allocation per message.
    pub(super) fn recv_with<R>(
        &self,
        deadline: Option<Instant>,
        f: impl FnOnce(&[u8], Vec<OwnedFd>) -> Result<R>,
    ) -> Result<R> {
        let mut rx = lock(self.rx.as_ref())?;
        self.recv_with_locked(&mut rx, deadline, f)
    }

    fn recv_with_locked<R>(
        &self,
        rx: &mut Rx,
        deadline: Option<Instant>,
        f: impl FnOnce(&[u8], Vec<OwnedFd>) -> Result<R>,
    ) -> Result<R> {
        let buf = std::mem::take(&mut rx.buf);
        let m = self.recv_locked(rx, deadline, Dst::Reuse(buf, KEEP))?;
        let bytes = m.bytes.unwrap_or_default();
        let r = f(&bytes, m.fds);
        if bytes.capacity() <= KEEP {
            rx.buf = bytes;
        }
        r
    }

    fn recv_locked(&self, rx: &mut Rx, deadline: Option<Instant>, dst: Dst<'_>) -> Result<Message> {
        let ring = self.read_ring();
        let look = rx.look_first(self);
        let r = self.data(rx, &ring, HEADER, deadline, look);
        let used = rx.note(r)?;
        let mut head = ring.head();
        let mut header = [0u8; HEADER as usize];
        ring.read(head, &mut header);
        let record = Record::decode(&header)?;
        head = head.wrapping_add(HEADER);
        let fds = match record.nfds {
            0 => Vec::new(),
            n => rx.inbox.take(self.sock(), n)?,
        };
        let len = usize::try_from(record.len)
            .map_err(|_| Error::Protocol(format!("a message of {} bytes", record.len)))?;
        let mut sink = Sink::new(dst, len);
        let r = self.read_body(rx, &ring, head, used - HEADER, len, &mut sink);
        rx.note(r)?;
        sink.finish(len, fds)
    }

    /// Copies `len` bytes from `head` into `sink`, `used` of them already
    /// published, freeing space as it goes.
    fn read_body(
        &self,
        rx: &mut Rx,
        ring: &Ring<'_>,
        mut head: u32,
        mut used: u32,
        len: usize,
        sink: &mut Sink<'_>,
    ) -> Result<()> {
        let chunk = ring.chunk();
        let mut done = 0;
        loop {
            let n = (len - done).min(used as usize).min(chunk);
            sink.fill(ring, head, done, n);
            head = head.wrapping_add(n as u32);
            used -= n as u32;
            done += n;
            ring.publish_head(head);
            #[cfg(feature = "tokio")]
            if ring.take_space_armed() {
                side::send_wake(self.sock());
            }
            if done == len {
                return Ok(());
            }
            if used == 0 {
                used = self.data(rx, ring, 1, None, false)?;
            }
        }
    }

    /// Waits until `need` bytes are published; the bytes published.
    /// Trusts the tail it saw last while the reader is behind it.
    fn data(
        &self,
        rx: &mut Rx,
        ring: &Ring<'_>,
        need: u32,
        deadline: Option<Instant>,
        look: bool,
    ) -> Result<u32> {
        let used = rx.avail.wrapping_sub(ring.head());
        if (need..=ring.cap()).contains(&used) {
            return Ok(used);
        }
        match ring.wait_data(need, deadline, self.peer(look))? {
            Waited::Ready(used) => {
                rx.avail = ring.head().wrapping_add(used);
                Ok(used)
            }
            Waited::Timeout => Err(Error::Timeout),
            Waited::PeerGone => Err(Error::Disconnected),
        }
    }

    /// Whether a message (or the peer's hang-up) arrives by `deadline`.
    pub(super) fn poll(&self, deadline: Option<Instant>) -> Result<bool> {
        let mut rx = lock(self.rx.as_ref())?;
        let look = rx.look_first(self);
        match self.read_ring().wait_data(1, deadline, self.peer(look))? {
            Waited::Ready(_) => Ok(true),
            Waited::PeerGone => {
                rx.peer_gone = true;
                Ok(true)
            }
            Waited::Timeout => Ok(false),
        }
    }

    /// Prepares a wait on the socket; `true` if a message is there already.
    pub(super) fn arm(&self) -> bool {
        let Some(Some(mut rx)) = self.rx.as_ref().map(TurnLock::try_lock) else {
            return false;
        };
        match rx.inbox.drain(self.sock()) {
            Err(_) => return true, // let `recv` report it
            #[cfg(feature = "tokio")]
            Ok(true) => self.wake_other(0),
            Ok(_) => {}
        }
        let ring = self.read_ring();
        ring.set_armed(true);
        !matches!(ring.used(), Ok(0))
    }

    /// Undoes [`arm`](End::arm).
    pub(super) fn disarm(&self) {
        if self.rx.is_some() {
            self.read_ring().set_armed(false);
        }
    }
}

/// The non-blocking attempts the futures of `pipe/aio.rs` are made of.
#[cfg(feature = "tokio")]
impl End {
    /// One attempt of an async receive. When the whole next message is in
    /// the ring (or the header of one too large to ever be whole in it),
    /// receives it with `take` (which then never waits, but for the rest of
    /// a message larger than the ring). Otherwise, with `arm`: drains the
    /// socket (keeping descriptor batches), looks at the peer (one `poll`,
    /// on the way to a sleep only), asks the writer for a wake byte and
    /// looks at the ring a last time. A hung-up peer with nothing left in
    /// the ring is `take`'s to report (`Disconnected`).
    pub(super) fn try_recv_async<R>(
        &self,
        arm: Option<&std::task::Waker>,
        take: impl FnOnce(&Self, &mut Rx) -> Result<R>,
    ) -> Result<Attempt<R>> {
        let lock = self.rx.as_ref();
        let lock = lock.ok_or(Error::InvalidState("wrong direction for this connection"))?;
        let Some(mut guard) = lock.try_lock() else {
            return Ok(Attempt::Busy);
        };
        let rx: &mut Rx = &mut guard;
        let ring = self.read_ring();
        if !self.message_ready(&ring)? {
            let Some(waker) = arm else {
                return Ok(Attempt::NotYet);
            };
            self.drain_for(0, waker, |sock| rx.inbox.drain(sock))?;
            let gone = rx.peer_gone || self.peer_gone();
            if !gone {
                ring.set_armed(true);
                if !self.message_ready(&ring)? {
                    return Ok(Attempt::NotYet);
                }
            }
            rx.peer_gone = gone;
        }
        take(self, rx).map(Attempt::Done)
    }

    /// Whether the next message can be received without waiting for its
    /// writer (or is too large for the ring, and has begun).
    fn message_ready(&self, ring: &Ring<'_>) -> Result<bool> {
        let used = ring.used()?;
        if used < HEADER {
            return Ok(false);
        }
        let mut header = [0u8; HEADER as usize];
        ring.read(ring.head(), &mut header);
        let record = Record::decode(&header)?;
        let whole = u64::from(HEADER).saturating_add(record.len);
        Ok(whole > u64::from(ring.cap()) || u64::from(used) >= whole)
    }

    /// Receives a value the ring holds whole (see [`try_recv_async`]).
    ///
    /// [`try_recv_async`]: Self::try_recv_async
    pub(super) fn take_with<R>(
        &self,
        rx: &mut Rx,
        f: impl FnOnce(&[u8], Vec<OwnedFd>) -> Result<R>,
    ) -> Result<R> {
        let r = self.recv_with_locked(rx, None, f);
        rx.note(r)
    }

    /// Receives a message the ring holds whole, as bytes.
    pub(super) fn take_bytes(&self, rx: &mut Rx) -> Result<Vec<u8>> {
        let r = self.recv_locked(rx, None, Dst::Vec);
        Ok(rx.note(r)?.bytes.unwrap_or_default())
    }

    /// One attempt of an async send of the record `pre ++ bytes` (as
    /// `send_locked`: `pre` is empty or begins with room for the header)
    /// with `fds`: sends it when the ring has room
    /// for all of it (for a record larger than the ring: when the ring is
    /// empty; the rest then streams as the reader frees space). Otherwise,
    /// with `arm`: drains the socket (keeping descriptor batches for this
    /// end's receiver), looks at the peer, asks the reader for a wake byte
    /// when it frees space, and looks a last time.
    pub(super) fn try_send_async(
        &self,
        arm: Option<&std::task::Waker>,
        pre: &mut [u8],
        bytes: &[u8],
        fds: &[BorrowedFd<'_>],
    ) -> Result<Attempt<()>> {
        let lock = self.tx.as_ref();
        let lock = lock.ok_or(Error::InvalidState("wrong direction for this connection"))?;
        let Some(mut guard) = lock.try_lock() else {
            return Ok(Attempt::Busy);
        };
        let tx: &mut Tx = &mut guard;
        self.check_peer(tx)?;
        let ring = self.write_ring();
        let whole = pre.len().max(HEADER as usize).saturating_add(bytes.len());
        let need = whole.min(ring.cap() as usize) as u32;
        let room = |tx: &Tx| {
            let tail = match ring.writer_tail() {
                t if t == tx.tail => t,
                _ => ring.tail(),
            };
            ring.free(tail).map(|free| free >= need)
        };
        if !room(tx)? {
            let Some(waker) = arm else {
                return Ok(Attempt::NotYet);
            };
            self.drain_for(1, waker, |sock| match self.rx.as_ref() {
                Some(rx) => match rx.try_lock() {
                    Some(mut rx) => rx.inbox.drain(sock),
                    None => Ok(false),
                },
                None => Inbox::default().drain(sock),
            })?;
            if self.peer_gone() {
                tx.peer_gone = true;
                return Err(Error::Disconnected);
            }
            ring.set_space_armed(true);
            if !room(tx)? {
                return Ok(Attempt::NotYet);
            }
        }
        self.send_locked(tx, pre, bytes, fds).map(Attempt::Done)
    }

    /// Keeps `waker` as side `me`'s (0 receiving, 1 sending), drains the
    /// socket with `drain`, and wakes the other side's future if anything
    /// was read (it may have been that future's wake byte).
    fn drain_for(
        &self,
        me: usize,
        waker: &std::task::Waker,
        drain: impl FnOnce(BorrowedFd<'_>) -> Result<bool>,
    ) -> Result<()> {
        {
            let mut wakers = self.sides.wakers.lock().unwrap_or_else(|e| e.into_inner());
            match &mut wakers[me] {
                Some(w) if w.will_wake(waker) => {}
                slot => *slot = Some(waker.clone()),
            }
        }
        if drain(self.sock())? {
            self.wake_other(me);
        }
        Ok(())
    }

    /// Wakes the future of the side that is not `me`, if one sleeps.
    fn wake_other(&self, me: usize) {
        let other = self.sides.wakers.lock().unwrap_or_else(|e| e.into_inner())[1 - me].take();
        if let Some(w) = other {
            self.sides.kicks[1 - me].fetch_add(1, SeqCst);
            w.wake();
        }
    }

    /// How many times side `side`'s future was woken by the other's drain.
    pub(super) fn kicks(&self, side: usize) -> u32 {
        self.sides.kicks[side].load(SeqCst)
    }

    /// Stops asking for wake bytes: the receiving side's (`recv`) or the
    /// sending side's (`send`).
    pub(super) fn disarm_async(&self, recv: bool, send: bool) {
        {
            let mut wakers = self.sides.wakers.lock().unwrap_or_else(|e| e.into_inner());
            wakers[usize::from(!recv)] = None;
        }
        if recv && self.rx.is_some() {
            self.read_ring().set_armed(false);
        }
        if send && self.tx.is_some() {
            self.write_ring().set_space_armed(false);
        }
    }
}

impl Drop for End {
    fn drop(&mut self) {
        // The socket first: if this is the last copy of this end, the peer
        // sees the hang-up by the time it is poked.
        drop(self.sock.take());
        let closes = self.shared.closes(self.id);
        closes.fetch_add(1, SeqCst);
        for r in [self.id, 1 - self.id] {
            if r < self.shared.rings() {
                self.shared.ring(r).poke();
            }
        }
    }
}

/// One thread at a time per direction (keeps messages whole): a lock whose
/// uncontended release is a plain store (see [`TurnLock`]).
fn lock<T>(m: Option<&TurnLock<T>>) -> Result<TurnGuard<'_, T>> {
    let m = m.ok_or(Error::InvalidState("wrong direction for this connection"))?;
    Ok(m.lock())
}

/// Tells the operator that this end found its peer gone (every copy of the
/// other end closed, or its process died): once per end and direction, off
/// the path of a message.
#[cold]
#[inline(never)]
#[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
fn peer_gone_seen(on: &'static str) {
    debug_event!(
        on,
        pid = std::process::id(),
        "pipe peer gone: every copy of the other end closed or its process died"
    );
}
