//! Pushing to and pulling from OCI registries with oci-client: blobs are
//! checked before upload, mounted from a sibling repository when possible,
//! streamed from disk, and tags are written last.

use std::time::Duration;

use futures::TryStreamExt;
use oci_client::{
    client::{ClientConfig, ClientProtocol},
    errors::OciDistributionError,
    secrets::RegistryAuth,
    Client, Reference, RegistryOperation,
};
use oci_spec::image::{Descriptor, MediaType};
use serde::Serialize;

use crate::{
    auth::credentials_for, blob_sources::BlobSources, publish::descriptor_digest, BlobStore,
    Digest, Image, RegistryError,
};

/// How to reach registries.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// Registries (host[:port]) reached over plain HTTP besides loopback ones.
    pub insecure: Vec<String>,
    /// A repository (`HOST/REPO`) every pushed blob is also kept in, so that
    /// images in other repositories of the registry mount it instead of
    /// uploading it again.
    pub layer_pool: Option<String>,
    /// Where to remember which repository of each registry received each
    /// blob, to mount it from there into another repository (as docker does).
    pub blob_sources: Option<std::path::PathBuf>,
}

/// What a push transferred.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PushReport {
    /// Blobs uploaded.
    pub blobs_uploaded: usize,
    /// Bytes of blobs uploaded.
    pub bytes_uploaded: u64,
    /// Blobs the registry already had in the repository.
    pub blobs_present: usize,
    /// Blobs mounted from another repository of the registry.
    pub blobs_mounted: usize,
}

/// Media types accepted when pulling manifests.
const MANIFEST_TYPES: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// Parses `HOST/REPO[:TAG][@DIGEST]` (a `docker://` reference without the transport).
pub fn parse_reference(text: &str) -> Result<Reference, RegistryError> {
    text.parse::<Reference>()
        .map_err(|e| RegistryError::InvalidReference {
            reference: format!("docker://{text}"),
            reason: e.to_string(),
        })
}

/// Whether a registry host is on this machine.
pub fn is_loopback(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    name == "localhost" || name == "::1" || name.starts_with("127.")
}

/// A client for one registry, with its credentials.
pub struct Registry {
    client: Client,
    auth: RegistryAuth,
    host: String,
    layer_pool: Option<Reference>,
    sources: Option<BlobSources>,
}

impl Registry {
    /// Connects (lazily) to the registry of `reference`, with the user's stored credentials.
    pub fn for_reference(
        reference: &Reference,
        options: &RegistryOptions,
    ) -> Result<Self, RegistryError> {
        let host = reference.resolve_registry().to_string();
        let auth = credentials_for(reference.registry())?;
        let plain: Vec<String> = if is_loopback(&host) || options.insecure.contains(&host) {
            vec![host.clone()]
        } else {
            Vec::new()
        };
        let client = Client::new(ClientConfig {
            protocol: ClientProtocol::HttpsExcept(plain),
            // one streamed PUT per blob: chunked mode sends a PATCH per stream item
            use_monolithic_push: true,
            ..ClientConfig::default()
        });
        let layer_pool = options
            .layer_pool
            .as_deref()
            .map(parse_reference)
            .transpose()?
            .filter(|pool| {
                pool.registry() == reference.registry()
                    && pool.repository() != reference.repository()
            });
        let sources = options
            .blob_sources
            .as_deref()
            .map(|dir| BlobSources::new(dir, reference.registry()));
        Ok(Self {
            client,
            auth,
            host,
            layer_pool,
            sources,
        })
    }

    fn error(&self, e: OciDistributionError) -> RegistryError {
        let unauthorized = matches!(
            e,
            OciDistributionError::AuthenticationFailure(_)
                | OciDistributionError::UnauthorizedError { .. }
        ) || e.to_string().contains("401");
        if unauthorized {
            RegistryError::Unauthorized {
                registry: self.host.clone(),
            }
        } else if matches!(e, OciDistributionError::RequestError(_)) {
            RegistryError::Registry {
                registry: self.host.clone(),
                message: format!("cannot reach it ({e})"),
            }
        } else {
            RegistryError::Registry {
                registry: self.host.clone(),
                message: e.to_string(),
            }
        }
    }

    async fn authenticate(
        &self,
        reference: &Reference,
        operation: RegistryOperation,
    ) -> Result<(), RegistryError> {
        self.client
            .auth(reference, &self.auth, operation)
            .await
            .map(|_| ())
            .map_err(|e| self.error(e))
    }

