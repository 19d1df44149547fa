//! `trousse serve` end to end: the real server on a loopback port, a channel
//! served over HTTP, skopeo and Docker pulling from the service's own `/v2/`.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use crate::common::{service::*, *};
use serde_json::{json, Value};

#[test]
fn an_environment_is_built_followed_and_pulled_from_the_service() {
    built_followed_and_pulled(&[]);
}

/// The same with the service's rows in PostgreSQL (one service, its own `/v2/`).
#[test]
fn an_environment_is_built_followed_and_pulled_with_postgres() {
    let url = trousse_testkit::postgres::Postgres::shared()
        .new_database("service")
        .unwrap();
    built_followed_and_pulled(&[("TROUSSE_DATABASE_URL", &url)]);
}

fn built_followed_and_pulled(envs: &[(&str, &str)]) {
    require("skopeo");
    require("docker");
    let ws = Workspace::with_example_channel();
    runtime().block_on(async move {
        let channel = ChannelServer::start(&ws.channel());
        let service = Service::start_with_env(&ws.path("data"), &channel, &[], envs);
        let in_sqlite = ws.path("data").join("trousse.db").exists();
        assert_eq!(in_sqlite, envs.is_empty(), "the rows are where the flags say");
        let admin = service.token("admin", &[]);

        let spec = spec_yaml(
            &channel,
            "hello",
            &["hello-prefix", "greet"],
            "trousse:\n  command: [/opt/conda/bin/hello-prefix]\n",
        );
        let (status, created) = submit_yaml(&service, &admin, "intro", &spec).await;
        assert_eq!(status, 202, "{created}");
        let id = created["id"].as_str().unwrap().to_string();
        assert_eq!(
            created["image"],
            format!("{}/intro/hello:latest", service.host())
        );
        assert!(created["lock"].as_str().unwrap().contains("hello-prefix"));

        let events = follow_events(&service, &admin, &id).await;
        let (_, last, done) = events.last().unwrap();
        assert_eq!(last, "done");
        assert_eq!(done["status"], "ready", "{done}");
        for stage in ["fetch", "stage", "layer", "publish"] {
            assert!(
                events
                    .iter()
                    .any(|(_, k, d)| k == "stage_finished" && d["stage"] == stage),
                "no {stage} event in {events:?}"
            );
        }
        let ids: Vec<i64> = events.iter().map(|(seq, _, _)| *seq).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");

        // a late client gets the whole story, and one that resumes gets the rest
        let again = follow_events(&service, &admin, &id).await;
        assert_eq!(again.len(), events.len());

        let env = environment(&service, &admin, &id).await;
        assert_eq!(env["status"], "ready");
        let digest = env["digest"].as_str().unwrap().to_string();
        assert_eq!(env["digests"], json!([digest]));
        assert!(env["bytes"].as_i64().unwrap() > 0);

        // the same request again: answered from what is built
        let started = Instant::now();
        let (status, hit) = submit_yaml(&service, &admin, "intro", &spec).await;
        let hit_time = started.elapsed();
        assert_eq!(status, 200, "{hit}");
        assert_eq!(hit["id"], created["id"]);
        assert!(hit_time < Duration::from_secs(2), "{hit_time:?}");

        // the OCI pull protocol, read by independent clients
        let reference = format!("{}/intro/hello:latest", service.host());
        let inspect: Value = serde_json::from_str(&run_ok(Command::new("skopeo").args([
            "inspect",
            "--tls-verify=false",
            &format!("docker://{reference}"),
        ])))
        .unwrap();
        assert_eq!(inspect["Digest"], digest);

        let manifest = client()
            .head(service.url(&format!("/v2/intro/hello/manifests/{digest}")))
            .send()
            .await
            .unwrap();
        assert_eq!(manifest.status(), 200);
        assert_eq!(manifest.headers()["docker-content-digest"], digest.as_str());
        let layer = inspect["Layers"][0].as_str().unwrap();
        let part = client()
            .get(service.url(&format!("/v2/intro/hello/blobs/{layer}")))
            .header("range", "bytes=0-9")
            .send()
            .await
            .unwrap();
        assert_eq!(part.status(), 206);
        assert_eq!(part.bytes().await.unwrap().len(), 10);
        let (status, missing) =
            send(client().get(service.url(&format!("/v2/intro/other/blobs/{layer}")))).await;
        assert_eq!(status, 404, "a blob is served only from its repositories");
        assert_eq!(missing["errors"][0]["code"], "BLOB_UNKNOWN");

        run_ok(Command::new("docker").args(["pull", &reference]));
        let out = run(Command::new("docker").args(["run", "--rm", &reference]));
        let _ = Command::new("docker")
            .args(["rmi", "-f", &reference])
            .output();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "hello from /opt/conda"
        );

        // an update of a course environment keeps its earlier digests listed
        let updated_spec = spec_yaml(&channel, "hello", &["hello-prefix"], "");
        let (status, updated) = submit_yaml(&service, &admin, "intro", &updated_spec).await;
        assert!(status == 200 || status == 202, "{updated}");
        assert_eq!(updated["id"], created["id"]);
        let env = wait_until(&service, &admin, &id, &["ready"]).await;
        assert_eq!(env["digests"].as_array().unwrap().len(), 2);
        assert_ne!(env["digest"], digest);

        // an exam environment never changes once ready: a change makes a new one
        let exam = |packages: &[&str]| json!({"name": "final", "exam": true, "spec": spec_yaml(&channel, "final", packages, "")});
        let (_, first) = send(
            client()
                .post(service.url("/api/v1/courses/intro/environments"))
                .bearer_auth(&admin)
                .json(&exam(&["greet"])),
        )
        .await;
        let first_id = first["id"].as_str().unwrap();
        let first_env = wait_until(&service, &admin, first_id, &["ready"]).await;
        assert!(first_env["image"]
            .as_str()
            .unwrap()
            .ends_with(first_env["digest"].as_str().unwrap()));
        let (_, second) = send(
            client()
                .post(service.url("/api/v1/courses/intro/environments"))
                .bearer_auth(&admin)
                .json(&exam(&["greet", "hello-prefix"])),
        )
        .await;
        assert_ne!(second["id"], first["id"]);
        let frozen = environment(&service, &admin, first_id).await;
        assert_eq!(frozen["image"], first_env["image"]);
        assert_eq!(frozen["digest"], first_env["digest"]);
        assert_eq!(frozen["current"], false);
    });
}

