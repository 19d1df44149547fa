//! Errors the service answers with: a status and a JSON body that names the problem.

use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde::Serialize;
use trousse_builder::{error::clip, source::spec::SpecError, BuildError};

/// The JSON body of every error answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorBody {
    /// A stable code, e.g. `invalid_spec`, `package_not_found`, `forbidden`.
    pub error: String,
    /// What is wrong, for a person.
    pub message: String,
    /// The offending field of the request or spec, when one value is invalid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// The longest message an error answer carries (inputs echoed in it are cut first).
const MAX_MESSAGE_CHARS: usize = 8000;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed (400).
    #[error("{message}")]
    BadRequest {
        /// The stable code.
        code: &'static str,
        /// What is wrong.
        message: String,
    },
    /// No valid token was given (401).
    #[error("{0}")]
    Unauthorized(String),
    /// The token's role does not allow this (403).
    #[error("{0}")]
    Forbidden(String),
    /// Nothing by that name (404).
    #[error("{0}")]
    NotFound(String),
    /// The body or spec exceeds a limit (413).
    #[error("{0}")]
    TooLarge(String),
    /// The request is well-formed but cannot be built (422).
    #[error("{message}")]
    Unprocessable {
        /// The stable code.
        code: &'static str,
        /// What is wrong.
        message: String,
    },
    /// One value of a well-formed request or spec is invalid (422, with the field).
    #[error("{message}")]
    InvalidField {
        /// The field, e.g. `dependencies[2]`.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The body's content type is not one the route reads (415).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// A course's quota would be exceeded (403, `quota_exceeded`).
    #[error("{0}")]
    Quota(String),
    /// The state conflicts with the request (409), e.g. a data directory in use.
    #[error("{0}")]
    Conflict(String),
    /// Too many requests of a kind at once; try again later (429).
    #[error("{0}")]
    Busy(String),
    /// The data directory's disk is full (507).
    #[error("{0}")]
    InsufficientStorage(String),
    /// The database cannot be reached now; nothing was changed (503).
    #[error("{0}")]
    Unavailable(String),
    /// A channel or registry the service depends on failed (502).
    #[error("{0}")]
    Upstream(String),
    /// Something failed inside the service (500).
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// A 400 with this code.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            code,
            message: message.into(),
        }
    }

    /// The HTTP status and the stable code.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, code),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            ApiError::Unprocessable { code, .. } => (StatusCode::UNPROCESSABLE_ENTITY, code),
            ApiError::InvalidField { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_field"),
            ApiError::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::InsufficientStorage(_) => {
                (StatusCode::INSUFFICIENT_STORAGE, "insufficient_storage")
            }
            ApiError::Upstream(_) => (StatusCode::BAD_GATEWAY, "upstream_failed"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable"),
            ApiError::Busy(_) => (StatusCode::TOO_MANY_REQUESTS, "busy"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::Quota(_) => (StatusCode::FORBIDDEN, "quota_exceeded"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl From<BuildError> for ApiError {
    /// The answer to a build error, from its class (`Class::http_status`):
    /// 400 and 422 carry the error's kind as their code, 403 `forbidden`,
    /// 502 `upstream_failed`, 500 `internal`. Two exceptions: a spec's
    /// invalid value names its field (422 `invalid_field`), and a full disk
    /// is 507 whatever was being written.
    fn from(e: BuildError) -> Self {
        let message = trousse_builder::error::error_chain(&e);
        if is_disk_full_build(&e) {
            return ApiError::InsufficientStorage(format!("the service's disk is full: {message}"));
        }
        if let BuildError::Spec(SpecError {
            field: Some(field), ..
        }) = e
        {
            return ApiError::InvalidField { field, message };
        }
        let code = e.kind();
        match e.class().http_status() {
            400 => ApiError::BadRequest { code, message },
            403 => ApiError::Forbidden(message),
            422 => ApiError::Unprocessable { code, message },
            502 => ApiError::Upstream(message),
            _ => ApiError::Internal(message),
        }
    }
}

/// SQLite's result code for a full disk or database.
const SQLITE_FULL: &str = "13";

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        let full = match &e {
            sqlx::Error::Database(d) => d.code().is_some_and(|c| c == SQLITE_FULL),
            sqlx::Error::Io(io) => is_disk_full(io),
            _ => false,
        };
        if full {
            ApiError::InsufficientStorage(
                "the service's disk is full: nothing was changed; free space in its data directory"
                    .into(),
            )
        } else if store_unreachable(&e) {
            ApiError::Unavailable(format!(
                "the database cannot be reached ({e}): nothing was changed; try again shortly"
            ))
        } else {
            ApiError::Internal(format!("the store failed: {e}"))
        }
    }
}

/// Whether a store error means the database is down or unreachable (not a
/// fault of the request or of the data): PostgreSQL's connection errors
/// (class 08), shutdowns (57P01–57P03), too many connections (53300).
fn store_unreachable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(d) => d.code().is_some_and(|c| {
            c.starts_with("08") || matches!(c.as_ref(), "57P01" | "57P02" | "57P03" | "53300")
        }),
        _ => false,
    }
}

