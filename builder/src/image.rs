//! The image stage: OCI config, manifest per platform, and an index when
//! there are several platforms. Base image layers pass through untouched.

use std::{collections::HashMap, io::Read};

use oci_spec::image::{
    Arch, ConfigBuilder, Descriptor, DescriptorBuilder, HistoryBuilder, ImageConfiguration,
    ImageConfigurationBuilder, ImageIndexBuilder, ImageManifestBuilder, MediaType, Os,
    PlatformBuilder, RootFsBuilder,
};
use rattler_conda_types::{GenericVirtualPackage, Subdir};
use trousse_registry_client::{
    digest::canonical_json, open_image, publish::descriptor_digest, BlobStore, Digest, ImageRef,
    RegistryOptions,
};

use crate::{layer::Layer, spec::ImageSettings, BuildError};

/// The label that carries the sha256 of the lock file.
pub const LOCK_HASH_LABEL: &str = "io.trousse.lock.sha256";
/// The label by which a base image declares the virtual packages it provides,
/// e.g. `__glibc=2.39` (several separated by spaces).
pub const VIRTUAL_PACKAGES_LABEL: &str = "io.trousse.virtual-packages";
/// The layer annotation that lists the packages in a layer.
pub const PACKAGES_ANNOTATION: &str = "io.trousse.packages";

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
}