    /// Pushes an image: blobs the repository lacks, then manifests, then the tag.
    pub async fn push(
        &self,
        image: &Image,
        target: &Reference,
        mount_from: &[Reference],
    ) -> Result<PushReport, RegistryError> {
        self.push_all(image, target, mount_from)
            .await
            .map_err(|e| match e {
                RegistryError::Registry { registry, message } => RegistryError::Registry {
                    registry,
                    message: format!(
                        "{message}; no tag was moved, run the same build again to finish the push"
                    ),
                },
                other => other,
            })
    }

    /// Blobs, then manifests, then the tag.
    async fn push_all(
        &self,
        image: &Image,
        target: &Reference,
        mount_from: &[Reference],
    ) -> Result<PushReport, RegistryError> {
        self.authenticate(target, RegistryOperation::Push).await?;
        if let Some(pool) = &self.layer_pool {
            self.authenticate(pool, RegistryOperation::Push).await?;
        }
        let mut report = PushReport::default();
        let manifests = image.manifests()?;
        let mut blobs: Vec<Descriptor> = Vec::new();
        for (_, manifest) in &manifests {
            for d in std::iter::once(manifest.config()).chain(manifest.layers()) {
                if !blobs.iter().any(|b| b.digest() == d.digest()) {
                    blobs.push(d.clone());
                }
            }
        }
        for blob in &blobs {
            let digest = descriptor_digest(blob)?;
            self.push_blob(image, target, mount_from, &digest, &mut report)
                .await?;
        }
        if image.root.media_type() == &MediaType::ImageIndex {
            for (descriptor, _) in &manifests {
                let digest = descriptor_digest(descriptor)?;
                let by_digest = Reference::with_digest(
                    target.registry().into(),
                    target.repository().into(),
                    digest.to_string(),
                );
                self.push_manifest(image, &by_digest, descriptor).await?;
            }
        }
        self.push_manifest(image, target, &image.root).await?;
        Ok(report)
    }

    async fn push_blob(
        &self,
        image: &Image,
        target: &Reference,
        mount_from: &[Reference],
        digest: &Digest,
        report: &mut PushReport,
    ) -> Result<(), RegistryError> {
        let name = digest.to_string();
        if self
            .client
            .blob_exists(target, &name)
            .await
            .map_err(|e| self.error(e))?
        {
            report.blobs_present += 1;
            self.remember(&name, target);
            return Ok(());
        }
        let remembered = self.remembered_source(&name, target);
        let mut sources: Vec<&Reference> = mount_from.iter().collect();
        sources.extend(remembered.as_ref());
        sources.extend(self.layer_pool.as_ref());
        for source in &sources {
            if self.mount(target, source, &name).await {
                report.blobs_mounted += 1;
                self.remember(&name, target);
                return Ok(());
            }
        }
        report.blobs_uploaded += 1;
        report.bytes_uploaded += image.blobs.size(digest)?;
        if let Some(pool) = &self.layer_pool {
            // upload once into the pool, then mount it where it is wanted
            self.upload(image, pool, digest).await?;
            if self.mount(target, pool, &name).await {
                self.remember(&name, target);
                return Ok(());
            }
        }
        self.upload(image, target, digest).await?;
        self.remember(&name, target);
        Ok(())
    }

    /// The repository that last received `digest` in this registry, if another.
    fn remembered_source(&self, digest: &str, target: &Reference) -> Option<Reference> {
        let repository = self.sources.as_ref()?.repository(digest)?;
        (repository != target.repository())
            .then(|| Reference::with_tag(target.registry().into(), repository, "latest".into()))
    }

    fn remember(&self, digest: &str, target: &Reference) {
        if let Some(sources) = &self.sources {
            sources.remember(digest, target.repository());
        }
    }

    /// Mounts a blob from another repository of the same registry; false when
    /// the registry declines (202: it wants an upload instead).
    async fn mount(&self, target: &Reference, source: &Reference, digest: &str) -> bool {
        source.registry() == target.registry()
            && source.repository() != target.repository()
            && self.client.mount_blob(target, source, digest).await.is_ok()
            && self
                .client
                .blob_exists(target, digest)
                .await
                .unwrap_or(false)
    }

