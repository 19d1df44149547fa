//! The local cache: `trousse cache gc` evicts the least recently used entries,
//! and builds and garbage collections sharing one cache directory are safe.

use std::{collections::HashSet, os::unix::fs::MetadataExt, path::Path};

use crate::common::*;

/// Bytes the files under `dir` hold, each file (inode) counted once.
fn cache_bytes(dir: &Path) -> u64 {
    let mut seen = HashSet::new();
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file() && seen.insert((m.dev(), m.ino())))
        .map(|m| m.len())
        .sum()
}

fn build(ws: &Workspace, input: &Path, output: &str) -> serde_json::Value {
    report(&run_ok(trousse(&[
        "build",
        input.to_str().unwrap(),
        "--output",
        output,
        "--cache-dir",
        &ws.cache(),
        "--json",
    ])))
}

fn gc(ws: &Workspace, max_size: &str) -> serde_json::Value {
    report(&run_ok(trousse(&[
        "cache",
        "gc",
        "--max-size",
        max_size,
        "--cache-dir",
        &ws.cache(),
        "--json",
    ])))
}

#[test]
fn gc_evicts_the_least_recently_used_and_never_changes_an_image() {
    let ws = Workspace::with_example_channel();
    let first = ws.spec("first", &["hello-prefix", "greet"], "");
    let second = ws.spec("second", &["pyhello"], "");
    let first_oci = format!("oci:{}", ws.path("first").display());
    let second_oci = format!("oci:{}", ws.path("second").display());
    let built_first = build(&ws, &first, &first_oci);
    build(&ws, &second, &second_oci);
    let warm_second = build(&ws, &second, &second_oci);
    let second_layers = warm_second["layers"].as_u64().unwrap();
    assert!(second_layers >= 2);

    let cache = Path::new(&ws.cache()).to_path_buf();
    let full = cache_bytes(&cache);
    assert!(full > 0);
    let kept = gc(&ws, &full.to_string());
    assert_eq!(
        kept["entries_removed"], 0,
        "a cache within its size keeps everything"
    );
    assert_eq!(
        kept["bytes_before"], full,
        "sizes count hard-linked files once"
    );

    // one byte less: only the least recently used go, and they are the first build's
    let report = gc(&ws, &(full - 1).to_string());
    assert!(report["entries_removed"].as_u64().unwrap() >= 1);
    assert!(report["bytes_after"].as_u64().unwrap() < full);
    assert_eq!(cache_bytes(&cache), report["bytes_after"].as_u64().unwrap());
    let again_second = build(&ws, &second, &second_oci);
    assert_eq!(
        again_second["cached_layers"], warm_second["cached_layers"],
        "the most recently used build lost nothing"
    );
    assert_eq!(again_second["digest"], warm_second["digest"]);

    // everything goes; the next build starts from nothing and makes the same image
    let emptied = gc(&ws, "0");
    assert_eq!(emptied["bytes_after"], 0);
    assert_eq!(cache_bytes(&cache), 0);
    let rebuilt = build(&ws, &first, &first_oci);
    assert_eq!(rebuilt["cached_layers"], 0);
    assert_eq!(rebuilt["digest"], built_first["digest"]);
}

#[test]
fn concurrent_builds_and_a_gc_sharing_one_cache_all_succeed() {
    let ws = Workspace::with_example_channel();
    let spec = ws.spec("shared", &["hello-prefix", "greet", "pyhello"], "");
    let lock = ws.path("shared.lock");
    run_ok(trousse(&[
        "lock",
        spec.to_str().unwrap(),
        "-o",
        lock.to_str().unwrap(),
        "--cache-dir",
        &ws.path("lock-cache").display().to_string(),
    ]));
    let cache = ws.cache();
    let spawn = |args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        trousse(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let builds: Vec<_> = (0..3)
        .map(|i| {
            spawn(vec![
                "build".into(),
                lock.display().to_string(),
                "--output".into(),
                format!("oci:{}", ws.path(&format!("out-{i}")).display()),
                "--cache-dir".into(),
                cache.clone(),
            ])
        })
        .collect();
    let collector = spawn(vec![
        "cache".into(),
        "gc".into(),
        "--max-size".into(),
        "0".into(),
        "--cache-dir".into(),
        cache.clone(),
    ]);
    let mut digests = HashSet::new();
    for child in builds {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        digests.insert(String::from_utf8_lossy(&out.stdout).trim().to_string());
    }
    let out = collector.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(digests.len(), 1, "one lock, one image: {digests:?}");
    // and what a build reads from the cache afterwards is still whole
    let after = build(&ws, &lock, &format!("oci:{}", ws.path("after").display()));
    assert!(digests.contains(after["digest"].as_str().unwrap()));
}

#[test]
fn a_bad_size_is_refused_with_the_flag_named() {
    let ws = Workspace::with_example_channel();
    let out = run(trousse(&[
        "cache",
        "gc",
        "--max-size",
        "lots",
        "--cache-dir",
        &ws.cache(),
    ]));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--max-size") && err.contains("lots"), "{err}");
}
