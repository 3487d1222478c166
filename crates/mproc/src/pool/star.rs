//! `starmap`: a function of 1 to 8 arguments over tuples of them.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::callback::Callbacks;
use super::calls::Task;
use super::result::AsyncResult;
use super::wire::Status;
use super::worker::run_items;
use super::Pool;
use crate::error::Result;
use crate::task::FnOffset;

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
    #[doc(hidden)]
    fn addr(f: Self::Fn) -> usize;
    #[doc(hidden)]
    fn call(f: Self::Fn, args: Self) -> R;
}

macro_rules! star_args {
    ($($t:ident),+) => {
        impl<$($t,)+> sealed::Sealed for ($($t,)+) {}
        impl<$($t,)+ R> StarArgs<R> for ($($t,)+) {
            type Fn = fn($($t),+) -> R;
            fn addr(f: Self::Fn) -> usize {
                f as usize
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
pub(crate) fn tuple_runner<T, R>(func: FnOffset, bytes: &[u8], out: &mut Vec<u8>) -> Status
where
    T: StarArgs<R> + DeserializeOwned,
    R: Serialize,
{
    // SAFETY: `func` was taken from a `T::Fn` by `Task::star`, which chose
    // this very runner for the same `T` and `R`.
    let f: T::Fn = unsafe { func.get() };
    run_items(bytes, out, |args: T| T::call(f, args))
}

impl Task {
    pub(crate) fn star<T, R>(f: T::Fn) -> Self
    where
        T: StarArgs<R> + Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + 'static,
    {
        let runner: super::worker::ChunkFn = tuple_runner::<T, R>;
        Task::from_offsets(FnOffset::of(T::addr(f)), FnOffset::of(runner as usize))
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
        Ok(AsyncResult::new(inbox, sizes, |items| {
            items.into_iter().collect()
        }))
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
