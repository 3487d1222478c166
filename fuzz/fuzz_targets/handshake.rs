//! Both halves of the handshake against a peer sending the input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = mproc::__private::fuzz::handshake(data);
});
