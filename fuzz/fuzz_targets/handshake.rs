//! Both halves of the handshake against a peer sending the input, and the
//! listener's half as its background acceptor runs it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = mproc::__private::fuzz::handshake(data);
    let _ = mproc::__private::fuzz::polled_handshake(data);
});
