//! Local (`file://`) project pages and find-links: directories of files, single
//! archives and HTML files.

use std::path::Path;

use url::Url;

use super::{
    http::unreachable_error,
    page::{parse_html_page, PageFile},
};
use crate::pypi::PypiError;

/// The files of a local directory that look like distributions, by name.
pub(super) fn list_dir(dir: &Path) -> Result<Vec<PageFile>, PypiError> {
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
pub(super) fn local_project_page(
    dir: &Path,
    url: &Url,
) -> Result<Option<Vec<PageFile>>, PypiError> {
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
pub(super) fn local_find_links(url: &Url) -> Result<Vec<PageFile>, PypiError> {
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
pub(super) fn direct_link(url: &Url) -> Option<PageFile> {
    let file = PageFile::from_url(url.clone())?;
    let lower = file.filename.to_ascii_lowercase();
    [".whl", ".tar.gz", ".zip"]
        .iter()
        .any(|e| lower.ends_with(e))
        .then_some(file)
}
