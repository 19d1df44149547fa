//! Why an archive a conda-lock file or explicit list names cannot complete its record.

use std::path::PathBuf;

use super::{BuildError, Class};

/// Why an archive a partial lock names cannot complete its record.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The archive's checksum is not the one the lock gives.
    #[error("package {package} from {url} has {algorithm} {actual}, but {}{} gives {expected}: the list or the download is wrong; nothing was built", file.display(), line.map(|l| format!(" (line {l})")).unwrap_or_default())]
    Checksum {
        /// The archive's file name.
        package: String,
        /// Where it was downloaded from.
        url: String,
        /// The lock file.
        file: PathBuf,
        /// The lock's line for the package.
        line: Option<usize>,
        /// `md5` or `sha256`.
        algorithm: &'static str,
        /// What the lock gives, in hex.
        expected: String,
        /// What the archive has, in hex.
        actual: String,
    },
    /// The archive could not be downloaded or read.
    #[error("cannot download {package} from {url}: {reason}")]
    Download {
        /// The archive's file name.
        package: String,
        /// Where it was downloaded from.
        url: String,
        /// Why.
        reason: String,
    },
    /// The archive's `info/index.json` is unreadable or is another package's.
    #[error("package {package} from {url} is refused: {problem}")]
    Invalid {
        /// The archive's file name.
        package: String,
        /// Where it was downloaded from.
        url: String,
        /// What is wrong.
        problem: String,
    },
}

impl ArchiveError {
    /// What kind of failure this is: a checksum, a download, or an archive
    /// that is not what it says (unsafe, as a package that reaches outside its prefix).
    pub fn class(&self) -> Class {
        match self {
            ArchiveError::Checksum { .. } => Class::Integrity,
            ArchiveError::Download { .. } => Class::Unreachable,
            ArchiveError::Invalid { .. } => Class::Unsafe,
        }
    }

    /// The kind of error, as a stable word for JSON reports.
    pub fn kind(&self) -> &'static str {
        match self {
            ArchiveError::Checksum { .. } => "checksum_mismatch",
            ArchiveError::Download { .. } => "fetch_failed",
            ArchiveError::Invalid { .. } => "unsafe_package",
        }
    }
}

impl From<ArchiveError> for BuildError {
    fn from(e: ArchiveError) -> Self {
        BuildError::Archive(Box::new(e))
    }
}
