//! Hostile git repositories and git servers against `trousse serve` (a
//! teacher's submissions) and `trousse build`: objects written with git's own
//! plumbing, servers that redirect, say nothing or point back at themselves.
//! The service answers `/health` throughout, each submission is refused with
//! its message in bounded time and memory, and no credential travels.

use std::{
    io::Write,
    net::TcpListener,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::json;

use super::CountingListener;
use crate::common::{
    git::{git, GitServer, PRIVATE_TOKEN},
    service::*,
    *,
};

/// How deep the hostile tree nests: far past any stack trousse could afford.
const DEEP: usize = 4000;

/// A bare repository's `main` set to a commit of `files` (path, blob id, mode),
/// made with git's plumbing (no work tree, nothing checked out).
fn commit_blobs(bare: &Path, files: &[(&str, String, &str)]) -> String {
    let index = bare.join("hostile-index");
    let _ = std::fs::remove_file(&index);
    for (path, blob, mode) in files {
        run_ok(
            Command::new("git")
                .current_dir(bare)
                .env("GIT_INDEX_FILE", &index)
                .args(["update-index", "--add", "--cacheinfo"])
                .arg(format!("{mode},{blob},{path}")),
        );
    }
    let tree = run_ok(
        Command::new("git")
            .current_dir(bare)
            .env("GIT_INDEX_FILE", &index)
            .arg("write-tree"),
    );
    commit_tree(bare, tree.trim())
}

/// A commit of `tree` as `main`.
fn commit_tree(bare: &Path, tree: &str) -> String {
    let commit = run_ok(
        Command::new("git")
            .current_dir(bare)
            .env("GIT_AUTHOR_NAME", "Attacker")
            .env("GIT_AUTHOR_EMAIL", "a@example.org")
            .env("GIT_COMMITTER_NAME", "Attacker")
            .env("GIT_COMMITTER_EMAIL", "a@example.org")
            .args(["commit-tree", tree, "-m", "hostile"]),
    );
    git(bare, &["update-ref", "refs/heads/main", commit.trim()]);
    commit.trim().to_string()
}

/// Writes `content` as a blob of the bare repository; its id.
fn blob(bare: &Path, content: &[u8]) -> String {
    let mut child = Command::new("git")
        .current_dir(bare)
        .args(["hash-object", "-w", "--stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(content).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A tree object written as given (git's own tools would refuse it).
fn literal_tree(bare: &Path, entries: &[(&str, &str, &str)]) -> String {
    let mut bytes = Vec::new();
    for (mode, name, id) in entries {
        bytes.extend_from_slice(format!("{mode} {name}\0").as_bytes());
        bytes.extend(
            (0..id.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&id[i..i + 2], 16).unwrap()),
        );
    }
    let mut child = Command::new("git")
        .current_dir(bare)
        .args(["hash-object", "-w", "-t", "tree", "--literally", "--stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A repository whose directories nest [`DEEP`] levels, written by fast-import.
fn deep_repository(server: &GitServer, environment: &str) -> String {
    let repo = server.repo("deep");
    git(&repo.bare, &["config", "core.maxTreeDepth", "100000"]);
    let deep_path = format!("{}leaf.txt", "d/".repeat(DEEP));
    let stream = format!(
        "commit refs/heads/main\ncommitter A <a@example.org> 1760000000 +0000\ndata 4\ndeep\n\
         M 100644 inline environment.yml\ndata {}\n{environment}\n\
         M 100644 inline {deep_path}\ndata 2\nx\n\n",
        environment.len()
    );
    let mut child = Command::new("git")
        .current_dir(&repo.bare)
        .args(["-c", "core.maxTreeDepth=100000", "fast-import", "--quiet"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stream.as_bytes())
        .unwrap();
    assert!(
        child.wait().unwrap().success(),
        "fast-import wrote the tree"
    );
    server.http_url("deep")
}

/// A repository holding one gibibyte of zeros (a loose object written by
/// git's streaming `hash-object`, about a megabyte in a pack).
fn zero_bomb_repository(server: &GitServer, environment: &str) -> String {
    let repo = server.repo("bomb");
    let zeros = repo.bare.join("zeros.bin");
    std::fs::File::create(&zeros)
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let big = run_ok(
        Command::new("git")
            .current_dir(&repo.bare)
            .args(["hash-object", "-w"])
            .arg(&zeros),
    );
    std::fs::remove_file(&zeros).unwrap();
    let env = blob(&repo.bare, environment.as_bytes());
    commit_blobs(
        &repo.bare,
        &[
            ("environment.yml", env, "100644"),
            ("zeros.bin", big.trim().to_string(), "100644"),
        ],
    );
    server.http_url("bomb")
}

/// A link `x -> /etc` beside a directory `x/` holding `passwd`.
fn link_and_directory_repository(server: &GitServer, environment: &str) -> String {
    let repo = server.repo("linkdir");
    let env = blob(&repo.bare, environment.as_bytes());
    let link = blob(&repo.bare, b"/etc");
    let file = blob(&repo.bare, b"root::0:0::/root:/bin/sh\n");
    let inner = literal_tree(&repo.bare, &[("100644", "passwd", &file)]);
    let root = literal_tree(
        &repo.bare,
        &[
            ("100644", "environment.yml", &env),
            ("120000", "x", &link),
            ("40000", "x", &inner),
        ],
    );
    commit_tree(&repo.bare, &root);
    server.http_url("linkdir")
}

/// A repository whose submodule is the repository itself.
fn self_submodule_repository(server: &GitServer, environment: &str) -> String {
    let mut repo = server.repo("loop");
    repo.write("environment.yml", environment, false).write(
        ".gitmodules",
        "[submodule \"again\"]\n\tpath = again\n\turl = ../loop.git\n",
        false,
    );
    let first = repo.commit("first");
    let env = blob(&repo.bare, environment.as_bytes());
    let modules = blob(
        &repo.bare,
        b"[submodule \"again\"]\n\tpath = again\n\turl = ../loop.git\n",
    );
    commit_blobs(
        &repo.bare,
        &[
            ("environment.yml", env, "100644"),
            (".gitmodules", modules, "100644"),
            ("again", first, "160000"),
        ],
    );
    server.http_url("loop")
}

/// An HTTP server that answers every request with `302` to `target`, or first
/// `401` when the path holds `private` (so a token is sent, then redirected).
/// Each answer says `Connection: close` (it closes after one): a client that
/// reused the connection would meet a reset, not the answer under test.
fn redirector(target: String) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let target = target.clone();
            std::thread::spawn(move || answer_with_redirect(stream, &target));
        }
    });
    port
}

fn answer_with_redirect(mut stream: std::net::TcpStream, target: &str) {
    let request = read_request_head(&mut stream).to_lowercase();
    let answer = if request.contains("private") && !request.contains("authorization:") {
        "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            .to_string()
    } else {
        format!("HTTP/1.1 302 Found\r\nLocation: {target}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    };
    let _ = stream.write_all(answer.as_bytes());
}

/// A server that accepts connections and never says anything.
pub(crate) fn silent_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    port
}

/// The service's peak resident memory, in KiB (`VmHWM`).
fn peak_memory_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn hostile_repositories_neither_stop_nor_exhaust_the_service() {
    let ws = Workspace::with_example_channel();
    let server = GitServer::start();
    let channel = ChannelServer::start(&ws.channel());
    let counting = CountingListener::start();
    let environment = format!(
        "name: x\nchannels: [{}]\ndependencies: [hello-prefix]\n",
        channel.url()
    );
    let redirecting = redirector(counting.url("/stolen.git/info/refs?service=git-upload-pack"));
    let silent = silent_server();
    let hosts = [server.http_port, redirecting, silent].map(|p| format!("127.0.0.1:{p}"));
    let deep = deep_repository(&server, &environment);
    let bomb = zero_bomb_repository(&server, &environment);
    let linkdir = link_and_directory_repository(&server, &environment);
    let cycle = self_submodule_repository(&server, &environment);

    // the command line: a clear refusal (exit 10), not a stack overflow (134)
    let out = run(trousse(&[
        "build",
        &deep,
        "--output",
        &format!("oci:{}", ws.path("deep-image").display()),
        "--cache-dir",
        &ws.cache(),
    ]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(10), "{stderr}");
    assert!(stderr.contains("deeper than the limit of 256"), "{stderr}");

    runtime().block_on(async {
        let mut args = vec!["--repo-timeout", "15"];
        for host in &hosts {
            args.extend(["--allow-git-host", host.as_str()]);
        }
        let service = Service::start(&ws.path("data"), &channel, &args);
        let admin = service.token("admin", &[]);
        let token_url = service.url("/api/v1/courses/intro/git-token");
        let (status, _) = send(
            client()
                .put(&token_url)
                .bearer_auth(&admin)
                .json(&json!({"token": PRIVATE_TOKEN})),
        )
        .await;
        assert_eq!(status, 204);
        let submit = |course: &str, url: &str| {
            send(
                client()
                    .post(service.url(&format!("/api/v1/courses/{course}/environments")))
                    .bearer_auth(&admin)
                    .json(&json!({"repo": url, "name": "hostile"})),
            )
        };
        let start_memory = peak_memory_kib(service.pid());
        let hostile = [
            ("deep", deep.clone(), "deeper than the limit of 256"),
            ("bomb", bomb.clone(), "limit of 268435456 bytes"),
            ("link and directory", linkdir, "two entries at x"),
            ("submodule cycle", cycle, "a cycle"),
            (
                "redirect",
                format!("http://127.0.0.1:{redirecting}/moved.git"),
                "does not follow redirects",
            ),
            (
                "redirect after 401",
                format!("http://127.0.0.1:{redirecting}/private/moved.git"),
                "does not follow redirects",
            ),
            (
                "silent server",
                format!("http://127.0.0.1:{silent}/quiet.git"),
                "longer than the limit of 15 s",
            ),
            (
                "silent git daemon",
                format!("git://127.0.0.1:{silent}/quiet.git"),
                "longer than the limit of 15 s",
            ),
        ];
        let mut figures = Vec::new();
        for (what, url, says) in &hostile {
            let started = Instant::now();
            let (status, error) = submit("intro", url).await;
            let took = started.elapsed();
            assert_eq!(status, 422, "{what}: {error}");
            assert_eq!(error["error"], "repository_refused", "{what}: {error}");
            let message = error["message"].as_str().unwrap();
            assert!(message.contains(says), "{what}: {message}");
            assert!(took < Duration::from_secs(30), "{what} took {took:?}");
            assert!(service.healthy(), "the service answers after {what}");
            figures.push(format!(
                "{what}: refused in {:.2} s, peak RSS {} MiB",
                took.as_secs_f64(),
                peak_memory_kib(service.pid()) / 1024
            ));
        }
        let peak = peak_memory_kib(service.pid());
        println!(
            "hostile repositories (service peak RSS {} MiB before, {} MiB after):\n  {}",
            start_memory / 1024,
            peak / 1024,
            figures.join("\n  ")
        );
        assert!(peak < 512 * 1024, "peak RSS {peak} KiB with a 1 GiB blob");
        assert_eq!(counting.count(), 0, "a redirect was followed");

        // a known commit of a private repository is never served to a
        // course without its token from the mirror another course filled
        let mut private = server.repo("secret");
        private.write("environment.yml", &environment, false);
        let commit = private.commit("private");
        let private_url = server.private_url("secret");
        let (status, built) = submit("intro", &format!("{private_url}@{commit}")).await;
        assert_eq!(status, 202, "{built}");
        let (status, error) = submit("other", &format!("{private_url}@{commit}")).await;
        assert_eq!(status, 422, "{error}");
        assert!(
            error["message"].as_str().unwrap().contains("credentials"),
            "{error}"
        );
        let id = built["id"].as_str().unwrap();
        wait_until(&service, &admin, id, &["ready", "failed"]).await;

        // the deploy token is in no answer, log, row, cache file or image blob
        let log = std::fs::read_to_string(ws.path("data.log")).unwrap();
        assert!(!log.contains(PRIVATE_TOKEN), "the token is in the log");
        assert!(!database_rows(&ws.path("data")).contains(PRIVATE_TOKEN));
        for dir in ["cache", "images"] {
            assert!(
                !super::tree_holds(&ws.path("data").join(dir), PRIVATE_TOKEN.as_bytes()),
                "a file under {dir} holds the token"
            );
        }
        assert!(service.healthy());
    });
}
