//! A repository's `postBuild`, when allowed: it runs as the notebook user in
//! a container (docker or podman, found on the machine) on the assembled
//! image, with no host mount and no access to the engine's socket, within
//! CPU, memory, process and time limits; what it changes becomes one layer
//! on top. Such an image is labelled as not byte-reproducible.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use oci_spec::image::Descriptor;
use tokio::process::Command;
use trousse_registry_client::{publish, BlobStore, Image, ImageRef, RegistryOptions};

use crate::{
    image::layer::{compress_tar, Compression, Layer},
    settings::NotebookUser,
    BuildError,
};

/// How long a `postBuild` may run.
pub(crate) const POST_BUILD_TIMEOUT: Duration = Duration::from_secs(1800);

/// What a `postBuild` run needs.
pub(crate) struct PostBuild<'a> {
    /// The script's path in the image.
    pub script: String,
    /// The notebook user it runs as, in its home.
    pub user: &'a NotebookUser,
    /// Whether it may reach the network.
    pub network: bool,
    /// Where the image and the container's changes are written meanwhile.
    pub work_dir: &'a Path,
}

/// Runs the script on the image `root` (its blobs in `blobs`); returns its changes as a layer.
pub(crate) async fn post_build_layer(
    run: &PostBuild<'_>,
    root: &Descriptor,
    blobs: &BlobStore,
    compression: Compression,
) -> Result<Layer, BuildError> {
    let engine = container_engine()?;
    let id = random_id();
    let (image, changed) = (
        format!("trousse-post-build/{id}:in"),
        format!("trousse-post-build/{id}:out"),
    );
    let container = format!("trousse-post-build-{id}");
    let archive = run.work_dir.join(format!("post-build-{id}.tar"));
    let image_ref = ImageRef::DockerArchive {
        file: archive.clone(),
        reference: Some(image.clone()),
    };
    let whole = Image {
        blobs: blobs.clone(),
        root: root.clone(),
    };
    publish(&whole, &image_ref, &RegistryOptions::default(), &[]).await?;
    let result = async {
        engine_ok(&engine, &["load", "-q", "-i", path_str(&archive)?]).await?;
        run_script(&engine, run, &image, &container).await?;
        engine_ok(&engine, &["commit", &container, &changed]).await?;
        engine_ok(&engine, &["save", "-o", path_str(&archive)?, &changed]).await?;
        let (archive, blobs) = (archive.clone(), blobs.clone());
        crate::error::blocking("post-build layer", move || {
            last_layer(&archive, &blobs, compression)
        })
        .await?
    }
    .await;
    let _ = Command::new(&engine)
        .args(["rm", "-f", &container])
        .output()
        .await;
    let _ = Command::new(&engine)
        .args(["rmi", "-f", &image, &changed])
        .output()
        .await;
    let _ = std::fs::remove_file(&archive);
    Ok(Layer {
        blob: result?,
        packages: Vec::new(),
        holds: Some("postBuild's changes"),
        cached: false,
    })
}

/// docker, else podman.
fn container_engine() -> Result<PathBuf, BuildError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for engine in ["docker", "podman"] {
        if let Some(found) = std::env::split_paths(&path)
            .map(|d| d.join(engine))
            .find(|p| p.is_file())
        {
            return Ok(found);
        }
    }
    Err(BuildError::Unsupported(
        "postBuild runs in a container: install docker or podman".into(),
    ))
}

/// Runs the script as the notebook user, confined; its output goes to stderr.
async fn run_script(
    engine: &Path,
    run: &PostBuild<'_>,
    image: &str,
    container: &str,
) -> Result<(), BuildError> {
    let user = format!("{}:{}", run.user.uid, run.user.gid);
    let home = run.user.home();
    let mut child = Command::new(engine)
        .args(run_args(run, &user, &home, image, container))
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(BuildError::io("running", engine))?;
    let status = match tokio::time::timeout(POST_BUILD_TIMEOUT, child.wait()).await {
        Ok(status) => status.map_err(BuildError::io("running", engine))?,
        Err(_) => {
            let _ = Command::new(engine)
                .args(["kill", container])
                .output()
                .await;
            return Err(BuildError::Unsupported(format!(
                "postBuild ran longer than {} s",
                POST_BUILD_TIMEOUT.as_secs()
            )));
        }
    };
    if !status.success() {
        return Err(BuildError::Unsupported(format!(
            "postBuild failed ({status}): its output is above"
        )));
    }
    Ok(())
}

