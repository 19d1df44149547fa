//! A wheel as the lock records it, and its place in a rattler lock file
//! (the PyPI package kind pixi writes: url, sha256, requires_dist,
//! requires_python).

use std::path::Path;

use pep440_rs::{Version, VersionSpecifiers};
use pep508_rs::{PackageName, Requirement};
use rattler_lock::{PackageHashes, PypiDistributionData, PypiPackageData, UrlOrPath, Verbatim};
use sha2::{Digest, Sha256};
use url::Url;

use super::PypiError;

/// A wheel the environment installs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockedWheel {
    /// The distribution name.
    pub name: PackageName,
    /// Its version.
    pub version: Version,
    /// Where the wheel is downloaded from.
    pub url: Url,
    /// The index page it was found on (none for find-links).
    pub index: Option<Url>,
    /// The wheel's sha256, lowercase hex.
    pub sha256: String,
    /// Its dependencies, as its metadata lists them.
    pub requires_dist: Vec<Requirement>,
    /// The Pythons it supports.
    pub requires_python: Option<VersionSpecifiers>,
}

impl LockedWheel {
    /// The wheel's file name: the last segment of its URL.
    pub fn filename(&self) -> String {
        let segment = self
            .url
            .path_segments()
            .and_then(|mut s| s.next_back())
            .unwrap_or_default();
        percent_encoding::percent_decode_str(segment)
            .decode_utf8_lossy()
            .into_owned()
    }

    /// The lock file's record of it.
    pub fn to_lock(&self) -> PypiPackageData {
        let sha = rattler_digest::parse_digest_from_hex::<rattler_digest::Sha256>(&self.sha256);
        PypiPackageData::Distribution(Box::new(PypiDistributionData {
            name: self.name.clone(),
            version: self.version.clone(),
            location: Verbatim::new(UrlOrPath::Url(self.url.clone())),
            index_url: self.index.clone(),
            hash: sha.map(PackageHashes::Sha256),
            requires_dist: self.requires_dist.clone(),
            requires_python: self.requires_python.clone(),
        }))
    }

    /// Reads a lock file's record: a wheel at a URL, with a sha256.
    pub fn from_lock(data: &PypiPackageData) -> Result<Self, String> {
        let PypiPackageData::Distribution(d) = data else {
            return Err("a local source directory, which is built by no one here: lock a wheel from an index".into());
        };
        let UrlOrPath::Url(url) = d.location.inner() else {
            return Err(format!(
                "{} {} is a local path: lock a wheel from an index",
                d.name, d.version
            ));
        };
        let sha256 = match &d.hash {
            Some(PackageHashes::Sha256(sha) | PackageHashes::Md5Sha256(_, sha)) => hex::encode(sha),
            _ => {
                return Err(format!(
                    "{} {} has no sha256: trousse needs one to verify it",
                    d.name, d.version
                ))
            }
        };
        let wheel = Self {
            name: d.name.clone(),
            version: d.version.clone(),
            url: url.clone(),
            index: d.index_url.clone(),
            sha256,
            requires_dist: d.requires_dist.clone(),
            requires_python: d.requires_python.clone(),
        };
        if !wheel.filename().ends_with(".whl") {
            return Err(format!(
                "{} {} is a source distribution ({}): trousse installs wheels only",
                d.name,
                d.version,
                wheel.filename()
            ));
        }
        Ok(wheel)
    }
}

/// The sha256 of a file, lowercase hex.
pub(crate) fn sha256_file(path: &Path) -> Result<String, PypiError> {
    let mut file = std::fs::File::open(path).map_err(PypiError::io("reading", path))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(PypiError::io("reading", path))?;
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use std::{path::Path, str::FromStr};

    use super::*;
    use crate::{lockfile::Lock, lockfile::LockedPlatform};

    fn wheel() -> LockedWheel {
        LockedWheel {
            name: PackageName::from_str("six").unwrap(),
            version: Version::from_str("1.16.0").unwrap(),
            url: Url::parse("https://files.pythonhosted.org/packages/d9/5a/e7c31adbe875f2abbb91bd84cf2dc52d792b5a01506781dbcf25c91daf11/six-1.16.0-py2.py3-none-any.whl").unwrap(),
            index: Some(Url::parse("https://pypi.org/simple/").unwrap()),
            sha256: "8abb2f1d86890a2dfb989f9a77cfcfd3e47c2a354b01111771326f8aa26e0254".into(),
            requires_dist: Vec::new(),
            requires_python: Some(VersionSpecifiers::from_str(">=2.7, !=3.0.*").unwrap()),
        }
    }

    #[test]
    fn wheels_are_pixi_lock_pypi_packages_and_read_back() {
        let platform = LockedPlatform {
            platform: rattler_conda_types::Subdir::Linux64,
            virtual_packages: Vec::new(),
            records: Vec::new(),
            pypi: vec![wheel()],
        };
        let path = Path::new("pixi.lock");
        let channels = ["https://conda.anaconda.org/conda-forge/".to_string()];
        let lock = Lock::render(path, &channels, &[platform]).unwrap();
        assert!(
            lock.text
                .contains("- pypi: https://files.pythonhosted.org/"),
            "{}",
            lock.text
        );
        assert!(lock.text.contains("sha256: 8abb2f1d"), "{}", lock.text);
        assert!(
            lock.text
                .contains("indexes:\n    - https://pypi.org/simple/"),
            "{}",
            lock.text
        );
        let read = Lock::from_text(&lock.text, path).unwrap();
        assert_eq!(read.platforms[0].pypi, vec![wheel()]);
        assert_eq!(
            read.platforms[0].pypi[0].filename(),
            "six-1.16.0-py2.py3-none-any.whl"
        );
    }

    #[test]
    fn what_is_not_a_wheel_with_a_sha256_is_refused() {
        let mut sdist = wheel();
        sdist.url = Url::parse("https://files.pythonhosted.org/six-1.16.0.tar.gz").unwrap();
        let e = LockedWheel::from_lock(&sdist.to_lock()).unwrap_err();
        assert!(e.contains("wheels only"), "{e}");
        let mut data = wheel().to_lock();
        if let PypiPackageData::Distribution(d) = &mut data {
            d.hash = None;
        }
        let e = LockedWheel::from_lock(&data).unwrap_err();
        assert!(e.contains("no sha256"), "{e}");
    }
}
