//! Reading back a built image: its platforms, layers and the packages in each.

use serde::Serialize;
use trousse_registry_client::{open_image, publish::descriptor_digest, ImageRef, RegistryOptions};

use crate::{image::PACKAGES_ANNOTATION, BuildError};

/// One layer of an inspected image.
#[derive(Debug, Clone, Serialize)]
pub struct LayerSummary {
    /// The layer blob's digest.
    pub digest: String,
    /// Its compressed size.
    pub size: u64,
    /// The packages in it (empty for base and environment layers).
    pub packages: Vec<String>,
}

/// One platform of an inspected image.
#[derive(Debug, Clone, Serialize)]
pub struct ManifestSummary {
    /// The manifest digest.
    pub digest: String,
    /// `os/arch` of the manifest.
    pub platform: String,
    /// The layers, bottom first.
    pub layers: Vec<LayerSummary>,
}

/// Lists the layers of each platform of an image.
pub async fn inspect(
    reference: &ImageRef,
    registry: &RegistryOptions,
) -> Result<Vec<ManifestSummary>, BuildError> {
    let scratch =
        tempfile::tempdir().map_err(BuildError::io("creating a temporary directory", "."))?;
    let store = trousse_registry_client::BlobStore::new(scratch.path());
    let opened = open_image(reference, registry, &store, None).await?;
    let mut out = Vec::new();
    for (descriptor, manifest) in opened.image.manifests()? {
        let platform = descriptor
            .platform()
            .as_ref()
            .map(|p| format!("{}/{}", p.os(), p.architecture()))
            .unwrap_or_else(|| "unknown".into());
        let layers = manifest
            .layers()
            .iter()
            .map(|l| {
                Ok(LayerSummary {
                    digest: descriptor_digest(l)?.to_string(),
                    size: l.size(),
                    packages: l
                        .annotations()
                        .as_ref()
                        .and_then(|a| a.get(PACKAGES_ANNOTATION))
                        .map(|p| p.split(',').map(String::from).collect())
                        .unwrap_or_default(),
                })
            })
            .collect::<Result<Vec<_>, BuildError>>()?;
        out.push(ManifestSummary {
            digest: descriptor_digest(&descriptor)?.to_string(),
            platform,
            layers,
        });
    }
    Ok(out)
}
