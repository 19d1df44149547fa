//! End-to-end: `trousse build` on a synthetic channel, read back by skopeo,
//! umoci and the Docker Engine.

use std::{os::unix::process::CommandExt, process::Command};

use crate::common::*;

#[test]
fn skopeo_and_umoci_read_the_image_with_relocated_prefixes() {
    let ws = Workspace::with_example_channel();
    let spec = ws.spec("course", &["hello-prefix", "greet", "pyhello"], "");
    let layout = ws.path("image");
    let out = run_ok(trousse(&[
        "build",
        spec.to_str().unwrap(),
        "--output",
        &format!("oci:{}:course", layout.display()),
        "--cache-dir",
        &ws.cache(),
        "--json",
    ]));
    let report = report(&out);
    let digest = report["digest"].as_str().unwrap().to_string();
    assert!(digest.starts_with("sha256:"));
    // five packages, one layer each, plus the environment layer
    assert_eq!(report["layers"], 6);
    assert_eq!(report["cached_layers"], 0);
    for stage in ["solve", "fetch", "stage", "layer", "image", "publish"] {
        assert!(report["seconds"][stage].is_number(), "no time for {stage}");
    }

    require("skopeo");
    let inspect: serde_json::Value = serde_json::from_str(&run_ok(
        Command::new("skopeo").args(["inspect", &format!("oci:{}:course", layout.display())]),
    ))
    .unwrap();
    assert_eq!(inspect["Digest"], digest);
    assert_eq!(inspect["Layers"].as_array().unwrap().len(), 6);
    assert_eq!(inspect["Architecture"], "amd64");
    assert!(
        inspect["Labels"]["io.trousse.lock.sha256"]
            .as_str()
            .unwrap()
            .len()
            == 64
    );

    let rootfs = umoci_unpack(&layout, "course", ws.dir.path());
    let prefix = rootfs.join("opt/conda");
    let placeholder = trousse_testkit::placeholder();

    let greet = std::fs::read_to_string(prefix.join("bin/greet")).unwrap();
    assert!(greet.contains("greetings from /opt/conda\""), "{greet}");
    assert!(!greet.contains(&placeholder));

    let binary = std::fs::read(prefix.join("bin/hello-prefix")).unwrap();
    let needle = b"/opt/conda\0";
    assert!(
        binary.windows(needle.len()).any(|w| w == needle),
        "binary prefix not replaced"
    );
    assert!(!binary
        .windows(placeholder.len())
        .any(|w| w == placeholder.as_bytes()));

    let site = prefix.join("lib/python3.12/site-packages/pyhello/__init__.py");
    assert!(site.is_file(), "noarch python file not in site-packages");
    let entry_point = std::fs::read_to_string(prefix.join("bin/pyhello")).unwrap();
    assert!(
        entry_point.starts_with("#!/opt/conda/bin/python"),
        "{entry_point}"
    );
    assert_eq!(
        std::fs::read_link(prefix.join("share/greeting-data/latest.txt")).unwrap(),
        std::path::PathBuf::from("message.txt")
    );

    let meta = std::fs::read_to_string(prefix.join("conda-meta/greet-1.0-h0_0.json")).unwrap();
    assert!(!meta.contains("extracted_package_dir"), "{meta}");
    assert!(
        !meta.contains(&ws.cache()),
        "the build cache path leaked into conda-meta"
    );
    assert!(!meta.contains("package_tarball_full_path"), "{meta}");
    let history = std::fs::read_to_string(prefix.join("conda-meta/history")).unwrap();
    assert!(history.contains("::greet-1.0-h0_0"));
    let lock = std::fs::read_to_string(prefix.join("conda-meta/trousse.lock")).unwrap();
    assert!(lock.contains("hello-prefix"));

    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap();
    assert!(
        passwd.contains("jovyan:x:1000:100::/home/jovyan:"),
        "{passwd}"
    );
    let group = std::fs::read_to_string(rootfs.join("etc/group")).unwrap();
    assert!(group.contains("users:x:100:"), "{group}");
    assert!(rootfs.join("home/jovyan").is_dir());

    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(ws.dir.path().join("bundle/config.json")).unwrap(),
    )
    .unwrap();
    let env = config["process"]["env"].to_string();
    assert!(env.contains("PATH=/opt/conda/bin:"), "{env}");
    assert!(env.contains("CONDA_PREFIX=/opt/conda"));

    // trousse inspect names the packages of each layer
    let listing = run_ok(trousse(&[
        "inspect",
        &format!("oci:{}:course", layout.display()),
    ]));
    assert!(listing.contains("hello-prefix-1.0-h0_0"), "{listing}");
    assert!(listing.contains("(base or environment files)"));
}

