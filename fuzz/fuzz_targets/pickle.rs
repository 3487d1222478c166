//! The pickle decoder: any bytes, decoded as a dynamically shaped value.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = mproc::pickle::loads::<serde_json::Value>(data);
});
