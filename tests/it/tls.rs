//! `serve --tls-cert/--tls-key`: the certificate given is the one served
//! (`openssl s_client`), a new one goes live on SIGHUP, and Docker pulls
//! through it from a non-loopback address once the CA is trusted (the test
//! removes what it wrote under /etc/docker/certs.d).

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::common::{service::*, *};

/// A CA, and server certificates it signs for the addresses given.
fn certificates(dir: &Path, names: &[&str], addresses: &[&str]) {
    let openssl = |args: &[&str]| run_ok(Command::new("openssl").current_dir(dir).args(args));
    self_signed(dir, "ca", "trousse test CA");
    let san: Vec<String> = addresses.iter().map(|a| format!("IP:{a}")).collect();
    for name in names {
        openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
        ]);
        std::fs::write(
            dir.join("san.ext"),
            format!("subjectAltName={}\n", san.join(",")),
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "san.ext",
            "-out",
            &format!("{name}.crt"),
        ]);
    }
}

/// The subject of the certificate served at `address`, checked against the CA.
fn served_subject(address: &str, ca: &Path) -> String {
    let child = Command::new("openssl")
        .args(["s_client", "-connect", address, "-CAfile"])
        .arg(ca)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("Verify return code: 0 (ok)"), "{text}");
    text.lines()
        .find_map(|l| l.strip_prefix("subject="))
        .unwrap_or_default()
        .replace(' ', "")
}

/// Removes a Docker CA directory when dropped.
struct TrustedCa(PathBuf);

impl Drop for TrustedCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn tls_serves_the_given_certificate_reloads_it_and_docker_pulls_through_it() {
    require("openssl");
    require("docker");
    let ws = Workspace::with_example_channel();
    let dir = ws.path("tls");
    std::fs::create_dir_all(&dir).unwrap();
    // Docker reaches this machine's bridge address; loopback would be an insecure registry
    let bridge = "172.17.0.1";
    certificates(&dir, &["first", "second"], &["127.0.0.1", bridge]);
    std::fs::copy(dir.join("first.crt"), dir.join("live.crt")).unwrap();
    std::fs::copy(dir.join("first.key"), dir.join("live.key")).unwrap();
    let channel = ChannelServer::start(&ws.channel());
    let port = free_port();
    let data = ws.path("data");
    std::fs::create_dir_all(&data).unwrap();
    let admin = run_ok(trousse(&[
        "token",
        "create",
        "--role",
        "admin",
        "--data-dir",
        data.to_str().unwrap(),
    ]))
    .trim()
    .to_string();
    let serve = Serve(
        trousse(&[
            "serve",
            "--listen",
            &format!("0.0.0.0:{port}"),
            "--public-host",
            &format!("{bridge}:{port}"),
            "--data-dir",
            data.to_str().unwrap(),
            "--allow-channel",
            &channel.url(),
            "--no-jupyter",
            "--tls-cert",
            dir.join("live.crt").to_str().unwrap(),
            "--tls-key",
            dir.join("live.key").to_str().unwrap(),
        ])
        .spawn()
        .unwrap(),
    );
    wait_for_port(port, "trousse serve over TLS");
    let address = format!("127.0.0.1:{port}");
    assert!(served_subject(&address, &dir.join("ca.crt")).contains("CN=first"));

    // a renewed certificate goes live on SIGHUP, without a restart
    std::fs::copy(dir.join("second.crt"), dir.join("live.crt")).unwrap();
    std::fs::copy(dir.join("second.key"), dir.join("live.key")).unwrap();
    run_ok(Command::new("kill").args(["-HUP", &serve.0.id().to_string()]));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !served_subject(&address, &dir.join("ca.crt")).contains("CN=second") {
        assert!(
            Instant::now() < deadline,
            "the new certificate was never served"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let ca = reqwest::Certificate::from_pem(&std::fs::read(dir.join("ca.crt")).unwrap()).unwrap();
    let https = reqwest::Client::builder()
        .add_root_certificate(ca)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let base = format!("https://{bridge}:{port}");
    let image = runtime().block_on(async {
        let spec = spec_yaml(&channel, "hello", &["greet"], "");
        let (status, env) = send(
            https
                .post(format!("{base}/api/v1/courses/intro/environments"))
                .bearer_auth(&admin)
                .header("content-type", "application/yaml")
                .body(spec),
        )
        .await;
        assert_eq!(status, 202, "{env}");
        let id = env["id"].as_str().unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (_, env): (u16, Value) = send(
                https
                    .get(format!("{base}/api/v1/environments/{id}"))
                    .bearer_auth(&admin),
            )
            .await;
            if env["status"] == "ready" {
                break env["image"].as_str().unwrap().to_string();
            }
            assert!(
                Instant::now() < deadline && env["status"] != "failed",
                "{env}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    assert!(image.starts_with(&format!("{bridge}:{port}/")), "{image}");
    // without the CA Docker refuses the certificate; with it, it pulls
    let pull = |image: &str| {
        Command::new("docker")
            .args(["pull", "-q", image])
            .output()
            .unwrap()
    };
    let refused = pull(&image);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("certificate") || stderr.contains("x509"),
        "{stderr}"
    );
    let trusted = TrustedCa(PathBuf::from(format!(
        "/etc/docker/certs.d/{bridge}:{port}"
    )));
    std::fs::create_dir_all(&trusted.0).unwrap();
    std::fs::copy(dir.join("ca.crt"), trusted.0.join("ca.crt")).unwrap();
    let pulled = pull(&image);
    assert!(
        pulled.status.success(),
        "{}",
        String::from_utf8_lossy(&pulled.stderr)
    );
    let _ = Command::new("docker").args(["rmi", &image]).output();
    drop(trusted);
    drop(serve);
}
