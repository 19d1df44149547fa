//! The layer of a repository's files: each file in the notebook user's home
//! and under `/srv/repo` (hard-linked), and the source record in the prefix.

use sha2::{Digest, Sha256};

use crate::{
    cache::CacheDir,
    image::layer::{cached_layer, Compression, EntryContent, Layer, TarEntries, TarEntry},
    settings::NotebookUser,
    source::repo::{RepoContent, RepoNode, CONTENT_FORMAT, REPO_DIR, SOURCE_RECORD_IN_PREFIX},
    BuildError,
};

/// The content layer, from the cache or newly written.
pub(crate) fn content_layer(
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
