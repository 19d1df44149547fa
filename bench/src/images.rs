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
    /// How many packages each layer holds, by digest (0: the environment layer).
    pub layer_packages: BTreeMap<String, usize>,
}

/// What kind of blob a digest is, for the registry breakdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum BlobKind {
    /// A layer of one package.
    PackageLayer,
    /// A layer shared by a group of small packages.
    GroupLayer,
    /// The environment's top layer (lock, history, user).
    EnvironmentLayer,
    /// Configs, manifests and indexes.
    Metadata,
}

impl BlobKind {
    /// The name used in the report.
    pub fn name(self) -> &'static str {
        match self {
            BlobKind::PackageLayer => "package_layers",
            BlobKind::GroupLayer => "group_layers",
            BlobKind::EnvironmentLayer => "environment_layers",
            BlobKind::Metadata => "configs_and_manifests",
        }
    }
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
                let packages: Vec<&str> = layer
                    .annotations()
                    .as_ref()
                    .and_then(|a| a.get(trousse_builder::image::PACKAGES_ANNOTATION))
                    .map(|p| p.split(',').collect())
                    .unwrap_or_default();
                out.layer_packages
                    .insert(layer.digest().to_string(), packages.len());
                out.packages
                    .extend(packages.into_iter().map(str::to_string));
            }
        }
        Ok(out)
    }

    /// The kind of one of its blobs.
    pub fn kind(&self, digest: &str) -> BlobKind {
        match self.layer_packages.get(digest) {
            None => BlobKind::Metadata,
            Some(0) => BlobKind::EnvironmentLayer,
            Some(1) => BlobKind::PackageLayer,
            Some(_) => BlobKind::GroupLayer,
        }
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
    registry_breakdown(images)
        .values()
        .map(|(bytes, _)| bytes)
        .sum()
}

/// Bytes and blob counts a registry stores for these images, by kind of blob.
pub fn registry_breakdown(images: &[ImageBlobs]) -> BTreeMap<BlobKind, (u64, usize)> {
    let mut unique = BTreeMap::new();
    for image in images {
        for (digest, size) in &image.blobs {
            unique.insert(digest.clone(), (*size, image.kind(digest)));
        }
    }
    let mut out = BTreeMap::new();
    for (size, kind) in unique.into_values() {
        let entry = out.entry(kind).or_insert((0, 0));
        entry.0 += size;
        entry.1 += 1;
    }
    out
}
