//! The usual way, for comparison: the same installed environment built into an
//! image by `docker build` from a Dockerfile, and pushed by `docker push`.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{bail, Context};

/// Whether a Docker Engine answers.
pub fn available() -> bool {
    Command::new("docker")
        .args(["info"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs a command; seconds it took, or its error output.
pub fn run_timed(cmd: &mut Command) -> anyhow::Result<f64> {
    let started = Instant::now();
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    let seconds = started.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(seconds)
}

/// A Docker build context: the installed environment at `opt/conda` and a Dockerfile.
pub struct BuildContext {
    /// The context directory.
    pub dir: PathBuf,
}

impl BuildContext {
    /// A context whose Dockerfile copies `rootfs/opt/conda` onto scratch, plus `extra` lines.
    pub fn new(dir: &Path, extra: &str) -> anyhow::Result<Self> {
        std::fs::write(
            dir.join("Dockerfile"),
            format!("FROM scratch\nCOPY opt/conda /opt/conda\n{extra}"),
        )?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    /// `docker build` of the context with the classic builder (this engine has no buildx).
    pub fn build(&self, tag: &str, no_cache: bool) -> anyhow::Result<f64> {
        let mut cmd = Command::new("docker");
        cmd.env("DOCKER_BUILDKIT", "0")
            .args(["build", "-q", "-t", tag]);
        if no_cache {
            cmd.arg("--no-cache");
        }
        cmd.arg(&self.dir);
        run_timed(&mut cmd)
    }
}

/// Gives a local image another name.
pub fn tag(image: &str, name: &str) -> anyhow::Result<()> {
    run_timed(Command::new("docker").args(["tag", image, name])).map(|_| ())
}

/// Removes images, ignoring those that are not there.
pub fn remove_images(tags: &[&str]) {
    let _ = Command::new("docker")
        .arg("rmi")
        .arg("-f")
        .args(tags)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let _ = Command::new("docker")
        .args(["image", "prune", "-f"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// `docker push` of a local image to a registry reference.
pub fn push(local: &str, remote: &str) -> anyhow::Result<f64> {
    run_timed(Command::new("docker").args(["tag", local, remote]))?;
    let seconds = run_timed(Command::new("docker").args(["push", "-q", remote]))?;
    remove_images(&[remote]);
    Ok(seconds)
}
