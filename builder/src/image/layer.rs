//! The layer stage: deterministic, compressed tar layers, one per group of
//! the layer plan, each cached by a key that changes exactly when its bytes
//! would.

use std::{
    collections::BTreeMap,
    io::{Read, Write},
    path::{Path, PathBuf},
    sync::Arc,
};

use oci_spec::image::MediaType;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use trousse_registry_client::{blob_store::BlobWriter, digest::HashingWriter, BlobStore, Digest};

use crate::{
    cache::CacheDir,
    guard::beneath::{Beneath, Kind},
    lockfile::record_timestamp,
    stage::StagedPackage,
    BuildError,
};

/// Bumped whenever the layer bytes change for the same inputs.
const LAYER_FORMAT: u32 = 1;

/// How layer tars are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// gzip, level 6: every runtime reads it.
    Gzip,
    /// zstd, level 3: smaller and faster; needs a recent runtime.
    Zstd,
}

impl Compression {
    /// The OCI media type of a layer with this compression.
    pub fn media_type(self) -> MediaType {
        match self {
            Compression::Gzip => MediaType::ImageLayerGzip,
            Compression::Zstd => MediaType::ImageLayerZstd,
        }
    }
}

impl std::str::FromStr for Compression {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "gzip" => Ok(Compression::Gzip),
            "zstd" => Ok(Compression::Zstd),
            other => Err(format!("unknown compression '{other}': use gzip or zstd")),
        }
    }
}

pub(crate) use crate::cache::LayerBlob;

/// A layer of the image: its blob, the packages in it, and whether it was cached.
#[derive(Debug, Clone)]
pub struct Layer {
    /// The blob.
    pub blob: LayerBlob,
    /// The packages whose files it holds (file names); empty for the environment layer.
    pub packages: Vec<String>,
    /// What the layer holds, for the image history, when it is not packages.
    pub holds: Option<&'static str>,
    /// Whether the blob came from the cache.
    pub cached: bool,
}

/// What a package layer is made of: a staged conda package or a staged wheel.
pub(crate) trait LayerMember: Send + Sync {
    /// The staging cache key.
    fn key(&self) -> &str;
    /// What the layer history and progress call it.
    fn label(&self) -> String;
    /// The latest modification time of its files.
    fn epoch(&self) -> u64;
    /// Its staging directory, standing for the prefix.
    fn root(&self) -> &Path;
    /// Its files relative to the prefix, with a mode to force on some (records).
    fn files(&self) -> Vec<(PathBuf, Option<u32>)>;
}

impl LayerMember for crate::stage::wheels::StagedWheel {
    fn key(&self) -> &str {
        &self.key
    }
    fn label(&self) -> String {
        self.wheel.filename()
    }
    fn epoch(&self) -> u64 {
        crate::stage::wheels::WHEEL_EPOCH
    }
    fn root(&self) -> &Path {
        &self.root
    }
    fn files(&self) -> Vec<(PathBuf, Option<u32>)> {
        self.files
            .iter()
            .map(|f| (PathBuf::from(f), None))
            .collect()
    }
}

impl LayerMember for StagedPackage {
    fn key(&self) -> &str {
        &self.key
    }
    fn label(&self) -> String {
        self.record.identifier.to_string()
    }
    fn epoch(&self) -> u64 {
        record_timestamp(&self.record).unwrap_or(0).max(0) as u64
    }
    fn root(&self) -> &Path {
        &self.root
    }
    fn files(&self) -> Vec<(PathBuf, Option<u32>)> {
        let meta = Path::new("conda-meta").join(crate::stage::conda_meta_name(&self.record));
        self.paths
            .iter()
            .map(|p| (p.relative_path.clone(), None))
            .chain([(meta, Some(0o644))])
            .collect()
    }
}

