//! PyPI packages: requirements read, resolved against PEP 503/691 indexes
//! (conda packages satisfying what they can), locked, and wheels unpacked
//! into staging directories without running Python.

pub(crate) mod error;
pub(crate) mod index;
pub(crate) mod installed;
pub(crate) mod locked;
pub mod requirements;
pub(crate) mod resolve;
pub(crate) mod tags;
pub(crate) mod wheel;

use std::{collections::BTreeMap, path::Path, sync::Arc};

pub use crate::error::pypi::PypiError;
pub use error::{redact, without_credentials};
pub use index::FindLinks;
pub use locked::LockedWheel;
pub use requirements::PypiRequirements;

use rattler_conda_types::{GenericVirtualPackage, RepoDataRecord, Subdir};

use crate::{
    cache::fetch::{fetch, PackageCaches},
    progress::Reporter,
    BuildError,
};

/// The glibc assumed when neither the base nor the spec declares one (the solve's baseline).
const DEFAULT_GLIBC: (u32, u32) = (2, 17);

/// The Python of a conda environment: `(major, minor)` of its `python` package.
pub fn python_of(records: &[RepoDataRecord]) -> Option<(u32, u32)> {
    let python = records
        .iter()
        .find(|r| r.package_record.name.as_normalized() == "python")?;
    let text = python.package_record.version.to_string();
    let mut parts = text.split('.').map(|p| p.parse::<u32>().ok());
    Some((parts.next()??, parts.next()??))
}

/// The target wheels are chosen for: the environment's Python, the platform,
/// and the glibc the solve assumed (`__glibc`).
pub fn wheel_target(
    requirements: &PypiRequirements,
    platform: Subdir,
    records: &[RepoDataRecord],
    virtual_packages: &[GenericVirtualPackage],
) -> Result<tags::WheelTarget, PypiError> {
    let python = python_of(records).ok_or_else(|| {
        let (file, line) = requirements.origin.clone().unwrap_or_else(|| ("pip".into(), None));
        PypiError::Requirement {
            file,
            line,
            message: "PyPI packages need Python in the environment: add python (and pip) to the conda dependencies".into(),
        }
    })?;
    let glibc = virtual_packages
        .iter()
        .find(|v| v.name.as_normalized() == "__glibc")
        .and_then(|v| {
            let text = v.version.to_string();
            let (major, minor) = text.split_once('.')?;
            Some((major.parse().ok()?, minor.split('.').next()?.parse().ok()?))
        })
        .unwrap_or(DEFAULT_GLIBC);
    Ok(tags::WheelTarget {
        python,
        platform,
        glibc,
    })
}

/// What the resolution of one platform needs.
pub struct PlatformInput<'a> {
    /// The requirements.
    pub requirements: &'a PypiRequirements,
    /// The solved conda packages.
    pub records: &'a [RepoDataRecord],
    /// The platform.
    pub platform: Subdir,
    /// The virtual packages the solve assumed (for `__glibc`).
    pub virtual_packages: &'a [GenericVirtualPackage],
    /// How long resolving may take, and its cancellation.
    pub limit: &'a crate::guard::work_limit::WorkLimit,
}

/// Resolves the requirements of one platform on top of its conda packages
/// (fetched to read the distributions they install); returns the wheels.
pub async fn resolve_platform(
    input: PlatformInput<'_>,
    cache_root: &Path,
    client: &rattler_networking::LazyClient,
    reporter: &Reporter,
) -> Result<Vec<LockedWheel>, BuildError> {
    let target = wheel_target(
        input.requirements,
        input.platform,
        input.records,
        input.virtual_packages,
    )?;
    let conda = conda_distributions(input.records, cache_root, client, reporter).await?;
    let index = Arc::new(index::Index::new(
        input.requirements.index.clone(),
        cache_root,
    )?);
    let requirements = input.requirements.clone();
    let runtime = tokio::runtime::Handle::current();
    let limit = input.limit.clone();
    let resolved = crate::error::blocking("PyPI resolution", move || {
        resolve::resolve(&requirements, &index, &target, &conda, runtime, &limit)
    })
    .await?;
    match resolved {
        Err(PypiError::Stopped) => Err(input.limit.error("resolving the PyPI requirements")),
        other => other.map_err(BuildError::from),
    }
}

/// The distributions the Python packages among `records` install (fetched into the cache).
async fn conda_distributions(
    records: &[RepoDataRecord],
    cache_root: &Path,
    client: &rattler_networking::LazyClient,
    reporter: &Reporter,
) -> Result<BTreeMap<pep508_rs::PackageName, installed::CondaDist>, BuildError> {
    let python_packages: Vec<RepoDataRecord> = records
        .iter()
        .filter(|r| {
            r.package_record.noarch.is_python()
                || r.package_record
                    .depends
                    .iter()
                    .any(|d| d.split_whitespace().next() == Some("python"))
        })
        .cloned()
        .collect();
    let caches = PackageCaches::new(cache_root.join("packages"));
    let fetched = fetch(python_packages, &caches, client, reporter).await?;
    let packages: Vec<(String, std::path::PathBuf)> = fetched
        .into_iter()
        .map(|f| (f.record.identifier.to_string(), f.dir))
        .collect();
    Ok(installed::conda_dists(&packages)?)
}
