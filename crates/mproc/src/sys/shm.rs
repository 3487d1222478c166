//! Shared memory: a `memfd` mapped `MAP_SHARED`.
//!
//! Anonymous shared memory dies with the last process that holds its
//! descriptor or mapping, so a crash leaks nothing.
//!
//! A region is sealed against resizing when created: a peer that could
//! shrink the file would make our accesses past its new end fault
//! (`SIGBUS`). Its contents are another matter: any process holding the
//! descriptor may write any byte at any time. So the region hands out no
//! `&[u8]`, only atomics and copies, and callers treat what they read as
//! untrusted.
//!
//! A region is also *reserved* when created ([`reserve`]): its pages are
//! allocated at once, so that running out of memory (a full tmpfs, a
//! memory cgroup's limit) is an error from `create`, not a `SIGBUS` (or an
//! OOM kill) at the first write of some page later.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::AtomicU32;

use rustix::fs::{
    fallocate, fcntl_add_seals, fcntl_get_seals, fstat, ftruncate, memfd_create, FallocateFlags,
    MemfdFlags, SealFlags,
};
use rustix::io::Errno;
use rustix::mm::{mmap, munmap, MapFlags, ProtFlags};

/// A shared mapping of a whole memfd.
pub(crate) struct SharedRegion {
    fd: OwnedFd,
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the region is plain shared memory; every access to its contents
// goes through atomics or through protocols documented by the users of the
// region. The pointer itself may move between threads.
unsafe impl Send for SharedRegion {}
// SAFETY: as above; `&SharedRegion` hands out only raw pointers.
unsafe impl Sync for SharedRegion {}

impl SharedRegion {
    /// Creates a zero-filled region of `len` bytes, sealed against resizing
    /// and [reserved](reserve) whole: an error of kind
    /// [`StorageFull`](io::ErrorKind::StorageFull) if the memory is not
    /// there.
    pub(crate) fn create(name: &str, len: usize) -> io::Result<Self> {
        Self::create_reserving(name, len, len)
    }

    /// As [`create`](Self::create), reserving only the first `reserved`
    /// bytes: the rest is backed page by page as it is first written, and
    /// its user must [`reserve`] a page before writing it (a pipe's
    /// rings).
    pub(crate) fn create_reserving(name: &str, len: usize, reserved: usize) -> io::Result<Self> {
        check_file_size_limit(len as u64)?;
        let fd = memfd_create(name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)?;
        let fd = super::above_stdio(fd)?;
        ftruncate(&fd, len as u64)?;
        reserve(&fd, 0, reserved.min(len) as u64)?;
        fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL)?;
        Self::map(fd, len)
    }

    /// Whether the file can no longer change size (see [`create`]); a region
    /// received from another process should be, before it is trusted not to
    /// fault.
    ///
    /// [`create`]: SharedRegion::create
    pub(crate) fn is_size_sealed(&self) -> bool {
        fcntl_get_seals(&self.fd)
            .is_ok_and(|s| s.contains(SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL))
    }

    /// Maps a region received from another process; its size is the file's.
    pub(crate) fn open(fd: OwnedFd) -> io::Result<Self> {
        let len = fstat(&fd)?.st_size as usize;
        Self::map(fd, len)
    }

    fn map(fd: OwnedFd, len: usize) -> io::Result<Self> {
        if len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "empty shared region",
            ));
        }
        // SAFETY: a fresh mapping chosen by the kernel (null hint) aliases no
        // Rust object; the length matches the file's size.
        let p = unsafe {
            mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                &fd,
                0,
            )?
        };
        let ptr = NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("null mapping"))?;
        Ok(Self { fd, ptr, len })
    }

    /// The first byte of the mapping.
    pub(crate) fn ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// The mapping's length in bytes.
    /// The file's device and inode (`fstat`).
    pub(crate) fn identity(&self) -> io::Result<(u64, u64)> {
        let st = rustix::fs::fstat(&self.fd)?;
        Ok((st.st_dev, st.st_ino))
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Panics unless `offset..offset + n` lies in the mapping: the callers'
    /// layouts are fixed and checked against the length when mapped, so this
    /// catches bugs, never input.
    fn check(&self, offset: usize, n: usize) {
        assert!(
            offset <= self.len && n <= self.len - offset,
            "shared region access {offset}+{n} out of bounds ({})",
            self.len
        );
    }

    /// The 32-bit word at `offset` (in bounds and 4-byte aligned, or this
    /// panics).
    pub(crate) fn atomic_u32(&self, offset: usize) -> &AtomicU32 {
        self.check(offset, 4);
        assert_eq!(offset % 4, 0, "misaligned shared word at {offset}");
        // SAFETY: (1) in bounds and aligned (checked above; the mapping is
        // page-aligned); (2) the mapping lives as long as `&self`; (3) every
        // process touches shared words only with atomic operations, and any
        // bit pattern is a valid `u32`.
        unsafe { &*self.ptr.as_ptr().add(offset).cast::<AtomicU32>() }
    }

    /// Copies `dst.len()` bytes from `offset` (in bounds, or this panics).
    /// Another process may be writing them: the caller validates the copy.
    pub(crate) fn read(&self, offset: usize, dst: &mut [u8]) {
        self.check(offset, dst.len());
        // SAFETY: the source range is in the mapping (checked), the
        // destination is a distinct local buffer, and no Rust reference to
        // the shared bytes exists: they are only ever copied through raw
        // pointers.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.ptr.as_ptr().add(offset),
                dst.as_mut_ptr(),
                dst.len(),
            );
        }
    }

    /// Copies `src` to `offset` (in bounds, or this panics).
    pub(crate) fn write(&self, offset: usize, src: &[u8]) {
        self.check(offset, src.len());
        // SAFETY: the destination range is in the mapping (checked) and is
        // only accessed through raw pointers; `src` is a local buffer, so
        // the ranges do not overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.as_ptr().add(offset), src.len());
        }
    }

    /// Appends `n` bytes from `offset` to `out` (growing it if needed),
    /// without zero-filling the new space first.
    pub(crate) fn append_to(&self, offset: usize, n: usize, out: &mut Vec<u8>) {
        self.check(offset, n);
        out.reserve(n);
        let spare: &mut [MaybeUninit<u8>] = &mut out.spare_capacity_mut()[..n];
        // SAFETY: (1) the source range is in the mapping (checked) and is
        // only accessed through raw pointers; (2) `spare` is `n` bytes of
        // `out`'s own allocation; (3) after the copy those `n` bytes are
        // initialised, so the new length covers initialised bytes only.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.ptr.as_ptr().add(offset),
                spare.as_mut_ptr().cast::<u8>(),
                n,
            );
            out.set_len(out.len() + n);
        }
    }
}