/// The OCI architecture of a conda platform.
pub fn oci_arch(platform: Subdir) -> Result<(Arch, Option<String>), BuildError> {
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
pub async fn load_base(
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
    let manifests = opened.image.manifests()?;
    let (_, manifest) = manifests
        .iter()
        .find(|(d, _)| {
            d.platform()
                .as_ref()
                .is_none_or(|p| *p.architecture() == arch && *p.os() == Os::Linux)
        })
        .ok_or_else(|| {
            BuildError::Unsupported(format!("base image {base} has no manifest for {arch}"))
        })?;
    let config_digest = descriptor_digest(manifest.config())?;
    let config: ImageConfiguration =
        serde_json::from_slice(&opened.image.blobs.read_verified(&config_digest)?).map_err(
            |e| BuildError::Unsupported(format!("base image {base} has an invalid config: {e}")),
        )?;
    if manifests.len() == 1 && *config.architecture() != arch {
        return Err(BuildError::Unsupported(format!(
            "base image {base} is for {}, not {arch} ({platform})",
            config.architecture()
        )));
    }
    let virtual_packages = declared_virtual_packages(base, &config)?;
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
    })
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
            crate::spec::parse_virtual_package(v).map_err(|m| {
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

/// What goes into one platform's image.
pub struct ImageInput<'a> {
    /// The platform.
    pub platform: Subdir,
    /// The base image for this platform.
    pub base: &'a BaseImage,
    /// The environment's layers, bottom first.
    pub layers: &'a [Layer],
    /// The image settings.
    pub settings: &'a ImageSettings,
    /// The lock file's hash.
    pub lock_hash: &'a str,
    /// The image creation time, from the lock.
    pub created: i64,
    /// The names of the packages in the environment.
    pub package_names: &'a [String],
    /// The compression of the layers.
    pub media_type: MediaType,
}

fn spec_err(e: impl std::fmt::Display) -> BuildError {
    BuildError::Internal(format!("building OCI metadata: {e}"))
}

/// The command an image runs when the spec sets none.
pub fn default_command(prefix: &str, package_names: &[String]) -> Vec<String> {
    let has = |n: &str| package_names.iter().any(|p| p == n);
    if has("jupyterlab") {
        vec![
            format!("{prefix}/bin/jupyter"),
            "lab".into(),
            "--ip=0.0.0.0".into(),
            "--port=8888".into(),
            "--no-browser".into(),
        ]
    } else if has("bash") {
        vec![format!("{prefix}/bin/bash")]
    } else {
        vec!["sh".into()]
    }
}

/// Writes the config and manifest of one platform; returns the manifest descriptor.
pub fn write_manifest(input: &ImageInput<'_>, blobs: &BlobStore) -> Result<Descriptor, BuildError> {
    let settings = input.settings;
    let prefix = &settings.prefix;
    let created = chrono::DateTime::from_timestamp(input.created, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);

    let base_path = input
        .base
        .env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        .to_string();
    let mut env: Vec<String> = input
        .base
        .env
        .iter()
        .filter(|e| !e.starts_with("PATH="))
        .cloned()
        .collect();
    env.push(format!("PATH={prefix}/bin:{base_path}"));
    env.push(format!("CONDA_PREFIX={prefix}"));
    env.push(format!("CONDA_DIR={prefix}"));
    env.push(format!("HOME={}", settings.user.home()));
    env.push(format!("NB_USER={}", settings.user.name));
    env.push(format!("NB_UID={}", settings.user.uid));
    env.push(format!("NB_GID={}", settings.user.gid));
    env.push("LANG=C.UTF-8".into());
    for (k, v) in &settings.env {
        env.retain(|e| !e.starts_with(&format!("{k}=")));
        env.push(format!("{k}={v}"));
    }

    let mut labels = settings.labels.clone();
    labels.insert(LOCK_HASH_LABEL.into(), input.lock_hash.into());
    labels.insert("org.opencontainers.image.created".into(), created.clone());
    let cmd = settings
        .command
        .clone()
        .unwrap_or_else(|| default_command(prefix, input.package_names));
    let mut config = ConfigBuilder::default()
        .user(format!("{}:{}", settings.user.uid, settings.user.gid))
        .env(env)
        .working_dir(settings.user.home())
        .cmd(cmd)
        .labels(labels.into_iter().collect::<HashMap<_, _>>());
    if input.package_names.iter().any(|p| p == "jupyterlab") {
        config = config.exposed_ports(vec!["8888/tcp".to_string()]);
    }
    let config = config.build().map_err(spec_err)?;

    let mut diff_ids = input.base.diff_ids.clone();
    diff_ids.extend(input.layers.iter().map(|l| l.blob.diff_id.clone()));
    let mut history = input.base.history.clone();
    for layer in input.layers {
        let what = if layer.packages.is_empty() {
            "environment files".to_string()
        } else {
            layer.packages.join(" ")
        };
        history.push(
            HistoryBuilder::default()
                .created(created.clone())
                .created_by(format!("trousse: {what}"))
                .build()
                .map_err(spec_err)?,
        );
    }
    let (arch, variant) = oci_arch(input.platform)?;
    let mut image_config = ImageConfigurationBuilder::default()
        .created(created.clone())
        .architecture(arch.clone())
        .os(Os::Linux)
        .config(config)
        .rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(diff_ids)
                .build()
                .map_err(spec_err)?,
        )
        .history(history)
        .build()
        .map_err(spec_err)?;
    if let Some(v) = &variant {
        image_config.set_variant(Some(v.clone()));
    }
    let config_bytes = canonical_json(&image_config).map_err(spec_err)?;
    let config_digest = blobs.put_bytes(&config_bytes)?;

    let mut layers = input.base.layers.clone();
    for layer in input.layers {
        let mut descriptor = DescriptorBuilder::default()
            .media_type(input.media_type.clone())
            .digest(parse_oci_digest(&layer.blob.digest)?)
            .size(layer.blob.size);
        if !layer.packages.is_empty() {
            descriptor = descriptor.annotations(HashMap::from([(
                PACKAGES_ANNOTATION.to_string(),
                layer.packages.join(","),
            )]));
        }
        layers.push(descriptor.build().map_err(spec_err)?);
    }
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(
            DescriptorBuilder::default()
                .media_type(MediaType::ImageConfig)
                .digest(parse_oci_digest(&config_digest.to_string())?)
                .size(config_bytes.len() as u64)
                .build()
                .map_err(spec_err)?,
        )
        .layers(layers)
        .build()
        .map_err(spec_err)?;
    let manifest_bytes = canonical_json(&manifest).map_err(spec_err)?;
    let manifest_digest = blobs.put_bytes(&manifest_bytes)?;
    let mut platform = PlatformBuilder::default().architecture(arch).os(Os::Linux);
    if let Some(v) = variant {
        platform = platform.variant(v);
    }
    DescriptorBuilder::default()
        .media_type(MediaType::ImageManifest)
        .digest(parse_oci_digest(&manifest_digest.to_string())?)
        .size(manifest_bytes.len() as u64)
        .platform(platform.build().map_err(spec_err)?)
        .build()
        .map_err(spec_err)
}

/// Writes an image index over several platform manifests.
pub fn write_index(
    manifests: Vec<Descriptor>,
    blobs: &BlobStore,
) -> Result<Descriptor, BuildError> {
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(manifests)
        .build()
        .map_err(spec_err)?;
    let bytes = canonical_json(&index).map_err(spec_err)?;
    let digest = blobs.put_bytes(&bytes)?;
    DescriptorBuilder::default()
        .media_type(MediaType::ImageIndex)
        .digest(parse_oci_digest(&digest.to_string())?)
        .size(bytes.len() as u64)
        .build()
        .map_err(spec_err)
}

fn parse_oci_digest(digest: &str) -> Result<oci_spec::image::Digest, BuildError> {
    let _: Digest = digest.parse()?;
    digest.parse().map_err(spec_err)
}
