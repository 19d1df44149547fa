//! Bad input: each a clear error, its own exit code, and no image left behind.

use std::path::Path;

use crate::common::*;

fn build_fails(ws: &Workspace, spec: &Path) -> (i32, String) {
    let output = ws.path("out.tar");
    let out = run(&mut trousse(&[
        "build",
        spec.to_str().unwrap(),
        "--output",
        &format!("oci-archive:{}", output.display()),
        "--cache-dir",
        &ws.cache(),
    ]));
    assert!(!output.exists(), "a failed build left an image behind");
    let leftovers: Vec<_> = std::fs::read_dir(ws.dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".partial"))
        .collect();
    assert!(leftovers.is_empty(), "partial files left: {leftovers:?}");
    (
        out.status.code().expect("exit code"),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn malformed_yaml_names_the_file_and_line() {
    let ws = Workspace::with_example_channel();
    let spec = ws.path("bad.yml");
    std::fs::write(
        &spec,
        "name: bad\nchannels: [./channel]\ndependencies:\n  - greet\n  oops: [\n",
    )
    .unwrap();
    let (code, err) = build_fails(&ws, &spec);
    assert_eq!(code, 3);
    assert!(err.contains("bad.yml:"), "{err}");
    assert!(err.contains("invalid YAML"), "{err}");
}

#[test]
fn an_invalid_package_spec_names_its_line() {
    let ws = Workspace::with_example_channel();
    let spec = ws.spec("badspec", &["greet", "numpy >>= 1"], "");
    let (code, err) = build_fails(&ws, &spec);
    assert_eq!(code, 3);
    assert!(err.contains("badspec.yml:6:"), "{err}");
    assert!(err.contains("numpy >>= 1"), "{err}");
}

#[test]
fn pip_dependencies_need_python_in_the_environment() {
    let ws = Workspace::with_example_channel();
    let spec = ws.path("pip.yml");
    std::fs::write(
        &spec,
        "channels: [./channel]\ndependencies:\n  - greet\n  - pip:\n    - requests\n",
    )
    .unwrap();
    let (code, err) = build_fails(&ws, &spec);
    assert_eq!(code, 3);
    assert!(
        err.contains("pip.yml:5:") && err.contains("add python"),
        "{err}"
    );
}

#[test]
fn an_unknown_package_is_named() {
    let ws = Workspace::with_example_channel();
    let spec = ws.spec("unknown", &["greet", "no-such-package"], "");
    let (code, err) = build_fails(&ws, &spec);
    assert_eq!(code, 4);
    assert!(err.contains("no package named no-such-package"), "{err}");
}

#[test]
fn unsolvable_pins_print_the_solver_explanation() {
    let ws = Workspace::with_example_channel();
    let spec = ws.spec("pins", &["greet", "greeting-data <1"], "");
    let (code, err) = build_fails(&ws, &spec);
    assert_eq!(code, 4);
    assert!(err.contains("cannot be solved"), "{err}");
    assert!(err.contains("greeting-data"), "{err}");
    assert!(
        err.contains("greeting-data is available as: 1.2"),
        "the versions that exist are named: {err}"
    );
}

#[test]
fn a_missing_channel_is_reported() {
    let ws = Workspace::with_example_channel();
    let spec = ws.path("nochannel.yml");
    std::fs::write(
        &spec,
        "channels:\n  - ./no-such-channel\ndependencies: [greet]\n",
    )
    .unwrap();
    let (code, err) = build_fails(&ws, &spec);
    assert_eq!(code, 3);
    assert!(
        err.contains("nochannel.yml:2:") && err.contains("does not exist"),
        "{err}"
    );

    // a channel URL where nothing answers
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let spec = ws.path("deadchannel.yml");
    std::fs::write(
        &spec,
        format!("channels:\n  - http://127.0.0.1:{port}/conda\ndependencies: [greet]\n"),
    )
    .unwrap();
    let (code, err) = build_fails(&ws, &spec);
    assert_eq!(code, 5);
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
}

fn greet_archive(ws: &Workspace) -> std::path::PathBuf {
    std::fs::read_dir(ws.channel().join("linux-64"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("greet-")
        })
        .unwrap()
}

#[test]
fn a_package_that_does_not_match_its_sha256_is_refused() {
    let ws = Workspace::with_example_channel();
    let spec = ws.spec("tampered", &["greet"], "");
    // a well-formed archive with other content than the index says
    let archive = greet_archive(&ws);
    let tampered = trousse_testkit::example_packages()
        .unwrap()
        .into_iter()
        .find(|p| p.name == "greet")
        .unwrap()
        .file("bin/extra", "not what was indexed\n", 0o644);
    let work = tempfile::tempdir().unwrap();
    let written = trousse_testkit::write_package(
        work.path(),
        &tampered,
        trousse_testkit::ArchiveFormat::TarBz2,
    )
    .unwrap();
    std::fs::copy(written, &archive).unwrap();
    let (code, err) = build_fails(&ws, &spec);
    assert_eq!(code, 6, "{err}");
    assert!(err.contains("greet-1.0") && err.contains("sha256"), "{err}");
}

#[test]
fn a_corrupted_package_archive_is_refused() {
    let ws = Workspace::with_example_channel();
    let spec = ws.spec("corrupt", &["greet"], "");
    let archive = greet_archive(&ws);
    let mut bytes = std::fs::read(&archive).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&archive, bytes).unwrap();
    let (code, err) = build_fails(&ws, &spec);
    assert_eq!(code, 6, "{err}");
    assert!(err.contains("greet-1.0"), "{err}");
}

