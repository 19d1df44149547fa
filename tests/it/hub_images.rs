//! Images for a JupyterHub: the single-user server added to an environment
//! that lacks it, a default command that starts the hub's server when a hub
//! starts the container and JupyterLab otherwise (run by Docker), and the
//! `default_url` label.

use std::process::Command;

use crate::common::{busybox_base, require, run, run_ok, trousse, Workspace};
use trousse_testkit::PackageSpec;

/// Stand-ins of the single-user server and JupyterLab: scripts that say
/// which was started, with their arguments.
fn jupyter_stand_ins() -> Vec<PackageSpec> {
    let script = |what: &str| format!("#!/bin/sh\necho \"{what} $*\"\n");
    vec![
        PackageSpec::new("jupyterhub-singleuser", "4.1").file(
            "bin/jupyterhub-singleuser",
            script("hub 4 server"),
            0o755,
        ),
        PackageSpec::new("jupyterhub-singleuser", "5.2").file(
            "bin/jupyterhub-singleuser",
            script("hub server"),
            0o755,
        ),
        PackageSpec::new("jupyterlab", "4.2").file("bin/jupyter", script("jupyter"), 0o755),
    ]
}

fn lock_text(ws: &Workspace, spec: &std::path::Path, extra: &[&str]) -> String {
    let lock = ws.path("hub.lock");
    let mut args = vec![
        "lock",
        spec.to_str().unwrap(),
        "-o",
        lock.to_str().unwrap(),
        "--cache-dir",
        &ws.path("cache").display().to_string(),
    ]
    .into_iter()
    .map(String::from)
    .collect::<Vec<_>>();
    args.extend(extra.iter().map(|e| e.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_ok(trousse(&args));
    std::fs::read_to_string(lock).unwrap()
}

#[test]
fn a_hub_image_gets_the_single_user_server_of_the_hub_version() {
    let ws = Workspace::with_example_channel();
    ws.add_packages(&jupyter_stand_ins());
    let plain = ws.spec("plain", &["greet"], "");
    assert!(!lock_text(&ws, &plain, &[]).contains("jupyterhub-singleuser"));
    let text = lock_text(&ws, &plain, &["--jupyter"]);
    assert!(text.contains("jupyterhub-singleuser-5.2"), "{text}");
    assert!(text.contains("jupyterlab-4.2"), "{text}");
    // the spec's own choice wins: an explicit pin, or jupyter: false
    let pinned = ws.spec("pinned", &["greet", "jupyterhub-singleuser 4.*"], "");
    let text = lock_text(&ws, &pinned, &["--jupyter"]);
    assert!(
        text.contains("jupyterhub-singleuser-4.1") && !text.contains("jupyterlab"),
        "{text}"
    );
    let off = ws.spec("off", &["greet"], "trousse:\n  jupyter: false\n");
    assert!(!lock_text(&ws, &off, &[]).contains("jupyterhub-singleuser"));
    let on = ws.spec("on", &["greet"], "trousse:\n  jupyter: true\n");
    assert!(lock_text(&ws, &on, &[]).contains("jupyterhub-singleuser"));
}

#[test]
fn the_default_command_starts_the_hub_server_under_a_hub_and_jupyterlab_otherwise() {
    require("docker");
    let ws = Workspace::with_example_channel();
    ws.add_packages(&jupyter_stand_ins());
    let base = busybox_base(ws.dir.path());
    let spec = ws.spec(
        "dashboard",
        &["greet"],
        "trousse:\n  jupyter: true\n  default_url: /voila/render/app.ipynb\n",
    );
    let archive = ws.path("hub.tar");
    let tag = format!("trousse-test/hub-image:{}", std::process::id());
    run_ok(trousse(&[
        "build",
        spec.to_str().unwrap(),
        "--base",
        &format!("oci:{}:bb", base.display()),
        "--output",
        &format!("docker-archive:{}:{tag}", archive.display()),
        "--cache-dir",
        &ws.cache(),
    ]));
    run_ok(Command::new("docker").arg("load").arg("-i").arg(&archive));
    let label = run_ok(Command::new("docker").args([
        "inspect",
        "--format",
        "{{index .Config.Labels \"io.trousse.default-url\"}}",
        &tag,
    ]));
    // as DockerSpawner does: the image's command, then the hub's arguments
    let cmd =
        run_ok(Command::new("docker").args(["inspect", "--format", "{{json .Config.Cmd}}", &tag]));
    let mut cmd: Vec<String> = serde_json::from_str(cmd.trim()).unwrap();
    cmd.push("--port=8888".into());
    let hub = run(Command::new("docker")
        .args(["run", "--rm", "-e", "JUPYTERHUB_API_TOKEN=t", &tag])
        .args(&cmd));
    let alone = run(Command::new("docker").args(["run", "--rm", &tag]));
    let _ = Command::new("docker").args(["rmi", "-f", &tag]).output();
    assert_eq!(label.trim(), "/voila/render/app.ipynb");
    assert_eq!(
        String::from_utf8_lossy(&hub.stdout).trim(),
        "hub server --port=8888"
    );
    assert_eq!(
        String::from_utf8_lossy(&alone.stdout).trim(),
        "jupyter lab --ip=0.0.0.0 --port=8888 --no-browser"
    );
}

#[test]
fn a_bad_default_url_is_located() {
    let ws = Workspace::with_example_channel();
    let spec = ws.spec("bad", &["greet"], "trousse:\n  default_url: voila\n");
    let out = run(trousse(&[
        "lock",
        spec.to_str().unwrap(),
        "-o",
        ws.path("x.lock").to_str().unwrap(),
    ]));
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.yml:") && stderr.contains("default_url"),
        "{stderr}"
    );
}