#[test]
fn fifty_identical_requests_start_exactly_one_build() {
    let ws = Workspace::with_example_channel();
    runtime().block_on(async move {
        let channel = ChannelServer::start(&ws.channel());
        let service = Service::start(&ws.path("data"), &channel, &[]);
        let teacher = service.token("teacher", &["stats"]);
        let spec = spec_yaml(&channel, "shared", &["pyhello", "greet"], "");
        let requests = (0..50).map(|_| submit_yaml(&service, &teacher, "stats", &spec));
        let answers = futures::future::join_all(requests).await;
        let ids: std::collections::HashSet<String> = answers
            .iter()
            .map(|(status, env)| {
                assert!(*status == 200 || *status == 202, "{status} {env}");
                env["id"].as_str().unwrap().to_string()
            })
            .collect();
        assert_eq!(ids.len(), 1, "one environment");
        let id = ids.into_iter().next().unwrap();
        wait_until(&service, &teacher, &id, &["ready"]).await;
        assert_eq!(metric(&service, "trousse_builds_started_total").await, 1.0);
        assert_eq!(
            metric(&service, "trousse_builds_total{result=\"ready\"}").await,
            1.0
        );
        let (_, list) = send(
            client()
                .get(service.url("/api/v1/courses/stats/environments"))
                .bearer_auth(&teacher),
        )
        .await;
        assert_eq!(list["environments"].as_array().unwrap().len(), 1);
    });
}

#[test]
fn a_service_killed_mid_build_finishes_it_after_a_restart() {
    let ws = Workspace::with_example_channel();
    ws.add_big_package(7);
    runtime().block_on(async move {
        let channel = ChannelServer::start(&ws.channel());
        let mut service = Service::start(&ws.path("data"), &channel, &[]);
        let admin = service.token("admin", &[]);
        let spec = spec_yaml(&channel, "big", &["big-data", "greet"], "");
        let (status, created) = submit_yaml(&service, &admin, "physics", &spec).await;
        assert_eq!(status, 202, "{created}");
        let id = created["id"].as_str().unwrap().to_string();
        wait_until(&service, &admin, &id, &["building"]).await;
        service.kill_and_restart();

        let env = wait_until(&service, &admin, &id, &["ready", "failed"]).await;
        assert_eq!(env["status"], "ready", "{env}");
        let (_, list) = send(
            client()
                .get(service.url("/api/v1/courses/physics/environments"))
                .bearer_auth(&admin),
        )
        .await;
        assert_eq!(
            list["environments"].as_array().unwrap().len(),
            1,
            "nothing lost or duplicated"
        );
        let events = follow_events(&service, &admin, &id).await;
        assert!(
            events
                .iter()
                .any(|(_, k, d)| k == "status" && d["attempt"] == 2),
            "the build was started a second time: {events:?}"
        );
        assert_eq!(metric(&service, "trousse_builds_started_total").await, 1.0);
        // and the image is whole
        require("skopeo");
        run_ok(Command::new("skopeo").args([
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{}/physics/big:latest", service.host()),
            &format!("oci:{}:big", ws.path("pulled").display()),
        ]));
    });
}

