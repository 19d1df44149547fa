//! Base images: the image an environment is layered on, pulled or read for
//! one platform, with the virtual packages and the account files it declares.

use std::{collections::HashMap, io::Read};

use oci_spec::image::{Arch, Descriptor, ImageConfiguration, ImageManifest, MediaType, Os};
use rattler_conda_types::{GenericVirtualPackage, Subdir};
use trousse_registry_client::{
    open_image, publish::descriptor_digest, BlobStore, ImageRef, RegistryOptions,
};

use crate::{cache::CacheDir, BuildError};

/// The label by which a base image declares the virtual packages it provides,
/// e.g. `__glibc=2.39` (several separated by spaces).
pub(crate) const VIRTUAL_PACKAGES_LABEL: &str = "io.trousse.virtual-packages";
/// The label by which a base image declares that it provides a JupyterHub
/// single-user server: the absolute path of its `jupyterhub-singleuser`.
pub(crate) const SINGLEUSER_LABEL: &str = "io.trousse.singleuser";
/// The layers and settings of a base image, resolved for one platform.
#[derive(Debug, Clone, Default)]
pub struct BaseImage {
    /// The base layers, in order.
    pub layers: Vec<Descriptor>,
    /// Their diff ids.
    pub diff_ids: Vec<String>,
    /// The base's environment variables.
    pub env: Vec<String>,
    /// The base's history.
    pub history: Vec<oci_spec::image::History>,
    /// The base's `/etc/passwd`.
    pub passwd: Option<String>,
    /// The base's `/etc/group`.
    pub group: Option<String>,
    /// The virtual packages the base declares with [`VIRTUAL_PACKAGES_LABEL`].
    pub virtual_packages: Vec<GenericVirtualPackage>,
    /// The single-user server the base declares with [`SINGLEUSER_LABEL`].
    pub singleuser: Option<String>,
}

/// The OCI architecture of a conda platform.
pub(crate) fn oci_arch(platform: Subdir) -> Result<(Arch, Option<String>), BuildError> {
    Ok(match platform {
        Subdir::Linux64 => (Arch::Amd64, None),
        Subdir::LinuxAarch64 => (Arch::ARM64, None),
        Subdir::LinuxPpc64le => (Arch::PowerPC64le, None),
        Subdir::LinuxS390X => (Arch::s390x, None),
        Subdir::LinuxArmV7l => (Arch::ARM, Some("v7".into())),
        Subdir::Linux32 => (Arch::i386, None),
        other => {
            return Err(BuildError::Unsupported(format!(
                "no container architecture for platform {other}"
            )))
        }
    })
}

/// Loads the base image for a platform and copies its blobs into `blobs`.
pub(crate) async fn load_base(
    base: &ImageRef,
    platform: Subdir,
    blobs: &BlobStore,
    registry: &RegistryOptions,
) -> Result<BaseImage, BuildError> {
    if *base == ImageRef::Scratch {
        return Ok(BaseImage::default());
    }
    let (arch, _) = oci_arch(platform)?;
    let opened = open_image(base, registry, blobs, Some(&arch.to_string()))
        .await
        .map_err(|source| BuildError::BaseUnavailable {
            base: base.to_string(),
            source,
        })?;
    let (manifest, config) = platform_manifest(&opened.image, base, platform, &arch)?;
    let virtual_packages = declared_virtual_packages(base, &config)?;
    let singleuser = config
        .config()
        .as_ref()
        .and_then(|c| c.labels().as_ref())
        .and_then(|labels| labels.get(SINGLEUSER_LABEL))
        .filter(|path| path.starts_with('/'))
        .cloned();
    let mut files = HashMap::new();
    for layer in manifest.layers() {
        let digest = descriptor_digest(layer)?;
        blobs.import_from(&opened.image.blobs, &digest)?;
        read_account_files(&blobs.path(&digest), layer.media_type(), &mut files)?;
    }
    Ok(BaseImage {
        layers: manifest.layers().clone(),
        diff_ids: config.rootfs().diff_ids().clone(),
        env: config
            .config()
            .as_ref()
            .and_then(|c| c.env().clone())
            .unwrap_or_default(),
        history: config.history().clone().unwrap_or_default(),
        passwd: files.get("etc/passwd").cloned(),
        group: files.get("etc/group").cloned(),
        virtual_packages,
        singleuser,
    })
}

