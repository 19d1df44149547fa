//! A channel served over HTTP on loopback: the same code path as conda-forge.

mod common;

use common::*;

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
