//! The Python distributions conda packages install, read from the
//! `*.dist-info` directories their `info/paths.json` lists: the name and
//! version of each, with no mapping table and no network.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    str::FromStr,
};

use pep440_rs::Version;
use pep508_rs::PackageName;
use rattler_conda_types::package::PathsJson;

use super::{index::CoreMetadata, PypiError};

/// A distribution installed by a conda package.
#[derive(Debug, Clone)]
pub(crate) struct CondaDist {
    /// Its name.
    pub name: PackageName,
    /// Its version, from the `.dist-info` directory's name.
    pub version: Version,
    /// The conda package that installs it (`name-version-build`).
    pub package: String,
    /// Its `METADATA` file in the package cache, when the package has one.
    pub metadata: Option<PathBuf>,
}

impl CondaDist {
    /// The distribution's core metadata (for the dependencies of its extras).
    pub(crate) fn metadata(&self) -> Result<CoreMetadata, PypiError> {
        let Some(path) = &self.metadata else {
            return Ok(CoreMetadata {
                name: self.name.clone(),
                version: self.version.clone(),
                requires_dist: Vec::new(),
                requires_python: None,
            });
        };
        let text = std::fs::read_to_string(path).map_err(PypiError::io("reading", path))?;
        CoreMetadata::parse(&text).map_err(|problem| PypiError::BadWheel {
            wheel: self.package.clone(),
            problem: format!("its METADATA: {problem}"),
        })
    }
}

/// The distributions the extracted conda packages `packages` (identifier, directory) install.
pub(crate) fn conda_dists(
    packages: &[(String, PathBuf)],
) -> Result<BTreeMap<PackageName, CondaDist>, PypiError> {
    let mut found = BTreeMap::new();
    for (package, dir) in packages {
        let paths =
            PathsJson::from_package_directory_with_deprecated_fallback(dir).map_err(|e| {
                PypiError::Io {
                    action: "reading info/paths.json of",
                    path: dir.clone(),
                    source: e,
                }
            })?;
        for entry in &paths.paths {
            let Some((name, version)) = dist_info_of(&entry.relative_path) else {
                continue;
            };
            found.insert(
                name.clone(),
                CondaDist {
                    name,
                    version,
                    package: package.clone(),
                    metadata: Some(dir.join(&entry.relative_path)),
                },
            );
        }
    }
    Ok(found)
}

/// The name and version of `…/site-packages/NAME-VERSION.dist-info/METADATA`.
fn dist_info_of(path: &Path) -> Option<(PackageName, Version)> {
    let mut parts = path.iter().rev();
    if parts.next()? != "METADATA" {
        return None;
    }
    let dir = parts.next()?.to_str()?.strip_suffix(".dist-info")?;
    if parts.next()? != "site-packages" {
        return None;
    }
    let (name, version) = dir.split_once('-')?;
    Some((
        PackageName::from_str(name).ok()?,
        Version::from_str(version).ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dist_info_directories_name_distributions() {
        let (name, version) = dist_info_of(Path::new(
            "lib/python3.12/site-packages/numpy-1.26.4.dist-info/METADATA",
        ))
        .unwrap();
        assert_eq!(
            (name.to_string(), version.to_string()),
            ("numpy".into(), "1.26.4".into())
        );
        let (name, _) = dist_info_of(Path::new(
            "site-packages/typing_extensions-4.12.2.dist-info/METADATA",
        ))
        .unwrap();
        assert_eq!(name.to_string(), "typing-extensions");
        assert!(dist_info_of(Path::new("site-packages/numpy-1.26.4.dist-info/RECORD")).is_none());
        assert!(dist_info_of(Path::new("share/numpy-1.26.4.dist-info/METADATA")).is_none());
        assert!(dist_info_of(Path::new("site-packages/numpy-1.26.4.egg-info/PKG-INFO")).is_none());
    }
}
