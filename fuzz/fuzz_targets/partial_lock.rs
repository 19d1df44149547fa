//! Fuzzes `trousse_builder::fuzzing::partial_lock`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| trousse_builder::fuzzing::partial_lock(data));
