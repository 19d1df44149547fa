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
    publish,
    publish::descriptor_digest,
    registry::{parse_reference, Registry},
    Image, ImageRef, PushReport, RegistryOptions,
};

use crate::{
    cache::CacheDir,
    env_layer::{environment_layer, EnvironmentLayerInput},
    fetch::fetch,
    image::{load_base, write_index, write_manifest, BaseImage, ImageInput},
    layer::{package_layer, Compression, Layer},
    layer_plan::{plan_layers, LayerCandidate, MAX_LAYERS},
    lock::Lock,
    progress::{Event, Reporter, Stage},
    solve::solve,
    spec::{EnvSpec, ImageSettings},
    stage::{self, StageTarget, StagedPackage},
    BuildError,
};

/// What to build from.
#[derive(Debug, Clone)]
pub enum BuildInput {
    /// A spec, solved first.
    Spec(EnvSpec),
    /// A lock, built as it is, with these image settings.
    Lock {
        /// The lock.
        lock: Lock,
        /// The image settings.
        settings: ImageSettings,
    },
}

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
    pub seconds: BTreeMap<String, f64>,
    /// Whether the registry already had this build, so nothing was done.
    pub cached: bool,
    /// What a push to a registry transferred.
    pub push: Option<PushReport>,
}

/// The HTTP client for channels and packages.
pub fn http_client() -> LazyClient {
    LazyClient::from(
        reqwest::Client::builder()
            .user_agent(concat!("trousse/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default(),
    )
}

/// The repodata gateway over the cache.
pub fn gateway(cache: &CacheDir, client: &LazyClient) -> Gateway {
    Gateway::builder()
        .with_cache_dir(cache.repodata())
        .with_package_cache(PackageCache::new(cache.packages()))
        .with_client(client.clone())
        .finish()
}

/// Solves a spec and returns its lock.
pub async fn lock_spec(
    spec: &EnvSpec,
    cache_dir: PathBuf,
    registry: &RegistryOptions,
    reporter: &Reporter,
) -> Result<Lock, BuildError> {
    let cache = CacheDir::new(cache_dir)?;
    let _shared = cache.lock_shared()?;
    let client = http_client();
    let bases = load_bases(&spec.image.base, &spec.image.platforms, &cache, registry).await?;
    timed(
        reporter,
        Stage::Solve,
        0,
        solve_and_lock(spec, &cache, &client, &bases),
    )
    .await
    .map(|(lock, _)| lock)
}

async fn solve_and_lock(
    spec: &EnvSpec,
    cache: &CacheDir,
    client: &LazyClient,
    bases: &HashMap<Subdir, BaseImage>,
) -> Result<Lock, BuildError> {
    let declared = bases
        .iter()
        .map(|(platform, base)| (*platform, base.virtual_packages.clone()))
        .collect();
    let solved = solve(spec, &gateway(cache, client), &declared).await?;
    Lock::from_solved(spec, solved)
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

async fn timed<T>(
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
pub async fn build(input: BuildInput, options: BuildOptions) -> Result<BuildReport, BuildError> {
    let reporter = &options.reporter;
    let cache = CacheDir::new(&options.cache_dir)?;
    let _shared = cache.lock_shared()?;
    let client = http_client();
    let mut seconds = BTreeMap::new();

    let (lock, settings, bases) = match input {
        BuildInput::Spec(spec) => {
            let bases = load_bases(
                &spec.image.base,
                &spec.image.platforms,
                &cache,
                &options.registry,
            )
            .await?;
            let (lock, s) = timed(
                reporter,
                Stage::Solve,
                0,
                solve_and_lock(&spec, &cache, &client, &bases),
            )
            .await?;
            seconds.insert("solve".to_string(), s);
            (lock, spec.image, bases)
        }
        BuildInput::Lock { lock, settings } => {
            let platforms: Vec<Subdir> = lock.platforms.iter().map(|p| p.platform).collect();
            let bases = load_bases(&settings.base, &platforms, &cache, &options.registry).await?;
            (lock, settings, bases)
        }
    };
    let lock_hash = lock.hash();
    let build_key = build_key(&lock_hash, &settings, options.compression);
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
        *seconds.entry("fetch".to_string()).or_default() += started.elapsed().as_secs_f64();

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
        *seconds.entry("stage".to_string()).or_default() += s;
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
                        .map_err(|e| {
                            BuildError::Unsupported(format!("layer task failed: {e}"))
                        })??;
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
        *seconds.entry("layer".to_string()).or_default() += s;

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
        *seconds.entry("image".to_string()).or_default() += started.elapsed().as_secs_f64();
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
        let published = publish(&image, &options.output, &options.registry, &mount_from).await?;
        if let ImageRef::Registry { reference } = &options.output {
            // the build-key tag is written last: it marks a complete push
            let target = parse_reference(reference)?;
            let key_tag = build_key_tag(&target, &build_key);
            Registry::for_reference(&key_tag, &options.registry)?
                .retag(&target, &key_tag)
                .await?;
        }
        Ok::<_, BuildError>(published)
    })
    .await?;
    seconds.insert("publish".to_string(), s);

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

/// The identity of a build: the lock, the settings, the compression and the
/// builder's output format. The same key gives the same image.
fn build_key(lock_hash: &str, settings: &ImageSettings, compression: Compression) -> String {
    use sha2::{Digest, Sha256};
    let identity = format!("trousse-build-v2\n{lock_hash}\n{settings:?}\n{compression:?}");
    hex::encode(&Sha256::digest(identity.as_bytes())[..16])
}

/// The tag that marks a complete push of a build in the target repository.
fn build_key_tag(target: &oci_client::Reference, build_key: &str) -> oci_client::Reference {
    oci_client::Reference::with_tag(
        target.registry().into(),
        target.repository().into(),
        format!("build-{build_key}"),
    )
}

/// For a registry output that already holds this build (tag `build-KEY`):
/// moves the requested tag to it when needed and reports it as cached.
async fn published_build(
    options: &BuildOptions,
    build_key: &str,
    lock_hash: &str,
) -> Result<Option<BuildReport>, BuildError> {
    let ImageRef::Registry { reference } = &options.output else {
        return Ok(None);
    };
    let target = parse_reference(reference)?;
    let registry = Registry::for_reference(&target, &options.registry)?;
    let Some(digest) = registry
        .retag(&build_key_tag(&target, build_key), &target)
        .await?
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