    /// Streams a blob from disk to a repository, retrying transient failures.
    async fn upload(
        &self,
        image: &Image,
        target: &Reference,
        digest: &Digest,
    ) -> Result<(), RegistryError> {
        let name = digest.to_string();
        if self
            .client
            .blob_exists(target, &name)
            .await
            .unwrap_or(false)
        {
            return Ok(());
        }
        let size = image.blobs.size(digest)?;
        let mut attempt = 0;
        loop {
            let file = tokio::fs::File::open(image.blobs.path(digest))
                .await
                .map_err(RegistryError::io("opening blob", image.blobs.path(digest)))?;
            let stream = tokio_util::io::ReaderStream::with_capacity(file, 1 << 20)
                .map_err(OciDistributionError::from);
            match self
                .client
                .push_blob_stream(target, stream, &name, Some(size))
                .await
            {
                Ok(_) => break,
                Err(e) if attempt < 3 && is_transient(&e) => {
                    attempt += 1;
                    tracing::warn!("retrying upload of {name} to {}: {e}", self.host);
                    tokio::time::sleep(Duration::from_millis(500 << attempt)).await;
                }
                Err(e) => return Err(self.error(e)),
            }
        }
        Ok(())
    }

    async fn push_manifest(
        &self,
        image: &Image,
        reference: &Reference,
        descriptor: &Descriptor,
    ) -> Result<(), RegistryError> {
        let digest = descriptor_digest(descriptor)?;
        let bytes = image.blobs.read_verified(&digest)?;
        let content_type = descriptor
            .media_type()
            .to_string()
            .parse()
            .map_err(|_| RegistryError::Unsupported("invalid manifest media type".into()))?;
        self.client
            .push_manifest_raw(reference, bytes, content_type)
            .await
            .map(|_| ())
            .map_err(|e| self.error(e))
    }

    /// The digest a tag points at, if the registry has it.
    pub async fn resolve(&self, reference: &Reference) -> Result<Option<String>, RegistryError> {
        self.authenticate(reference, RegistryOperation::Pull)
            .await?;
        match self
            .client
            .fetch_manifest_digest(reference, &self.auth)
            .await
        {
            Ok(d) => Ok(Some(d)),
            Err(OciDistributionError::ImageManifestNotFoundError(_)) => Ok(None),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(self.error(e)),
        }
    }

