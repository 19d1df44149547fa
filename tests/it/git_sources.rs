//! Git repositories kept the Binder way, served on loopback by `git daemon`
//! and git's smart HTTP (`git http-backend` behind lighttpd), built from the
//! command line: their files in the home and /srv/repo, `start` as the
//! entrypoint, refs, submodules, a new commit reusing every package layer,
//! and a clear error for each kind of bad repository.

use std::{path::Path, process::Command};

use crate::common::{git::GitServer, *};

const ENVIRONMENT: &str = "name: course\nchannels: [conda-forge]\ndependencies: [hello-prefix]\n";

/// Builds `source` over the workspace's channel; returns the JSON report (or the failed output).
fn build(ws: &Workspace, source: &str, output: &str, extra: &[&str]) -> std::process::Output {
    let channel = ws.channel().display().to_string();
    let cache = ws.cache();
    let mut args = vec![
        "build",
        source,
        "-c",
        &channel,
        "--output",
        output,
        "--cache-dir",
        &cache,
        "--json",
        // the example channel has no single-user server (the pypi module adds stand-ins)
        "--no-jupyter",
    ];
    args.extend_from_slice(extra);
    run(trousse(&args))
}

fn build_ok(ws: &Workspace, source: &str, output: &str, extra: &[&str]) -> serde_json::Value {
    let out = build(ws, source, output, extra);
    assert!(out.status.success(), "building {source} failed");
    report(&String::from_utf8_lossy(&out.stdout))
}

/// The image's config (labels, entrypoint) and its layers' digests, from an OCI layout.
fn image(layout: &Path, tag: &str) -> (serde_json::Value, Vec<String>) {
    let read = |digest: &str| -> serde_json::Value {
        let hex = digest.trim_start_matches("sha256:");
        serde_json::from_slice(&std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap())
            .unwrap()
    };
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .expect("the tag is in the layout");
    let manifest = read(manifest["digest"].as_str().unwrap());
    let config = read(manifest["config"]["digest"].as_str().unwrap());
    let layers = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect();
    (config, layers)
}

/// The paths and link targets of a layer blob of the layout.
fn layer_listing(layout: &Path, digest: &str) -> Vec<(String, String, Vec<u8>)> {
    let blob = layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"));
    let file = std::fs::File::open(blob).unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let path = e.path().unwrap().display().to_string();
            let link = e
                .link_name()
                .unwrap()
                .map(|l| l.display().to_string())
                .unwrap_or_default();
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut data).unwrap();
            (path, link, data)
        })
        .collect()
}

#[test]
fn a_binder_repository_runs_in_docker_with_its_files_and_start_script() {
    require("docker");
    let ws = Workspace::with_example_channel();
    let server = GitServer::start();
    let mut repo = server.repo("course");
    repo.write("binder/environment.yml", ENVIRONMENT, false)
        .write(
            "binder/start",
            "#!/bin/sh\nexport COURSE_STARTED=yes\nexec \"$@\"\n",
            true,
        )
        .write("intro.ipynb", "{\"cells\": []}\n", false)
        .write("week1/run.sh", "#!/bin/sh\necho week1\n", true);
    std::os::unix::fs::symlink("../../etc/hostname", repo.work.join("canary")).unwrap();
    let commit = repo.commit("course");
    let base = busybox_base(ws.dir.path());
    let archive = ws.path("course.tar");
    let tag = format!("trousse-test/course:{}", std::process::id());
    let url = format!("{}@main", server.http_url("course"));
    build_ok(
        &ws,
        &url,
        &format!("docker-archive:{}:{tag}", archive.display()),
        &["--base", &format!("oci:{}:bb", base.display())],
    );
    run_ok(Command::new("docker").arg("load").arg("-i").arg(&archive));
    let script = "cat ~/intro.ipynb /srv/repo/intro.ipynb; echo $COURSE_STARTED; \
                  ~/week1/run.sh; readlink ~/canary; id -u; pwd";
    let out = run(Command::new("docker").args(["run", "--rm", &tag, "sh", "-c", script]));
    let _ = Command::new("docker").args(["rmi", "-f", &tag]).output();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "{\"cells\": []}",
            "{\"cells\": []}",
            "yes",
            "week1",
            "../../etc/hostname",
            "1000",
            "/home/jovyan"
        ],
        "{stdout}"
    );

    // the same commit over git:// is the same content, named by its commit
    let layout = ws.path("layout");
    build_ok(
        &ws,
        &server.git_url("course"),
        &format!("oci:{}:git", layout.display()),
        &[],
    );
    let (config, _) = image(&layout, "git");
    let labels = &config["config"]["Labels"];
    assert_eq!(labels["org.opencontainers.image.revision"], commit.as_str());
    assert_eq!(
        labels["org.opencontainers.image.source"],
        server.git_url("course")
    );
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/srv/repo/binder/start"])
    );
}

