//! PEP 503/691 "simple" indexes, extra indexes and find-links, read the way
//! pip reads them, with a disk cache under `CACHE/pypi/`:
//!
//! - `simple/<sha256 of URL>.json`: a page's files with its ETag,
//!   Last-Modified and max-age, reused while fresh and revalidated after;
//! - `metadata/<sha256 of URL>`: PEP 658 metadata files (immutable);
//! - `wheels/<sha256>.whl` (or `wheels/url-<sha256 of URL>.whl` when the
//!   index gives no hash): wheels, checked while streamed, renamed in place.
//!
//! Credentials are sent by host (see `credentials`) and never shown.

mod cache;
mod credentials;
mod html;
mod http;
mod local;
mod metadata;
mod page;
#[cfg(test)]
mod tests;

use std::{
    collections::{HashMap, HashSet},
    fmt,
    hash::Hash,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use pep508_rs::PackageName;
use reqwest::{header, StatusCode};
use sha2::{Digest, Sha256};
use tokio::{io::AsyncWriteExt, sync::OnceCell};
use url::Url;

use self::{
    cache::{
        copy_hashing, now, persist_checked, read_cached_page, sha256_hex, temp_file_in,
        write_cache, CachedPage,
    },
    credentials::{without_credentials, Credentials},
    http::{check_scheme, describe, http_client, read_capped, too_large, unreachable_error},
    local::{direct_link, list_dir, local_find_links, local_project_page},
    metadata::{bad_wheel, read_wheel_metadata},
    page::{parse_page, valid_sha256, PageFile},
};
use super::{error::redact, tags::WheelName, PypiError};

pub(crate) use self::{
    metadata::CoreMetadata,
    page::{DistFile, DistKind},
};

/// PyPI's simple index.
const DEFAULT_INDEX: &str = "https://pypi.org/simple/";
/// What a project page is asked as: PEP 691 JSON first, then HTML.
const PAGE_ACCEPT: &str = "application/vnd.pypi.simple.v1+json, \
                           application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01";
/// The largest index page or metadata file read.
const MAX_PAGE_BYTES: u64 = 64 << 20;
/// The largest wheel downloaded.
const MAX_WHEEL_BYTES: u64 = 2 << 30;
/// How long reading a whole page may take.
const PAGE_TIMEOUT: Duration = Duration::from_secs(300);

/// Where packages are looked up (pip's options).
#[derive(Clone)]
pub struct IndexConfig {
    /// `--index-url`: the main index.
    pub index_url: Url,
    /// `--extra-index-url`: more indexes, searched too.
    pub extra_index_urls: Vec<Url>,
    /// `--find-links`: pages of links or directories of files.
    pub find_links: Vec<FindLinks>,
    /// `--no-index`: no index is searched, only the find-links.
    pub no_index: bool,
    /// Where pages, links and redirects may lead (`host` or `host:port`, over
    /// http(s) only): the service's allowed indexes; `None` (the command
    /// line): anywhere, local files too.
    pub allowed_hosts: Option<Vec<String>>,
}

impl Default for IndexConfig {
    fn default() -> Self {
        IndexConfig {
            index_url: Url::parse(DEFAULT_INDEX).expect("the default index URL is valid"),
            extra_index_urls: Vec::new(),
            find_links: Vec::new(),
            no_index: false,
            allowed_hosts: None,
        }
    }
}

impl IndexConfig {
    /// The indexes searched, in order (none with `no_index`), as configured.
    pub fn indexes(&self) -> Vec<&Url> {
        if self.no_index {
            return Vec::new();
        }
        std::iter::once(&self.index_url)
            .chain(&self.extra_index_urls)
            .collect()
    }
}

impl fmt::Debug for IndexConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let extra: Vec<String> = self.extra_index_urls.iter().map(redact).collect();
        f.debug_struct("IndexConfig")
            .field("index_url", &redact(&self.index_url))
            .field("extra_index_urls", &extra)
            .field("find_links", &self.find_links)
            .field("no_index", &self.no_index)
            .field("allowed_hosts", &self.allowed_hosts)
            .finish()
    }
}

/// A `--find-links` location.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum FindLinks {
    /// An HTML page of links (or a `file://` directory, or one archive's URL).
    Url(Url),
    /// A local directory of wheels and sdists.
    Dir(PathBuf),
}

impl FindLinks {
    /// The location as it may be shown (credentials removed).
    pub fn shown(&self) -> String {
        match self {
            FindLinks::Url(url) => redact(url),
            FindLinks::Dir(dir) => dir.display().to_string(),
        }
    }
}

