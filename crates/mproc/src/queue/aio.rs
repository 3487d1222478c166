//! Queue futures (feature `tokio`): `get_async`, `put_async` and
//! `JoinableQueue::join_async`, and the bridge from the queue's futex
//! words to a reactor (see `crate::aio` and DESIGN.md, *Readiness*).
//!
//! # The bridge: an eventfd, written only for an announced async waiter
//!
//! Linux has no pollable futex, so each queue owns an eventfd (`WakeFd`),
//! created with the queue and travelling with every handle beside its
//! socket pair (the handle's wire form: a descriptor in the codec's side
//! table). The queue's `SOCK_SEQPACKET` pair was the other candidate and is
//! not used: consumers peek its next message and read its tag to match an
//! item's descriptors (`handles.rs`), so a wake datagram there would be
//! taken for a message of a later item (and its item skipped), would take
//! room from the ~270 items of handles it can hold, and its receiving end
//! stays readable while items of handles are queued (an async producer
//! would spin on it).
//!
//! An async waiter counts itself twice in the shared header: in its
//! word's `*_async` count (`get_async`, `put_async`, `join_async`), then in
//! the blocking `*_sleepers` count of the same word. A publisher (the
//! `tail` store of a put, the `head` store of a get, `task_done`) already
//! loads `*_sleepers` after its store (the Dekker pair of `sys::futex`); only
//! when that is non-zero does it bump the futex word, `FUTEX_WAKE` and then
//! load `*_async`, and only when that is non-zero does it write the eventfd
//! (`Core::notify`). So a program with no async waiter pays nothing new on
//! the publishing paths, and one whose waiters all block pays one more load
//! in a path that already makes a system call. Without the feature `tokio`
//! there is no eventfd and the loads compile away.
//!
//! **Wake policy: all.** One write of the eventfd is a new edge for every
//! registration of it, in every process: all async waiters of the queue
//! (of data, room and `join` alike) wake, look, and the ones that find
//! nothing sleep again, as the blocking path wakes every sleeper of a word
//! (`WAKE_ALL`). So a wake reaches the waiter that can take the item
//! whichever it is.
//!
//! **Never drained.** The eventfd's counter is never read: tokio's reactor
//! is edge-triggered (epoll with `EPOLLET`), and every write to an eventfd
//! wakes its poll queue, which is a new edge even while the counter is
//! non-zero, so a waiter needs no drain to see the next wake; and a drain
//! would lose wakes: the counter is one for all processes, and epoll looks
//! again at a descriptor's readiness when it hands out an event, so a
//! waiter that drained between a write and another process's
//! `epoll_wait` would swallow that process's wake. The counter grows by
//! one per wake (2^64 - 2 of them before a write fails; a hostile writer
//! could get there, as it could garble the items). A level-triggered
//! reactor (a future second implementation of `aio::Readiness`) would need
//! another scheme (a drain with a nap).
//!
//! # No lost wake-up
//!
//! A future first tries once (`Wait::Try`: no system call when it
//! succeeds). Then, in this order: **register** a duplicate of the eventfd
//! with the reactor (`Readiness::new`), **announce** (`*_async`, then
//! `*_sleepers`, both `SeqCst` read-modify-writes), **look** again (a try),
//! and only then **sleep** (`Readiness::poll_until`: try when the
//! descriptor is readable, else wait for its next edge). A publisher stores
//! its index word (`SeqCst`), then loads the counts. Either the look after
//! the announcement sees the publisher's store, or the publisher's loads
//! see the announcement and write the eventfd; that write comes after the
//! registration, so it is an edge the reactor records (tokio keeps an edge
//! that comes while a try runs: its `clear_ready` clears only the readiness
//! that the try was started on). The first poll after a registration may
//! find the descriptor readable from old writes: one needless try.
//!
//! A try also fails when another handle holds the queue's get (put) lock:
//! a blocking `get` sleeps inside the get lock while it waits for data, and
//! takes only one of the items that a wake may announce. So the release of
//! a queue lock (`wait::Unlocked`, paired after the lock's guard, calls
//! `Core::after_unlock`) looks at `get_async` (`put_async`) and, if a
//! waiter is announced and an item (room) is left, writes the eventfd. The waiter announces before its try of the lock, the
//! holder releases the lock before it loads the count (a `SeqCst`
//! read-modify-write on x86-64, a fence elsewhere): either the try finds
//! the lock free or the holder sees the announcement. This load is the one
//! cost of the feature `tokio` on the blocking paths (one load of a line
//! that a publisher's `*_sleepers` load already reads); without the
//! feature it is compiled out.
//!
//! # What is not covered
//!
//! A publisher killed between its index store and its wake-up writes no
//! wake: as the blocking waits nap (50 ms, `wait.rs`), a sleeping async
//! waiter also looks again every `aio::NAP` (a periodic timerfd in the
//! reactor, made when it goes to sleep), so such a death costs it at most
//! a nap. A process killed while announced leaves `*_async` and `*_sleepers` one
//! too high: publishers then make needless wake-ups (a `FUTEX_WAKE` and an
//! eventfd write per publish), never a lost one.
//!
//! A try does not wait, but two cases inside it still block the thread:
//! a `get_async` that meets an item being streamed in chunks (over
//! 256 KiB) waits for the rest of it, as `try_get` does, while its
//! producer writes it; and a `put_async` of an item that could never be
//! put by `try_put` (its chunks need more than the whole ring) is put by
//! the blocking `put`.
//!
//! # Cancellation
//!
//! An item is taken only inside a try, under the get lock, by the call
//! that returns it: a `get_async` future dropped before it completes has
//! taken nothing, and its announcement is withdrawn by its drop
//! (`Announced`). A `put_async` future dropped before it completes has put
//! nothing (a put is whole or not at all) and drops its value. A
//! `join_async` future only looks.

