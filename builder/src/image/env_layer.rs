//! The environment layer: the small top layer with what belongs to the
//! environment rather than to one package (lock, conda-meta history, the
//! notebook user), and the files of packages that overwrite each other,
//! resolved as rattler resolves them when installing into one prefix.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use rattler_conda_types::{PackageRecord, PrefixRecord};
use trousse_registry_client::BlobStore;

use crate::{
    image::layer::{entry_from_disk, Compression, EntryContent, Layer, TarEntries, TarEntry},
    settings::NotebookUser,
    stage::{conda_meta_name, normalize_prefix_record, StagedPackage},
    BuildError,
};

/// Where rattler puts the files of packages that lose a clobber.
pub(crate) const CLOBBERS_DIR: &str = "__clobbers__";

/// The backup-exclusion tag rattler writes at the root of every prefix.
pub(crate) const CACHEDIR_TAG: &str = "CACHEDIR.TAG";

/// Where the lock file is written inside the prefix.
pub(crate) const LOCK_PATH_IN_PREFIX: &str = "conda-meta/trousse.lock";

/// What the environment layer is made from.
pub(crate) struct EnvironmentLayerInput<'a> {
    /// Every package of the environment.
    pub packages: &'a [StagedPackage],
    /// The lock file text.
    pub lock_text: &'a str,
    /// The in-image prefix.
    pub prefix: &'a str,
    /// The notebook user.
    pub user: &'a NotebookUser,
    /// The time written for everything this layer creates.
    pub epoch: i64,
    /// `/etc/passwd` of the base image, if it has one.
    pub base_passwd: Option<String>,
    /// `/etc/group` of the base image, if it has one.
    pub base_group: Option<String>,
}

/// One package's files that another package's files displace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Clobbers {
    /// For each package index, the paths moved to `__clobbers__/<name>/`.
    pub moved: BTreeMap<usize, BTreeSet<PathBuf>>,
}

/// Computes which package files lose, as rattler's installer resolves them:
/// packages ranked in topological order (dependencies first); at every path
/// the highest-ranked package touching it decides. If it has a file there,
/// every other file at or below that path loses; if it has a directory,
/// files of others at that path lose and the search goes on below.
pub(crate) fn resolve_clobbers(packages: &[StagedPackage]) -> Clobbers {
    let records: Vec<&PackageRecord> = packages.iter().map(|p| &p.record.package_record).collect();
    let sorted = PackageRecord::sort_topologically(records);
    let mut rank = vec![0; packages.len()];
    for (r, record) in sorted.iter().enumerate() {
        if let Some(i) = packages
            .iter()
            .position(|p| std::ptr::eq(&p.record.package_record, *record))
        {
            rank[i] = r;
        }
    }
    let mut root = PathNode::default();
    for (i, package) in packages.iter().enumerate() {
        for entry in &package.paths {
            root.insert(i, &entry.relative_path);
        }
    }
    let mut moved: BTreeMap<usize, BTreeSet<PathBuf>> = BTreeMap::new();
    root.resolve(&rank, &mut PathBuf::new(), &mut moved);
    Clobbers { moved }
}

/// A node of the trie of all package paths.
#[derive(Default)]
struct PathNode {
    /// Packages with a path at or below this node.
    touching: BTreeSet<usize>,
    /// Packages with a file exactly here.
    files: BTreeSet<usize>,
    children: BTreeMap<std::ffi::OsString, PathNode>,
}

impl PathNode {
    fn insert(&mut self, package: usize, path: &Path) {
        let mut node = self;
        node.touching.insert(package);
        for component in path.components() {
            node = node
                .children
                .entry(component.as_os_str().to_os_string())
                .or_default();
            node.touching.insert(package);
        }
        node.files.insert(package);
    }

    fn resolve(
        &self,
        rank: &[usize],
        path: &mut PathBuf,
        moved: &mut BTreeMap<usize, BTreeSet<PathBuf>>,
    ) {
        let Some(&winner) = self.touching.iter().max_by_key(|&&p| rank[p]) else {
            return;
        };
        if self.files.contains(&winner) {
            self.move_all_but(winner, path, moved);
            return;
        }
        for &loser in &self.files {
            moved.entry(loser).or_default().insert(path.clone());
        }
        for (name, child) in &self.children {
            path.push(name);
            child.resolve(rank, path, moved);
            path.pop();
        }
    }

    /// Moves every file at or below this node to the clobbers, except the keeper's file here.
    fn move_all_but(
        &self,
        keeper: usize,
        path: &mut PathBuf,
        moved: &mut BTreeMap<usize, BTreeSet<PathBuf>>,
    ) {
        for &p in &self.files {
            if p != keeper {
                moved.entry(p).or_default().insert(path.clone());
            }
        }
        for (name, child) in &self.children {
            path.push(name);
            child.move_all_but(usize::MAX, path, moved);
            path.pop();
        }
    }
}

