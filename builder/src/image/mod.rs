//! The image stage: OCI config, manifest per platform, and an index when
//! there are several platforms. Base image layers pass through untouched.

pub(crate) mod build_key;
pub(crate) mod env_layer;
pub mod inspect;
pub(crate) mod layer;
pub(crate) mod plan;
pub(crate) mod post_build;
pub(crate) mod repo_layer;

use std::collections::HashMap;

use oci_spec::image::{
    Arch, Config, ConfigBuilder, Descriptor, DescriptorBuilder, History, HistoryBuilder,
    ImageConfigurationBuilder, ImageIndexBuilder, ImageManifestBuilder, MediaType, Os,
    PlatformBuilder, RootFsBuilder,
};
use rattler_conda_types::Subdir;
use trousse_registry_client::{digest::canonical_json, BlobStore, Digest};

use crate::{
    image::layer::Layer,
    settings::ImageSettings,
    source::base::{oci_arch, BaseImage},
    BuildError,
};

/// The label that carries the sha256 of the lock file.
pub const LOCK_HASH_LABEL: &str = "io.trousse.lock.sha256";
/// The layer annotation that lists the packages in a layer.
pub const PACKAGES_ANNOTATION: &str = "io.trousse.packages";

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

/// The command an image runs when the spec sets none: with a single-user
/// server (the environment's, or one the base declares), the hub's server
/// when a hub starts it (`JUPYTERHUB_API_TOKEN` set) and JupyterLab
/// otherwise, as the Jupyter docker-stacks images do; else JupyterLab, else
/// a shell of the environment, else the base's `sh`; none on `scratch`
/// without a shell (no command is better than one that cannot run).
pub fn default_command(
    prefix: &str,
    package_names: &[String],
    base: &BaseImage,
) -> Option<Vec<String>> {
    let has = |n: &str| package_names.iter().any(|p| p == n);
    let base_has_userland = !base.layers.is_empty();
    let lab = format!("{prefix}/bin/jupyter lab --ip=0.0.0.0 --port=8888 --no-browser");
    let singleuser = if has("jupyterhub-singleuser") || has("jupyterhub-base") {
        Some(format!("{prefix}/bin/jupyterhub-singleuser"))
    } else {
        base.singleuser.clone()
    };
    let shell = if has("bash") {
        Some(format!("{prefix}/bin/bash"))
    } else {
        base_has_userland.then(|| "/bin/sh".to_string())
    };
    Some(match (singleuser, shell) {
        (Some(singleuser), Some(shell)) => {
            // the hub appends its arguments (--port, …): passed on as "$@"
            let script = format!(
                "if [ -n \"$JUPYTERHUB_API_TOKEN\" ]; then exec {singleuser} \"$@\"; else exec {lab} \"$@\"; fi"
            );
            vec![shell, "-c".into(), script, "trousse-start".into()]
        }
        (Some(singleuser), None) => vec![singleuser],
        (None, _) if has("jupyterlab") => lab.split(' ').map(str::to_string).collect(),
        (None, Some(shell)) if has("bash") => vec![shell],
        (None, _) if base_has_userland => vec!["sh".into()],
        (None, _) => return None,
    })
}

/// Writes the config and manifest of one platform; returns the manifest descriptor.
pub fn write_manifest(input: &ImageInput<'_>, blobs: &BlobStore) -> Result<Descriptor, BuildError> {
    let created = chrono::DateTime::from_timestamp(input.created, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (arch, variant) = oci_arch(input.platform)?;
    let config = write_config(input, &created, &arch, variant.as_deref(), blobs)?;
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config)
        .layers(layer_descriptors(input)?)
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

/// The environment variables of the image: the base's, the environment's, the spec's.
fn image_env(input: &ImageInput<'_>) -> Vec<String> {
    let settings = input.settings;
    let prefix = &settings.prefix;
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
    env
}

/// How the image runs: user, environment, working directory, command, labels, ports.
fn runtime_config(input: &ImageInput<'_>, created: &str) -> Result<Config, BuildError> {
    let settings = input.settings;
    let mut labels = settings.labels.clone();
    labels.insert(LOCK_HASH_LABEL.into(), input.lock_hash.into());
    labels.insert(
        "org.opencontainers.image.created".into(),
        created.to_string(),
    );
    let cmd = settings
        .command
        .clone()
        .or_else(|| default_command(&settings.prefix, input.package_names, input.base));
    let mut config = ConfigBuilder::default()
        .user(format!("{}:{}", settings.user.uid, settings.user.gid))
        .env(image_env(input))
        .working_dir(settings.user.home())
        .labels(labels.into_iter().collect::<HashMap<_, _>>());
    if let Some(cmd) = cmd {
        config = config.cmd(cmd);
    }
    if let Some(entrypoint) = &settings.entrypoint {
        config = config.entrypoint(entrypoint.clone());
    }
    if input.package_names.iter().any(|p| p == "jupyterlab") {
        config = config.exposed_ports(vec!["8888/tcp".to_string()]);
    }
    config.build().map_err(spec_err)
}

/// The history: the base's entries, then one per layer of the environment.
fn history(input: &ImageInput<'_>, created: &str) -> Result<Vec<History>, BuildError> {
    let mut history = input.base.history.clone();
    for layer in input.layers {
        let what = match layer.holds {
            Some(holds) => holds.to_string(),
            None => layer.packages.join(" "),
        };
        history.push(
            HistoryBuilder::default()
                .created(created.to_string())
                .created_by(format!("trousse: {what}"))
                .build()
                .map_err(spec_err)?,
        );
    }
    Ok(history)
}

/// Writes the image configuration; returns its descriptor.
fn write_config(
    input: &ImageInput<'_>,
    created: &str,
    arch: &Arch,
    variant: Option<&str>,
    blobs: &BlobStore,
) -> Result<Descriptor, BuildError> {
    let mut diff_ids = input.base.diff_ids.clone();
    diff_ids.extend(input.layers.iter().map(|l| l.blob.diff_id.clone()));
    let mut image_config = ImageConfigurationBuilder::default()
        .created(created.to_string())
        .architecture(arch.clone())
        .os(Os::Linux)
        .config(runtime_config(input, created)?)
        .rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(diff_ids)
                .build()
                .map_err(spec_err)?,
        )
        .history(history(input, created)?)
        .build()
        .map_err(spec_err)?;
    if let Some(v) = variant {
        image_config.set_variant(Some(v.to_string()));
    }
    let config_bytes = canonical_json(&image_config).map_err(spec_err)?;
    let config_digest = blobs.put_bytes(&config_bytes)?;
    DescriptorBuilder::default()
        .media_type(MediaType::ImageConfig)
        .digest(parse_oci_digest(&config_digest.to_string())?)
        .size(config_bytes.len() as u64)
        .build()
        .map_err(spec_err)
}

/// The base's layer descriptors, then the environment's, each naming its packages.
fn layer_descriptors(input: &ImageInput<'_>) -> Result<Vec<Descriptor>, BuildError> {
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
    Ok(layers)
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
