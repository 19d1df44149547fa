//! Why a repository could not be used, each with its own exit code.

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
    /// The process exit code: 3 unsupported content, 5 unreachable, 9 no
    /// such repository or ref, 10 refused by policy, 2 a bad address, 1 the mirror.
    pub fn exit_code(&self) -> i32 {
        match self {
            RepoError::Address { .. } => 2,
            RepoError::Config { .. } => 3,
            RepoError::Unreachable { .. } => 5,
            RepoError::NotFound { .. } => 9,
            RepoError::Refused { .. } => 10,
            RepoError::Mirror { .. } => 1,
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
