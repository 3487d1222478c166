//! A queue's ring: a sparse `memfd` mapped in segments of doubling size,
//! each only when a process first touches it.
//!
//! Mapping a 1 GiB ring whole would reserve 1 GiB of address space in every
//! process holding the queue, which a process under `RLIMIT_AS` may not
//! have. Instead the ring is cut into segments of 256 KiB, 256 KiB,
//! 512 KiB, 1 MiB... (each as large as all before it), and each process maps
//! a segment the first time it reads or writes in it: a queue whose
//! consumers keep up costs one 256 KiB mapping per handle, a backlog of
//! `n` bytes at most `2n`. A mapping is never moved nor dropped before the
//! ring is, so the table of segment addresses is read without a lock
//! (one atomic load per copy); mapping a new segment takes a lock.
//!
//! As with [`SharedRegion`](super::shm::SharedRegion), the file is sealed
//! against resizing (a ring received unsealed is refused: a peer that could
//! shrink it would make our accesses fault), and its bytes are only ever
//! copied, never referenced.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::null_mut;
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
use std::sync::Mutex;

use rustix::fs::{
    fallocate, fcntl_add_seals, fcntl_get_seals, fstat, ftruncate, memfd_create, FallocateFlags,
    MemfdFlags, SealFlags,
};
use rustix::mm::{mmap, munmap, MapFlags, ProtFlags};

/// The first segment's size; segment `k > 0` starts at `FIRST << (k - 1)`.
const FIRST: usize = 256 << 10;
/// Segments of a ring of the largest size (1 GiB).
const SEGMENTS: usize = 13;
/// The largest ring.
pub(crate) const MAX_LEN: usize = FIRST << (SEGMENTS - 1);

/// The segment holding byte `pos`: 0 for the first 256 KiB, then one more
/// per doubling.
fn segment(pos: usize) -> usize {
    (usize::BITS - (pos / FIRST).leading_zeros()) as usize
}

/// Where segment `k` starts in the ring, and where it ends (past the ring's
/// end for a ring shorter than the segment).
fn bounds(k: usize) -> (usize, usize) {
    match k {
        0 => (0, FIRST),
        _ => (FIRST << (k - 1), FIRST << k),
    }
}

/// A sparse ring of `len` bytes, mapped segment by segment.
pub(crate) struct Ring {
    fd: OwnedFd,
    len: usize,
    /// Where each segment is mapped in this process; null until it is.
    segments: [AtomicPtr<u8>; SEGMENTS],
    mapping: Mutex<()>,
    /// Set while a thread of this process holds a slice of the ring from
    /// [`Ring::with_slice_mut`]: at most one at a time.
    lent: AtomicBool,
}

// SAFETY: the ring is plain shared memory reached through raw pointers
// only (copies, never references); the table of mappings is atomics.
unsafe impl Send for Ring {}
// SAFETY: as above.
unsafe impl Sync for Ring {}

