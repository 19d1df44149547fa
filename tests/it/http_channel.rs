//! A channel served over HTTP on loopback: the same code path as conda-forge.

use crate::common::*;

#[test]
fn builds_from_a_channel_served_over_http() {
    let ws = Workspace::with_example_channel();
    let channel = ChannelServer::start(&ws.channel());
    let port = channel.port;
    let spec = ws.path("http.yml");
    std::fs::write(
        &spec,
        format!("channels:\n  - http://127.0.0.1:{port}/\ndependencies: [greet, pyhello]\n"),
    )
    .unwrap();
    let lock = ws.lock(&spec, "http");
    let text = std::fs::read_to_string(&lock).unwrap();
    assert!(
        text.contains(&format!("http://127.0.0.1:{port}/linux-64/greet-1.0-h0_0")),
        "{text}"
    );
    let rep = report(&run_ok(trousse(&[
        "build",
        lock.to_str().unwrap(),
        "--output",
        &format!("oci:{}", ws.path("img").display()),
        "--cache-dir",
        &ws.cache(),
        "--json",
    ])));
    assert_eq!(rep["packages"], 4);
}

/// A spec naming conda-forge, built through a site's mirror: the lock and
/// the image name conda-forge, and two mirrors serving the same packages
/// give one digest; an unreachable mirror is named.
#[test]
fn conda_forge_through_a_mirror_builds_the_origins_image() {
    let ws = Workspace::with_example_channel();
    let (a, b) = (
        ChannelServer::start(&ws.channel()),
        ChannelServer::start(&ws.channel()),
    );
    let spec = ws.path("course.yml");
    std::fs::write(
        &spec,
        "name: course\nchannels: [conda-forge]\ndependencies: [hello-prefix]\n",
    )
    .unwrap();
    let build = |mirror: &[&str], name: &str| {
        let mut args = vec![
            "build".to_string(),
            spec.display().to_string(),
            "--output".into(),
            format!("oci:{}:env", ws.path(name).display()),
            "--cache-dir".into(),
            ws.path(&format!("cache-{name}")).display().to_string(),
            "--json".into(),
        ];
        args.extend(mirror.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(trousse(&args))
    };
    let via = |server: &ChannelServer| format!("conda-forge={}", server.url());
    let digest = |out: std::process::Output| {
        assert!(out.status.success(), "{out:?}");
        report(&String::from_utf8_lossy(&out.stdout))["digest"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let first = digest(build(&["--channel-mirror", &via(&a)], "a"));
    let second = digest(build(&["--channel-mirror", &via(&b)], "b"));
    assert_eq!(first, second, "two mirrors of the same packages, one image");

    // a pixi/rattler configuration file's [mirrors]
    let config = ws.path("config.toml");
    std::fs::write(
        &config,
        format!(
            "[mirrors]\n\"https://conda.anaconda.org/conda-forge\" = [\"{}\"]\n",
            a.url()
        ),
    )
    .unwrap();
    let third = digest(build(&["--mirrors-config", config.to_str().unwrap()], "c"));
    assert_eq!(first, third);

    // the lock names conda-forge, not the mirror
    let lock = ws.path("course.lock");
    run_ok(trousse(&[
        "lock",
        spec.to_str().unwrap(),
        "-o",
        lock.to_str().unwrap(),
        "--cache-dir",
        ws.path("cache-lock").to_str().unwrap(),
        "--channel-mirror",
        &via(&a),
    ]));
    let text = std::fs::read_to_string(&lock).unwrap();
    assert!(
        text.contains("https://conda.anaconda.org/conda-forge/linux-64/hello-prefix"),
        "{text}"
    );
    assert!(!text.contains(&a.url()), "{text}");

    // an unreachable mirror: exit 5, naming it
    let nowhere = format!("http://127.0.0.1:{}/", free_port());
    let out = build(
        &["--channel-mirror", &format!("conda-forge={nowhere}")],
        "d",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(stderr.contains(nowhere.trim_end_matches('/')), "{stderr}");
}
