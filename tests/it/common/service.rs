//! A running `trousse serve` and the HTTP helpers the service tests share.

use std::{
    path::{Path, PathBuf},
    process::Child,
    time::{Duration, Instant},
};

use serde_json::Value;

use super::*;

/// A running `trousse serve`, killed when dropped.
pub struct Service {
    pub port: u16,
    pub data_dir: PathBuf,
    extra: Vec<String>,
    envs: Vec<(String, String)>,
    child: Option<Child>,
    /// `serve`, or `worker`.
    command: &'static str,
}

impl Service {
    pub fn start(data_dir: &Path, channel: &ChannelServer, extra: &[&str]) -> Self {
        Self::start_with_env(data_dir, channel, extra, &[])
    }

    /// Starts it with these environment variables set too.
    pub fn start_with_env(
        data_dir: &Path,
        channel: &ChannelServer,
        extra: &[&str],
        envs: &[(&str, &str)],
    ) -> Self {
        Self::start_at(free_port(), data_dir, channel, extra, envs)
    }

    /// Starts it on a port chosen beforehand (one another server was told of).
    pub fn start_at(
        port: u16,
        data_dir: &Path,
        channel: &ChannelServer,
        extra: &[&str],
        envs: &[(&str, &str)],
    ) -> Self {
        Self::launched("serve", port, data_dir, channel, extra, envs)
    }

    /// Starts a `trousse worker` (the same flags as a service; `/health` on its port).
    pub fn start_worker(
        data_dir: &Path,
        channel: &ChannelServer,
        extra: &[&str],
        envs: &[(&str, &str)],
    ) -> Self {
        Self::launched("worker", free_port(), data_dir, channel, extra, envs)
    }

    fn launched(
        command: &'static str,
        port: u16,
        data_dir: &Path,
        channel: &ChannelServer,
        extra: &[&str],
        envs: &[(&str, &str)],
    ) -> Self {
        let mut extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        extra.extend(["--allow-channel".into(), channel.url()]);
        // the example channel has no single-user server: hub images are tested on their own
        if !extra.iter().any(|e| e == "--hub-version") {
            extra.push("--no-jupyter".into());
        }
        let mut service = Self {
            port,
            data_dir: data_dir.to_path_buf(),
            extra,
            envs: envs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            child: None,
            command,
        };
        service.launch();
        service
    }

