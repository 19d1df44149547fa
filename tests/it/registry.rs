//! Pushing to and building on a real CNCF distribution registry on loopback.

use std::process::Command;

use crate::common::*;

fn build(
    ws: &Workspace,
    spec: &std::path::Path,
    output: &str,
    extra: &[&str],
) -> serde_json::Value {
    let mut args = vec![
        "build",
        spec.to_str().unwrap(),
        "--output",
        output,
        "--json",
    ];
    let cache = ws.cache();
    args.extend(["--cache-dir", cache.as_str()]);
    args.extend(extra);
    report(&run_ok(trousse(&args)))
}

#[test]
fn pushes_only_what_the_registry_lacks_and_docker_runs_the_result() {
    require("skopeo");
    require("docker");
    let registry = RegistryServer::start(None);
    let ws = Workspace::with_example_channel();
    let first = ws.spec(
        "first",
        &["hello-prefix", "greet"],
        "trousse:\n  command: [hello-prefix]\n",
    );
    let lock = ws.path("first.lock");
    run_ok(trousse(&[
        "lock",
        first.to_str().unwrap(),
        "-o",
        lock.to_str().unwrap(),
        "--cache-dir",
        &ws.cache(),
    ]));

    let target = format!("{}/courses/first:2026", registry.host);
    let pool = format!("{}/courses/layers", registry.host);
    let pushed = build(
        &ws,
        &lock,
        &format!("docker://{target}"),
        &["--layer-pool", &pool],
    );
    let local = build(
        &ws,
        &lock,
        &format!("oci:{}", ws.path("local").display()),
        &[],
    );
    assert_eq!(
        pushed["digest"], local["digest"],
        "the pushed digest is the oci: build's"
    );
    // 4 layers + config, all new: uploaded once (into the pool), mounted into the target
    assert_eq!(pushed["push"]["blobs_uploaded"], 5);
    assert_eq!(pushed["push"]["blobs_mounted"], 0);
    assert_eq!(
        registry.stored_blobs(),
        5 + 1,
        "blobs and one manifest, stored once per digest"
    );

    let inspect: serde_json::Value = serde_json::from_str(&run_ok(Command::new("skopeo").args([
        "inspect",
        "--tls-verify=false",
        &format!("docker://{target}"),
    ])))
    .unwrap();
    assert_eq!(inspect["Digest"], pushed["digest"]);

    run_ok(Command::new("docker").args(["pull", &target]));
    let out = run(Command::new("docker").args(["run", "--rm", &target, "hello-prefix"]));
    let _ = Command::new("docker").args(["rmi", "-f", &target]).output();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "hello from /opt/conda"
    );

    // a second environment sharing hello-prefix and greeting-data uploads only its new blobs
    let second = ws.spec("second", &["hello-prefix", "pyhello"], "");
    let before = registry.stored_blobs();
    let rep = build(
        &ws,
        &second,
        &format!("docker://{}/courses/second:2026", registry.host),
        &["--layer-pool", &pool],
    );
    let uploaded = rep["push"]["blobs_uploaded"].as_u64().unwrap() as usize;
    assert_eq!(
        uploaded,
        2 + 1 + 1,
        "python, pyhello, the environment layer and the config"
    );
    assert_eq!(
        rep["push"]["blobs_mounted"], 2,
        "hello-prefix and greeting-data are mounted from the pool"
    );
    // the registry stores new content once: what it gained is what was uploaded, plus one manifest
    assert_eq!(registry.stored_blobs() - before, uploaded + 1);

    // the same build again: nothing built, nothing uploaded, the tag moved
    let again = build(
        &ws,
        &second,
        &format!("docker://{}/courses/second:latest", registry.host),
        &[],
    );
    assert_eq!(again["cached"], true);
    assert_eq!(again["digest"], rep["digest"]);
    assert_eq!(
        again["packages"], rep["packages"],
        "a cached build reports its packages"
    );
    assert_eq!(again["push"]["blobs_uploaded"], 0);
    let moved: serde_json::Value = serde_json::from_str(&run_ok(Command::new("skopeo").args([
        "inspect",
        "--tls-verify=false",
        &format!("docker://{}/courses/second:latest", registry.host),
    ])))
    .unwrap();
    assert_eq!(moved["Digest"], rep["digest"]);
}