impl fmt::Debug for FindLinks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FindLinks::Url(url) => f.debug_tuple("Url").field(&redact(url)).finish(),
            FindLinks::Dir(dir) => f.debug_tuple("Dir").field(dir).finish(),
        }
    }
}

/// Runs blocking file work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, PypiError> + Send + 'static,
) -> Result<T, PypiError> {
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|e| {
        Err(PypiError::Io {
            action: "running file work in",
            path: PathBuf::from("."),
            source: std::io::Error::other(e.to_string()),
        })
    })
}

/// Values computed once per key, concurrent askers waiting for the first.
struct Memo<K, V> {
    cells: Mutex<HashMap<K, Arc<OnceCell<V>>>>,
}

impl<K: Eq + Hash + Clone, V> Memo<K, V> {
    /// An empty memo.
    fn new() -> Self {
        Memo {
            cells: Mutex::new(HashMap::new()),
        }
    }

    /// The cell of `key`.
    fn cell(&self, key: &K) -> Arc<OnceCell<V>> {
        let mut cells = self.cells.lock().unwrap_or_else(PoisonError::into_inner);
        cells.entry(key.clone()).or_default().clone()
    }
}

/// A client of the configured indexes, caching under `cache_root/pypi/`.
pub(crate) struct Index {
    /// The configuration, as given.
    config: IndexConfig,
    /// The indexes searched, credentials removed.
    indexes: Vec<Url>,
    /// The find-links, credentials removed.
    find_links: Vec<FindLinks>,
    /// `cache_root/pypi`.
    cache: PathBuf,
    /// The HTTP client.
    client: reqwest::Client,
    /// Credentials by host.
    credentials: Credentials,
    /// The files of each project asked.
    projects: Memo<PackageName, Arc<Vec<DistFile>>>,
    /// The files of each find-links location.
    links: Memo<FindLinks, Arc<Vec<PageFile>>>,
}

impl fmt::Debug for Index {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Index")
            .field("config", &self.config)
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

impl Index {
    /// A client of `config`'s indexes, caching under `cache_root/pypi/`.
    pub(crate) fn new(config: IndexConfig, cache_root: &Path) -> Result<Self, PypiError> {
        let cache = cache_root.join("pypi");
        for sub in ["simple", "metadata", "wheels"] {
            let dir = cache.join(sub);
            std::fs::create_dir_all(&dir).map_err(PypiError::io("creating", dir))?;
        }
        let indexes: Vec<Url> = config
            .indexes()
            .into_iter()
            .map(without_credentials)
            .collect();
        for url in &indexes {
            check_scheme(url)?;
            check_link(config.allowed_hosts.as_deref(), url)?;
        }
        let mut configured: Vec<&Url> = vec![&config.index_url];
        configured.extend(&config.extra_index_urls);
        let mut find_links = Vec::new();
        for link in &config.find_links {
            find_links.push(match link {
                FindLinks::Url(url) => {
                    check_scheme(url)?;
                    check_link(config.allowed_hosts.as_deref(), url)?;
                    configured.push(url);
                    FindLinks::Url(without_credentials(url))
                }
                FindLinks::Dir(dir) => {
                    if config.allowed_hosts.is_some() {
                        return Err(PypiError::LinkRefused {
                            url: dir.display().to_string(),
                            reason: "a local directory is never read here".into(),
                        });
                    }
                    FindLinks::Dir(dir.clone())
                }
            });
        }
        let credentials = Credentials::from_environment(&configured);
        let client = http_client(config.allowed_hosts.clone())
            .map_err(|e| unreachable_error(&config.index_url, describe(e)))?;
        Ok(Index {
            config,
            indexes,
            find_links,
            cache,
            client,
            credentials,
            projects: Memo::new(),
            links: Memo::new(),
        })
    }

    /// Every file of a project across the index, extra indexes and find-links (pip merges them all).
    pub(crate) async fn files(&self, name: &PackageName) -> Result<Arc<Vec<DistFile>>, PypiError> {
        let cell = self.projects.cell(name);
        cell.get_or_try_init(|| self.collect_files(name))
            .await
            .cloned()
    }

