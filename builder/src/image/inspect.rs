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

/// What an image runs, from its config.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunSummary {
    /// The entrypoint.
    pub entrypoint: Vec<String>,
    /// The command.
    pub command: Vec<String>,
    /// The user it runs as.
    pub user: String,
    /// Its working directory.
    pub working_dir: String,
    /// Its environment, `NAME=value`.
    pub env: Vec<String>,
    /// Its labels.
    pub labels: std::collections::BTreeMap<String, String>,
}

/// One platform of an inspected image.
#[derive(Debug, Clone, Serialize)]
pub struct ManifestSummary {
    /// The manifest digest.
    pub digest: String,
    /// `os/arch` of the manifest (from the index, else from the config).
    pub platform: String,
    /// What it runs (when its config could be read).
    pub config: Option<RunSummary>,
    /// The layers, bottom first.
    pub layers: Vec<LayerSummary>,
}

/// The platform and run settings of an image config, if it is stored.
fn read_config(
    blobs: &trousse_registry_client::BlobStore,
    manifest: &oci_spec::image::ImageManifest,
) -> Option<(String, RunSummary)> {
    let digest = descriptor_digest(manifest.config()).ok()?;
    let bytes = blobs.read_verified(&digest).ok()?;
    let config: oci_spec::image::ImageConfiguration = serde_json::from_slice(&bytes).ok()?;
    let platform = format!("{}/{}", config.os(), config.architecture());
    let run = config.config().as_ref().map(|c| RunSummary {
        entrypoint: c.entrypoint().clone().unwrap_or_default(),
        command: c.cmd().clone().unwrap_or_default(),
        user: c.user().clone().unwrap_or_default(),
        working_dir: c.working_dir().clone().unwrap_or_default(),
        env: c.env().clone().unwrap_or_default(),
        labels: c
            .labels()
            .clone()
            .map(|l| l.into_iter().collect())
            .unwrap_or_default(),
    });
    Some((platform, run.unwrap_or_default()))
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
        let config = read_config(&opened.image.blobs, &manifest);
        let platform = descriptor
            .platform()
            .as_ref()
            .map(|p| format!("{}/{}", p.os(), p.architecture()))
            .or_else(|| config.as_ref().map(|(p, _)| p.clone()))
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
            config: config.map(|(_, run)| run),
            layers,
        });
    }
    Ok(out)
}
