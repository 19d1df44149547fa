//! Checks an extracted package before anything is linked from it: every path
//! it lists stays inside the prefix, none passes through a symlink, each entry
//! is what `paths.json` says it is, and each file has the size and sha256
//! listed. rattler's linker trusts `paths.json`; this is what makes it safe.

use std::{
    collections::{BTreeSet, HashSet},
    io::Read,
    path::{Path, PathBuf},
};

use rattler::install::PythonInfo;
use rattler_conda_types::package::{
    IndexJson, LinkJson, NoArchLinks, PackageFile, PathType, PathsJson,
};
use sha2::{Digest, Sha256};

pub(crate) use crate::error::package::UnsafePackage;
use crate::guard::beneath::{Beneath, Kind};

/// Paths longer than this (bytes) are refused: no filesystem takes them.
const MAX_PATH_BYTES: usize = 4096;
/// Path components longer than this (bytes) are refused.
const MAX_COMPONENT_BYTES: usize = 255;

/// What the linker is given once the package passed: exactly what was checked.
#[derive(Debug, Clone)]
pub(crate) struct CheckedPackage {
    /// The package's `index.json`.
    pub index_json: IndexJson,
    /// The package's `paths.json` (or its deprecated equivalent).
    pub paths_json: PathsJson,
    /// The package's `link.json`, for noarch python packages.
    pub link_json: Option<LinkJson>,
}

/// Checks the extracted package in `dir`; `python` maps noarch python paths.
pub(crate) fn check_package(
    dir: &Path,
    python: Option<&PythonInfo>,
) -> Result<CheckedPackage, UnsafePackage> {
    let root = Beneath::open(dir).map_err(|e| unsafe_path("", format!("cannot open: {e}")))?;
    check_metadata_files(&root)?;
    let index_json = IndexJson::from_package_directory(dir)
        .map_err(|e| unsafe_path("info/index.json", e.to_string()))?;
    let paths_json = PathsJson::from_package_directory_with_deprecated_fallback(dir)
        .map_err(|e| unsafe_path("info/paths.json", e.to_string()))?;
    let link_json = if index_json.noarch.is_python() {
        match LinkJson::from_package_directory(dir) {
            Ok(link) => Some(link),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(unsafe_path("info/link.json", e.to_string())),
        }
    } else {
        None
    };

    check_listing(
        &paths_json,
        link_json.as_ref(),
        python,
        index_json.noarch.is_python(),
    )?;
    check_entries(&root, &paths_json)?;
    Ok(CheckedPackage {
        index_json,
        paths_json,
        link_json,
    })
}

/// Checks what a package lists, without looking at its files: every path
/// (after noarch python's mapping) and every entry point stays inside the
/// prefix, outside `conda-meta/`, and beneath no other entry but a directory.
pub(crate) fn check_listing(
    paths_json: &PathsJson,
    link_json: Option<&LinkJson>,
    python: Option<&PythonInfo>,
    noarch_python: bool,
) -> Result<(), UnsafePackage> {
    let mut final_paths = Vec::with_capacity(paths_json.paths.len());
    for entry in &paths_json.paths {
        check_path(&entry.relative_path)?;
        let target = match python.filter(|_| noarch_python) {
            Some(python) => python
                .get_python_noarch_target_path(&entry.relative_path)
                .into_owned(),
            None => entry.relative_path.clone(),
        };
        check_path(&target)?;
        if target.starts_with("conda-meta") {
            return Err(unsafe_path(
                &target.display().to_string(),
                "conda-meta/ belongs to the environment, not to a package".into(),
            ));
        }
        final_paths.push((target, entry.path_type == PathType::Directory));
    }
    if let (Some(link), Some(python)) = (link_json, python) {
        if let NoArchLinks::Python(points) = &link.noarch {
            for point in &points.entry_points {
                let command = Path::new(&point.command);
                if command.components().count() != 1 || check_path(command).is_err() {
                    return Err(unsafe_path(
                        &point.command,
                        "an entry point's command must be a plain file name".into(),
                    ));
                }
                let target = python.bin_dir.join(command);
                check_path(&target)?;
                final_paths.push((target, false));
            }
        }
    }
    check_no_nesting(&final_paths)
}

