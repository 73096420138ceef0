//! Fuzz target: see `herald_fuzz::batch`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| herald_fuzz::batch(data));
