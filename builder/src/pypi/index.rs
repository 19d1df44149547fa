//! PEP 503/691 "simple" indexes, extra indexes and find-links, read the way
//! pip reads them, with a disk cache under `CACHE/pypi/`:
//!
//! - `simple/<sha256 of URL>.json`: a page's files with its ETag,
//!   Last-Modified and max-age, reused while fresh and revalidated after;
//! - `metadata/<sha256 of URL>`: PEP 658 metadata files (immutable);
//! - `wheels/<sha256>.whl` (or `wheels/url-<sha256 of URL>.whl` when the
//!   index gives no hash): wheels, checked while streamed, renamed in place.
//!
//! Credentials come from the userinfo of a configured URL (for its host and
//! port), else netrc, else `TROUSSE_PYPI_USERNAME`/`TROUSSE_PYPI_PASSWORD`
//! for the configured hosts; they never appear in an error, log or `Debug`.

use std::{
    collections::{HashMap, HashSet},
    fmt,
    hash::Hash,
    io::{Read, Write},
    path::{Path, PathBuf},
    str::FromStr,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use pep440_rs::{Version, VersionSpecifiers};
use pep508_rs::{ExtraName, PackageName, Requirement};
use reqwest::{header, StatusCode};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::{io::AsyncWriteExt, sync::OnceCell};
use trousse_registry_client::{layout::write_atomically, RegistryError};
use url::Url;

use super::{error::redact, tags::WheelName, PypiError};

/// PyPI's simple index.
const DEFAULT_INDEX: &str = "https://pypi.org/simple/";
/// What a project page is asked as: PEP 691 JSON first, then HTML.
const PAGE_ACCEPT: &str = "application/vnd.pypi.simple.v1+json, \
                           application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01";
/// The largest index page or metadata file read.
const MAX_PAGE_BYTES: u64 = 64 << 20;
/// The largest wheel downloaded.
const MAX_WHEEL_BYTES: u64 = 2 << 30;
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a response may stall.
const READ_TIMEOUT: Duration = Duration::from_secs(120);
/// How long reading a whole page may take.
const PAGE_TIMEOUT: Duration = Duration::from_secs(300);
/// The user agent of every request.
const USER_AGENT: &str = concat!("trousse/", env!("CARGO_PKG_VERSION"));

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
}

impl Default for IndexConfig {
    fn default() -> Self {
        IndexConfig {
            index_url: Url::parse(DEFAULT_INDEX).expect("the default index URL is valid"),
            extra_index_urls: Vec::new(),
            find_links: Vec::new(),
            no_index: false,
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

/// One file of a project on an index.
#[derive(Debug, Clone)]
pub struct DistFile {
    /// The file name (the last segment of its URL).
    pub filename: String,
    /// Where it is downloaded from (no credentials, no fragment).
    pub url: Url,
    /// The index (or find-links URL) listing it, credentials removed; None for a directory.
    pub index: Option<Url>,
    /// Its sha256 when the index gives one (lowercase hex).
    pub sha256: Option<String>,
    /// The Python versions it supports (`Requires-Python`), when declared and valid.
    pub requires_python: Option<VersionSpecifiers>,
    /// Whether the index marks it yanked (PEP 592).
    pub yanked: bool,
    /// Whether `url` + `.metadata` holds its core metadata (PEP 658/714).
    pub has_metadata: bool,
    /// A wheel or an sdist.
    pub kind: DistKind,
}

impl DistFile {
    /// The version its name tells, if any.
    pub fn version(&self) -> Option<&Version> {
        match &self.kind {
            DistKind::Wheel(wheel) => Some(&wheel.version),
            DistKind::Sdist { version } => version.as_ref(),
        }
    }
}

/// What a distribution file is.
#[derive(Debug, Clone)]
pub enum DistKind {
    /// A built distribution, installable without building.
    Wheel(WheelName),
    /// A source distribution (`.tar.gz`, `.zip`): never built by trousse.
    Sdist {
        /// Its version, when the name holds a valid one.
        version: Option<Version>,
    },
}

/// What a file name is, if it is a distribution of `project`.
fn dist_kind(filename: &str, project: &PackageName) -> Option<DistKind> {
    if filename.ends_with(".whl") {
        let wheel = WheelName::parse(filename).ok()?;
        return (wheel.name == *project).then_some(DistKind::Wheel(wheel));
    }
    let lower = filename.to_ascii_lowercase();
    let ext = [".tar.gz", ".zip"]
        .into_iter()
        .find(|e| lower.ends_with(e))?;
    let stem = &filename[..filename.len() - ext.len()];
    let mut unparsed = false;
    for (i, _) in stem.match_indices('-') {
        if PackageName::from_str(&stem[..i]).ok().as_ref() != Some(project) {
            continue;
        }
        let rest = &stem[i + 1..];
        if let Ok(version) = Version::from_str(rest) {
            return Some(DistKind::Sdist {
                version: Some(version),
            });
        }
        unparsed |= rest.starts_with(|c: char| c.is_ascii_digit());
    }
    unparsed.then_some(DistKind::Sdist { version: None })
}

/// The core metadata of a distribution.
#[derive(Debug, Clone)]
pub struct CoreMetadata {
    /// `Name`.
    pub name: PackageName,
    /// `Version`.
    pub version: Version,
    /// `Requires-Dist`, in order.
    pub requires_dist: Vec<Requirement>,
    /// `Requires-Python`, when declared and valid.
    pub requires_python: Option<VersionSpecifiers>,
    /// `Provides-Extra`, in order.
    pub provides_extra: Vec<ExtraName>,
}

impl CoreMetadata {
    /// Parses a METADATA file (its headers); the error names the bad header.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut name = None;
        let mut version = None;
        let mut requires_dist = Vec::new();
        let mut requires_python = None;
        let mut provides_extra = Vec::new();
        for (key, value) in metadata_headers(text) {
            match key.to_ascii_lowercase().as_str() {
                "name" => {
                    name = Some(
                        PackageName::from_str(&value)
                            .map_err(|e| format!("Name '{value}': {e}"))?,
                    )
                }
                "version" => {
                    version = Some(
                        Version::from_str(&value).map_err(|e| format!("Version '{value}': {e}"))?,
                    )
                }
                "requires-dist" => requires_dist.push(
                    Requirement::from_str(&value)
                        .map_err(|e| format!("Requires-Dist '{value}': {e}"))?,
                ),
                "requires-python" => requires_python = requires_python_of(&value),
                "provides-extra" => match ExtraName::from_str(&value) {
                    Ok(extra) => provides_extra.push(extra),
                    Err(e) => tracing::debug!("ignoring Provides-Extra '{value}': {e}"),
                },
                _ => {}
            }
        }
        Ok(CoreMetadata {
            name: name.ok_or("no Name header")?,
            version: version.ok_or("no Version header")?,
            requires_dist,
            requires_python,
            provides_extra,
        })
    }
}

/// The headers of an RFC 822 message: until the first blank line, continuation lines joined.
fn metadata_headers(text: &str) -> Vec<(String, String)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = headers.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((key, value)) = line.split_once(':') {
            headers.push((key.trim().to_string(), value.trim().to_string()));
        }
    }
    headers
}