use std::sync::atomic::{AtomicU32, Ordering::SeqCst};

use super::core::Core;

/// Which of a queue's two locks an `Unlocked` follows.
#[derive(Clone, Copy, Debug)]
pub(super) enum Side {
    Get,
    Put,
}

#[cfg(not(feature = "tokio"))]
pub(super) use no_runtime::WakeFd;
#[cfg(feature = "tokio")]
pub(super) use with_tokio::WakeFd;

#[cfg(not(feature = "tokio"))]
mod no_runtime {
    use serde::{Deserialize, Serialize};

    /// Without the feature `tokio`, a queue has no eventfd.
    #[derive(Clone, Serialize, Deserialize)]
    pub(in crate::queue) struct WakeFd;

    impl WakeFd {
        #[inline]
        pub(in crate::queue) fn new() -> crate::error::Result<WakeFd> {
            Ok(WakeFd)
        }
    }
}

impl Core {
    /// Wakes every async waiter of the queue (all processes), if the
    /// feature `tokio` is on.
    #[inline]
    pub(super) fn wake_async(&self) {
        #[cfg(feature = "tokio")]
        crate::sys::wakefd::signal(self.wake.fd());
    }

    /// [`wake_async`](Core::wake_async) if `waiters` (an async count of
    /// the header) is non-zero.
    #[inline]
    pub(super) fn wake_async_if(&self, waiters: &AtomicU32) {
        if cfg!(feature = "tokio") && waiters.load(SeqCst) != 0 {
            self.wake_async();
        }
    }

    /// After the release of the get (put) lock: wakes the async waiters if
    /// one is announced on data (room) and an item (room for one) is left;
    /// see the module's text, *No lost wake-up*.
    #[inline]
    pub(super) fn after_unlock(&self, side: Side) {
        if !cfg!(feature = "tokio") {
            return;
        }
        // The lock's release is a `SeqCst`-strong read-modify-write on
        // x86-64; elsewhere the load below must not pass it.
        #[cfg(not(target_arch = "x86_64"))]
        std::sync::atomic::fence(SeqCst);
        let h = self.h();
        let waiters = match side {
            Side::Get => &h.get_async,
            Side::Put => &h.put_async,
        };
        if waiters.load(SeqCst) != 0 {
            self.wake_if_left(side);
        }
    }

    #[cold]
    fn wake_if_left(&self, side: Side) {
        let Ok((_, _, _, _, used, count)) = self.indices() else {
            return self.wake_async(); // let the waiter meet the error
        };
        let left = match side {
            Side::Get => count > 0,
            Side::Put => used < self.cap && (self.maxsize == 0 || count < self.maxsize),
        };
        if left || self.is_shut_down() {
            self.wake_async();
        }
    }
}

#[cfg(feature = "tokio")]
mod with_tokio {
    use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
    use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
    use std::sync::Arc;

    use serde::de::DeserializeOwned;
    use serde::{Deserialize, Serialize};

    use super::super::core::{Core, Stop, Wait};
    use super::super::error::{GetError, PutError};
    use super::super::header::record_len;
    use super::super::joinable::JoinableQueue;
    use super::super::queue::Queue;
    use super::super::simple::SimpleQueue;
    use crate::aio::{Nap, Readiness};
    use crate::codec::{self, WireFd};
    use crate::error::{Error, Result};