#[test]
fn wrong_credentials_are_a_clear_401_without_the_secret() {
    let registry = RegistryServer::start(Some(("teacher", "right-password")));
    let ws = Workspace::with_example_channel();
    let spec = ws.spec("auth", &["greeting-data"], "");
    let docker_config = ws.path("docker");
    std::fs::create_dir_all(&docker_config).unwrap();
    let write_auth = |password: &str| {
        let encoded = {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(format!("teacher:{password}"))
        };
        std::fs::write(
            docker_config.join("config.json"),
            format!(
                r#"{{"auths": {{"{}": {{"auth": "{encoded}"}}}}}}"#,
                registry.host
            ),
        )
        .unwrap();
    };
    let push = |ws: &Workspace| {
        let mut cmd = trousse(&[
            "build",
            spec.to_str().unwrap(),
            "--output",
            &format!("docker://{}/courses/auth:1", registry.host),
            "--cache-dir",
            &ws.cache(),
            "--json",
        ]);
        cmd.env("DOCKER_CONFIG", &docker_config)
            .env_remove("REGISTRY_AUTH_FILE");
        run(cmd)
    };
    write_auth("wrong-password-xyz");
    let out = push(&ws);
    assert_eq!(out.status.code(), Some(7));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("401") && err.contains(&registry.host), "{err}");
    let all = format!("{err}{}", String::from_utf8_lossy(&out.stdout));
    assert!(
        !all.contains("wrong-password-xyz"),
        "the secret was printed"
    );

    write_auth("right-password");
    let out = push(&ws);
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("right-password"));
}

#[test]
fn prebuild_twice_builds_and_uploads_nothing_the_second_time() {
    let registry = RegistryServer::start(None);
    let ws = Workspace::with_example_channel();
    let stacks = ws.path("stacks");
    std::fs::create_dir_all(&stacks).unwrap();
    for (name, deps) in [
        ("intro", "[greet, hello-prefix]"),
        ("python", "[pyhello, hello-prefix]"),
    ] {
        std::fs::write(
            stacks.join(format!("{name}.yml")),
            format!("channels: [../channel]\ndependencies: {deps}\n"),
        )
        .unwrap();
    }
    let prebuild = || -> Vec<serde_json::Value> {
        let out = run_ok(trousse(&[
            "prebuild",
            stacks.to_str().unwrap(),
            "--registry",
            &format!("{}/courses", registry.host),
            "--cache-dir",
            &ws.cache(),
            "--json",
        ]));
        serde_json::from_str(&out).unwrap()
    };
    let first = prebuild();
    assert_eq!(first.len(), 2);
    assert!(first
        .iter()
        .all(|s| s["cached"] == false && s["error"].is_null()));
    // hello-prefix and greeting-data are uploaded once, for the first stack only
    assert!(
        first[1]["bytes_uploaded"].as_u64().unwrap() < first[0]["bytes_uploaded"].as_u64().unwrap()
    );
    let blobs = registry.stored_blobs();
    let second = prebuild();
    assert!(second
        .iter()
        .all(|s| s["cached"] == true && s["bytes_uploaded"] == 0));
    assert_eq!(
        second.iter().map(|s| &s["digest"]).collect::<Vec<_>>(),
        first.iter().map(|s| &s["digest"]).collect::<Vec<_>>()
    );
    assert_eq!(registry.stored_blobs(), blobs);
}