/// Writes the environment layer.
pub(crate) fn environment_layer(
    input: &EnvironmentLayerInput<'_>,
    blobs: &BlobStore,
    compression: Compression,
) -> Result<Layer, BuildError> {
    let epoch = input.epoch.max(0) as u64;
    let prefix = input.prefix.trim_matches('/');
    let mut entries = TarEntries::default();
    add_environment_files(&mut entries, input, prefix, epoch)?;
    add_account_files(&mut entries, input, prefix, epoch);
    add_clobber_fixups(&mut entries, input.packages, prefix, epoch)?;
    let blob = entries.write_layer(blobs, compression)?;
    Ok(Layer {
        blob,
        packages: Vec::new(),
        holds: Some("environment files"),
        cached: false,
    })
}

/// A file the builder writes, owned by root, with the build's time.
fn own_file(bytes: Vec<u8>, epoch: u64) -> TarEntry {
    TarEntry {
        content: EntryContent::Bytes(bytes),
        mode: 0o644,
        uid: 0,
        gid: 0,
        mtime: epoch,
    }
}

/// The lock, rattler's `CACHEDIR.TAG` and `conda-meta/history`.
fn add_environment_files(
    entries: &mut TarEntries,
    input: &EnvironmentLayerInput<'_>,
    prefix: &str,
    epoch: u64,
) -> Result<(), BuildError> {
    entries.add_parents(&format!("{prefix}/conda-meta"), epoch);
    entries.insert(
        format!("{prefix}/{LOCK_PATH_IN_PREFIX}"),
        own_file(input.lock_text.as_bytes().to_vec(), epoch),
    );
    if let Some(first) = input.packages.first() {
        // read beneath the staging directory: a package may not make it a link to a host file
        let root = first.open_root()?;
        if let Ok(mut file) = root.open_file(Path::new(CACHEDIR_TAG)) {
            let mut tag = Vec::new();
            if std::io::Read::read_to_end(&mut file, &mut tag).is_ok() {
                entries.insert(format!("{prefix}/{CACHEDIR_TAG}"), own_file(tag, epoch));
            }
        }
    }
    entries.insert(
        format!("{prefix}/conda-meta/history"),
        own_file(history(input.packages, input.epoch).into_bytes(), epoch),
    );
    Ok(())
}

/// The notebook user in `/etc/passwd` and `/etc/group` (merged with the
/// base's) and its home directory.
fn add_account_files(
    entries: &mut TarEntries,
    input: &EnvironmentLayerInput<'_>,
    prefix: &str,
    epoch: u64,
) {
    let user = input.user;
    let home = user.home();
    let shell = if input
        .packages
        .iter()
        .any(|p| p.record.package_record.name.as_normalized() == "bash")
    {
        format!("/{prefix}/bin/bash")
    } else {
        "/bin/sh".to_string()
    };
    entries.add_parents("etc", epoch);
    let passwd = merge_account_file(
        input
            .base_passwd
            .as_deref()
            .unwrap_or("root:x:0:0:root:/root:/bin/sh\n"),
        &user.name,
        &format!("{}:x:{}:{}::{home}:{shell}", user.name, user.uid, user.gid),
    );
    entries.insert("etc/passwd".into(), own_file(passwd.into_bytes(), epoch));
    let group_present = input.base_group.as_deref().is_some_and(|g| {
        g.lines()
            .any(|l| l.split(':').nth(2) == Some(&user.gid.to_string()))
    });
    let group = if group_present {
        input.base_group.clone().unwrap_or_default()
    } else {
        merge_account_file(
            input.base_group.as_deref().unwrap_or("root:x:0:\n"),
            &user.group,
            &format!("{}:x:{}:", user.group, user.gid),
        )
    };
    entries.insert("etc/group".into(), own_file(group.into_bytes(), epoch));
    let home = home.trim_matches('/');
    if let Some((parent, _)) = home.rsplit_once('/') {
        entries.add_parents(parent, epoch);
    }
    entries.insert(
        home.to_string(),
        TarEntry {
            content: EntryContent::Directory,
            mode: 0o755,
            uid: user.uid,
            gid: user.gid,
            mtime: epoch,
        },
    );
}

/// Adds the winners of clobbered paths, the losers under `__clobbers__/`, and
/// the conda-meta records that say so. Overlay order then no longer matters.
fn add_clobber_fixups(
    entries: &mut TarEntries,
    packages: &[StagedPackage],
    prefix: &str,
    epoch: u64,
) -> Result<(), BuildError> {
    let clobbers = resolve_clobbers(packages);
    if clobbers.moved.is_empty() {
        return Ok(());
    }
    add_clobbered_files(entries, packages, &clobbers.moved, prefix, epoch)?;
    for (&i, moved) in &clobbers.moved {
        let package = &packages[i];
        let json = moved_record(package, moved)?;
        entries.insert(
            format!("{prefix}/conda-meta/{}", conda_meta_name(&package.record)),
            TarEntry {
                content: EntryContent::Bytes(json.into_bytes()),
                mode: 0o644,
                uid: 0,
                gid: 0,
                mtime: epoch,
            },
        );
    }
    Ok(())
}

