//! Cache eviction: the least recently used entries go until the cache fits a size.
//!
//! An entry is what can go as a whole: an extracted package, a staged package,
//! a repodata file, a layer blob with its index record, or any other blob.
//! Staged packages hard-link their package's files, so sizes count each file
//! (inode) once, and removing an entry frees only the files no other entry holds.

use std::{
    collections::HashMap,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    time::SystemTime,
};

use serde::Serialize;
use trousse_registry_client::Digest;

use crate::{
    cache::{CacheDir, LayerBlob},
    BuildError,
};

/// What a garbage collection did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GcReport {
    /// Bytes the cache held before.
    pub bytes_before: u64,
    /// Bytes the cache holds now.
    pub bytes_after: u64,
    /// Entries removed.
    pub entries_removed: usize,
    /// Entries kept.
    pub entries_kept: usize,
}

/// One evictable unit of the cache.
#[derive(Debug)]
struct Entry {
    /// The paths removed together, the one that makes the entry visible first.
    paths: Vec<PathBuf>,
    /// When it was last used.
    used: SystemTime,
    /// The files it holds: (device, inode) and size.
    files: Vec<((u64, u64), u64)>,
}

/// Evicts least recently used entries until the cache holds at most `max_bytes`.
/// Waits for running builds (it takes the cache's exclusive lock).
pub fn collect_garbage(cache: &CacheDir, max_bytes: u64) -> Result<GcReport, BuildError> {
    let _exclusive = cache.lock_exclusive()?;
    remove_leftovers(cache)?;
    let mut entries = entries(cache)?;
    let mut links: HashMap<(u64, u64), (u32, u64)> = HashMap::new();
    for entry in &entries {
        for &(inode, size) in &entry.files {
            links.entry(inode).or_insert((0, size)).0 += 1;
        }
    }
    let bytes_before: u64 = links.values().map(|(_, size)| size).sum();
    let mut total = bytes_before;
    entries.sort_by_key(|e| e.used);
    let mut removed = 0;
    for entry in &entries {
        if total <= max_bytes {
            break;
        }
        remove_entry(&entry.paths)?;
        removed += 1;
        for (inode, _) in &entry.files {
            if let Some((count, size)) = links.get_mut(inode) {
                *count -= 1;
                if *count == 0 {
                    total -= *size;
                }
            }
        }
    }
    Ok(GcReport {
        bytes_before,
        bytes_after: total,
        entries_removed: removed,
        entries_kept: entries.len() - removed,
    })
}

/// Removes what interrupted builds left behind (`.partial-*`); no build runs now.
fn remove_leftovers(cache: &CacheDir) -> Result<(), BuildError> {
    let wheels = cache.root().join("pypi").join("wheels");
    for dir in [cache.root().join("staged"), blob_dir(cache), wheels] {
        for child in children(&dir)? {
            let name = child.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.starts_with(".partial-") {
                remove_path(&child)?;
            }
        }
    }
    Ok(())
}

fn blob_dir(cache: &CacheDir) -> PathBuf {
    cache.blobs().root().join("blobs").join("sha256")
}

/// Every entry of the cache with its last use and its files.
fn entries(cache: &CacheDir) -> Result<Vec<Entry>, BuildError> {
    let mut entries = Vec::new();
    let mut blobs_with_record = std::collections::HashSet::new();
    for record in children(&cache.layer_records())? {
        let blob = std::fs::read(&record)
            .ok()
            .and_then(|b| serde_json::from_slice::<LayerBlob>(&b).ok())
            .and_then(|b| b.digest.parse::<Digest>().ok())
            .map(|d| cache.blobs().path(&d))
            .filter(|p| p.is_file());
        let mut paths = vec![record];
        if let Some(blob) = blob {
            blobs_with_record.insert(blob.clone());
            paths.push(blob);
        }
        entries.push(entry(paths)?);
    }
    for blob in children(&blob_dir(cache))? {
        if !blobs_with_record.contains(&blob) {
            entries.push(entry(vec![blob])?);
        }
    }
    // PyPI: index pages, PEP 658 metadata files and wheels, one file each
    let pypi = cache.root().join("pypi");
    let pypi_dirs = ["simple", "metadata", "wheels"].map(|d| pypi.join(d));
    for dir in [cache.root().join("staged"), cache.repodata()]
        .into_iter()
        .chain(pypi_dirs)
    {
        for child in children(&dir)? {
            entries.push(entry(vec![child])?);
        }
    }
    // rattler's package caches, one per subdir (`packages/SUBDIR/`, see fetch.rs),
    // and entries of the flat layout that came before
    for child in children(&cache.packages())? {
        if is_subdir_cache(&child) {
            package_entries(&child, &mut entries)?;
        }
    }
    package_entries(&cache.packages(), &mut entries)?;
    mirror_entries(&cache.root().join("git"), &mut entries)?;
    Ok(entries)
}

