//! Core metadata (`METADATA`): its headers parsed, and read from a wheel's
//! `*.dist-info/METADATA`.

use std::{io::Read, path::Path, str::FromStr};

use pep440_rs::{Version, VersionSpecifiers};
use pep508_rs::{PackageName, Requirement};

use super::MAX_PAGE_BYTES;
use crate::pypi::{tags::WheelName, PypiError};

/// The core metadata of a distribution.
#[derive(Debug, Clone)]
pub(crate) struct CoreMetadata {
    /// `Name`.
    pub name: PackageName,
    /// `Version`.
    pub version: Version,
    /// `Requires-Dist`, in order.
    pub requires_dist: Vec<Requirement>,
    /// `Requires-Python`, when declared and valid.
    pub requires_python: Option<VersionSpecifiers>,
}

impl CoreMetadata {
    /// Parses a METADATA file (its headers); the error names the bad header.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let mut name = None;
        let mut version = None;
        let mut requires_dist = Vec::new();
        let mut requires_python = None;
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
                _ => {}
            }
        }
        Ok(CoreMetadata {
            name: name.ok_or("no Name header")?,
            version: version.ok_or("no Version header")?,
            requires_dist,
            requires_python,
        })
    }
}

/// The headers of an RFC 822 message: until the first empty line, continuation
/// lines (starting with a space or a tab, even whitespace-only ones) joined.
fn metadata_headers(text: &str) -> Vec<(String, String)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.is_empty() || line == "\r" {
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
pub(super) fn requires_python_of(value: &str) -> Option<VersionSpecifiers> {
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

/// A BadWheel error.
pub(super) fn bad_wheel(wheel: &str, problem: impl Into<String>) -> PypiError {
    PypiError::BadWheel {
        wheel: wheel.to_string(),
        problem: problem.into(),
    }
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
pub(super) fn read_wheel_metadata(
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The head of jupyter_client 8.6.3's real METADATA (hatchling writes the
    /// license text as continuation lines, some of them whitespace only).
    #[test]
    fn whitespace_only_continuation_lines_do_not_end_the_headers() {
        let text = "Metadata-Version: 2.3\nName: jupyter_client\nVersion: 8.6.3\n\
            License: BSD 3-Clause License\n        \n        \
            - Copyright (c) 2001-2015, IPython Development Team\n        \n        \
            All rights reserved.\nLicense-File: LICENSE\n\
            Requires-Dist: jupyter-core!=5.0.*,>=4.12\nRequires-Dist: traitlets>=5.3\n\
            Requires-Dist: ipykernel>=6.14; extra == 'test'\nProvides-Extra: test\n\n\
            # Jupyter Client\n\nRequires-Dist: not a header\n";
        let m = CoreMetadata::parse(text).unwrap();
        let names: Vec<&str> = m.requires_dist.iter().map(|r| r.name.as_ref()).collect();
        assert_eq!(names, ["jupyter-core", "traitlets", "ipykernel"]);
        let crlf = text.replace('\n', "\r\n");
        assert_eq!(CoreMetadata::parse(&crlf).unwrap().requires_dist.len(), 3);
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
}
