//! Bytes of a mapping that every process only copies, atomically
//! (relaxed), except through the slices whose callers vouch for them:
//! what a `SharedMemory` is made of.

use crate::sys::shm::SharedRegion;

use super::plain;

/// A mapping whose bytes are touched only by relaxed atomic copies
/// ([`read`](Self::read), [`write`](Self::write)), or by the references of
/// [`slice`](Self::slice) and [`slice_mut`](Self::slice_mut), whose
/// callers promise that nothing writes (or, for `slice_mut`, touches) the
/// bytes meanwhile. Other processes may copy the bytes at any time: the
/// copies are atomic so that they race without undefined behaviour.
pub(crate) struct SharedBytes {
    region: SharedRegion,
}

impl SharedBytes {
    pub(crate) fn new(region: SharedRegion) -> Self {
        SharedBytes { region }
    }

    /// The mapping (its descriptor and length).
    pub(crate) fn region(&self) -> &SharedRegion {
        &self.region
    }

    /// The first byte, valid for the region's length while `self` lives.
    pub(crate) fn ptr(&self) -> *mut u8 {
        self.region.ptr()
    }

    /// Panics unless `offset..offset + n` lies in the mapping: callers check
    /// their input first, so this catches bugs, never input.
    fn check(&self, offset: usize, n: usize) {
        let len = self.region.len();
        assert!(
            offset <= len && n <= len - offset,
            "shared bytes {offset}+{n} out of bounds ({len})"
        );
    }

    /// Copies `buf.len()` bytes from `offset` (in bounds, or this panics).
    pub(crate) fn read(&self, offset: usize, buf: &mut [u8]) {
        self.check(offset, buf.len());
        // SAFETY: the range is in the mapping (checked), which lives as
        // long as `self`; no reference into it is alive except those a
        // caller of `slice`/`slice_mut` vouched for; racing writers are why
        // the copy is atomic.
        unsafe { plain::read_bytes(self.ptr().add(offset), buf) };
    }

    /// Copies `data` to `offset` (in bounds, or this panics).
    pub(crate) fn write(&self, offset: usize, data: &[u8]) {
        self.check(offset, data.len());
        // SAFETY: as in `read`.
        unsafe { plain::write_bytes(data, self.ptr().add(offset)) };
    }

    /// All the bytes as a slice.
    ///
    /// # Safety
    ///
    /// While the slice lives, nothing writes the bytes: no process, no
    /// thread, no other handle.
    pub(crate) unsafe fn slice(&self) -> &[u8] {
        // SAFETY: the mapping is `len` bytes long and lives as long as
        // `self`; the absence of writers is the caller's promise.
        unsafe { std::slice::from_raw_parts(self.ptr(), self.region.len()) }
    }

    /// All the bytes as a mutable slice.
    ///
    /// # Safety
    ///
    /// While the slice lives, nothing else reads or writes the bytes: no
    /// process, no thread, no other handle or call.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn slice_mut(&self) -> &mut [u8] {
        // SAFETY: as in `slice`; exclusivity is the caller's promise.
        unsafe { std::slice::from_raw_parts_mut(self.ptr(), self.region.len()) }
    }
}
