//! `starmap`: a function of 1 to 8 arguments over tuples of them.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::callback::Callbacks;
use super::calls::Task;
use super::result::AsyncResult;
use super::wire::Status;
use super::worker::{bad_args, run_items, ChunkArgs};
use super::Pool;
use crate::error::Result;
use crate::sys::fnref;
use crate::sys::fnref::FnRef;

mod sealed {
    pub trait Sealed {}
}

/// A tuple of arguments for [`Pool::starmap`]: `(A,)` to
/// `(A, B, C, D, E, F, G, H)`, each item encodable. `Fn` is the plain
/// function (no captures) taking them one by one.
#[doc(alias = "starmap")]
pub trait StarArgs<R>: sealed::Sealed + Sized {
    /// `fn(A, B, ...) -> R`.
    type Fn: Copy;
    /// `f`'s offset, vouched for by this process.
    #[doc(hidden)]
    fn offset(f: Self::Fn) -> i64;
    /// The function at `offset`, if this process vouches for it as a
    /// `Self::Fn`.
    #[doc(hidden)]
    fn checked(offset: i64) -> crate::Result<Self::Fn>;
    #[doc(hidden)]
    fn call(f: Self::Fn, args: Self) -> R;
}

macro_rules! star_args {
    ($($t:ident),+) => {
        impl<$($t,)+> sealed::Sealed for ($($t,)+) {}
        impl<$($t,)+ R> StarArgs<R> for ($($t,)+) {
            type Fn = fn($($t),+) -> R;
            fn offset(f: Self::Fn) -> i64 {
                FnRef::new(f).offset()
            }
            fn checked(offset: i64) -> crate::Result<Self::Fn> {
                Ok(FnRef::<Self::Fn>::checked(offset)?.get())
            }
            #[allow(non_snake_case)]
            fn call(f: Self::Fn, ($($t,)+): Self) -> R {
                f($($t),+)
            }
        }
    };
}

star_args!(A);
star_args!(A, B);
star_args!(A, B, C);
star_args!(A, B, C, D);
star_args!(A, B, C, D, E);
star_args!(A, B, C, D, E, F);
star_args!(A, B, C, D, E, F, G);
star_args!(A, B, C, D, E, F, G, H);

/// The chunk runner for `T::Fn` over tuples `T`.
pub(crate) fn tuple_runner<T, R>(func: i64, args: ChunkArgs, mut out: Vec<u8>) -> (Status, Vec<u8>)
where
    T: StarArgs<R> + DeserializeOwned,
    R: Serialize,
{
    // From the job pipe: the pool's parent chose this function.
    let f = match fnref::trusting_parent(|| T::checked(func)) {
        Ok(f) => f,
        Err(e) => return bad_args(e, out),
    };
    let status = run_items(args.bytes(), &mut out, |args: T| T::call(f, args));
    (status, out)
}

impl Task {
    pub(crate) fn star<T, R>(f: T::Fn) -> Self
    where
        T: StarArgs<R> + Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + 'static,
    {
        Task::with_runner(T::offset(f), tuple_runner::<T, R>)
    }
}

impl Pool {
    /// `f(a, b, ...)` over tuples of 1 to 8 arguments, in input order, as
    /// Python's `starmap`; failures as [`map`](Pool::map).
    ///
    /// ```
    /// let pool = mproc::Pool::new(2)?;
    /// let sums = pool.starmap(|a: u32, b: u32| a + b, [(1, 2), (3, 4)])?;
    /// assert_eq!(sums, [3, 7]);
    /// let s = pool.starmap(|a: u8, b: char, c: bool| format!("{a}{b}{c}"), [(1, 'x', true)])?;
    /// assert_eq!(s, ["1xtrue"]);
    ///
    /// // A named function goes as a closure, or cast to its pointer type.
    /// fn volume(x: f64, y: f64, z: f64) -> f64 {
    ///     x * y * z
    /// }
    /// assert_eq!(pool.starmap(|x, y, z| volume(x, y, z), [(1.0, 2.0, 3.0)])?, [6.0]);
    /// assert_eq!(pool.starmap(volume as fn(_, _, _) -> _, [(2.0, 2.0, 2.0)])?, [8.0]);
    /// # Ok::<(), mproc::Error>(())
    /// ```
    ///
    /// A named function is not a pointer yet: `starmap(volume, ...)` does
    /// not compile (the tuple type picks the pointer type, and Rust
    /// converts only a closure written in place, or a cast).
    pub fn starmap<T, R>(&self, f: T::Fn, items: impl IntoIterator<Item = T>) -> Result<Vec<R>>
    where
        T: StarArgs<R> + Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.starmap_chunked(f, items, None)
    }

    /// [`starmap`](Pool::starmap) with chunks of `chunksize` items
    /// (`None`: the default rule).
    pub fn starmap_chunked<T, R>(
        &self,
        f: T::Fn,
        items: impl IntoIterator<Item = T>,
        chunksize: Option<usize>,
    ) -> Result<Vec<R>>
    where
        T: StarArgs<R> + Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.map_values(
            Task::star::<T, R>(f),
            items.into_iter().collect(),
            chunksize,
        )
    }

    /// [`starmap`](Pool::starmap) without waiting, as Python's
    /// `starmap_async`.
    ///
    /// ```
    /// let pool = mproc::Pool::new(2)?;
    /// let r = pool.starmap_async(|a: i32, b: i32, c: i32| a * b * c, [(1, 2, 3), (2, 3, 4)])?;
    /// assert_eq!(r.get()?, [6, 24]);
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn starmap_async<T, R>(
        &self,
        f: T::Fn,
        items: impl IntoIterator<Item = T>,
    ) -> Result<AsyncResult<Vec<R>>>
    where
        T: StarArgs<R> + Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + 'static,
    {
        let (inbox, sizes) =
            self.submit_all(Task::star::<T, R>(f), items.into_iter().collect(), None)?;
        Ok(AsyncResult::values(inbox, sizes))
    }
}

impl Pool {
    /// [`starmap_async`](Pool::starmap_async) with a chunksize (`None`:
    /// the default rule) and CPython's `callback` and `error_callback`:
    /// see [`Callbacks`].
    ///
    /// ```
    /// use std::sync::mpsc::channel;
    ///
    /// let pool = mproc::Pool::new(2)?;
    /// let (tx, rx) = channel();
    /// let cb = mproc::Callbacks::new().callback(move |v: &Vec<u32>| tx.send(v.len()).unwrap());
    /// let r = pool.starmap_async_with(|a: u32, b: u32| a + b, [(1, 2), (3, 4)], None, cb)?;
    /// assert_eq!(rx.recv().unwrap(), 2);
    /// assert_eq!(r.get()?, [3, 7]);
    /// # Ok::<(), mproc::Error>(())
    /// ```
    #[doc(alias = "starmap_async")]
    #[doc(alias = "callback")]
    pub fn starmap_async_with<T, R>(
        &self,
        f: T::Fn,
        items: impl IntoIterator<Item = T>,
        chunksize: Option<usize>,
        callbacks: Callbacks<Vec<R>>,
    ) -> Result<AsyncResult<Vec<R>>>
    where
        T: StarArgs<R> + Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.task_async_with(
            Task::star::<T, R>(f),
            items.into_iter().collect(),
            chunksize,
            callbacks,
        )
    }
}
