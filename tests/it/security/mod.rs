//! Untrusted packages, locks and specs, tried as an attacker would: none may
//! delete, read or publish a file of the build host, reach an address outside
//! the allow-lists, or panic the service.

mod bounded;
mod credentials;
mod exams;
mod hostile_git;

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
};

use crate::common::{service::*, *};
use serde_json::json;
use trousse_testkit::{write_package, ArchiveFormat, PackageSpec};

/// A file outside every directory trousse owns, which no build may touch.
struct Canary {
    dir: tempfile::TempDir,
    content: String,
}

impl Canary {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let content = format!("CANARY-{}-host-secret", std::process::id());
        std::fs::write(dir.path().join("secret.txt"), &content).unwrap();
        Self { dir, content }
    }

    fn file(&self) -> PathBuf {
        self.dir.path().join("secret.txt")
    }

    /// Asserts the canary is where it was, unchanged, and in none of `trees`.
    fn assert_untouched(&self, trees: &[&Path]) {
        let now = std::fs::read_to_string(self.file()).expect("the canary file was deleted");
        assert_eq!(now, self.content, "the canary file was changed");
        for tree in trees {
            assert!(
                !tree_holds(tree, self.content.as_bytes()),
                "{} holds the canary's bytes",
                tree.display()
            );
        }
    }
}

/// Whether a file under `root` holds `needle`, as it is or gzip-decompressed (layer blobs).
fn tree_holds(root: &Path, needle: &[u8]) -> bool {
    use std::io::Read;
    let holds = |bytes: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .any(|e| {
            let Ok(bytes) = std::fs::read(e.path()) else {
                return false;
            };
            let mut unpacked = Vec::new();
            let gz = flate2::read::GzDecoder::new(bytes.as_slice())
                .read_to_end(&mut unpacked)
                .is_ok();
            holds(&bytes) || (gz && holds(&unpacked))
        })
}

/// `../` enough times to climb to `/` from anywhere, then `target` (absolute).
fn climbing_to(target: &Path) -> String {
    format!(
        "{}{}",
        "../".repeat(40),
        target.display().to_string().trim_start_matches('/')
    )
}

/// The malicious packages: (name, what it tries, the path the error must name).
fn malicious(canary: &Canary, data_dir: &Path) -> Vec<(PackageSpec, &'static str, &'static str)> {
    let unlink = climbing_to(&canary.file());
    let unlink_db = climbing_to(&data_dir.join("trousse.db"));
    let absolute = canary.dir.path().join("written-here").display().to_string();
    vec![
        (
            PackageSpec::new("evil-unlink", "1.0")
                .file("share/evil/ok.txt", "fine\n", 0o644)
                .raw_path_entry(json!({"_path": unlink, "path_type": "hardlink"})),
            "a ../ path that deletes a host file",
            "../../",
        ),
        (
            PackageSpec::new("evil-unlink-db", "1.0")
                .raw_path_entry(json!({"_path": unlink_db, "path_type": "hardlink"})),
            "a ../ path to the service's database",
            "trousse.db",
        ),
        (
            PackageSpec::new("evil-symlink", "1.0")
                .unlisted_symlink("x", &canary.dir.path().display().to_string())
                .raw_path_entry(json!({"_path": "x/secret.txt", "path_type": "hardlink"})),
            "a host file read through an unlisted symlink",
            "x/secret.txt",
        ),
        (
            PackageSpec::new("evil-absolute", "1.0")
                .raw_path_entry(json!({"_path": absolute, "path_type": "hardlink"})),
            "an absolute path",
            "written-here",
        ),
        (
            PackageSpec::new("evil-tampered", "1.0").tampered_file(
                "share/evil/data.txt",
                b"what the archive holds\n",
                b"what paths.json says\n",
            ),
            "a file that differs from its paths.json entry",
            "share/evil/data.txt",
        ),
    ]
}