#[test]
fn each_role_may_do_what_it_is_granted_and_nothing_else() {
    let ws = Workspace::with_example_channel();
    runtime().block_on(async move {
        let channel = ChannelServer::start(&ws.channel());
        let service = Service::start(&ws.path("data"), &channel, &[]);
        let admin = service.token("admin", &[]);
        let teacher = service.token("teacher", &["bio"]);
        let hub = service.token("hub", &[]);
        let spec = spec_yaml(&channel, "cells", &["greeting-data"], "");

        let (status, env) = submit_yaml(&service, &teacher, "bio", &spec).await;
        assert!(
            status == 200 || status == 202,
            "teacher in its course: {env}"
        );
        let bio_id = env["id"].as_str().unwrap().to_string();
        let (status, chem_env) = submit_yaml(&service, &admin, "chem", &spec).await;
        assert!(
            status == 200 || status == 202,
            "admin anywhere: {status} {chem_env}"
        );
        let (_, chem) = send(
            client()
                .get(service.url("/api/v1/courses/chem/environments"))
                .bearer_auth(&admin),
        )
        .await;
        let chem_id = chem["environments"][0]["id"].as_str().unwrap().to_string();

        let list = |course: &str| service.url(&format!("/api/v1/courses/{course}/environments"));
        let one = |id: &str| service.url(&format!("/api/v1/environments/{id}"));
        let cases: Vec<(&str, Option<&str>, reqwest::RequestBuilder, u16)> = vec![
            (
                "teacher writes another course",
                Some(&teacher),
                client().post(list("chem")),
                403,
            ),
            (
                "teacher reads its course",
                Some(&teacher),
                client().get(list("bio")),
                200,
            ),
            (
                "teacher reads another course",
                Some(&teacher),
                client().get(list("chem")),
                403,
            ),
            (
                "teacher reads its environment",
                Some(&teacher),
                client().get(one(&bio_id)),
                200,
            ),
            (
                "teacher reads another's environment",
                Some(&teacher),
                client().get(one(&chem_id)),
                403,
            ),
            ("hub writes", Some(&hub), client().post(list("bio")), 403),
            (
                "hub reads any course",
                Some(&hub),
                client().get(list("chem")),
                200,
            ),
            (
                "hub reads any environment",
                Some(&hub),
                client().get(one(&bio_id)),
                200,
            ),
            ("admin reads", Some(&admin), client().get(list("bio")), 200),
            ("no token reads", None, client().get(list("bio")), 401),
            ("no token writes", None, client().post(list("bio")), 401),
            (
                "a bad token",
                Some("trs_not-a-real-token"),
                client().get(list("bio")),
                401,
            ),
            (
                "unknown environment",
                Some(&admin),
                client().get(one("nope")),
                404,
            ),
        ];
        for (what, token, request, expected) in cases {
            let request = match token {
                Some(t) => request.bearer_auth(t),
                None => request,
            };
            let request = request
                .header("content-type", "application/yaml")
                .body(spec.clone());
            let (status, body) = send(request).await;
            assert_eq!(status, expected, "{what}: {body}");
            if expected >= 400 {
                assert!(
                    body["error"].is_string() && body["message"].is_string(),
                    "{what}: not a JSON error: {body}"
                );
            }
        }

        // pulls are open by default, and need a token when the service says so
        let (status, _) = send(client().get(service.url("/v2/"))).await;
        assert_eq!(status, 200);
        let locked = Service::start(&ws.path("data-locked"), &channel, &["--require-pull-token"]);
        let hub_locked = locked.token("hub", &[]);
        let response = client().get(locked.url("/v2/")).send().await.unwrap();
        assert_eq!(response.status(), 401);
        assert!(response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic"));
        let (status, _) = send(
            client()
                .get(locked.url("/v2/"))
                .basic_auth("hub", Some(&hub_locked)),
        )
        .await;
        assert_eq!(status, 200);
    });
}

#[test]
fn bad_requests_are_refused_with_a_status_and_a_json_error() {
    let ws = Workspace::with_example_channel();
    runtime().block_on(async move {
        let channel = ChannelServer::start(&ws.channel());
        let service = Service::start(&ws.path("data"), &channel, &["--max-body", "64KiB"]);
        let admin = service.token("admin", &[]);
        let post = |body: String, content_type: &str| {
            client()
                .post(service.url("/api/v1/courses/lab/environments"))
                .bearer_auth(&admin)
                .header("content-type", content_type.to_string())
                .body(body)
        };
        let yaml = "application/yaml";
        let cases: Vec<(&str, reqwest::RequestBuilder, u16, &str, &str)> = vec![
            (
                "malformed YAML",
                post("name: x\ndependencies: [a, b\n".into(), yaml),
                400,
                "invalid_spec",
                "the submitted spec:",
            ),
            (
                "an unknown package",
                post(spec_yaml(&channel, "x", &["no-such-package"], ""), yaml),
                422,
                "package_not_found",
                "no-such-package",
            ),
            (
                "an oversized body",
                post(format!("name: x\n# {}\n", "x".repeat(100 << 10)), yaml),
                413,
                "too_large",
                "bytes",
            ),
            (
                "a channel not allowed",
                post(
                    "name: x\nchannels: ['file:///etc']\ndependencies: [a]\n".into(),
                    yaml,
                ),
                403,
                "forbidden",
                "file:///etc",
            ),
            (
                "a base not allowed",
                post(
                    spec_yaml(
                        &channel,
                        "x",
                        &["greet"],
                        "trousse:\n  base: oci:/var/lib/secret:x\n",
                    ),
                    yaml,
                ),
                403,
                "forbidden",
                "oci:/var/lib/secret",
            ),
            (
                "a lock that fetches from elsewhere",
                post(
                    json!({"name": "x", "lock": std::fs::read_to_string(
                        conda_data().join("locks/rattler-python-lock.yml")).unwrap()})
                    .to_string(),
                    "application/json",
                ),
                403,
                "forbidden",
                "conda.anaconda.org",
            ),
            (
                "both a spec and a lock",
                post(
                    json!({"name": "x", "spec": "a", "lock": "b"}).to_string(),
                    "application/json",
                ),
                400,
                "invalid_request",
                "exactly one",
            ),
            (
                "an invalid course name",
                client()
                    .post(service.url("/api/v1/courses/Bad..Name/environments"))
                    .bearer_auth(&admin)
                    .header("content-type", yaml)
                    .body(spec_yaml(&channel, "x", &["greet"], "")),
                400,
                "invalid_name",
                "Bad..Name",
            ),
            (
                "a body neither JSON nor YAML",
                post("a,b\n".into(), "text/csv"),
                415,
                "unsupported_media_type",
                "text/csv",
            ),
            (
                "an unknown route",
                client().get(service.url("/api/v1/no-such-route")),
                404,
                "not_found",
                "/api/v1/no-such-route",
            ),
            (
                "a bad token",
                client()
                    .post(service.url("/api/v1/courses/lab/environments"))
                    .bearer_auth("trs_0000")
                    .header("content-type", yaml)
                    .body(spec_yaml(&channel, "x", &["greet"], "")),
                401,
                "unauthorized",
                "token",
            ),
        ];
        for (what, request, status, code, mentions) in cases {
            let (got, body) = send(request).await;
            assert_eq!(got, status, "{what}: {body}");
            assert_eq!(body["error"], code, "{what}: {body}");
            assert!(
                body["message"].as_str().unwrap().contains(mentions),
                "{what}: {body}"
            );
        }
        let (_, list) = send(
            client()
                .get(service.url("/api/v1/courses/lab/environments"))
                .bearer_auth(&admin),
        )
        .await;
        assert_eq!(list["environments"], json!([]), "nothing was created");
    });
}

#[test]
fn the_openapi_document_validates_and_lists_every_route() {
    let ws = Workspace::with_example_channel();
    runtime().block_on(async move {
        let channel = ChannelServer::start(&ws.channel());
        let service = Service::start(&ws.path("data"), &channel, &[]);
        let text = get_text(&service, "/api/v1/openapi.json").await;
        let doc: Value = serde_json::from_str(&text).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        let routes = [
            ("/api/v1/courses/{course}/environments", "post"),
            ("/api/v1/courses/{course}/environments", "get"),
            ("/api/v1/environments/{id}", "get"),
            ("/api/v1/environments/{id}/events", "get"),
            ("/api/v1/hooks/git", "post"),
            ("/api/v1/courses/{course}/hooks/git", "post"),
            ("/api/v1/courses/{course}/webhook-secret", "put"),
            ("/api/v1/courses/{course}/webhook-secret", "delete"),
            ("/api/v1/courses/{course}/git-token", "put"),
            ("/api/v1/courses/{course}/git-token", "delete"),
            ("/api/v1/courses/{course}/exams/{name}/window", "put"),
            ("/api/v1/courses/{course}/exams/{name}/window", "delete"),
            ("/api/v1/openapi.json", "get"),
            ("/api/v1/courses", "get"),
            ("/api/v1/packages", "get"),
            ("/api/v1/courses/{course}/preview", "post"),
            ("/api/v1/environments/{id}/versions", "get"),
            ("/api/v1/environments/{id}/current", "post"),
            ("/api/v1/environments/{id}/archive", "post"),
            ("/api/v1/environments/{id}/launches", "post"),
            ("/api/v1/registry/token", "get"),
            ("/api/v1/tokens", "get"),
            ("/api/v1/tokens", "post"),
            ("/api/v1/tokens/{id}", "delete"),
            ("/api/v1/environments/{id}/cancel", "post"),
            ("/api/v1/environments/{id}", "delete"),
            ("/health", "get"),
            ("/metrics", "get"),
            ("/v2/", "get"),
            ("/v2/{course}/{environment}/manifests/{reference}", "get"),
            ("/v2/{course}/{environment}/blobs/{digest}", "get"),
        ];
        for (path, method) in routes {
            assert!(
                doc["paths"][path][method].is_object(),
                "{method} {path} is not documented"
            );
        }
        assert_eq!(doc["paths"].as_object().unwrap().len(), 26);
        require("python3");
        let file = ws.path("openapi.json");
        std::fs::write(&file, &text).unwrap();
        run_ok(Command::new("python3").args([
            "-c",
            "import sys, json; from openapi_spec_validator import validate; validate(json.load(open(sys.argv[1]))); print('valid')",
            file.to_str().unwrap(),
        ]));
        let health = client().get(service.url("/health")).send().await.unwrap();
        assert_eq!(health.status(), 200);
    });
}

#[test]
fn with_push_to_the_service_pushes_to_the_registry_and_names_it() {
    require("skopeo");
    let ws = Workspace::with_example_channel();
    runtime().block_on(async move {
        let channel = ChannelServer::start(&ws.channel());
        let registry = RegistryServer::start(None);
        let prefix = format!("{}/institution", registry.host);
        let service = Service::start(&ws.path("data"), &channel, &["--push-to", &prefix]);
        let admin = service.token("admin", &[]);
        let spec = spec_yaml(&channel, "pushed", &["greet"], "");
        let (status, created) = submit_yaml(&service, &admin, "geo", &spec).await;
        assert_eq!(status, 202, "{created}");
        let id = created["id"].as_str().unwrap();
        let env = wait_until(&service, &admin, id, &["ready", "failed"]).await;
        assert_eq!(env["status"], "ready", "{env}");
        let image = format!("{prefix}/geo/pushed:latest");
        assert_eq!(env["image"], image);
        let inspect: Value = serde_json::from_str(&run_ok(Command::new("skopeo").args([
            "inspect",
            "--tls-verify=false",
            &format!("docker://{image}"),
        ])))
        .unwrap();
        assert_eq!(inspect["Digest"], env["digest"]);
        // the service's own /v2/ does not claim images it pushed elsewhere
        let (status, _) = send(client().get(service.url("/v2/geo/pushed/manifests/latest"))).await;
        assert_eq!(status, 404);
        let health: Value = client()
            .get(service.url("/health"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(health["checks"]["registry"], "ok", "{health}");
    });
}

#[test]
fn a_second_service_on_one_data_directory_is_refused() {
    let ws = Workspace::with_example_channel();
    let channel = ChannelServer::start(&ws.channel());
    let service = Service::start(&ws.path("data"), &channel, &[]);
    let second = run(trousse(&[
        "serve",
        "--listen",
        &format!("127.0.0.1:{}", free_port()),
        "--data-dir",
        ws.path("data").to_str().unwrap(),
        "--no-jupyter",
    ]));
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("PID {}", service.pid())),
        "{stderr}"
    );
    assert!(service.healthy(), "the first one goes on");
    // tokens are created beside a running service, as the docs show
    service.token("teacher", &["intro"]);
}

/// A site without internet: specs name conda-forge, the service fetches it
/// from the site's mirror, and the lock still names conda-forge.
#[test]
fn the_service_builds_conda_forge_specs_through_a_mirror() {
    let ws = Workspace::with_example_channel();
    let channel = ChannelServer::start(&ws.channel());
    runtime().block_on(async move {
        let mirror = format!("conda-forge={}", channel.url());
        let service = Service::start(
            &ws.path("data"),
            &channel,
            &[
                "--allow-channel",
                "conda-forge",
                "--channel-mirror",
                &mirror,
            ],
        );
        let teacher = service.token("teacher", &["intro"]);
        let spec = "name: course\nchannels: [conda-forge]\ndependencies: [hello-prefix]\n";
        let (status, created) = submit_yaml(&service, &teacher, "intro", spec).await;
        assert_eq!(status, 202, "{created}");
        let id = created["id"].as_str().unwrap().to_string();
        let ready = wait_until(&service, &teacher, &id, &["ready", "failed"]).await;
        assert_eq!(ready["status"], "ready", "{ready}");
        let lock = ready["lock"].as_str().unwrap();
        assert!(
            lock.contains("https://conda.anaconda.org/conda-forge/"),
            "{lock}"
        );
        assert!(!lock.contains(&channel.url()), "{lock}");
    });
}

#[test]
fn json_logs_carry_each_request_id_into_its_build() {
    let ws = Workspace::with_example_channel();
    runtime().block_on(async move {
        let channel = ChannelServer::start(&ws.channel());
        let service = Service::start(&ws.path("data"), &channel, &["--log-format", "json"]);
        let admin = service.token("admin", &[]);
        let spec = spec_yaml(&channel, "logged", &["greet"], "");
        let response = client()
            .post(service.url("/api/v1/courses/intro/environments"))
            .bearer_auth(&admin)
            .header("content-type", "application/yaml")
            .header("x-request-id", "teacher-req-42")
            .body(spec)
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()["x-request-id"], "teacher-req-42");
        let env: Value = response.json().await.unwrap();
        wait_until(&service, &admin, env["id"].as_str().unwrap(), &["ready"]).await;
        // a request without an id gets one of the service's
        let other = client().get(service.url("/health")).send().await.unwrap();
        let made = other.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_string();
        assert_eq!(made.len(), 16);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let log = std::fs::read_to_string(ws.path("data").with_extension("log")).unwrap();
        let lines: Vec<Value> = log
            .lines()
            .filter(|l| l.starts_with('{'))
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        let carrying = |message: &str| {
            lines.iter().any(|l| {
                l["fields"]["message"] == message
                    && l["spans"]
                        .as_array()
                        .is_some_and(|s| s.iter().any(|s| s["request_id"] == "teacher-req-42"))
            })
        };
        assert!(carrying("request"), "the request's line: {log}");
        assert!(carrying("building"), "the build's lines carry it: {log}");
        assert!(carrying("build ended"), "{log}");
        assert!(log.contains(&made), "the service's own id is logged too");
    });
}