#[test]
fn a_new_commit_reuses_every_package_layer() {
    let ws = Workspace::with_example_channel();
    let server = GitServer::start();
    let mut repo = server.repo("weekly");
    repo.write("environment.yml", ENVIRONMENT, false)
        .write("week1.ipynb", "week 1\n", false);
    repo.commit("week 1");
    let layout = ws.path("layout");
    let first = build_ok(
        &ws,
        &server.git_url("weekly"),
        &format!("oci:{}:one", layout.display()),
        &[],
    );
    repo.write("week2.ipynb", "week 2\n", false);
    repo.commit("week 2");
    let second = build_ok(
        &ws,
        &server.git_url("weekly"),
        &format!("oci:{}:two", layout.display()),
        &[],
    );
    assert_eq!(first["lock_hash"], second["lock_hash"]);
    let layers = second["layers"].as_u64().unwrap();
    assert_eq!(
        second["cached_layers"].as_u64().unwrap(),
        layers - 2,
        "every package layer is cached: only the environment and content layers are written"
    );
    let (_, one) = image(&layout, "one");
    let (_, two) = image(&layout, "two");
    assert_eq!(one.len(), two.len());
    let last = one.len() - 1;
    assert_eq!(
        one[..last],
        two[..last],
        "all but the content layer are the same blobs"
    );
    assert_ne!(one[last], two[last]);
    let files: Vec<String> = layer_listing(&layout, &two[last])
        .into_iter()
        .map(|(p, _, _)| p)
        .collect();
    assert!(
        files.contains(&"home/jovyan/week2.ipynb".to_string()),
        "{files:?}"
    );
    assert!(
        files.contains(&"srv/repo/week2.ipynb".to_string()),
        "{files:?}"
    );
    assert!(!files.iter().any(|f| f.contains(".git/")), "{files:?}");

    // mirrors are cache entries: gc evicts them, and the next build fetches again
    let mirrors = || {
        std::fs::read_dir(ws.path("cache/git"))
            .unwrap()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "git"))
            .count()
    };
    assert_eq!(mirrors(), 1);
    run_ok(trousse(&[
        "cache",
        "gc",
        "--max-size",
        "1",
        "--cache-dir",
        &ws.cache(),
    ]));
    assert_eq!(mirrors(), 0);
    let again = build_ok(
        &ws,
        &server.git_url("weekly"),
        &format!("oci:{}:three", layout.display()),
        &[],
    );
    assert_eq!(again["digest"], second["digest"]);
}

