//! Why a repository could not be used, each with its own class of failure.

use super::Class;

/// Why a repository could not be read or built.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// What was given is not a repository address.
    #[error("'{input}' is not a repository address: {reason}")]
    Address {
        /// What was given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The address, a submodule, a limit or the content is refused by policy.
    #[error("repository {url} is refused: {reason}")]
    Refused {
        /// The repository (without credentials).
        url: String,
        /// Which rule refused it.
        reason: String,
    },
    /// The repository or the ref does not exist.
    #[error("repository {url}: {what} does not exist{hint}")]
    NotFound {
        /// The repository (without credentials).
        url: String,
        /// The repository itself, or the ref.
        what: String,
        /// What exists instead (`; it has: …`), or nothing.
        hint: String,
    },
    /// The repository could not be reached or read.
    #[error("cannot fetch repository {url}")]
    Unreachable {
        /// The repository (without credentials).
        url: String,
        /// git's error (its URL never holds a password: see `RepoAddress`).
        #[source]
        source: git2::Error,
    },
    /// The repository's configuration files are not something trousse builds.
    #[error("repository {url} at {commit}: {message}")]
    Config {
        /// The repository (without credentials).
        url: String,
        /// The commit read.
        commit: String,
        /// What is wrong, and what to do instead.
        message: String,
    },
    /// The local mirror could not be written.
    #[error("git mirror {}: {message}", path.display())]
    Mirror {
        /// The mirror directory.
        path: std::path::PathBuf,
        /// What failed.
        message: String,
    },
}

impl RepoError {
    /// What kind of failure this is.
    pub fn class(&self) -> Class {
        match self {
            RepoError::Address { .. } => Class::Usage,
            RepoError::Config { .. } => Class::Unbuildable,
            RepoError::Unreachable { .. } => Class::Unreachable,
            RepoError::NotFound { .. } => Class::NoRepository,
            RepoError::Refused { .. } => Class::Refused,
            RepoError::Mirror { .. } => Class::Internal,
        }
    }

    /// A short name of the kind, for JSON errors.
    pub fn kind(&self) -> &'static str {
        match self {
            RepoError::Address { .. } => "repository_address",
            RepoError::Refused { .. } => "repository_refused",
            RepoError::NotFound { .. } => "repository_not_found",
            RepoError::Unreachable { .. } => "repository_unreachable",
            RepoError::Config { .. } => "repository_config",
            RepoError::Mirror { .. } => "repository_mirror",
        }
    }
}