    /// The queue's eventfd, shared by its handles in a process and sent
    /// with each handle (see the module's text).
    #[derive(Clone)]
    pub(in crate::queue) struct WakeFd(Arc<OwnedFd>);

    impl WakeFd {
        pub(in crate::queue) fn new() -> Result<WakeFd> {
            let fd = crate::sys::wakefd::create()
                .map_err(Error::io("cannot create a queue's eventfd"))?;
            Ok(WakeFd(Arc::new(fd)))
        }

        pub(in crate::queue) fn fd(&self) -> BorrowedFd<'_> {
            self.0.as_fd()
        }
    }

    impl Serialize for WakeFd {
        fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
            codec::serialize_fd(self.fd(), s)
        }
    }

    impl<'de> Deserialize<'de> for WakeFd {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
            let WireFd(fd) = Deserialize::deserialize(d)?;
            Ok(WakeFd(Arc::new(fd)))
        }
    }

    /// What an async waiter waits for: one of the queue's futex words.
    #[derive(Clone, Copy)]
    pub(in crate::queue) enum Word {
        /// `data_seq`: an item (`get_async`).
        Data,
        /// `space_seq`: room (`put_async`).
        Room,
        /// `done`: every item done (`join_async`).
        Done,
    }

    /// An async waiter counted in the header (its word's `*_async`, then
    /// `*_sleepers`), until dropped.
    struct Announced<'a> {
        sleepers: &'a AtomicU32,
        waiters: &'a AtomicU32,
    }

    impl<'a> Announced<'a> {
        fn new(core: &'a Core, word: Word) -> Self {
            let h = core.h();
            let (sleepers, waiters) = match word {
                Word::Data => (&h.get_sleepers, &h.get_async),
                Word::Room => (&h.put_sleepers, &h.put_async),
                Word::Done => (&h.join_sleepers, &h.join_async),
            };
            // `*_async` first: a publisher that sees this waiter in
            // `*_sleepers` then sees it in `*_async` too.
            waiters.fetch_add(1, SeqCst);
            sleepers.fetch_add(1, SeqCst);
            Announced { sleepers, waiters }
        }
    }

    impl Drop for Announced<'_> {
        fn drop(&mut self) {
            self.sleepers.fetch_sub(1, SeqCst);
            self.waiters.fetch_sub(1, SeqCst);
        }
    }

    impl Core {
        /// Awaits `attempt` (a non-blocking try: `Some` when done) as an
        /// async waiter on `word`: try; register, announce, try; then try
        /// again at each wake (see the module's text). Dropping the future
        /// withdraws the announcement and deregisters. An error only if
        /// there is no runtime or its reactor fails.
        pub(in crate::queue) async fn until<R>(
            &self,
            word: Word,
            mut attempt: impl FnMut() -> Option<R>,
        ) -> Result<R> {
            if let Some(r) = attempt() {
                return Ok(r);
            }
            // Declared in this order, dropped in the other: withdrawn,
            // then deregistered.
            let ready = Readiness::new(self.wake.fd())?;
            let _announced = Announced::new(self, word);
            if let Some(r) = attempt() {
                return Ok(r);
            }
            // A publisher killed between its store and its wake writes
            // nothing: look again every nap, as a blocking waiter does.
            let nap = Nap::new()?;
            std::future::poll_fn(|cx| ready.poll_until_napping(cx, &nap, || Ok(attempt()))).await
        }
    }

    impl<T: DeserializeOwned> Queue<T> {
        /// Takes the oldest item, awaiting one while the queue is empty
        /// (feature `tokio`; on a tokio runtime with I/O enabled). The same
        /// errors as [`get`](Queue::get); no runtime is
        /// [`GetError::Failed`] with [`Error::NoAsyncRuntime`].
        ///
        /// No thread waits: the future sleeps in the runtime's reactor on
        /// the queue's eventfd, which a producer writes only while an async
        /// consumer is announced (blocking users of the queue pay nothing).
        /// Producers and consumers may be any mix of blocking and async
        /// handles in any processes.
        ///
        /// **Cancel-safe**: an item is taken only when the future completes
        /// with it, so a future dropped before (in a `tokio::select!`, by
        /// `tokio::time::timeout`) loses no item; its announcement is
        /// withdrawn with it. For a timeout, wrap it in
        /// `tokio::time::timeout`.
        ///
        /// The thread blocks in one case: an item of more than 256 KiB met
        /// while its producer is still streaming it is read to its end, as
        /// [`try_get`](Queue::try_get) does.
        ///
        /// # Examples
        ///
        /// ```
        /// # #[tokio::main(flavor = "current_thread")]
        /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
        /// use mproc::{Process, Queue};
        ///
        /// fn produce(q: Queue<String>) {
        ///     q.put("hello".to_string()).unwrap();
        /// }
        ///
        /// let q = Queue::new()?;
        /// let mut p = Process::new(produce, q.clone());
        /// p.start()?;
        /// assert_eq!(q.get_async().await?, "hello");
        /// p.join_async().await?;
        ///
        /// // Dropping a pending get loses nothing.
        /// let waited = std::time::Duration::from_millis(10);
        /// assert!(tokio::time::timeout(waited, q.get_async()).await.is_err());
        /// q.put("later".to_string())?;
        /// assert_eq!(q.get_async().await?, "later");
        /// # Ok(())
        /// # }
        /// ```
        #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
        pub async fn get_async(&self) -> std::result::Result<T, GetError> {
            let attempt = || match self.get_within(Wait::Try) {
                Err(GetError::Empty) => None,
                r => Some(r),
            };
            self.core()
                .until(Word::Data, attempt)
                .await
                .unwrap_or_else(|e| Err(GetError::Failed(e)))
        }
    }

    impl<T: serde::Serialize> Queue<T> {
        /// Puts `value`, awaiting room while the queue is full (feature
        /// `tokio`; on a tokio runtime with I/O enabled). The same errors
        /// as [`put`](Queue::put), the value handed back; no runtime is
        /// [`PutError::Failed`] with [`Error::NoAsyncRuntime`].
        ///
        /// **Not cancel-safe** in tokio's sense: the future owns the value,
        /// and dropping it before it completes drops the value, not put.
        /// The queue is left as it was (a put is whole or not at all, and
        /// the announcement is withdrawn).
        ///
        /// The thread blocks in one case: an item whose chunks need more
        /// than the whole ring (an item larger than the queue's byte limit)
        /// can only go in while a consumer reads it, and is put by the
        /// blocking [`put`](Queue::put).
        ///
        /// # Examples
        ///
        /// ```
        /// # #[tokio::main(flavor = "current_thread")]
        /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
        /// let q = mproc::Queue::bounded(1)?;
        /// q.put_async(1).await?;
        /// let (second, got) = tokio::join!(q.put_async(2), async {
        ///     tokio::task::yield_now().await; // the put awaits room
        ///     q.get_async().await
        /// });
        /// second?;
        /// assert_eq!(got?, 1);
        /// assert_eq!(q.get()?, 2);
        /// # Ok(())
        /// # }
        /// ```
        #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
        pub async fn put_async(&self, value: T) -> std::result::Result<(), PutError<T>> {
            if self.is_closed() {
                return Err(PutError::Closed(value));
            }
            if self.never_fits(&value) {
                return self.put(value);
            }
            let mut value = value;
            let r = {
                // A `&mut` (not a `&`) across the await: the future is
                // `Send` for a `T: Send`.
                let v = &mut value;
                let attempt = move || match self.put_ref(v, Wait::Try) {
                    Err(Stop::Busy) => None,
                    r => Some(r),
                };
                self.core().until(Word::Room, attempt).await
            };
            match r {
                Ok(Ok(())) => Ok(()),
                Ok(Err(stop)) => Err(PutError::from_stop(stop, value)),
                Err(e) => Err(PutError::Failed(value, e)),
            }
        }

        /// Whether `value` could never be put by a `try_put`: streamed in
        /// chunks that need more than the whole ring at once.
        fn never_fits(&self, value: &T) -> bool {
            let core = self.core();
            let Ok(n) = codec::encoded_len(value) else {
                return false; // the put reports it
            };
            let chunk = core.chunk();
            record_len(n) > chunk && n.div_ceil(chunk - 8) * chunk + 8 > core.cap as usize
        }
    }

    impl<T> JoinableQueue<T> {
        /// Awaits until every item put has been marked done (feature
        /// `tokio`), as [`join`](JoinableQueue::join). **Cancel-safe**: it
        /// only looks; dropping it withdraws its announcement.
        ///
        /// # Examples
        ///
        /// ```
        /// # #[tokio::main(flavor = "current_thread")]
        /// # async fn main() -> mproc::Result<()> {
        /// let q = mproc::JoinableQueue::new()?;
        /// q.put(1)?;
        /// let (joined, ()) = tokio::join!(q.join_async(), async {
        ///     let _: i32 = q.get_async().await.unwrap();
        ///     q.task_done().unwrap();
        /// });
        /// joined?;
        /// # Ok(())
        /// # }
        /// ```
        #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
        pub async fn join_async(&self) -> Result<()> {
            let core = self.core();
            let attempt = || match core.unfinished() {
                Ok(0) => Some(Ok(())),
                Ok(_) => None,
                Err(e) => Some(Err(e)),
            };
            core.until(Word::Done, attempt).await?
        }
    }

    impl<T: DeserializeOwned> SimpleQueue<T> {
        /// [`Queue::get_async`]: takes the oldest item, awaiting one
        /// (feature `tokio`). **Cancel-safe.**
        #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
        pub async fn get_async(&self) -> std::result::Result<T, GetError> {
            self.queue().get_async().await
        }
    }

    impl<T: serde::Serialize> SimpleQueue<T> {
        /// [`Queue::put_async`] (a `SimpleQueue` has no limit, so this
        /// awaits only with 1 GiB queued). Not cancel-safe: a dropped
        /// future drops its value.
        #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
        pub async fn put_async(&self, value: T) -> std::result::Result<(), PutError<T>> {
            self.queue().put_async(value).await
        }
    }
}

