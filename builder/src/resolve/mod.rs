//! A build request: a source, and what a command line or the service sets on
//! top of it, resolved into the one lock and the one set of image settings
//! that are built. This is the only place where a spec is solved, or a lock
//! read (a partial one completed from its archives) for a build; everything
//! after it is a function of what it returns.

pub(crate) mod solve;

use std::{collections::BTreeMap, path::PathBuf, sync::Arc};

use rattler_conda_types::{Channel, Subdir};
use trousse_registry_client::{ImageRef, RegistryOptions};

use crate::{
    cache::CacheDir,
    lockfile::complete::complete,
    net::{gateway, http_client},
    progress::timed,
    progress::{Reporter, Stage},
    resolve::solve::{names_in_channels, not_found, solve, unknown_packages},
    source::base::load_base,
    source::repo::RepoContent,
    source::Source,
    BuildError, ImageSettings, Lock,
};

/// What a command line or a service sets over a source's own settings.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Channels that replace a spec's (refused for a lock: it is solved already).
    pub channels: Vec<Channel>,
    /// Platforms: replace a spec's, or pick a subset of a lock's.
    pub platforms: Vec<Subdir>,
    /// The base image, replacing the source's.
    pub base: Option<ImageRef>,
    /// Whether the image is for a hub (`--jupyter`/`--no-jupyter`), over the spec's.
    pub jupyter: Option<bool>,
}

/// A source and its overrides.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    /// What the build starts from.
    pub source: Source,
    /// What is set over it.
    pub overrides: Overrides,
}

/// What a request resolves to: what is built, exactly.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The lock (solved now for a spec).
    pub lock: Lock,
    /// The image settings.
    pub settings: ImageSettings,
    /// Seconds the resolution took, by stage (the solve, for a spec).
    pub seconds: BTreeMap<Stage, f64>,
    /// A repository's files, layered above the environment.
    pub content: Option<Arc<RepoContent>>,
}

impl Resolved {
    /// What a stored lock and its settings resolve to, with nothing left to do.
    pub fn new(lock: Lock, settings: ImageSettings) -> Self {
        Self {
            lock,
            settings,
            seconds: BTreeMap::new(),
            content: None,
        }
    }
}

/// Where the solve reads and caches things.
#[derive(Clone)]
pub struct ResolveOptions {
    /// The cache directory.
    pub cache_dir: PathBuf,
    /// How to reach registries (for the base image, which declares virtual packages).
    pub registry: RegistryOptions,
    /// Receives progress events.
    pub reporter: Reporter,
    /// How long solving may take, and its cancellation.
    pub limit: crate::guard::work_limit::WorkLimit,
    /// Where channels are fetched from instead of their own URLs.
    pub mirrors: crate::net::mirrors::Mirrors,
}

impl BuildRequest {
    /// A request with no overrides.
    pub fn new(source: Source) -> Self {
        Self {
            source,
            overrides: Overrides::default(),
        }
    }

    /// Applies the overrides, then solves a spec or checks a lock's platforms.
    /// `lock_defaults` are the settings of a lock (which carries none).
    pub async fn resolve(
        self,
        lock_defaults: &ImageSettings,
        options: &ResolveOptions,
    ) -> Result<Resolved, BuildError> {
        let overrides = self.overrides;
        match self.source {
            Source::Spec(spec) => resolve_spec(*spec, overrides, &[], options).await,
            Source::Repository { spec, content, apt } => {
                let mut resolved = resolve_spec(*spec, overrides, &apt, options).await?;
                resolved.content = Some(content);
                Ok(resolved)
            }
            Source::Partial(mut partial) => {
                refuse_channels(&overrides)?;
                partial.select_platforms(&overrides.platforms)?;
                let (lock, seconds) = complete(
                    &partial,
                    &options.cache_dir,
                    &options.reporter,
                    &options.mirrors,
                )
                .await?;
                let mut resolved = resolve_lock(lock, &partial.path, overrides, lock_defaults)?;
                resolved.seconds.insert(Stage::Fetch, seconds);
                Ok(resolved)
            }
            Source::Lock {
                lock,
                path,
                settings,
            } => {
                let defaults = settings.as_deref().unwrap_or(lock_defaults);
                resolve_lock(lock, &path, overrides, defaults)
            }
        }
    }
}

/// A spec, with the overrides over it, solved into a lock.
async fn resolve_spec(
    mut spec: crate::EnvSpec,
    overrides: Overrides,
    apt: &[String],
    options: &ResolveOptions,
) -> Result<Resolved, BuildError> {
    if !overrides.channels.is_empty() {
        spec.channels = overrides.channels;
    }
    if !overrides.platforms.is_empty() {
        spec.image.platforms = overrides.platforms;
    }
    if let Some(base) = overrides.base {
        spec.image.base = base;
    }
    if let Some(jupyter) = overrides.jupyter {
        spec.image.jupyter = jupyter;
    }
    if !apt.is_empty() {
        return Err(apt_refused(&spec, apt, options).await);
    }
    let (lock, seconds) = solve_spec(&spec, options).await?;
    Ok(Resolved {
        lock,
        settings: spec.image,
        seconds: BTreeMap::from([(Stage::Solve, seconds)]),
        content: None,
    })
}

