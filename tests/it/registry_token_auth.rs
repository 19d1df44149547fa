//! Pushing to a CNCF distribution registry that uses the token flow (Bearer):
//! the registry sends clients to a token realm, which checks the docker
//! credentials and answers a JWT signed with a key the registry trusts.

use std::{
    io::{BufRead, BufReader, Write},
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use crate::common::*;
use base64::Engine;

const USER: &str = "teacher";
const PASSWORD: &str = "token-realm-secret";
const SERVICE: &str = "trousse-test";
const ISSUER: &str = "trousse-test-issuer";

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Signs `header.payload` with RS256 (openssl does the RSA).
fn jwt(key: &Path, cert_der: &[u8], scopes: &[String]) -> String {
    let header = serde_json::json!({
        "typ": "JWT", "alg": "RS256",
        "x5c": [base64::engine::general_purpose::STANDARD.encode(cert_der)],
    });
    let access: Vec<serde_json::Value> = scopes
        .iter()
        .filter_map(|s| {
            let mut parts = s.splitn(3, ':');
            let kind = parts.next()?;
            let name = parts.next()?;
            let actions: Vec<&str> = parts.next()?.split(',').collect();
            Some(serde_json::json!({"type": kind, "name": name, "actions": actions}))
        })
        .collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({
        "iss": ISSUER, "sub": USER, "aud": SERVICE,
        "exp": now + 600, "nbf": now - 60, "iat": now - 60,
        "jti": format!("{now}-{}", scopes.len()), "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let mut openssl = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    openssl
        .stdin
        .take()
        .unwrap()
        .write_all(signing_input.as_bytes())
        .unwrap();
    let signature = openssl.wait_with_output().unwrap();
    assert!(signature.status.success());
    format!("{signing_input}.{}", b64url(&signature.stdout))
}

/// Answers `GET /token?service=..&scope=..` for Basic USER:PASSWORD; counts what it refused.
fn start_token_realm(
    key: PathBuf,
    cert_der: Vec<u8>,
) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let refused = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = refused.clone();
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
    );
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let mut authorized = false;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() || line.trim().is_empty() {
                    break;
                }
                if let Some((name, value)) = line.split_once(':') {
                    if name.eq_ignore_ascii_case("authorization") && value.trim() == expected {
                        authorized = true;
                    }
                }
            }
            let target = request_line.split_whitespace().nth(1).unwrap_or("/");
            let query = url::Url::parse(&format!("http://realm{target}")).unwrap();
            let scopes: Vec<String> = query
                .query_pairs()
                .filter(|(k, _)| k == "scope")
                .flat_map(|(_, v)| v.split(' ').map(str::to_string).collect::<Vec<_>>())
                .collect();
            let (status, body) = if authorized {
                let token = jwt(&key, &cert_der, &scopes);
                (
                    "200 OK",
                    serde_json::json!({"token": token, "access_token": token, "expires_in": 600})
                        .to_string(),
                )
            } else {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                (
                    "401 Unauthorized",
                    r#"{"error":"bad credentials"}"#.to_string(),
                )
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (port, refused)
}

#[test]
fn pushes_through_a_token_realm_and_wrong_credentials_are_a_clear_error() {
    require("openssl");
    require("docker-registry");
    require("skopeo");
    let ws = Workspace::with_example_channel();
    let dir = ws.path("realm");
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("key.pem");
    let cert = dir.join("cert.pem");
    run_ok(Command::new("openssl").args([
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=trousse-test-token",
        "-keyout",
        key.to_str().unwrap(),
        "-out",
        cert.to_str().unwrap(),
    ]));
    let der = Command::new("openssl")
        .args(["x509", "-outform", "DER", "-in", cert.to_str().unwrap()])
        .output()
        .unwrap()
        .stdout;
    let (realm_port, refused) = start_token_realm(key, der);

    let port = free_port();
    let config = dir.join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\nauth:\n  token:\n    realm: http://127.0.0.1:{realm_port}/token\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
            dir.join("data").display(),
            cert.display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("registry.log")).unwrap();
    let mut registry = Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    wait_for_port(port, "the registry");
    let host = format!("127.0.0.1:{port}");

    let docker_config = ws.path("docker");
    std::fs::create_dir_all(&docker_config).unwrap();
    let login = |password: &str| {
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{password}"));
        std::fs::write(
            docker_config.join("config.json"),
            format!(r#"{{"auths": {{"{host}": {{"auth": "{auth}"}}}}}}"#),
        )
        .unwrap();
    };
    let spec = ws.spec("realm", &["greet"], "");
    let push = |tag: &str| {
        let mut cmd = trousse(&[
            "build",
            spec.to_str().unwrap(),
            "--output",
            &format!("docker://{host}/courses/realm:{tag}"),
            "--cache-dir",
            &ws.cache(),
            "--json",
        ]);
        cmd.env("DOCKER_CONFIG", &docker_config)
            .env_remove("REGISTRY_AUTH_FILE");
        run(cmd)
    };

    login("not-the-password");
    let out = push("1");
    assert_eq!(out.status.code(), Some(7));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&host) && err.contains("401"), "{err}");
    assert!(!err.contains("not-the-password"), "the secret was printed");
    assert!(refused.load(std::sync::atomic::Ordering::SeqCst) >= 1);

    login(PASSWORD);
    let out = push("1");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let digest = report(&String::from_utf8_lossy(&out.stdout))["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let inspect: serde_json::Value = serde_json::from_str(&run_ok(Command::new("skopeo").args([
        "inspect",
        "--tls-verify=false",
        "--creds",
        &format!("{USER}:{PASSWORD}"),
        &format!("docker://{host}/courses/realm:1"),
    ])))
    .unwrap();
    assert_eq!(inspect["Digest"], digest);
    let _ = registry.kill();
    let _ = registry.wait();
}
