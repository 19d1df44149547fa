//! The repository's files as one layer above the environment: in the
//! notebook user's home (as repo2docker puts them) and at [`REPO_DIR`]
//! (which a hub's persistent home volume does not hide), owned by the
//! user, modes kept, times from the commit, with the source record.

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::tree::{RepoNode, RepoTree, SubmoduleRecord};

/// Where the repository's files are in the image, besides the home.
pub const REPO_DIR: &str = "/srv/repo";

/// Where the source record is written, relative to the prefix.
pub const SOURCE_RECORD_IN_PREFIX: &str = "conda-meta/trousse-source.json";

/// Bumped whenever the content layer's bytes change for the same content.
pub(crate) const CONTENT_FORMAT: u32 = 1;

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