/// A lock resolves to its own settings (those its file carries, else the
/// defaults) with its platforms (or the chosen ones); the command line's flags win.
fn resolve_lock(
    mut lock: Lock,
    path: &std::path::Path,
    overrides: Overrides,
    lock_defaults: &ImageSettings,
) -> Result<Resolved, BuildError> {
    refuse_channels(&overrides)?;
    let mut settings = lock_defaults.clone();
    settings.platforms = lock.platforms.iter().map(|p| p.platform).collect();
    if !overrides.platforms.is_empty() {
        if let Some(p) = overrides
            .platforms
            .iter()
            .find(|p| lock.platform(**p).is_none())
        {
            return Err(BuildError::Usage(format!(
                "{} does not lock platform {p}",
                path.display()
            )));
        }
        lock.platforms
            .retain(|p| overrides.platforms.contains(&p.platform));
        settings.platforms = overrides.platforms;
    }
    if let Some(base) = overrides.base {
        settings.base = base;
    }
    Ok(Resolved::new(lock, settings))
}

/// Channels are for a spec: a lock is solved already.
fn refuse_channels(overrides: &Overrides) -> Result<(), BuildError> {
    if overrides.channels.is_empty() {
        Ok(())
    } else {
        Err(BuildError::Usage(
            "-c/--channel has no effect on a lock file: lock the spec again".into(),
        ))
    }
}

/// Solves a spec against the virtual packages its base images declare.
async fn solve_spec(
    spec: &crate::EnvSpec,
    options: &ResolveOptions,
) -> Result<(Lock, f64), BuildError> {
    let cache = CacheDir::new(&options.cache_dir)?;
    let _shared = cache.lock_shared()?;
    let client = http_client(&options.mirrors);
    let gateway = gateway(&cache, &client);
    let mut declared = std::collections::HashMap::new();
    let mut base_singleuser = false;
    for &platform in &spec.image.platforms {
        if spec.image.base == crate::settings::default_base() {
            // the pinned Ubuntu declares no virtual packages and no server (its
            // digest fixes that): solving needs nothing of it, not even the network
            continue;
        }
        match load_base(
            &spec.image.base,
            platform,
            &cache.blobs(),
            &options.registry,
        )
        .await
        {
            Ok(base) => {
                base_singleuser |= base.singleuser.is_some();
                declared.insert(platform, base.virtual_packages)
            }
            Err(error) => return Err(spec_error_first(spec, &gateway, platform, error).await),
        };
    }
    let hub_ready = hub_ready(spec, base_singleuser);
    let spec = hub_ready.as_ref();
    let (solved, seconds) = timed(&options.reporter, Stage::Solve, 0, async {
        let mut solved = solve(spec, &gateway, &declared, &options.limit).await?;
        if let Some(pip) = spec.pip.as_ref().filter(|p| !p.is_empty()) {
            resolve_pypi(pip, &mut solved, &cache, &client, options).await?;
        }
        Ok(solved)
    })
    .await?;
    Ok((lock_of(spec, &solved)?, seconds))
}

/// The lock of a solved spec: the canonical lock of the records, with the spec's channels.
fn lock_of(
    spec: &crate::EnvSpec,
    solved: &[crate::lockfile::LockedPlatform],
) -> Result<Lock, BuildError> {
    let channels: Vec<String> = spec
        .channels
        .iter()
        .map(|c| c.base_url.to_string())
        .collect();
    Lock::render(&spec.path, &channels, solved)
}

/// The spec of an image for a hub: the single-user server (matching the
/// hub's version) and JupyterLab added when the spec lacks them and the base
/// provides no server of its own.
fn hub_ready(spec: &crate::EnvSpec, base_singleuser: bool) -> std::borrow::Cow<'_, crate::EnvSpec> {
    let has = |name: &str| {
        spec.dependencies
            .iter()
            .any(|d| d.name.as_exact().is_some_and(|n| n.as_normalized() == name))
    };
    if !spec.image.jupyter || base_singleuser || has("jupyterhub-singleuser") {
        return std::borrow::Cow::Borrowed(spec);
    }
    let mut ready = spec.clone();
    let mut add = |text: String| {
        if let Ok(dependency) = crate::source::spec::parse_match_spec(&text) {
            ready.dependencies.push(dependency);
        }
    };
    add(format!(
        "jupyterhub-singleuser {}.*",
        spec.image.hub_version
    ));
    if !has("jupyterlab") && !has("notebook") {
        add("jupyterlab".into());
    }
    std::borrow::Cow::Owned(ready)
}

