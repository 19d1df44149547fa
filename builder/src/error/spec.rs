//! A problem in a spec file, located by file, line and field.

use std::path::PathBuf;

/// A problem in a spec file, located by file and line.
#[derive(Debug, thiserror::Error)]
#[error("{}{}: {message}", file.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct SpecError {
    /// The spec file.
    pub file: PathBuf,
    /// The 1-based line of the offending entry, when known.
    pub line: Option<usize>,
    /// The offending field (e.g. `dependencies[2]`), when a value is invalid
    /// in a well-formed spec.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}