impl Ring {
    /// A new zero-filled ring of `len` bytes (a power of two, 4 KiB to
    /// [`MAX_LEN`]), sealed against resizing; nothing of it is mapped yet.
    pub(crate) fn create(name: &str, len: usize) -> io::Result<Ring> {
        if !len.is_power_of_two() || !(4096..=MAX_LEN).contains(&len) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "bad ring size"));
        }
        let fd = memfd_create(name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)?;
        ftruncate(&fd, len as u64)?;
        fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL)?;
        Ok(Ring::with_fd(fd, len))
    }

    /// A ring received from another process: its size is the file's, which
    /// must be sealed.
    pub(crate) fn open(fd: OwnedFd) -> io::Result<Ring> {
        let len = fstat(&fd)?.st_size as usize;
        let sealed = fcntl_get_seals(&fd)
            .is_ok_and(|s| s.contains(SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL));
        if !sealed || !len.is_power_of_two() || !(4096..=MAX_LEN).contains(&len) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("a queue's ring of {len} bytes, unsealed or of a bad size"),
            ));
        }
        Ok(Ring::with_fd(fd, len))
    }

    fn with_fd(fd: OwnedFd, len: usize) -> Ring {
        Ring {
            fd,
            len,
            segments: Default::default(),
            mapping: Mutex::new(()),
            lent: AtomicBool::new(false),
        }
    }

    /// The ring's length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The address of segment `k` in this process, mapping it first if no
    /// thread of this process has.
    #[inline]
    fn base(&self, k: usize) -> io::Result<*mut u8> {
        let p = self.segments[k].load(Ordering::Acquire);
        if !p.is_null() {
            return Ok(p);
        }
        self.map(k)
    }

    #[cold]
    fn map(&self, k: usize) -> io::Result<*mut u8> {
        let _one_at_a_time = self.mapping.lock().unwrap_or_else(|e| e.into_inner());
        let p = self.segments[k].load(Ordering::Acquire);
        if !p.is_null() {
            return Ok(p);
        }
        let (start, end) = bounds(k);
        let len = end.min(self.len) - start;
        // SAFETY: a fresh mapping chosen by the kernel (null hint) aliases
        // no Rust object; `start..start + len` lies in the file, whose size
        // is sealed (checked at `open`, set at `create`).
        let p = unsafe {
            mmap(
                null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                &self.fd,
                start as u64,
            )?
        };
        let p = p.cast::<u8>();
        self.segments[k].store(p, Ordering::Release);
        Ok(p)
    }

    /// Runs `each(address, offset in the span, length)` over the pieces of
    /// `pos..pos + n`, one per segment it crosses.
    #[inline]
    fn span(
        &self,
        pos: usize,
        n: usize,
        mut each: impl FnMut(*mut u8, usize, usize),
    ) -> io::Result<()> {
        assert!(
            pos <= self.len && n <= self.len - pos,
            "ring access {pos}+{n} out of bounds ({})",
            self.len
        );
        // Most copies lie in one segment, already mapped.
        let k = segment(pos);
        let (start, end) = bounds(k);
        if pos + n <= end {
            let base = self.base(k)?;
            each(base.wrapping_add(pos - start), 0, n);
            return Ok(());
        }
        let mut done = 0;
        while done < n {
            let at = pos + done;
            let k = segment(at);
            let (start, end) = bounds(k);
            let len = (n - done).min(end - at);
            // In the segment's mapping: `at - start < end - start`.
            let base = self.base(k)?;
            each(base.wrapping_add(at - start), done, len);
            done += len;
        }
        Ok(())
    }

    /// Copies `src` to `pos` (in bounds, or this panics).
    #[inline]
    pub(crate) fn write(&self, pos: usize, src: &[u8]) -> io::Result<()> {
        self.span(pos, src.len(), |p, from, n| {
            // SAFETY: `p..p + n` lies in one live mapping of this ring (see
            // `span`) and is only ever accessed through raw pointers; `src`
            // is a local buffer, so the ranges do not overlap.
            unsafe { std::ptr::copy_nonoverlapping(src.as_ptr().add(from), p, n) }
        })
    }

    /// Copies `dst.len()` bytes from `pos` (in bounds, or this panics).
    /// Another process may be writing them: the caller validates the copy.
    #[inline]
    pub(crate) fn read(&self, pos: usize, dst: &mut [u8]) -> io::Result<()> {
        let out = dst.as_mut_ptr();
        self.span(pos, dst.len(), |p, from, n| {
            // SAFETY: as in `write`, the source lies in one live mapping and
            // the destination in `dst`, a distinct local buffer.
            unsafe { std::ptr::copy_nonoverlapping(p, out.add(from), n) }
        })
    }

    /// Appends `n` bytes from `pos` to `out` (growing it if needed),
    /// without zero-filling the new space first. On an error `out` is as
    /// it was.
    #[inline]
    pub(crate) fn append_to(&self, pos: usize, n: usize, out: &mut Vec<u8>) -> io::Result<()> {
        out.reserve(n);
        let spare: &mut [MaybeUninit<u8>] = &mut out.spare_capacity_mut()[..n];
        let dst = spare.as_mut_ptr().cast::<u8>();
        self.span(pos, n, |p, from, len| {
            // SAFETY: the source lies in one live mapping of this ring (see
            // `span`); the destination is `len` bytes of `spare`, `out`'s
            // own spare capacity.
            unsafe { std::ptr::copy_nonoverlapping(p, dst.add(from), len) }
        })?;
        // SAFETY: `span` returned `Ok` after copying into all `n` bytes of
        // `spare`, which are initialised now.
        unsafe { out.set_len(out.len() + n) };
        Ok(())
    }

    /// Runs `f` on `pos..pos + n` as one slice, for a writer that fills
    /// bytes in place (an encoder) instead of copying them in: `Ok(None)`,
    /// `f` not run, if the bytes cross a segment's end (they are not one
    /// mapping) or another thread of this process holds a slice now.
    ///
    /// The caller must be the only writer of these bytes by its own
    /// protocol (a queue's put-lock holder writing past the published
    /// `tail`, which no consumer reads). Within this process that is also
    /// enforced here (one slice at a time), so no two `&mut` alias; another
    /// process breaking the protocol can only garble the bytes, as it
    /// could through any copy, and the reader checks what it reads.
    #[inline]
    pub(crate) fn with_slice_mut<R>(
        &self,
        pos: usize,
        n: usize,
        f: impl FnOnce(&mut [u8]) -> R,
    ) -> io::Result<Option<R>> {
        assert!(
            pos <= self.len && n <= self.len - pos,
            "ring access {pos}+{n} out of bounds ({})",
            self.len
        );
        let k = segment(pos);
        let (start, end) = bounds(k);
        if pos + n > end.min(self.len) {
            return Ok(None);
        }
        let base = self.base(k)?;
        if self.lent.swap(true, Ordering::Acquire) {
            return Ok(None);
        }
        // SAFETY: `pos - start..pos - start + n` lies in segment `k`'s live
        // mapping (checked above; mappings live as long as `self`); `lent`
        // makes this the only slice of the ring in this process, and the
        // ring's bytes are otherwise only reached through raw-pointer
        // copies, never references; no other process writes these bytes
        // (the caller's protocol, see above).
        let slice = unsafe { std::slice::from_raw_parts_mut(base.add(pos - start), n) };
        struct Lent<'a>(&'a AtomicBool);
        impl Drop for Lent<'_> {
            fn drop(&mut self) {
                self.0.store(false, Ordering::Release);
            }
        }
        let _lent = Lent(&self.lent);
        Ok(Some(f(slice)))
    }

    /// Backs `pos..pos + len` with memory now (`fallocate`), so that later
    /// writes there cannot fault for want of it: `ENOSPC` or `ENOMEM` when
    /// there is none.
    pub(crate) fn reserve(&self, pos: usize, len: usize) -> io::Result<()> {
        assert!(pos <= self.len && len <= self.len - pos);
        super::shm::reserve(&self.fd, pos as u64, len as u64)
    }

    /// Gives the memory behind `pos..pos + len` back to the system
    /// (`fallocate(PUNCH_HOLE)`): the bytes read as zeros afterwards, in
    /// every process, and are backed again when next written. Advice only.
    pub(crate) fn punch_hole(&self, pos: usize, len: usize) {
        assert!(pos <= self.len && len <= self.len - pos);
        let flags = FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE;
        let _ = fallocate(&self.fd, flags, pos as u64, len as u64);
    }

    /// How many segments this process has mapped (for tests).
    #[cfg(test)]
    pub(crate) fn mapped(&self) -> usize {
        self.segments
            .iter()
            .filter(|p| !p.load(Ordering::Relaxed).is_null())
            .count()
    }
}

