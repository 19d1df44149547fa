//! A content-addressed directory of blobs (`blobs/sha256/<hex>`), written atomically.

use std::{
    fs::File,
    io::Write,
    path::{Path, PathBuf},
};

use crate::{digest::HashingWriter, Digest, RegistryError};

/// A directory holding blobs by digest, as in an OCI image layout.
#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
}

/// A blob being written to a store; published under its digest by [`BlobWriter::commit`].
pub struct BlobWriter {
    file: HashingWriter<tempfile::NamedTempFile>,
    store: BlobStore,
}

impl BlobStore {
    /// A store rooted at `root` (the directory that holds `blobs/`).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The directory that holds `blobs/`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob with this digest lives (whether or not it exists).
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs").join("sha256").join(digest.hex())
    }

    /// Whether the store holds this blob.
    pub fn contains(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    /// The size of a stored blob.
    pub fn size(&self, digest: &Digest) -> Result<u64, RegistryError> {
        let path = self.path(digest);
        std::fs::metadata(&path)
            .map(|m| m.len())
            .map_err(|_| RegistryError::MissingBlob(digest.to_string(), self.root.clone()))
    }

    fn blob_dir(&self) -> Result<PathBuf, RegistryError> {
        let dir = self.root.join("blobs").join("sha256");
        fs_err::create_dir_all(&dir).map_err(|e| RegistryError::Io {
            action: "creating blob directory",
            path: dir.clone(),
            source: e,
        })?;
        Ok(dir)
    }

    /// Starts writing a new blob; its digest is known when it is committed.
    pub fn writer(&self) -> Result<BlobWriter, RegistryError> {
        let dir = self.blob_dir()?;
        let tmp = tempfile::Builder::new()
            .prefix(".partial-")
            .tempfile_in(&dir)
            .map_err(RegistryError::io("creating temporary blob in", &dir))?;
        Ok(BlobWriter {
            file: HashingWriter::new(tmp),
            store: self.clone(),
        })
    }

    /// Stores bytes and returns their digest.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<Digest, RegistryError> {
        let digest = Digest::of_bytes(bytes);
        if !self.contains(&digest) {
            let mut w = self.writer()?;
            w.write_all(bytes)
                .map_err(RegistryError::io("writing blob in", &self.root))?;
            w.commit()?;
        }
        Ok(digest)
    }

    /// Reads a whole blob and checks it against its digest.
    pub fn read_verified(&self, digest: &Digest) -> Result<Vec<u8>, RegistryError> {
        let path = self.path(digest);
        let bytes = std::fs::read(&path)
            .map_err(|_| RegistryError::MissingBlob(digest.to_string(), self.root.clone()))?;
        let actual = Digest::of_bytes(&bytes);
        if &actual != digest {
            return Err(RegistryError::DigestMismatch {
                expected: digest.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(bytes)
    }

    /// Copies a blob from another store, hard-linking when both share a filesystem.
    pub fn import_from(&self, other: &BlobStore, digest: &Digest) -> Result<(), RegistryError> {
        if self.contains(digest) {
            return Ok(());
        }
        let src = other.path(digest);
        if !src.is_file() {
            return Err(RegistryError::MissingBlob(
                digest.to_string(),
                other.root.clone(),
            ));
        }
        let dir = self.blob_dir()?;
        let dst = self.path(digest);
        let tmp = dir.join(format!(
            ".partial-import-{}-{}",
            digest.hex(),
            std::process::id()
        ));
        let _ = std::fs::remove_file(&tmp);
        if std::fs::hard_link(&src, &tmp).is_err() {
            std::fs::copy(&src, &tmp).map_err(RegistryError::io("copying blob to", &tmp))?;
        }
        std::fs::rename(&tmp, &dst).map_err(RegistryError::io("publishing blob", &dst))
    }

    /// A fresh temporary path inside the store, for a blob being downloaded.
    pub fn partial_path(&self, digest: &Digest) -> Result<PathBuf, RegistryError> {
        let dir = self.blob_dir()?;
        Ok(dir.join(format!(".partial-{}-{}", digest.hex(), std::process::id())))
    }

    /// Checks a downloaded file against its digest and moves it into place.
    pub fn commit_partial(&self, partial: &Path, digest: &Digest) -> Result<(), RegistryError> {
        let file = File::open(partial).map_err(RegistryError::io("reading", partial))?;
        let (actual, _) = Digest::of_reader(std::io::BufReader::new(file))
            .map_err(RegistryError::io("reading", partial))?;
        if &actual != digest {
            return Err(RegistryError::DigestMismatch {
                expected: digest.to_string(),
                actual: actual.to_string(),
            });
        }
        let dst = self.path(digest);
        std::fs::rename(partial, &dst).map_err(RegistryError::io("publishing blob", &dst))
    }

    /// Opens a stored blob for reading.
    pub fn open(&self, digest: &Digest) -> Result<File, RegistryError> {
        File::open(self.path(digest))
            .map_err(|_| RegistryError::MissingBlob(digest.to_string(), self.root.clone()))
    }
}

impl BlobWriter {
    /// Hashes what was written, then moves it into place under its digest.
    pub fn commit(self) -> Result<(Digest, u64), RegistryError> {
        let (digest, size, mut tmp) = self.file.finish();
        tmp.flush()
            .map_err(RegistryError::io("flushing blob", tmp.path()))?;
        let dst = self.store.path(&digest);
        if dst.is_file() {
            return Ok((digest, size));
        }
        tmp.persist(&dst).map_err(|e| RegistryError::Io {
            action: "publishing blob",
            path: dst.clone(),
            source: e.error,
        })?;
        Ok((digest, size))
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_blobs_under_their_digest() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::new(dir.path());
        let d = store.put_bytes(b"layer").unwrap();
        assert!(store.contains(&d));
        assert_eq!(store.read_verified(&d).unwrap(), b"layer");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("blobs/sha256"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with(".partial")
            })
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn detects_corrupted_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::new(dir.path());
        let d = store.put_bytes(b"layer").unwrap();
        std::fs::write(store.path(&d), b"tampered").unwrap();
        assert!(matches!(
            store.read_verified(&d),
            Err(RegistryError::DigestMismatch { .. })
        ));
    }
}
