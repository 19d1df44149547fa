//! Helpers shared by the end-to-end tests: the binary, channels, tools.

pub mod git;
pub mod service;

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use trousse_testkit::{write_package, ArchiveFormat, PackageSpec};

/// The directory of the real conda data shared beside the checkout.
pub fn conda_data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/conda-data")
}

/// Runs `trousse` with arguments.
pub fn trousse(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_trousse"));
    cmd.args(args);
    cmd.env_remove("SOURCE_DATE_EPOCH");
    // offline: the default base image lives on Docker Hub
    cmd.env("TROUSSE_DEFAULT_BASE", "scratch");
    cmd
}

/// Runs a command and returns its output, printing stderr for debugging.
pub fn run(mut cmd: impl std::borrow::BorrowMut<Command>) -> Output {
    let cmd = cmd.borrow_mut();
    let out = cmd.output().expect("command runs");
    eprintln!(
        "$ {:?}\nexit: {:?}\nstdout: {}\nstderr: {}",
        cmd,
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs a command that must succeed and returns its stdout.
pub fn run_ok(mut cmd: impl std::borrow::BorrowMut<Command>) -> String {
    let cmd = cmd.borrow_mut();
    let out = run(&mut *cmd);
    assert!(out.status.success(), "command failed: {cmd:?}");
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}

/// A P-256 key and its self-signed certificate (one day) for `subject`, written
/// as `DIR/NAME.key` and `DIR/NAME.crt`; returns their paths.
pub fn self_signed(dir: &Path, name: &str, subject: &str) -> (PathBuf, PathBuf) {
    let (key, cert) = (
        dir.join(format!("{name}.key")),
        dir.join(format!("{name}.crt")),
    );
    run_ok(Command::new("openssl").args([
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "1",
        "-subj",
        &format!("/CN={subject}"),
        "-keyout",
        key.to_str().expect("a UTF-8 path"),
        "-out",
        cert.to_str().expect("a UTF-8 path"),
    ]));
    (key, cert)
}

/// The JSON report on the last stdout line of `trousse build --json`.
pub fn report(stdout: &str) -> serde_json::Value {
    let line = stdout.lines().last().expect("a report line");
    serde_json::from_str(line).expect("the last line is JSON")
}

/// A temporary workspace with the example channel written into `channel/`.
pub struct Workspace {
    pub dir: tempfile::TempDir,
}

impl Workspace {
    pub fn with_example_channel() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(trousse_testkit::write_example_channel(
            &dir.path().join("channel"),
        ))
        .unwrap();
        Self { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn channel(&self) -> PathBuf {
        self.path("channel")
    }

    /// Writes a spec file over the example channel.
    pub fn spec(&self, name: &str, dependencies: &[&str], extra: &str) -> PathBuf {
        let deps: String = dependencies
            .iter()
            .map(|d| format!("  - \"{d}\"\n"))
            .collect();
        let text = format!("name: {name}\nchannels:\n  - ./channel\ndependencies:\n{deps}{extra}");
        let path = self.path(&format!("{name}.yml"));
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Adds `big-data`, 96 MiB of incompressible bytes: a build of it runs long
    /// enough to be interrupted (killed, cancelled) while it runs.
    pub fn add_big_package(&self, seed: u64) {
        let mut rng = trousse_testkit::Rng::new(seed);
        self.add_packages(
            &[PackageSpec::new("big-data", "1.0").noarch("generic").file(
                "share/big-data/blob.bin",
                rng.bytes(96 << 20),
                0o644,
            )],
        );
    }

    /// Adds packages to the channel and indexes it again.
    pub fn add_packages(&self, packages: &[PackageSpec]) {
        for p in packages {
            write_package(&self.channel(), p, ArchiveFormat::Conda).unwrap();
        }
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(trousse_testkit::index_channel(&self.channel()))
            .unwrap();
    }

    pub fn cache(&self) -> String {
        self.path("cache").display().to_string()
    }

    /// Locks a spec with `trousse lock` into `NAME.lock` of the workspace; returns the lock's path.
    pub fn lock(&self, spec: &Path, name: &str) -> PathBuf {
        let lock = self.path(&format!("{name}.lock"));
        run_ok(trousse(&[
            "lock",
            spec.to_str().unwrap(),
            "-o",
            lock.to_str().unwrap(),
            "--cache-dir",
            &self.cache(),
        ]));
        lock
    }
}

/// Whether a program is on PATH.
pub fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Requires a tool the tests cannot do without: CI installs them all.
pub fn require(program: &str) {
    assert!(
        have(program),
        "{program} is not installed: .ci/run installs it (apt-get install skopeo umoci docker-registry)"
    );
}

/// Unpacks an OCI layout image with umoci and returns the rootfs.
pub fn umoci_unpack(layout: &Path, tag: &str, into: &Path) -> PathBuf {
    require("umoci");
    let bundle = into.join("bundle");
    run_ok(
        Command::new("umoci")
            .args(["unpack", "--rootless", "--image"])
            .arg(format!("{}:{tag}", layout.display()))
            .arg(&bundle),
    );
    bundle.join("rootfs")
}

/// Files of a directory tree: relative path -> (kind, content or link target, executable).
pub fn tree(root: &Path) -> std::collections::BTreeMap<String, (String, Vec<u8>, bool)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = std::collections::BTreeMap::new();
    for entry in walkdir::WalkDir::new(root).min_depth(1) {
        let entry = entry.unwrap();
        let rel = entry
            .path()
            .strip_prefix(root)
            .unwrap()
            .display()
            .to_string();
        let meta = entry.path().symlink_metadata().unwrap();
        let value = if meta.file_type().is_symlink() {
            let target = std::fs::read_link(entry.path()).unwrap();
            (
                "symlink".to_string(),
                target.display().to_string().into_bytes(),
                false,
            )
        } else if meta.is_dir() {
            ("dir".to_string(), Vec::new(), false)
        } else {
            (
                "file".to_string(),
                std::fs::read(entry.path()).unwrap(),
                meta.permissions().mode() & 0o111 != 0,
            )
        };
        out.insert(rel, value);
    }
    out
}

/// A CNCF distribution registry (Debian's docker-registry) on a loopback port.
pub struct RegistryServer {
    pub host: String,
    pub root: tempfile::TempDir,
    child: std::process::Child,
}

impl RegistryServer {
    /// Starts a registry; with `htpasswd` set to (user, password), Basic auth is required.
    pub fn start(htpasswd: Option<(&str, &str)>) -> Self {
        Self::start_with_auth(htpasswd, None)
    }

    /// Starts a registry whose `auth:` section is `auth` (YAML, indented under it).
    pub fn start_with_auth(htpasswd: Option<(&str, &str)>, auth: Option<&str>) -> Self {
        require("docker-registry");
        let root = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            root.path().join("data").display()
        );
        if let Some((user, password)) = htpasswd {
            require("htpasswd");
            let out = run_ok(Command::new("htpasswd").args(["-Bbn", user, password]));
            std::fs::write(root.path().join("htpasswd"), out).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: trousse-test\n    path: {}\n",
                root.path().join("htpasswd").display()
            ));
        }
        if let Some(auth) = auth {
            config.push_str(&format!("auth:\n{auth}"));
        }
        std::fs::write(root.path().join("config.yml"), config).unwrap();
        let log = std::fs::File::create(root.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(root.path().join("config.yml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the registry did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Self {
            host: format!("127.0.0.1:{port}"),
            root,
            child,
        }
    }

    /// The number of blobs the registry stores.
    pub fn stored_blobs(&self) -> usize {
        let dir = self.root.path().join("data/docker/registry/v2/blobs");
        if !dir.exists() {
            return 0;
        }
        walkdir::WalkDir::new(dir)
            .into_iter()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name() == "data")
            .count()
    }
}

impl Drop for RegistryServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory served over HTTP on a loopback port (python's http.server).
pub struct ChannelServer {
    pub port: u16,
    child: std::process::Child,
}

impl ChannelServer {
    pub fn start(dir: &Path) -> Self {
        let dir = dir.to_str().unwrap();
        Self::python(
            &["-m", "http.server", "--bind", "127.0.0.1"],
            &["--directory", dir],
        )
    }

    /// Runs a Python HTTP server `script` (`sys.argv[1]` is its port, then `args`).
    pub fn start_script(script: &str, args: &[&str]) -> Self {
        Self::python(&["-c", script], args)
    }

    /// Serves `dir` to requests with Basic credentials `user`/`password` only (401 otherwise).
    pub fn start_with_password(dir: &Path, user: &str, password: &str) -> Self {
        const SERVER: &str = r#"
import base64, functools, http.server, sys
port, root, expected = int(sys.argv[1]), sys.argv[2], sys.argv[3]
class Handler(http.server.SimpleHTTPRequestHandler):
    def check(self):
        if self.headers.get("Authorization") == "Basic " + expected:
            return True
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="channel"')
        self.send_header("Content-Length", "0")
        self.end_headers()
        return False
    def do_GET(self):
        if self.check():
            super().do_GET()
    def do_HEAD(self):
        if self.check():
            super().do_HEAD()
handler = functools.partial(Handler, directory=root)
http.server.ThreadingHTTPServer(("127.0.0.1", port), handler).serve_forever()
"#;
        use base64::Engine;
        let expected =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        Self::start_script(SERVER, &[dir.to_str().unwrap(), &expected])
    }

    /// python3 with `before`, a free port, then `after`, serving on that port.
    fn python(before: &[&str], after: &[&str]) -> Self {
        let port = free_port();
        let child = Command::new("python3")
            .args(before)
            .arg(port.to_string())
            .args(after)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python3 serves");
        wait_for_port(port, "the HTTP server");
        Self { port, child }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }
}

impl Drop for ChannelServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads an HTTP request's head (up to the blank line) from `stream`.
pub fn read_request_head(stream: &mut std::net::TcpStream) -> String {
    use std::io::Read;
    let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(5)));
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&request).into_owned()
}