#[cfg(all(test, feature = "tokio"))]
mod tests {
    use std::os::fd::AsRawFd;
    use std::sync::atomic::Ordering::SeqCst;

    use crate::{JoinableQueue, Queue};

    /// The eventfd's counter, read from `/proc` (the descriptor untouched).
    fn wakes<T>(q: &Queue<T>) -> u64 {
        let fd = q.core().wake.fd().as_raw_fd();
        let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap();
        let line = info
            .lines()
            .find(|l| l.starts_with("eventfd-count:"))
            .unwrap();
        u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
    }

    fn counts<T>(q: &Queue<T>) -> [u32; 6] {
        let h = q.core().h();
        [
            h.get_sleepers.load(SeqCst),
            h.put_sleepers.load(SeqCst),
            h.join_sleepers.load(SeqCst),
            h.get_async.load(SeqCst),
            h.put_async.load(SeqCst),
            h.join_async.load(SeqCst),
        ]
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .unwrap()
    }

    #[test]
    fn without_async_waiters_the_eventfd_is_never_written() {
        let q = Queue::bounded(4).unwrap();
        let j = JoinableQueue::new().unwrap();
        for i in 0..1000u32 {
            q.put(i).unwrap();
            assert_eq!(q.get().unwrap(), i);
            j.put(i).unwrap();
            j.get().unwrap();
            j.task_done().unwrap();
        }
        j.join().unwrap();
        // Async calls that need not wait write nothing either.
        rt().block_on(async {
            q.put_async(1).await.unwrap();
            assert_eq!(q.get_async().await.unwrap(), 1);
            j.join_async().await.unwrap();
        });
        assert_eq!((wakes(&q), wakes(&j)), (0, 0));
    }

