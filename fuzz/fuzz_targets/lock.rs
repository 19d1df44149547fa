//! Fuzzes `trousse_builder::fuzzing::lock`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| trousse_builder::fuzzing::lock(data));
