//! Why a PyPI requirement could not be resolved, fetched or installed.

use std::path::PathBuf;

use super::Class;

/// A problem with PyPI packages: an index, a requirement, or a wheel.
#[derive(Debug, thiserror::Error)]
pub enum PypiError {
    /// A requirements file or a `pip:` entry is invalid.
    #[error("{}{}: {message}", file.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Requirement {
        /// The file (a requirements file or the environment.yml).
        file: PathBuf,
        /// The 1-based line, when known.
        line: Option<usize>,
        /// What is wrong and what to do.
        message: String,
    },
    /// A requirement trousse does not install (an sdist, a VCS or local path).
    #[error("{package}: {message}")]
    Unsupported {
        /// The package (and version, when known).
        package: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// No index has the package.
    #[error("no PyPI package named '{package}' in {indexes}{hint}")]
    NotFound {
        /// The package name as requested.
        package: String,
        /// The indexes searched (credentials removed).
        indexes: String,
        /// A note, e.g. the files the indexes do have.
        hint: String,
    },
    /// The requirements cannot be satisfied together (the resolver's explanation).
    #[error("the PyPI requirements cannot be resolved for {platform}:\n{explanation}")]
    Unsolvable {
        /// The conda platform.
        platform: String,
        /// The resolver's explanation.
        explanation: String,
    },
    /// An index or a file on it could not be read (credentials removed from `url`).
    #[error("cannot read {url}: {message}")]
    Unreachable {
        /// What was read.
        url: String,
        /// Why.
        message: String,
    },
    /// A request names an index the service does not allow.
    #[error("index {url} is not allowed here (allowed: {allowed})")]
    IndexRefused {
        /// The index (credentials removed).
        url: String,
        /// The allowed indexes.
        allowed: String,
    },
    /// The resolution was stopped by its time limit or cancelled (the caller maps it).
    #[error("the PyPI resolution was stopped")]
    Stopped,
    /// An allowed index links (or redirects) to a place the service does not allow.
    #[error("{url}, linked from an allowed index, is not allowed here: {reason}")]
    LinkRefused {
        /// The link (credentials removed).
        url: String,
        /// Which rule refused it.
        reason: String,
    },
    /// A downloaded file does not match its expected sha256.
    #[error("{file} does not match its sha256: expected {expected}, got {actual}")]
    HashMismatch {
        /// The file name.
        file: String,
        /// The expected hash.
        expected: String,
        /// The hash of what was received.
        actual: String,
    },
    /// No wheel of a package has one of the `--hash` values given for it.
    #[error("no wheel of {package} for the target has a --hash given for it: expected {expected}; the index offers {found}; check the hashes, or the version and platform they were taken for")]
    HashNotGiven {
        /// The package.
        package: String,
        /// The hashes given.
        expected: String,
        /// The hashes of the wheels the index offers for the target.
        found: String,
    },
    /// A wheel is malformed or unsafe (a path outside its target, a bad RECORD).
    #[error("wheel {wheel} is refused: {problem}; the wheel is broken or malicious, remove it from the requirements")]
    BadWheel {
        /// The wheel file name.
        wheel: String,
        /// What is wrong.
        problem: String,
    },
    /// A filesystem operation failed.
    #[error("{action} {}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl PypiError {
    /// What kind of failure this is.
    pub fn class(&self) -> Class {
        match self {
            PypiError::Requirement { .. } => Class::Malformed,
            PypiError::Unsupported { .. } => Class::Unbuildable,
            PypiError::NotFound { .. } | PypiError::Unsolvable { .. } => Class::Unsatisfiable,
            PypiError::Unreachable { .. } => Class::Unreachable,
            PypiError::HashMismatch { .. } => Class::Integrity,
            PypiError::HashNotGiven { .. } => Class::Unverifiable,
            PypiError::BadWheel { .. } => Class::Unsafe,
            PypiError::IndexRefused { .. } | PypiError::LinkRefused { .. } => Class::Forbidden,
            PypiError::Stopped => Class::TimeLimit,
            PypiError::Io { .. } => Class::Internal,
        }
    }

    /// A stable word for JSON reports.
    pub fn kind(&self) -> &'static str {
        match self {
            PypiError::Requirement { .. } => "invalid_requirement",
            PypiError::Unsupported { .. } => "unsupported_requirement",
            PypiError::NotFound { .. } => "package_not_found",
            PypiError::Unsolvable { .. } => "unsolvable",
            PypiError::Unreachable { .. } => "index_unavailable",
            PypiError::IndexRefused { .. } | PypiError::LinkRefused { .. } => "index_refused",
            PypiError::Stopped => "time_limit",
            PypiError::HashMismatch { .. } | PypiError::HashNotGiven { .. } => "checksum_mismatch",
            PypiError::BadWheel { .. } => "unsafe_package",
            PypiError::Io { .. } => "io",
        }
    }

    /// Wraps an I/O error with what was being done and where.
    pub fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| PypiError::Io {
            action,
            path,
            source,
        }
    }
}
