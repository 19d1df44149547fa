//! The deployment files, for real: trousse's own image built by
//! `deploy/image/build` (debootstrap, umoci; nothing pulled), and the compose
//! file's six services started by docker-compose 1.29 with it and with
//! stand-ins for the PostgreSQL and registry images built from Debian's
//! packages (`tests/deploy/make-stand-in-images`). The Kubernetes manifests
//! are checked by the `trousse-deploy-check` crate.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use crate::common::{service::*, *};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// docker-compose on the project's file, as one project of this test's own.
struct Compose {
    project: String,
    envs: Vec<(String, String)>,
}

impl Compose {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("docker-compose");
        cmd.args(["-p", &self.project, "-f"])
            .arg(root().join("deploy/compose/docker-compose.yml"))
            .args(args)
            .envs(self.envs.iter().map(|(k, v)| (k, v)));
        cmd
    }
}

impl Drop for Compose {
    fn drop(&mut self) {
        let _ = self.command(&["down", "-v", "--timeout", "5"]).output();
    }
}

async fn healthy(port: u16) -> bool {
    let Ok(response) = client()
        .get(format!("http://127.0.0.1:{port}/health"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
    else {
        return false;
    };
    response.status() == 200
}

#[test]
fn the_compose_file_runs_postgres_a_registry_two_replicas_and_two_workers() {
    require("docker-compose");
    require("debootstrap");
    require("umoci");
    require("skopeo");
    let ws = Workspace::with_example_channel();
    let tag = format!("trousse:compose-test-{}", std::process::id());
    run_ok(Command::new(root().join("deploy/image/build")).args([
        "--binary",
        env!("CARGO_BIN_EXE_trousse"),
        "--tag",
        &tag,
        "--layout",
        ws.path("image").to_str().unwrap(),
        "--docker",
    ]));
    let have_stand_ins = Command::new("docker")
        .args([
            "image",
            "inspect",
            "trousse-test/postgres:15",
            "trousse-test/registry:2",
        ])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_stand_ins {
        run_ok(Command::new(
            root().join("tests/deploy/make-stand-in-images"),
        ));
    }
    let (api_1, api_2, registry) = (free_port(), free_port(), free_port());
    let envs = [
        ("TROUSSE_IMAGE", tag.clone()),
        ("POSTGRES_IMAGE", "trousse-test/postgres:15".into()),
        ("REGISTRY_IMAGE", "trousse-test/registry:2".into()),
        ("POSTGRES_PASSWORD", "compose-test-password".into()),
        ("TROUSSE_API_1_PORT", format!("127.0.0.1:{api_1}")),
        ("TROUSSE_API_2_PORT", format!("127.0.0.1:{api_2}")),
        ("TROUSSE_REGISTRY_PORT", format!("127.0.0.1:{registry}")),
        ("TROUSSE_PUBLIC_HOST", format!("localhost:{api_1}")),
    ];
    let compose = Compose {
        project: format!("trousse-test-{}", std::process::id()),
        envs: envs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    };
    let started = Instant::now();
    run_ok(compose.command(&["up", "-d"]));
    runtime().block_on(async {
        let deadline = Instant::now() + Duration::from_secs(180);
        while !(healthy(api_1).await && healthy(api_2).await) {
            if Instant::now() > deadline {
                let logs = compose.command(&["logs", "--tail", "40"]).output().unwrap();
                panic!(
                    "the replicas never became healthy:\n{}",
                    String::from_utf8_lossy(&logs.stdout)
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        println!(
            "docker-compose up: both replicas healthy in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        let health: serde_json::Value = client()
            .get(format!("http://127.0.0.1:{api_2}/health"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(health["checks"]["database"], "ok", "{health}");
        assert_eq!(health["checks"]["registry"], "ok", "{health}");
        // a token made in one replica's container works on the other: one database
        let token = run_ok(compose.command(&[
            "exec", "-T", "api-1", "trousse", "token", "create", "--role", "admin",
        ]));
        let token = token.trim();
        assert!(token.starts_with("trs_"), "{token}");
        let (status, courses) = send(
            client()
                .get(format!("http://127.0.0.1:{api_2}/api/v1/courses"))
                .bearer_auth(token),
        )
        .await;
        assert_eq!(status, 200, "{courses}");
        assert_eq!(courses["role"], "admin");
        // the workers run, as trousse's unprivileged user, and answer on their port
        for worker in ["worker-1", "worker-2"] {
            let logs = run_ok(compose.command(&["logs", worker]));
            assert!(logs.contains("worker building"), "{worker}: {logs}");
            let user = run_ok(compose.command(&["exec", "-T", worker, "id", "-u"]));
            assert_eq!(user.trim(), "10001");
        }
        // the registry answers the distribution API on the published port
        let (status, _) = send(client().get(format!("http://127.0.0.1:{registry}/v2/"))).await;
        assert_eq!(status, 200);
    });
}
