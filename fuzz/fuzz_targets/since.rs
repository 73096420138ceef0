//! Fuzz target: see `herald_fuzz::since`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| herald_fuzz::since(data));
