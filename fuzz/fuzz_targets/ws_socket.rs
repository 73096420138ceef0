//! Fuzz target: see `herald_fuzz::ws_socket`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| herald_fuzz::ws_socket(data));
