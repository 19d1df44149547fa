//! The disk cache's files: pages kept with their validators and max-age, atomic
//! writes, and downloads hashed then renamed into place.

use std::{
    io::{Read, Write},
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use reqwest::header;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use trousse_registry_client::{layout::write_atomically, RegistryError};
use url::Url;

use super::page::PageFile;
use crate::pypi::PypiError;

/// A page's files as cached, with what revalidates it.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct CachedPage {
    /// The page's URL (no credentials).
    pub(super) url: String,
    /// The `ETag` received.
    pub(super) etag: Option<String>,
    /// The `Last-Modified` received.
    pub(super) last_modified: Option<String>,
    /// When it was fetched or revalidated, in seconds since the epoch.
    pub(super) fetched: u64,
    /// `Cache-Control: max-age`, in seconds (0 without one).
    pub(super) max_age: u64,
    /// The files listed.
    pub(super) files: Vec<PageFile>,
}

impl CachedPage {
    /// Whether it may be used without asking the server.
    pub(super) fn is_fresh(&self, now: u64) -> bool {
        now >= self.fetched && now - self.fetched < self.max_age
    }

    /// Takes the validators and freshness of a response.
    pub(super) fn update(&mut self, headers: &header::HeaderMap) {
        let text = |name| {
            headers
                .get(name)
                .and_then(|v: &header::HeaderValue| v.to_str().ok())
        };
        if let Some(etag) = text(header::ETAG) {
            self.etag = Some(etag.to_string());
        }
        if let Some(modified) = text(header::LAST_MODIFIED) {
            self.last_modified = Some(modified.to_string());
        }
        self.max_age = text(header::CACHE_CONTROL).map_or(0, max_age);
        self.fetched = now();
    }
}

/// The `max-age` of a `Cache-Control` value; 0 with `no-cache`, `no-store` or none.
fn max_age(cache_control: &str) -> u64 {
    let mut age = 0;
    for directive in cache_control.split(',').map(str::trim) {
        let directive = directive.to_ascii_lowercase();
        if directive == "no-cache" || directive == "no-store" {
            return 0;
        }
        if let Some(value) = directive.strip_prefix("max-age=") {
            age = value.trim_matches('"').parse().unwrap_or(0);
        }
    }
    age
}

/// Seconds since the epoch.
pub(super) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The lowercase hex sha256 of a text (cache file names).
pub(super) fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// Writes a cache file atomically.
pub(super) fn write_cache(path: &Path, bytes: &[u8]) -> Result<(), PypiError> {
    write_atomically(path, bytes).map_err(|e| match e {
        RegistryError::Io {
            action,
            path,
            source,
        } => PypiError::Io {
            action,
            path,
            source,
        },
        other => PypiError::Io {
            action: "writing",
            path: path.to_path_buf(),
            source: std::io::Error::other(other.to_string()),
        },
    })
}

/// A cached page, if there is a readable one for `url`.
pub(super) fn read_cached_page(path: &Path, url: &Url) -> Option<CachedPage> {
    let bytes = std::fs::read(path).ok()?;
    let page: CachedPage = serde_json::from_slice(&bytes).ok()?;
    (page.url == url.as_str()).then_some(page)
}

/// A temporary file in `dir`, readable as any file the user writes, deleted unless persisted.
pub(super) fn temp_file_in(dir: &Path) -> Result<tempfile::NamedTempFile, PypiError> {
    tempfile::Builder::new()
        .prefix(".partial-")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
        .tempfile_in(dir)
        .map_err(PypiError::io("creating a temporary file in", dir))
}

/// Renames a downloaded file into place if its hash is the expected one (else it is deleted).
pub(super) fn persist_checked(
    tmp: tempfile::NamedTempFile,
    target: &Path,
    filename: &str,
    expected: Option<&str>,
    actual: &str,
) -> Result<PathBuf, PypiError> {
    if let Some(expected) = expected.filter(|e| *e != actual) {
        return Err(PypiError::HashMismatch {
            file: filename.to_string(),
            expected: expected.to_string(),
            actual: actual.to_string(),
        });
    }
    tmp.persist(target).map_err(|e| PypiError::Io {
        action: "replacing",
        path: target.to_path_buf(),
        source: e.error,
    })?;
    Ok(target.to_path_buf())
}

/// Copies a local file to `out` while hashing it; returns the sha256.
pub(super) fn copy_hashing(
    source: &Path,
    out: &std::fs::File,
    out_path: &Path,
) -> Result<String, PypiError> {
    let mut input = std::fs::File::open(source).map_err(PypiError::io("opening", source))?;
    let mut output = std::io::BufWriter::new(out);
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let n = input
            .read(&mut buffer)
            .map_err(PypiError::io("reading", source))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        output
            .write_all(&buffer[..n])
            .map_err(PypiError::io("writing", out_path))?;
    }
    output.flush().map_err(PypiError::io("writing", out_path))?;
    Ok(hex::encode(hasher.finalize()))
}
