//! Fuzzes `trousse_builder::fuzzing::paths_json`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| trousse_builder::fuzzing::paths_json(data));
