//! A partial lock: what a conda-lock file or an explicit list says of its
//! packages (URL, platform, checksums), read and checked line by line, before
//! `complete.rs` completes each record from its archive's `info/index.json`.

use std::path::{Path, PathBuf};

use rattler_conda_types::{package::DistArchiveIdentifier, Subdir};
use rattler_digest::{Md5, Md5Hash, Sha256, Sha256Hash};
use url::Url;

use crate::{
    error::clip,
    net::channel_url::{check_package_url, ChannelUrl},
    BuildError,
};

/// A problem in a conda-lock file or an explicit list, at a line when known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", line.map(|l| format!("line {l}: ")).unwrap_or_default())]
pub(crate) struct FormatError {
    /// The 1-based line of the offending entry, when known.
    pub line: Option<usize>,
    /// What is wrong and what to do.
    pub message: String,
}

impl FormatError {
    /// A problem at `line`.
    pub(crate) fn at(line: Option<usize>, message: impl Into<String>) -> Self {
        Self {
            line,
            message: message.into(),
        }
    }

    /// As a lock error of `path` (exit code 3).
    pub(crate) fn in_file(self, path: &Path) -> BuildError {
        BuildError::Lock {
            path: path.to_path_buf(),
            message: self.to_string(),
        }
    }
}

/// A package as a partial lock lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartialRecord {
    /// Where the archive is.
    pub url: Url,
    /// The archive's file name (`NAME-VERSION-BUILD.conda`), from the URL.
    pub file_name: DistArchiveIdentifier,
    /// The subdir the URL names (`linux-64`, `noarch`).
    pub subdir: String,
    /// The archive's md5, when given.
    pub md5: Option<Md5Hash>,
    /// The archive's sha256, when given.
    pub sha256: Option<Sha256Hash>,
    /// The line of the file that lists it, when known.
    pub line: Option<usize>,
}

/// The packages of one platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartialPlatform {
    /// The platform.
    pub platform: Subdir,
    /// Its packages, in file order.
    pub packages: Vec<PartialRecord>,
}

/// A lock whose records are completed from their archives when it is resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartialLock {
    /// The file, for messages.
    pub path: PathBuf,
    /// The channels, as base URLs (`https://conda.anaconda.org/conda-forge/`).
    pub channels: Vec<String>,
    /// The platforms, sorted by name.
    pub platforms: Vec<PartialPlatform>,
}

impl PartialLock {
    /// Keeps the platforms of `wanted` (all when empty); a platform the lock
    /// does not have is a usage error, as for a rattler lock.
    pub fn select_platforms(&mut self, wanted: &[Subdir]) -> Result<(), BuildError> {
        if let Some(p) = wanted.iter().find(|p| !self.has_platform(**p)) {
            return Err(BuildError::Usage(format!(
                "{} does not lock platform {p}",
                self.path.display()
            )));
        }
        if !wanted.is_empty() {
            self.platforms.retain(|p| wanted.contains(&p.platform));
        }
        Ok(())
    }

    fn has_platform(&self, platform: Subdir) -> bool {
        self.platforms.iter().any(|p| p.platform == platform)
    }

    /// Checks, before anything is fetched, that every package URL lies in a
    /// subdir of one of `channels` (the lock's own, or a service's allow-list).
    pub fn check_urls(&self, channels: &[ChannelUrl]) -> Result<(), BuildError> {
        for record in self.platforms.iter().flat_map(|p| &p.packages) {
            check_package_url(record.url.as_str(), channels).map_err(|e| {
                FormatError::at(
                    record.line,
                    format!("{e}; a lock may only fetch from the channels it declares"),
                )
                .in_file(&self.path)
            })?;
        }
        Ok(())
    }

    /// The lock's channels, parsed and checked.
    pub fn channel_urls(&self) -> Result<Vec<ChannelUrl>, BuildError> {
        self.channels
            .iter()
            .map(|c| {
                ChannelUrl::parse(c)
                    .map_err(|e| FormatError::at(None, e.to_string()).in_file(&self.path))
            })
            .collect()
    }

    /// How many packages it lists, over all platforms.
    pub fn len(&self) -> usize {
        self.platforms.iter().map(|p| p.packages.len()).sum()
    }

