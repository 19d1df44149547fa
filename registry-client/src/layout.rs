//! OCI image layout directories (`oci-layout`, `index.json`, `blobs/`).

use std::path::{Path, PathBuf};

use oci_spec::image::{
    Descriptor, ImageIndex, ImageIndexBuilder, ImageManifest, MediaType, ANNOTATION_REF_NAME,
};

use crate::{BlobStore, Digest, RegistryError};

/// The content of the `oci-layout` file.
pub const OCI_LAYOUT_FILE: &str = r#"{"imageLayoutVersion":"1.0.0"}"#;

/// An OCI image layout directory.
#[derive(Debug, Clone)]
pub struct OciLayout {
    dir: PathBuf,
    blobs: BlobStore,
}

impl OciLayout {
    /// Opens an existing layout, failing if `dir` is not one.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, RegistryError> {
        let dir = dir.into();
        if !dir.join("oci-layout").is_file() || !dir.join("index.json").is_file() {
            return Err(RegistryError::Unsupported(format!(
                "{} is not an OCI image layout (no oci-layout or index.json)",
                dir.display()
            )));
        }
        Ok(Self {
            blobs: BlobStore::new(&dir),
            dir,
        })
    }

    /// Opens a layout, creating an empty one if the directory has none.
    pub fn open_or_create(dir: impl Into<PathBuf>) -> Result<Self, RegistryError> {
        let dir = dir.into();
        if dir.join("oci-layout").is_file() {
            return Self::open(dir);
        }
        fs_err::create_dir_all(&dir).map_err(|e| RegistryError::Io {
            action: "creating layout directory",
            path: dir.clone(),
            source: e,
        })?;
        let layout = Self {
            blobs: BlobStore::new(&dir),
            dir,
        };
        layout.write_index(&empty_index()?)?;
        write_atomically(&layout.dir.join("oci-layout"), OCI_LAYOUT_FILE.as_bytes())?;
        Ok(layout)
    }

    /// The layout directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The layout's blobs.
    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    /// Reads `index.json`.
    pub fn index(&self) -> Result<ImageIndex, RegistryError> {
        let path = self.dir.join("index.json");
        let bytes = std::fs::read(&path).map_err(RegistryError::io("reading", &path))?;
        serde_json::from_slice(&bytes).map_err(|source| RegistryError::InvalidJson {
            what: "index.json",
            location: path,
            source,
        })
    }

    /// Replaces `index.json` atomically.
    pub fn write_index(&self, index: &ImageIndex) -> Result<(), RegistryError> {
        let bytes =
            crate::digest::canonical_json(index).map_err(|source| RegistryError::InvalidJson {
                what: "index.json",
                location: self.dir.clone(),
                source,
            })?;
        write_atomically(&self.dir.join("index.json"), &bytes)
    }

    /// Points `tag` at `descriptor`, replacing whatever the tag named before.
    pub fn set_tag(&self, tag: &str, descriptor: &Descriptor) -> Result<(), RegistryError> {
        let mut index = self.index()?;
        let mut manifests: Vec<Descriptor> = index
            .manifests()
            .iter()
            .filter(|d| ref_name(d) != Some(tag))
            .cloned()
            .collect();
        let mut tagged = descriptor.clone();
        let mut annotations = tagged.annotations().clone().unwrap_or_default();
        annotations.insert(ANNOTATION_REF_NAME.to_string(), tag.to_string());
        tagged.set_annotations(Some(annotations));
        manifests.push(tagged);
        index.set_manifests(manifests);
        self.write_index(&index)
    }

    /// The descriptor a tag points at; with no tag, the only image in the layout.
    pub fn resolve(&self, tag: Option<&str>) -> Result<Descriptor, RegistryError> {
        let index = self.index()?;
        let found = match tag {
            Some(tag) => index
                .manifests()
                .iter()
                .find(|d| ref_name(d) == Some(tag))
                .cloned(),
            None if index.manifests().len() == 1 => index.manifests().first().cloned(),
            None => index
                .manifests()
                .iter()
                .find(|d| ref_name(d) == Some(crate::ImageRef::DEFAULT_TAG))
                .cloned(),
        };
        found.ok_or_else(|| RegistryError::TagNotFound {
            tag: tag.unwrap_or(crate::ImageRef::DEFAULT_TAG).to_string(),
            location: self.dir.clone(),
        })
    }
}

/// The tag annotation of a descriptor.
pub fn ref_name(descriptor: &Descriptor) -> Option<&str> {
    descriptor
        .annotations()
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_REF_NAME))
        .map(String::as_str)
}

fn empty_index() -> Result<ImageIndex, RegistryError> {
    ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(Vec::<Descriptor>::new())
        .build()
        .map_err(|e| RegistryError::Unsupported(format!("building an empty index: {e}")))
}

/// Reads and verifies a manifest blob.
pub fn read_manifest(blobs: &BlobStore, digest: &Digest) -> Result<ImageManifest, RegistryError> {
    let bytes = blobs.read_verified(digest)?;
    serde_json::from_slice(&bytes).map_err(|source| RegistryError::InvalidJson {
        what: "image manifest",
        location: blobs.path(digest),
        source,
    })
}

/// Reads and verifies an index blob.
pub fn read_index(blobs: &BlobStore, digest: &Digest) -> Result<ImageIndex, RegistryError> {
    let bytes = blobs.read_verified(digest)?;
    serde_json::from_slice(&bytes).map_err(|source| RegistryError::InvalidJson {
        what: "image index",
        location: blobs.path(digest),
        source,
    })
}

/// Writes a file by writing a temporary sibling and renaming it over the target.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), RegistryError> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".partial-")
        // 0666 less the umask, as any file the user writes (tempfile's default is 0600)
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
        .tempfile_in(dir)
        .map_err(RegistryError::io("creating temporary file in", dir))?;
    tmp.write_all(bytes)
        .map_err(RegistryError::io("writing", tmp.path().to_path_buf()))?;
    tmp.persist(path).map_err(|e| RegistryError::Io {
        action: "replacing",
        path: path.to_path_buf(),
        source: e.error,
    })?;
    Ok(())
}
