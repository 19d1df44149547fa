//! Errors of OCI storage and transport.

use std::path::PathBuf;

/// What went wrong while reading or writing OCI images.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A filesystem operation failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An image reference could not be parsed.
    #[error("invalid image reference '{reference}': {reason}")]
    InvalidReference {
        /// The reference as given.
        reference: String,
        /// Why it is invalid.
        reason: String,
    },
    /// A digest string is malformed.
    #[error("invalid digest '{0}': expected sha256:<64 hex digits>")]
    InvalidDigest(String),
    /// Content read back does not hash to its digest.
    #[error("blob {expected} is corrupt: its content hashes to {actual}")]
    DigestMismatch {
        /// The digest the content was stored under.
        expected: String,
        /// The digest of the content actually read.
        actual: String,
    },
    /// A blob that an image needs is missing from the store.
    #[error("blob {0} is missing from {1}")]
    MissingBlob(String, PathBuf),
    /// The image or tag does not exist at the location.
    #[error("no image tagged '{tag}' in {}", location.display())]
    TagNotFound {
        /// The tag that was looked for.
        tag: String,
        /// Where it was looked for.
        location: PathBuf,
    },
    /// A JSON document of the image is not valid.
    #[error("invalid {what} in {}: {source}", location.display())]
    InvalidJson {
        /// Which document.
        what: &'static str,
        /// Where it was read from.
        location: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// The registry refused the credentials (or their absence).
    #[error("{registry} answered 401 Unauthorized: check the credentials stored for it (docker login {registry})")]
    Unauthorized {
        /// The registry host.
        registry: String,
    },
    /// The registry failed a request.
    #[error("registry {registry}: {message}")]
    Registry {
        /// The registry host.
        registry: String,
        /// What went wrong.
        message: String,
    },
    /// The request cannot be met by this kind of target.
    #[error("{0}")]
    Unsupported(String),
}

impl RegistryError {
    /// Wraps an I/O error with what was being done and where.
    pub fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| RegistryError::Io {
            action,
            path,
            source,
        }
    }
}