#[test]
fn docker_runs_a_program_from_the_environment() {
    require("docker");
    let ws = Workspace::with_example_channel();
    let spec = ws.spec(
        "docker-run",
        &["hello-prefix"],
        "trousse:\n  prefix: /srv/course-env\n  command: [hello-prefix]\n",
    );
    let archive = ws.path("image.tar");
    let tag = format!("trousse-test/docker-run:{}", std::process::id());
    run_ok(trousse(&[
        "build",
        spec.to_str().unwrap(),
        "--output",
        &format!("docker-archive:{}:{tag}", archive.display()),
        "--cache-dir",
        &ws.cache(),
    ]));
    run_ok(Command::new("docker").arg("load").arg("-i").arg(&archive));
    let out = run(Command::new("docker").args(["run", "--rm", &tag]));
    let _ = Command::new("docker").args(["rmi", "-f", &tag]).output();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "hello from /srv/course-env"
    );
}

#[test]
fn builds_of_one_lock_are_identical_across_caches_umask_and_timezone() {
    let ws = Workspace::with_example_channel();
    let spec = ws.spec("repro", &["hello-prefix", "greet", "pyhello"], "");
    let lock = ws.lock(&spec, "repro");
    let build = |n: u32, umask: u32, tz: &str| {
        let cache = ws.path(&format!("cache-{n}"));
        let mut cmd = trousse(&[
            "build",
            lock.to_str().unwrap(),
            "--output",
            &format!(
                "oci-archive:{}",
                ws.path(&format!("image-{n}.tar")).display()
            ),
            "--cache-dir",
            cache.to_str().unwrap(),
            "--json",
        ]);
        cmd.env("TZ", tz);
        unsafe {
            cmd.pre_exec(move || {
                libc_umask(umask);
                Ok(())
            });
        }
        report(&run_ok(&mut cmd))["digest"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let first = build(1, 0o022, "UTC");
    let second = build(2, 0o077, "Pacific/Kiritimati");
    assert_eq!(first, second);
    let a = std::fs::read(ws.path("image-1.tar")).unwrap();
    let b = std::fs::read(ws.path("image-2.tar")).unwrap();
    assert!(a == b, "the archives differ byte for byte");
}

fn libc_umask(mask: u32) {
    extern "C" {
        fn umask(mask: u32) -> u32;
    }
    unsafe {
        umask(mask);
    }
}

#[test]
fn a_second_environment_reuses_the_layers_it_shares() {
    let ws = Workspace::with_example_channel();
    let first = ws.spec("first", &["hello-prefix", "greet"], "");
    let second = ws.spec("second", &["hello-prefix", "pyhello"], "");
    let build = |spec: &std::path::Path, out: &str| {
        report(&run_ok(trousse(&[
            "build",
            spec.to_str().unwrap(),
            "--output",
            &format!("oci:{}", ws.path(out).display()),
            "--cache-dir",
            &ws.cache(),
            "--json",
        ])))
    };
    let a = build(&first, "a");
    assert_eq!(a["cached_layers"], 0);
    let b = build(&second, "b");
    // hello-prefix and greeting-data are shared; python and pyhello are new
    assert_eq!(b["layers"], 5);
    assert_eq!(b["cached_layers"], 2);
    let again = build(&second, "c");
    assert_eq!(
        again["cached_layers"], 4,
        "only the environment layer is rewritten"
    );
    assert_eq!(again["digest"], b["digest"]);
}

#[test]
fn several_platforms_give_an_index_with_one_manifest_each() {
    let ws = Workspace::with_example_channel();
    let aarch64 = trousse_testkit::PackageSpec::new("python", "3.12.0")
        .file("bin/python3.12", "#!/bin/sh\n", 0o755)
        .timestamp(1_700_000_400);
    let mut aarch64 = aarch64;
    aarch64.subdir = "linux-aarch64".into();
    ws.add_packages(&[aarch64]);
    let spec = ws.spec(
        "multi",
        &["pyhello", "greeting-data"],
        "trousse:\n  platforms: [linux-64, linux-aarch64]\n",
    );
    let layout = ws.path("multi");
    let rep = report(&run_ok(trousse(&[
        "build",
        spec.to_str().unwrap(),
        "--output",
        &format!("oci:{}", layout.display()),
        "--cache-dir",
        &ws.cache(),
        "--json",
    ])));
    assert_eq!(rep["platforms"].as_array().unwrap().len(), 2);
    require("skopeo");
    let raw: serde_json::Value = serde_json::from_str(&run_ok(Command::new("skopeo").args([
        "inspect",
        "--raw",
        &format!("oci:{}:latest", layout.display()),
    ])))
    .unwrap();
    assert_eq!(raw["mediaType"], "application/vnd.oci.image.index.v1+json");
    let archs: Vec<_> = raw["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["platform"]["architecture"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(archs, ["amd64", "arm64"]);
    // docker archives hold one platform: refused with a clear error
    let out = run(&mut trousse(&[
        "build",
        spec.to_str().unwrap(),
        "--output",
        &format!("docker-archive:{}", ws.path("multi.tar").display()),
        "--cache-dir",
        &ws.cache(),
    ]));
    assert_eq!(out.status.code(), Some(7));
    assert!(String::from_utf8_lossy(&out.stderr).contains("one platform"));
    assert!(!ws.path("multi.tar").exists());
}

#[test]
fn one_name_version_build_on_two_platforms_keeps_both_packages_cached() {
    let ws = Workspace::with_example_channel();
    let mut arm = trousse_testkit::PackageSpec::new("same", "1.0").file(
        "share/same/arch.txt",
        "aarch64\n",
        0o644,
    );
    arm.subdir = "linux-aarch64".into();
    let x86 = trousse_testkit::PackageSpec::new("same", "1.0").file(
        "share/same/arch.txt",
        "x86_64\n",
        0o644,
    );
    ws.add_packages(&[x86, arm]);
    let spec = ws.spec(
        "both",
        &["same"],
        "trousse:\n  platforms: [linux-64, linux-aarch64]\n",
    );
    for _ in 0..2 {
        let mut cmd = trousse(&[
            "build",
            spec.to_str().unwrap(),
            "--output",
            &format!("oci:{}", ws.path("both").display()),
            "--cache-dir",
            &ws.cache(),
        ]);
        cmd.env("RUST_LOG", "warn");
        let out = run(cmd);
        assert!(out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !err.contains("hash mismatch"),
            "the two packages collide: {err}"
        );
    }
    for (subdir, arch) in [("linux-64", "x86_64"), ("linux-aarch64", "aarch64")] {
        let file = ws
            .path("cache/packages")
            .join(subdir)
            .join("same-1.0-h0_0/share/same/arch.txt");
        assert_eq!(
            std::fs::read_to_string(&file).unwrap().trim(),
            arch,
            "{}",
            file.display()
        );
    }
}

/// A pixi-style lock with two environments, `default` (greet) and `science` (pyhello).
fn two_environment_lock(ws: &Workspace) -> std::path::PathBuf {
    let a = std::fs::read_to_string(ws.lock(&ws.spec("envs-a", &["greet"], ""), "envs-a")).unwrap();
    let b =
        std::fs::read_to_string(ws.lock(&ws.spec("envs-b", &["pyhello"], ""), "envs-b")).unwrap();
    let (a_head, a_packages) = a.split_once("\npackages:\n").unwrap();
    let (b_head, b_packages) = b.split_once("\npackages:\n").unwrap();
    let (_, b_env) = b_head.split_once("\n  default:\n").unwrap();
    let text = format!("{a_head}\n  science:\n{b_env}\npackages:\n{a_packages}{b_packages}");
    let path = ws.path("two.lock");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn an_environment_of_a_pixi_lock_is_chosen_with_environment() {
    let ws = Workspace::with_example_channel();
    let lock = two_environment_lock(&ws);
    let build = |environment: Option<&str>| {
        let mut args = vec![
            "build".to_string(),
            lock.display().to_string(),
            "--output".into(),
            format!("oci:{}", ws.path("envs").display()),
            "--cache-dir".into(),
            ws.cache(),
            "--json".into(),
        ];
        if let Some(name) = environment {
            args.extend(["--environment".into(), name.into()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(trousse(&args))
    };
    let default = report(&String::from_utf8_lossy(&build(None).stdout));
    let science = report(&String::from_utf8_lossy(&build(Some("science")).stdout));
    assert_eq!(default["packages"], 2, "greet and greeting-data: {default}");
    assert_eq!(science["packages"], 2, "pyhello and python: {science}");
    assert_ne!(default["digest"], science["digest"]);
    let missing = build(Some("nope"));
    let err = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(missing.status.code(), Some(3), "{err}");
    assert!(err.contains("default, science"), "{err}");
}
