//! The manager server's request decoder.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = mproc::__private::fuzz::manager_request(data);
});
