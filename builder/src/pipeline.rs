//! The whole build: spec or lock in, published image and a report out.
//! Each stage is called once, in order; data flows one way.

use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    time::Instant,
};

use futures::{StreamExt, TryStreamExt};
use rattler_cache::package_cache::PackageCache;
use rattler_conda_types::Subdir;
use rattler_networking::LazyClient;
use rattler_repodata_gateway::Gateway;
use serde::Serialize;
use trousse_registry_client::{
    cache_tag, publish, publish::descriptor_digest, Image, ImageRef, PushReport, RegistryOptions,
};

use crate::{
    build_key::BuildKey,
    cache::CacheDir,
    env_layer::{environment_layer, EnvironmentLayerInput},
    fetch::fetch,
    image::{load_base, write_index, write_manifest, BaseImage, ImageInput},
    layer::{package_layer, Compression, Layer},
    layer_plan::{plan_layers, LayerCandidate, MAX_LAYERS},
    progress::{Event, Reporter, Stage},
    request::Resolved,
    stage::{self, StageTarget, StagedPackage},
    BuildError,
};

/// How to build.
#[derive(Clone)]
pub struct BuildOptions {
    /// The cache directory.
    pub cache_dir: PathBuf,
    /// Layer compression.
    pub compression: Compression,
    /// Where the image goes.
    pub output: ImageRef,
    /// Receives progress events.
    pub reporter: Reporter,
    /// How to reach registries.
    pub registry: RegistryOptions,
}

/// The image of one platform.
#[derive(Debug, Clone, Serialize)]
pub struct PlatformImage {
    /// The conda platform.
    pub platform: String,
    /// The manifest digest.
    pub digest: String,
    /// The number of layers, base layers included.
    pub layers: usize,
}

/// What a build did.
#[derive(Debug, Clone, Serialize)]
pub struct BuildReport {
    /// The digest of the image: the manifest, or the index for several platforms.
    pub digest: String,
    /// Where the image was written.
    pub output: String,
    /// The sha256 of the lock.
    pub lock_hash: String,
    /// Layers made by trousse across platforms (base layers not counted).
    pub layers: usize,
    /// How many of those came from the cache.
    pub cached_layers: usize,
    /// Total size of the image's layer blobs, base layers included.
    pub bytes: u64,
    /// Bytes of layers written by this build (not cached).
    pub bytes_written: u64,
    /// The packages in the environment (all platforms).
    pub packages: usize,
    /// One entry per platform.
    pub platforms: Vec<PlatformImage>,
    /// Seconds spent per stage.
    pub seconds: BTreeMap<Stage, f64>,
    /// Whether the registry already had this build, so nothing was done.
    pub cached: bool,
    /// What a push to a registry transferred.
    pub push: Option<PushReport>,
}