    /// Reads every index and find-links location for `name`.
    async fn collect_files(&self, name: &PackageName) -> Result<Arc<Vec<DistFile>>, PypiError> {
        let pages = futures::future::try_join_all(
            self.indexes
                .iter()
                .map(|index| self.project_page(index, name)),
        )
        .await?;
        let mut found = false;
        let mut files = Vec::new();
        for (index, page) in self.indexes.iter().zip(pages) {
            let Some(page) = page else { continue };
            found = true;
            files.extend(page.iter().filter_map(|f| f.to_dist(name, Some(index))));
        }
        for link in &self.find_links {
            let page = self.find_links_files(link).await?;
            let source = match link {
                FindLinks::Url(url) => Some(url),
                FindLinks::Dir(_) => None,
            };
            files.extend(page.iter().filter_map(|f| f.to_dist(name, source)));
        }
        if !found && files.is_empty() {
            return Err(self.not_found(name));
        }
        let mut seen = HashSet::new();
        files.retain(|f| seen.insert(f.url.clone()));
        Ok(Arc::new(files))
    }

    /// No index or find-links has `name`.
    fn not_found(&self, name: &PackageName) -> PypiError {
        let mut searched: Vec<String> = self.indexes.iter().map(redact).collect();
        searched.extend(self.find_links.iter().map(FindLinks::shown));
        let hint = if self.config.no_index {
            " (--no-index: only --find-links locations are searched)"
        } else {
            ""
        };
        PypiError::NotFound {
            package: name.to_string(),
            indexes: if searched.is_empty() {
                "no index".to_string()
            } else {
                searched.join(", ")
            },
            hint: hint.to_string(),
        }
    }

    /// The files of `name`'s page on `index`; None when the index does not have it.
    async fn project_page(
        &self,
        index: &Url,
        name: &PackageName,
    ) -> Result<Option<Vec<PageFile>>, PypiError> {
        let mut base = index.clone();
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let url = base
            .join(&format!("{name}/"))
            .map_err(|e| unreachable_error(index, e.to_string()))?;
        if url.scheme() != "file" {
            return self.remote_page(&url).await;
        }
        let dir = url
            .to_file_path()
            .map_err(|()| unreachable_error(&url, "not a local path"))?;
        blocking(move || local_project_page(&dir, &url)).await
    }

    /// The files of a find-links location, read once per `Index`.
    async fn find_links_files(&self, link: &FindLinks) -> Result<Arc<Vec<PageFile>>, PypiError> {
        let cell = self.links.cell(link);
        let read = || async {
            let files = match link {
                FindLinks::Dir(dir) => {
                    let dir = dir.clone();
                    blocking(move || list_dir(&dir)).await?
                }
                FindLinks::Url(url) if url.scheme() == "file" => {
                    let url = url.clone();
                    blocking(move || local_find_links(&url)).await?
                }
                FindLinks::Url(url) => match direct_link(url) {
                    Some(file) => vec![file],
                    None => self
                        .remote_page(url)
                        .await?
                        .ok_or_else(|| unreachable_error(url, "HTTP 404 Not Found"))?,
                },
            };
            Ok::<_, PypiError>(Arc::new(files))
        };
        cell.get_or_try_init(read).await.cloned()
    }

