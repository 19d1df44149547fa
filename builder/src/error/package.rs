//! Why a package is refused: a path or file that could reach outside its prefix.

/// Why a package is refused.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct UnsafePackage {
    /// The offending path, as the package names it (cut when long).
    pub path: String,
    /// What is wrong with it.
    pub reason: String,
}
