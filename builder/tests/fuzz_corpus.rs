//! Replays every fuzz corpus file and every crash the fuzzers found
//! (`fuzz/corpus/TARGET/`, `fuzz/regressions/TARGET/`) through the same entry
//! points, on stable Rust: none may panic.

use std::path::Path;

use trousse_builder::fuzzing::TARGETS;

#[test]
fn every_corpus_and_crash_file_is_handled_without_a_panic() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut replayed = 0;
    for (name, target) in TARGETS {
        for kind in ["corpus", "regressions"] {
            let dir = fuzz.join(kind).join(name);
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                let data = std::fs::read(&path).unwrap();
                let outcome = std::panic::catch_unwind(|| target(&data));
                assert!(outcome.is_ok(), "{name} panics on {}", path.display());
                replayed += 1;
            }
        }
    }
    assert!(
        replayed >= TARGETS.len(),
        "no corpus found under {}",
        fuzz.display()
    );
}