/// A `Requires-Python` value; invalid ones are ignored, as pip does.
fn requires_python_of(value: &str) -> Option<VersionSpecifiers> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    match VersionSpecifiers::from_str(value) {
        Ok(specifiers) => Some(specifiers),
        Err(e) => {
            tracing::debug!("ignoring invalid Requires-Python '{value}': {e}");
            None
        }
    }
}

/// A file as an index page lists it (what the disk cache keeps).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct PageFile {
    /// The last segment of the URL, decoded.
    filename: String,
    /// The absolute URL, without credentials or fragment.
    url: String,
    /// The sha256, lowercase.
    sha256: Option<String>,
    /// `requires-python`, unparsed.
    requires_python: Option<String>,
    /// Yanked.
    yanked: bool,
    /// PEP 658 metadata offered.
    has_metadata: bool,
}

impl PageFile {
    /// A link to a file: its name, and its hash from a `#sha256=` fragment.
    fn from_url(mut url: Url) -> Option<Self> {
        let sha256 = url
            .fragment()
            .and_then(|f| f.strip_prefix("sha256="))
            .and_then(valid_sha256);
        url.set_fragment(None);
        let url = without_credentials(&url);
        let last = url.path_segments()?.next_back()?;
        let filename = percent_encoding::percent_decode_str(last)
            .decode_utf8()
            .ok()?
            .into_owned();
        if filename.is_empty() {
            return None;
        }
        Some(PageFile {
            filename,
            url: url.to_string(),
            sha256,
            requires_python: None,
            yanked: false,
            has_metadata: false,
        })
    }

    /// The file as a distribution of `project`, None when it is not one.
    fn to_dist(&self, project: &PackageName, index: Option<&Url>) -> Option<DistFile> {
        let kind = dist_kind(&self.filename, project)?;
        Some(DistFile {
            filename: self.filename.clone(),
            url: Url::parse(&self.url).ok()?,
            index: index.cloned(),
            sha256: self.sha256.clone(),
            requires_python: self.requires_python.as_deref().and_then(requires_python_of),
            yanked: self.yanked,
            has_metadata: self.has_metadata,
            kind,
        })
    }
}

/// A sha256 as 64 hex digits, lowercased; None otherwise.
fn valid_sha256(hash: &str) -> Option<String> {
    (hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| hash.to_ascii_lowercase())
}

/// The files of a page, JSON (PEP 691) or HTML (PEP 503) by its content type.
fn parse_page(
    body: &[u8],
    content_type: Option<&str>,
    base: &Url,
) -> Result<Vec<PageFile>, String> {
    let json = match content_type {
        Some(t) => t.contains("json"),
        None => body.trim_ascii_start().starts_with(b"{"),
    };
    if json {
        parse_json_page(body, base)
    } else {
        Ok(parse_html_page(&String::from_utf8_lossy(body), base))
    }
}

/// A PEP 691 project page.
#[derive(Deserialize)]
struct JsonPage {
    files: Vec<JsonFile>,
}

/// A file of a PEP 691 project page.
#[derive(Deserialize)]
struct JsonFile {
    filename: String,
    url: String,
    #[serde(default)]
    hashes: HashMap<String, String>,
    #[serde(rename = "requires-python", default)]
    requires_python: Option<String>,
    #[serde(default)]
    yanked: serde_json::Value,
    #[serde(rename = "core-metadata", default)]
    core_metadata: serde_json::Value,
    #[serde(rename = "dist-info-metadata", default)]
    dist_info_metadata: serde_json::Value,
}

/// The files of a PEP 691 JSON page; relative URLs are resolved against `base`.
fn parse_json_page(body: &[u8], base: &Url) -> Result<Vec<PageFile>, String> {
    let page: JsonPage =
        serde_json::from_slice(body).map_err(|e| format!("invalid PEP 691 JSON page: {e}"))?;
    let offered = |v: &serde_json::Value| v.as_bool().unwrap_or(false) || v.is_object();
    let mut files = Vec::new();
    for file in page.files {
        let Some(url) = base.join(&file.url).ok() else {
            continue;
        };
        let Some(mut entry) = PageFile::from_url(url) else {
            continue;
        };
        entry.filename = file.filename;
        entry.sha256 = file.hashes.get("sha256").and_then(|h| valid_sha256(h));
        entry.requires_python = file.requires_python.filter(|r| !r.trim().is_empty());
        entry.yanked = file.yanked.as_bool().unwrap_or(false) || file.yanked.is_string();
        entry.has_metadata = offered(&file.core_metadata) || offered(&file.dist_info_metadata);
        files.push(entry);
    }
    Ok(files)
}