    /// Points `to` at the manifest `from` names, unless it already does.
    /// Returns the digest, or `None` when `from` does not exist.
    pub async fn retag(
        &self,
        from: &Reference,
        to: &Reference,
    ) -> Result<Option<String>, RegistryError> {
        self.authenticate(to, RegistryOperation::Push).await?;
        let Some(digest) = self.resolve(from).await? else {
            return Ok(None);
        };
        if self.resolve(to).await?.as_deref() == Some(digest.as_str()) {
            return Ok(Some(digest));
        }
        let (bytes, _) = self.pull_manifest(from).await?;
        let media_type = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v["mediaType"].as_str().map(String::from))
            .unwrap_or_else(|| MediaType::ImageManifest.to_string());
        let content_type = media_type
            .parse()
            .map_err(|_| RegistryError::Unsupported("invalid manifest media type".into()))?;
        self.client
            .push_manifest_raw(to, bytes, content_type)
            .await
            .map_err(|e| self.error(e))?;
        Ok(Some(digest))
    }

    /// Pulls an image's manifests and configs, and the layers of the
    /// manifests for `architecture` (all when `None`), into `store`.
    pub async fn pull(
        &self,
        reference: &Reference,
        architecture: Option<&str>,
        store: &BlobStore,
    ) -> Result<Image, RegistryError> {
        self.authenticate(reference, RegistryOperation::Pull)
            .await?;
        let (bytes, digest) = self.pull_manifest(reference).await?;
        let root = self.store_manifest(store, &bytes, &digest)?;
        let image = Image {
            blobs: store.clone(),
            root,
        };
        if is_index(image.root.media_type()) {
            self.pull_platform_manifests(reference, &image.root, architecture, store)
                .await?;
        }
        for entry in manifest_entries(&image.root, store)? {
            let digest = descriptor_digest(&entry)?;
            if !platform_wanted(&entry, architecture) || !store.contains(&digest) {
                continue;
            }
            self.pull_manifest_blobs(reference, &digest, store).await?;
        }
        Ok(image)
    }

    /// The raw bytes and digest of the manifest `reference` names.
    async fn pull_manifest(
        &self,
        reference: &Reference,
    ) -> Result<(bytes::Bytes, String), RegistryError> {
        self.client
            .pull_manifest_raw(reference, &self.auth, MANIFEST_TYPES)
            .await
            .map_err(|e| self.error(e))
    }

    /// Pulls into `store` the manifests of the index `root` for `architecture`
    /// (all when `None`) that it lacks.
    async fn pull_platform_manifests(
        &self,
        reference: &Reference,
        root: &Descriptor,
        architecture: Option<&str>,
        store: &BlobStore,
    ) -> Result<(), RegistryError> {
        let index = crate::layout::read_index(store, &descriptor_digest(root)?)?;
        for entry in index.manifests() {
            if !platform_wanted(entry, architecture) || store.contains(&descriptor_digest(entry)?) {
                continue;
            }
            let by_digest = Reference::with_digest(
                reference.registry().into(),
                reference.repository().into(),
                entry.digest().to_string(),
            );
            let (bytes, digest) = self.pull_manifest(&by_digest).await?;
            self.store_manifest(store, &bytes, &digest)?;
        }
        Ok(())
    }

    /// Pulls into `store` the config and layers of the manifest `digest` (already in it).
    async fn pull_manifest_blobs(
        &self,
        reference: &Reference,
        digest: &Digest,
        store: &BlobStore,
    ) -> Result<(), RegistryError> {
        let manifest = crate::layout::read_manifest(store, digest)?;
        for blob in std::iter::once(manifest.config()).chain(manifest.layers()) {
            self.pull_blob(reference, blob, store).await?;
        }
        Ok(())
    }

    fn store_manifest(
        &self,
        store: &BlobStore,
        bytes: &[u8],
        digest: &str,
    ) -> Result<Descriptor, RegistryError> {
        let stored = store.put_bytes(bytes)?;
        if stored.to_string() != digest {
            return Err(RegistryError::DigestMismatch {
                expected: digest.to_string(),
                actual: stored.to_string(),
            });
        }
        let media_type = serde_json::from_slice::<serde_json::Value>(bytes)
            .ok()
            .and_then(|v| v["mediaType"].as_str().map(MediaType::from))
            .unwrap_or(MediaType::ImageManifest);
        oci_spec::image::DescriptorBuilder::default()
            .media_type(media_type)
            .digest(
                digest
                    .parse::<oci_spec::image::Digest>()
                    .map_err(|e| RegistryError::InvalidDigest(e.to_string()))?,
            )
            .size(bytes.len() as u64)
            .build()
            .map_err(|e| RegistryError::Unsupported(e.to_string()))
    }

    async fn pull_blob(
        &self,
        reference: &Reference,
        blob: &Descriptor,
        store: &BlobStore,
    ) -> Result<(), RegistryError> {
        let digest = descriptor_digest(blob)?;
        if store.contains(&digest) {
            return Ok(());
        }
        let partial = store.partial_path(&digest)?;
        let file = tokio::fs::File::create(&partial)
            .await
            .map_err(RegistryError::io("creating", &partial))?;
        let name = digest.to_string();
        let pulled = self.client.pull_blob(reference, name.as_str(), file).await;
        let result = match pulled {
            Ok(()) => store.commit_partial(&partial, &digest),
            Err(e) => Err(self.error(e)),
        };
        if result.is_err() {
            let _ = std::fs::remove_file(&partial);
        }
        result
    }
}

/// The manifests of an image: the entries of its index, or its root manifest alone.
fn manifest_entries(
    root: &Descriptor,
    store: &BlobStore,
) -> Result<Vec<Descriptor>, RegistryError> {
    Ok(if is_index(root.media_type()) {
        crate::layout::read_index(store, &descriptor_digest(root)?)?
            .manifests()
            .clone()
    } else {
        vec![root.clone()]
    })
}

/// Whether an index entry is for `architecture`: any entry when `None`, and entries naming no platform.
fn platform_wanted(entry: &Descriptor, architecture: Option<&str>) -> bool {
    architecture.is_none_or(|a| {
        entry
            .platform()
            .as_ref()
            .is_none_or(|p| p.architecture().to_string() == a)
    })
}

/// Whether a media type is an image index or a docker manifest list.
pub fn is_index(media_type: &MediaType) -> bool {
    match media_type {
        MediaType::ImageIndex => true,
        MediaType::Other(s) => s.contains("manifest.list"),
        _ => false,
    }
}

fn is_not_found(e: &OciDistributionError) -> bool {
    let text = e.to_string().to_lowercase();
    text.contains("manifest unknown") || text.contains("404") || text.contains("not found")
}

fn is_transient(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::ServerError { code, .. } => *code >= 500 || *code == 429,
        OciDistributionError::RequestError(_) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_loopback_registries() {
        assert!(is_loopback("localhost:5000"));
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("[::1]:5000"));
        assert!(!is_loopback("registry.example.org"));
        assert!(!is_loopback("10.0.0.1:5000"));
    }
}