/// The engine's arguments: the script as the notebook user, in its home,
/// without network (unless allowed), capabilities or new privileges, bounded
/// in CPUs, memory and processes.
fn run_args<'a>(
    run: &'a PostBuild<'_>,
    user: &'a str,
    home: &'a str,
    image: &'a str,
    container: &'a str,
) -> [&'a str; 22] {
    let network = if run.network { "bridge" } else { "none" };
    [
        "run",
        "--name",
        container,
        "--user",
        user,
        "--workdir",
        home,
        "--network",
        network,
        "--cpus",
        "2",
        "--memory",
        "4g",
        "--pids-limit",
        "1024",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--entrypoint",
        &run.script,
        image,
    ]
}

/// Runs an engine command that must succeed.
async fn engine_ok(engine: &Path, args: &[&str]) -> Result<(), BuildError> {
    let out = Command::new(engine)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(BuildError::io("running", engine))?;
    if out.status.success() {
        return Ok(());
    }
    Err(BuildError::Internal(format!(
        "{} {} failed: {}",
        engine.display(),
        args.first().unwrap_or(&""),
        String::from_utf8_lossy(&out.stderr).trim()
    )))
}

/// The last layer of a `docker save` archive (the container's changes), compressed into `blobs`.
fn last_layer(
    archive: &Path,
    blobs: &BlobStore,
    compression: Compression,
) -> Result<crate::image::layer::LayerBlob, BuildError> {
    let open = || -> Result<tar::Archive<std::fs::File>, BuildError> {
        Ok(tar::Archive::new(
            std::fs::File::open(archive).map_err(BuildError::io("reading", archive))?,
        ))
    };
    let bad =
        |what: &str| BuildError::Internal(format!("the saved image {}: {what}", archive.display()));
    let mut manifest = Vec::new();
    for entry in open()?
        .entries()
        .map_err(BuildError::io("reading", archive))?
    {
        let mut entry = entry.map_err(BuildError::io("reading", archive))?;
        if entry.path().is_ok_and(|p| p == Path::new("manifest.json")) {
            std::io::Read::read_to_end(&mut entry, &mut manifest)
                .map_err(BuildError::io("reading", archive))?;
        }
    }
    let manifest: serde_json::Value =
        serde_json::from_slice(&manifest).map_err(|_| bad("no manifest.json"))?;
    let last = manifest[0]["Layers"]
        .as_array()
        .and_then(|l| l.last())
        .and_then(|l| l.as_str())
        .ok_or_else(|| bad("no layers"))?
        .to_string();
    for entry in open()?
        .entries()
        .map_err(BuildError::io("reading", archive))?
    {
        let entry = entry.map_err(BuildError::io("reading", archive))?;
        if entry.path().is_ok_and(|p| p == Path::new(&last)) {
            return compress_tar(entry, blobs, compression);
        }
    }
    Err(bad("its last layer is missing"))
}

fn path_str(path: &Path) -> Result<&str, BuildError> {
    path.to_str()
        .ok_or_else(|| BuildError::Internal(format!("{} is not UTF-8", path.display())))
}

/// A name no other run uses: images and containers of concurrent builds never meet.
fn random_id() -> String {
    let mut bytes = [0u8; 8];
    // without randomness the process id and time still tell runs apart
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        bytes[..4].copy_from_slice(&nanos.to_le_bytes());
        bytes[4..].copy_from_slice(&std::process::id().to_le_bytes());
    }
    hex::encode(bytes)
}
