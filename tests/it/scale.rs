//! Scale-out against real components: PostgreSQL (a server of the test's
//! own), Debian's registry, and several `trousse serve` replicas and
//! `trousse worker` processes on loopback sharing them.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use trousse_testkit::postgres::Postgres;

use crate::common::{service::*, *};

/// A PostgreSQL database, a registry and the flags every process of one deployment shares.
struct Deployment {
    postgres: Postgres,
    url: String,
    registry: RegistryServer,
    prefix: String,
}

impl Deployment {
    fn start() -> Self {
        let postgres = Postgres::start().unwrap();
        let url = postgres.new_database("trousse").unwrap();
        let registry = RegistryServer::start(None);
        let prefix = format!("{}/institution", registry.host);
        Self {
            postgres,
            url,
            registry,
            prefix,
        }
    }

    fn env(&self) -> [(&str, &str); 1] {
        [("TROUSSE_DATABASE_URL", self.url.as_str())]
    }

    /// An API replica that only queues builds.
    fn replica(&self, ws: &Workspace, channel: &ChannelServer, name: &str) -> Service {
        Service::start_with_env(
            &ws.path(name),
            channel,
            &["--no-builds", "--push-to", &self.prefix],
            &self.env(),
        )
    }

    /// A worker with a short lease, so that a dead one's build is taken soon.
    fn worker(&self, ws: &Workspace, channel: &ChannelServer, name: &str) -> Service {
        Service::start_worker(
            &ws.path(name),
            channel,
            &["--push-to", &self.prefix, "--build-lease", "6"],
            &self.env(),
        )
    }

    fn count(&self, sql: &str) -> i64 {
        self.postgres
            .sql_on(&self.url, sql)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }
}

/// Twenty small packages, one per environment: twenty distinct locks.
fn with_units(ws: &Workspace, count: usize) {
    let units: Vec<_> = (0..count)
        .map(|i| {
            trousse_testkit::PackageSpec::new(&format!("unit-{i}"), "1.0")
                .noarch("generic")
                .file(
                    &format!("share/unit-{i}/id.txt"),
                    format!("unit {i}\n").into_bytes(),
                    0o644,
                )
        })
        .collect();
    ws.add_packages(&units);
}

/// The events of a build, complete: numbered 1, 2, … without a gap, the last one `done` and ready.
fn assert_complete(events: &[(i64, String, Value)], context: &str) {
    let numbers: Vec<i64> = events.iter().map(|(seq, _, _)| *seq).collect();
    let expected: Vec<i64> = (1..=events.len() as i64).collect();
    assert_eq!(
        numbers, expected,
        "{context}: a gap or a repeat in {events:?}"
    );
    let (_, kind, data) = events.last().unwrap();
    assert_eq!(
        (kind.as_str(), &data["status"]),
        ("done", &Value::from("ready")),
        "{context}"
    );
}