/// Writes each malicious package in both archive formats; returns (name, path named).
fn write_malicious(ws: &Workspace, canary: &Canary, data_dir: &Path) -> Vec<(String, String)> {
    let mut names = Vec::new();
    for (spec, _, named) in malicious(canary, data_dir) {
        for (format, suffix) in [(ArchiveFormat::Conda, "c"), (ArchiveFormat::TarBz2, "b")] {
            let mut spec = spec.clone();
            spec.name = format!("{}-{suffix}", spec.name);
            write_package(&ws.channel(), &spec, format).unwrap();
            names.push((spec.name.clone(), named.to_string()));
        }
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(trousse_testkit::index_channel(&ws.channel()))
        .unwrap();
    names
}

#[test]
fn the_cli_refuses_malicious_packages_and_touches_no_host_file() {
    let ws = Workspace::with_example_channel();
    let canary = Canary::new();
    let packages = write_malicious(&ws, &canary, &ws.path("data"));
    for (name, named) in &packages {
        let spec = ws.spec(name, &[name], "");
        let output = ws.path(&format!("{name}.tar"));
        let out = run(trousse(&[
            "build",
            spec.to_str().unwrap(),
            "--output",
            &format!("oci-archive:{}", output.display()),
            "--cache-dir",
            &ws.cache(),
        ]));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(8), "{name}: {stderr}");
        assert!(stderr.contains(name.as_str()), "{name}: {stderr}");
        assert!(stderr.contains(named.as_str()), "{name}: {stderr}");
        assert!(stderr.contains("refused"), "{name}: {stderr}");
        assert!(!output.exists(), "{name}: an image was written");
        canary.assert_untouched(&[&ws.path("cache")]);
    }
    // the good packages of the same channel still build
    let spec = ws.spec("good", &["greet"], "");
    run_ok(trousse(&[
        "build",
        spec.to_str().unwrap(),
        "--output",
        &format!("oci:{}", ws.path("good").display()),
        "--cache-dir",
        &ws.cache(),
    ]));
}

#[test]
fn the_service_refuses_malicious_packages_and_keeps_its_database() {
    let ws = Workspace::with_example_channel();
    let canary = Canary::new();
    let data = ws.path("data");
    let packages = write_malicious(&ws, &canary, &data);
    runtime().block_on(async move {
        let channel = ChannelServer::start(&ws.channel());
        let service = Service::start(&data, &channel, &[]);
        let teacher = service.token("teacher", &["lab"]);
        let mut ids = Vec::new();
        for (name, _) in &packages {
            let spec = spec_yaml(&channel, name, &[name], "");
            let (status, env) = submit_yaml(&service, &teacher, "lab", &spec).await;
            assert_eq!(status, 202, "{name}: {env}");
            ids.push(env["id"].as_str().unwrap().to_string());
        }
        for ((name, named), id) in packages.iter().zip(&ids) {
            let env = wait_until(&service, &teacher, id, &["ready", "failed"]).await;
            assert_eq!(env["status"], "failed", "{name}: {env}");
            let error = env["error"].as_str().unwrap();
            assert!(error.contains(name.as_str()), "{name}: {error}");
            assert!(error.contains(named.as_str()), "{name}: {error}");
            assert!(env["digest"].is_null(), "{name}: {env}");
        }
        canary.assert_untouched(&[&data]);
        assert!(data.join("trousse.db").is_file(), "the database is gone");
        // the service keeps answering, with its tokens and its rows
        let (status, list) = send(
            client()
                .get(service.url("/api/v1/courses/lab/environments"))
                .bearer_auth(&teacher),
        )
        .await;
        assert_eq!(status, 200, "{list}");
        assert_eq!(
            list["environments"].as_array().unwrap().len(),
            packages.len()
        );
        assert!(service.healthy());
        assert_eq!(
            metric(&service, "trousse_builds_started_total").await,
            packages.len() as f64
        );
        assert_eq!(metric(&service, "trousse_panics_total").await, 0.0);
        let (status, env) = submit_yaml(
            &service,
            &teacher,
            "lab",
            &spec_yaml(&channel, "good", &["greet"], ""),
        )
        .await;
        assert_eq!(status, 202, "{env}");
        let env = wait_until(
            &service,
            &teacher,
            env["id"].as_str().unwrap(),
            &["ready", "failed"],
        )
        .await;
        assert_eq!(env["status"], "ready", "{env}");

        // /health fails once the database file is removed
        std::fs::remove_file(data.join("trousse.db")).unwrap();
        let (status, health) = send(client().get(service.url("/health"))).await;
        assert_eq!(status, 503, "{health}");
        assert!(
            health["checks"]["database"]
                .as_str()
                .unwrap()
                .contains("gone"),
            "{health}"
        );
    });
}

