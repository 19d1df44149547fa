//! Bounded work: what one request, one course or one stranger may cost the
//! service, and that every refusal is a JSON answer.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{git::GitServer, service::*, *};

/// The status and body of a request; the body must be JSON.
async fn json_answer(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let text = response.text().await.unwrap();
    assert!(
        content_type.starts_with("application/json"),
        "{status}: {content_type}: {text}"
    );
    (status, serde_json::from_str(&text).unwrap())
}

#[test]
fn inputs_made_to_be_slow_or_large_are_refused_quickly() {
    let ws = Workspace::with_example_channel();
    let channel = ChannelServer::start(&ws.channel());
    runtime().block_on(async {
        let service = Service::start(
            &ws.path("data"),
            &channel,
            &["--max-image-size", "64KiB", "--max-body", "512KiB"],
        );
        let teacher = service.token("teacher", &["intro"]);
        let post = |body: Value| {
            client()
                .post(service.url("/api/v1/courses/intro/environments"))
                .bearer_auth(&teacher)
                .json(&body)
        };
        // 200,000 nested brackets (400 KB): refused before any parser sees them
        let bomb = format!("{}{}", "[".repeat(200_000), "]".repeat(200_000));
        let lock_bomb = format!("version: 6\nenvironments: {bomb}\n");
        let spec_bomb = format!("name: x\ndependencies: {bomb}\n");
        for body in [
            json!({"name": "x", "lock": lock_bomb}),
            json!({"name": "x", "spec": spec_bomb}),
        ] {
            let started = Instant::now();
            let (status, error) = json_answer(post(body)).await;
            assert!(matches!(status, 400 | 413), "{status}: {error}");
            assert!(
                status == 413 || error["message"].as_str().unwrap().contains("nest deeper"),
                "{error}"
            );
            assert!(started.elapsed() < Duration::from_secs(5));
        }
        let (status, error) = json_answer(post(json!({"name": "x", "lock": format!("version: 6\nenvironments: {}{}\n", "[".repeat(100), "]".repeat(100))}))).await;
        assert_eq!(status, 400, "{error}");
        assert!(error["message"].as_str().unwrap().contains("nest deeper"), "{error}");

        // an environment larger than --max-image-size: refused with its figure
        let spec = spec_yaml(&channel, "big", &["hello-prefix"], "");
        let (status, error) = json_answer(
            client()
                .post(service.url("/api/v1/courses/intro/environments"))
                .bearer_auth(&teacher)
                .header("content-type", "application/yaml")
                .body(spec),
        )
        .await;
        assert_eq!((status, &error["error"]), (422, &json!("image_too_large")), "{error}");
        assert!(error["message"].as_str().unwrap().contains("at most 64.0 KiB"), "{error}");

        // plain-text rejections are JSON too: bad JSON, a body over the limit, a method
        let (status, _) = json_answer(
            client()
                .put(service.url("/api/v1/courses/intro/exams/final/window"))
                .bearer_auth(&teacher)
                .header("content-type", "application/json")
                .body("{not json"),
        )
        .await;
        assert!(matches!(status, 400 | 422), "{status}");
        let (status, _) = json_answer(
            client()
                .put(service.url("/api/v1/courses/intro/git-token"))
                .bearer_auth(&teacher)
                .json(&json!({"token": 42})),
        )
        .await;
        assert!(matches!(status, 400 | 422), "{status}");
        let (status, error) = json_answer(
            client()
                .post(service.url("/api/v1/hooks/git"))
                .body(vec![b'x'; 600 << 10]),
        )
        .await;
        assert_eq!(status, 413, "{error}");
        let (status, error) = json_answer(
            client()
                .patch(service.url("/api/v1/environments/x"))
                .bearer_auth(&teacher),
        )
        .await;
        assert_eq!(status, 405, "{error}");
        // DELETE is a route now: an unknown environment is a JSON 404
        let (status, error) = json_answer(
            client()
                .delete(service.url("/api/v1/environments/x"))
                .bearer_auth(&teacher),
        )
        .await;
        assert_eq!((status, &error["error"]), (404, &serde_json::json!("not_found")), "{error}");
        assert!(service.healthy());
    });

    // a solve over its time limit stops: a 422 that says so
    runtime().block_on(async {
        let service = Service::start(&ws.path("slow"), &channel, &["--solve-timeout", "0"]);
        let teacher = service.token("teacher", &["intro"]);
        let spec = spec_yaml(&channel, "slow", &["hello-prefix"], "");
        let (status, error) = submit_yaml(&service, &teacher, "intro", &spec).await;
        assert_eq!(
            (status, &error["error"]),
            (422, &json!("time_limit")),
            "{error}"
        );
    });
}

