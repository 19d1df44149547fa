//! The repository's files as one layer above the environment: in the
//! notebook user's home (as repo2docker puts them) and at [`REPO_DIR`]
//! (which a hub's persistent home volume does not hide), owned by the
//! user, modes kept, times from the commit, with the source record.

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::tree::{RepoNode, RepoTree, SubmoduleRecord};
use crate::{
    cache::CacheDir,
    layer::{cached_layer, Compression, EntryContent, Layer, TarEntries, TarEntry},
    spec::NotebookUser,
    BuildError,
};

/// Where the repository's files are in the image, besides the home.
pub const REPO_DIR: &str = "/srv/repo";

/// Where the source record is written, relative to the prefix.
pub const SOURCE_RECORD_IN_PREFIX: &str = "conda-meta/trousse-source.json";

/// Bumped whenever the content layer's bytes change for the same content.
const CONTENT_FORMAT: u32 = 1;

/// Which commit of which repository an image was built from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceRecord {
    /// The repository URL (without credentials).
    pub url: String,
    /// The ref asked for (a branch, a tag, a commit).
    pub reference: String,
    /// The commit it resolved to.
    pub commit: String,
    /// The submodules read, with their commits.
    pub submodules: Vec<SubmoduleRecord>,
}

/// What the content layer is made from.
#[derive(Debug, Clone)]
pub struct RepoContent {
    /// The files.
    pub tree: RepoTree,
    /// The commit time, in seconds since the epoch: every entry's time.
    pub time: i64,
    /// The source record.
    pub record: SourceRecord,
}

impl RepoContent {
    /// The sha256 of everything the layer holds (files, modes, links, record).
    pub fn digest(&self) -> String {
        let mut hash = Sha256::new();
        hash.update(format!("trousse-content-{CONTENT_FORMAT}\0{}\0", self.time));
        hash.update(serde_json::to_vec(&self.record).unwrap_or_default());
        for (path, node) in &self.tree.nodes {
            hash.update(path.as_bytes());
            match node {
                RepoNode::Directory => hash.update(b"\0d\0"),
                RepoNode::Symlink(target) => {
                    hash.update(b"\0l\0");
                    hash.update(target.as_bytes());
                }
                RepoNode::File { data, executable } => {
                    hash.update(if *executable { b"\0x\0" } else { b"\0f\0" });
                    hash.update(Sha256::digest(data));
                }
            }
            hash.update(b"\0");
        }
        hex::encode(hash.finalize())
    }
}

/// The content layer, from the cache or newly written.
pub fn content_layer(
    content: &RepoContent,
    user: &NotebookUser,
    prefix: &str,
    cache: &CacheDir,
    compression: Compression,
) -> Result<Layer, BuildError> {
    let key = hex::encode(Sha256::digest(
        serde_json::json!({
            "format": CONTENT_FORMAT,
            "content": content.digest(),
            "user": [&user.name, user.uid, user.gid, user.home()],
            "prefix": prefix,
            "compression": compression,
        })
        .to_string(),
    ));
    let (blob, cached) = match cached_layer(cache, &key) {
        Some(blob) => (blob, true),
        None => {
            let blob = entries(content, user, prefix)?.write_layer(&cache.blobs(), compression)?;
            cache.write_record(&key, &blob)?;
            (blob, false)
        }
    };
    Ok(Layer {
        blob,
        packages: Vec::new(),
        holds: Some("repository files"),
        cached,
    })
}

/// The layer's entries: each file twice (the second a hard link), and the record.
fn entries(
    content: &RepoContent,
    user: &NotebookUser,
    prefix: &str,
) -> Result<TarEntries, BuildError> {
    let time = content.time.max(0) as u64;
    let owned = |content: EntryContent, mode: u32| TarEntry {
        content,
        mode,
        uid: user.uid,
        gid: user.gid,
        mtime: time,
    };
    let home = user.home().trim_matches('/').to_string();
    let repo = REPO_DIR.trim_matches('/').to_string();
    let mut entries = TarEntries::default();
    for root in [&home, &repo] {
        if let Some((parent, _)) = root.rsplit_once('/') {
            entries.add_parents(parent, time);
        }
        entries.insert(root.clone(), owned(EntryContent::Directory, 0o755));
    }
    for (path, node) in &content.tree.nodes {
        let (first, second) = {
            let mut both = [format!("{home}/{path}"), format!("{repo}/{path}")];
            both.sort();
            let [a, b] = both;
            (a, b)
        };
        match node {
            RepoNode::Directory => {
                entries.insert(first, owned(EntryContent::Directory, 0o755));
                entries.insert(second, owned(EntryContent::Directory, 0o755));
            }
            RepoNode::Symlink(target) => {
                let link = || owned(EntryContent::Symlink(target.into()), 0o777);
                entries.insert(first, link());
                entries.insert(second, link());
            }
            RepoNode::File { data, executable } => {
                let mode = if *executable { 0o755 } else { 0o644 };
                entries.insert(second, owned(EntryContent::HardLink(first.clone()), mode));
                entries.insert(first, owned(EntryContent::Bytes(data.clone()), mode));
            }
        }
    }
    let record = serde_json::to_vec_pretty(&content.record)
        .map_err(|e| BuildError::Internal(format!("writing the source record: {e}")))?;
    let record_path = format!("{}/{SOURCE_RECORD_IN_PREFIX}", prefix.trim_matches('/'));
    if let Some((parent, _)) = record_path.rsplit_once('/') {
        entries.add_parents(parent, time);
    }
    let mut record_entry = owned(EntryContent::Bytes(record), 0o644);
    (record_entry.uid, record_entry.gid) = (0, 0);
    entries.insert(record_path, record_entry);
    Ok(entries)
}
