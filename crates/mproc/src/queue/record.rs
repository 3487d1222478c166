//! Records in the ring: the one or two pieces a copy takes (split at the
//! ring's end; `sys::ring` splits again at its segments), copies in and out,
//! and a record's checked header. The record format itself is in
//! `header.rs`, beside the table of the shared words.

use super::core::Core;
use super::header::{decode_header, Kind};
use crate::error::{Error, Result};

impl Core {
    /// The one or two pieces (ring offset, length) of `n` bytes at `at`.
    #[inline]
    fn pieces(&self, at: u32, n: usize) -> [(usize, usize); 2] {
        let pos = (at & (self.cap - 1)) as usize;
        let first = n.min(self.cap as usize - pos);
        [(pos, first), (0, n - first)]
    }

    /// Copies `src` into the ring at `at` (mapping the segments it
    /// touches in this process first, which may fail).
    #[inline]
    pub(super) fn write(&self, at: u32, src: &[u8]) -> Result<()> {
        let [(a, n), (b, _)] = self.pieces(at, src.len());
        let ring = &self.ring.0;
        let mut r = ring.write(a, &src[..n]);
        if n < src.len() {
            r = r.and_then(|()| ring.write(b, &src[n..]));
        }
        r.map_err(Error::io("cannot map a queue's ring"))
    }

    /// Runs `f` on the `n` ring bytes at `at` as one slice, to be filled in
    /// place: `None` (`f` not run) if they are not one piece of one mapping
    /// (they wrap at the ring's end or cross a segment's) or this process
    /// lends a slice of the ring already (see `Ring::with_slice_mut`).
    #[inline]
    pub(super) fn fill<R>(
        &self,
        at: u32,
        n: usize,
        f: impl FnOnce(&mut [u8]) -> R,
    ) -> Result<Option<R>> {
        let pos = (at & (self.cap - 1)) as usize;
        if n > self.cap as usize - pos {
            return Ok(None);
        }
        self.ring
            .0
            .with_slice_mut(pos, n, f)
            .map_err(Error::io("cannot map a queue's ring"))
    }

    #[inline]
    pub(super) fn read(&self, at: u32, dst: &mut [u8]) -> Result<()> {
        let [(a, n), (b, _)] = self.pieces(at, dst.len());
        let (first, second) = dst.split_at_mut(n);
        let ring = &self.ring.0;
        let mut r = ring.read(a, first);
        if !second.is_empty() {
            r = r.and_then(|()| ring.read(b, second));
        }
        r.map_err(Error::io("cannot map a queue's ring"))
    }

    #[inline]
    pub(super) fn append(&self, at: u32, n: usize, out: &mut Vec<u8>) -> Result<()> {
        for (offset, len) in self.pieces(at, n) {
            if len > 0 {
                self.ring
                    .0
                    .append_to(offset, len, out)
                    .map_err(Error::io("cannot map a queue's ring"))?;
            }
        }
        Ok(())
    }

    /// The kind and payload length of the record at `at`, where `used`
    /// bytes are published from it (checked: see `decode_header`).
    #[inline]
    pub(super) fn record_at(&self, at: u32, used: u32) -> Result<(Kind, u32)> {
        let mut h = [0u8; 8];
        self.read(at, &mut h)?;
        decode_header(h, used)
    }
}