#[test]
fn one_course_or_one_stranger_cannot_take_the_service() {
    let ws = Workspace::with_example_channel();
    let channel = ChannelServer::start(&ws.channel());
    let silent = super::hostile_git::silent_server();
    let hub = FakeHub::start(&[("known-token", "ada", &["course:intro"])]);
    runtime().block_on(async {
        let host = format!("127.0.0.1:{silent}");
        let hub_url = hub.api_url();
        let service = std::sync::Arc::new(Service::start(
            &ws.path("data"),
            &channel,
            &[
                "--allow-git-host",
                &host,
                "--repo-timeout",
                "6",
                "--hub-api-url",
                &hub_url,
            ],
        ));
        let admin = service.token("admin", &[]);
        // two fetches of one course hang on a server that says nothing: a third is refused
        let submit = |course: &str, name: &str| {
            client()
                .post(service.url(&format!("/api/v1/courses/{course}/environments")))
                .bearer_auth(&admin)
                .json(&json!({"repo": format!("http://{host}/{name}.git"), "name": name}))
                .send()
        };
        let hanging = [submit("intro", "a"), submit("intro", "b")];
        let hanging = futures::future::join_all(hanging);
        let third = async {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let (status, error) = json_answer(
                client()
                    .post(service.url("/api/v1/courses/intro/environments"))
                    .bearer_auth(&admin)
                    .json(&json!({"repo": format!("http://{host}/c.git"), "name": "c"})),
            )
            .await;
            assert_eq!((status, &error["error"]), (429, &json!("busy")), "{error}");
            assert!(error["message"]
                .as_str()
                .unwrap()
                .contains("course 'intro'"));
            assert!(service.healthy(), "the others are answered meanwhile");
        };
        let (answers, ()) = tokio::join!(hanging, third);
        for answer in answers {
            assert_eq!(answer.unwrap().status().as_u16(), 422);
        }

        // fresh random tokens: the hub is asked at a bounded rate, a known user still gets in
        let mut busy = 0;
        let asking = Instant::now();
        for i in 0..80 {
            let (status, _) = json_answer(
                client()
                    .get(service.url("/api/v1/courses/intro/environments"))
                    .bearer_auth(format!("random-token-{i}")),
            )
            .await;
            assert!(matches!(status, 401 | 429), "{status}");
            busy += usize::from(status == 429);
        }
        assert!(busy > 0, "no look-up was refused");
        // at most the burst (50) and 10 a second while asked: the bound, whatever
        // the machine's speed
        let allowed = 50 + (asking.elapsed().as_secs_f64() * 10.0).ceil() as usize;
        assert!(
            hub.requests() <= allowed,
            "the hub was asked {} times, {allowed} allowed",
            hub.requests()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (status, _) = send(
            client()
                .get(service.url("/api/v1/courses/intro/environments"))
                .bearer_auth("known-token"),
        )
        .await;
        assert_eq!(status, 200);
    });
}

#[test]
fn a_course_webhook_moves_that_course_only() {
    let ws = Workspace::with_example_channel();
    let channel = ChannelServer::start(&ws.channel());
    let server = GitServer::start();
    let mut repo = server.repo("course");
    let environment = format!(
        "name: course\nchannels: [{}]\ndependencies: [hello-prefix]\n",
        channel.url()
    );
    repo.write("environment.yml", &environment, false);
    repo.commit("first");
    runtime().block_on(async {
        let host = format!("127.0.0.1:{}", server.http_port);
        let service = Service::start(&ws.path("data"), &channel, &["--allow-git-host", &host]);
        let (intro, algebra) = (
            service.token("teacher", &["intro"]),
            service.token("teacher", &["algebra"]),
        );
        let url = server.http_url("course");
        let (status, created) = send(
            client()
                .post(service.url("/api/v1/courses/intro/environments"))
                .bearer_auth(&intro)
                .json(&json!({"repo": url, "ref": "main"})),
        )
        .await;
        assert_eq!(status, 202, "{created}");
        let id = created["id"].as_str().unwrap().to_string();
        wait_until(&service, &intro, &id, &["ready", "failed"]).await;
        let set = |course: &str, token: &str, secret: &str| {
            client()
                .put(service.url(&format!("/api/v1/courses/{course}/webhook-secret")))
                .bearer_auth(token)
                .json(&json!({"secret": secret}))
        };
        let (status, _) = json_answer(set("intro", &intro, "short")).await;
        assert_eq!(status, 400);
        let (status, _) = json_answer(set("intro", &algebra, "the-intro-course-secret")).await;
        assert_eq!(status, 403, "a teacher of another course cannot set it");
        for (course, token, secret) in [
            ("intro", &intro, "the-intro-course-secret"),
            ("algebra", &algebra, "the-algebra-course-secret"),
        ] {
            let (status, _) = send(set(course, token, secret)).await;
            assert_eq!(status, 204);
        }
        repo.write("week2.ipynb", "{}\n", false);
        let second = repo.commit("second");
        let payload = json!({
            "ref": "refs/heads/main",
            "after": second,
            "project": {"git_http_url": url},
        })
        .to_string();
        let hook = |path: &str, secret: &str| {
            json_answer(
                client()
                    .post(service.url(path))
                    .header("x-gitlab-event", "Push Hook")
                    .header("x-gitlab-token", secret.to_string())
                    .body(payload.clone()),
            )
        };
        // algebra's secret moves nothing of intro's, on either route
        let (status, outcome) = hook(
            "/api/v1/courses/algebra/hooks/git",
            "the-algebra-course-secret",
        )
        .await;
        assert_eq!(
            (status, &outcome["environments"]),
            (200, &json!([])),
            "{outcome}"
        );
        let (status, _) = hook(
            "/api/v1/courses/intro/hooks/git",
            "the-algebra-course-secret",
        )
        .await;
        assert_eq!(status, 401);
        let (status, _) = hook("/api/v1/hooks/git", "the-intro-course-secret").await;
        assert_eq!(status, 404, "no service-wide secret is configured");
        let (status, outcome) =
            hook("/api/v1/courses/intro/hooks/git", "the-intro-course-secret").await;
        assert_eq!(status, 200, "{outcome}");
        assert_eq!(
            outcome["environments"],
            json!([{"course": "intro", "name": "course", "status": 202}])
        );
    });
}