impl AsFd for Ring {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        for (k, p) in self.segments.iter().enumerate() {
            let p = p.load(Ordering::Acquire);
            if !p.is_null() {
                let (start, end) = bounds(k);
                // SAFETY: mapped by `map` with this address and length; no
                // reference into it outlives the ring (only copies are made).
                let _ = unsafe { munmap(p.cast(), end.min(self.len) - start) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_double() {
        assert_eq!(segment(0), 0);
        assert_eq!(segment(FIRST - 1), 0);
        assert_eq!(segment(FIRST), 1);
        assert_eq!(segment(2 * FIRST - 1), 1);
        assert_eq!(segment(2 * FIRST), 2);
        assert_eq!(segment(4 * FIRST), 3);
        assert_eq!(segment(MAX_LEN - 1), SEGMENTS - 1);
        assert_eq!(bounds(SEGMENTS - 1).1, MAX_LEN);
        for k in 1..SEGMENTS {
            assert_eq!(bounds(k).0, bounds(k - 1).1);
        }
    }

    #[test]
    fn copies_cross_segments_and_map_only_what_they_touch() {
        let r = Ring::create("test-ring", 8 << 20).unwrap();
        assert_eq!(r.mapped(), 0);
        let data: Vec<u8> = (0..3 * FIRST).map(|i| i as u8).collect();
        r.write(FIRST / 2, &data).unwrap(); // segments 0, 1 and 2
        assert_eq!(r.mapped(), 3);
        let mut back = vec![0; data.len()];
        r.read(FIRST / 2, &mut back).unwrap();
        assert_eq!(back, data);
        let mut out = vec![1u8];
        r.append_to(FIRST / 2, 10, &mut out).unwrap();
        assert_eq!(out, [1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
        // One slice at a time, within one segment.
        let nested = r.with_slice_mut(16, 8, |s| {
            s.copy_from_slice(b"in place");
            r.with_slice_mut(64, 8, |_| ()).unwrap()
        });
        assert_eq!(nested.unwrap(), Some(None));
        assert!(r.with_slice_mut(FIRST - 4, 8, |_| ()).unwrap().is_none());
        assert!(r.with_slice_mut(FIRST, 8, |_| ()).unwrap().is_some());
        let mut b = [0u8; 8];
        r.read(16, &mut b).unwrap();
        assert_eq!(&b, b"in place");
        let other = Ring::open(rustix::io::dup(&r.fd).unwrap()).unwrap();
        let mut b = [0u8; 4];
        other.read(FIRST + 1, &mut b).unwrap();
        assert_eq!(b, data[FIRST / 2 + 1..][..4]);
        assert_eq!(other.mapped(), 1);
    }
}