/// The base image's manifest and config for the platform's architecture.
fn platform_manifest(
    image: &trousse_registry_client::Image,
    base: &ImageRef,
    platform: Subdir,
    arch: &Arch,
) -> Result<(ImageManifest, ImageConfiguration), BuildError> {
    let manifests = image.manifests()?;
    let (_, manifest) = manifests
        .iter()
        .find(|(d, _)| {
            d.platform()
                .as_ref()
                .is_none_or(|p| p.architecture() == arch && *p.os() == Os::Linux)
        })
        .ok_or_else(|| {
            BuildError::Unsupported(format!("base image {base} has no manifest for {arch}"))
        })?;
    let config_digest = descriptor_digest(manifest.config())?;
    let config: ImageConfiguration =
        serde_json::from_slice(&image.blobs.read_verified(&config_digest)?).map_err(|e| {
            BuildError::Unsupported(format!("base image {base} has an invalid config: {e}"))
        })?;
    if manifests.len() == 1 && config.architecture() != arch {
        return Err(BuildError::Unsupported(format!(
            "base image {base} is for {}, not {arch} ({platform})",
            config.architecture()
        )));
    }
    Ok((manifest.clone(), config))
}

/// The virtual packages a base image's config declares in its labels.
fn declared_virtual_packages(
    base: &ImageRef,
    config: &ImageConfiguration,
) -> Result<Vec<GenericVirtualPackage>, BuildError> {
    let Some(text) = config
        .config()
        .as_ref()
        .and_then(|c| c.labels().as_ref())
        .and_then(|labels| labels.get(VIRTUAL_PACKAGES_LABEL))
    else {
        return Ok(Vec::new());
    };
    text.split_whitespace()
        .map(|v| {
            crate::settings::parse_virtual_package(v).map_err(|m| {
                BuildError::Unsupported(format!(
                    "base image {base}: label {VIRTUAL_PACKAGES_LABEL}: {m}"
                ))
            })
        })
        .collect()
}

/// Applies one base layer to the known `/etc/passwd` and `/etc/group`.
fn read_account_files(
    path: &std::path::Path,
    media_type: &MediaType,
    files: &mut HashMap<String, String>,
) -> Result<(), BuildError> {
    let file = std::fs::File::open(path).map_err(BuildError::io("reading base layer", path))?;
    let reader: Box<dyn Read> = match media_type {
        MediaType::ImageLayerGzip | MediaType::Other(_) => {
            Box::new(flate2::read::GzDecoder::new(file))
        }
        MediaType::ImageLayerZstd => {
            Box::new(zstd::Decoder::new(file).map_err(BuildError::io("reading base layer", path))?)
        }
        _ => Box::new(file),
    };
    let mut archive = tar::Archive::new(reader);
    let entries = archive
        .entries()
        .map_err(BuildError::io("reading base layer", path))?;
    for entry in entries {
        let mut entry = entry.map_err(BuildError::io("reading base layer", path))?;
        let name = entry
            .path()
            .map_err(BuildError::io("reading base layer", path))?
            .to_string_lossy()
            .trim_start_matches("./")
            .to_string();
        match name.as_str() {
            "etc/passwd" | "etc/group" => {
                let mut text = String::new();
                if entry.read_to_string(&mut text).is_ok() {
                    files.insert(name, text);
                }
            }
            "etc/.wh.passwd" | "etc/.wh.group" => {
                files.remove(&name.replace(".wh.", ""));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Loads the base image of each platform (before solving: a base declares virtual packages).
pub(crate) async fn load_bases(
    base: &ImageRef,
    platforms: &[Subdir],
    cache: &CacheDir,
    registry: &RegistryOptions,
) -> Result<HashMap<Subdir, BaseImage>, BuildError> {
    let mut bases = HashMap::new();
    for &platform in platforms {
        let loaded = load_base(base, platform, &cache.blobs(), registry).await?;
        bases.insert(platform, loaded);
    }
    Ok(bases)
}
