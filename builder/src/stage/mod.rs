//! The stage stage: each package linked by rattler into its own directory,
//! with the in-image prefix written into its files and a normalized
//! conda-meta record beside them.

pub(crate) mod package_check;
pub(crate) mod wheels;

use std::path::{Path, PathBuf};

use rattler::install::{link_package, InstallDriver, InstallOptions, PythonInfo};
use rattler_conda_types::{prefix_record::PathsEntry, PrefixRecord, RepoDataRecord, Subdir};
use sha2::{Digest, Sha256};

use crate::{
    cache::CacheDir,
    stage::package_check::{check_package, check_path, CheckedPackage},
    BuildError,
};

/// Bumped whenever staging output changes for the same inputs.
/// 2: packages are checked before they are staged (stagings made unchecked are redone).
const STAGE_FORMAT: u32 = 2;

/// A package linked into its own staging directory.
#[derive(Debug, Clone)]
pub(crate) struct StagedPackage {
    /// The package's record.
    pub record: RepoDataRecord,
    /// The cache key of this staging (package, prefix, python version).
    pub key: String,
    /// The directory that holds the package's files as they sit under the prefix.
    pub root: PathBuf,
    /// The files the package installs, relative to the prefix.
    pub paths: Vec<PathsEntry>,
}

impl StagedPackage {
    /// The staging directory, opened for lookups that never follow a symlink.
    pub(crate) fn open_root(
        &self,
    ) -> Result<std::sync::Arc<crate::guard::beneath::Beneath>, BuildError> {
        crate::guard::beneath::Beneath::open(&self.root)
            .map(std::sync::Arc::new)
            .map_err(BuildError::io("opening staged package", &self.root))
    }
}

/// What a package's staging depends on besides the package itself.
#[derive(Debug, Clone)]
pub(crate) struct StageTarget<'a> {
    /// The in-image prefix.
    pub prefix: &'a str,
    /// The target platform.
    pub platform: Subdir,
    /// The environment's python, for noarch python packages.
    pub python: Option<&'a PythonInfo>,
}

/// The staging cache key of a package for a target.
pub(crate) fn stage_key(record: &RepoDataRecord, target: &StageTarget<'_>) -> String {
    let python = target
        .python
        .filter(|_| record.package_record.noarch.is_python())
        .map(|p| {
            format!(
                "{}.{}:{}",
                p.short_version.0,
                p.short_version.1,
                p.site_packages_path.display()
            )
        });
    let identity = serde_json::json!({
        "format": STAGE_FORMAT,
        "sha256": record.package_record.sha256.map(hex::encode),
        "file": record.identifier.to_string(),
        "prefix": target.prefix,
        "platform": target.platform.to_string(),
        "python": python,
    });
    hex::encode(Sha256::digest(identity.to_string().as_bytes()))
}

/// The file name of a package's conda-meta record.
pub(crate) fn conda_meta_name(record: &RepoDataRecord) -> String {
    let p = &record.package_record;
    format!("{}-{}-{}.json", p.name.as_normalized(), p.version, p.build)
}

/// Reads a staged package from the cache, if it was staged before.
pub(crate) fn cached(
    cache: &CacheDir,
    record: &RepoDataRecord,
    target: &StageTarget<'_>,
) -> Option<StagedPackage> {
    let key = stage_key(record, target);
    let root = cache.staged(&key);
    let meta = root.join("conda-meta").join(conda_meta_name(record));
    let prefix_record = PrefixRecord::from_path(&meta).ok()?;
    crate::cache::mark_used(&root);
    Some(StagedPackage {
        record: record.clone(),
        key,
        root,
        paths: prefix_record.paths_data.paths,
    })
}