#[test]
fn a_queued_build_is_cancelled_with_its_last_event() {
    let ws = Workspace::with_example_channel();
    runtime().block_on(async move {
        let channel = ChannelServer::start(&ws.channel());
        // it only queues: nothing builds, so the build waits to be cancelled
        let service = Service::start(&ws.path("data"), &channel, &["--no-builds"]);
        let teacher = service.token("teacher", &["intro"]);
        let stranger = service.token("teacher", &["other"]);
        let spec = spec_yaml(&channel, "waiting", &["greet"], "");
        let (status, env) = submit_yaml(&service, &teacher, "intro", &spec).await;
        assert_eq!((status, &env["status"]), (202, &json!("queued")), "{env}");
        let id = env["id"].as_str().unwrap();
        let cancel = |token: &str| {
            send(
                client()
                    .post(service.url(&format!("/api/v1/environments/{id}/cancel")))
                    .bearer_auth(token),
            )
        };
        assert_eq!(cancel(&stranger).await.0, 403);
        let (status, cancelled) = cancel(&teacher).await;
        assert_eq!(status, 200, "{cancelled}");
        assert_eq!(cancelled["status"], "failed");
        assert!(
            cancelled["error"]
                .as_str()
                .unwrap()
                .starts_with("cancelled"),
            "{cancelled}"
        );
        let events = follow_events(&service, &teacher, id).await;
        let (_, kind, done) = events.last().unwrap();
        assert_eq!((kind.as_str(), &done["status"]), ("done", &json!("failed")));
        let (status, again) = cancel(&teacher).await;
        assert_eq!(status, 409, "{again}");
    });
}