#[test]
fn tags_older_commits_and_submodules_are_built() {
    let ws = Workspace::with_example_channel();
    let server = GitServer::start();
    let mut lib = server.repo("lib");
    lib.write("README.md", "the course library\n", false);
    lib.commit("lib");
    let mut repo = server.repo("course");
    repo.write("environment.yml", ENVIRONMENT, false)
        .write("notes.md", "first\n", false);
    let old = repo.commit("first");
    repo.git(&["tag", "v1"]);
    repo.git(&[
        "-c",
        "protocol.file.allow=always",
        "submodule",
        "add",
        "-q",
        lib.bare.to_str().unwrap(),
        "vendor/lib",
    ]);
    repo.git(&[
        "config",
        "-f",
        ".gitmodules",
        "submodule.vendor/lib.url",
        "../lib.git",
    ]);
    repo.write("notes.md", "second\n", false);
    let head = repo.commit("second, with the library");

    let layout = ws.path("layout");
    let cases = [
        (
            format!("{}@v1", server.http_url("course")),
            "tag",
            old.clone(),
        ),
        (
            format!("{}@{}", server.http_url("course"), &old[..10]),
            "old",
            old.clone(),
        ),
        (server.http_url("course"), "head", head.clone()),
    ];
    for (url, tag, commit) in &cases {
        build_ok(&ws, url, &format!("oci:{}:{tag}", layout.display()), &[]);
        let (config, _) = image(&layout, tag);
        assert_eq!(
            config["config"]["Labels"]["org.opencontainers.image.revision"],
            commit.as_str(),
            "{url}"
        );
    }
    let (_, layers) = image(&layout, "head");
    let listing = layer_listing(&layout, layers.last().unwrap());
    let readme = listing
        .iter()
        .find(|(p, _, _)| p == "home/jovyan/vendor/lib/README.md")
        .expect("the submodule's files are in the image");
    assert_eq!(readme.2, b"the course library\n");
    let record = listing
        .iter()
        .find(|(p, _, _)| p.ends_with("conda-meta/trousse-source.json"))
        .expect("a source record");
    let record: serde_json::Value = serde_json::from_slice(&record.2).unwrap();
    assert_eq!(record["commit"], head.as_str());
    assert_eq!(record["submodules"][0]["url"], server.http_url("lib"));
}

/// A bad repository: its name, its files, the exit code and what the message says.
type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], i32, &'a str);

/// Runs a build expected to fail; returns (exit code, message).
fn failure(ws: &Workspace, source: &str, extra: &[&str]) -> (i32, String) {
    let layout = ws.path("refused");
    let out = build(ws, source, &format!("oci:{}:x", layout.display()), extra);
    assert!(!out.status.success(), "{source} was built");
    assert!(
        !layout.exists(),
        "nothing is written for a refused repository"
    );
    let error = report(&String::from_utf8_lossy(&out.stdout));
    (
        out.status.code().unwrap(),
        error["message"].as_str().unwrap().to_string(),
    )
}

#[test]
fn bad_repositories_get_clear_errors_and_leave_nothing_behind() {
    let ws = Workspace::with_example_channel();
    let server = GitServer::start();

    let (code, message) = failure(&ws, &server.http_url("nowhere"), &[]);
    assert_eq!(code, 9, "{message}");
    assert!(message.contains("does not exist"), "{message}");
    let mirrors = ws.path("cache/git");
    let left: Vec<_> = std::fs::read_dir(&mirrors)
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "git"))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "no mirror is kept of a missing repository: {left:?}"
    );

    let mut repo = server.repo("course");
    repo.write("environment.yml", ENVIRONMENT, false);
    repo.commit("course");
    let (code, message) = failure(&ws, &format!("{}@spring", server.git_url("course")), &[]);
    assert_eq!(code, 9, "{message}");
    assert!(
        message.contains("'spring'") && message.contains("main"),
        "{message}"
    );

    let cases: [Case; 4] = [
        (
            "both",
            &[
                ("binder/environment.yml", ENVIRONMENT),
                (".binder/environment.yml", ENVIRONMENT),
            ],
            3,
            "both binder/ and .binder/",
        ),
        (
            "docker",
            &[("Dockerfile", "FROM ubuntu\n")],
            3,
            "Dockerfile",
        ),
        (
            "post",
            &[
                ("environment.yml", ENVIRONMENT),
                ("postBuild", "#!/bin/sh\ntouch /tmp/x\n"),
            ],
            3,
            "--allow-post-build",
        ),
        (
            "apt",
            &[
                ("environment.yml", ENVIRONMENT),
                ("apt.txt", "# tools\ngraphviz\nhello-prefix\n"),
            ],
            3,
            "(graphviz, hello-prefix), which trousse does not install; the channels have conda packages named hello-prefix",
        ),
    ];
    for (name, files, want, says) in cases {
        let mut repo = server.repo(name);
        for (path, text) in files {
            repo.write(path, text, false);
        }
        repo.commit(name);
        let (code, message) = failure(&ws, &server.git_url(name), &[]);
        assert_eq!(code, want, "{name}: {message}");
        assert!(message.contains(says), "{name}: {message}");
    }

    // a network repository whose submodule is a path on the build host
    let mut host = server.repo("host");
    host.write("secret", "host file\n", false);
    host.commit("host");
    let mut sneaky = server.repo("sneaky");
    sneaky.write("environment.yml", ENVIRONMENT, false);
    sneaky.git(&[
        "-c",
        "protocol.file.allow=always",
        "submodule",
        "add",
        "-q",
        host.bare.to_str().unwrap(),
        "host",
    ]);
    let file_url = format!("file://{}", host.bare.display());
    sneaky.git(&[
        "config",
        "-f",
        ".gitmodules",
        "submodule.host.url",
        &file_url,
    ]);
    sneaky.commit("sneaky");
    let (code, message) = failure(&ws, &server.http_url("sneaky"), &[]);
    assert_eq!(code, 10, "{message}");
    assert!(message.contains("file://"), "{message}");
}