#[test]
fn an_invalid_lock_file_is_refused() {
    let ws = Workspace::with_example_channel();
    let lock = ws.path("broken.lock");
    std::fs::write(&lock, "version: 6\nenvironments: [\n").unwrap();
    let (code, err) = build_fails(&ws, &lock);
    assert_eq!(code, 3);
    assert!(err.contains("broken.lock"), "{err}");
}

#[test]
fn bad_command_lines_exit_2_and_each_says_what_is_wrong() {
    let ws = Workspace::with_example_channel();
    let spec = ws.spec("cli", &["greet"], "");
    let spec = spec.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["build", spec, "-o", "course2.tar"], "--output"),
        (
            vec!["build", spec, "-o", "oci:x", "--compression", "lzma"],
            "compression",
        ),
        (vec!["build", "no-such.lock", "-o", "oci:x"], "no-such.lock"),
        (
            vec!["build", spec, "-o", "oci:x", "--base", "nope:x"],
            "--base",
        ),
        (
            vec!["token", "create", "--role", "teacher", "--data-dir", "d"],
            "--course",
        ),
    ];
    for (args, mentions) in cases {
        let out = run(trousse(&args));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(mentions), "{args:?}: {err}");
        assert_eq!(
            err.matches("No such file").count().min(1),
            err.matches("No such file").count(),
            "a cause printed twice: {err}"
        );
    }
}

#[test]
fn a_failed_json_build_prints_its_error_as_json() {
    let ws = Workspace::with_example_channel();
    let spec = ws.spec("nojson", &["no-such-package"], "");
    let out = run(trousse(&[
        "build",
        spec.to_str().unwrap(),
        "-o",
        &format!("oci:{}", ws.path("out").display()),
        "--cache-dir",
        &ws.cache(),
        "--json",
    ]));
    assert_eq!(out.status.code(), Some(4));
    let report = report(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(report["error"], "package_not_found", "{report}");
    assert_eq!(report["exit_code"], 4, "{report}");
    assert!(report["message"]
        .as_str()
        .unwrap()
        .contains("no-such-package"));
}

#[test]
fn a_malformed_conda_lock_file_is_recognised_and_refused_at_its_line() {
    let ws = Workspace::with_example_channel();
    let path = ws.path("conda-lock.yml");
    std::fs::write(
        &path,
        "version: 1\nmetadata:\n  platforms: [linux-64]\npackage:\n- name: greet\n  version: '1.0'\n",
    )
    .unwrap();
    let (code, err) = build_fails(&ws, &path);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("not a conda-lock file"), "{err}");
    assert!(err.contains("conda-lock.yml: line "), "{err}");
    assert!(err.contains("channels"), "{err}");
}