/// Resolves the PyPI requirements of each solved platform on top of its conda packages.
async fn resolve_pypi(
    requirements: &crate::pypi::PypiRequirements,
    solved: &mut [crate::lockfile::LockedPlatform],
    cache: &CacheDir,
    client: &rattler_networking::LazyClient,
    options: &ResolveOptions,
) -> Result<(), BuildError> {
    for platform in solved {
        let input = crate::pypi::PlatformInput {
            requirements,
            records: &platform.records,
            platform: platform.platform,
            virtual_packages: &platform.virtual_packages,
            limit: &options.limit,
        };
        platform.pypi =
            crate::pypi::resolve_platform(input, cache.root(), client, &options.reporter).await?;
    }
    Ok(())
}

/// `apt.txt` is refused, naming the conda packages of the same names the channels have.
async fn apt_refused(
    spec: &crate::EnvSpec,
    apt: &[String],
    options: &ResolveOptions,
) -> BuildError {
    let found = match CacheDir::new(&options.cache_dir) {
        Ok(cache) => {
            names_in_channels(spec, &gateway(&cache, &http_client(&options.mirrors)), apt).await
        }
        Err(_) => Vec::new(),
    };
    let advice = if found.is_empty() {
        "none has a conda package of the same name in the channels: find conda equivalents and add them to environment.yml".to_string()
    } else {
        format!(
            "the channels have conda packages named {}: add them to environment.yml",
            found.join(", ")
        )
    };
    BuildError::Unsupported(format!(
        "apt.txt asks for system packages ({}), which trousse does not install; {advice}",
        apt.join(", ")
    ))
}

/// When the base cannot be loaded, a misspelled package is still the first
/// thing to report: it is the teacher's to fix, the base is the operator's.
async fn spec_error_first(
    spec: &crate::EnvSpec,
    gateway: &rattler_repodata_gateway::Gateway,
    platform: Subdir,
    base_error: BuildError,
) -> BuildError {
    match unknown_packages(spec, gateway, platform).await {
        Ok(missing) if !missing.is_empty() => not_found(spec, gateway, platform, missing).await,
        _ => base_error,
    }
}

#[cfg(test)]
mod tests {
    use std::{path::Path, str::FromStr};

    use super::*;

    fn lock_request(overrides: Overrides) -> BuildRequest {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/conda-data/locks/rattler-numpy-lock.yml");
        BuildRequest {
            source: Source::read(&path, &ImageSettings::default()).unwrap(),
            overrides,
        }
    }

    fn options() -> ResolveOptions {
        ResolveOptions {
            cache_dir: std::env::temp_dir().join("trousse-request-tests"),
            registry: RegistryOptions::default(),
            reporter: crate::progress::silent(),
            limit: Default::default(),
            mirrors: Default::default(),
        }
    }

    fn defaults() -> ImageSettings {
        ImageSettings {
            prefix: "/srv/conda".into(),
            ..ImageSettings::default()
        }
    }

    #[tokio::test]
    async fn a_lock_resolves_to_its_platforms_with_the_defaults() {
        let resolved = lock_request(Overrides::default())
            .resolve(&defaults(), &options())
            .await
            .unwrap();
        let locked: Vec<Subdir> = resolved.lock.platforms.iter().map(|p| p.platform).collect();
        assert!(locked.len() > 1, "{locked:?}");
        assert_eq!(resolved.settings.platforms, locked);
        assert_eq!(resolved.settings.prefix, "/srv/conda");
        assert!(resolved.seconds.is_empty(), "nothing was solved");
    }

    #[tokio::test]
    async fn overrides_pick_platforms_and_the_base_of_a_lock() {
        let resolved = lock_request(Overrides {
            platforms: vec![Subdir::Linux64],
            base: Some(ImageRef::Scratch),
            ..Overrides::default()
        })
        .resolve(&defaults(), &options())
        .await
        .unwrap();
        assert_eq!(resolved.settings.platforms, vec![Subdir::Linux64]);
        assert_eq!(resolved.lock.platforms.len(), 1);
        assert_eq!(resolved.settings.base, ImageRef::Scratch);
    }

    #[tokio::test]
    async fn a_lock_refuses_channels_and_platforms_it_does_not_lock() {
        let unlocked = lock_request(Overrides {
            platforms: vec![Subdir::from_str("linux-s390x").unwrap()],
            ..Overrides::default()
        })
        .resolve(&defaults(), &options())
        .await
        .unwrap_err();
        assert_eq!(unlocked.exit_code(), 2, "{unlocked}");
        assert!(unlocked.to_string().contains("linux-s390x"), "{unlocked}");

        let channel = Channel::from_str(
            "conda-forge",
            &crate::net::channel_url::ChannelConfig::default_with_root_dir("/".into()),
        )
        .unwrap();
        let channels = lock_request(Overrides {
            channels: vec![channel],
            ..Overrides::default()
        })
        .resolve(&defaults(), &options())
        .await
        .unwrap_err();
        assert_eq!(channels.exit_code(), 2, "{channels}");
    }
}