/// The HTTP client for channels and packages.
pub(crate) fn http_client() -> LazyClient {
    LazyClient::from(
        reqwest::Client::builder()
            .user_agent(concat!("trousse/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default(),
    )
}

/// The repodata gateway over the cache.
pub(crate) fn gateway(cache: &CacheDir, client: &LazyClient) -> Gateway {
    Gateway::builder()
        .with_cache_dir(cache.repodata())
        .with_package_cache(PackageCache::new(cache.packages()))
        .with_client(client.clone())
        .finish()
}

/// Loads the base image of each platform (before solving: a base declares virtual packages).
async fn load_bases(
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

/// Runs a stage's work between its started and finished events; returns its seconds too.
pub(crate) async fn timed<T>(
    reporter: &Reporter,
    stage: Stage,
    total: u64,
    work: impl std::future::Future<Output = Result<T, BuildError>>,
) -> Result<(T, f64), BuildError> {
    let started = Instant::now();
    reporter(&Event::StageStarted { stage, total });
    let value = work.await?;
    let seconds = started.elapsed().as_secs_f64();
    reporter(&Event::StageFinished { stage, seconds });
    Ok((value, seconds))
}

/// Builds and publishes the image.
pub async fn build(resolved: Resolved, options: BuildOptions) -> Result<BuildReport, BuildError> {
    let reporter = &options.reporter;
    let cache = CacheDir::new(&options.cache_dir)?;
    let _shared = cache.lock_shared()?;
    let client = http_client();
    let Resolved {
        lock,
        settings,
        mut seconds,
    } = resolved;
    let platforms: Vec<Subdir> = lock.platforms.iter().map(|p| p.platform).collect();
    let bases = load_bases(&settings.base, &platforms, &cache, &options.registry).await?;
    let lock_hash = lock.hash();
    let build_key = BuildKey::new(&lock_hash, &settings, options.compression);
    if let Some(report) = published_build(&options, &build_key, &lock_hash).await? {
        return Ok(report);
    }
    let epoch = source_date_epoch().unwrap_or_else(|| lock.newest_timestamp());
    let blobs = cache.blobs();
    let package_cache = PackageCache::new(cache.packages());

    let mut manifests = Vec::new();
    let mut platforms = Vec::new();
    let mut all_layers: Vec<Layer> = Vec::new();
    let mut total_bytes = 0;
    let mut packages = 0;
    for locked in &lock.platforms {
        let platform = locked.platform;
        let records = &locked.records;
        packages += records.len();
        let python = stage::python_info(records, platform)?;
        let target = StageTarget {
            prefix: &settings.prefix,
            platform,
            python: python.as_ref(),
        };

        // fetch + stage what the cache does not have yet
        let started = Instant::now();
        let mut staged: Vec<Option<StagedPackage>> = records
            .iter()
            .map(|r| stage::cached(&cache, r, &target))
            .collect();
        let missing: Vec<_> = records
            .iter()
            .zip(&staged)
            .filter(|(_, s)| s.is_none())
            .map(|(r, _)| r.clone())
            .collect();
        let fetched = fetch(missing, &package_cache, &client, reporter).await?;
        *seconds.entry(Stage::Fetch).or_default() += started.elapsed().as_secs_f64();

        let (newly_staged, s) = timed(reporter, Stage::Stage, fetched.len() as u64, async {
            futures::stream::iter(fetched.iter().cloned())
                .map(|f| {
                    let target = &target;
                    let cache = &cache;
                    async move {
                        let s = stage::stage(cache, &f.record, &f.dir, target).await?;
                        reporter(&Event::Progress {
                            stage: Stage::Stage,
                            item: f.record.identifier.to_string(),
                            cached: false,
                        });
                        Ok::<_, BuildError>(s)
                    }
                })
                .buffered(4)
                .try_collect::<Vec<_>>()
                .await
        })
        .await?;
        *seconds.entry(Stage::Stage).or_default() += s;
        let mut newly_staged = newly_staged.into_iter();
        for slot in staged.iter_mut().filter(|s| s.is_none()) {
            *slot = newly_staged.next();
        }
        let staged: Vec<StagedPackage> = staged.into_iter().flatten().collect();

        // layers
        let base = bases.get(&platform).cloned().unwrap_or_default();
        let budget = MAX_LAYERS.saturating_sub(base.layers.len() + 1).max(2);
        let candidates: Vec<LayerCandidate> = staged
            .iter()
            .map(|p| LayerCandidate {
                name: p.record.package_record.name.as_normalized().to_string(),
                size: p.record.package_record.size.unwrap_or(0),
            })
            .collect();
        let groups = plan_layers(&candidates, budget);
        let (mut layers, s) = timed(reporter, Stage::Layer, groups.len() as u64 + 1, async {
            let parallel = std::thread::available_parallelism().map_or(2, |n| n.get());
            futures::stream::iter(groups)
                .map(|group| {
                    let members: Vec<StagedPackage> =
                        group.iter().map(|&i| staged[i].clone()).collect();
                    let cache = cache.clone();
                    let prefix = settings.prefix.clone();
                    let compression = options.compression;
                    async move {
                        let layer = tokio::task::spawn_blocking(move || {
                            let refs: Vec<&StagedPackage> = members.iter().collect();
                            package_layer(&cache, &refs, &prefix, compression)
                        })
                        .await
                        .map_err(|e| BuildError::Internal(format!("layer task failed: {e}")))??;
                        reporter(&Event::Progress {
                            stage: Stage::Layer,
                            item: layer.packages.join(","),
                            cached: layer.cached,
                        });
                        Ok::<_, BuildError>(layer)
                    }
                })
                .buffered(parallel)
                .try_collect::<Vec<_>>()
                .await
        })
        .await?;
        let env_input = EnvironmentLayerInput {
            packages: &staged,
            lock_text: &lock.text,
            prefix: &settings.prefix,
            user: &settings.user,
            epoch,
            base_passwd: base.passwd.clone(),
            base_group: base.group.clone(),
        };
        layers.push(environment_layer(&env_input, &blobs, options.compression)?);
        *seconds.entry(Stage::Layer).or_default() += s;

        // image
        let started = Instant::now();
        let package_names: Vec<String> = records
            .iter()
            .map(|r| r.package_record.name.as_normalized().to_string())
            .collect();
        let descriptor = write_manifest(
            &ImageInput {
                platform,
                base: &base,
                layers: &layers,
                settings: &settings,
                lock_hash: &lock_hash,
                created: epoch,
                package_names: &package_names,
                media_type: options.compression.media_type(),
            },
            &blobs,
        )?;
        *seconds.entry(Stage::Image).or_default() += started.elapsed().as_secs_f64();
        total_bytes += base.layers.iter().map(|l| l.size()).sum::<u64>()
            + layers.iter().map(|l| l.blob.size).sum::<u64>();
        platforms.push(PlatformImage {
            platform: platform.to_string(),
            digest: descriptor.digest().to_string(),
            layers: base.layers.len() + layers.len(),
        });
        manifests.push(descriptor);
        all_layers.extend(layers);
    }

    let root = if manifests.len() == 1 {
        manifests.remove(0)
    } else {
        write_index(manifests, &blobs)?
    };
    let digest = descriptor_digest(&root)?.to_string();
    let image = Image { blobs, root };
    let mount_from: Vec<String> = match &settings.base {
        ImageRef::Registry { reference } => vec![reference.clone()],
        _ => Vec::new(),
    };
    let (published, s) = timed(reporter, Stage::Publish, 1, async {
        // remember which repository received each blob, to mount it into the next one
        let mut registry = options.registry.clone();
        registry
            .blob_sources
            .get_or_insert_with(|| cache.root().join("blob-sources"));
        let published = publish(&image, &options.output, &registry, &mount_from).await?;
        if let ImageRef::Registry { reference } = &options.output {
            // the build-key tag is written last: it marks a complete push
            cache_tag::mark_published(reference, &build_key.tag(), &options.registry).await?;
        }
        Ok::<_, BuildError>(published)
    })
    .await?;
    seconds.insert(Stage::Publish, s);

    Ok(BuildReport {
        digest,
        output: options.output.to_string(),
        lock_hash,
        layers: all_layers.len(),
        cached_layers: all_layers.iter().filter(|l| l.cached).count(),
        bytes: total_bytes,
        bytes_written: all_layers
            .iter()
            .filter(|l| !l.cached)
            .map(|l| l.blob.size)
            .sum(),
        packages,
        platforms,
        seconds,
        cached: false,
        push: published.push,
    })
}

/// For a registry output that already holds this build (tag `build-KEY`):
/// moves the requested tag to it when needed and reports it as cached.
async fn published_build(
    options: &BuildOptions,
    build_key: &BuildKey,
    lock_hash: &str,
) -> Result<Option<BuildReport>, BuildError> {
    let ImageRef::Registry { reference } = &options.output else {
        return Ok(None);
    };
    let Some(digest) =
        cache_tag::find_published(reference, &build_key.tag(), &options.registry).await?
    else {
        return Ok(None);
    };
    Ok(Some(BuildReport {
        digest,
        output: options.output.to_string(),
        lock_hash: lock_hash.to_string(),
        layers: 0,
        cached_layers: 0,
        bytes: 0,
        bytes_written: 0,
        packages: 0,
        platforms: Vec::new(),
        seconds: BTreeMap::new(),
        cached: true,
        push: Some(PushReport::default()),
    }))
}

/// `SOURCE_DATE_EPOCH`, when set, overrides the time taken from the lock.
fn source_date_epoch() -> Option<i64> {
    std::env::var("SOURCE_DATE_EPOCH").ok()?.trim().parse().ok()
}
