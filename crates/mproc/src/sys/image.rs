//! The running executable: its identity and the addresses of its functions.
//!
//! A function travels to a child as an offset from an anchor function of
//! this crate. Both processes run the same executable (checked through its
//! identity), so the offset names the same code in both, whatever address
//! the loader chose. An offset becomes a function again only through
//! [`super::fnref::FnRef`], which checks that this process vouches for it.

use std::ffi::c_void;
use std::io::Read;
use std::sync::OnceLock;

/// The anchor every offset is measured from.
#[inline(never)]
fn anchor() -> u64 {
    std::hint::black_box(0x6d70_726f_6321)
}

pub(super) fn anchor_addr() -> usize {
    anchor as fn() -> u64 as usize
}

/// The offset of a code address from the anchor.
pub(crate) fn offset_of(addr: usize) -> i64 {
    addr.wrapping_sub(anchor_addr()) as i64
}

/// The executable's identity: its ELF build-id when the linker wrote one,
/// else a hash of the file's contents. Computed once.
pub(crate) fn identity() -> &'static [u8] {
    static ID: OnceLock<Vec<u8>> = OnceLock::new();
    ID.get_or_init(|| build_id().unwrap_or_else(content_hash))
}

fn build_id() -> Option<Vec<u8>> {
    let mut out: Option<Vec<u8>> = None;
    // SAFETY: the callback only reads the program headers the loader hands
    // it, within the bounds they state, and writes through `data`, which
    // points to `out` for the duration of the call.
    unsafe {
        libc::dl_iterate_phdr(
            Some(phdr_callback),
            (&mut out as *mut Option<Vec<u8>>).cast(),
        );
    }
    out
}

unsafe extern "C" fn phdr_callback(
    info: *mut libc::dl_phdr_info,
    _size: usize,
    data: *mut c_void,
) -> i32 {
    // SAFETY: the loader passes a valid `dl_phdr_info`; the first entry is
    // the main executable. `data` is the `Option<Vec<u8>>` from `build_id`.
    unsafe {
        let info = &*info;
        let out = &mut *data.cast::<Option<Vec<u8>>>();
        for i in 0..info.dlpi_phnum as usize {
            let ph = &*info.dlpi_phdr.add(i);
            if ph.p_type != libc::PT_NOTE {
                continue;
            }
            let start = (info.dlpi_addr as usize + ph.p_vaddr as usize) as *const u8;
            let notes = std::slice::from_raw_parts(start, ph.p_memsz as usize);
            if let Some(id) = find_gnu_build_id(notes) {
                *out = Some(id.to_vec());
                break;
            }
        }
    }
    1 // stop after the main executable
}

/// Walks ELF notes for `NT_GNU_BUILD_ID` (type 3, name "GNU").
fn find_gnu_build_id(mut notes: &[u8]) -> Option<&[u8]> {
    let align4 = |n: usize| (n + 3) & !3;
    while notes.len() >= 12 {
        let word = |i: usize| u32::from_ne_bytes(notes[i..i + 4].try_into().unwrap()) as usize;
        let (namesz, descsz, kind) = (word(0), word(4), word(8));
        let name_end = 12 + align4(namesz);
        let desc_end = name_end.checked_add(align4(descsz))?;
        if desc_end > notes.len() {
            return None;
        }
        if kind == 3 && &notes[12..12 + namesz] == b"GNU\0" {
            return Some(&notes[name_end..name_end + descsz]);
        }
        notes = &notes[desc_end..];
    }
    None
}

fn content_hash() -> Vec<u8> {
    // FNV-1a over the executable's bytes: slow, but only for binaries
    // linked without a build-id, and only once per process.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    if let Ok(mut f) = std::fs::File::open("/proc/self/exe") {
        let mut buf = vec![0u8; 1 << 16];
        while let Ok(n) = f.read(&mut buf) {
            if n == 0 {
                break;
            }
            for &b in &buf[..n] {
                h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
            }
        }
    }
    h.to_le_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_stable_and_non_empty() {
        assert!(!identity().is_empty());
        assert_eq!(identity(), identity());
    }
}
