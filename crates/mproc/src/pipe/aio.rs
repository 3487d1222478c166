//! A connection's futures (feature `tokio`): receive, send and wait for a
//! message without blocking a thread.
//!
//! # How a future waits
//!
//! 1. **Fast path.** It tries the ring (a whole message there, or room for
//!    the whole record), then keeps trying for [`SPIN`](crate::aio::SPIN):
//!    a peer that answers promptly is met without any system call and
//!    without the reactor, as by the blocking calls.
//! 2. **Arming.** Before its first sleep it registers (a duplicate of) the
//!    socket beside the rings with the reactor, then, under the end's lock:
//!    drains the socket (descriptor batches are kept for their messages,
//!    wake bytes dropped), looks at the peer (a hang-up is the peer's end),
//!    announces itself in the ring's shared words (`armed` for a reader,
//!    `space_armed` for a writer, each with the heavy fence of the futex
//!    sleepers' Dekker pair) and looks at the ring a last time.
//! 3. **Waking.** A writer that publishes while `armed` is set (a reader
//!    that frees space while `space_armed` is set) swaps it to 0 and sends
//!    one wake byte on the socket, without blocking. The socket turns
//!    readable, the reactor wakes the task, and the future goes back to 2.
//!
//! Both directions' wake bytes come on the one socket, and a future that
//! drains it may take the byte meant for a future of the other direction
//! on the same end before the reactor reported it: a future that drained
//! anything wakes the other (the end keeps one waker per direction), which
//! then looks again.
//!
//! A peer with no awaiting reader or writer pays one relaxed load of a line
//! it reads anyway per publication, as for `mproc::wait`: no system call,
//! no wake-up. The registration is made once per future (when it first
//! sleeps) and kept until the future is dropped: a future woken many times
//! (a long message streamed in chunks) registers once; a future that
//! completes on its fast path never registers. Dropping the future
//! withdraws its announcement.

use std::cell::Cell;
use std::future::poll_fn;
use std::task::{Context, Poll, Waker};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::end::End;
use super::record::HEADER;
use super::Connection;
use crate::aio::{spin, Attempt, Readiness};
use crate::codec;
use crate::error::Result;
use crate::sys::fdpass;

/// The state of one future on an end: its registration once it slept, and
/// which announcement to withdraw when it is dropped.
struct Awaiting<'a> {
    end: &'a End,
    /// Receiving (else sending).
    recv: bool,
    ready: Option<Readiness>,
    /// Make the next attempt without waiting for an event.
    direct: bool,
    /// `End::kicks` of this side when last looked at.
    kicks: u32,
}

impl<'a> Awaiting<'a> {
    fn new(end: &'a End, recv: bool) -> Self {
        Awaiting {
            end,
            recv,
            ready: None,
            direct: false,
            kicks: 0,
        }
    }

    /// Fast path, then arm-and-sleep rounds until `attempt` is done.
    /// `attempt(end, arm)` never blocks (see `End::try_recv_async`); `arm`
    /// is the task's waker when the attempt is to announce a sleep.
    fn poll<T>(
        &mut self,
        cx: &mut Context<'_>,
        mut attempt: impl FnMut(&End, Option<&Waker>) -> Result<Attempt<T>>,
    ) -> Poll<Result<T>> {
        let end = self.end;
        if self.ready.is_none() {
            if let Attempt::Done(v) = spin(|| attempt(end, None))? {
                return Poll::Ready(Ok(v));
            }
            self.ready = Some(Readiness::new(end.sock())?);
            self.direct = true;
        }
        let kicks = end.kicks(usize::from(!self.recv));
        if kicks != std::mem::replace(&mut self.kicks, kicks) {
            // Woken by the other direction's future, which drained the
            // socket (perhaps our byte, unseen by the reactor).
            self.direct = true;
        }
        if std::mem::take(&mut self.direct) {
            // Just registered (the reactor reports only what happens from
            // now on, and a message published before the announcement sent
            // no wake byte), or last seen busy: arm and look, not waiting
            // for an event.
            match attempt(end, Some(cx.waker()))? {
                Attempt::Done(v) => return Poll::Ready(Ok(v)),
                Attempt::NotYet => {}
                Attempt::Busy => return self.busy(cx),
            }
        }
        let ready = self.ready.as_ref().expect("registered above");
        let busy = Cell::new(false);
        let waker = cx.waker().clone();
        let r = ready.poll_until(cx, || match attempt(end, Some(&waker))? {
            Attempt::Done(v) => Ok(Some(v)),
            Attempt::NotYet => Ok(None),
            Attempt::Busy => {
                busy.set(true);
                Ok(None)
            }
        });
        match r {
            Poll::Pending if busy.get() => self.busy(cx),
            r => r,
        }
    }

    /// Another thread holds the end (a blocking call on it): nothing will
    /// be written on the socket for this future; look again soon.
    fn busy<T>(&mut self, cx: &mut Context<'_>) -> Poll<Result<T>> {
        self.direct = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl Drop for Awaiting<'_> {
    fn drop(&mut self) {
        if self.ready.is_some() {
            self.end.disarm_async(self.recv, !self.recv);
        }
    }
}

impl<T> Connection<T> {
    /// As [`recv_bytes`](Connection::recv_bytes), without blocking a thread
    /// (feature `tokio`). See [`recv_async`](Connection::recv_async) for how
    /// it waits and what cancelling it does (it is cancel-safe).
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub async fn recv_bytes_async(&self) -> Result<Vec<u8>> {
        let end = self.reader()?;
        let mut w = Awaiting::new(end, true);
        poll_fn(|cx| w.poll(cx, |end, arm| end.try_recv_async(arm, End::take_bytes))).await
    }