/// Whether an I/O error says the disk (or the quota) is full.
pub(crate) fn is_disk_full(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::StorageFull || matches!(e.raw_os_error(), Some(28) | Some(122))
    // ENOSPC, EDQUOT
}

fn is_disk_full_build(e: &BuildError) -> bool {
    match e {
        BuildError::Io { source, .. } => is_disk_full(source),
        _ => false,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if status.is_server_error() {
            tracing::error!(%status, code, "{self}");
        } else {
            tracing::info!(%status, code, "{self}");
        }
        let field = match &self {
            ApiError::InvalidField { field, .. } => Some(field.clone()),
            _ => None,
        };
        let mut response = (
            status,
            Json(ErrorBody {
                error: code.to_string(),
                message: clip(&self.to_string(), MAX_MESSAGE_CHARS).into_owned(),
                field,
            }),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"trousse\""),
            );
        }
        if status == StatusCode::TOO_MANY_REQUESTS {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }
}

/// Every error answer has a JSON body: what axum's extractors and layers
/// answer in plain text (a malformed JSON body, a body over the limit, a bad
/// path or query) is wrapped into an [`ErrorBody`] with a code from its status.
pub(crate) async fn json_errors(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.contains("json") || t.starts_with("text/html"));
    // JSON errors, and the page's HTML error pages, pass as they are
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 << 10)
        .await
        .unwrap_or_default();
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::NOT_FOUND => "not_found",
        s if s.is_server_error() => "internal",
        _ => "invalid_request",
    };
    let message = match String::from_utf8_lossy(&text).trim() {
        "" => status
            .canonical_reason()
            .unwrap_or("the request failed")
            .to_string(),
        text => clip(text, MAX_MESSAGE_CHARS).into_owned(),
    };
    let mut answer = (
        status,
        Json(ErrorBody {
            error: code.to_string(),
            message,
            field: None,
        }),
    )
        .into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            answer.headers_mut().insert(name.clone(), value.clone());
        }
    }
    answer
}

/// The text of a panic payload.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

#[cfg(test)]
mod tests {
    //! The public face of every failure: the CLI's exit code and `--json`
    //! kind, the service's status and JSON `error` code. Users, the hub
    //! package and BinderHub streams depend on them; docs/errors.md holds
    //! the table, and this test holds the code to it.

    use std::path::PathBuf;

    use trousse_builder::{
        pypi::PypiError, source::repo::RepoError, source::spec::SpecError, ArchiveError,
        BuildError, UnsafePackage,
    };
    use trousse_registry_client::RegistryError;

    use super::ApiError;

    fn s(text: &str) -> String {
        text.to_string()
    }

    fn io() -> std::io::Error {
        std::io::Error::other("test")
    }

    fn spec(field: Option<&str>) -> SpecError {
        SpecError {
            file: PathBuf::from("environment.yml"),
            line: Some(1),
            field: field.map(s),
            message: s("bad"),
        }
    }

