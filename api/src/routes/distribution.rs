//! `/v2/`: the read half of the OCI distribution API, for the images the
//! service built, served from its content-addressed store and verified
//! against their digests.

use std::{
    collections::HashSet,
    os::unix::fs::MetadataExt,
    sync::{Arc, Mutex},
};

use axum::{
    body::Body,
    extract::{Path as UrlPath, State},
    http::{header, HeaderMap, HeaderValue, Method, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use trousse_registry_client::Digest;

use crate::{error::ApiError, AppState};

const API_VERSION: (&str, &str) = ("docker-distribution-api-version", "registry/2.0");

/// Blobs whose bytes were checked against their digest, by (digest, inode, size, mtime).
#[derive(Default)]
pub struct VerifiedBlobs(Mutex<HashSet<(String, u64, u64, i64)>>);

/// An error in the distribution API's own format.
struct DistributionError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl DistributionError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
}

impl From<ApiError> for DistributionError {
    fn from(e: ApiError) -> Self {
        let (status, _) = e.status_and_code();
        let code = match status {
            StatusCode::UNAUTHORIZED => "UNAUTHORIZED",
            StatusCode::FORBIDDEN => "DENIED",
            _ => "UNKNOWN",
        };
        Self::new(status, code, e.to_string())
    }
}

impl IntoResponse for DistributionError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            [API_VERSION],
            Json(json!({"errors": [{"code": self.code, "message": self.message}]})),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"trousse\""),
            );
        }
        response
    }
}

/// Check the API version (and the token, when pulls need one).
#[utoipa::path(
    get,
    path = "/v2/",
    responses((status = 200, description = "The OCI distribution API is here"), (status = 401, description = "Pulls need a token")),
    tag = "pull"
)]
pub(crate) async fn version(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    match authorize(&state, &headers, None).await {
        Ok(()) => (StatusCode::OK, [API_VERSION], Json(json!({}))).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Fetch an image manifest or index by tag or digest.
#[utoipa::path(
    get,
    path = "/v2/{course}/{environment}/manifests/{reference}",
    params(
        ("course" = String, Path, description = "The course"),
        ("environment" = String, Path, description = "The environment's name"),
        ("reference" = String, Path, description = "A tag (`latest`) or a digest")
    ),
    responses((status = 200, description = "The manifest, with Docker-Content-Digest"), (status = 404, description = "Unknown manifest")),
    tag = "pull"
)]
#[allow(dead_code)] // only its OpenAPI description is used: the dispatcher answers
pub(crate) async fn manifest_doc() {}

/// Fetch a blob (layer or config) by digest; HEAD and Range requests are answered.
#[utoipa::path(
    get,
    path = "/v2/{course}/{environment}/blobs/{digest}",
    params(
        ("course" = String, Path, description = "The course"),
        ("environment" = String, Path, description = "The environment's name"),
        ("digest" = String, Path, description = "The blob's digest")
    ),
    responses((status = 200, description = "The blob"), (status = 206, description = "A range of the blob"), (status = 404, description = "Unknown blob")),
    tag = "pull"
)]
#[allow(dead_code)] // only its OpenAPI description is used: the dispatcher answers
pub(crate) async fn blob_doc() {}

/// List the tags of a repository.
#[utoipa::path(
    get,
    path = "/v2/{course}/{environment}/tags/list",
    params(
        ("course" = String, Path, description = "The course"),
        ("environment" = String, Path, description = "The environment's name")
    ),
    responses((status = 200, description = "`{name, tags}`"), (status = 404, description = "Unknown repository")),
    tag = "pull"
)]
#[allow(dead_code)] // only its OpenAPI description is used: the dispatcher answers
pub(crate) async fn tags_doc() {}

async fn tags(
    state: &AppState,
    repository: &str,
    headers: &HeaderMap,
) -> Result<Response, DistributionError> {
    authorize(state, headers, Some(repository)).await?;
    if !state.store.repository_exists(repository).await? {
        return Err(DistributionError::new(
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
            format!("no repository {repository}"),
        ));
    }
    let tags = state.store.tags(repository).await?;
    Ok((
        StatusCode::OK,
        [API_VERSION],
        Json(json!({"name": repository, "tags": tags})),
    )
        .into_response())
}