/// The metadata files rattler reads must be plain files, not links to host files.
fn check_metadata_files(root: &Beneath) -> Result<(), UnsafePackage> {
    match root.metadata(Path::new("info")) {
        Ok(m) if m.kind == Kind::Directory => {}
        Ok(_) => return Err(unsafe_path("info", "is not a directory".into())),
        Err(e) => return Err(unsafe_path("info", e.to_string())),
    }
    for name in [
        "index.json",
        "paths.json",
        "link.json",
        "files",
        "has_prefix",
        "no_link",
        "no_softlink",
    ] {
        let path = Path::new("info").join(name);
        match root.metadata(&path) {
            Ok(m) if m.kind != Kind::File => {
                return Err(unsafe_path(
                    &path.display().to_string(),
                    "is not a regular file".into(),
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

/// A path must be relative, normalised, UTF-8, free of NUL and of sane length.
pub(crate) fn check_path(path: &Path) -> Result<(), UnsafePackage> {
    let shown = path.to_string_lossy();
    let Some(text) = path.to_str() else {
        return Err(unsafe_path(&shown, "is not UTF-8".into()));
    };
    if crate::guard::beneath::check_relative(path).is_err() {
        return Err(unsafe_path(
            text,
            "must be relative to the prefix, with no '.', '..' or leading '/'".into(),
        ));
    }
    if text.contains('\0') {
        return Err(unsafe_path(text, "holds a NUL byte".into()));
    }
    if text.len() > MAX_PATH_BYTES
        || path
            .components()
            .any(|c| c.as_os_str().len() > MAX_COMPONENT_BYTES)
    {
        return Err(unsafe_path(text, "is too long".into()));
    }
    Ok(())
}

/// No entry may sit beneath another entry that is not a directory: the first
/// could be a symlink that the second is then written through.
fn check_no_nesting(paths: &[(PathBuf, bool)]) -> Result<(), UnsafePackage> {
    let leaves: HashSet<&Path> = paths
        .iter()
        .filter(|(_, dir)| !dir)
        .map(|(p, _)| p.as_path())
        .collect();
    let mut seen = BTreeSet::new();
    for (path, _) in paths {
        if !seen.insert(path.as_path()) {
            continue;
        }
        if let Some(parent) = path.ancestors().skip(1).find(|a| leaves.contains(a)) {
            return Err(unsafe_path(
                &path.display().to_string(),
                format!(
                    "lies beneath {}, which is not a directory",
                    parent.display()
                ),
            ));
        }
    }
    Ok(())
}

/// Each listed entry exists as its type says, with no symlink on its way, and
/// each file has the listed size and sha256.
fn check_entries(root: &Beneath, paths_json: &PathsJson) -> Result<(), UnsafePackage> {
    let mut directories: HashSet<PathBuf> = HashSet::new();
    for entry in &paths_json.paths {
        let path = &entry.relative_path;
        let shown = path.display().to_string();
        for parent in path.ancestors().skip(1) {
            if parent.as_os_str().is_empty() || directories.contains(parent) {
                continue;
            }
            match root.metadata(parent) {
                Ok(m) if m.kind == Kind::Directory => {
                    directories.insert(parent.to_path_buf());
                }
                Ok(_) => {
                    return Err(unsafe_path(
                        &shown,
                        format!(
                            "its parent {} is a symlink or a file in the package",
                            parent.display()
                        ),
                    ))
                }
                Err(e) => return Err(unsafe_path(&shown, format!("cannot be read: {e}"))),
            }
        }
        let meta = root
            .metadata(path)
            .map_err(|e| unsafe_path(&shown, format!("is listed but cannot be read: {e}")))?;
        let expected = match entry.path_type {
            PathType::HardLink => Kind::File,
            PathType::SoftLink => Kind::Symlink,
            PathType::Directory => Kind::Directory,
        };
        if meta.kind != expected {
            return Err(unsafe_path(
                &shown,
                format!(
                    "is listed as a {:?} but the package holds a {:?}",
                    expected, meta.kind
                ),
            ));
        }
        if entry.path_type == PathType::HardLink {
            check_file_content(root, path, entry.size_in_bytes, entry.sha256.as_ref())?;
        }
    }
    Ok(())
}

/// The file's size and sha256, where `paths.json` lists them.
fn check_file_content(
    root: &Beneath,
    path: &Path,
    size: Option<u64>,
    sha256: Option<&rattler_digest::Sha256Hash>,
) -> Result<(), UnsafePackage> {
    let shown = path.display().to_string();
    if size.is_none() && sha256.is_none() {
        return Ok(());
    }
    let mut file = root
        .open_file(path)
        .map_err(|e| unsafe_path(&shown, format!("cannot be opened: {e}")))?;
    let actual_size = file
        .metadata()
        .map_err(|e| unsafe_path(&shown, e.to_string()))?
        .len();
    if let Some(size) = size {
        if size != actual_size {
            return Err(unsafe_path(
                &shown,
                format!("has {actual_size} bytes where paths.json says {size}"),
            ));
        }
    }
    if let Some(expected) = sha256 {
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; 64 << 10];
        loop {
            let n = file
                .read(&mut buffer)
                .map_err(|e| unsafe_path(&shown, e.to_string()))?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
        }
        if hasher.finalize().as_slice() != expected.as_slice() {
            return Err(unsafe_path(
                &shown,
                "does not match its sha256 in paths.json".into(),
            ));
        }
    }
    Ok(())
}

fn unsafe_path(path: &str, reason: String) -> UnsafePackage {
    UnsafePackage {
        path: crate::error::clip(path, 200).into_owned(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_must_be_relative_and_normalised() {
        for bad in [
            "/etc/passwd",
            "../../../trousse.db",
            "lib/../../x",
            "./lib/x",
            "",
        ] {
            assert!(check_path(Path::new(bad)).is_err(), "{bad}");
        }
        check_path(Path::new("lib/python3.12/site-packages/x.py")).unwrap();
        assert!(check_path(Path::new(&"a/".repeat(3000))).is_err());
    }

    #[test]
    fn nothing_lies_beneath_a_file_or_a_link() {
        let paths = vec![
            (PathBuf::from("x"), false),
            (PathBuf::from("x/secret.txt"), false),
        ];
        let e = check_no_nesting(&paths).unwrap_err();
        assert!(e.to_string().contains("x/secret.txt"), "{e}");
        let ok = vec![
            (PathBuf::from("x"), true),
            (PathBuf::from("x/file.txt"), false),
            (PathBuf::from("y/file.txt"), false),
        ];
        check_no_nesting(&ok).unwrap();
    }
}