    /// SIGKILL: the process dies at once, whatever it holds.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data_dir.with_extension("log"))
            .unwrap();
        let mut cmd = trousse(&[
            self.command,
            "--listen",
            &format!("127.0.0.1:{}", self.port),
            "--data-dir",
            self.data_dir.to_str().unwrap(),
        ]);
        cmd.args(&self.extra)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .env("RUST_LOG", "info")
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        self.child = Some(cmd.spawn().unwrap());
        wait_for_port(self.port, "trousse serve");
        // listening is not ready: the store is opened (and migrated) first
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.healthy() {
            if Instant::now() >= deadline {
                let log = std::fs::read_to_string(self.data_dir.with_extension("log"))
                    .unwrap_or_default();
                let tail = &log[log.len().saturating_sub(3000)..];
                panic!(
                    "trousse {} never became healthy: /health answered {:?}\n{tail}",
                    self.command,
                    self.health_answer()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn healthy(&self) -> bool {
        let answer = self.health_answer();
        answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200")
    }

    /// The whole answer of `/health` (empty when nothing answers).
    fn health_answer(&self) -> String {
        use std::io::{Read, Write};
        let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return String::new();
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = stream.write_all(b"GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n");
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer
    }

    /// SIGKILL, then start again on the same port and data.
    pub fn kill_and_restart(&mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        self.launch();
    }

    /// The service's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn token(&self, role: &str, courses: &[&str]) -> String {
        let mut args = vec![
            "token",
            "create",
            "--role",
            role,
            "--data-dir",
            self.data_dir.to_str().unwrap(),
        ];
        for c in courses {
            args.extend(["--course", c]);
        }
        let mut command = trousse(&args);
        command.envs(self.envs.iter().map(|(k, v)| (k, v)));
        let token = run_ok(command).trim().to_string();
        assert!(token.starts_with("trs_"));
        token
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Every row of the service's database but its own secrets (the course git
/// tokens it must keep), as text: what a secret must never be found in.
pub fn database_rows(data_dir: &Path) -> String {
    let script = "import sqlite3, sys\n\
        db = sqlite3.connect(sys.argv[1])\n\
        for (t,) in db.execute(\"SELECT name FROM sqlite_master WHERE type='table'\"):\n\
        \x20   if t != 'course_git_tokens':\n\
        \x20       for row in db.execute('SELECT * FROM \"%s\"' % t): print(t, row)\n";
    run_ok(
        std::process::Command::new("python3")
            .args(["-c", script])
            .arg(data_dir.join("trousse.db")),
    )
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap()
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

/// Sends a request; returns the status and the body as JSON (Null when not JSON).
pub async fn send(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

pub async fn submit_yaml(service: &Service, token: &str, course: &str, spec: &str) -> (u16, Value) {
    send(
        client()
            .post(service.url(&format!("/api/v1/courses/{course}/environments")))
            .bearer_auth(token)
            .header("content-type", "application/yaml")
            .body(spec.to_string()),
    )
    .await
}

pub async fn environment(service: &Service, token: &str, id: &str) -> Value {
    let (status, env) = send(
        client()
            .get(service.url(&format!("/api/v1/environments/{id}")))
            .bearer_auth(token),
    )
    .await;
    assert_eq!(status, 200, "{env}");
    env
}

pub async fn wait_until(service: &Service, token: &str, id: &str, wanted: &[&str]) -> Value {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let env = environment(service, token, id).await;
        if wanted.contains(&env["status"].as_str().unwrap()) {
            return env;
        }
        assert!(Instant::now() < deadline, "still {} : {env}", env["status"]);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads server-sent events until the `done` event; returns (id, event, data) each.
pub async fn follow_events(service: &Service, token: &str, id: &str) -> Vec<(i64, String, Value)> {
    use futures::StreamExt;
    let response = client()
        .get(service.url(&format!("/api/v1/environments/{id}/events")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut stream = response.bytes_stream();
    let mut text = String::new();
    let mut events = Vec::new();
    while let Some(chunk) = stream.next().await {
        text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        while let Some(end) = text.find("\n\n") {
            let block: String = text.drain(..end + 2).collect();
            let (mut seq, mut kind, mut data) = (0, String::new(), Value::Null);
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    seq = v.trim().parse().unwrap();
                } else if let Some(v) = line.strip_prefix("event:") {
                    kind = v.trim().to_string();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data = serde_json::from_str(v.trim()).unwrap();
                }
            }
            if !kind.is_empty() {
                events.push((seq, kind.clone(), data));
            }
            if kind == "done" {
                return events;
            }
        }
    }
    events
}

pub fn spec_yaml(channel: &ChannelServer, name: &str, packages: &[&str], extra: &str) -> String {
    format!(
        "name: {name}\nchannels: ['{}']\ndependencies: [{}]\n{extra}",
        channel.url(),
        packages.join(", ")
    )
}

/// The body of an unauthenticated GET of `path`.
pub async fn get_text(service: &Service, path: &str) -> String {
    client()
        .get(service.url(path))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

pub async fn metric(service: &Service, name: &str) -> f64 {
    let text = get_text(service, "/metrics").await;
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// A JupyterHub API on loopback that knows some users' tokens: `GET
/// /hub/api/user` with `Authorization: token T` answers the user's name and
/// groups, any other token a 403. It counts the requests it answers.
pub struct FakeHub {
    pub port: u16,
    requests: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl FakeHub {
    /// Starts it with `(token, user name, groups)` each.
    pub fn start(users: &[(&str, &str, &[&str])]) -> Self {
        use std::io::Write;
        let users: std::collections::HashMap<String, Value> = users
            .iter()
            .map(|(token, name, groups)| {
                let user = serde_json::json!({"kind": "user", "name": name, "groups": groups});
                (token.to_string(), user)
            })
            .collect();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = requests.clone();
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                let text = read_request_head(&mut stream);
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let token = text
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        let value = value.trim();
                        (name.eq_ignore_ascii_case("authorization"))
                            .then(|| value.strip_prefix("token "))?
                    })
                    .unwrap_or_default()
                    .trim();
                let answer = match users.get(token) {
                    Some(user) => {
                        let body = user.to_string();
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        )
                    }
                    None => {
                        "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            .to_string()
                    }
                };
                let _ = stream.write_all(answer.as_bytes());
            }
        });
        Self { port, requests }
    }

    /// Its API URL, for `--hub-api-url`.
    pub fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}/hub/api/", self.port)
    }

    /// How many token look-ups it answered.
    pub fn requests(&self) -> usize {
        self.requests.load(std::sync::atomic::Ordering::SeqCst)
    }
}
