//! Writing a built image to a target, and opening an image to read it.

use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, ImageManifest};

use crate::{
    archive,
    layout::{read_index, read_manifest},
    registry::{parse_reference, Registry},
    BlobStore, Digest, ImageRef, OciLayout, PushReport, RegistryError, RegistryOptions,
};

/// An image: a manifest or an index, and the store that holds all its blobs.
#[derive(Debug, Clone)]
pub struct Image {
    /// Where every blob the image references is stored.
    pub blobs: BlobStore,
    /// The descriptor of the image manifest or image index.
    pub root: Descriptor,
}

/// An image opened for reading; temporary files live as long as it does.
pub struct OpenedImage {
    /// The image.
    pub image: Image,
    _unpacked: Option<tempfile::TempDir>,
}

/// Parses a descriptor's digest.
pub fn descriptor_digest(descriptor: &Descriptor) -> Result<Digest, RegistryError> {
    descriptor.digest().to_string().parse()
}

impl Image {
    /// The platform manifests of the image (one for a manifest, one per entry for an index).
    pub fn manifests(&self) -> Result<Vec<(Descriptor, ImageManifest)>, RegistryError> {
        let digest = descriptor_digest(&self.root)?;
        match self.root.media_type() {
            t if crate::registry::is_index(t) => {
                let index = read_index(&self.blobs, &digest)?;
                index
                    .manifests()
                    .iter()
                    .map(|d| {
                        Ok((
                            d.clone(),
                            read_manifest(&self.blobs, &descriptor_digest(d)?)?,
                        ))
                    })
                    .collect()
            }
            _ => Ok(vec![(
                self.root.clone(),
                read_manifest(&self.blobs, &digest)?,
            )]),
        }
    }

    /// Every blob the image references, root first, without repeats.
    pub fn blob_digests(&self) -> Result<Vec<Digest>, RegistryError> {
        let mut out = vec![descriptor_digest(&self.root)?];
        for (descriptor, manifest) in self.manifests()? {
            let mut more = vec![
                descriptor_digest(&descriptor)?,
                descriptor_digest(manifest.config())?,
            ];
            for layer in manifest.layers() {
                more.push(descriptor_digest(layer)?);
            }
            for d in more {
                if !out.contains(&d) {
                    out.push(d);
                }
            }
        }
        Ok(out)
    }
}

/// What publishing did.
#[derive(Debug, Clone, Default)]
pub struct Published {
    /// Transfer counters, for a push to a registry.
    pub push: Option<PushReport>,
}

/// Writes `image` to `target` atomically: a reader sees the old state or the
/// whole new image. Registry pushes try to mount blobs from `mount_from`.
pub async fn publish(
    image: &Image,
    target: &ImageRef,
    options: &RegistryOptions,
    mount_from: &[String],
) -> Result<Published, RegistryError> {
    if let ImageRef::Registry { reference } = target {
        let reference = parse_reference(reference)?;
        let sources = mount_from
            .iter()
            .filter_map(|s| parse_reference(s).ok())
            .collect::<Vec<_>>();
        let report = Registry::for_reference(&reference, options)?
            .push(image, &reference, &sources)
            .await?;
        return Ok(Published { push: Some(report) });
    }
    // local writes (layouts, archives) block: off the async threads
    let (image, target) = (image.clone(), target.clone());
    tokio::task::spawn_blocking(move || publish_local(&image, &target))
        .await
        .map_err(|e| RegistryError::Io {
            action: "writing the image",
            path: std::path::PathBuf::from("<task>"),
            source: std::io::Error::other(e.to_string()),
        })??;
    Ok(Published::default())
}

fn publish_local(image: &Image, target: &ImageRef) -> Result<(), RegistryError> {
    match target {
        ImageRef::Registry { .. } => unreachable!("handled by publish"),
        ImageRef::Scratch => Err(RegistryError::Unsupported(
            "cannot write an image to 'scratch'".into(),
        )),
        ImageRef::Oci { dir, tag } => {
            let tag = tag.as_deref().unwrap_or(ImageRef::DEFAULT_TAG);
            if dir.join("oci-layout").is_file() {
                write_into_layout(image, &OciLayout::open(dir)?, tag)
            } else {
                publish_new_directory(dir, |staging| {
                    write_into_layout(image, &OciLayout::open_or_create(staging)?, tag)
                })
            }
        }
        ImageRef::OciArchive { file, tag } => {
            archive::write_oci_archive(image, file, tag.as_deref().unwrap_or(ImageRef::DEFAULT_TAG))
        }
        ImageRef::DockerArchive { file, reference } => {
            archive::write_docker_archive(image, file, reference.as_deref())
        }
    }
}

fn write_into_layout(image: &Image, layout: &OciLayout, tag: &str) -> Result<(), RegistryError> {
    for digest in image.blob_digests()? {
        layout.blobs().import_from(&image.blobs, &digest)?;
    }
    layout.set_tag(tag, &image.root)
}

/// Builds a new directory beside `dir` and renames it into place when complete.
fn publish_new_directory(
    dir: &Path,
    fill: impl FnOnce(&Path) -> Result<(), RegistryError>,
) -> Result<(), RegistryError> {
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs_err::create_dir_all(&parent).map_err(|e| RegistryError::Io {
        action: "creating",
        path: parent.clone(),
        source: e,
    })?;
    let staging = tempfile::Builder::new()
        .prefix(".partial-")
        .tempdir_in(&parent)
        .map_err(RegistryError::io(
            "creating a staging directory in",
            &parent,
        ))?;
    fill(staging.path())?;
    let staged = staging.keep();
    std::fs::rename(&staged, dir).map_err(|e| {
        let _ = std::fs::remove_dir_all(&staged);
        RegistryError::Io {
            action: "moving the finished image to",
            path: dir.to_path_buf(),
            source: e,
        }
    })
}

/// Opens an image for reading: from an OCI layout or an archive written as
/// one, or pulled from a registry into `store` (only the layers of
/// `architecture`, when given).
pub async fn open_image(
    reference: &ImageRef,
    options: &RegistryOptions,
    store: &BlobStore,
    architecture: Option<&str>,
) -> Result<OpenedImage, RegistryError> {
    if let ImageRef::Registry { reference } = reference {
        let reference = parse_reference(reference)?;
        let image = Registry::for_reference(&reference, options)?
            .pull(&reference, architecture, store)
            .await?;
        return Ok(OpenedImage {
            image,
            _unpacked: None,
        });
    }
    let (layout, tag, unpacked) = match reference {
        ImageRef::Registry { .. } => unreachable!("pulled above"),
        ImageRef::Scratch => {
            return Err(RegistryError::Unsupported(
                "'scratch' has no image to open".into(),
            ))
        }
        ImageRef::Oci { dir, tag } => (OciLayout::open(dir)?, tag.clone(), None),
        ImageRef::OciArchive { file, tag } => {
            let tmp = archive::unpack(file)?;
            (OciLayout::open(tmp.path())?, tag.clone(), Some(tmp))
        }
        ImageRef::DockerArchive { file, .. } => {
            let tmp = archive::unpack(file)?;
            let layout = OciLayout::open(tmp.path()).map_err(|_| {
                RegistryError::Unsupported(format!(
                    "{} is a docker archive without an OCI index.json; convert it with skopeo to oci-archive first",
                    file.display()
                ))
            })?;
            (layout, None, Some(tmp))
        }
    };
    let root = layout.resolve(tag.as_deref())?;
    Ok(OpenedImage {
        image: Image {
            blobs: layout.blobs().clone(),
            root,
        },
        _unpacked: unpacked,
    })
}
