//! BinderHub's build API as jupyterhub-fancy-profiles calls it
//! (`src/ImageBuilder.tsx`: `GET /services/binder/build/<provider>/<spec>
//! ?build_only=true`, `Authorization: Bearer <token>`, server-sent events until
//! `ready` with `imageName`): a git repository built, the image pulled by Docker.

use std::process::Command;

use crate::common::{git::GitServer, require, run, service::*, ChannelServer, Workspace};

/// The JSON events of a BinderHub event stream.
fn binder_events(body: &str) -> Vec<serde_json::Value> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str(d.trim()).ok())
        .collect()
}

#[test]
fn fancy_profiles_builds_a_repository_and_docker_pulls_the_image() {
    require("docker");
    let ws = Workspace::with_example_channel();
    let server = GitServer::start();
    runtime().block_on(async move {
        let channel = ChannelServer::start(&ws.channel());
        let allowed = format!("127.0.0.1:{}", server.http_port);
        let service = Service::start(
            &ws.path("data"),
            &channel,
            &["--allow-git-host", &allowed, "--binder-course", "binder"],
        );
        let builder = service.token("teacher", &["binder"]);
        let outsider = service.token("teacher", &["intro"]);
        let mut repo = server.repo("course");
        let environment = format!(
            "name: course\nchannels: [{}]\ndependencies: [hello-prefix]\n",
            channel.url()
        );
        repo.write("environment.yml", &environment, false);
        repo.commit("first");
        let escaped: String = percent_encoding::utf8_percent_encode(
            &server.http_url("course"),
            percent_encoding::NON_ALPHANUMERIC,
        )
        .to_string();
        let path = format!("/services/binder/build/git/{escaped}/main");
        let build = |token: &str, query: &str| {
            client()
                .get(service.url(&format!("{path}{query}")))
                .header("Accept", "text/event-stream")
                .bearer_auth(token)
                .send()
        };

        let response = build(&builder, "?build_only=true").await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream"));
        let events = binder_events(&response.text().await.unwrap());
        let phases: Vec<&str> = events
            .iter()
            .map(|e| e["phase"].as_str().unwrap())
            .collect();
        assert_eq!(phases.first(), Some(&"waiting"), "{events:?}");
        assert!(
            phases.contains(&"building") && phases.contains(&"pushing"),
            "{events:?}"
        );
        let last = events.last().unwrap();
        assert_eq!(last["phase"], "ready", "{events:?}");
        assert_eq!(last["message"], "Done! Image built\n");
        let image = last["imageName"].as_str().unwrap().to_string();
        assert!(
            image.starts_with(&format!("{}/binder/course-main-", service.host())),
            "{image}"
        );

        // Docker pulls it from trousse's /v2/
        let pulled = run(Command::new("docker").args(["pull", &image]));
        let _ = Command::new("docker").args(["rmi", "-f", &image]).output();
        assert!(pulled.status.success(), "docker pulls {image}");

        // built already: found, not built again
        let again = binder_events(
            &build(&builder, "?build_only=true")
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
        );
        let last = again.last().unwrap();
        assert_eq!(last["message"], "Done! Found built image\n", "{again:?}");
        assert_eq!(last["imageName"], image.as_str());

        // a launch needs the hub's settings: refused, saying so; other courses'
        // tokens cannot build here
        let launch = build(&builder, "").await.unwrap();
        assert_eq!(launch.status(), 400);
        let refusal: serde_json::Value = launch.json().await.unwrap();
        assert_eq!(refusal["error"], "launch_unsupported", "{refusal}");
        assert!(
            refusal["message"]
                .as_str()
                .unwrap()
                .contains("--hub-public-url"),
            "{refusal}"
        );
        assert_eq!(
            build(&outsider, "?build_only=true").await.unwrap().status(),
            403
        );
        assert_eq!(
            client()
                .get(service.url(&format!("{path}?build_only=true")))
                .send()
                .await
                .unwrap()
                .status(),
            401
        );

        // a password in the spec's URL: refused, and shown, logged or sent nowhere
        let password = "binder-url-passw0rd";
        let with_password = server
            .http_url("course")
            .replace("http://", &format!("http://teacher:{password}@"));
        let escaped: String = percent_encoding::utf8_percent_encode(
            &with_password,
            percent_encoding::NON_ALPHANUMERIC,
        )
        .to_string();
        let text = client()
            .get(service.url(&format!(
                "/services/binder/build/git/{escaped}/main?build_only=true"
            )))
            .bearer_auth(&builder)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let events = binder_events(&text);
        assert_eq!(events.last().unwrap()["phase"], "failed", "{events:?}");
        assert!(text.contains("credentials"), "{text}");
        let log = std::fs::read_to_string(ws.path("data.log")).unwrap();
        for seen in [&text, &log] {
            assert!(!seen.contains(password), "the password is shown: {seen}");
        }
    });
}
