//! The frame decoder: a first byte picking the size limit, then frames.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = mproc::__private::fuzz::frames(data);
});
