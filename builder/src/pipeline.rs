//! The whole build: spec or lock in, published image and a report out.
//! Each stage is called once, in order; data flows one way.

use std::{collections::BTreeMap, path::PathBuf, sync::Arc, time::Instant};

use futures::{StreamExt, TryStreamExt};
use rattler_conda_types::Subdir;
use rattler_networking::LazyClient;
use serde::Serialize;
use trousse_registry_client::{
    cache_tag, publish, publish::descriptor_digest, Image, ImageRef, PushReport, RegistryOptions,
};

use oci_spec::image::Descriptor;
use trousse_registry_client::Published;

use crate::{
    cache::fetch::{fetch, PackageCaches},
    cache::CacheDir,
    error::blocking,
    image::build_key::BuildKey,
    image::env_layer::{environment_layer, EnvironmentLayerInput},
    image::layer::{package_layer, Compression, Layer, LayerMember},
    image::plan::{plan_layers, LayerCandidate, MAX_LAYERS},
    image::post_build::{post_build_layer, PostBuild},
    image::repo_layer::content_layer,
    image::{write_index, write_manifest, ImageInput},
    lockfile::Lock,
    lockfile::LockedPlatform,
    net::http_client,
    progress::{timed, Event, Reporter, Stage},
    resolve::Resolved,
    settings::ImageSettings,
    source::base::{load_bases, BaseImage},
    source::repo::RepoContent,
    stage::wheels::{cached_wheel, requested, stage_wheel, StagedWheel, WheelStageTarget},
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
    /// The most compressed bytes an image's own layers (base excluded) may
    /// hold, per platform; `None`: no limit.
    pub max_image_bytes: Option<u64>,
    /// Whether an allowed `postBuild` gets a bridged network (none by default).
    pub post_build_network: bool,
    /// Where channels are fetched from instead of their own URLs.
    pub mirrors: crate::net::mirrors::Mirrors,
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

/// What the stages of one build share.
struct Build<'a> {
    options: &'a BuildOptions,
    cache: CacheDir,
    client: LazyClient,
    lock: &'a Lock,
    lock_hash: String,
    settings: &'a ImageSettings,
    /// A repository's files, layered on top.
    content: Option<Arc<RepoContent>>,
    /// The time of everything the builder writes itself.
    epoch: i64,
    seconds: BTreeMap<Stage, f64>,
}

/// One platform's image: its manifest and what went into it.
struct PlatformBuild {
    descriptor: Descriptor,
    layers: Vec<Layer>,
    bytes: u64,
    packages: usize,
    image: PlatformImage,
}

/// Builds and publishes the image: per platform stage, layer and manifest,
/// then publish. A registry that holds the build already is only retagged.
pub async fn build(resolved: Resolved, options: BuildOptions) -> Result<BuildReport, BuildError> {
    let cache = CacheDir::new(&options.cache_dir)?;
    let locking = cache.clone();
    let _shared = tokio::task::spawn_blocking(move || locking.lock_shared())
        .await
        .map_err(|e| BuildError::Internal(format!("locking the cache: {e}")))??;
    let Resolved {
        lock,
        settings,
        seconds,
        content,
    } = resolved;
    let lock_hash = lock.hash();
    let key = BuildKey::new(&lock_hash, &settings, options.compression);
    if let Some(report) = published_build(&options, &key, &lock).await? {
        return Ok(report);
    }
    let platforms: Vec<Subdir> = lock.platforms.iter().map(|p| p.platform).collect();
    let bases = load_bases(&settings.base, &platforms, &cache, &options.registry).await?;
    let mut build = Build {
        options: &options,
        client: http_client(&options.mirrors),
        epoch: source_date_epoch().unwrap_or_else(|| lock.newest_timestamp()),
        lock: &lock,
        lock_hash,
        settings: &settings,
        content,
        seconds,
        cache,
    };
    let mut built = Vec::new();
    for locked in &lock.platforms {
        let base = bases.get(&locked.platform).cloned().unwrap_or_default();
        built.push(build.platform_image(locked, &base).await?);
    }
    let published = build.publish(&built, &key).await?;
    Ok(build.report(built, published))
}