/// Answers `/v2/NAME/manifests/REF`, `/v2/NAME/blobs/DIGEST` and `/v2/NAME/tags/list` (NAME has slashes).
pub(crate) async fn dispatch(
    State(state): State<Arc<AppState>>,
    method: Method,
    UrlPath(path): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    let result = if let Some((name, reference)) = path.rsplit_once("/manifests/") {
        manifest(&state, &method, name, reference, &headers).await
    } else if let Some((name, digest)) = path.rsplit_once("/blobs/") {
        blob(&state, &method, name, digest, &headers).await
    } else if let Some(name) = path.strip_suffix("/tags/list") {
        tags(&state, name, &headers).await
    } else {
        Err(DistributionError::new(
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
            format!("no such endpoint: /v2/{path}"),
        ))
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

/// Checks the caller may pull from `repository` (`COURSE/NAME`): its token
/// when pulls need one, and an exam only while it is open for the caller.
/// A sealed exam's repository is unknown to the caller, blobs included (a
/// layer it shares with a course image stays pullable from that image).
async fn authorize(
    state: &AppState,
    headers: &HeaderMap,
    repository: Option<&str>,
) -> Result<(), DistributionError> {
    let caller = if state.config.require_pull_token {
        Some(state.authenticate(headers).await?)
    } else if headers.contains_key(header::AUTHORIZATION) {
        // pulls are open: a token only adds rights (a hub pre-pulling an exam)
        state.authenticate(headers).await.ok()
    } else {
        None
    };
    let Some((course, name)) = repository.and_then(|r| r.split_once('/')) else {
        return Ok(());
    };
    if let (true, Some(caller)) = (state.config.require_pull_token, &caller) {
        caller.require_read(course)?;
    }
    if state
        .sealed_exam(caller.as_ref(), course, name)
        .await?
        .is_some()
    {
        return Err(DistributionError::new(
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
            format!("no repository {course}/{name}"),
        ));
    }
    Ok(())
}

fn parse_digest(text: &str) -> Result<Digest, DistributionError> {
    text.parse().map_err(|_| {
        DistributionError::new(
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
            format!("invalid digest {text}"),
        )
    })
}

async fn manifest(
    state: &AppState,
    method: &Method,
    repository: &str,
    reference: &str,
    headers: &HeaderMap,
) -> Result<Response, DistributionError> {
    authorize(state, headers, Some(repository)).await?;
    let unknown = || {
        DistributionError::new(
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
            format!("{repository} has no manifest {reference}"),
        )
    };
    let digest = if reference.starts_with("sha256:") {
        reference.to_string()
    } else {
        state
            .store
            .tag(repository, reference)
            .await?
            .ok_or_else(unknown)?
    };
    let media_type = state
        .store
        .repository_blob(repository, &digest)
        .await?
        .ok_or_else(unknown)?;
    let (bytes, digest) = read_manifest(state, &digest).await?;
    let content_type = media_type
        .or_else(|| {
            serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()?
                .get("mediaType")?
                .as_str()
                .map(str::to_string)
        })
        .unwrap_or_else(|| "application/vnd.oci.image.manifest.v1+json".into());
    state.metrics.bytes_served.inc_by(bytes.len() as u64);
    Ok(manifest_response(method, content_type, bytes, &digest))
}

/// A manifest's answer: its bytes (none for HEAD) and the registry headers.
fn manifest_response(
    method: &Method,
    content_type: String,
    bytes: Vec<u8>,
    digest: &Digest,
) -> Response {
    let length = bytes.len();
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        Body::from(bytes)
    };
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_LENGTH, length.to_string()),
            (
                header::HeaderName::from_static("docker-content-digest"),
                digest.to_string(),
            ),
            (header::ETAG, format!("\"{digest}\"")),
            (
                header::HeaderName::from_static(API_VERSION.0),
                API_VERSION.1.into(),
            ),
        ],
        body,
    )
        .into_response()
}

/// A stored manifest's bytes, checked against its digest.
async fn read_manifest(
    state: &AppState,
    digest: &str,
) -> Result<(Vec<u8>, Digest), DistributionError> {
    let digest = parse_digest(digest)?;
    let store = state.config.image_store();
    tokio::task::spawn_blocking(move || store.read_verified(&digest).map(|b| (b, digest)))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| {
            DistributionError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "UNKNOWN",
                format!("stored manifest is damaged: {e}"),
            )
        })
}

/// Checks a stored blob against its digest once per version of the file.
async fn verify(state: &AppState, digest: &Digest) -> Result<u64, DistributionError> {
    let path = state.config.image_store().path(digest);
    let meta = tokio::fs::metadata(&path).await.map_err(|_| {
        DistributionError::new(
            StatusCode::NOT_FOUND,
            "BLOB_UNKNOWN",
            format!("blob {digest} is not stored"),
        )
    })?;
    let key = (digest.to_string(), meta.ino(), meta.len(), meta.mtime());
    let known = state
        .verified
        .0
        .lock()
        .map(|v| v.contains(&key))
        .unwrap_or(false);
    if !known {
        let expected = digest.clone();
        let actual = tokio::task::spawn_blocking(move || {
            std::fs::File::open(&path).and_then(|f| Digest::of_reader(std::io::BufReader::new(f)))
        })
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::Internal(format!("reading blob {expected}: {e}")))?
        .0;
        if &actual != digest {
            return Err(DistributionError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "UNKNOWN",
                format!("stored blob {digest} is damaged (its content hashes to {actual})"),
            ));
        }
        if let Ok(mut v) = state.verified.0.lock() {
            v.insert(key);
        }
    }
    Ok(meta.len())
}