    /// As [`send_bytes`](Connection::send_bytes), without blocking a thread
    /// when the ring is full (feature `tokio`). See
    /// [`send_async`](Connection::send_async) (cancel-safe).
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub async fn send_bytes_async(&self, buf: &[u8]) -> Result<()> {
        let end = self.writer()?;
        let mut w = Awaiting::new(end, false);
        poll_fn(|cx| w.poll(cx, |end, arm| end.try_send_async(arm, &mut [], buf, &[]))).await
    }

    /// Waits until a message (or end of file) can be received, without
    /// blocking a thread (feature `tokio`): [`poll`](Connection::poll) as
    /// a future; bound it with `tokio::time::timeout`. Takes nothing, so it
    /// is cancel-safe.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> mproc::Result<()> {
    /// let (a, b) = mproc::Pipe::<u8>::new()?;
    /// b.send(&1)?;
    /// a.poll_async().await?;
    /// assert_eq!(a.recv()?, 1);
    /// # Ok(())
    /// # }
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub async fn poll_async(&self) -> Result<()> {
        let end = self.reader()?;
        let mut w = Awaiting::new(end, true);
        poll_fn(|cx| w.poll(cx, |end, arm| end.try_recv_async(arm, |_, _| Ok(())))).await
    }
}

impl<T: Serialize> Connection<T> {
    /// As [`send`](Connection::send), without blocking a thread when the
    /// ring is full (feature `tokio`): the value is encoded at once, and the
    /// future waits until the ring has room for the whole message (a
    /// message larger than the ring, 512 KiB, waits for an empty ring and
    /// then streams as the receiver copies it out, the thread waiting for
    /// the receiver as a blocking send does). The receiver frees room and,
    /// seeing the future announced, writes a wake byte on the socket.
    ///
    /// Errors as for `send`: [`Error::Disconnected`](crate::Error::Disconnected)
    /// once the peer is gone.
    ///
    /// Cancel-safe: the message goes into the ring whole in the one poll
    /// that completes the future, so a future dropped before it completed
    /// sent nothing.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> mproc::Result<()> {
    /// let (a, b) = mproc::Pipe::<String>::new()?;
    /// a.send_async(&"hi".to_string()).await?;
    /// assert_eq!(b.recv_async().await?, "hi");
    /// # Ok(())
    /// # }
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub async fn send_async(&self, value: &T) -> Result<()> {
        let end = self.writer()?;
        let mut pre = vec![0u8; HEADER as usize];
        let fds = codec::encode_into(value, &mut pre)?;
        let mut w = Awaiting::new(end, false);
        poll_fn(|cx| {
            w.poll(cx, |end, arm| {
                end.try_send_async(arm, &mut pre, &[], &fdpass::borrow_all(&fds))
            })
        })
        .await
    }
}

impl<T: DeserializeOwned> Connection<T> {
    /// As [`recv`](Connection::recv), without blocking a thread (feature
    /// `tokio`): receives a value, waiting in the runtime's reactor until
    /// one arrives.
    ///
    /// A message already there, or sent within a few microseconds, is
    /// taken at once without touching the reactor. Otherwise the future
    /// registers the socket beside the rings, announces itself in the
    /// ring's shared words (so that the sender writes one wake byte on the
    /// socket: a sender nobody awaits pays nothing) and sleeps.
    ///
    /// Errors as for `recv`: [`Error::Disconnected`](crate::Error::Disconnected)
    /// once the peer is closed (or died) and every message was received,
    /// [`Error::Decode`](crate::Error::Decode) for bytes that are not a `T`.
    /// Descriptors inside the message travel with it.
    ///
    /// A message is taken once it is whole in the ring, but for one larger
    /// than the ring (512 KiB), which cannot be: it is taken as it begins
    /// and its rest copied out while its sender writes it, the task's
    /// thread waiting as in a blocking `recv` (so its sender must not be a
    /// task of the same thread).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: a message is taken from the ring only in the poll that
    /// completes the future, so a future dropped before (in a
    /// `tokio::select!` that another branch won) took nothing, and the next
    /// receive gets that message. Dropping it withdraws its announcement.
    ///
    /// # Examples
    ///
    /// ```
    /// use mproc::{Connection, Pipe, Process};
    ///
    /// fn child(conn: Connection<u64>) {
    ///     for i in 0..3 {
    ///         conn.send(&i).unwrap(); // a blocking sender
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> mproc::Result<()> {
    /// let (parent_end, child_end) = Pipe::<u64>::new()?;
    /// let mut p = Process::new(child, child_end);
    /// p.start()?;
    /// for i in 0..3 {
    ///     assert_eq!(parent_end.recv_async().await?, i);
    /// }
    /// p.join_async().await?;
    /// // The child's end is closed: end of file, as for `recv`.
    /// assert!(matches!(parent_end.recv_async().await, Err(mproc::Error::Disconnected)));
    /// # Ok(())
    /// # }
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub async fn recv_async(&self) -> Result<T> {
        let end = self.reader()?;
        let mut w = Awaiting::new(end, true);
        poll_fn(|cx| {
            w.poll(cx, |end, arm| {
                end.try_recv_async(arm, |end, rx| end.take_with(rx, codec::decode))
            })
        })
        .await
    }
}