/// A loopback listener that counts the connections it is offered.
struct CountingListener {
    port: u16,
    connections: Arc<AtomicUsize>,
}

impl CountingListener {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                counted.fetch_add(1, Ordering::SeqCst);
                drop(stream);
            }
        });
        Self { port, connections }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn count(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// A lock of `greet` from the HTTP channel, its package URLs moved under
/// `http://LISTENER/good/%2e%2e%2fevil/` and its declared channel `…/good/`.
fn traversing_lock(ws: &Workspace, channel: &ChannelServer, listener: &CountingListener) -> String {
    let spec = ws.path("greet-http.yml");
    std::fs::write(&spec, spec_yaml(channel, "greet", &["greet"], "")).unwrap();
    let lock = ws.lock(&spec, "greet");
    let text = std::fs::read_to_string(&lock).unwrap();
    assert!(text.contains(&channel.url()), "{text}");
    let evil = listener.url("/good/%2e%2e%2fevil/");
    text.replace(&channel.url(), &evil)
        .replace(&format!("{evil}\n"), &listener.url("/good/\n"))
}

#[test]
fn urls_outside_the_allow_list_are_refused_before_any_connection() {
    let ws = Workspace::with_example_channel();
    let listener = CountingListener::start();
    let channel = ChannelServer::start(&ws.channel());
    let lock = traversing_lock(&ws, &channel, &listener);
    assert!(lock.contains("%2e%2e%2fevil/linux-64/"), "{lock}");

    // the CLI builds a lock only from the channels it declares
    let lock_path = ws.path("evil.lock");
    std::fs::write(&lock_path, &lock).unwrap();
    let out = run(trousse(&[
        "build",
        lock_path.to_str().unwrap(),
        "--output",
        &format!("oci:{}", ws.path("out").display()),
        "--cache-dir",
        &ws.cache(),
    ]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("%2e%2e%2f"), "{stderr}");

    runtime().block_on(async {
        let good = listener.url("/good/");
        let service = Service::start(&ws.path("data"), &channel, &["--allow-channel", &good]);
        let teacher = service.token("teacher", &["lab"]);
        let post_json = |body: serde_json::Value| {
            client()
                .post(service.url("/api/v1/courses/lab/environments"))
                .bearer_auth(&teacher)
                .json(&body)
        };
        let (status, body) = send(post_json(json!({"name": "evil", "lock": lock}))).await;
        assert_eq!(status, 403, "{body}");
        assert!(
            body["message"].as_str().unwrap().contains("%2e%2e%2f"),
            "{body}"
        );

        let listener_package = listener.url("/linux-64/x-1-0.tar.bz2");
        let file_package = "file:///etc/linux-64/x-1-0.tar.bz2".to_string();
        let evil_channel = format!("{}::greet", listener.url("/evil"));
        let in_brackets = format!(
            "greet[url='{}']",
            listener.url("/elsewhere/linux-64/greet-1-0.conda")
        );
        for dependency in [
            &listener_package,
            &file_package,
            &evil_channel,
            &in_brackets,
        ] {
            let spec = spec_yaml(&channel, "urls", &[&format!("\"{dependency}\"")], "");
            let (status, body) = submit_yaml(&service, &teacher, "lab", &spec).await;
            assert_eq!(status, 403, "{dependency}: {body}");
            assert!(body["error"] == "forbidden", "{dependency}: {body}");
        }
        assert_eq!(
            listener.count(),
            0,
            "a refused request connected to the listener"
        );

        // a build_number that overflows is a validation error, not a dropped connection
        let spec = spec_yaml(
            &channel,
            "big",
            &["\"greet[build_number='>99999999999999999999']\""],
            "",
        );
        let (status, body) = submit_yaml(&service, &teacher, "lab", &spec).await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["field"], "dependencies[0]", "{body}");
        assert!(service.healthy());
        assert_eq!(metric(&service, "trousse_panics_total").await, 0.0);

        // long names are cut in messages
        let long = "a".repeat(5000);
        let (status, body) = submit_yaml(
            &service,
            &teacher,
            &long,
            &spec_yaml(&channel, "x", &["greet"], ""),
        )
        .await;
        assert!(status == 400 || status == 403, "{status}: {body}");
        assert!(body["message"].as_str().unwrap().len() < 1000, "{body}");
    });
}