impl Build<'_> {
    /// Adds `seconds` to a stage's time.
    fn add_seconds(&mut self, stage: Stage, seconds: f64) {
        *self.seconds.entry(stage).or_default() += seconds;
    }

    /// Stages, layers and describes one platform's image.
    async fn platform_image(
        &mut self,
        locked: &LockedPlatform,
        base: &BaseImage,
    ) -> Result<PlatformBuild, BuildError> {
        let staged = self.stage_packages(locked).await?;
        let wheels = self.stage_wheels(locked).await?;
        let mut layers = self.write_layers(&staged, &wheels, base).await?;
        self.check_size(locked.platform, &layers)?;
        let started = Instant::now();
        let package_names: Vec<String> = locked
            .records
            .iter()
            .map(|r| r.package_record.name.as_normalized().to_string())
            .collect();
        let mut descriptor = self.manifest(locked.platform, base, &layers, &package_names)?;
        if let Some(script) = self.settings.post_build() {
            layers.push(
                self.post_build(script, locked.platform, &descriptor)
                    .await?,
            );
            descriptor = self.manifest(locked.platform, base, &layers, &package_names)?;
        }
        self.add_seconds(Stage::Image, started.elapsed().as_secs_f64());
        Ok(PlatformBuild {
            bytes: base.layers.iter().map(|l| l.size()).sum::<u64>()
                + layers.iter().map(|l| l.blob.size).sum::<u64>(),
            packages: locked.records.len() + locked.pypi.len(),
            image: PlatformImage {
                platform: locked.platform.to_string(),
                digest: descriptor.digest().to_string(),
                layers: base.layers.len() + layers.len(),
            },
            descriptor,
            layers,
        })
    }

    /// Refuses an image whose own layers exceed the limit, with the figures.
    fn check_size(&self, platform: Subdir, layers: &[Layer]) -> Result<(), BuildError> {
        let own: u64 = layers.iter().map(|l| l.blob.size).sum();
        match self.options.max_image_bytes {
            Some(limit) if own > limit => Err(BuildError::TooLarge {
                what: format!("the image's own layers for {platform}"),
                bytes: own,
                limit,
            }),
            _ => Ok(()),
        }
    }

    /// Fetches and stages the packages the cache has not staged yet; returns all, in lock order.
    async fn stage_packages(
        &mut self,
        locked: &LockedPlatform,
    ) -> Result<Vec<StagedPackage>, BuildError> {
        let records = &locked.records;
        let python = stage::python_info(records, locked.platform)?;
        let target = StageTarget {
            prefix: &self.settings.prefix,
            platform: locked.platform,
            python: python.as_ref(),
        };
        let started = Instant::now();
        let mut staged: Vec<Option<StagedPackage>> = records
            .iter()
            .map(|r| stage::cached(&self.cache, r, &target))
            .collect();
        let missing: Vec<_> = records
            .iter()
            .zip(&staged)
            .filter(|(_, s)| s.is_none())
            .map(|(r, _)| r.clone())
            .collect();
        let caches = PackageCaches::new(self.cache.packages());
        let reporter = &self.options.reporter;
        let fetched = fetch(missing, &caches, &self.client, reporter).await?;
        self.add_seconds(Stage::Fetch, started.elapsed().as_secs_f64());
        let cache = &self.cache;
        let (newly_staged, seconds) = timed(reporter, Stage::Stage, fetched.len() as u64, async {
            futures::stream::iter(fetched.iter().cloned())
                .map(|f| {
                    let target = &target;
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
        self.add_seconds(Stage::Stage, seconds);
        let mut newly_staged = newly_staged.into_iter();
        for slot in staged.iter_mut().filter(|s| s.is_none()) {
            *slot = newly_staged.next();
        }
        Ok(staged.into_iter().flatten().collect())
    }

    /// Downloads and unpacks the locked wheels the cache has not staged yet; returns all, in lock order.
    async fn stage_wheels(
        &mut self,
        locked: &LockedPlatform,
    ) -> Result<Vec<StagedWheel>, BuildError> {
        if locked.pypi.is_empty() {
            return Ok(Vec::new());
        }
        let target = self.wheel_target(locked)?;
        let requested = requested(&locked.pypi);
        let index = crate::pypi::index::Index::new(Default::default(), self.cache.root())?;
        let reporter = &self.options.reporter;
        let (cache, target) = (&self.cache, &target);
        let (staged, seconds) = timed(reporter, Stage::Stage, locked.pypi.len() as u64, async {
            futures::stream::iter(locked.pypi.iter().cloned().zip(requested))
                .map(|(wheel, requested)| {
                    let index = &index;
                    async move {
                        let found = cached_wheel(cache, &wheel, target, requested);
                        let cached = found.is_some();
                        let staged = match found {
                            Some(staged) => staged,
                            None => stage_wheel(cache, index, &wheel, target, requested).await?,
                        };
                        reporter(&Event::Progress {
                            stage: Stage::Stage,
                            item: wheel.filename(),
                            cached,
                        });
                        Ok::<_, BuildError>(staged)
                    }
                })
                .buffered(4)
                .try_collect::<Vec<_>>()
                .await
        })
        .await?;
        self.add_seconds(Stage::Stage, seconds);
        Ok(staged)
    }

    /// Where this platform's wheels go: site-packages and the interpreter of its Python.
    fn wheel_target(&self, locked: &LockedPlatform) -> Result<WheelStageTarget, BuildError> {
        let python = stage::python_info(&locked.records, locked.platform)?.ok_or_else(|| {
            BuildError::Unsupported(
                "the lock has PyPI packages but no python: add python to the conda packages".into(),
            )
        })?;
        let prefix = self.settings.prefix.trim_end_matches('/');
        Ok(WheelStageTarget {
            prefix: prefix.to_string(),
            site_packages: python.site_packages_path.to_string_lossy().into_owned(),
            python: format!("{prefix}/{}", python.path.to_string_lossy()),
        })
    }

    /// Writes (or finds cached) the layer of each group of the plan, then the environment layer.
    async fn write_layers(
        &mut self,
        staged: &[StagedPackage],
        wheels: &[StagedWheel],
        base: &BaseImage,
    ) -> Result<Vec<Layer>, BuildError> {
        let budget = MAX_LAYERS.saturating_sub(base.layers.len() + 1).max(2);
        let candidates: Vec<LayerCandidate> = staged
            .iter()
            .map(|p| LayerCandidate {
                name: p.record.package_record.name.as_normalized().to_string(),
                size: p.record.package_record.size.unwrap_or(0),
            })
            .chain(wheels.iter().map(|w| LayerCandidate {
                name: format!("pypi:{}", w.wheel.name),
                size: w.size,
            }))
            .collect();
        let members: Vec<Arc<dyn LayerMember>> = staged
            .iter()
            .map(|p| Arc::new(p.clone()) as Arc<dyn LayerMember>)
            .chain(
                wheels
                    .iter()
                    .map(|w| Arc::new(w.clone()) as Arc<dyn LayerMember>),
            )
            .collect();
        let groups = plan_layers(&candidates, budget);
        let reporter = &self.options.reporter;
        let total = groups.len() as u64 + 1 + u64::from(self.content.is_some());
        let (layers, seconds) = timed(reporter, Stage::Layer, total, async {
            let mut layers = self.package_layers(&members, groups).await?;
            let layer = self.environment_layer(staged, base).await?;
            reporter(&Event::Progress {
                stage: Stage::Layer,
                item: "the environment layer".into(),
                cached: false,
            });
            layers.push(layer);
            if let Some(content) = self.content_layer().await? {
                reporter(&Event::Progress {
                    stage: Stage::Layer,
                    item: "the repository's files".into(),
                    cached: content.cached,
                });
                layers.push(content);
            }
            Ok(layers)
        })
        .await?;
        self.add_seconds(Stage::Layer, seconds);
        Ok(layers)
    }

    /// The environment layer, written off the async threads (it compresses).
    async fn environment_layer(
        &self,
        staged: &[StagedPackage],
        base: &BaseImage,
    ) -> Result<Layer, BuildError> {
        let packages = staged.to_vec();
        let lock_text = self.lock.text.clone();
        let prefix = self.settings.prefix.clone();
        let user = self.settings.user.clone();
        let (epoch, blobs, compression) =
            (self.epoch, self.cache.blobs(), self.options.compression);
        let (base_passwd, base_group) = (base.passwd.clone(), base.group.clone());
        blocking("environment layer", move || {
            let input = EnvironmentLayerInput {
                packages: &packages,
                lock_text: &lock_text,
                prefix: &prefix,
                user: &user,
                epoch,
                base_passwd,
                base_group,
            };
            environment_layer(&input, &blobs, compression)
        })
        .await?
    }

    /// Writes the config and manifest of one platform's image of these layers.
    fn manifest(
        &self,
        platform: Subdir,
        base: &BaseImage,
        layers: &[Layer],
        package_names: &[String],
    ) -> Result<Descriptor, BuildError> {
        let input = ImageInput {
            platform,
            base,
            layers,
            settings: self.settings,
            lock_hash: &self.lock_hash,
            created: self.epoch,
            package_names,
            media_type: self.options.compression.media_type(),
        };
        write_manifest(&input, &self.cache.blobs())
    }

    /// Runs a repository's `postBuild` on the image so far (native platform only).
    async fn post_build(
        &self,
        script: &str,
        platform: Subdir,
        image: &Descriptor,
    ) -> Result<Layer, BuildError> {
        if Subdir::current() != Some(platform) {
            return Err(BuildError::Usage(format!(
                "postBuild runs on this machine's platform only, not {platform}: build with --platform {}",
                Subdir::current().map_or("<native>".into(), |p| p.to_string())
            )));
        }
        let work = tempfile::tempdir_in(self.cache.root())
            .map_err(BuildError::io("creating a directory in", self.cache.root()))?;
        let run = PostBuild {
            script: format!("{}/{script}", crate::source::repo::REPO_DIR),
            user: &self.settings.user,
            network: self.options.post_build_network,
            work_dir: work.path(),
        };
        post_build_layer(&run, image, &self.cache.blobs(), self.options.compression).await
    }

    /// The repository's files, when the build has a repository (off the async threads).
    async fn content_layer(&self) -> Result<Option<Layer>, BuildError> {
        let Some(content) = self.content.clone() else {
            return Ok(None);
        };
        let (user, prefix) = (self.settings.user.clone(), self.settings.prefix.clone());
        let (cache, compression) = (self.cache.clone(), self.options.compression);
        blocking("content layer", move || {
            content_layer(&content, &user, &prefix, &cache, compression)
        })
        .await?
        .map(Some)
    }

    /// The package layers, written on every core at once, in plan order.
    async fn package_layers(
        &self,
        staged: &[Arc<dyn LayerMember>],
        groups: Vec<Vec<usize>>,
    ) -> Result<Vec<Layer>, BuildError> {
        let parallel = std::thread::available_parallelism().map_or(2, |n| n.get());
        let reporter = &self.options.reporter;
        futures::stream::iter(groups)
            .map(|group| {
                let members: Vec<Arc<dyn LayerMember>> =
                    group.iter().map(|&i| staged[i].clone()).collect();
                let cache = self.cache.clone();
                let prefix = self.settings.prefix.clone();
                let compression = self.options.compression;
                async move {
                    let layer = blocking("layer", move || {
                        let refs: Vec<&dyn LayerMember> =
                            members.iter().map(|m| m.as_ref()).collect();
                        package_layer(&cache, &refs, &prefix, compression)
                    })
                    .await??;
                    reporter(&Event::Progress {
                        stage: Stage::Layer,
                        item: layer_item(&layer),
                        cached: layer.cached,
                    });
                    Ok::<_, BuildError>(layer)
                }
            })
            .buffered(parallel)
            .try_collect()
            .await
    }

    /// Writes the index (several platforms) and publishes; the cache tag last.
    async fn publish(
        &mut self,
        built: &[PlatformBuild],
        key: &BuildKey,
    ) -> Result<(Published, String), BuildError> {
        let blobs = self.cache.blobs();
        let root = match built {
            [one] => one.descriptor.clone(),
            _ => write_index(built.iter().map(|b| b.descriptor.clone()).collect(), &blobs)?,
        };
        let digest = descriptor_digest(&root)?.to_string();
        let image = Image { blobs, root };
        let mount_from: Vec<String> = match &self.settings.base {
            ImageRef::Registry { reference } => vec![reference.clone()],
            _ => Vec::new(),
        };
        // remember which repository received each blob, to mount it into the next one
        let mut registry = self.options.registry.clone();
        registry
            .blob_sources
            .get_or_insert_with(|| self.cache.root().join("blob-sources"));
        let output = &self.options.output;
        let (published, seconds) = timed(&self.options.reporter, Stage::Publish, 1, async {
            let published = publish(&image, output, &registry, &mount_from).await?;
            if let ImageRef::Registry { reference } = output {
                cache_tag::mark_published(reference, &key.tag(), &registry).await?;
            }
            Ok(published)
        })
        .await?;
        self.add_seconds(Stage::Publish, seconds);
        Ok((published, digest))
    }

    /// The report of a build that ran.
    fn report(
        self,
        built: Vec<PlatformBuild>,
        (published, digest): (Published, String),
    ) -> BuildReport {
        let layers: Vec<&Layer> = built.iter().flat_map(|b| &b.layers).collect();
        BuildReport {
            digest,
            output: self.options.output.to_string(),
            lock_hash: self.lock_hash,
            layers: layers.len(),
            cached_layers: layers.iter().filter(|l| l.cached).count(),
            bytes: built.iter().map(|b| b.bytes).sum(),
            bytes_written: layers
                .iter()
                .filter(|l| !l.cached)
                .map(|l| l.blob.size)
                .sum(),
            packages: built.iter().map(|b| b.packages).sum(),
            platforms: built.into_iter().map(|b| b.image).collect(),
            seconds: self.seconds,
            cached: false,
            push: published.push,
        }
    }
}

/// How a layer is named in progress: its package, or how many it groups.
fn layer_item(layer: &Layer) -> String {
    match layer.packages.as_slice() {
        [one] => one.clone(),
        many => format!("{} small packages", many.len()),
    }
}

/// For a registry output that already holds this build (tag `build-KEY`):
/// moves the requested tag to it when needed and reports it as cached.
async fn published_build(
    options: &BuildOptions,
    build_key: &BuildKey,
    lock: &Lock,
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
        lock_hash: lock.hash(),
        // nothing was made: the registry's image is this lock's
        layers: 0,
        cached_layers: 0,
        bytes: 0,
        bytes_written: 0,
        packages: lock
            .platforms
            .iter()
            .map(|p| p.records.len() + p.pypi.len())
            .sum(),
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