/// A TCP proxy in front of the registry that "kills" it once clients have
/// sent `limit` bytes: open connections are cut and new ones refused until
/// `revive` is called.
struct DyingProxy {
    port: u16,
    down: std::sync::Arc<std::sync::atomic::AtomicBool>,
    limit: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl DyingProxy {
    fn start(upstream: &str, limit: u64) -> Self {
        use std::{
            io::{Read, Write},
            net::{Shutdown, TcpListener, TcpStream},
            sync::{
                atomic::{AtomicBool, AtomicU64, Ordering},
                Arc, Mutex,
            },
        };
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let down = Arc::new(AtomicBool::new(false));
        let limit = Arc::new(AtomicU64::new(limit));
        let sent = Arc::new(AtomicU64::new(0));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let upstream = upstream.to_string();
        let (d, l) = (down.clone(), limit.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if d.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                open.lock().unwrap().push(client.try_clone().unwrap());
                open.lock().unwrap().push(server.try_clone().unwrap());
                let pipe = |mut from: TcpStream, mut to: TcpStream, count: bool| {
                    let (d, l, sent, open) = (d.clone(), l.clone(), sent.clone(), open.clone());
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16384];
                        while let Ok(n) = from.read(&mut buf) {
                            if n == 0
                                || d.load(Ordering::SeqCst)
                                || to.write_all(&buf[..n]).is_err()
                            {
                                break;
                            }
                            if count
                                && sent.fetch_add(n as u64, Ordering::SeqCst) + n as u64
                                    > l.load(Ordering::SeqCst)
                            {
                                d.store(true, Ordering::SeqCst);
                                for s in open.lock().unwrap().iter() {
                                    let _ = s.shutdown(Shutdown::Both);
                                }
                                break;
                            }
                        }
                        let _ = to.shutdown(Shutdown::Write);
                    });
                };
                pipe(
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    true,
                );
                pipe(server, client, false);
            }
        });
        Self { port, down, limit }
    }

    fn revive(&self) {
        self.limit
            .store(u64::MAX, std::sync::atomic::Ordering::SeqCst);
        self.down.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

#[test]
fn a_registry_dying_mid_push_leaves_no_tag_and_a_rerun_completes() {
    require("skopeo");
    let registry = RegistryServer::start(None);
    let ws = Workspace::with_example_channel();
    ws.add_packages(&trousse_testkit::synthetic_packages(6, 7));
    let spec = ws.spec(
        "big",
        &[
            "pkg-000", "pkg-001", "pkg-002", "pkg-003", "pkg-004", "pkg-005",
        ],
        "",
    );
    // a local build first, so the push is the only thing that touches the network
    let local = build(
        &ws,
        &spec,
        &format!("oci:{}", ws.path("local").display()),
        &[],
    );
    let total = local["bytes"].as_u64().unwrap();
    let proxy = DyingProxy::start(&registry.host, total / 2);
    let target = format!("127.0.0.1:{}/courses/big:1", proxy.port);

    let out = run(trousse(&[
        "build",
        spec.to_str().unwrap(),
        "--output",
        &format!("docker://{target}"),
        "--cache-dir",
        &ws.cache(),
    ]));
    assert_eq!(out.status.code(), Some(7));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("127.0.0.1:{}", proxy.port)), "{err}");
    assert!(err.contains("no tag was moved"), "{err}");
    let tag = run(Command::new("skopeo").args([
        "inspect",
        "--tls-verify=false",
        &format!("docker://{}/courses/big:1", registry.host),
    ]));
    assert!(!tag.status.success(), "a tag points at a partial image");

    proxy.revive();
    let rep = report(&run_ok(trousse(&[
        "build",
        spec.to_str().unwrap(),
        "--output",
        &format!("docker://{target}"),
        "--cache-dir",
        &ws.cache(),
        "--json",
    ])));
    assert_eq!(rep["digest"], local["digest"]);
    let pushed: serde_json::Value = serde_json::from_str(&run_ok(Command::new("skopeo").args([
        "inspect",
        "--tls-verify=false",
        &format!("docker://{}/courses/big:1", registry.host),
    ])))
    .unwrap();
    assert_eq!(pushed["Digest"], local["digest"]);
}

#[test]
fn a_second_repository_mounts_the_blobs_the_first_received_without_a_layer_pool() {
    let registry = RegistryServer::start(None);
    let ws = Workspace::with_example_channel();
    let a = ws.spec("a", &["hello-prefix", "greet"], "");
    let first = build(
        &ws,
        &a,
        &format!("docker://{}/courses/a:1", registry.host),
        &[],
    );
    assert_eq!(first["push"]["blobs_uploaded"], 5, "{first}");

    // shares hello-prefix and greeting-data with course a
    let b = ws.spec("b", &["hello-prefix", "pyhello"], "");
    let before = registry.stored_blobs();
    let second = build(
        &ws,
        &b,
        &format!("docker://{}/courses/b:1", registry.host),
        &[],
    );
    let uploaded = second["push"]["blobs_uploaded"].as_u64().unwrap() as usize;
    assert_eq!(
        uploaded,
        2 + 1 + 1,
        "python, pyhello, the environment layer and the config: {second}"
    );
    assert_eq!(
        second["push"]["blobs_mounted"], 2,
        "hello-prefix and greeting-data are mounted from courses/a: {second}"
    );
    assert_eq!(registry.stored_blobs() - before, uploaded + 1);
}