/// The files of a PEP 503 HTML page: its anchors, resolved against `base` (or `<base href>`).
fn parse_html_page(html: &str, base: &Url) -> Vec<PageFile> {
    let mut base = base.clone();
    let mut files = Vec::new();
    for (tag, attrs) in scan_tags(html) {
        let attr = |name: &str| {
            attrs
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        let Some(href) = attr("href") else { continue };
        let Ok(url) = base.join(href) else { continue };
        if tag == "base" {
            base = url;
            continue;
        }
        let Some(mut file) = PageFile::from_url(url) else {
            continue;
        };
        file.requires_python = attr("data-requires-python")
            .filter(|r| !r.trim().is_empty())
            .map(str::to_string);
        file.yanked = attr("data-yanked").is_some();
        file.has_metadata = attr("data-core-metadata")
            .or_else(|| attr("data-dist-info-metadata"))
            .is_some_and(|v| !v.eq_ignore_ascii_case("false"));
        files.push(file);
    }
    files
}

/// An HTML tag's name and attributes (names lowercase, values unescaped).
type Tag = (String, Vec<(String, String)>);

/// The `<a>` and `<base>` tags of an HTML document, comments skipped.
fn scan_tags(html: &str) -> Vec<Tag> {
    let mut tags = Vec::new();
    let mut rest = html;
    while let Some(lt) = rest.find('<') {
        rest = &rest[lt + 1..];
        if let Some(comment) = rest.strip_prefix("!--") {
            rest = comment.find("-->").map_or("", |end| &comment[end + 3..]);
            continue;
        }
        let len = rest
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(rest.len());
        let name = rest[..len].to_ascii_lowercase();
        rest = &rest[len..];
        if name == "a" || name == "base" {
            let (attrs, after) = scan_attributes(rest);
            tags.push((name, attrs));
            rest = after;
        }
    }
    tags
}

/// The attributes of a tag up to its `>`, and what follows it.
fn scan_attributes(mut s: &str) -> (Vec<(String, String)>, &str) {
    let mut attrs = Vec::new();
    loop {
        s = s.trim_start_matches(|c: char| c.is_ascii_whitespace() || c == '/');
        if s.is_empty() {
            return (attrs, s);
        }
        if let Some(after) = s.strip_prefix('>') {
            return (attrs, after);
        }
        let len = s
            .find(|c: char| c.is_ascii_whitespace() || matches!(c, '=' | '>' | '/'))
            .unwrap_or(s.len());
        if len == 0 {
            s = &s[1..]; // a stray '='
            continue;
        }
        let name = s[..len].to_ascii_lowercase();
        s = s[len..].trim_start_matches(|c: char| c.is_ascii_whitespace());
        let mut value = String::new();
        if let Some(after) = s.strip_prefix('=') {
            let (raw, after) =
                attribute_value(after.trim_start_matches(|c: char| c.is_ascii_whitespace()));
            value = unescape_html(raw);
            s = after;
        }
        attrs.push((name, value));
    }
}

/// A quoted or unquoted attribute value, and what follows it.
fn attribute_value(s: &str) -> (&str, &str) {
    match s.chars().next() {
        Some(quote @ ('"' | '\'')) => {
            let body = &s[1..];
            match body.find(quote) {
                Some(end) => (&body[..end], &body[end + 1..]),
                None => (body, ""),
            }
        }
        _ => {
            let end = s
                .find(|c: char| c.is_ascii_whitespace() || c == '>')
                .unwrap_or(s.len());
            s.split_at(end)
        }
    }
}

/// Replaces HTML character references (`&gt;`, `&#62;`, `&#x3e;`…); unknown ones are kept.
fn unescape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let decoded = rest.find(';').filter(|&end| end <= 10).and_then(|end| {
            let entity = &rest[1..end];
            let c = match entity {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                _ => entity
                    .strip_prefix('#')
                    .and_then(|n| match n.strip_prefix(['x', 'X']) {
                        Some(hex) => u32::from_str_radix(hex, 16).ok(),
                        None => n.parse().ok(),
                    })
                    .and_then(char::from_u32),
            };
            c.map(|c| (c, end + 1))
        });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The files of a local directory that look like distributions, by name.
fn list_dir(dir: &Path) -> Result<Vec<PageFile>, PypiError> {
    let dir = std::path::absolute(dir).map_err(PypiError::io("reading", dir))?;
    let entries = std::fs::read_dir(&dir).map_err(PypiError::io("reading", &dir))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(PypiError::io("reading", &dir))?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let lower = name.to_ascii_lowercase();
        if ![".whl", ".tar.gz", ".zip"]
            .iter()
            .any(|e| lower.ends_with(e))
            || !path.is_file()
        {
            continue;
        }
        let Ok(url) = Url::from_file_path(&path) else {
            continue;
        };
        let Some(mut file) = PageFile::from_url(url) else {
            continue;
        };
        file.filename = name.to_string();
        file.has_metadata = dir.join(format!("{name}.metadata")).is_file();
        files.push(file);
    }
    files.sort_by(|a, b| a.filename.cmp(&b.filename));
    Ok(files)
}

/// A `file://` project page: its `index.html`, else the files of its directory.
fn local_project_page(dir: &Path, url: &Url) -> Result<Option<Vec<PageFile>>, PypiError> {
    let index_html = dir.join("index.html");
    match std::fs::read(&index_html) {
        Ok(bytes) => return Ok(Some(parse_html_page(&String::from_utf8_lossy(&bytes), url))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => return Ok(None),
        Err(e) => return Err(PypiError::io("reading", index_html)(e)),
    }
    if dir.is_dir() {
        list_dir(dir).map(Some)
    } else {
        Ok(None)
    }
}

/// A `file://` find-links location: a directory, one archive, or an HTML page.
fn local_find_links(url: &Url) -> Result<Vec<PageFile>, PypiError> {
    let path = url
        .to_file_path()
        .map_err(|()| unreachable_error(url, "not a local path"))?;
    if path.is_dir() {
        return list_dir(&path);
    }
    if let Some(file) = direct_link(url) {
        return Ok(vec![file]);
    }
    let bytes = std::fs::read(&path).map_err(PypiError::io("reading", &path))?;
    Ok(parse_html_page(&String::from_utf8_lossy(&bytes), url))
}

/// A find-links URL naming one archive, as the only file it lists.
fn direct_link(url: &Url) -> Option<PageFile> {
    let file = PageFile::from_url(url.clone())?;
    let lower = file.filename.to_ascii_lowercase();
    [".whl", ".tar.gz", ".zip"]
        .iter()
        .any(|e| lower.ends_with(e))
        .then_some(file)
}

/// A URL without user name or password.
fn without_credentials(url: &Url) -> Url {
    let mut bare = url.clone();
    let _ = bare.set_username("");
    let _ = bare.set_password(None);
    bare
}

/// A user name and password, never shown.
#[derive(Clone, PartialEq, Eq)]
struct Basic {
    username: String,
    password: Option<String>,
}

impl fmt::Debug for Basic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Basic(<redacted>)")
    }
}

impl Basic {
    /// The credentials in a URL's userinfo, percent-decoded.
    fn from_url(url: &Url) -> Option<Self> {
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        if url.username().is_empty() && url.password().is_none() {
            return None;
        }
        Some(Basic {
            username: decode(url.username()),
            password: url.password().map(decode),
        })
    }
}

/// The entries of a netrc file.
#[derive(Debug, Default)]
struct Netrc {
    /// `machine HOST login … password …`, by host.
    machines: HashMap<String, Basic>,
    /// `default login … password …`.
    default: Option<Basic>,
}

