//! The on-disk cache shared by builds: packages, repodata, staged packages,
//! layer blobs and their index. Everything is published by atomic rename.

pub(crate) mod fetch;
pub mod gc;

use std::path::{Path, PathBuf};

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use trousse_registry_client::BlobStore;

use crate::BuildError;

/// The cache directory and its parts.
#[derive(Debug, Clone)]
pub struct CacheDir {
    root: PathBuf,
}

/// A lock on the cache directory, released when dropped.
#[derive(Debug)]
pub struct CacheLock {
    _file: std::fs::File,
}

/// Marks a cache entry as just used (its modification time), for least-recently-used eviction.
pub fn mark_used(path: &Path) {
    if let Ok(file) = std::fs::File::open(path) {
        let _ = file.set_modified(std::time::SystemTime::now());
    }
}

/// The environment variable that sets the cache directory.
pub const CACHE_DIR_ENV: &str = "TROUSSE_CACHE_DIR";

impl CacheDir {
    /// A cache at `root`, created if missing.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self, BuildError> {
        let root = std::path::absolute(root.into())
            .map_err(BuildError::io("resolving cache directory", "."))?;
        for sub in ["packages", "repodata", "staged", "layers", "blobs"] {
            let dir = root.join(sub);
            std::fs::create_dir_all(&dir)
                .map_err(BuildError::io("creating cache directory", &dir))?;
        }
        Ok(Self { root })
    }

    /// The bytes a package installs, from its `info/paths.json`, when it is in
    /// the cache (a build fetched it); `None` otherwise.
    pub fn installed_size(&self, record: &rattler_conda_types::PackageRecord) -> Option<u64> {
        let dir = format!(
            "{}-{}-{}",
            record.name.as_normalized(),
            record.version,
            record.build
        );
        let file = self
            .packages()
            .join(&record.subdir)
            .join(dir)
            .join("info")
            .join("paths.json");
        // a package's own file, bounded before it is read
        if std::fs::metadata(&file).ok()?.len() > 64 << 20 {
            return None;
        }
        let paths: rattler_conda_types::package::PathsJson =
            serde_json::from_str(&std::fs::read_to_string(&file).ok()?).ok()?;
        Some(paths.paths.iter().filter_map(|p| p.size_in_bytes).sum())
    }

    /// `$TROUSSE_CACHE_DIR`, else the platform cache directory (`~/.cache/trousse`).
    pub fn default_location() -> PathBuf {
        std::env::var_os(CACHE_DIR_ENV)
            .map(PathBuf::from)
            .or_else(|| dirs::cache_dir().map(|d| d.join("trousse")))
            .unwrap_or_else(|| PathBuf::from(".trousse-cache"))
    }

    /// The cache's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Extracted conda packages (rattler's package cache).
    pub fn packages(&self) -> PathBuf {
        self.root.join("packages")
    }

    /// Downloaded repodata (rattler's repodata cache).
    pub fn repodata(&self) -> PathBuf {
        self.root.join("repodata")
    }

    /// The staging directory of one package build, by key.
    pub fn staged(&self, key: &str) -> PathBuf {
        self.root.join("staged").join(key)
    }

    /// The compressed layer blobs.
    pub fn blobs(&self) -> BlobStore {
        BlobStore::new(self.root.join("blobs"))
    }

    /// The directory of the layer index (`layers/<key>.json`).
    pub fn layer_records(&self) -> PathBuf {
        self.root.join("layers")
    }

    /// Reads a JSON record of the `layers/` index, if present and valid, and marks it used.
    pub fn read_record<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        let path = self.layer_records().join(format!("{key}.json"));
        let value = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
        mark_used(&path);
        Some(value)
    }

    /// Takes the cache's shared lock, held by every build: `cache gc` waits for them.
    pub fn lock_shared(&self) -> Result<CacheLock, BuildError> {
        self.lock(false)
    }

    /// Takes the cache's exclusive lock, held by `cache gc`: builds wait for it.
    pub fn lock_exclusive(&self) -> Result<CacheLock, BuildError> {
        self.lock(true)
    }

    fn lock(&self, exclusive: bool) -> Result<CacheLock, BuildError> {
        use fs4::fs_std::FileExt;
        let path = self.root.join(".lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(BuildError::io("opening the cache lock", &path))?;
        let held = if exclusive {
            FileExt::try_lock_exclusive(&file)
        } else {
            FileExt::try_lock_shared(&file)
        };
        if !matches!(held, Ok(true)) {
            tracing::info!("waiting for the lock on {}", path.display());
            if exclusive {
                FileExt::lock_exclusive(&file)
            } else {
                FileExt::lock_shared(&file)
            }
            .map_err(BuildError::io("locking the cache", &path))?;
        }
        Ok(CacheLock { _file: file })
    }

    /// Writes a JSON record of the `layers/` index atomically.
    pub fn write_record<T: Serialize>(&self, key: &str, value: &T) -> Result<(), BuildError> {
        let path = self.root.join("layers").join(format!("{key}.json"));
        let bytes = serde_json::to_vec(value).map_err(|e| BuildError::Io {
            action: "encoding cache record",
            path: path.clone(),
            source: e.into(),
        })?;
        trousse_registry_client::layout::write_atomically(&path, &bytes)?;
        Ok(())
    }

    /// Publishes a filled temporary directory as the staged entry `key`, by rename; returns it.
    pub fn publish_staged(&self, tmp: tempfile::TempDir, key: &str) -> Result<PathBuf, BuildError> {
        let root = self.staged(key);
        let staged = tmp.keep();
        if let Err(e) = std::fs::rename(&staged, &root) {
            let _ = std::fs::remove_dir_all(&staged);
            // another build published the same staging first: theirs is as good
            if !root.is_dir() {
                return Err(BuildError::io("publishing staged package", &root)(e));
            }
        }
        Ok(root)
    }

    /// A fresh temporary directory inside the cache, on the same filesystem as its entries.
    pub fn temp_dir(&self, prefix: &str) -> Result<tempfile::TempDir, BuildError> {
        let parent = self.root.join("staged");
        tempfile::Builder::new()
            .prefix(&format!(".partial-{prefix}-"))
            .tempdir_in(&parent)
            .map_err(BuildError::io("creating a temporary directory in", parent))
    }
}

/// A finished layer blob, as the layer cache records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerBlob {
    /// Digest of the compressed blob.
    pub digest: String,
    /// Digest of the uncompressed tar (the config's diff_id).
    pub diff_id: String,
    /// Size of the compressed blob.
    pub size: u64,
}