/// The cache key of a layer of these packages.
pub(crate) fn layer_key(members: &[&dyn LayerMember], compression: Compression) -> String {
    let identity = serde_json::json!({
        "format": LAYER_FORMAT,
        "compression": compression,
        "staged": members.iter().map(|m| m.key()).collect::<Vec<_>>(),
    });
    hex::encode(Sha256::digest(identity.to_string().as_bytes()))
}

/// Returns the layer of these packages, from the cache or newly written.
pub(crate) fn package_layer(
    cache: &CacheDir,
    members: &[&dyn LayerMember],
    prefix: &str,
    compression: Compression,
) -> Result<Layer, BuildError> {
    let packages = members.iter().map(|m| m.label()).collect();
    let key = layer_key(members, compression);
    let blobs = cache.blobs();
    if let Some(blob) = cached_layer(cache, &key) {
        return Ok(Layer {
            blob,
            packages,
            holds: None,
            cached: true,
        });
    }
    let mut entries = TarEntries::default();
    for member in members {
        add_package(&mut entries, *member, prefix)?;
    }
    let blob = entries.write_layer(&blobs, compression)?;
    cache.write_record(&key, &blob)?;
    Ok(Layer {
        blob,
        packages,
        holds: None,
        cached: false,
    })
}

/// Adds a staged package's files (its conda-meta record among them) under `prefix`.
/// Files keep their mode and mtime (clamped to the package's build time);
/// directories get mode 755 and the build time.
fn add_package(
    entries: &mut TarEntries,
    package: &dyn LayerMember,
    prefix: &str,
) -> Result<(), BuildError> {
    let epoch = package.epoch();
    let prefix = prefix.trim_matches('/');
    let root = Beneath::open(package.root())
        .map(Arc::new)
        .map_err(BuildError::io("opening staged package", package.root()))?;
    for (relative, mode) in package.files() {
        let text = relative.to_str().ok_or_else(|| BuildError::UnsafePackage {
            package: package.label(),
            problem: crate::error::UnsafePackage {
                path: relative.to_string_lossy().into_owned(),
                reason: "is not UTF-8".into(),
            },
        })?;
        let path = format!("{prefix}/{text}");
        if let Some((parent, _)) = path.rsplit_once('/') {
            entries.add_parents(parent, epoch);
        }
        let mut entry = entry_from_disk(&root, &relative, epoch)?;
        if let Some(mode) = mode {
            entry.mode = mode;
        }
        entries.insert(path, entry);
    }
    Ok(())
}

/// The layer recorded under `key`, if its blob is still in the cache whole.
pub(crate) fn cached_layer(cache: &CacheDir, key: &str) -> Option<LayerBlob> {
    let blobs = cache.blobs();
    cache.read_record::<LayerBlob>(key).filter(|blob| {
        blob.digest
            .parse::<Digest>()
            .is_ok_and(|d| blobs.size(&d).is_ok_and(|s| s == blob.size))
    })
}

/// What a tar entry holds.
#[derive(Debug, Clone)]
pub(crate) enum EntryContent {
    /// A directory.
    Directory,
    /// A regular file copied from disk, read beneath its root without following symlinks.
    File(Arc<Beneath>, PathBuf),
    /// A regular file with these bytes.
    Bytes(Vec<u8>),
    /// A symbolic link to this target.
    Symlink(PathBuf),
    /// A hard link to an entry written before it in the same layer.
    HardLink(String),
}

/// One entry of a layer tar.
#[derive(Debug, Clone)]
pub(crate) struct TarEntry {
    /// What it holds.
    pub content: EntryContent,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time, seconds since the epoch.
    pub mtime: u64,
}

/// The entries of a layer, by path; written in path order.
#[derive(Debug, Default)]
pub(crate) struct TarEntries {
    entries: BTreeMap<String, TarEntry>,
}

impl TarEntries {
    /// Adds (or replaces) an entry at `path` (relative to `/`, no leading slash).
    pub(crate) fn insert(&mut self, path: String, entry: TarEntry) {
        self.entries.insert(path, entry);
    }