    fn archive_errors() -> Vec<(&'static str, ArchiveError)> {
        vec![
            (
                "Archive(Checksum)",
                ArchiveError::Checksum {
                    package: s("p"),
                    url: s("u"),
                    file: PathBuf::from("f"),
                    line: None,
                    algorithm: "sha256",
                    expected: s("a"),
                    actual: s("b"),
                },
            ),
            (
                "Archive(Download)",
                ArchiveError::Download {
                    package: s("p"),
                    url: s("u"),
                    reason: s("r"),
                },
            ),
            (
                "Archive(Invalid)",
                ArchiveError::Invalid {
                    package: s("p"),
                    url: s("u"),
                    problem: s("r"),
                },
            ),
        ]
    }

    fn repo_errors() -> Vec<(&'static str, RepoError)> {
        let (url, reason) = (s("u"), s("r"));
        vec![
            (
                "Repository(Address)",
                RepoError::Address {
                    input: s("i"),
                    reason: reason.clone(),
                },
            ),
            (
                "Repository(Refused)",
                RepoError::Refused {
                    url: url.clone(),
                    reason,
                },
            ),
            (
                "Repository(NotFound)",
                RepoError::NotFound {
                    url: url.clone(),
                    what: s("w"),
                    hint: s(""),
                },
            ),
            (
                "Repository(Unreachable)",
                RepoError::Unreachable {
                    url: url.clone(),
                    source: git2::Error::from_str("x"),
                },
            ),
            (
                "Repository(Config)",
                RepoError::Config {
                    url,
                    commit: s("c"),
                    message: s("m"),
                },
            ),
            (
                "Repository(Mirror)",
                RepoError::Mirror {
                    path: PathBuf::from("m"),
                    message: s("m"),
                },
            ),
        ]
    }

    fn pypi_errors() -> Vec<(&'static str, PypiError)> {
        let (p, u, m) = (s("p"), s("u"), s("m"));
        vec![
            (
                "Pypi(Requirement)",
                PypiError::Requirement {
                    file: PathBuf::from("r.txt"),
                    line: None,
                    message: m.clone(),
                },
            ),
            (
                "Pypi(Unsupported)",
                PypiError::Unsupported {
                    package: p.clone(),
                    message: m.clone(),
                },
            ),
            (
                "Pypi(NotFound)",
                PypiError::NotFound {
                    package: p.clone(),
                    indexes: u.clone(),
                    hint: s(""),
                },
            ),
            (
                "Pypi(Unsolvable)",
                PypiError::Unsolvable {
                    platform: s("linux-64"),
                    explanation: m.clone(),
                },
            ),
            (
                "Pypi(Unreachable)",
                PypiError::Unreachable {
                    url: u.clone(),
                    message: m.clone(),
                },
            ),
            (
                "Pypi(IndexRefused)",
                PypiError::IndexRefused {
                    url: u.clone(),
                    allowed: u.clone(),
                },
            ),
            ("Pypi(Stopped)", PypiError::Stopped),
            (
                "Pypi(LinkRefused)",
                PypiError::LinkRefused {
                    url: u.clone(),
                    reason: m.clone(),
                },
            ),
            (
                "Pypi(HashMismatch)",
                PypiError::HashMismatch {
                    file: p.clone(),
                    expected: u.clone(),
                    actual: m.clone(),
                },
            ),
            (
                "Pypi(HashNotGiven)",
                PypiError::HashNotGiven {
                    package: p.clone(),
                    expected: u.clone(),
                    found: m.clone(),
                },
            ),
            (
                "Pypi(BadWheel)",
                PypiError::BadWheel {
                    wheel: p,
                    problem: m,
                },
            ),
            (
                "Pypi(Io)",
                PypiError::Io {
                    action: "reading",
                    path: PathBuf::from("x"),
                    source: io(),
                },
            ),
        ]
    }