    #[test]
    fn a_dropped_future_withdraws_its_announcement() {
        let q = Queue::<u32>::bounded(1).unwrap();
        let j = JoinableQueue::<u32>::new().unwrap();
        j.put(7).unwrap();
        rt().block_on(async {
            for _ in 0..3 {
                tokio::select! {
                    biased;
                    _ = q.get_async() => unreachable!("the queue is empty"),
                    () = std::future::ready(()) => {}
                }
                tokio::select! {
                    biased;
                    _ = j.join_async() => unreachable!("an item is unfinished"),
                    () = std::future::ready(()) => {}
                }
            }
            q.put(1).unwrap();
            tokio::select! {
                biased;
                _ = q.put_async(2) => unreachable!("the queue is full"),
                () = std::future::ready(()) => {}
            }
        });
        assert_eq!(counts(&q), [0; 6]);
        assert_eq!(counts(&j), [0; 6]);
        // Announced, a publisher writes the eventfd once per publish.
        rt().block_on(async {
            let q2 = q.clone();
            let put = tokio::spawn(async move { q2.put_async(2).await });
            tokio::task::yield_now().await;
            assert_eq!(counts(&q), [0, 1, 0, 0, 1, 0]);
            let before = wakes(&q);
            assert_eq!(q.get().unwrap(), 1);
            assert_eq!(wakes(&q), before + 1);
            put.await.unwrap().unwrap();
        });
        assert_eq!(counts(&q), [0; 6]);
    }
}