/// The files at every clobbered path (and under `__clobbers__/`), each from
/// the package the final tree gives it to.
fn add_clobbered_files(
    entries: &mut TarEntries,
    packages: &[StagedPackage],
    moved: &BTreeMap<usize, BTreeSet<PathBuf>>,
    prefix: &str,
    epoch: u64,
) -> Result<(), BuildError> {
    // The final tree: every package path, at its own place or under __clobbers__.
    let mut final_tree: BTreeMap<PathBuf, (usize, PathBuf)> = BTreeMap::new();
    for (i, package) in packages.iter().enumerate() {
        let moved = moved.get(&i);
        for entry in &package.paths {
            let path = &entry.relative_path;
            let place = match moved {
                Some(m) if m.contains(path) => clobber_path(package, path),
                _ => path.clone(),
            };
            final_tree.insert(place, (i, path.clone()));
        }
    }
    let clobbered: BTreeSet<&PathBuf> = moved.values().flatten().collect();
    for (place, (i, source)) in &final_tree {
        let wanted = place.starts_with(CLOBBERS_DIR)
            || clobbered
                .iter()
                .any(|c| c.starts_with(place) || place.starts_with(c));
        if !wanted {
            continue;
        }
        let target = format!("{prefix}/{}", place.display());
        if let Some((parent, _)) = target.rsplit_once('/') {
            entries.add_parents(parent, epoch);
        }
        let package_epoch = crate::lockfile::record_timestamp(&packages[*i].record)
            .unwrap_or(0)
            .max(0) as u64;
        let root = packages[*i].open_root()?;
        entries.insert(target, entry_from_disk(&root, source, package_epoch)?);
    }
    Ok(())
}

/// A package's conda-meta record with its moved paths under `__clobbers__/`, as JSON.
fn moved_record(package: &StagedPackage, moved: &BTreeSet<PathBuf>) -> Result<String, BuildError> {
    let meta = package
        .root
        .join("conda-meta")
        .join(conda_meta_name(&package.record));
    let mut record = PrefixRecord::from_path(&meta).map_err(BuildError::io("reading", &meta))?;
    normalize_prefix_record(&mut record);
    for path in record.files.iter_mut() {
        if moved.contains(path) {
            *path = clobber_path(package, path);
        }
    }
    for entry in record.paths_data.paths.iter_mut() {
        if moved.contains(&entry.relative_path) {
            entry.original_path = Some(entry.relative_path.clone());
            entry.relative_path = clobber_path(package, &entry.relative_path);
        }
    }
    serde_json::to_string_pretty(&record).map_err(|e| BuildError::Io {
        action: "encoding conda-meta record",
        path: meta.clone(),
        source: e.into(),
    })
}

fn clobber_path(package: &StagedPackage, path: &Path) -> PathBuf {
    Path::new(CLOBBERS_DIR)
        .join(package.record.package_record.name.as_normalized())
        .join(path)
}

/// Replaces or appends the line of `name` in a passwd- or group-style file.
fn merge_account_file(base: &str, name: &str, line: &str) -> String {
    let mut out: Vec<&str> = base
        .lines()
        .filter(|l| l.split(':').next() != Some(name))
        .collect();
    out.push(line);
    let mut text = out.join("\n");
    text.push('\n');
    text
}

/// A conda-meta/history file that records one install of every package.
fn history(packages: &[StagedPackage], epoch: i64) -> String {
    let when = chrono::DateTime::from_timestamp(epoch, 0)
        .unwrap_or_default()
        .format("%Y-%m-%d %H:%M:%S");
    let mut lines: Vec<String> = packages
        .iter()
        .map(|p| {
            let r = &p.record;
            let channel = r.channel.as_deref().unwrap_or("").trim_end_matches('/');
            format!(
                "+{channel}/{}::{}-{}-{}",
                r.package_record.subdir,
                r.package_record.name.as_normalized(),
                r.package_record.version,
                r.package_record.build
            )
        })
        .collect();
    lines.sort();
    format!(
        "==> {when} <==\n# cmd: trousse build\n{}\n",
        lines.join("\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_account_files() {
        let base = "root:x:0:0:root:/root:/bin/bash\njovyan:x:1:1::/:/bin/false\n";
        let merged = merge_account_file(base, "jovyan", "jovyan:x:1000:100::/home/jovyan:/bin/sh");
        assert_eq!(
            merged,
            "root:x:0:0:root:/root:/bin/bash\njovyan:x:1000:100::/home/jovyan:/bin/sh\n"
        );
    }
}
