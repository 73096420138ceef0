//! Fuzz target: see `herald_fuzz::last_event_id`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| herald_fuzz::last_event_id(data));