    /// Whether it lists no package.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A package URL, its archive file name and the subdir it names.
pub(crate) fn package_url(
    text: &str,
    line: Option<usize>,
) -> Result<(Url, DistArchiveIdentifier, String), FormatError> {
    let err = |m: String| FormatError::at(line, m);
    let url =
        Url::parse(text).map_err(|e| err(format!("'{}' is not a URL: {e}", clip(text, 200))))?;
    let segments: Vec<&str> = url
        .path_segments()
        .map(Iterator::collect)
        .unwrap_or_default();
    let [.., subdir, file] = segments.as_slice() else {
        return Err(err(format!(
            "{} is not a package URL (CHANNEL/SUBDIR/FILE.conda or .tar.bz2)",
            clip(text, 200)
        )));
    };
    let file_name = DistArchiveIdentifier::try_from_filename(file)
        .filter(|_| !subdir.is_empty())
        .ok_or_else(|| {
            err(format!(
                "{} does not end in SUBDIR/NAME-VERSION-BUILD.conda (or .tar.bz2)",
                clip(text, 200)
            ))
        })?;
    let subdir = subdir.to_string();
    Ok((url, file_name, subdir))
}

/// The channel of a package URL: the URL without `/SUBDIR/FILE`, as rattler
/// writes a channel's base URL.
pub(crate) fn channel_of(url: &Url) -> String {
    let mut channel = url.clone();
    if let Ok(mut segments) = channel.path_segments_mut() {
        segments.pop().pop().push("");
    }
    rattler_conda_types::Channel::from_url(channel)
        .base_url
        .to_string()
}

/// An md5 written as 32 hex digits.
pub(crate) fn md5_hex(text: &str) -> Option<Md5Hash> {
    (text.len() == 32)
        .then(|| rattler_digest::parse_digest_from_hex::<Md5>(text))
        .flatten()
}

/// A sha256 written as 64 hex digits.
pub(crate) fn sha256_hex(text: &str) -> Option<Sha256Hash> {
    (text.len() == 64)
        .then(|| rattler_digest::parse_digest_from_hex::<Sha256>(text))
        .flatten()
}

/// Refuses a second package of the same name on one platform.
pub(crate) fn check_unique(platform: &PartialPlatform) -> Result<(), FormatError> {
    let mut seen = std::collections::HashMap::new();
    for record in &platform.packages {
        let name = &record.file_name.identifier.name;
        if let Some(first) = seen.insert(name.clone(), record.line) {
            let first = first
                .map(|l| format!(" (first at line {l})"))
                .unwrap_or_default();
            return Err(FormatError::at(
                record.line,
                format!(
                    "package {name} is listed twice for {}{first}; keep one",
                    platform.platform
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_urls_give_their_file_subdir_and_channel() {
        let (url, file, subdir) = package_url(
            "https://conda.anaconda.org/conda-forge/noarch/tzdata-2025b-h78e105d_0.conda",
            Some(3),
        )
        .unwrap();
        assert_eq!(file.to_string(), "tzdata-2025b-h78e105d_0.conda");
        assert_eq!(subdir, "noarch");
        assert_eq!(channel_of(&url), "https://conda.anaconda.org/conda-forge/");
        for bad in [
            "not a url",
            "https://h/tzdata-2025b-h78e105d_0.conda",
            "https://h/c/linux-64/tzdata.txt",
        ] {
            let e = package_url(bad, Some(7)).unwrap_err();
            assert_eq!(e.line, Some(7), "{e}");
        }
    }

    #[test]
    fn platform_overrides_pick_a_subset_of_the_locked_ones() {
        let platform = |platform| PartialPlatform {
            platform,
            packages: Vec::new(),
        };
        let mut partial = PartialLock {
            path: "conda-lock.yml".into(),
            channels: Vec::new(),
            platforms: vec![platform(Subdir::Linux64), platform(Subdir::OsxArm64)],
        };
        let e = partial.select_platforms(&[Subdir::Win64]).unwrap_err();
        assert_eq!(e.exit_code(), 2, "{e}");
        assert!(e.to_string().contains("win-64"), "{e}");
        partial.select_platforms(&[]).unwrap();
        assert_eq!(partial.platforms.len(), 2);
        partial.select_platforms(&[Subdir::OsxArm64]).unwrap();
        assert_eq!(partial.platforms, [platform(Subdir::OsxArm64)]);
    }

    #[test]
    fn checksums_are_exact_hex() {
        assert!(md5_hex("d7c89558ba9fa0495403155b64376d81").is_some());
        assert!(md5_hex("d7c89558ba9fa0495403155b64376d8").is_none());
        assert!(md5_hex("z7c89558ba9fa0495403155b64376d81").is_none());
        assert!(sha256_hex(&"ab".repeat(32)).is_some());
        assert!(sha256_hex(&"ab".repeat(31)).is_none());
    }
}
