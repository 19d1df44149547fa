//! An exam before and after its window, as a student, a teacher, the hub and
//! an anonymous puller see it: listings, reads, events and `/v2/`. The clock
//! is moved by setting the window, never by sleeping.

use serde_json::{json, Value};

use crate::common::{service::*, *};

/// What a `/v2/` GET of `path` answers `token` (Basic, as docker sends it).
async fn pull(service: &Service, path: &str, token: Option<&str>) -> u16 {
    let mut request = client().get(service.url(&format!("/v2/{path}")));
    if let Some(token) = token {
        request = request.basic_auth("user", Some(token));
    }
    request.send().await.unwrap().status().as_u16()
}

/// Sets the exam's window (as its teacher).
async fn set_window(service: &Service, teacher: &str, window: Value) {
    let (status, body) = send(
        client()
            .put(service.url("/api/v1/courses/intro/exams/final/window"))
            .bearer_auth(teacher)
            .json(&window),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

/// The exam as `token` lists it.
async fn listed(service: &Service, token: &str) -> Value {
    let (status, list) = send(
        client()
            .get(service.url("/api/v1/courses/intro/environments"))
            .bearer_auth(token),
    )
    .await;
    assert_eq!(status, 200, "{list}");
    list["environments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "final")
        .cloned()
        .unwrap()
}

/// The `/v2/` paths of an image: its manifest, its tags, each of its blobs.
fn image_paths(exam: &Value, manifest: &Value) -> Vec<String> {
    let digest = exam["digest"].as_str().unwrap();
    let mut paths = vec![
        format!("intro/final/manifests/{digest}"),
        "intro/final/tags/list".to_string(),
        format!(
            "intro/final/blobs/{}",
            manifest["config"]["digest"].as_str().unwrap()
        ),
    ];
    for layer in manifest["layers"].as_array().unwrap() {
        paths.push(format!(
            "intro/final/blobs/{}",
            layer["digest"].as_str().unwrap()
        ));
    }
    paths
}

#[test]
fn students_neither_see_nor_pull_an_exam_outside_its_window() {
    let ws = Workspace::with_example_channel();
    let channel = ChannelServer::start(&ws.channel());
    let hub = FakeHub::start(&[
        ("student-token", "ada", &["course:intro"]),
        ("teacher-token", "grace", &["teacher:intro"]),
    ]);
    runtime().block_on(async {
        let hub_url = hub.api_url();
        let mut service = Service::start(
            &ws.path("data"),
            &channel,
            &["--hub-api-url", &hub_url, "--require-pull-token"],
        );
        let (teacher, student) = ("teacher-token", "student-token");
        let hub_token = service.token("hub", &[]);
        let spec = spec_yaml(&channel, "final", &["hello-prefix", "greeting-data"], "");
        let (status, exam) = send(
            client()
                .post(service.url("/api/v1/courses/intro/environments"))
                .bearer_auth(teacher)
                .json(&json!({"spec": spec, "exam": true, "opens": "2099-01-01T09:00:00Z"})),
        )
        .await;
        assert_eq!(status, 202, "{exam}");
        let id = exam["id"].as_str().unwrap().to_string();
        let exam = wait_until(&service, teacher, &id, &["ready", "failed"]).await;
        assert_eq!(exam["status"], "ready", "{exam}");
        let digest = exam["digest"].as_str().unwrap().to_string();
        let manifest: Value = client()
            .get(service.url(&format!("/v2/intro/final/manifests/{digest}")))
            .basic_auth("hub", Some(&hub_token))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let paths = image_paths(&exam, &manifest);

        // before the window: the student sees that there is an exam, and when it opens
        let sealed = listed(&service, student).await;
        assert_eq!(sealed["sealed"], true, "{sealed}");
        assert_eq!(sealed["window"]["open"], false);
        for field in ["image", "lock", "lock_hash"] {
            assert_eq!(sealed[field], "", "{field}: {sealed}");
        }
        assert!(sealed["digest"].is_null() && sealed["source"].is_null());
        assert_eq!(sealed["digests"], json!([]));
        assert!(!sealed.to_string().contains(&digest), "{sealed}");
        let read = environment(&service, student, &id).await;
        assert_eq!(read["sealed"], true, "{read}");
        let (status, body) = send(
            client()
                .get(service.url(&format!("/api/v1/environments/{id}/events")))
                .bearer_auth(student),
        )
        .await;
        assert_eq!(status, 403, "{body}");
        assert!(body["message"]
            .as_str()
            .unwrap()
            .contains("2099-01-01T09:00:00Z"));
        for path in &paths {
            assert_eq!(pull(&service, path, Some(student)).await, 404, "{path}");
            assert_eq!(pull(&service, path, Some(teacher)).await, 200, "{path}");
            assert_eq!(pull(&service, path, Some(&hub_token)).await, 200, "{path}");
        }
        for who in [teacher, hub_token.as_str()] {
            assert_eq!(listed(&service, who).await["image"], exam["image"]);
        }

        // the window opens: everything is there for the student
        set_window(&service, teacher, json!({"opens": "2000-01-01T00:00:00Z"})).await;
        let open = listed(&service, student).await;
        assert_eq!(
            (&open["sealed"], &open["image"]),
            (&json!(false), &exam["image"])
        );
        for path in &paths {
            assert_eq!(pull(&service, path, Some(student)).await, 200, "{path}");
        }

        // once it has closed, it is sealed again
        set_window(
            &service,
            teacher,
            json!({"opens": "2000-01-01T00:00:00Z", "closes": "2001-01-01T00:00:00Z"}),
        )
        .await;
        assert_eq!(listed(&service, student).await["sealed"], true);
        for path in &paths {
            assert_eq!(pull(&service, path, Some(student)).await, 404, "{path}");
        }

        // open pulls: an anonymous puller is a student
        drop(service);
        service = Service::start(&ws.path("data"), &channel, &["--hub-api-url", &hub_url]);
        for path in &paths {
            assert_eq!(pull(&service, path, None).await, 404, "{path}");
            assert_eq!(pull(&service, path, Some(&hub_token)).await, 200, "{path}");
        }
        set_window(&service, teacher, json!({"opens": "2000-01-01T00:00:00Z"})).await;
        for path in &paths {
            assert_eq!(pull(&service, path, None).await, 200, "{path}");
        }
        assert!(service.healthy());
    });
}
