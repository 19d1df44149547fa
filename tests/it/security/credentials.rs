//! Credentials written into channel and package URLs: the command line
//! fetches with them and writes them nowhere; the service refuses them in a
//! request, takes its own from the operator's rattler authentication file,
//! and scrubs what an older version stored.

use std::{path::Path, process::Command};

use serde_json::json;

use crate::common::{service::*, *};

const USER: &str = "ada";
const PASSWORD: &str = "chan-s3cret-passw0rd";

/// Asserts the password is in no file under `root` (layers decompressed too).
fn assert_nowhere(root: &Path) {
    assert!(
        !super::tree_holds(root, PASSWORD.as_bytes()),
        "a file under {} holds the channel's password",
        root.display()
    );
}

/// rattler's authentication file, as an operator writes it (`pixi auth login`'s format).
fn auth_file(ws: &Workspace) -> std::path::PathBuf {
    let path = ws.path("credentials.json");
    let entry = json!({"127.0.0.1": {"BasicHTTP": {"username": USER, "password": PASSWORD}}});
    std::fs::write(&path, entry.to_string()).unwrap();
    path
}

#[test]
fn channel_passwords_are_used_and_never_written() {
    let ws = Workspace::with_example_channel();
    let channel = ChannelServer::start_with_password(&ws.channel(), USER, PASSWORD);
    let with_password = format!("http://{USER}:{PASSWORD}@127.0.0.1:{}/", channel.port);
    let spec = ws.path("private.yml");
    std::fs::write(
        &spec,
        format!("name: private\nchannels: ['{with_password}']\ndependencies: [hello-prefix]\n"),
    )
    .unwrap();

    // the command line: locked and built with the password, which is written nowhere
    let lock = ws.path("private.lock");
    let out = run(trousse(&[
        "lock",
        spec.to_str().unwrap(),
        "-o",
        lock.to_str().unwrap(),
        "--cache-dir",
        &ws.cache(),
    ]));
    assert!(out.status.success(), "{out:?}");
    let locked = std::fs::read_to_string(&lock).unwrap();
    assert!(locked.contains(&channel.url()), "{locked}");
    assert!(
        !locked.contains(PASSWORD) && !locked.contains("ada@"),
        "{locked}"
    );
    let layout = ws.path("image");
    let out = run(trousse(&[
        "build",
        spec.to_str().unwrap(),
        "--output",
        &format!("oci:{}", layout.display()),
        "--cache-dir",
        &ws.cache(),
    ]));
    assert!(out.status.success());
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!printed.contains(PASSWORD), "{printed}");
    assert_nowhere(&layout);
    assert_nowhere(Path::new(&ws.cache()));

    // an explicit list with the password in each line: the same
    let explicit = ws.path("private.txt");
    let text = std::fs::read_to_string(&lock).unwrap();
    let mut urls: Vec<String> = Vec::new();
    let packages = text.split("\npackages:\n").nth(1).unwrap();
    for line in packages.lines().map(str::trim) {
        if let Some(url) = line.strip_prefix("- conda: ") {
            urls.push(url.replace("http://", &format!("http://{USER}:{PASSWORD}@")));
        } else if let (Some(md5), Some(last)) = (line.strip_prefix("md5: "), urls.last_mut()) {
            last.push('#');
            last.push_str(md5);
        }
    }
    assert!(!urls.is_empty(), "{text}");
    std::fs::write(&explicit, format!("@EXPLICIT\n{}\n", urls.join("\n"))).unwrap();
    let out = run(trousse(&[
        "build",
        explicit.to_str().unwrap(),
        "--output",
        &format!("oci:{}:explicit", layout.display()),
        "--cache-dir",
        &ws.cache(),
    ]));
    assert!(out.status.success(), "{out:?}\n{text}");
    assert_nowhere(&layout);
    assert_nowhere(Path::new(&ws.cache()));

    // the lock, without the password, builds with the operator's credentials only
    let rebuild = |auth: Option<&Path>| {
        let mut command = trousse(&[
            "build",
            lock.to_str().unwrap(),
            "--output",
            &format!("oci:{}:again", ws.path("again").display()),
            "--cache-dir",
            &ws.path("fresh-cache").display().to_string(),
        ]);
        command.env(
            "RATTLER_AUTH_FILE",
            auth.unwrap_or(Path::new("/nonexistent")),
        );
        run(command)
    };
    let refused = rebuild(None);
    assert_eq!(refused.status.code(), Some(5), "{refused:?}");
    assert!(rebuild(Some(&auth_file(&ws))).status.success());

    runtime().block_on(async {
        let data = ws.path("data");
        let mut service = start_with_auth(&data, &channel, &ws);
        let teacher = service.token("teacher", &["intro"]);
        let submitted = format!("name: x\nchannels: ['{with_password}']\ndependencies: [hello-prefix]\n");
        let (status, error) = submit_yaml(&service, &teacher, "intro", &submitted).await;
        assert_eq!(status, 422, "{error}");
        assert_eq!(error["error"], "credentials_in_url", "{error}");
        let message = error["message"].as_str().unwrap();
        assert!(message.contains("line 2") && message.contains("***@127.0.0.1"), "{message}");
        assert!(message.contains("RATTLER_AUTH_FILE"), "{message}");
        let (status, error) = send(
            client()
                .post(service.url("/api/v1/courses/intro/environments"))
                .bearer_auth(&teacher)
                .json(&json!({"name": "l", "lock": std::fs::read_to_string(&explicit).unwrap()})),
        )
        .await;
        assert_eq!((status, &error["error"]), (422, &json!("credentials_in_url")), "{error}");
        assert!(!error.to_string().contains(PASSWORD));

        // the operator's credentials: the spec names the channel without them
        let spec = spec_yaml(&channel, "course", &["hello-prefix"], "");
        let (status, created) = submit_yaml(&service, &teacher, "intro", &spec).await;
        assert_eq!(status, 202, "{created}");
        let id = created["id"].as_str().unwrap().to_string();
        let ready = wait_until(&service, &teacher, &id, &["ready", "failed"]).await;
        assert_eq!(ready["status"], "ready", "{ready}");

        // rows and cache records an older version wrote with the password are scrubbed
        drop(service);
        // a data directory an older version left has not been scrubbed yet
        std::fs::remove_file(data.join("credentials-scrubbed")).unwrap();
        let cell = channel.url();
        let dirty = with_password.clone();
        run_ok(Command::new("python3").args([
            "-c",
            "import sqlite3, sys\ndb = sqlite3.connect(sys.argv[1])\n\
             db.execute('UPDATE environments SET lock = replace(lock, ?, ?), spec = replace(spec, ?, ?)', (sys.argv[2], sys.argv[3], sys.argv[2], sys.argv[3]))\n\
             db.commit()\n",
            data.join("trousse.db").to_str().unwrap(),
            &cell,
            &dirty,
        ]));
        assert!(database_rows(&data).contains(PASSWORD));
        let record = data.join("cache").join("old-record.json");
        std::fs::write(&record, format!("{{\"url\": \"{dirty}linux-64/x.conda\"}}")).unwrap();
        service = start_with_auth(&data, &channel, &ws);
        assert!(!database_rows(&data).contains(PASSWORD), "rows scrubbed");
        assert!(!record.exists(), "the cache record is removed");
        let env = environment(&service, &teacher, &id).await;
        assert!(!env["lock"].as_str().unwrap().contains("ada@"));
        let log = std::fs::read_to_string(data.with_extension("log")).unwrap();
        assert!(!log.contains(PASSWORD), "the log holds the password");
        assert_nowhere(&data.join("cache"));
        assert_nowhere(&data.join("images"));
    });
}

/// The service, allowed the password-protected channel, with the operator's credentials.
fn start_with_auth(data: &Path, channel: &ChannelServer, ws: &Workspace) -> Service {
    let auth = auth_file(ws);
    Service::start_with_env(
        data,
        channel,
        &[],
        &[("RATTLER_AUTH_FILE", auth.to_str().unwrap())],
    )
}