impl Netrc {
    /// Parses a netrc file (`macdef` bodies skipped, comments ignored).
    fn parse(text: &str) -> Self {
        let mut netrc = Netrc::default();
        let mut host: Option<Option<String>> = None; // Some(None): default
        let mut current = Basic {
            username: String::new(),
            password: None,
        };
        let mut tokens = netrc_tokens(text).into_iter();
        while let Some(token) = tokens.next() {
            match token.as_str() {
                "machine" | "default" => {
                    netrc.finish(host.take(), std::mem::replace(&mut current, Basic::empty()));
                    host = Some(if token == "machine" {
                        tokens.next()
                    } else {
                        None
                    });
                }
                "login" => current.username = tokens.next().unwrap_or_default(),
                "password" => current.password = tokens.next(),
                "account" => {
                    tokens.next();
                }
                _ => {}
            }
        }
        netrc.finish(host, current);
        netrc
    }

    /// Records the entry just read.
    fn finish(&mut self, host: Option<Option<String>>, basic: Basic) {
        if basic.username.is_empty() && basic.password.is_none() {
            return;
        }
        match host {
            Some(Some(host)) => {
                self.machines
                    .entry(host.to_ascii_lowercase())
                    .or_insert(basic);
            }
            Some(None) => self.default = self.default.take().or(Some(basic)),
            None => {}
        }
    }
}

impl Basic {
    /// No credentials yet.
    fn empty() -> Self {
        Basic {
            username: String::new(),
            password: None,
        }
    }
}

/// The tokens of a netrc file: words, `"quoted words"`, no comments or `macdef` bodies.
fn netrc_tokens(text: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut in_macdef = false;
    for line in text.lines() {
        if in_macdef {
            in_macdef = !line.trim().is_empty();
            continue;
        }
        if line.trim_start().starts_with('#') {
            continue;
        }
        for word in line.split_whitespace() {
            let word = word.trim_matches('"');
            in_macdef |= word == "macdef";
            tokens.push(word.to_string());
        }
    }
    tokens
}

/// A host and port, as credentials are scoped.
type HostKey = (String, u16);

/// The host and port of a URL.
fn host_key(url: &Url) -> Option<HostKey> {
    Some((
        url.host_str()?.to_ascii_lowercase(),
        url.port_or_known_default()?,
    ))
}

/// The credentials of each host, from the configured URLs, netrc and the environment.
#[derive(Debug, Default)]
struct Credentials {
    /// From the userinfo of configured URLs.
    by_host: HashMap<HostKey, Basic>,
    /// The netrc file.
    netrc: Netrc,
    /// `TROUSSE_PYPI_USERNAME` and `TROUSSE_PYPI_PASSWORD`.
    env: Option<Basic>,
    /// The hosts of the configured indexes and find-links.
    configured: HashSet<HostKey>,
}

impl Credentials {
    /// Credentials for the configured URLs, with netrc and the environment of this process.
    fn from_environment(urls: &[&Url]) -> Self {
        let netrc_path = std::env::var_os("NETRC")
            .map(PathBuf::from)
            .or_else(|| dirs::home_dir().map(|home| home.join(".netrc")));
        let netrc = match netrc_path.map(std::fs::read_to_string) {
            Some(Ok(text)) => Netrc::parse(&text),
            _ => Netrc::default(),
        };
        let env = match (
            std::env::var("TROUSSE_PYPI_USERNAME"),
            std::env::var("TROUSSE_PYPI_PASSWORD"),
        ) {
            (Ok(username), Ok(password)) => Some(Basic {
                username,
                password: Some(password),
            }),
            _ => None,
        };
        Self::new(urls, netrc, env)
    }

    /// Credentials for the configured URLs, given netrc's entries and the environment's.
    fn new(urls: &[&Url], netrc: Netrc, env: Option<Basic>) -> Self {
        let mut by_host = HashMap::new();
        let mut configured = HashSet::new();
        for url in urls {
            let Some(key) = host_key(url) else { continue };
            if let Some(basic) = Basic::from_url(url) {
                by_host.entry(key.clone()).or_insert(basic);
            }
            configured.insert(key);
        }
        Credentials {
            by_host,
            netrc,
            env,
            configured,
        }
    }

    /// The credentials sent to `url`, if any.
    fn for_url(&self, url: &Url) -> Option<&Basic> {
        let key = host_key(url)?;
        if let Some(basic) = self.by_host.get(&key) {
            return Some(basic);
        }
        if let Some(basic) = self.netrc.machines.get(&key.0) {
            return Some(basic);
        }
        if !self.configured.contains(&key) {
            return None;
        }
        self.env.as_ref().or(self.netrc.default.as_ref())
    }
}

/// A page's files as cached, with what revalidates it.
#[derive(Debug, Serialize, Deserialize)]
struct CachedPage {
    /// The page's URL (no credentials).
    url: String,
    /// The `ETag` received.
    etag: Option<String>,
    /// The `Last-Modified` received.
    last_modified: Option<String>,
    /// When it was fetched or revalidated, in seconds since the epoch.
    fetched: u64,
    /// `Cache-Control: max-age`, in seconds (0 without one).
    max_age: u64,
    /// The files listed.
    files: Vec<PageFile>,
}

impl CachedPage {
    /// Whether it may be used without asking the server.
    fn is_fresh(&self, now: u64) -> bool {
        now >= self.fetched && now - self.fetched < self.max_age
    }

