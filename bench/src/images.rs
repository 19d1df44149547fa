//! What built images hold: their blobs, and the bytes shared between images.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

use trousse_registry_client::{open_image, BlobStore, ImageRef, RegistryOptions};

/// The blobs of one image: manifest, config and layers, by digest with their size.
#[derive(Debug, Clone, Default)]
pub struct ImageBlobs {
    /// Every blob of the image.
    pub blobs: BTreeMap<String, u64>,
    /// The layer blobs only.
    pub layers: BTreeMap<String, u64>,
    /// The package files (conda file names) its layers hold.
    pub packages: BTreeSet<String>,
}

impl ImageBlobs {
    /// Reads an OCI layout written by trousse.
    pub async fn read(layout: &Path) -> anyhow::Result<Self> {
        let reference = ImageRef::Oci {
            dir: layout.to_path_buf(),
            tag: None,
        };
        let scratch = BlobStore::new(layout.join(".unused"));
        let opened = open_image(&reference, &RegistryOptions::default(), &scratch, None).await?;
        let image = &opened.image;
        let mut out = Self::default();
        out.blobs
            .insert(image.root.digest().to_string(), image.root.size());
        for (descriptor, manifest) in image.manifests()? {
            out.blobs
                .insert(descriptor.digest().to_string(), descriptor.size());
            out.blobs.insert(
                manifest.config().digest().to_string(),
                manifest.config().size(),
            );
            for layer in manifest.layers() {
                out.blobs.insert(layer.digest().to_string(), layer.size());
                out.layers.insert(layer.digest().to_string(), layer.size());
                if let Some(packages) = layer
                    .annotations()
                    .as_ref()
                    .and_then(|a| a.get(trousse_builder::image::PACKAGES_ANNOTATION))
                {
                    out.packages.extend(packages.split(',').map(str::to_string));
                }
            }
        }
        Ok(out)
    }

    /// Bytes of all blobs.
    pub fn bytes(&self) -> u64 {
        self.blobs.values().sum()
    }

    /// Bytes of the blobs `self` has and `other` lacks: what a node that
    /// holds `other` pulls to start `self`.
    pub fn bytes_missing_from(&self, other: &ImageBlobs) -> u64 {
        self.blobs
            .iter()
            .filter(|(d, _)| !other.blobs.contains_key(*d))
            .map(|(_, s)| s)
            .sum()
    }
}

/// Bytes a registry stores for these images: each blob once.
pub fn registry_bytes(images: &[ImageBlobs]) -> u64 {
    let mut unique = BTreeMap::new();
    for image in images {
        unique.extend(image.blobs.iter().map(|(d, s)| (d.clone(), *s)));
    }
    unique.values().sum()
}