    /// One error of every variant, by name.
    fn every_error() -> Vec<(&'static str, BuildError)> {
        let package_cache = || Box::new(rattler_cache::package_cache::PackageCacheError::Cancelled);
        let registry = || RegistryError::InvalidDigest(s("x"));
        let mut all = vec![
            ("Spec", BuildError::Spec(spec(None))),
            (
                "Spec(field)",
                BuildError::Spec(spec(Some("dependencies[0]"))),
            ),
            (
                "TooLarge",
                BuildError::TooLarge {
                    what: s("w"),
                    bytes: 2,
                    limit: 1,
                },
            ),
            (
                "TimeLimit",
                BuildError::TimeLimit {
                    what: s("w"),
                    seconds: 1,
                },
            ),
            (
                "Credentials",
                BuildError::Credentials {
                    place: s("p"),
                    url: s("u"),
                },
            ),
            (
                "Lock",
                BuildError::Lock {
                    path: PathBuf::from("l"),
                    message: s("m"),
                },
            ),
            (
                "Channel",
                BuildError::Channel {
                    channel: s("c"),
                    source: Box::new(rattler_repodata_gateway::GatewayError::Generic(s("g"))),
                },
            ),
            (
                "PackageNotFound",
                BuildError::PackageNotFound {
                    names: vec![s("n")],
                    channels: vec![s("c")],
                    platform: s("linux-64"),
                    hint: s(""),
                },
            ),
            (
                "Unsolvable",
                BuildError::Unsolvable {
                    platform: s("linux-64"),
                    explanation: s("e"),
                },
            ),
            (
                "Fetch",
                BuildError::Fetch {
                    package: s("p"),
                    url: s("u"),
                    source: package_cache(),
                },
            ),
            (
                "Integrity",
                BuildError::Integrity {
                    package: s("p"),
                    url: s("u"),
                    source: package_cache(),
                },
            ),
            (
                "Stage",
                BuildError::Stage {
                    package: s("p"),
                    message: s("m"),
                    source: None,
                },
            ),
            (
                "UnsafePackage",
                BuildError::UnsafePackage {
                    package: s("p"),
                    problem: UnsafePackage {
                        path: s("x"),
                        reason: s("r"),
                    },
                },
            ),
            (
                "Io",
                BuildError::Io {
                    action: "reading",
                    path: PathBuf::from("x"),
                    source: io(),
                },
            ),
            (
                "Io(disk full)",
                BuildError::Io {
                    action: "writing",
                    path: PathBuf::from("x"),
                    source: std::io::Error::from_raw_os_error(28),
                },
            ),
            (
                "BaseUnavailable",
                BuildError::BaseUnavailable {
                    base: s("b"),
                    source: registry(),
                },
            ),
            ("Registry", BuildError::Registry(registry())),
            ("Usage", BuildError::Usage(s("u"))),
            ("Internal", BuildError::Internal(s("i"))),
            ("Unsupported", BuildError::Unsupported(s("u"))),
        ];
        all.extend(
            archive_errors()
                .into_iter()
                .map(|(n, e)| (n, BuildError::from(e))),
        );
        all.extend(
            repo_errors()
                .into_iter()
                .map(|(n, e)| (n, BuildError::from(e))),
        );
        all.extend(
            pypi_errors()
                .into_iter()
                .map(|(n, e)| (n, BuildError::from(e))),
        );
        all
    }

    /// The table of docs/errors.md, as the code answers it.
    fn table() -> String {
        let mut lines = vec![
            s("| error | exit code | `--json` kind | HTTP status | JSON `error` |"),
            s("|---|---|---|---|---|"),
        ];
        for (name, error) in every_error() {
            let (exit, kind) = (error.exit_code(), error.kind());
            let (status, code) = ApiError::from(error).status_and_code();
            lines.push(format!(
                "| {name} | {exit} | `{kind}` | {} | `{code}` |",
                status.as_u16()
            ));
        }
        lines.join("\n")
    }

    #[test]
    fn every_error_keeps_its_exit_code_kind_and_status() {
        let docs = include_str!("../../docs/errors.md");
        let begin = "<!-- table: begin -->\n";
        let start = docs
            .find(begin)
            .expect("docs/errors.md has the table's begin marker")
            + begin.len();
        let stop = start
            + docs[start..]
                .find("<!-- table: end -->")
                .expect("docs/errors.md has the table's end marker");
        let table = table();
        assert_eq!(
            docs[start..stop].trim_end(),
            table,
            "the public error table changed: if that is meant, put this table in docs/errors.md \
             and say so in the changelog:\n{table}"
        );
    }
}
