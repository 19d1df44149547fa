//! Every failure of the build pipeline: one error type per area, and the
//! one class of failure each says, from which the exit code and the HTTP
//! status are read.

pub mod archive;
pub mod package;
pub mod pypi;
pub mod repo;
pub mod spec;

use std::path::PathBuf;

pub use archive::ArchiveError;
pub use package::UnsafePackage;
pub use pypi::PypiError;
pub use repo::RepoError;
pub use spec::SpecError;

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The spec file is invalid.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// What was built is larger than allowed.
    #[error(
        "{what} hold {} ({bytes} bytes, compressed); at most {} are allowed: \
         drop packages the course does not need, or ask an administrator to raise the limit",
        bytesize::ByteSize(*bytes), bytesize::ByteSize(*limit)
    )]
    TooLarge {
        /// What is too large.
        what: String,
        /// Its size.
        bytes: u64,
        /// The limit.
        limit: u64,
    },
    /// Solving took longer than the request's limit, or its requester left.
    #[error(
        "{what} took longer than the limit of {seconds} s (or the request was abandoned); \
         pin versions of the packages to make the environment quicker to solve"
    )]
    TimeLimit {
        /// What was stopped.
        what: String,
        /// The limit.
        seconds: u64,
    },
    /// A submitted URL carries credentials, which are never taken from a request.
    #[error(
        "{place}: {url} carries credentials (user:password@); they are never stored nor \
         taken from a request: an operator configures them for that host (rattler's \
         authentication file, RATTLER_AUTH_FILE; netrc or TROUSSE_PYPI_USERNAME/_PASSWORD \
         for PyPI indexes; a course's git token for its repositories: PUT \
         /api/v1/courses/COURSE/git-token), and the URL is given without them"
    )]
    Credentials {
        /// Where (the file or request, and line).
        place: String,
        /// The URL, its credentials masked.
        url: String,
    },
    /// The lock file is invalid.
    #[error("invalid lock file {}: {message}", path.display())]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A channel could not be read.
    #[error("channel {channel} is not available")]
    Channel {
        /// The channel URLs.
        channel: String,
        /// Why.
        #[source]
        source: Box<rattler_repodata_gateway::GatewayError>,
    },
    /// Requested packages exist in none of the channels.
    #[error("no package named {} in channels {} for {platform}{hint}", names.join(", "), channels.join(", "))]
    PackageNotFound {
        /// The missing package names.
        names: Vec<String>,
        /// The channels searched.
        channels: Vec<String>,
        /// The platform solved for.
        platform: String,
        /// Close names the channels have (`; did you mean …?`), or nothing.
        hint: String,
    },
    /// The requested packages cannot be installed together.
    #[error("the spec cannot be solved for {platform}:\n{explanation}")]
    Unsolvable {
        /// The platform solved for.
        platform: String,
        /// The solver's explanation.
        explanation: String,
    },
    /// A package could not be downloaded or extracted.
    #[error("cannot fetch {package} from {url}")]
    Fetch {
        /// The package file name.
        package: String,
        /// Where it was fetched from.
        url: String,
        /// Why.
        #[source]
        source: Box<rattler_cache::package_cache::PackageCacheError>,
    },
    /// An archive named by a conda-lock file or an explicit list cannot
    /// complete its record (checksum, download, or not the package it says).
    #[error(transparent)]
    Archive(Box<ArchiveError>),
    /// A package's content does not match the checksum its record gives.
    #[error("package {package} from {url} does not match its sha256 in the lock")]
    Integrity {
        /// The package file name.
        package: String,
        /// Where it was fetched from.
        url: String,
        /// What rattler found.
        #[source]
        source: Box<rattler_cache::package_cache::PackageCacheError>,
    },
    /// A package could not be linked into its staging directory.
    #[error("cannot stage {package}: {message}")]
    Stage {
        /// The package file name.
        package: String,
        /// What was being done, or what is wrong.
        message: String,
        /// The underlying error, when there is one.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// A package holds a path or a file that could reach outside its prefix,
    /// or that differs from what its `paths.json` lists.
    #[error("package {package} is refused: {problem}; the package is broken or malicious, remove it from the environment")]
    UnsafePackage {
        /// The package file name.
        package: String,
        /// The offending path and what is wrong with it.
        problem: UnsafePackage,
    },
    /// A filesystem operation failed (its cause is the source).
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
    /// The base image could not be pulled or read.
    #[error("cannot pull the base image {base}; build on another base with --base scratch (or oci:DIR), or name a reachable mirror with --default-base or TROUSSE_DEFAULT_BASE")]
    BaseUnavailable {
        /// The base image.
        base: String,
        /// Why.
        #[source]
        source: trousse_registry_client::RegistryError,
    },
    /// Reading the base image or writing the output failed.
    #[error(transparent)]
    Registry(#[from] trousse_registry_client::RegistryError),
    /// A command-line value is invalid (exit 2, as for any bad command line).
    #[error("{0}")]
    Usage(String),
    /// A step of the build failed inside trousse (a task that died, metadata
    /// that cannot be written): a bug or the machine, not the input.
    #[error("{0}")]
    Internal(String),
    /// The request is well-formed but cannot be done.
    #[error("{0}")]
    Unsupported(String),
    /// A git repository could not be fetched, read or built.
    #[error(transparent)]
    Repository(#[from] RepoError),
    /// A PyPI requirement could not be resolved, fetched or installed.
    #[error(transparent)]
    Pypi(#[from] PypiError),
}

/// What kind of failure an error is. `BuildError` and the area errors it
/// wraps (`PypiError`, `RepoError`, `ArchiveError`) say their class (a
/// `SpecError` or an `UnsafePackage` by the variant that carries it); the
/// class gives the process exit code and the HTTP status, each in one table
/// ([`Class::exit_code`], [`Class::http_status`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// A bad command line or request parameter.
    Usage,
    /// Input that cannot be read as what it claims: a spec, a lock, a requirement.
    Malformed,
    /// Well-formed input that cannot be built as it is.
    Unbuildable,
    /// Nothing satisfies the request: an unknown package, an unsolvable set.
    Unsatisfiable,
    /// A channel, index, package, repository or base image cannot be reached.
    Unreachable,
    /// Content that does not match its checksum.
    Integrity,
    /// A checksum that is required and not given for what is offered.
    Unverifiable,
    /// The image cannot be read or written.
    ImageIo,
    /// A package or wheel that could reach outside its prefix, or is not what it says.
    Unsafe,
    /// No such repository or ref.
    NoRepository,
    /// A repository refused by the service's policy.
    Refused,
    /// An index or link the service's allow-list does not hold.
    Forbidden,
    /// A time limit was reached, or the requester left.
    TimeLimit,
    /// A failure inside trousse or its machine, not the input's.
    Internal,
}

impl Class {
    /// The process exit code: 2 bad command line, 3 bad input, 4 unsolvable,
    /// 5 unreachable, 6 integrity, 7 image I/O, 8 unsafe package, 9 no such
    /// repository or ref, 10 refused by policy, 11 a time limit, 1 otherwise.
    pub fn exit_code(self) -> i32 {
        match self {
            Class::Internal => 1,
            Class::Usage => 2,
            Class::Malformed | Class::Unbuildable => 3,
            Class::Unsatisfiable => 4,
            Class::Unreachable => 5,
            Class::Integrity | Class::Unverifiable => 6,
            Class::ImageIo => 7,
            Class::Unsafe => 8,
            Class::NoRepository => 9,
            Class::Refused | Class::Forbidden => 10,
            Class::TimeLimit => 11,
        }
    }

    /// The HTTP status the service answers with: 400 what cannot be read,
    /// 403 what the allow-lists refuse, 422 what cannot be built, 502 what
    /// could not be reached or read upstream, 500 a failure of the service.
    pub fn http_status(self) -> u16 {
        match self {
            Class::Usage | Class::Malformed => 400,
            Class::Forbidden => 403,
            Class::Unbuildable
            | Class::Unsatisfiable
            | Class::Unverifiable
            | Class::Unsafe
            | Class::NoRepository
            | Class::Refused
            | Class::TimeLimit => 422,
            Class::Unreachable | Class::Integrity | Class::ImageIo => 502,
            Class::Internal => 500,
        }
    }
}

impl BuildError {
    /// What kind of failure this is.
    pub fn class(&self) -> Class {
        match self {
            BuildError::Spec(_) | BuildError::Lock { .. } | BuildError::Unsupported(_) => {
                Class::Malformed
            }
            BuildError::Credentials { .. } | BuildError::TooLarge { .. } => Class::Unbuildable,
            BuildError::PackageNotFound { .. } | BuildError::Unsolvable { .. } => {
                Class::Unsatisfiable
            }
            BuildError::Usage(_) => Class::Usage,
            BuildError::TimeLimit { .. } => Class::TimeLimit,
            BuildError::Channel { .. }
            | BuildError::Fetch { .. }
            | BuildError::BaseUnavailable { .. } => Class::Unreachable,
            BuildError::Integrity { .. } => Class::Integrity,
            BuildError::Registry(_) => Class::ImageIo,
            BuildError::UnsafePackage { .. } => Class::Unsafe,
            BuildError::Stage { .. } | BuildError::Io { .. } | BuildError::Internal(_) => {
                Class::Internal
            }
            BuildError::Archive(e) => e.class(),
            BuildError::Repository(e) => e.class(),
            BuildError::Pypi(e) => e.class(),
        }
    }

    /// The process exit code (see [`Class::exit_code`]).
    pub fn exit_code(&self) -> i32 {
        self.class().exit_code()
    }

    /// The kind of error, as a stable word for JSON reports.
    pub fn kind(&self) -> &'static str {
        match self {
            BuildError::Spec(_) => "invalid_spec",
            BuildError::Lock { .. } => "invalid_lock",
            BuildError::Credentials { .. } => "credentials_in_url",
            BuildError::TimeLimit { .. } => "time_limit",
            BuildError::TooLarge { .. } => "image_too_large",
            BuildError::Channel { .. } => "channel_unavailable",
            BuildError::PackageNotFound { .. } => "package_not_found",
            BuildError::Unsolvable { .. } => "unsolvable",
            BuildError::Fetch { .. } => "fetch_failed",
            BuildError::Integrity { .. } => "checksum_mismatch",
            BuildError::Archive(e) => e.kind(),
            BuildError::Stage { .. } => "stage_failed",
            BuildError::UnsafePackage { .. } => "unsafe_package",
            BuildError::Io { .. } => "io",
            BuildError::BaseUnavailable { .. } => "base_unavailable",
            BuildError::Registry(_) => "image_io",
            BuildError::Usage(_) => "usage",
            BuildError::Internal(_) => "internal",
            BuildError::Unsupported(_) => "unsupported",
            BuildError::Repository(e) => e.kind(),
            BuildError::Pypi(e) => e.kind(),
        }
    }

    /// Wraps an I/O error with what was being done and where.
    pub fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| BuildError::Io {
            action,
            path,
            source,
        }
    }
}

/// Runs blocking work off the async threads: a task that dies (a panic) is
/// an internal error that names `what`.
pub(crate) async fn blocking<T: Send + 'static>(
    what: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, BuildError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| BuildError::Internal(format!("{what} task failed: {e}")))
}

/// An error and all its causes, joined into one line.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

/// `text` cut to at most `max` characters, with a note of how much was cut:
/// error messages never echo a long input back whole.
pub fn clip(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(max) {
        None => std::borrow::Cow::Borrowed(text),
        Some((end, _)) => std::borrow::Cow::Owned(format!(
            "{}… ({} characters)",
            &text[..end],
            text.chars().count()
        )),
    }
}