/// Parses `bytes=START-END` (END optional) against a blob's size.
fn parse_range(value: &str, size: u64) -> Option<(u64, u64)> {
    let (start, end) = value.strip_prefix("bytes=")?.split_once('-')?;
    if start.is_empty() {
        let suffix: u64 = end.parse().ok()?;
        return (suffix > 0 && size > 0).then(|| (size.saturating_sub(suffix), size - 1));
    }
    let start: u64 = start.parse().ok()?;
    let end = if end.is_empty() {
        size.checked_sub(1)?
    } else {
        end.parse::<u64>().ok()?.min(size.checked_sub(1)?)
    };
    (start <= end).then_some((start, end))
}

/// The status and the byte range a `Range` header asks for (the whole blob without one).
fn requested_range(
    headers: &HeaderMap,
    size: u64,
) -> Result<(StatusCode, u64, u64), DistributionError> {
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(value) => Some(parse_range(value, size).ok_or_else(|| {
            DistributionError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "BLOB_UNKNOWN",
                format!("range {value} is not within the blob's {size} bytes"),
            )
        })?),
        None => None,
    };
    Ok(match range {
        Some((start, end)) => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        None => (StatusCode::OK, 0, size),
    })
}

/// The headers of a blob answer.
fn blob_headers(
    digest: &Digest,
    status: StatusCode,
    start: u64,
    length: u64,
    size: u64,
) -> Vec<(header::HeaderName, String)> {
    let mut headers = vec![
        (header::CONTENT_TYPE, "application/octet-stream".to_string()),
        (header::CONTENT_LENGTH, length.to_string()),
        (header::ACCEPT_RANGES, "bytes".to_string()),
        (
            header::HeaderName::from_static("docker-content-digest"),
            digest.to_string(),
        ),
        (header::ETAG, format!("\"{digest}\"")),
        (
            header::CACHE_CONTROL,
            "max-age=31536000, immutable".to_string(),
        ),
    ];
    if status == StatusCode::PARTIAL_CONTENT {
        headers.push((
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{size}", start + length - 1),
        ));
    }
    headers
}

/// The blob's bytes from `start`, streamed from the image store.
async fn blob_body(
    state: &AppState,
    digest: &Digest,
    start: u64,
    length: u64,
) -> Result<Body, DistributionError> {
    let path = state.config.image_store().path(digest);
    let mut file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| ApiError::Internal(format!("opening blob {digest}: {e}")))?;
    file.seek(std::io::SeekFrom::Start(start))
        .await
        .map_err(|e| ApiError::Internal(format!("reading blob {digest}: {e}")))?;
    state.metrics.bytes_served.inc_by(length);
    Ok(Body::from_stream(
        tokio_util::io::ReaderStream::with_capacity(file.take(length), 256 * 1024),
    ))
}

async fn blob(
    state: &AppState,
    method: &Method,
    repository: &str,
    digest_text: &str,
    headers: &HeaderMap,
) -> Result<Response, DistributionError> {
    authorize(state, headers, Some(repository)).await?;
    let digest = parse_digest(digest_text)?;
    if state
        .store
        .repository_blob(repository, digest_text)
        .await?
        .is_none()
    {
        return Err(DistributionError::new(
            StatusCode::NOT_FOUND,
            "BLOB_UNKNOWN",
            format!("{repository} has no blob {digest_text}"),
        ));
    }
    let size = verify(state, &digest).await?;
    let (status, start, length) = requested_range(headers, size)?;
    let response_headers = blob_headers(&digest, status, start, length, size);
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        blob_body(state, &digest, start, length).await?
    };
    let mut response = (status, body).into_response();
    for (name, value) in response_headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, value);
        }
    }
    response.headers_mut().insert(
        header::HeaderName::from_static(API_VERSION.0),
        HeaderValue::from_static(API_VERSION.1),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Some((0, 9)));
        assert_eq!(parse_range("bytes=90-", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=90-200", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=-10", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=100-", 100), None);
        assert_eq!(parse_range("bytes=5-1", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
    }
}