#[test]
fn a_course_at_its_quota_is_refused_new_environments_and_builds() {
    let ws = Workspace::with_example_channel();
    runtime().block_on(async move {
        let channel = ChannelServer::start(&ws.channel());
        let counted = Service::start(
            &ws.path("counted"),
            &channel,
            &["--max-course-environments", "2"],
        );
        let teacher = counted.token("teacher", &["intro"]);
        let spec = |name: &str| spec_yaml(&channel, name, &["greet"], "");
        let mut ids = Vec::new();
        for name in ["a", "b"] {
            let (status, env) = submit_yaml(&counted, &teacher, "intro", &spec(name)).await;
            assert!(status == 202 || status == 200, "{env}");
            ids.push(env["id"].as_str().unwrap().to_string());
            wait_until(&counted, &teacher, &ids[ids.len() - 1], &["ready"]).await;
        }
        let (status, refused) = submit_yaml(&counted, &teacher, "intro", &spec("c")).await;
        assert_eq!(
            (status, &refused["error"]),
            (403, &json!("quota_exceeded")),
            "{refused}"
        );
        assert!(
            refused["message"].as_str().unwrap().contains("archive"),
            "{refused}"
        );
        // what exists is still answered, and archiving one makes room
        let (status, _) = submit_yaml(&counted, &teacher, "intro", &spec("a")).await;
        assert_eq!(status, 200);
        let (status, _) = send(
            client()
                .post(counted.url(&format!("/api/v1/environments/{}/archive", ids[1])))
                .bearer_auth(&teacher),
        )
        .await;
        assert_eq!(status, 200);
        let (status, env) = submit_yaml(&counted, &teacher, "intro", &spec("c")).await;
        assert!(status == 202 || status == 200, "{env}");

        // a course whose images hold its bytes starts no new build
        let sized = Service::start(&ws.path("sized"), &channel, &["--max-course-size", "1KiB"]);
        let teacher = sized.token("teacher", &["data"]);
        let (_, first) = submit_yaml(&sized, &teacher, "data", &spec("first")).await;
        wait_until(&sized, &teacher, first["id"].as_str().unwrap(), &["ready"]).await;
        // the same packages again reuse the image (no new bytes); others would build
        let (status, _) = submit_yaml(&sized, &teacher, "data", &spec("same")).await;
        assert_eq!(status, 200);
        let other = spec_yaml(&channel, "second", &["greet", "pyhello"], "");
        let (status, refused) = submit_yaml(&sized, &teacher, "data", &other).await;
        assert_eq!(
            (status, &refused["error"]),
            (403, &json!("quota_exceeded")),
            "{refused}"
        );
        assert!(
            refused["message"].as_str().unwrap().contains("1.0 KiB"),
            "{refused}"
        );
    });
}

