//! Fuzzes `trousse_builder::fuzzing::wheel`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| trousse_builder::fuzzing::wheel(data));
