//! The wheel's file name, and the `.dist-info` and `.data` directories named
//! after it.

use std::collections::BTreeSet;
use std::str::FromStr;

use pep440_rs::Version;

use super::archive::Entry;
use super::bad;
use crate::pypi::PypiError;

/// A name as PEP 503 compares it, with `_` for each run of `-_.`.
fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_run = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !in_run {
                out.push('_');
            }
            in_run = true;
        } else {
            out.extend(c.to_lowercase());
            in_run = false;
        }
    }
    out
}

/// The distribution and version of a wheel file name.
pub(super) struct WheelName {
    /// The distribution, as spelled in the file name.
    pub(super) name: String,
    /// The version.
    version: Version,
}

impl WheelName {
    /// Reads `NAME-VERSION[-BUILD]-PY-ABI-PLATFORM.whl`.
    pub(super) fn parse(file_name: &str) -> Result<Self, PypiError> {
        let problem = || {
            bad(
                file_name,
                "its file name is not NAME-VERSION[-BUILD]-PYTHON-ABI-PLATFORM.whl",
            )
        };
        let stem = file_name.strip_suffix(".whl").ok_or_else(problem)?;
        let parts: Vec<&str> = stem.split('-').collect();
        if !matches!(parts.len(), 5 | 6) || parts.iter().any(|p| p.is_empty()) {
            return Err(problem());
        }
        let version = Version::from_str(parts[1]).map_err(|_| problem())?;
        Ok(WheelName {
            name: parts[0].to_string(),
            version,
        })
    }

    /// Whether `stem` (a `.dist-info` or `.data` directory without its suffix) is this wheel's.
    fn matches(&self, stem: &str) -> bool {
        let name = normalize(&self.name);
        stem.match_indices('-').any(|(at, _)| {
            normalize(&stem[..at]) == name
                && Version::from_str(&stem[at + 1..]).is_ok_and(|v| v == self.version)
        })
    }
}

/// The top-level directories of the archive ending in `suffix`.
fn top_dirs<'e>(entries: &'e [Entry], suffix: &str) -> BTreeSet<&'e str> {
    entries
        .iter()
        .filter_map(|e| e.path.split_once('/').map(|(top, _)| top))
        .filter(|top| top.ends_with(suffix))
        .collect()
}

/// The one `.dist-info` directory, named after the wheel.
pub(super) fn find_dist_info(
    entries: &[Entry],
    name: &WheelName,
    wheel: &str,
) -> Result<String, PypiError> {
    let dirs = top_dirs(entries, ".dist-info");
    let mut dirs = dirs.into_iter();
    let (Some(dir), None) = (dirs.next(), dirs.next()) else {
        let all = top_dirs(entries, ".dist-info")
            .into_iter()
            .collect::<Vec<_>>();
        return Err(bad(
            wheel,
            format!("it must have one .dist-info directory, it has {all:?}"),
        ));
    };
    let stem = dir.strip_suffix(".dist-info").unwrap_or(dir);
    if !name.matches(stem) {
        return Err(bad(
            wheel,
            format!("its metadata directory {dir} is not named after the wheel file"),
        ));
    }
    Ok(dir.to_string())
}

/// The wheel's `.data` directory, if it has one (other `*.data` directories are ordinary files).
pub(super) fn find_data_dir(
    entries: &[Entry],
    name: &WheelName,
    wheel: &str,
) -> Result<Option<String>, PypiError> {
    let dirs: Vec<&str> = top_dirs(entries, ".data")
        .into_iter()
        .filter(|dir| name.matches(dir.strip_suffix(".data").unwrap_or(dir)))
        .collect();
    match dirs.as_slice() {
        [] => Ok(None),
        [dir] => Ok(Some(dir.to_string())),
        several => Err(bad(
            wheel,
            format!("it has several .data directories {several:?}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_wheel_file_names() {
        assert!(WheelName::parse("demo-1.0-py3-none-any.whl").is_ok());
        assert!(WheelName::parse("demo-1.0-1-py3-none-any.whl").is_ok());
        assert!(WheelName::parse("demo-1.0-py3-none.whl").is_err());
        assert!(WheelName::parse("demo-1.0.tar.gz").is_err());
        assert!(WheelName::parse("demo-x!y-py3-none-any.whl").is_err());
    }
}