const WEBHOOK_SECRET: &str = "a-secret-of-the-course-team";

/// HMAC-SHA256 of `text` with `key`, in hex, computed by openssl.
fn hmac_sha256(key: &str, text: &str) -> String {
    use std::io::Write;
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-hmac", key])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("openssl runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let line = String::from_utf8(out.stdout).unwrap();
    line.trim().rsplit(' ').next().unwrap().to_string()
}

#[test]
fn the_service_builds_repositories_from_allowed_hosts_only() {
    use crate::common::service::*;
    require("skopeo");
    let ws = Workspace::with_example_channel();
    let server = GitServer::start();
    runtime().block_on(async move {
        let channel = ChannelServer::start(&ws.channel());
        let allowed = format!("127.0.0.1:{}", server.http_port);
        let service = Service::start(
            &ws.path("data"),
            &channel,
            &[
                "--allow-git-host",
                &allowed,
                "--repo-max-bytes",
                "64KiB",
                "--webhook-secret",
                WEBHOOK_SECRET,
            ],
        );
        let admin = service.token("admin", &[]);
        let environment = format!(
            "name: course\nchannels: [{}]\ndependencies: [hello-prefix]\n",
            channel.url()
        );
        let mut repo = server.repo("course");
        repo.write("environment.yml", &environment, false)
            .write("intro.ipynb", "{}\n", false);
        let first = repo.commit("first");
        let submit = |body: serde_json::Value| {
            let request = client()
                .post(service.url("/api/v1/courses/intro/environments"))
                .bearer_auth(&admin)
                .json(&body);
            send(request)
        };
        let url = server.http_url("course");
        let (status, created) = submit(serde_json::json!({"repo": url, "ref": "main"})).await;
        assert_eq!(status, 202, "{created}");
        assert_eq!(created["source"]["commit"], first.as_str(), "{created}");
        let id = created["id"].as_str().unwrap().to_string();
        let ready = wait_until(&service, &admin, &id, &["ready", "failed"]).await;
        assert_eq!(ready["status"], "ready", "{ready}");
        let image = format!("docker://{}/intro/course:latest", service.host());
        let inspect =
            run_ok(Command::new("skopeo").args(["inspect", "--tls-verify=false", &image]));
        let labels: serde_json::Value = serde_json::from_str(&inspect).unwrap();
        assert_eq!(
            labels["Labels"]["org.opencontainers.image.revision"],
            first.as_str()
        );
        // the build read the repository's files again: they are in the image
        let layout = ws.path("pulled");
        run_ok(Command::new("skopeo").args([
            "copy",
            "--src-tls-verify=false",
            &image,
            &format!("oci:{}:course", layout.display()),
        ]));
        let (_, layers) = self::image(&layout, "course");
        let files: Vec<String> = layers
            .iter()
            .flat_map(|l| layer_listing(&layout, l))
            .map(|(path, _, _)| path)
            .collect();
        for file in ["srv/repo/intro.ipynb", "home/jovyan/intro.ipynb"] {
            assert!(files.contains(&file.to_string()), "{file} in {files:?}");
        }

        // the same commit is the same request; a new commit on the branch is rebuilt
        let (status, same) = submit(serde_json::json!({"repo": url, "ref": "main"})).await;
        assert_eq!((status, &same["id"]), (200, &created["id"]), "{same}");
        repo.write("week2.ipynb", "{}\n", false);
        let second = repo.commit("second");
        let (status, moved) = submit(serde_json::json!({"repo": url, "ref": "main"})).await;
        assert_eq!(status, 202, "{moved}");
        assert_eq!(moved["source"]["commit"], second.as_str());
        let moved_id = moved["id"].as_str().unwrap().to_string();
        wait_until(&service, &admin, &moved_id, &["ready", "failed"]).await;

        // a push to the branch, signed as GitHub signs it, rebuilds the course's environment
        repo.write("week3.ipynb", "{}\n", false);
        let third = repo.commit("third");
        let payload = serde_json::json!({
            "ref": "refs/heads/main",
            "after": third,
            "repository": {"clone_url": format!("{url}/"), "html_url": "http://elsewhere/x"},
        })
        .to_string();
        let hook = |signature: String| {
            send(
                client()
                    .post(service.url("/api/v1/hooks/git"))
                    .header("x-github-event", "push")
                    .header("x-hub-signature-256", signature)
                    .body(payload.clone()),
            )
        };
        let (status, error) = hook(format!("sha256={}", "0".repeat(64))).await;
        assert_eq!(status, 401, "{error}");
        let (status, pushed) =
            hook(format!("sha256={}", hmac_sha256(WEBHOOK_SECRET, &payload))).await;
        assert_eq!(status, 200, "{pushed}");
        assert_eq!(
            pushed["environments"],
            serde_json::json!([{"course": "intro", "name": "course", "status": 202}])
        );
        let (_, current) = send(
            client()
                .get(service.url("/api/v1/courses/intro/environments"))
                .bearer_auth(&admin),
        )
        .await;
        let now = &current["environments"][0];
        assert_eq!(now["source"]["commit"], third.as_str(), "{current}");

        let mut big = server.repo("big");
        let noise = trousse_testkit::Rng::new(7).bytes(200 << 10);
        big.write("environment.yml", &environment, false);
        std::fs::write(big.work.join("data.bin"), noise).unwrap();
        big.commit("big");
        let refused = [
            (
                server.git_url("course"),
                "repository_refused",
                "not among the allowed git hosts",
            ),
            ("file:///etc".to_string(), "repository_refused", "file://"),
            (
                server.http_url("big"),
                "repository_refused",
                "limit of 65536 bytes",
            ),
            (
                server.http_url("nowhere"),
                "repository_not_found",
                "does not exist",
            ),
        ];
        for (url, code, says) in refused {
            let (status, error) = submit(serde_json::json!({"repo": url, "name": "x"})).await;
            assert_eq!(status, 422, "{url}: {error}");
            assert_eq!(error["error"], code, "{url}: {error}");
            assert!(
                error["message"].as_str().unwrap().contains(says),
                "{url}: {error}"
            );
        }
        let mirrors: Vec<_> = std::fs::read_dir(ws.path("data/cache/git"))
            .unwrap()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "git"))
            .collect();
        assert_eq!(
            mirrors.len(),
            1,
            "a mirror of the built repository only: {mirrors:?}"
        );

        // a private repository: refused until the course's deploy token is set, never shown
        let private = server.private_url("course");
        let body = serde_json::json!({"repo": private, "name": "private"});
        let (status, error) = submit(body.clone()).await;
        assert_eq!(
            (status, &error["error"]),
            (422, &"repository_refused".into()),
            "{error}"
        );
        assert!(
            error["message"].as_str().unwrap().contains("git-token"),
            "{error}"
        );
        let token_url = service.url("/api/v1/courses/intro/git-token");
        let token = serde_json::json!({"token": crate::common::git::PRIVATE_TOKEN});
        let teacher = service.token("teacher", &["other"]);
        let (status, _) = send(client().put(&token_url).bearer_auth(&teacher).json(&token)).await;
        assert_eq!(status, 403, "a teacher of another course cannot set it");
        let (status, _) = send(client().put(&token_url).bearer_auth(&admin).json(&token)).await;
        assert_eq!(status, 204);
        let (status, built) = submit(body).await;
        assert_eq!(status, 202, "{built}");
        let private_id = built["id"].as_str().unwrap().to_string();
        let done = wait_until(&service, &admin, &private_id, &["ready", "failed"]).await;
        assert_eq!(done["status"], "ready", "{done}");
        let log = std::fs::read_to_string(ws.path("data.log")).unwrap();
        let listing = client()
            .get(service.url("/api/v1/courses/intro/environments"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        for seen in [&log, &listing, &done.to_string()] {
            assert!(
                !seen.contains(crate::common::git::PRIVATE_TOKEN),
                "the token leaked"
            );
        }
    });
}