/// Allocates the pages of `offset..offset + len` of the shared-memory file
/// `fd` (`fallocate`, mode 0: the size and the contents do not change), so
/// that writing them later cannot fault for lack of memory.
///
/// Lack of room — `ENOSPC` (the tmpfs behind `/dev/shm` is full) or
/// `ENOMEM` (a memory cgroup's limit, or memory is short) — is an error of
/// kind [`StorageFull`](io::ErrorKind::StorageFull) whatever the errno (the
/// OS error is its inner error), so callers need test only the kind; other
/// errors are the OS's. A file system that cannot reserve (`EOPNOTSUPP`;
/// not tmpfs nor memfd) is not an error: its pages are backed when written,
/// as without this call. An interrupted call is retried.
///
/// Under a memory cgroup that may OOM-kill, the kernel may kill a process
/// of the cgroup (as a page fault would) rather than fail the call.
pub(crate) fn reserve(fd: impl AsFd, offset: u64, len: u64) -> io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    let r = loop {
        match fallocate(&fd, FallocateFlags::empty(), offset, len) {
            Err(Errno::INTR) => {}
            r => break r,
        }
    };
    match r {
        Ok(()) | Err(Errno::OPNOTSUPP) => Ok(()),
        Err(e @ (Errno::NOSPC | Errno::NOMEM)) => Err(io::Error::new(
            io::ErrorKind::StorageFull,
            io::Error::from(e),
        )),
        Err(e) => Err(e.into()),
    }
}

/// `EFBIG` (kind [`FileTooLarge`](io::ErrorKind::FileTooLarge)) if a file
/// of `len` bytes is over this process's file size limit (`RLIMIT_FSIZE`,
/// `ulimit -f`). Call it before `ftruncate`, which would fail the same way
/// but first send the process `SIGXFSZ`, whose default action kills it.
pub(crate) fn check_file_size_limit(len: u64) -> io::Result<()> {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Fsize);
    match limit.current {
        Some(max) if len > max => Err(Errno::FBIG.into()),
        _ => Ok(()),
    }
}

impl AsFd for SharedRegion {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for SharedRegion {
    fn drop(&mut self) {
        // SAFETY: the mapping was made by `map` with this pointer and length
        // and no reference into it outlives `self`.
        let _ = unsafe { munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// Asks the kernel to back the whole 2 MiB pages inside `buf` with huge
/// pages (`MADV_HUGEPAGE`): a large message received into fresh memory then
/// takes a page fault per 2 MiB instead of per 4 KiB. Advice only: failure
/// (no transparent huge pages) changes nothing.
pub(crate) fn advise_huge_pages(buf: &mut Vec<u8>) {
    const HUGE: usize = 2 << 20;
    let start = buf.as_mut_ptr() as usize;
    let end = start + buf.capacity();
    let (first, last) = ((start + HUGE - 1) & !(HUGE - 1), end & !(HUGE - 1));
    if last > first {
        // SAFETY: [first, last) lies inside the vector's allocation, which
        // we own; MADV_HUGEPAGE changes how pages are backed, never their
        // contents or validity.
        unsafe {
            libc::madvise(
                first as *mut libc::c_void,
                last - first,
                libc::MADV_HUGEPAGE,
            )
        };
    }
}