/// The git mirrors: `NAME.git/` with its `NAME.lock`, whose time is the
/// mirror's last use (each use rewrites it).
fn mirror_entries(dir: &Path, entries: &mut Vec<Entry>) -> Result<(), BuildError> {
    for child in children(dir)? {
        if child.extension().is_some_and(|e| e == "git") && child.is_dir() {
            let lock = child.with_extension("lock");
            let mut paths = vec![child];
            if lock.is_file() {
                paths.push(lock);
            }
            entries.push(entry(paths)?);
        }
    }
    Ok(())
}

/// The extracted packages of one rattler package cache: `NAME-VERSION-BUILD/`
/// with its `NAME-VERSION-BUILD.lock`.
fn package_entries(dir: &Path, entries: &mut Vec<Entry>) -> Result<(), BuildError> {
    let packages = children(dir)?;
    for child in &packages {
        if is_subdir_cache(child) {
            continue;
        }
        if child.extension().is_some_and(|e| e == "lock") && child.with_extension("").is_dir() {
            continue;
        }
        let mut paths = vec![child.clone()];
        let lock = PathBuf::from(format!("{}.lock", child.display()));
        if child.is_dir() && lock.is_file() {
            paths.push(lock);
        }
        entries.push(entry(paths)?);
    }
    Ok(())
}

/// Whether a directory of `packages/` is the package cache of a subdir.
fn is_subdir_cache(path: &Path) -> bool {
    path.is_dir()
        && path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.parse::<rattler_conda_types::Subdir>().is_ok())
}

/// The sorted children of a directory (none when it does not exist).
fn children(dir: &Path) -> Result<Vec<PathBuf>, BuildError> {
    let read = match std::fs::read_dir(dir) {
        Ok(read) => read,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(BuildError::io("listing", dir)(e)),
    };
    let mut paths = Vec::new();
    for child in read {
        paths.push(child.map_err(BuildError::io("listing", dir))?.path());
    }
    paths.sort();
    Ok(paths)
}

fn entry(paths: Vec<PathBuf>) -> Result<Entry, BuildError> {
    let mut used = SystemTime::UNIX_EPOCH;
    let mut files = Vec::new();
    for path in &paths {
        let meta =
            std::fs::symlink_metadata(path).map_err(BuildError::io("reading cache entry", path))?;
        used = used.max(meta.modified().unwrap_or(SystemTime::UNIX_EPOCH));
        for item in walkdir::WalkDir::new(path) {
            let item = item.map_err(|e| BuildError::Io {
                action: "reading cache entry",
                path: path.clone(),
                source: e.into(),
            })?;
            let meta = item.metadata().map_err(|e| BuildError::Io {
                action: "reading cache entry",
                path: item.path().to_path_buf(),
                source: e.into(),
            })?;
            if meta.is_file() {
                files.push(((meta.dev(), meta.ino()), meta.len()));
            }
        }
    }
    Ok(Entry { paths, used, files })
}

/// Removes an entry: each path is first renamed aside, so no reader ever sees
/// half of it, then deleted.
fn remove_entry(paths: &[PathBuf]) -> Result<(), BuildError> {
    for path in paths {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("entry");
        let aside = path.with_file_name(format!(".partial-gc-{name}"));
        match std::fs::rename(path, &aside) {
            Ok(()) => {}
            // a blob two layer records share went with the first
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(BuildError::io("evicting", path)(e)),
        }
        remove_path(&aside)?;
    }
    Ok(())
}

fn remove_path(path: &Path) -> Result<(), BuildError> {
    let result = if std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    result.map_err(BuildError::io("removing", path))
}

/// Parses a size such as `10GiB`, `500MB` or `1048576`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    text.trim()
        .parse::<bytesize::ByteSize>()
        .map(|s| s.as_u64())
        .map_err(|e| format!("invalid size '{text}': {e} (use e.g. 10GiB, 500MB or a byte count)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("10GiB"), Ok(10 << 30));
        assert_eq!(parse_size("500 MB"), Ok(500_000_000));
        assert!(parse_size("ten gigs").is_err());
    }
}