#[test]
fn images_gc_removes_what_nothing_refers_to_and_every_environment_still_pulls() {
    require("skopeo");
    let ws = Workspace::with_example_channel();
    runtime().block_on(async move {
        let channel = ChannelServer::start(&ws.channel());
        let data = ws.path("data");
        let service = Service::start(&data, &channel, &[]);
        let teacher = service.token("teacher", &["intro"]);
        let mut id = String::new();
        for packages in [
            &["greet"][..],
            &["greet", "pyhello"],
            &["greet", "hello-prefix"],
        ] {
            let (_, env) = submit_yaml(
                &service,
                &teacher,
                "intro",
                &spec_yaml(&channel, "lab", packages, ""),
            )
            .await;
            id = env["id"].as_str().unwrap().to_string();
            wait_until(&service, &teacher, &id, &["ready"]).await;
        }
        let versions = |service: &Service| {
            let url = service.url(&format!("/api/v1/environments/{id}/versions"));
            let teacher = teacher.clone();
            async move {
                let (_, list) = send(client().get(url).bearer_auth(&teacher)).await;
                list["versions"].as_array().unwrap().len()
            }
        };
        assert_eq!(versions(&service).await, 3);
        // a blob file no image holds, old; and one just written (a build in flight)
        let blobs = data.join("images/blobs/sha256");
        let (old, young) = (blobs.join("0".repeat(64)), blobs.join("1".repeat(64)));
        std::fs::write(&old, b"left by a build that died").unwrap();
        std::fs::write(&young, b"a build's, not recorded yet").unwrap();
        run_ok(Command::new("touch").args(["-d", "2 hours ago"]).arg(&old));
        let gc = |delete: bool| {
            let mut args = vec![
                "images",
                "gc",
                "--keep-versions",
                "1",
                "--json",
                "--data-dir",
                data.to_str().unwrap(),
            ];
            if delete {
                args.push("--delete");
            }
            serde_json::from_str::<Value>(&run_ok(trousse(&args))).unwrap()
        };
        let dry = gc(false);
        assert_eq!(
            (dry["versions"].as_u64(), dry["dry_run"].as_bool()),
            (Some(2), Some(true)),
            "{dry}"
        );
        assert!(dry["blobs"].as_u64().unwrap() >= 1, "{dry}");
        assert!(old.exists(), "a dry run removes nothing");
        assert_eq!(versions(&service).await, 3);

        let done = gc(true);
        assert_eq!(done["versions"], dry["versions"], "{done}");
        assert_eq!(
            done["blobs"], dry["blobs"],
            "the dry run said what would go: {done}"
        );
        assert!(!old.exists() && young.exists(), "the young file is kept");
        assert_eq!(versions(&service).await, 1);
        // what remains pulls whole
        run_ok(Command::new("skopeo").args([
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{}/intro/lab:latest", service.host()),
            &format!("oci:{}:lab", ws.path("pulled").display()),
        ]));
        let again = gc(true);
        assert_eq!(
            (
                again["versions"].as_u64(),
                again["images"].as_u64(),
                again["blobs"].as_u64()
            ),
            (Some(0), Some(0), Some(0)),
            "{again}"
        );
    });
}