#[test]
fn an_allowed_post_build_runs_as_the_user_and_becomes_a_layer() {
    require("docker");
    let ws = Workspace::with_example_channel();
    let server = GitServer::start();
    let mut repo = server.repo("post");
    repo.write("environment.yml", ENVIRONMENT, false).write(
        "postBuild",
        "#!/bin/sh\nset -e\nid -u > \"$HOME/.built-by\"\nls /var/run/docker.sock 2>/dev/null && exit 3\necho done > /srv/repo/post.txt\nls /sys/class/net | tr '\\n' ' ' > \"$HOME/.network\"\n",
        false,
    );
    repo.commit("post");
    let base = busybox_base(ws.dir.path());
    let base = format!("oci:{}:bb", base.display());
    let (code, message) = failure(&ws, &server.git_url("post"), &["--base", &base]);
    assert_eq!(code, 3, "{message}");
    assert!(message.contains("--allow-post-build"), "{message}");

    let archive = ws.path("post.tar");
    let tag = format!("trousse-test/post:{}", std::process::id());
    let output = format!("docker-archive:{}:{tag}", archive.display());
    let report = build_ok(
        &ws,
        &server.git_url("post"),
        &output,
        &["--base", &base, "--allow-post-build"],
    );
    let layers = report["layers"].as_u64().unwrap();
    run_ok(Command::new("docker").arg("load").arg("-i").arg(&archive));
    let out = run(Command::new("docker").args([
        "run",
        "--rm",
        &tag,
        "sh",
        "-c",
        "cat ~/.built-by /srv/repo/post.txt ~/.network",
    ]));
    let inspect =
        run(Command::new("docker").args(["inspect", "--format", "{{json .Config.Labels}}", &tag]));
    let _ = Command::new("docker").args(["rmi", "-f", &tag]).output();
    // no network but loopback unless --post-build-network
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1000\ndone\nlo ");
    let labels: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(labels["io.trousse.post-build"], "postBuild", "{labels}");
    let layout = ws.path("layout");
    let output = format!("oci:{}:p", layout.display());
    build_ok(
        &ws,
        &server.git_url("post"),
        &output,
        &["--base", &base, "--allow-post-build"],
    );
    let (config, image_layers) = image(&layout, "p");
    assert_eq!(
        image_layers.len() as u64,
        layers + 1,
        "the base's layer, then trousse's"
    );
    let history = config["history"].as_array().unwrap();
    assert_eq!(
        history.last().unwrap()["created_by"],
        "trousse: postBuild's changes"
    );
    assert_eq!(
        history[history.len() - 2]["created_by"],
        "trousse: repository files"
    );
}
