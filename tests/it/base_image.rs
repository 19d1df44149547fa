//! A local base image (`--base oci:DIR:TAG`): its layers pass through
//! untouched and its /etc/passwd is merged, not replaced.

use std::process::Command;

use crate::common::*;

fn layer_digests(image: &str) -> Vec<String> {
    let raw: serde_json::Value = serde_json::from_str(&run_ok(Command::new("skopeo").args([
        "inspect",
        "--tls-verify=false",
        "--raw",
        image,
    ])))
    .unwrap();
    raw["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_local_base_image_is_layered_under_the_environment() {
    require("skopeo");
    require("docker");
    let ws = Workspace::with_example_channel();
    let base = busybox_base(ws.dir.path());
    let base_ref = format!("oci:{}:bb", base.display());
    let base_layers = layer_digests(&base_ref);
    assert_eq!(base_layers.len(), 1);

    let spec = ws.spec(
        "on-busybox",
        &["greet"],
        "trousse:\n  command: [sh, -c, 'greet; id']\n",
    );
    let layout = ws.path("image");
    run_ok(trousse(&[
        "build",
        spec.to_str().unwrap(),
        "--base",
        &base_ref,
        "--output",
        &format!("oci:{}", layout.display()),
        "--cache-dir",
        &ws.cache(),
    ]));
    let layers = layer_digests(&format!("oci:{}:latest", layout.display()));
    assert_eq!(
        layers[0], base_layers[0],
        "the base layer is not passed through"
    );
    assert_eq!(layers.len(), 1 + 2 + 1);

    let rootfs = umoci_unpack(&layout, "latest", ws.dir.path());
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap();
    assert_eq!(
        passwd,
        "root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/:/bin/false\njovyan:x:1000:100::/home/jovyan:/bin/sh\n"
    );
    let group = std::fs::read_to_string(rootfs.join("etc/group")).unwrap();
    assert_eq!(group, "root:x:0:\nusers:x:100:\n");

    let archive = ws.path("image.tar");
    let tag = format!("trousse-test/on-busybox:{}", std::process::id());
    run_ok(trousse(&[
        "build",
        spec.to_str().unwrap(),
        "--base",
        &base_ref,
        "--output",
        &format!("docker-archive:{}:{tag}", archive.display()),
        "--cache-dir",
        &ws.cache(),
    ]));
    run_ok(Command::new("docker").arg("load").arg("-i").arg(&archive));
    let out = run(Command::new("docker").args(["run", "--rm", &tag]));
    let env =
        run(Command::new("docker").args(["run", "--rm", &tag, "sh", "-c", "echo $BASE_VAR $PATH"]));
    let _ = Command::new("docker").args(["rmi", "-f", &tag]).output();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("greetings from /opt/conda"), "{stdout}");
    assert!(stdout.contains("shared data"), "{stdout}");
    assert!(
        stdout.contains("uid=1000(jovyan) gid=100(users)"),
        "{stdout}"
    );
    assert_eq!(
        String::from_utf8_lossy(&env.stdout).trim(),
        "kept /opt/conda/bin:/usr/bin:/bin"
    );
}

