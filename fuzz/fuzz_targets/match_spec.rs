//! Fuzzes `trousse_builder::fuzzing::match_spec`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| trousse_builder::fuzzing::match_spec(data));
