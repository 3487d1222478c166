//! Shared memory: a `memfd` mapped `MAP_SHARED`.
//!
//! Anonymous shared memory dies with the last process that holds its
//! descriptor or mapping, so a crash leaks nothing.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;

use rustix::fs::{fstat, ftruncate, memfd_create, MemfdFlags};
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
    /// Creates a zero-filled region of `len` bytes.
    pub(crate) fn create(name: &str, len: usize) -> io::Result<Self> {
        let fd = memfd_create(name, MemfdFlags::CLOEXEC)?;
        ftruncate(&fd, len as u64)?;
        Self::map(fd, len)
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
    pub(crate) fn len(&self) -> usize {
        self.len
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
