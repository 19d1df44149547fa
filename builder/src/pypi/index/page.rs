//! The files of a project as index pages list them (PEP 691 JSON, PEP 503 HTML),
//! and what a file name tells: wheel or sdist, and its version.

use std::{collections::HashMap, str::FromStr};

use pep440_rs::{Version, VersionSpecifiers};
use pep508_rs::PackageName;
use serde::{Deserialize, Serialize};
use url::Url;

use super::{credentials::without_credentials, html::scan_tags, metadata::requires_python_of};
use crate::pypi::tags::WheelName;

/// One file of a project on an index.
#[derive(Debug, Clone)]
pub(crate) struct DistFile {
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

/// What a distribution file is.
#[derive(Debug, Clone)]
pub(crate) enum DistKind {
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

/// A file as an index page lists it (what the disk cache keeps).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct PageFile {
    /// The last segment of the URL, decoded.
    pub(super) filename: String,
    /// The absolute URL, without credentials or fragment.
    pub(super) url: String,
    /// The sha256, lowercase.
    sha256: Option<String>,
    /// `requires-python`, unparsed.
    pub(super) requires_python: Option<String>,
    /// Yanked.
    pub(super) yanked: bool,
    /// PEP 658 metadata offered.
    pub(super) has_metadata: bool,
}

impl PageFile {
    /// A link to a file: its name, and its hash from a `#sha256=` fragment.
    pub(super) fn from_url(mut url: Url) -> Option<Self> {
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
    pub(super) fn to_dist(&self, project: &PackageName, index: Option<&Url>) -> Option<DistFile> {
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
pub(super) fn valid_sha256(hash: &str) -> Option<String> {
    (hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| hash.to_ascii_lowercase())
}

/// The files of a page, JSON (PEP 691) or HTML (PEP 503) by its content type.
pub(super) fn parse_page(
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
pub(super) fn parse_html_page(html: &str, base: &Url) -> Vec<PageFile> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> PackageName {
        PackageName::from_str(s).unwrap()
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
}