#[test]
fn two_replicas_and_two_workers_build_each_environment_once() {
    let ws = Workspace::with_example_channel();
    with_units(&ws, 20);
    let deployment = Deployment::start();
    runtime().block_on(async {
        let channel = ChannelServer::start(&ws.channel());
        let replicas = [
            deployment.replica(&ws, &channel, "replica-1"),
            deployment.replica(&ws, &channel, "replica-2"),
        ];
        let _workers = [
            deployment.worker(&ws, &channel, "worker-1"),
            deployment.worker(&ws, &channel, "worker-2"),
        ];
        let admin = replicas[0].token("admin", &[]);
        let specs: Vec<String> = (0..20)
            .map(|i| {
                spec_yaml(
                    &channel,
                    &format!("env{i}"),
                    &["greet", &format!("unit-{i}")],
                    "",
                )
            })
            .collect();
        // each environment five times, its submissions spread over both replicas
        let submissions = (0..100).map(|k| {
            let replica = &replicas[(k / 20) % 2];
            submit_yaml(replica, &admin, "scale", &specs[k % 20])
        });
        let started = Instant::now();
        let answers = futures::future::join_all(submissions).await;
        let mut ids = vec![std::collections::BTreeSet::new(); 20];
        for (k, (status, env)) in answers.iter().enumerate() {
            assert!(*status == 200 || *status == 202, "{status} {env}");
            ids[k % 20].insert(env["id"].as_str().unwrap().to_string());
        }
        for (i, set) in ids.iter().enumerate() {
            assert_eq!(set.len(), 1, "env{i} answered as one environment: {set:?}");
        }
        for (i, set) in ids.iter().enumerate() {
            let id = set.first().unwrap();
            let env = wait_until(&replicas[i % 2], &admin, id, &["ready", "failed"]).await;
            assert_eq!(env["status"], "ready", "{env}");
            assert_eq!(
                env["image"],
                format!("{}/scale/env{i}:latest", deployment.prefix)
            );
            // the whole log, from either replica, though neither built it
            for replica in &replicas {
                let events = follow_events(replica, &admin, id).await;
                assert_complete(&events, &format!("env{i} from replica {}", replica.port));
            }
        }
        println!(
            "100 submissions of 20 environments over 2 replicas, built by 2 workers: {:.1} s",
            started.elapsed().as_secs_f64()
        );
        assert_eq!(
            deployment.count("SELECT COUNT(*) FROM builds"),
            20,
            "one build each"
        );
        assert_eq!(deployment.count("SELECT COUNT(*) FROM environments"), 20);
        assert_eq!(
            deployment.count("SELECT COUNT(DISTINCT split_part(lease_owner, '/', 1)) FROM builds"),
            2,
            "both workers built"
        );
        assert_eq!(
            deployment.count("SELECT COALESCE(MAX(attempts), 0) FROM builds"),
            1,
            "no build was started twice"
        );
    });
}

#[test]
fn a_worker_killed_mid_build_leaves_it_to_another() {
    let ws = Workspace::with_example_channel();
    ws.add_big_package(11);
    let deployment = Deployment::start();
    runtime().block_on(async {
        let channel = ChannelServer::start(&ws.channel());
        let replica = deployment.replica(&ws, &channel, "replica");
        let mut first = deployment.worker(&ws, &channel, "worker-1");
        let admin = replica.token("admin", &[]);
        let spec = spec_yaml(&channel, "big", &["big-data", "greet"], "");
        let (status, created) = submit_yaml(&replica, &admin, "physics", &spec).await;
        assert_eq!(status, 202, "{created}");
        let id = created["id"].as_str().unwrap().to_string();
        wait_until(&replica, &admin, &id, &["building"]).await;
        let _second = deployment.worker(&ws, &channel, "worker-2");
        first.kill();
        let killed = Instant::now();

        let env = wait_until(&replica, &admin, &id, &["ready", "failed"]).await;
        assert_eq!(env["status"], "ready", "{env}");
        println!(
            "a worker killed mid-build: ready {:.1} s later (lease 6 s)",
            killed.elapsed().as_secs_f64()
        );
        assert_eq!(deployment.count("SELECT COUNT(*) FROM builds"), 1);
        assert_eq!(
            deployment.count("SELECT COUNT(*) FROM environments"),
            1,
            "nothing duplicated"
        );
        assert_eq!(deployment.count("SELECT MAX(attempts) FROM builds"), 2);
        let events = follow_events(&replica, &admin, &id).await;
        assert!(
            events
                .iter()
                .any(|(_, k, d)| k == "status" && d["attempt"] == 2),
            "the second worker started it again: {events:?}"
        );
        assert_complete(&events, "after a worker died");
        // and the image in the registry is whole
        require("skopeo");
        run_ok(std::process::Command::new("skopeo").args([
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{}/physics/big:latest", deployment.prefix),
            &format!("oci:{}:big", ws.path("pulled").display()),
        ]));
        assert!(deployment.registry.stored_blobs() > 0);
    });
}