    /// An HTTP(S) page's files, from the disk cache while fresh; None on 404.
    async fn remote_page(&self, url: &Url) -> Result<Option<Vec<PageFile>>, PypiError> {
        check_link(self.config.allowed_hosts.as_deref(), url)?;
        let path = self
            .cache
            .join("simple")
            .join(format!("{}.json", sha256_hex(url.as_str())));
        let cached = read_cached_page(&path, url);
        if let Some(page) = cached.as_ref().filter(|p| p.is_fresh(now())) {
            tracing::debug!("{url}: cached page reused");
            return Ok(Some(page.files.clone()));
        }
        let response = self
            .send(self.page_request(url, cached.as_ref()), url)
            .await?;
        let status = response.status();
        let mut page = match cached {
            Some(mut page) if status == StatusCode::NOT_MODIFIED => {
                page.update(response.headers());
                page
            }
            _ if status == StatusCode::NOT_FOUND || status == StatusCode::GONE => return Ok(None),
            _ if !status.is_success() => {
                return Err(unreachable_error(url, format!("HTTP {status}")))
            }
            _ => self.read_page(url, response).await?,
        };
        page.url = url.to_string();
        let json = serde_json::to_vec(&page).map_err(|e| PypiError::Io {
            action: "writing",
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        write_cache(&path, &json)?;
        Ok(Some(page.files))
    }

    /// The request of a page, conditional when a cached copy has validators.
    fn page_request(&self, url: &Url, cached: Option<&CachedPage>) -> reqwest::RequestBuilder {
        let mut request = self
            .request(url)
            .header(header::ACCEPT, PAGE_ACCEPT)
            .timeout(PAGE_TIMEOUT);
        if let Some(etag) = cached.and_then(|c| c.etag.as_deref()) {
            request = request.header(header::IF_NONE_MATCH, etag);
        }
        if let Some(modified) = cached.and_then(|c| c.last_modified.as_deref()) {
            request = request.header(header::IF_MODIFIED_SINCE, modified);
        }
        request
    }

    /// Reads and parses a page response.
    async fn read_page(
        &self,
        url: &Url,
        response: reqwest::Response,
    ) -> Result<CachedPage, PypiError> {
        let headers = response.headers().clone();
        let base = without_credentials(response.url());
        let body = read_capped(response, MAX_PAGE_BYTES, url).await?;
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        let files =
            parse_page(&body, content_type, &base).map_err(|m| unreachable_error(url, m))?;
        let mut page = CachedPage {
            url: url.to_string(),
            etag: None,
            last_modified: None,
            fetched: 0,
            max_age: 0,
            files,
        };
        page.update(&headers);
        Ok(page)
    }

    /// A GET request of `url` (credentials removed), with the credentials of its host.
    fn request(&self, url: &Url) -> reqwest::RequestBuilder {
        let request = self.client.get(without_credentials(url));
        match self.credentials.for_url(url) {
            Some(basic) => request.basic_auth(&basic.username, basic.password.as_ref()),
            None => request,
        }
    }

    /// Sends a request; connection errors are Unreachable.
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        url: &Url,
    ) -> Result<reqwest::Response, PypiError> {
        request.send().await.map_err(|e| match e.is_redirect() {
            true => PypiError::LinkRefused {
                url: redact(url),
                reason: describe(e),
            },
            false => unreachable_error(url, describe(e)),
        })
    }

    /// The core metadata of a wheel: the PEP 658 file when offered, else read from the wheel's `*.dist-info/METADATA` (downloading the wheel into the cache).
    pub(crate) async fn metadata(&self, file: &DistFile) -> Result<CoreMetadata, PypiError> {
        let DistKind::Wheel(wheel) = &file.kind else {
            return Err(PypiError::Unsupported {
                package: file.filename.clone(),
                message:
                    "a source distribution is not built by trousse; use a version with a wheel"
                        .to_string(),
            });
        };
        let text = match self.metadata_file(file).await? {
            Some(text) => text,
            None => self.wheel_metadata(file, wheel).await?,
        };
        let metadata = CoreMetadata::parse(&text)
            .map_err(|problem| bad_wheel(&file.filename, format!("its METADATA: {problem}")))?;
        if metadata.name != wheel.name || metadata.version != wheel.version {
            return Err(bad_wheel(
                &file.filename,
                format!(
                    "its METADATA is of {} {}, not of the wheel's name and version",
                    metadata.name, metadata.version
                ),
            ));
        }
        Ok(metadata)
    }

    /// The PEP 658 metadata file of `file`, when offered and present.
    async fn metadata_file(&self, file: &DistFile) -> Result<Option<String>, PypiError> {
        if !file.has_metadata {
            return Ok(None);
        }
        let mut url = without_credentials(&file.url);
        url.set_path(&format!("{}.metadata", url.path()));
        check_link(self.config.allowed_hosts.as_deref(), &url)?;
        if url.scheme() == "file" {
            let Ok(path) = url.to_file_path() else {
                return Ok(None);
            };
            return Ok(std::fs::read(path)
                .ok()
                .map(|b| String::from_utf8_lossy(&b).into_owned()));
        }
        let path = self.cache.join("metadata").join(sha256_hex(url.as_str()));
        if let Ok(bytes) = std::fs::read(&path) {
            return Ok(Some(String::from_utf8_lossy(&bytes).into_owned()));
        }
        let response = self
            .send(self.request(&url).timeout(PAGE_TIMEOUT), &url)
            .await?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND || status == StatusCode::GONE {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(unreachable_error(&url, format!("HTTP {status}")));
        }
        let bytes = read_capped(response, MAX_PAGE_BYTES, &url).await?;
        write_cache(&path, &bytes)?;
        Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
    }

    /// The METADATA of a wheel, downloaded into the cache.
    async fn wheel_metadata(
        &self,
        file: &DistFile,
        wheel: &WheelName,
    ) -> Result<String, PypiError> {
        let path = self
            .download(&file.url, &file.filename, file.sha256.as_deref())
            .await?;
        let wheel = wheel.clone();
        let filename = file.filename.clone();
        blocking(move || read_wheel_metadata(&path, &wheel, &filename)).await
    }

    /// The wheel at `url` in the cache, downloaded and checked against `sha256` when given; returns its path.
    pub(crate) async fn download(
        &self,
        url: &Url,
        filename: &str,
        sha256: Option<&str>,
    ) -> Result<PathBuf, PypiError> {
        let url = without_credentials(url);
        check_link(self.config.allowed_hosts.as_deref(), &url)?;
        let expected = match sha256 {
            Some(hash) => Some(valid_sha256(hash).ok_or_else(|| PypiError::Unsupported {
                package: filename.to_string(),
                message: format!("'{hash}' is not a sha256 (64 hexadecimal digits)"),
            })?),
            None => None,
        };
        let dir = self.cache.join("wheels");
        let target = match &expected {
            Some(hash) => dir.join(format!("{hash}.whl")),
            None => dir.join(format!("url-{}.whl", sha256_hex(url.as_str()))),
        };
        if url.scheme() == "file" {
            return local_wheel(&url, filename, expected, target).await;
        }
        if target.is_file() {
            crate::cache::mark_used(&target);
            return Ok(target);
        }
        let tmp = temp_file_in(&dir)?;
        let out = tmp
            .as_file()
            .try_clone()
            .map_err(PypiError::io("opening", tmp.path()))?;
        let mut out = tokio::fs::File::from_std(out);
        let actual = self.stream_to(&url, &mut out, tmp.path()).await?;
        drop(out);
        persist_checked(tmp, &target, filename, expected.as_deref(), &actual)
    }

    /// Downloads `url` into `out`; returns its sha256.
    async fn stream_to(
        &self,
        url: &Url,
        out: &mut tokio::fs::File,
        out_path: &Path,
    ) -> Result<String, PypiError> {
        let mut response = self.send(self.request(url), url).await?;
        let status = response.status();
        if !status.is_success() {
            return Err(unreachable_error(url, format!("HTTP {status}")));
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_WHEEL_BYTES)
        {
            return Err(too_large(url, MAX_WHEEL_BYTES));
        }
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| unreachable_error(url, describe(e)))?
        {
            size += chunk.len() as u64;
            if size > MAX_WHEEL_BYTES {
                return Err(too_large(url, MAX_WHEEL_BYTES));
            }
            hasher.update(&chunk);
            out.write_all(&chunk)
                .await
                .map_err(PypiError::io("writing", out_path))?;
        }
        out.flush()
            .await
            .map_err(PypiError::io("writing", out_path))?;
        Ok(hex::encode(hasher.finalize()))
    }
}

/// Refuses a URL outside `allowed` (`host` or `host:port`): a local file,
/// or a host that is not an allowed index's. `None` allows everything.
fn check_link(allowed: Option<&[String]>, url: &Url) -> Result<(), PypiError> {
    let Some(allowed) = allowed else {
        return Ok(());
    };
    let refuse = |reason: String| PypiError::LinkRefused {
        url: crate::error::clip(&redact(url), 300).into_owned(),
        reason,
    };
    if !matches!(url.scheme(), "http" | "https") {
        return Err(refuse(format!(
            "only http(s) links are followed here, not {}:",
            url.scheme()
        )));
    }
    if link_host_allowed(allowed, url) {
        return Ok(());
    }
    Err(refuse(format!(
        "its host is not one of the allowed indexes' ({})",
        allowed.join(", ")
    )))
}

/// Whether `url`'s host (or `host:port`) is in `allowed`.
fn link_host_allowed(allowed: &[String], url: &Url) -> bool {
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    let with_port = url.port().map(|p| format!("{host}:{p}"));
    allowed
        .iter()
        .map(|a| a.to_ascii_lowercase())
        .any(|a| a == host || Some(&a) == with_port.as_ref())
}

/// A local wheel: itself when no hash is expected, else a checked copy in the cache.
async fn local_wheel(
    url: &Url,
    filename: &str,
    expected: Option<String>,
    target: PathBuf,
) -> Result<PathBuf, PypiError> {
    let source = url
        .to_file_path()
        .map_err(|()| unreachable_error(url, "not a local path"))?;
    let Some(expected) = expected else {
        std::fs::metadata(&source).map_err(PypiError::io("reading", &source))?;
        return Ok(source);
    };
    if target.is_file() {
        crate::cache::mark_used(&target);
        return Ok(target);
    }
    let filename = filename.to_string();
    blocking(move || {
        let dir = target.parent().unwrap_or(Path::new("."));
        let tmp = temp_file_in(dir)?;
        let actual = copy_hashing(&source, tmp.as_file(), tmp.path())?;
        persist_checked(tmp, &target, &filename, Some(&expected), &actual)
    })
    .await
}