/// Links an extracted package into its staging directory in the cache.
pub(crate) async fn stage(
    cache: &CacheDir,
    record: &RepoDataRecord,
    package_dir: &Path,
    target: &StageTarget<'_>,
) -> Result<StagedPackage, BuildError> {
    let stage_err = |message: String| BuildError::Stage {
        package: record.identifier.to_string(),
        message,
        source: None,
    };
    if record.package_record.noarch.is_python() && target.python.is_none() {
        return Err(stage_err(
            "it is a noarch python package but the environment has no python".into(),
        ));
    }
    let checked = check(record, package_dir, target.python).await?;
    let tmp = cache.temp_dir("stage")?;
    let paths = link(record, package_dir, tmp.path(), target, checked).await?;

    let mut prefix_record = PrefixRecord::from_repodata_record(record.clone(), paths.clone());
    normalize_prefix_record(&mut prefix_record);
    let meta_dir = tmp.path().join("conda-meta");
    let meta_path = meta_dir.join(conda_meta_name(record));
    prefix_record
        .write_to_path(&meta_path, true)
        .map_err(BuildError::io("writing conda-meta record", &meta_path))?;

    let key = stage_key(record, target);
    let root = cache.publish_staged(tmp, &key)?;
    Ok(StagedPackage {
        record: record.clone(),
        key,
        root,
        paths,
    })
}

/// Links a checked package with rattler into `dir`, for the target prefix,
/// and checks the paths it wrote.
async fn link(
    record: &RepoDataRecord,
    package_dir: &Path,
    dir: &Path,
    target: &StageTarget<'_>,
    checked: CheckedPackage,
) -> Result<Vec<PathsEntry>, BuildError> {
    let stage_err =
        |message: &str, e: Box<dyn std::error::Error + Send + Sync>| BuildError::Stage {
            package: record.identifier.to_string(),
            message: message.into(),
            source: Some(e),
        };
    let prefix = rattler_conda_types::prefix::Prefix::create(dir)
        .map_err(|e| stage_err("cannot create its staging directory", Box::new(e)))?;
    let options = InstallOptions {
        target_prefix: Some(PathBuf::from(target.prefix)),
        platform: Some(target.platform),
        python_info: target.python.cloned(),
        // rattler links exactly what was checked, never a second reading
        index_json: Some(checked.index_json),
        paths_json: Some(checked.paths_json),
        link_json: Some(checked.link_json),
        ..InstallOptions::default()
    };
    let paths = link_package(package_dir, &prefix, &InstallDriver::default(), options)
        .await
        .map_err(|e| stage_err("rattler cannot link it", Box::new(e)))?;
    for path in &paths {
        check_path(&path.relative_path).map_err(|problem| BuildError::UnsafePackage {
            package: record.identifier.to_string(),
            problem,
        })?;
    }
    Ok(paths)
}

/// Checks the extracted package (blocking I/O, off the async threads).
async fn check(
    record: &RepoDataRecord,
    package_dir: &Path,
    python: Option<&PythonInfo>,
) -> Result<CheckedPackage, BuildError> {
    let dir = package_dir.to_path_buf();
    let python = python.cloned();
    let checked = tokio::task::spawn_blocking(move || check_package(&dir, python.as_ref())).await;
    let package = record.identifier.to_string();
    match checked {
        Ok(Ok(checked)) => Ok(checked),
        Ok(Err(problem)) => Err(BuildError::UnsafePackage { package, problem }),
        Err(e) => Err(BuildError::Stage {
            package,
            message: "the package check failed".into(),
            source: Some(Box::new(e)),
        }),
    }
}

/// Removes host paths and per-environment fields from a conda-meta record.
pub(crate) fn normalize_prefix_record(record: &mut PrefixRecord) {
    record.package_tarball_full_path = None;
    record.extracted_package_dir = None;
    record.link = None;
    #[allow(deprecated)]
    {
        record.requested_spec = None;
    }
    record.requested_specs.clear();
}

/// The python of an environment, needed to stage its noarch python packages.
pub(crate) fn python_info(
    records: &[RepoDataRecord],
    platform: Subdir,
) -> Result<Option<PythonInfo>, BuildError> {
    let Some(python) = records
        .iter()
        .find(|r| r.package_record.name.as_normalized() == "python")
    else {
        return Ok(None);
    };
    PythonInfo::from_python_record(&python.package_record, platform)
        .map(Some)
        .map_err(|e| BuildError::Stage {
            package: python.identifier.to_string(),
            message: "its version gives no site-packages path".into(),
            source: Some(Box::new(e)),
        })
}