    /// Takes the validators and freshness of a response.
    fn update(&mut self, headers: &header::HeaderMap) {
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
fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The lowercase hex sha256 of a text (cache file names).
fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// Writes a cache file atomically.
fn write_cache(path: &Path, bytes: &[u8]) -> Result<(), PypiError> {
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
fn read_cached_page(path: &Path, url: &Url) -> Option<CachedPage> {
    let bytes = std::fs::read(path).ok()?;
    let page: CachedPage = serde_json::from_slice(&bytes).ok()?;
    (page.url == url.as_str()).then_some(page)
}

/// An Unreachable error for `url`, credentials removed.
fn unreachable_error(url: &Url, message: impl Into<String>) -> PypiError {
    PypiError::Unreachable {
        url: redact(url),
        message: message.into(),
    }
}

/// A BadWheel error.
fn bad_wheel(wheel: &str, problem: impl Into<String>) -> PypiError {
    PypiError::BadWheel {
        wheel: wheel.to_string(),
        problem: problem.into(),
    }
}

/// A reqwest error with its causes, without its URL.
fn describe(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut message = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
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

/// A temporary file in `dir`, readable as any file the user writes, deleted unless persisted.
fn temp_file_in(dir: &Path) -> Result<tempfile::NamedTempFile, PypiError> {
    tempfile::Builder::new()
        .prefix(".partial-")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
        .tempfile_in(dir)
        .map_err(PypiError::io("creating a temporary file in", dir))
}

/// Renames a downloaded file into place if its hash is the expected one (else it is deleted).
fn persist_checked(
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
fn copy_hashing(source: &Path, out: &std::fs::File, out_path: &Path) -> Result<String, PypiError> {
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

/// The `*.dist-info/METADATA` entry of a wheel, preferring the project's own.
fn metadata_entry(names: &[String], project: &PackageName) -> Option<String> {
    let dist_info = |name: &&String| -> Option<String> {
        let (dir, file) = name.split_once('/')?;
        (file == "METADATA").then_some(())?;
        dir.strip_suffix(".dist-info").map(str::to_string)
    };
    let candidates: Vec<&String> = names.iter().filter(|n| dist_info(n).is_some()).collect();
    let own = candidates.iter().find(|n| {
        dist_info(n)
            .and_then(|stem| PackageName::from_str(stem.split('-').next()?).ok())
            .as_ref()
            == Some(project)
    });
    match own {
        Some(name) => Some((*name).clone()),
        None if candidates.len() == 1 => Some(candidates[0].clone()),
        None => None,
    }
}

/// The METADATA file of a wheel on disk.
fn read_wheel_metadata(
    path: &Path,
    wheel: &WheelName,
    filename: &str,
) -> Result<String, PypiError> {
    let file = std::fs::File::open(path).map_err(PypiError::io("opening", path))?;
    let mut archive = zip::ZipArchive::new(file)
        .map_err(|e| bad_wheel(filename, format!("not a zip archive: {e}")))?;
    let names: Vec<String> = archive
        .file_names()
        .filter_map(|n| n.ok().map(|n| n.into_owned()))
        .collect();
    let entry_name = metadata_entry(&names, &wheel.name)
        .ok_or_else(|| bad_wheel(filename, "it has no *.dist-info/METADATA"))?;
    let entry = archive
        .by_name(&entry_name)
        .map_err(|e| bad_wheel(filename, format!("{entry_name}: {e}")))?;
    let mut bytes = Vec::new();
    entry
        .take(MAX_PAGE_BYTES)
        .read_to_end(&mut bytes)
        .map_err(|e| bad_wheel(filename, format!("{entry_name}: {e}")))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
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
pub struct Index {
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
    pub fn new(config: IndexConfig, cache_root: &Path) -> Result<Self, PypiError> {
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
        }
        let mut configured: Vec<&Url> = vec![&config.index_url];
        configured.extend(&config.extra_index_urls);
        let mut find_links = Vec::new();
        for link in &config.find_links {
            find_links.push(match link {
                FindLinks::Url(url) => {
                    check_scheme(url)?;
                    configured.push(url);
                    FindLinks::Url(without_credentials(url))
                }
                FindLinks::Dir(dir) => FindLinks::Dir(dir.clone()),
            });
        }
        let credentials = Credentials::from_environment(&configured);
        let client =
            http_client().map_err(|e| unreachable_error(&config.index_url, describe(e)))?;
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

    /// The configuration, as given (URLs may hold credentials: show them with `redact`).
    pub fn config(&self) -> &IndexConfig {
        &self.config
    }

    /// Every file of a project across the index, extra indexes and find-links (pip merges them all).
    pub async fn files(&self, name: &PackageName) -> Result<Arc<Vec<DistFile>>, PypiError> {
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
        request
            .send()
            .await
            .map_err(|e| unreachable_error(url, describe(e)))
    }

    /// The core metadata of a wheel: the PEP 658 file when offered, else read from the wheel's `*.dist-info/METADATA` (downloading the wheel into the cache).
    pub async fn metadata(&self, file: &DistFile) -> Result<CoreMetadata, PypiError> {
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
    pub async fn download(
        &self,
        url: &Url,
        filename: &str,
        sha256: Option<&str>,
    ) -> Result<PathBuf, PypiError> {
        let url = without_credentials(url);
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

/// The error of a response larger than `cap`.
fn too_large(url: &Url, cap: u64) -> PypiError {
    unreachable_error(url, format!("the response is larger than {cap} bytes"))
}

/// A response's body, refused beyond `cap` bytes.
async fn read_capped(
    mut response: reqwest::Response,
    cap: u64,
    url: &Url,
) -> Result<Vec<u8>, PypiError> {
    if response.content_length().is_some_and(|n| n > cap) {
        return Err(too_large(url, cap));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| unreachable_error(url, describe(e)))?
    {
        if (body.len() + chunk.len()) as u64 > cap {
            return Err(too_large(url, cap));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Refuses an index or find-links URL trousse cannot read.
fn check_scheme(url: &Url) -> Result<(), PypiError> {
    match url.scheme() {
        "http" | "https" | "file" => Ok(()),
        scheme => Err(PypiError::Unsupported {
            package: redact(url),
            message: format!("a {scheme}: index is not supported; use an http(s) or file URL"),
        }),
    }
}

/// The HTTP client of the indexes.
fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        .build()
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::{TcpListener, TcpStream},
    };

    use super::*;

    fn name(s: &str) -> PackageName {
        PackageName::from_str(s).unwrap()
    }

    fn wheel_bytes(project: &str, version: &str, requires: &[&str]) -> Vec<u8> {
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default();
        zip.start_file(format!("{project}-{version}.dist-info/METADATA"), options)
            .unwrap();
        write!(
            zip,
            "Metadata-Version: 2.1\nName: {project}\nVersion: {version}\n"
        )
        .unwrap();
        for r in requires {
            writeln!(zip, "Requires-Dist: {r}").unwrap();
        }
        write!(zip, "\nThe description.\nRequires-Dist: not-a-header\n").unwrap();
        zip.start_file(format!("{project}/__init__.py"), options)
            .unwrap();
        zip.finish().unwrap().into_inner()
    }

    fn sha(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    #[test]
    fn html_pages_are_read() {
        let html = r#"<!DOCTYPE html><html><body>
            <!-- <a href="commented-1.0-py3-none-any.whl">x</a> -->
            <h1>Links for demo</h1>
            <a href="../../files/demo-1.0-py3-none-any.whl#sha256=ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789"
               data-requires-python="&gt;=3.8,&lt;4" data-core-metadata="sha256=00">demo-1.0-py3-none-any.whl</a><br/>
            <A HREF='https://other.example/demo-0.9.tar.gz#md5=123' data-yanked="">demo-0.9.tar.gz</A>
            <a href=demo-0.8-py3-none-any.whl data-dist-info-metadata=false>x</a>
            <a name="no-href">x</a>
            <a href="https://u:p@files.example/a%2Bb/demo-0.7.zip?x=1&amp;y=2">demo-0.7.zip</a>
        </body></html>"#;
        let base = Url::parse("https://index.example/simple/demo/").unwrap();
        let files = parse_html_page(html, &base);
        assert_eq!(files.len(), 4, "{files:#?}");
        assert_eq!(files[0].filename, "demo-1.0-py3-none-any.whl");
        assert_eq!(
            files[0].url,
            "https://index.example/files/demo-1.0-py3-none-any.whl"
        );
        assert_eq!(
            files[0].sha256.as_deref(),
            Some("abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789")
        );
        assert_eq!(files[0].requires_python.as_deref(), Some(">=3.8,<4"));
        assert!(files[0].has_metadata && !files[0].yanked);
        assert!(files[1].yanked && files[1].sha256.is_none() && !files[1].has_metadata);
        assert_eq!(
            files[2].url,
            "https://index.example/simple/demo/demo-0.8-py3-none-any.whl"
        );
        assert!(!files[2].has_metadata);
        assert_eq!(
            files[3].url,
            "https://files.example/a%2Bb/demo-0.7.zip?x=1&y=2"
        );
        assert_eq!(files[3].filename, "demo-0.7.zip");
        let based = parse_html_page(
            r#"<base href="https://mirror.example/pkgs/"><a href="demo-1.0.tar.gz">x</a>"#,
            &base,
        );
        assert_eq!(based[0].url, "https://mirror.example/pkgs/demo-1.0.tar.gz");
        let dists: Vec<DistFile> = files
            .iter()
            .filter_map(|f| f.to_dist(&name("demo"), None))
            .collect();
        assert_eq!(dists.len(), 4);
        assert!(dists[0].requires_python.is_some());
        assert!(
            matches!(&dists[1].kind, DistKind::Sdist { version: Some(v) } if v.to_string() == "0.9")
        );
    }

    #[test]
    fn json_pages_are_read() {
        let json = br#"{"meta": {"api-version": "1.1"}, "name": "demo", "files": [
            {"filename": "demo-1.0-py3-none-any.whl", "url": "../../files/demo-1.0-py3-none-any.whl",
             "hashes": {"sha256": "ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789"},
             "requires-python": ">=3.8", "core-metadata": {"sha256": "00"}, "yanked": false},
            {"filename": "demo-0.9.tar.gz", "url": "https://files.example/demo-0.9.tar.gz",
             "hashes": {}, "yanked": "broken", "dist-info-metadata": true},
            {"filename": "demo-0.8-py3-none-any.whl", "url": "demo-0.8-py3-none-any.whl", "hashes": {"md5": "00"},
             "requires-python": null, "core-metadata": false}
        ]}"#;
        let base = Url::parse("https://index.example/simple/demo/").unwrap();
        let files = parse_page(json, Some("application/vnd.pypi.simple.v1+json"), &base).unwrap();
        assert_eq!(files.len(), 3);
        assert_eq!(
            files[0].url,
            "https://index.example/files/demo-1.0-py3-none-any.whl"
        );
        assert!(files[0].sha256.as_deref().unwrap().starts_with("abcdef"));
        assert!(files[0].has_metadata && !files[0].yanked);
        assert!(files[1].yanked && files[1].has_metadata);
        assert!(!files[2].has_metadata && files[2].sha256.is_none());
        assert!(parse_page(b"{oops", None, &base).is_err());
    }

    #[test]
    fn sdist_names() {
        let project = name("foo-bar");
        let version = |f: &str| match dist_kind(f, &project) {
            Some(DistKind::Sdist { version }) => Some(version.map(|v| v.to_string())),
            _ => None,
        };
        assert_eq!(version("foo_bar-1.2.tar.gz"), Some(Some("1.2".into())));
        assert_eq!(version("Foo.Bar-1.2.ZIP"), Some(Some("1.2".into())));
        assert_eq!(
            version("foo-bar-1.2-3.tar.gz"),
            Some(Some("1.2.post3".into()))
        );
        assert_eq!(version("foo-bar-1.x.y.tar.gz"), Some(None));
        assert_eq!(version("foo-1.2.tar.gz"), None);
        assert_eq!(version("foo-bar-baz-1.2.tar.gz"), None);
        assert_eq!(version("foo-bar-1.2.tar.bz2"), None);
        assert!(dist_kind("foo_bar-1.2-py3-none-any.whl", &project).is_some());
        assert!(dist_kind("foo-1.2-py3-none-any.whl", &project).is_none());
    }

    #[test]
    fn metadata_is_parsed() {
        let text = "Metadata-Version: 2.1\r\nName: Demo_Pkg\r\nVersion: 1.0\r\n\
            Summary: a long\r\n  summary\r\nRequires-Dist: numpy >=1.20\r\n\
            Requires-Dist: requests[socks] ; extra == 'net' and\r\n  python_version >= '3.8'\r\n\
            Provides-Extra: net\r\nRequires-Python: >=3.8\r\nX-Unknown: whatever\r\n\r\n\
            Requires-Dist: in the body\r\n";
        let m = CoreMetadata::parse(text).unwrap();
        assert_eq!(m.name.as_ref(), "demo-pkg");
        assert_eq!(m.version.to_string(), "1.0");
        assert_eq!(m.requires_dist.len(), 2);
        assert_eq!(m.requires_dist[1].name.as_ref(), "requests");
        assert_eq!(m.provides_extra[0].as_ref(), "net");
        assert!(m
            .requires_python
            .unwrap()
            .contains(&Version::from_str("3.12").unwrap()));
        let err = CoreMetadata::parse("Name: a\nVersion: 1\nRequires-Dist: b >>> 1\n").unwrap_err();
        assert!(err.contains("Requires-Dist 'b >>> 1'"), "{err}");
        assert!(CoreMetadata::parse("Version: 1\n")
            .unwrap_err()
            .contains("Name"));
    }

    #[test]
    fn credentials_are_scoped_and_never_shown() {
        let netrc = Netrc::parse(
            "# comment\nmachine netrc.example login alice password \"p1\"\n\
             macdef init\n  machine evil.example login x password y\n\n\
             default login dflt password p3\n",
        );
        assert!(!netrc.machines.contains_key("evil.example"));
        let index = Url::parse("https://bob:s%40cret@private.example/simple/").unwrap();
        let other = Url::parse("https://configured.example/simple/").unwrap();
        let env = Some(Basic {
            username: "env".into(),
            password: Some("p2".into()),
        });
        let credentials = Credentials::new(&[&index, &other], netrc, env);
        let user = |u: &str| {
            let url = Url::parse(u).unwrap();
            credentials.for_url(&url).map(|b| b.username.clone())
        };
        let private = credentials.for_url(&index).unwrap();
        assert_eq!(private.password.as_deref(), Some("s@cret"));
        assert_eq!(
            user("https://private.example/files/x.whl").as_deref(),
            Some("bob")
        );
        assert_eq!(user("http://private.example/simple/"), None);
        assert_eq!(user("https://netrc.example/x").as_deref(), Some("alice"));
        assert_eq!(user("https://configured.example/x").as_deref(), Some("env"));
        assert_eq!(user("https://elsewhere.example/x"), None);
        let shown = format!("{credentials:?}");
        assert!(!shown.contains("s@cret") && !shown.contains("p1") && !shown.contains("p2"));
        let config = IndexConfig {
            index_url: index.clone(),
            extra_index_urls: vec![index.clone()],
            find_links: vec![FindLinks::Url(index)],
            no_index: false,
        };
        assert!(!format!("{config:?}").contains("cret"), "{config:?}");
    }

    #[tokio::test]
    async fn file_index_and_find_links_dir() {
        let root = tempfile::tempdir().unwrap();
        let files_dir = root.path().join("files");
        let project_dir = root.path().join("simple/demo");
        std::fs::create_dir_all(&files_dir).unwrap();
        std::fs::create_dir_all(&project_dir).unwrap();
        let wheel = wheel_bytes("demo", "1.0", &["dep>=1"]);
        std::fs::write(files_dir.join("demo-1.0-py3-none-any.whl"), &wheel).unwrap();
        let html = format!(
            "<a href=\"../../files/demo-1.0-py3-none-any.whl#sha256={}\">w</a>",
            sha(&wheel)
        );
        std::fs::write(project_dir.join("index.html"), html).unwrap();
        let links = root.path().join("links");
        std::fs::create_dir_all(&links).unwrap();
        std::fs::write(
            links.join("other-2.0-py3-none-any.whl"),
            wheel_bytes("other", "2.0", &[]),
        )
        .unwrap();
        std::fs::write(links.join("other-1.0.tar.gz"), b"sdist").unwrap();
        std::fs::write(links.join("unrelated-1.0-py3-none-any.whl"), b"x").unwrap();
        std::fs::write(links.join("notes.txt"), b"x").unwrap();

        let config = IndexConfig {
            index_url: Url::from_directory_path(root.path().join("simple")).unwrap(),
            extra_index_urls: vec![],
            find_links: vec![FindLinks::Dir(links.clone())],
            no_index: false,
        };
        let cache = tempfile::tempdir().unwrap();
        let index = Index::new(config, cache.path()).unwrap();
        let demo = index.files(&name("demo")).await.unwrap();
        assert_eq!(demo.len(), 1);
        assert!(demo[0].index.is_some() && demo[0].sha256.is_some());
        let metadata = index.metadata(&demo[0]).await.unwrap();
        assert_eq!(metadata.requires_dist[0].name.as_ref(), "dep");
        assert!(cache
            .path()
            .join(format!("pypi/wheels/{}.whl", sha(&wheel)))
            .is_file());

        let other = index.files(&name("other")).await.unwrap();
        let names: Vec<&str> = other.iter().map(|f| f.filename.as_str()).collect();
        assert_eq!(names, ["other-1.0.tar.gz", "other-2.0-py3-none-any.whl"]);
        assert!(other.iter().all(|f| f.index.is_none()));
        let wheel_file = &other[1];
        let path = index
            .download(&wheel_file.url, &wheel_file.filename, None)
            .await
            .unwrap();
        assert_eq!(path, links.join("other-2.0-py3-none-any.whl"));
        assert_eq!(
            index
                .metadata(wheel_file)
                .await
                .unwrap()
                .version
                .to_string(),
            "2.0"
        );
        assert!(matches!(
            index.metadata(&other[0]).await,
            Err(PypiError::Unsupported { .. })
        ));
        match index.files(&name("missing")).await {
            Err(PypiError::NotFound {
                package, indexes, ..
            }) => {
                assert_eq!(package, "missing");
                assert!(indexes.contains("links"), "{indexes}");
            }
            other => panic!("{other:?}"),
        }
    }

    /// A route of the test server: status, headers, body.
    type Route = (u16, Vec<(&'static str, String)>, Vec<u8>);

    /// A request the test server received.
    #[derive(Debug, Clone)]
    struct Hit {
        path: String,
        authorization: Option<String>,
        if_none_match: Option<String>,
    }

    /// Serves `routes` over HTTP/1.1 on 127.0.0.1 (404 elsewhere; 304 when an ETag matches).
    async fn serve(routes: HashMap<String, Route>) -> (String, Arc<Mutex<Vec<Hit>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(Mutex::new(Vec::new()));
        let routes = Arc::new(routes);
        let recorded = hits.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(answer(stream, routes.clone(), recorded.clone()));
            }
        });
        (format!("127.0.0.1:{port}"), hits)
    }

    async fn answer(
        mut stream: TcpStream,
        routes: Arc<HashMap<String, Route>>,
        hits: Arc<Mutex<Vec<Hit>>>,
    ) {
        let mut request = Vec::new();
        let mut buffer = [0u8; 4096];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => request.extend_from_slice(&buffer[..n]),
            }
        }
        let text = String::from_utf8_lossy(&request).into_owned();
        let path = text.split(' ').nth(1).unwrap_or("/").to_string();
        let header = |wanted: &str| {
            text.split("\r\n").find_map(|line| {
                let (k, v) = line.split_once(':')?;
                k.eq_ignore_ascii_case(wanted).then(|| v.trim().to_string())
            })
        };
        let hit = Hit {
            path: path.clone(),
            authorization: header("authorization"),
            if_none_match: header("if-none-match"),
        };
        hits.lock().unwrap().push(hit.clone());
        let (status, headers, body) = match routes.get(&path) {
            Some((_, headers, _))
                if hit.if_none_match.is_some()
                    && headers
                        .iter()
                        .any(|(k, v)| *k == "ETag" && Some(v) == hit.if_none_match.as_ref()) =>
            {
                (304, vec![], vec![])
            }
            Some(route) => route.clone(),
            None => (404, vec![], b"not found".to_vec()),
        };
        let mut head = format!(
            "HTTP/1.1 {status} Whatever\r\nContent-Length: {}\r\nConnection: close\r\n",
            body.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let _ = stream.write_all(head.as_bytes()).await;
        let _ = stream.write_all(&body).await;
        let _ = stream.shutdown().await;
    }

    fn count(hits: &Mutex<Vec<Hit>>, path: &str) -> usize {
        hits.lock()
            .unwrap()
            .iter()
            .filter(|h| h.path == path)
            .count()
    }

    #[tokio::test]
    async fn http_index_with_metadata_and_cache() {
        let wheel = wheel_bytes("demo", "1.0", &["from-wheel"]);
        let page = format!(
            "<a href=\"../../files/demo-1.0-py3-none-any.whl#sha256={}\" data-core-metadata=\"true\" \
             data-requires-python=\"&gt;=3.8\">demo-1.0-py3-none-any.whl</a>",
            sha(&wheel)
        );
        let html = vec![
            ("Content-Type", "text/html".to_string()),
            ("Cache-Control", "max-age=600, public".to_string()),
        ];
        let routes = HashMap::from([
            ("/simple/demo/".to_string(), (200, html, page.into_bytes())),
            (
                "/files/demo-1.0-py3-none-any.whl.metadata".to_string(),
                (
                    200,
                    vec![],
                    b"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\nRequires-Dist: from-658\n"
                        .to_vec(),
                ),
            ),
            (
                "/files/demo-1.0-py3-none-any.whl".to_string(),
                (200, vec![], wheel.clone()),
            ),
            (
                "/files/bad-1.0-py3-none-any.whl".to_string(),
                (200, vec![], b"not the hash".to_vec()),
            ),
        ]);
        let (host, hits) = serve(routes).await;
        let config = IndexConfig {
            index_url: Url::parse(&format!("http://user:s3cret@{host}/simple/")).unwrap(),
            extra_index_urls: vec![Url::parse(&format!("http://{host}/extra")).unwrap()],
            find_links: vec![],
            no_index: false,
        };
        let cache = tempfile::tempdir().unwrap();
        let index = Index::new(config.clone(), cache.path()).unwrap();
        let files = index.files(&name("demo")).await.unwrap();
        assert_eq!(files.len(), 1);
        let file = &files[0];
        assert!(file.has_metadata && file.requires_python.is_some());
        assert!(!format!("{file:?}").contains("s3cret"));
        assert_eq!(
            file.url.as_str(),
            format!("http://{host}/files/demo-1.0-py3-none-any.whl")
        );
        {
            let hits = hits.lock().unwrap();
            let page_hit = hits.iter().find(|h| h.path == "/simple/demo/").unwrap();
            assert!(page_hit
                .authorization
                .as_deref()
                .unwrap()
                .starts_with("Basic "));
            assert!(hits.iter().any(|h| h.path == "/extra/demo/"));
        }
        let metadata = index.metadata(file).await.unwrap();
        assert_eq!(metadata.requires_dist[0].name.as_ref(), "from-658");
        assert_eq!(count(&hits, "/files/demo-1.0-py3-none-any.whl"), 0);

        // A second client over the same cache asks the server nothing.
        let again = Index::new(config.clone(), cache.path()).unwrap();
        let files = again.files(&name("demo")).await.unwrap();
        again.metadata(&files[0]).await.unwrap();
        assert_eq!(count(&hits, "/simple/demo/"), 1);
        assert_eq!(count(&hits, "/files/demo-1.0-py3-none-any.whl.metadata"), 1);
        let path = again
            .download(&file.url, &file.filename, file.sha256.as_deref())
            .await
            .unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), wheel);
        again
            .download(&file.url, &file.filename, file.sha256.as_deref())
            .await
            .unwrap();
        assert_eq!(count(&hits, "/files/demo-1.0-py3-none-any.whl"), 1);

        // 404 everywhere: NotFound, no credentials shown.
        let err = again.files(&name("missing")).await.unwrap_err();
        assert!(matches!(err, PypiError::NotFound { .. }), "{err:?}");
        let shown = format!("{err} {err:?} {again:?}");
        assert!(
            !shown.contains("s3cret") && shown.contains("/extra"),
            "{shown}"
        );

        // A hash mismatch leaves nothing in the cache.
        let bad = Url::parse(&format!("http://{host}/files/bad-1.0-py3-none-any.whl")).unwrap();
        let wrong = "0".repeat(64);
        let err = again
            .download(&bad, "bad-1.0-py3-none-any.whl", Some(&wrong))
            .await
            .unwrap_err();
        match err {
            PypiError::HashMismatch {
                file,
                expected,
                actual,
            } => {
                assert_eq!(file, "bad-1.0-py3-none-any.whl");
                assert_eq!(expected, wrong);
                assert_eq!(actual, sha(b"not the hash"));
            }
            other => panic!("{other:?}"),
        }
        let left: Vec<_> = std::fs::read_dir(cache.path().join("pypi/wheels"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            left,
            [std::ffi::OsString::from(format!("{}.whl", sha(&wheel)))]
        );
    }

    #[tokio::test]
    async fn json_pages_revalidate_and_wheels_give_metadata() {
        let wheel = wheel_bytes("demo", "2.0", &["from-wheel"]);
        let page = format!(
            r#"{{"meta": {{"api-version": "1.0"}}, "name": "demo", "files": [{{"filename": "demo-2.0-py3-none-any.whl",
               "url": "/files/demo-2.0-py3-none-any.whl", "hashes": {{"sha256": "{}"}}}}]}}"#,
            sha(&wheel)
        );
        let json = vec![
            (
                "Content-Type",
                "application/vnd.pypi.simple.v1+json".to_string(),
            ),
            ("ETag", "\"v1\"".to_string()),
        ];
        let routes = HashMap::from([
            ("/simple/demo/".to_string(), (200, json, page.into_bytes())),
            (
                "/files/demo-2.0-py3-none-any.whl".to_string(),
                (200, vec![], wheel),
            ),
        ]);
        let (host, hits) = serve(routes).await;
        let config = IndexConfig {
            index_url: Url::parse(&format!("http://{host}/simple")).unwrap(),
            ..IndexConfig::default()
        };
        let cache = tempfile::tempdir().unwrap();
        let index = Index::new(config.clone(), cache.path()).unwrap();
        let files = index.files(&name("demo")).await.unwrap();
        assert_eq!(files.len(), 1);
        assert!(!files[0].has_metadata);
        let metadata = index.metadata(&files[0]).await.unwrap();
        assert_eq!(metadata.requires_dist[0].name.as_ref(), "from-wheel");
        assert_eq!(count(&hits, "/files/demo-2.0-py3-none-any.whl"), 1);

        let again = Index::new(config, cache.path()).unwrap();
        let files = again.files(&name("demo")).await.unwrap();
        assert_eq!(files.len(), 1);
        let hits = hits.lock().unwrap();
        let pages: Vec<&Hit> = hits.iter().filter(|h| h.path == "/simple/demo/").collect();
        assert_eq!(pages.len(), 2);
        assert_eq!(pages[1].if_none_match.as_deref(), Some("\"v1\""));
        assert!(pages[0].authorization.is_none());
    }
}