#[test]
fn a_registry_base_image_is_mounted_not_uploaded_again() {
    require("skopeo");
    let registry = RegistryServer::start(None);
    let ws = Workspace::with_example_channel();
    let base = busybox_base(ws.dir.path());
    let base_ref = format!("{}/bases/busybox:1", registry.host);
    run_ok(Command::new("skopeo").args([
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{}:bb", base.display()),
        &format!("docker://{base_ref}"),
    ]));
    let spec = ws.spec("on-registry-base", &["greet"], "");
    let rep = report(&run_ok(trousse(&[
        "build",
        spec.to_str().unwrap(),
        "--base",
        &format!("docker://{base_ref}"),
        "--output",
        &format!("docker://{}/courses/on-base:1", registry.host),
        "--cache-dir",
        &ws.cache(),
        "--json",
    ])));
    assert_eq!(
        rep["push"]["blobs_mounted"], 1,
        "the base layer is mounted from its repository"
    );
    assert_eq!(
        rep["push"]["blobs_uploaded"],
        2 + 1 + 1,
        "greet, greeting-data, environment layer, config"
    );
    let layers = layer_digests(&format!("docker://{}/courses/on-base:1", registry.host));
    assert_eq!(
        layers[0],
        layer_digests(&format!("oci:{}:bb", base.display()))[0]
    );
    let rootfs = {
        let layout = ws.path("pulled");
        run_ok(Command::new("skopeo").args([
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{}/courses/on-base:1", registry.host),
            &format!("oci:{}:x", layout.display()),
        ]));
        umoci_unpack(&layout, "x", ws.dir.path())
    };
    assert!(std::fs::read_to_string(rootfs.join("etc/passwd"))
        .unwrap()
        .contains("daemon:x:1:1"));
    assert!(rootfs.join("bin/busybox").is_file());
}

#[test]
fn the_base_image_declares_the_glibc_the_solve_assumes() {
    let ws = Workspace::with_example_channel();
    ws.add_packages(
        &[trousse_testkit::PackageSpec::new("needs-new-glibc", "1.0")
            .noarch("generic")
            .depends("__glibc >=2.35")
            .file("share/needs-new-glibc/README", "needs glibc 2.35\n", 0o644)],
    );
    // a base that declares glibc 2.39, the way Ubuntu 24.04 would
    let base_spec = ws.spec(
        "glibc-base",
        &["greeting-data"],
        "trousse:\n  labels:\n    io.trousse.virtual-packages: \"__glibc=2.39 __unix\"\n",
    );
    let base = format!("oci:{}:base", ws.path("base").display());
    run_ok(trousse(&[
        "build",
        base_spec.to_str().unwrap(),
        "--output",
        &base,
        "--cache-dir",
        &ws.cache(),
    ]));
    let lock = |name: &str, extra: &str| {
        let spec = ws.spec(name, &["needs-new-glibc"], extra);
        run(trousse(&[
            "lock",
            spec.to_str().unwrap(),
            "-o",
            ws.path(&format!("{name}.lock")).to_str().unwrap(),
            "--cache-dir",
            &ws.cache(),
        ]))
    };

    let on_base = lock("on-base", &format!("trousse:\n  base: {base}\n"));
    assert!(
        on_base.status.success(),
        "the base's glibc 2.39 satisfies it"
    );
    let lock_text = std::fs::read_to_string(ws.path("on-base.lock")).unwrap();
    assert!(lock_text.contains("needs-new-glibc"));

    let on_scratch = lock("on-scratch", "");
    assert_eq!(
        on_scratch.status.code(),
        Some(4),
        "the default target glibc is 2.28"
    );
    assert!(String::from_utf8_lossy(&on_scratch.stderr).contains("__glibc"));

    let spec_wins = lock(
        "spec-wins",
        &format!("trousse:\n  base: {base}\n  virtual_packages: [__glibc=2.17]\n"),
    );
    assert_eq!(
        spec_wins.status.code(),
        Some(4),
        "the spec's virtual packages override the base's"
    );

    let bad_label = ws.spec(
        "bad-label",
        &["greeting-data"],
        "trousse:\n  labels:\n    io.trousse.virtual-packages: \"glibc=2.39\"\n",
    );
    let bad_base = format!("oci:{}:bad", ws.path("base").display());
    run_ok(trousse(&[
        "build",
        bad_label.to_str().unwrap(),
        "--output",
        &bad_base,
        "--cache-dir",
        &ws.cache(),
    ]));
    let refused = lock("on-bad-base", &format!("trousse:\n  base: {bad_base}\n"));
    assert_eq!(refused.status.code(), Some(3));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("io.trousse.virtual-packages") && err.contains("glibc=2.39"),
        "{err}"
    );
}
