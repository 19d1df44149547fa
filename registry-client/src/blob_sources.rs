//! Which repository of a registry received each blob, remembered on disk as
//! docker does, so that a push to another repository of the same registry
//! mounts the blob from there instead of uploading it again.

use std::path::{Path, PathBuf};

/// The memory of one registry: `DIR/HOST/sha256/HEX` holds a repository name.
#[derive(Debug, Clone)]
pub struct BlobSources {
    dir: PathBuf,
}

impl BlobSources {
    /// The memory of registry `host` under `root`.
    pub fn new(root: &Path, host: &str) -> Self {
        let host: String = host
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        Self {
            dir: root.join(host),
        }
    }

    fn path(&self, digest: &str) -> Option<PathBuf> {
        let (algorithm, hex) = digest.split_once(':')?;
        let safe = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric());
        (safe(algorithm) && safe(hex)).then(|| self.dir.join(algorithm).join(hex))
    }

    /// The repository that last received `digest`, if one is remembered.
    pub fn repository(&self, digest: &str) -> Option<String> {
        let text = std::fs::read_to_string(self.path(digest)?).ok()?;
        let name = text.trim();
        (!name.is_empty()).then(|| name.to_string())
    }

    /// Remembers that `repository` holds `digest` (best effort: a lost entry
    /// only costs an upload).
    pub fn remember(&self, digest: &str, repository: &str) {
        let Some(path) = self.path(digest) else {
            return;
        };
        if self.repository(digest).as_deref() == Some(repository) {
            return;
        }
        if let Some(parent) = path.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let _ = crate::layout::write_atomically(&path, repository.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_the_last_repository_per_digest_and_registry() {
        let dir = tempfile::tempdir().unwrap();
        let a = BlobSources::new(dir.path(), "127.0.0.1:5000");
        let b = BlobSources::new(dir.path(), "registry.example.org");
        let digest = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(a.repository(&digest), None);
        a.remember(&digest, "courses/a");
        assert_eq!(a.repository(&digest).as_deref(), Some("courses/a"));
        assert_eq!(b.repository(&digest), None);
        a.remember(&digest, "courses/b");
        assert_eq!(a.repository(&digest).as_deref(), Some("courses/b"));
        a.remember("sha256:../../x", "evil");
        assert_eq!(a.repository("sha256:../../x"), None);
    }
}