#[test]
fn a_base_that_cannot_be_pulled_says_so_after_the_spec_s_own_errors() {
    let ws = Workspace::with_example_channel();
    let unreachable = format!("docker://127.0.0.1:{}/nowhere/base:1", free_port());
    let misspelled = ws.spec("typo", &["greett"], "");
    let out = run(trousse(&[
        "lock",
        misspelled.to_str().unwrap(),
        "-o",
        ws.path("typo.lock").to_str().unwrap(),
        "--base",
        &unreachable,
        "--cache-dir",
        &ws.cache(),
    ]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("greett"), "{err}");

    let fine = ws.spec("fine", &["greet"], "");
    let out = run(trousse(&[
        "build",
        fine.to_str().unwrap(),
        "-o",
        &format!("oci:{}", ws.path("out").display()),
        "--base",
        &unreachable,
        "--cache-dir",
        &ws.cache(),
    ]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(err.contains("nowhere/base"), "{err}");
    assert!(err.contains("--base scratch"), "{err}");
    assert!(err.contains("TROUSSE_DEFAULT_BASE"), "{err}");
}

#[test]
fn a_misspelled_package_is_named_with_the_close_names_the_channel_has() {
    let ws = Workspace::with_example_channel();
    let spec = ws.spec("typo2", &["gret"], "");
    let (code, err) = build_fails(&ws, &spec);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("did you mean 'greet' for 'gret'"), "{err}");
}

/// The small things a first user meets: each with a clear answer and its exit code.
#[test]
fn the_command_lines_small_edges_answer_clearly() {
    let ws = Workspace::with_example_channel();
    let spec = ws.spec(
        "small",
        &["hello-prefix"],
        "trousse:\n  command: [hello]\n  labels: {org.example.course: intro}\n",
    );
    let lock = ws.path("small.lock");
    let out = run_ok(trousse(&[
        "lock",
        spec.to_str().unwrap(),
        "-o",
        lock.to_str().unwrap(),
        "--cache-dir",
        &ws.cache(),
        "--json",
    ]));
    let locked = report(&out);
    assert_eq!(locked["packages"], 2, "{locked}");
    assert_eq!(locked["platforms"], serde_json::json!(["linux-64"]));
    let layout = ws.path("img");
    run_ok(trousse(&[
        "build",
        lock.to_str().unwrap(),
        "--output",
        &format!("oci:{}:t", layout.display()),
        "--cache-dir",
        &ws.cache(),
    ]));
    let image = format!("oci:{}:t", layout.display());

    // inspect shows what the image runs; a reader that stops early is no panic
    let shown = run_ok(trousse(&["inspect", &image]));
    assert!(shown.contains("command:    hello"), "{shown}");
    assert!(
        shown.contains("label:      org.example.course=intro"),
        "{shown}"
    );
    // `true` reads nothing and exits at once: trousse writes into a closed pipe
    let piped = run(std::process::Command::new("bash").args([
        "-c",
        &format!(
            "set -o pipefail; {} inspect {image} | true",
            env!("CARGO_BIN_EXE_trousse")
        ),
    ]));
    assert!(piped.status.success(), "{piped:?}");
    assert!(!String::from_utf8_lossy(&piped.stderr).contains("panicked"));
    let out = run(trousse(&["inspect", "oci:/nonexistent/layout", "--json"]));
    assert_ne!(out.status.code(), Some(0));
    let error = report(&String::from_utf8_lossy(&out.stdout));
    assert!(error["message"].is_string(), "{error}");

    // typos in directories are not new, empty directories
    for args in [
        vec![
            "token",
            "create",
            "--role",
            "admin",
            "--data-dir",
            "/nonexistent/typo",
        ],
        vec![
            "cache",
            "gc",
            "--max-size",
            "1GiB",
            "--cache-dir",
            "/nonexistent/typo",
        ],
    ] {
        let out = run(trousse(&args));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("is not a directory"));
    }
    assert!(!Path::new("/nonexistent/typo").exists());

    // project files and JSON documents are named, not read as requirements
    let pyproject = ws.path("pyproject.toml");
    std::fs::write(
        &pyproject,
        "[project]\nname = \"course\"\ndependencies = [\"numpy\"]\n",
    )
    .unwrap();
    let json_lock = ws.path("conda-lock.json");
    std::fs::write(
        &json_lock,
        r#"{"version": 1, "metadata": {}, "package": []}"#,
    )
    .unwrap();
    for (file, says) in [
        (&pyproject, "pyproject.toml"),
        (&json_lock, "conda-lock file in JSON"),
    ] {
        let (code, stderr) = build_fails(&ws, file);
        assert_eq!(code, 3, "{stderr}");
        assert!(stderr.contains(says), "{stderr}");
        assert!(!stderr.contains("invalid requirement"), "{stderr}");
    }

    // a service that listens everywhere needs the name clients pull from
    let out = run(trousse(&[
        "serve",
        "--listen",
        "0.0.0.0:0",
        "--data-dir",
        ws.path("data").to_str().unwrap(),
    ]));
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--public-host"));
}