#[test]
fn postgres_stopped_under_load_answers_503_and_loses_nothing() {
    let ws = Workspace::with_example_channel();
    with_units(&ws, 6);
    let deployment = Deployment::start();
    runtime().block_on(async {
        let channel = ChannelServer::start(&ws.channel());
        let replica = deployment.replica(&ws, &channel, "replica");
        let _worker = deployment.worker(&ws, &channel, "worker");
        let admin = replica.token("admin", &[]);
        let spec = |i: usize| {
            spec_yaml(
                &channel,
                &format!("env{i}"),
                &["greet", &format!("unit-{i}")],
                "",
            )
        };
        let mut accepted = Vec::new();
        for i in 0..3 {
            let (status, env) = submit_yaml(&replica, &admin, "outage", &spec(i)).await;
            assert_eq!(status, 202, "{env}");
            accepted.push(env["id"].as_str().unwrap().to_string());
        }

        deployment.postgres.stop().unwrap();
        // reads, submissions and health while the database is down: refused cleanly, at once or
        // within the pool's 5 s wait, each with the JSON error every route answers with
        let refused: Vec<String> = (3..6).map(spec).collect();
        let load = refused
            .iter()
            .map(|text| submit_yaml(&replica, &admin, "outage", text));
        let reads = (0..3).map(|_| {
            send(
                client()
                    .get(replica.url("/api/v1/courses/outage/environments"))
                    .bearer_auth(&admin),
            )
        });
        let (submitted, read) = futures::future::join(
            futures::future::join_all(load),
            futures::future::join_all(reads),
        )
        .await;
        for (status, body) in submitted.iter().chain(read.iter()) {
            assert_eq!(*status, 503, "{body}");
            assert_eq!(body["error"], "store_unavailable", "{body}");
            assert!(
                body["message"].as_str().unwrap().contains("try again"),
                "{body}"
            );
            assert!(
                !body.to_string().contains(&deployment.url),
                "no database URL in {body}"
            );
        }
        let (status, health) = send(client().get(replica.url("/health"))).await;
        assert_eq!(status, 503, "{health}");
        assert_ne!(health["checks"]["database"], "ok", "{health}");

        deployment.postgres.resume().unwrap();
        // what was accepted before is built; what was refused is accepted now
        for id in &accepted {
            let env = wait_until(&replica, &admin, id, &["ready", "failed"]).await;
            assert_eq!(env["status"], "ready", "{env}");
        }
        for i in 3..6 {
            let (status, env) = submit_yaml(&replica, &admin, "outage", &spec(i)).await;
            assert_eq!(status, 202, "{env}");
            let id = env["id"].as_str().unwrap();
            let env = wait_until(&replica, &admin, id, &["ready", "failed"]).await;
            assert_eq!(env["status"], "ready", "{env}");
        }
        assert_eq!(deployment.count("SELECT COUNT(*) FROM environments"), 6);
        assert_eq!(
            deployment.count("SELECT COUNT(*) FROM builds WHERE status <> 'ready'"),
            0,
            "the queue drained"
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while !replica.healthy() {
            assert!(
                Instant::now() < deadline,
                "the replica never became healthy again"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
}

#[test]
fn a_sqlite_deployment_moves_to_postgres_with_its_images() {
    require("skopeo");
    let ws = Workspace::with_example_channel();
    let deployment = Deployment::start();
    runtime().block_on(async {
        let channel = ChannelServer::start(&ws.channel());
        let data = ws.path("embedded");
        let specs = [
            spec_yaml(&channel, "week1", &["greet"], ""),
            spec_yaml(&channel, "week2", &["greet", "pyhello"], ""),
        ];
        let (teacher, ids) = {
            let embedded = Service::start(&data, &channel, &[]);
            let teacher = embedded.token("teacher", &["intro"]);
            let mut ids = Vec::new();
            for spec in &specs {
                let (status, env) = submit_yaml(&embedded, &teacher, "intro", spec).await;
                assert_eq!(status, 202, "{env}");
                let id = env["id"].as_str().unwrap().to_string();
                let env = wait_until(&embedded, &teacher, &id, &["ready"]).await;
                ids.push((id, env["digest"].as_str().unwrap().to_string()));
            }
            (teacher, ids)
        };
        // the embedded service is stopped: its rows and images move
        let copied = run_ok(trousse(&[
            "store",
            "copy",
            "--data-dir",
            data.to_str().unwrap(),
            "--to",
            &deployment.url,
            "--push-to",
            &deployment.prefix,
        ]));
        println!("{copied}");
        let moved = Service::start_with_env(
            &ws.path("replica"),
            &channel,
            &["--push-to", &deployment.prefix],
            &deployment.env(),
        );
        for ((id, digest), name) in ids.iter().zip(["week1", "week2"]) {
            // the teacher's token still works; the image is named in, and pulled from, the registry
            let env = environment(&moved, &teacher, id).await;
            assert_eq!(env["status"], "ready", "{env}");
            assert_eq!(env["digest"], digest.as_str());
            let image = format!("{}/intro/{name}:latest", deployment.prefix);
            assert_eq!(env["image"], image);
            let inspect: Value =
                serde_json::from_str(&run_ok(std::process::Command::new("skopeo").args([
                    "inspect",
                    "--tls-verify=false",
                    &format!("docker://{image}"),
                ])))
                .unwrap();
            assert_eq!(inspect["Digest"], digest.as_str());
        }
        // the same request is answered from what was copied: no build
        let (status, again) = submit_yaml(&moved, &teacher, "intro", &specs[0]).await;
        assert_eq!(
            (status, &again["id"]),
            (200, &Value::from(ids[0].0.as_str()))
        );
        assert_eq!(deployment.count("SELECT COUNT(*) FROM builds"), 2);
        // and a second copy into the same database is refused, changing nothing
        let refused = run(trousse(&[
            "store",
            "copy",
            "--data-dir",
            data.to_str().unwrap(),
            "--to",
            &deployment.url,
        ]));
        assert!(!refused.status.success());
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(stderr.contains("copy into an empty database"), "{stderr}");
        assert_eq!(deployment.count("SELECT COUNT(*) FROM environments"), 2);
    });
}

#[test]
fn a_revoked_token_is_refused_at_once_on_every_replica() {
    let ws = Workspace::with_example_channel();
    let deployment = Deployment::start();
    runtime().block_on(async {
        let channel = ChannelServer::start(&ws.channel());
        let one = deployment.replica(&ws, &channel, "replica-1");
        let two = deployment.replica(&ws, &channel, "replica-2");
        let admin = one.token("admin", &[]);
        let (status, made) = send(
            client()
                .post(one.url("/api/v1/tokens"))
                .bearer_auth(&admin)
                .json(&json!({"role": "teacher", "courses": ["intro"], "description": "Ada", "expires_in_days": 30})),
        )
        .await;
        assert_eq!(status, 201, "{made}");
        let (token, id) = (made["token"].as_str().unwrap(), made["id"].as_str().unwrap());
        let courses = |replica: &Service| {
            send(client().get(replica.url("/api/v1/courses")).bearer_auth(token))
        };
        assert_eq!(courses(&two).await.0, 200, "made on one, known to the other");
        let (_, listed) = send(client().get(two.url("/api/v1/tokens")).bearer_auth(&admin)).await;
        let entry = listed["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == id)
            .unwrap()
            .clone();
        assert_eq!((&entry["role"], &entry["description"]), (&json!("teacher"), &json!("Ada")));
        assert!(entry["expires_at"].as_i64().unwrap() > 0);
        assert!(!listed.to_string().contains(token), "a list never shows a token");
        // a teacher manages no tokens
        let (status, _) = send(client().get(two.url("/api/v1/tokens")).bearer_auth(token)).await;
        assert_eq!(status, 403);

        let (status, _) = send(
            client()
                .delete(one.url(&format!("/api/v1/tokens/{id}")))
                .bearer_auth(&admin),
        )
        .await;
        assert_eq!(status, 204);
        for replica in [&two, &one] {
            let (status, body) = courses(replica).await;
            assert_eq!(status, 401, "refused at once: {body}");
        }
        // the CLI lists and revokes on the same database
        let listed = run_ok(trousse(&["token", "list", "--json", "--data-dir", "/nonexistent"]).env("TROUSSE_DATABASE_URL", &deployment.url));
        let listed: Value = serde_json::from_str(&listed).unwrap();
        assert_eq!(listed["tokens"].as_array().unwrap().len(), 1, "the admin's only");
        let admin_id = listed["tokens"][0]["id"].as_str().unwrap().to_string();
        run_ok(trousse(&["token", "revoke", &admin_id, "--data-dir", "/nonexistent"]).env("TROUSSE_DATABASE_URL", &deployment.url));
        let (status, _) = send(client().get(two.url("/api/v1/courses")).bearer_auth(&admin)).await;
        assert_eq!(status, 401);
    });
}

#[test]
fn a_running_build_is_cancelled_on_its_worker() {
    require("skopeo");
    let ws = Workspace::with_example_channel();
    ws.add_big_package(13);
    let deployment = Deployment::start();
    runtime().block_on(async {
        let channel = ChannelServer::start(&ws.channel());
        let replica = deployment.replica(&ws, &channel, "replica");
        let _worker = deployment.worker(&ws, &channel, "worker");
        let teacher = replica.token("teacher", &["physics"]);
        let spec = spec_yaml(&channel, "big", &["big-data", "greet"], "");
        let (status, created) = submit_yaml(&replica, &teacher, "physics", &spec).await;
        assert_eq!(status, 202, "{created}");
        let id = created["id"].as_str().unwrap().to_string();
        wait_until(&replica, &teacher, &id, &["building"]).await;
        let asked = Instant::now();
        let (status, cancelled) = send(
            client()
                .post(replica.url(&format!("/api/v1/environments/{id}/cancel")))
                .bearer_auth(&teacher),
        )
        .await;
        assert_eq!(
            (status, &cancelled["status"]),
            (200, &json!("failed")),
            "{cancelled}"
        );
        // the worker stops at its next lease renewal and writes the last event
        let events = follow_events(&replica, &teacher, &id).await;
        println!(
            "a running build cancelled: its stream ended {:.1} s later",
            asked.elapsed().as_secs_f64()
        );
        let (_, kind, done) = events.last().unwrap();
        assert_eq!(
            (kind.as_str(), &done["status"]),
            ("done", &json!("failed")),
            "{events:?}"
        );
        assert!(
            done["error"].as_str().unwrap().starts_with("cancelled"),
            "{done}"
        );
        assert_eq!(
            deployment.count("SELECT COUNT(*) FROM builds WHERE status = 'failed'"),
            1
        );
        let image = format!("docker://{}/physics/big:latest", deployment.prefix);
        let inspect = std::process::Command::new("skopeo")
            .args(["inspect", "--tls-verify=false", &image])
            .output()
            .unwrap();
        assert!(!inspect.status.success(), "nothing was pushed");
        // and the worker takes the next build
        let small = spec_yaml(&channel, "small", &["greet"], "");
        let (_, next) = submit_yaml(&replica, &teacher, "physics", &small).await;
        let next = wait_until(
            &replica,
            &teacher,
            next["id"].as_str().unwrap(),
            &["ready", "failed"],
        )
        .await;
        assert_eq!(next["status"], "ready", "{next}");
    });
}

#[test]
fn a_callers_rate_is_counted_across_replicas() {
    let ws = Workspace::with_example_channel();
    let deployment = Deployment::start();
    runtime().block_on(async {
        let channel = ChannelServer::start(&ws.channel());
        let limited = |name: &str| {
            Service::start_with_env(
                &ws.path(name),
                &channel,
                &[
                    "--no-builds",
                    "--push-to",
                    &deployment.prefix,
                    "--max-submissions-per-minute",
                    "3",
                ],
                &deployment.env(),
            )
        };
        let replicas = [limited("replica-1"), limited("replica-2")];
        let ada = replicas[0].token("teacher", &["intro"]);
        let bob = replicas[0].token("teacher", &["intro"]);
        let admin = replicas[0].token("admin", &[]);
        let spec = spec_yaml(&channel, "week1", &["greet"], "");
        let preview = |replica: &Service, token: &str| {
            send(
                client()
                    .post(replica.url("/api/v1/courses/intro/preview"))
                    .bearer_auth(token)
                    .header("content-type", "application/yaml")
                    .body(spec.clone()),
            )
        };
        // the count is per minute: start early in one
        while chrono_second() > 40 {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        for n in 0..3 {
            let (status, body) = preview(&replicas[n % 2], &ada).await;
            assert_eq!(status, 200, "call {n}: {body}");
        }
        let (status, body) = preview(&replicas[1], &ada).await;
        assert_eq!((status, &body["error"]), (429, &json!("busy")), "{body}");
        assert!(
            body["message"].as_str().unwrap().contains("try again in"),
            "{body}"
        );
        // another caller, and the platform's own, are not held back by it
        assert_eq!(preview(&replicas[1], &bob).await.0, 200);
        assert_eq!(preview(&replicas[0], &admin).await.0, 200);
    });
}

/// The second of the current minute.
fn chrono_second() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        % 60
}