/// A loopback port nothing listens on.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something accepts connections on a loopback port.
pub fn wait_for_port(port: u16, what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "{what} did not start");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Makes a busybox base image with umoci: a shell and a passwd of its own.
pub fn busybox_base(dir: &Path) -> std::path::PathBuf {
    require("umoci");
    let layout = dir.join("base");
    run_ok(
        Command::new("umoci")
            .args(["init", "--layout"])
            .arg(&layout),
    );
    run_ok(
        Command::new("umoci")
            .args(["new", "--image"])
            .arg(format!("{}:bb", layout.display())),
    );
    let bundle = dir.join("base-bundle");
    run_ok(
        Command::new("umoci")
            .args(["unpack", "--rootless", "--image"])
            .arg(format!("{}:bb", layout.display()))
            .arg(&bundle),
    );
    let rootfs = bundle.join("rootfs");
    for d in ["bin", "etc", "tmp"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).expect("busybox-static is installed");
    for tool in ["sh", "cat", "id", "ls"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(tool)).unwrap();
    }
    std::fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/:/bin/false\n",
    )
    .unwrap();
    std::fs::write(rootfs.join("etc/group"), "root:x:0:\nusers:x:100:\n").unwrap();
    run_ok(
        Command::new("umoci")
            .args(["repack", "--image"])
            .arg(format!("{}:bb", layout.display()))
            .arg(&bundle),
    );
    run_ok(
        Command::new("umoci")
            .args(["config", "--image"])
            .arg(format!("{}:bb", layout.display()))
            .args([
                "--config.env",
                "PATH=/usr/bin:/bin",
                "--config.env",
                "BASE_VAR=kept",
                "--architecture",
                "amd64",
                "--os",
                "linux",
            ]),
    );
    layout
}
