//! Wheels staged like conda packages: each unpacked once per target into
//! `CACHE/staged/<key>`, published by rename, then layered.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::pypi::{
    index::Index,
    wheel::{install_wheel, InstallTarget},
    LockedWheel, PypiError,
};
use crate::{cache::CacheDir, BuildError};

/// Bumped whenever the staging of the same wheel changes.
const WHEEL_STAGE_FORMAT: u32 = 1;

/// The modification time of every file of a wheel layer: 1980-01-01, the
/// earliest a zip can say. Wheels carry no build time a lock records, and a
/// fixed one lets every image share a wheel's layer.
pub(crate) const WHEEL_EPOCH: u64 = 315_532_800;

/// The list of staged files, kept beside them (never layered).
const MANIFEST: &str = ".trousse-wheel.json";

/// Where wheels are installed in the image.
#[derive(Debug, Clone)]
pub(crate) struct WheelStageTarget {
    /// The environment prefix.
    pub prefix: String,
    /// site-packages, relative to the prefix.
    pub site_packages: String,
    /// The interpreter scripts run with, absolute.
    pub python: String,
}

/// A wheel unpacked into its staging directory.
#[derive(Debug, Clone)]
pub(crate) struct StagedWheel {
    /// The locked wheel.
    pub wheel: LockedWheel,
    /// The staging cache key.
    pub key: String,
    /// The directory standing for the prefix.
    pub root: PathBuf,
    /// The files, relative to the prefix, sorted.
    pub files: Vec<String>,
    /// The wheel's size in bytes (for the layer plan).
    pub size: u64,
}

#[derive(Serialize, Deserialize)]
struct Manifest {
    files: Vec<String>,
    size: u64,
}

/// The staging key of a wheel for a target.
pub(crate) fn wheel_stage_key(
    wheel: &LockedWheel,
    target: &WheelStageTarget,
    requested: bool,
) -> String {
    let identity = serde_json::json!({
        "format": WHEEL_STAGE_FORMAT,
        "wheel": wheel.sha256,
        "prefix": target.prefix,
        "site_packages": target.site_packages,
        "python": target.python,
        "requested": requested,
    });
    hex::encode(Sha256::digest(identity.to_string().as_bytes()))
}

/// The staged wheel in the cache, if it was staged before.
pub(crate) fn cached_wheel(
    cache: &CacheDir,
    wheel: &LockedWheel,
    target: &WheelStageTarget,
    requested: bool,
) -> Option<StagedWheel> {
    let key = wheel_stage_key(wheel, target, requested);
    let root = cache.staged(&key);
    let manifest: Manifest =
        serde_json::from_slice(&std::fs::read(root.join(MANIFEST)).ok()?).ok()?;
    crate::cache::mark_used(&root);
    Some(StagedWheel {
        wheel: wheel.clone(),
        key,
        root,
        files: manifest.files,
        size: manifest.size,
    })
}

/// Downloads (checking its sha256) and unpacks a wheel into the cache.
pub(crate) async fn stage_wheel(
    cache: &CacheDir,
    index: &Index,
    wheel: &LockedWheel,
    target: &WheelStageTarget,
    requested: bool,
) -> Result<StagedWheel, BuildError> {
    let filename = wheel.filename();
    let path = index
        .download(&wheel.url, &filename, Some(&wheel.sha256))
        .await?;
    let size = std::fs::metadata(&path)
        .map_err(BuildError::io("reading", &path))?
        .len();
    let tmp = cache.temp_dir("stage")?;
    let (dir, owned_target, name) = (tmp.path().to_path_buf(), target.clone(), filename.clone());
    let files = crate::error::blocking("wheel", move || {
        unpack(&path, &name, &owned_target, requested, &dir, size)
    })
    .await??;
    let key = wheel_stage_key(wheel, target, requested);
    let root = cache.publish_staged(tmp, &key)?;
    Ok(StagedWheel {
        wheel: wheel.clone(),
        key,
        root,
        files,
        size,
    })
}

/// Unpacks the wheel into `dir` and writes the manifest of its files.
fn unpack(
    path: &Path,
    filename: &str,
    target: &WheelStageTarget,
    requested: bool,
    dir: &Path,
    size: u64,
) -> Result<Vec<String>, PypiError> {
    let install = InstallTarget {
        site_packages: &target.site_packages,
        python: &target.python,
        requested,
        epoch: WHEEL_EPOCH,
    };
    let installed = install_wheel(path, filename, &install, dir)?;
    // conda's own records are conda's: a wheel's data may not replace them
    if let Some(file) = installed
        .files
        .iter()
        .find(|f| f.starts_with("conda-meta/"))
    {
        return Err(PypiError::BadWheel {
            wheel: filename.to_string(),
            problem: format!("it installs {file}, inside conda's records"),
        });
    }
    let manifest = serde_json::to_vec(&Manifest {
        files: installed.files.clone(),
        size,
    })
    .map_err(|e| PypiError::io("writing the manifest in", dir)(std::io::Error::other(e)))?;
    let manifest_path = dir.join(MANIFEST);
    std::fs::write(&manifest_path, manifest).map_err(PypiError::io("writing", &manifest_path))?;
    Ok(installed.files)
}

/// The wheels no other locked wheel depends on: those installed as asked for
/// (`REQUESTED`). A function of the lock alone, so that a build from the
/// lock and one from the spec write the same files.
pub(crate) fn requested(wheels: &[LockedWheel]) -> Vec<bool> {
    let required: std::collections::BTreeSet<&pep508_rs::PackageName> = wheels
        .iter()
        .flat_map(|w| w.requires_dist.iter().map(|r| &r.name))
        .collect();
    wheels.iter().map(|w| !required.contains(&w.name)).collect()
}
