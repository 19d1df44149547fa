//! trousse as the token issuer of the institution's registry: Debian's
//! `docker-registry` (CNCF distribution) with `auth.token` pointed at
//! trousse's realm, and pulls with skopeo as each kind of caller.

use std::process::Command;

use base64::Engine;
use serde_json::{json, Value};

use crate::common::{service::*, *};

/// An EC P-256 key and its self-signed certificate, for the registry to trust.
fn signing_pair(dir: &std::path::Path) -> (String, String) {
    let (key, cert) = self_signed(dir, "token", "trousse registry tokens");
    (key.display().to_string(), cert.display().to_string())
}

/// Whether `who` (user, password) can read the manifest of `reference` from the registry.
fn pulls(who: Option<(&str, &str)>, reference: &str) -> bool {
    let mut skopeo = Command::new("skopeo");
    skopeo.args(["inspect", "--raw", "--tls-verify=false"]);
    match who {
        Some((user, password)) => skopeo.args(["--creds", &format!("{user}:{password}")]),
        None => skopeo.arg("--no-creds"),
    };
    let out = skopeo
        .arg(format!("docker://{reference}"))
        .output()
        .unwrap();
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            ["denied", "unauthorized", "401", "403"]
                .iter()
                .any(|w| stderr.contains(w)),
            "refused for another reason: {stderr}"
        );
    }
    out.status.success()
}

#[test]
fn the_registry_grants_pulls_by_trousse_rules() {
    require("openssl");
    require("skopeo");
    let ws = Workspace::with_example_channel();
    let dir = ws.path("issuer");
    std::fs::create_dir_all(&dir).unwrap();
    let (key, cert) = signing_pair(&dir);
    // the service's port, held until it starts (the registry is told of it first):
    // no other test's server can take it meanwhile
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let registry = RegistryServer::start_with_auth(
        None,
        Some(&format!(
            "  token:\n    realm: http://127.0.0.1:{port}/api/v1/registry/token\n    \
             service: trousse-registry\n    issuer: trousse\n    rootcertbundle: {cert}\n"
        )),
    );
    let prefix = format!("{}/institution", registry.host);
    let data = ws.path("data");
    std::fs::create_dir_all(&data).unwrap();
    // the service pushes as an administrator of its own, through its own realm
    let admin = run_ok(trousse(&[
        "token",
        "create",
        "--role",
        "admin",
        "--description",
        "builds",
        "--data-dir",
        data.to_str().unwrap(),
    ]))
    .trim()
    .to_string();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("trousse:{admin}"));
    std::fs::write(
        dir.join("config.json"),
        json!({"auths": {registry.host.as_str(): {"auth": auth}}}).to_string(),
    )
    .unwrap();
    let hub = FakeHub::start(&[
        ("student-token", "ada", &["course:intro"]),
        ("outsider-token", "bob", &["course:other"]),
    ]);
    let channel = ChannelServer::start(&ws.channel());
    let hub_url = hub.api_url();
    drop(held);
    let service = Service::start_at(
        port,
        &data,
        &channel,
        &[
            "--push-to",
            &prefix,
            "--registry-token-key",
            &key,
            "--registry-token-cert",
            &cert,
            "--hub-api-url",
            &hub_url,
            "--require-pull-token",
        ],
        &[("DOCKER_CONFIG", dir.to_str().unwrap())],
    );
    let teacher = service.token("teacher", &["intro"]);
    let other_teacher = service.token("teacher", &["other"]);
    let hub_token = service.token("hub", &[]);
    runtime().block_on(async {
        let week1 = spec_yaml(&channel, "week1", &["greet"], "");
        let (status, course) = submit_yaml(&service, &teacher, "intro", &week1).await;
        assert_eq!(status, 202, "{course}");
        let course = wait_until(
            &service,
            &teacher,
            course["id"].as_str().unwrap(),
            &["ready", "failed"],
        )
        .await;
        assert_eq!(
            course["status"], "ready",
            "pushed through the realm: {course}"
        );
        let final_spec = spec_yaml(&channel, "final", &["greet", "pyhello"], "");
        let (status, exam) = send(
            client()
                .post(service.url("/api/v1/courses/intro/environments"))
                .bearer_auth(&teacher)
                .json(&json!({"spec": final_spec, "exam": true, "opens": "2099-01-01T09:00:00Z"})),
        )
        .await;
        assert_eq!(status, 202, "{exam}");
        let exam = wait_until(
            &service,
            &teacher,
            exam["id"].as_str().unwrap(),
            &["ready", "failed"],
        )
        .await;
        assert_eq!(exam["status"], "ready", "{exam}");
        let course_image = course["image"].as_str().unwrap().to_string();
        let exam_image = format!("{prefix}/intro/final@{}", exam["digest"].as_str().unwrap());

        // a course's member pulls its images; a student an exam only once it opens
        assert!(pulls(Some(("ada", "student-token")), &course_image));
        assert!(!pulls(Some(("ada", "student-token")), &exam_image));
        assert!(pulls(Some(("grace", &teacher)), &exam_image));
        assert!(pulls(Some(("hub", &hub_token)), &exam_image));
        // others do not, nor does anyone without valid credentials
        assert!(!pulls(Some(("bob", "outsider-token")), &course_image));
        assert!(!pulls(Some(("eve", &other_teacher)), &course_image));
        assert!(!pulls(Some(("mallory", "not-a-token")), &course_image));
        assert!(!pulls(None, &course_image));

        // the window opens: the student pulls the exam too
        let (status, window) = send(
            client()
                .put(service.url("/api/v1/courses/intro/exams/final/window"))
                .bearer_auth(&teacher)
                .json(&json!({"opens": "2000-01-01T00:00:00Z"})),
        )
        .await;
        assert_eq!(status, 200, "{window}");
        assert!(pulls(Some(("ada", "student-token")), &exam_image));

        // what the realm signs: the requested scope, only the actions granted
        let (status, answer) = send(
            client()
                .get(service.url("/api/v1/registry/token"))
                .query(&[
                    ("service", "trousse-registry"),
                    ("scope", "repository:institution/intro/week1:pull,push"),
                ])
                .basic_auth("ada", Some("student-token")),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
        let claims = answer["token"].as_str().unwrap().split('.').nth(1).unwrap();
        let claims: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(claims)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            claims["access"],
            json!([{"type": "repository", "name": "institution/intro/week1", "actions": ["pull"]}])
        );
        assert_eq!(
            (&claims["aud"], &claims["iss"]),
            (&json!("trousse-registry"), &json!("trousse"))
        );
        let (status, wrong) = send(
            client()
                .get(service.url("/api/v1/registry/token"))
                .query(&[("service", "another-registry")])
                .basic_auth("ada", Some("student-token")),
        )
        .await;
        assert_eq!((status, &wrong["error"]), (400, &json!("wrong_service")));
    });
}