#[test]
fn an_environment_is_deleted_for_good_but_not_an_open_exam() {
    let ws = Workspace::with_example_channel();
    runtime().block_on(async move {
        let channel = ChannelServer::start(&ws.channel());
        let service = Service::start(&ws.path("data"), &channel, &[]);
        let teacher = service.token("teacher", &["intro"]);
        let (_, env) = submit_yaml(
            &service,
            &teacher,
            "intro",
            &spec_yaml(&channel, "old", &["greet"], ""),
        )
        .await;
        let id = env["id"].as_str().unwrap().to_string();
        wait_until(&service, &teacher, &id, &["ready"]).await;
        let delete = |id: String| {
            send(
                client()
                    .delete(service.url(&format!("/api/v1/environments/{id}")))
                    .bearer_auth(&teacher),
            )
        };
        assert_eq!(delete(id.clone()).await.0, 204);
        let (status, _) = send(
            client()
                .get(service.url(&format!("/api/v1/environments/{id}")))
                .bearer_auth(&teacher),
        )
        .await;
        assert_eq!(status, 404);
        let (status, _) = send(client().get(service.url("/v2/intro/old/manifests/latest"))).await;
        assert_eq!(status, 404, "its tag went with it");
        assert_eq!(delete(id.clone()).await.0, 404);
        // an exam without a window is open: it stays
        let spec = spec_yaml(&channel, "final", &["greet"], "");
        let (status, exam) = send(
            client()
                .post(service.url("/api/v1/courses/intro/environments"))
                .bearer_auth(&teacher)
                .json(&json!({"spec": spec, "exam": true})),
        )
        .await;
        assert_eq!(status, 202, "{exam}");
        let exam_id = exam["id"].as_str().unwrap().to_string();
        wait_until(&service, &teacher, &exam_id, &["ready"]).await;
        let (status, refused) = delete(exam_id.clone()).await;
        assert_eq!(status, 409, "{refused}");
        // once its window has closed, it may go
        let (status, _) = send(
            client()
                .put(service.url("/api/v1/courses/intro/exams/final/window"))
                .bearer_auth(&teacher)
                .json(&json!({"opens": "2000-01-01T00:00:00Z", "closes": "2000-01-02T00:00:00Z"})),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(delete(exam_id).await.0, 204);
    });
}
