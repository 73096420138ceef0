//! Fuzz target: see `herald_fuzz::ws_frame`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| herald_fuzz::ws_frame(data));