    /// Adds the directories leading to `path`, owned by root, if not there yet.
    pub(crate) fn add_parents(&mut self, path: &str, mtime: u64) {
        let mut current = String::new();
        for part in path.trim_matches('/').split('/').filter(|p| !p.is_empty()) {
            if !current.is_empty() {
                current.push('/');
            }
            current.push_str(part);
            self.entries.entry(current.clone()).or_insert(TarEntry {
                content: EntryContent::Directory,
                mode: 0o755,
                uid: 0,
                gid: 0,
                mtime,
            });
        }
    }

    /// Writes the tar, compressed, into the blob store.
    pub(crate) fn write_layer(
        &self,
        blobs: &BlobStore,
        compression: Compression,
    ) -> Result<LayerBlob, BuildError> {
        let encoder = Encoder::new(blobs, compression)?;
        let (diff_id, encoder) = self.write_tar(encoder)?;
        encoder.finish(blobs, diff_id)
    }

    fn write_tar<W: Write>(&self, out: W) -> Result<(Digest, W), BuildError> {
        let io = |e: std::io::Error| BuildError::Io {
            action: "writing layer tar",
            path: PathBuf::from("<layer>"),
            source: e,
        };
        let mut builder = tar::Builder::new(HashingWriter::new(out));
        builder.mode(tar::HeaderMode::Deterministic);
        for (path, entry) in &self.entries {
            let mut header = tar::Header::new_gnu();
            header.set_mode(entry.mode);
            header.set_uid(entry.uid.into());
            header.set_gid(entry.gid.into());
            header.set_mtime(entry.mtime);
            match &entry.content {
                EntryContent::Directory => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_size(0);
                    builder
                        .append_data(&mut header, format!("{path}/"), std::io::empty())
                        .map_err(io)?;
                }
                EntryContent::File(root, relative) => {
                    let file = root.open_file(relative).map_err(|e| BuildError::Io {
                        action: "reading a staged file",
                        path: root.path().join(relative),
                        source: e,
                    })?;
                    let size = file.metadata().map_err(io)?.len();
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_size(size);
                    builder
                        .append_data(&mut header, path, file.take(size))
                        .map_err(io)?;
                }
                EntryContent::Bytes(bytes) => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_size(bytes.len() as u64);
                    builder
                        .append_data(&mut header, path, bytes.as_slice())
                        .map_err(io)?;
                }
                EntryContent::Symlink(target) => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_size(0);
                    builder.append_link(&mut header, path, target).map_err(io)?;
                }
                EntryContent::HardLink(target) => {
                    header.set_entry_type(tar::EntryType::Link);
                    header.set_size(0);
                    builder.append_link(&mut header, path, target).map_err(io)?;
                }
            }
        }
        builder.finish().map_err(io)?;
        let hashing = builder.into_inner().map_err(io)?;
        let (diff_id, _, out) = hashing.finish();
        Ok((diff_id, out))
    }
}

/// Compresses a layer tar made elsewhere (a container's changes) into the blob store.
pub(crate) fn compress_tar(
    mut tar: impl Read,
    blobs: &BlobStore,
    compression: Compression,
) -> Result<LayerBlob, BuildError> {
    let mut hashing = HashingWriter::new(Encoder::new(blobs, compression)?);
    std::io::copy(&mut tar, &mut hashing)
        .map_err(|e| BuildError::io("compressing layer", blobs.root())(e))?;
    let (diff_id, _, encoder) = hashing.finish();
    encoder.finish(blobs, diff_id)
}

