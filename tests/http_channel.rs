//! A channel served over HTTP on loopback: the same code path as conda-forge.

mod common;

use std::{
    net::TcpListener,
    process::{Child, Command},
    time::{Duration, Instant},
};

use common::*;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(dir: &std::path::Path) -> (Server, u16) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("python3")
        .args([
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            &port.to_string(),
            "--directory",
        ])
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python3 serves the channel");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the channel server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (Server(child), port)
}

#[test]
fn builds_from_a_channel_served_over_http() {
    let ws = Workspace::with_example_channel();
    let (_server, port) = serve(&ws.channel());
    let spec = ws.path("http.yml");
    std::fs::write(
        &spec,
        format!("channels:\n  - http://127.0.0.1:{port}/\ndependencies: [greet, pyhello]\n"),
    )
    .unwrap();
    let lock = ws.path("http.lock");
    run_ok(trousse(&[
        "lock",
        spec.to_str().unwrap(),
        "-o",
        lock.to_str().unwrap(),
        "--cache-dir",
        &ws.cache(),
    ]));
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