/// A layer's compressor, writing into a new blob whose digest it computes.
enum Encoder {
    Gzip(flate2::write::GzEncoder<HashingWriter<BlobWriter>>),
    Zstd(zstd::Encoder<'static, HashingWriter<BlobWriter>>),
}

impl Encoder {
    fn new(blobs: &BlobStore, compression: Compression) -> Result<Self, BuildError> {
        let compressed = HashingWriter::new(blobs.writer()?);
        Ok(match compression {
            Compression::Gzip => Encoder::Gzip(
                flate2::GzBuilder::new()
                    .operating_system(255)
                    .write(compressed, flate2::Compression::new(6)),
            ),
            Compression::Zstd => Encoder::Zstd(
                zstd::Encoder::new(compressed, 3)
                    .map_err(BuildError::io("compressing layer", blobs.root()))?,
            ),
        })
    }

    /// Ends the stream and stores the blob; `diff_id` is the uncompressed tar's digest.
    fn finish(self, blobs: &BlobStore, diff_id: Digest) -> Result<LayerBlob, BuildError> {
        let compressed = match self {
            Encoder::Gzip(e) => e.finish(),
            Encoder::Zstd(e) => e.finish(),
        }
        .map_err(BuildError::io("compressing layer", blobs.root()))?;
        let (_, _, writer) = compressed.finish();
        let (digest, size) = writer.commit()?;
        Ok(LayerBlob {
            digest: digest.to_string(),
            diff_id: diff_id.to_string(),
            size,
        })
    }
}

impl Write for Encoder {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Encoder::Gzip(e) => e.write(buf),
            Encoder::Zstd(e) => e.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Encoder::Gzip(e) => e.flush(),
            Encoder::Zstd(e) => e.flush(),
        }
    }
}

/// A tar entry for a file, directory or symlink beneath `root`, owned by root;
/// nothing on the way to it may be a symlink.
pub(crate) fn entry_from_disk(
    root: &Arc<Beneath>,
    relative: &Path,
    epoch: u64,
) -> Result<TarEntry, BuildError> {
    let path = || root.path().join(relative);
    let meta = root
        .metadata(relative)
        .map_err(|e| BuildError::io("reading a staged file", path())(e))?;
    let mtime = meta.mtime.unwrap_or(epoch).min(epoch);
    let (content, mode, mtime) = match meta.kind {
        Kind::Symlink => {
            let target = root
                .read_link(relative)
                .map_err(|e| BuildError::io("reading link", path())(e))?;
            (EntryContent::Symlink(target), 0o777, mtime)
        }
        Kind::Directory => (EntryContent::Directory, 0o755, epoch),
        Kind::File => (
            EntryContent::File(root.clone(), relative.to_path_buf()),
            meta.mode,
            mtime,
        ),
        Kind::Other => {
            return Err(BuildError::io("reading a staged file", path())(
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "a device, fifo or socket has no place in a layer",
                ),
            ))
        }
    };
    Ok(TarEntry {
        content,
        mode,
        uid: 0,
        gid: 0,
        mtime,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_identical_layers_for_identical_entries() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = BlobStore::new(dir.path());
        let mut entries = TarEntries::default();
        entries.add_parents("opt/conda/bin", 7);
        entries.insert(
            "opt/conda/bin/hello".into(),
            TarEntry {
                content: EntryContent::Bytes(b"#!/bin/sh\necho hi\n".to_vec()),
                mode: 0o755,
                uid: 0,
                gid: 0,
                mtime: 7,
            },
        );
        let a = entries.write_layer(&blobs, Compression::Gzip).unwrap();
        let b = entries.write_layer(&blobs, Compression::Gzip).unwrap();
        assert_eq!(a, b);
        let z = entries.write_layer(&blobs, Compression::Zstd).unwrap();
        assert_eq!(
            a.diff_id, z.diff_id,
            "the tar is the same whatever the compression"
        );
        assert_ne!(a.digest, z.digest);

        let bytes = std::fs::read(blobs.path(&a.digest.parse().unwrap())).unwrap();
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes.as_slice()));
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "opt/",
                "opt/conda/",
                "opt/conda/bin/",
                "opt/conda/bin/hello"
            ]
        );
    }
}
