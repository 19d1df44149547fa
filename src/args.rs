//! Options several subcommands share, each declared once.

use std::{path::PathBuf, str::FromStr};

use trousse_builder::{
    cache::CacheDir,
    progress::Reporter,
    spec::{parse_platform, resolve_channel, ChannelConfig},
    BuildError, BuildRequest, ImageSettings, Overrides, ResolveOptions, Source,
};
use trousse_registry_client::{ImageRef, RegistryOptions};

/// How registries are reached.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct RegistryArgs {
    /// Registry (HOST[:PORT]) to reach over plain HTTP (repeatable); loopback registries always are.
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure_registries: Vec<String>,
}

impl RegistryArgs {
    /// The registry options, with a layer pool when one is given.
    pub fn options(&self, layer_pool: Option<String>) -> RegistryOptions {
        RegistryOptions {
            insecure: self.insecure_registries.clone(),
            layer_pool,
            blob_sources: None,
        }
    }
}

/// What solving a spec needs: channels, platforms, the cache and the default base.
#[derive(clap::Args, Clone, Debug)]
pub struct SolveArgs {
    /// Channel to solve against (repeatable); replaces the spec's channels.
    #[arg(short = 'c', long = "channel")]
    pub channels: Vec<String>,
    /// Target platform (repeatable), e.g. linux-64 or linux-aarch64; replaces the spec's,
    /// or picks locked platforms of a lock.
    #[arg(long = "platform")]
    pub platforms: Vec<String>,
    /// Cache directory [default: $TROUSSE_CACHE_DIR or ~/.cache/trousse].
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// The base image of specs and locks that name none (a mirror of the default, or scratch)
    /// [default: Ubuntu 24.04, pinned by digest].
    #[arg(long, env = trousse_builder::spec::DEFAULT_BASE_ENV)]
    pub default_base: Option<String>,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

impl SolveArgs {
    /// The cache directory.
    pub fn cache_dir(&self) -> PathBuf {
        self.cache_dir
            .clone()
            .unwrap_or_else(CacheDir::default_location)
    }

    /// The image settings of a spec or lock that states none.
    pub fn image_defaults(&self) -> Result<ImageSettings, BuildError> {
        let mut defaults = ImageSettings::default();
        if let Some(base) = self.default_base.as_deref().filter(|b| !b.is_empty()) {
            defaults.base = ImageRef::from_str(base).map_err(|e| {
                BuildError::Usage(format!(
                    "invalid --default-base / TROUSSE_DEFAULT_BASE: {e}"
                ))
            })?;
        }
        Ok(defaults)
    }

    /// Where a request is solved.
    pub fn resolve_options(&self, reporter: Reporter) -> ResolveOptions {
        ResolveOptions {
            cache_dir: self.cache_dir(),
            registry: self.registry.options(None),
            reporter,
        }
    }

    /// Reads a spec or a lock (environment `environment` of a pixi lock), with
    /// these overrides and `base`, into a build request.
    pub fn request(
        &self,
        path: &std::path::Path,
        base: Option<&str>,
        environment: Option<&str>,
    ) -> Result<BuildRequest, BuildError> {
        if !path.exists() {
            return Err(BuildError::Usage(format!(
                "{} does not exist: give an environment.yml or a lock file",
                path.display()
            )));
        }
        let source = Source::read_environment(path, &self.image_defaults()?, environment)?;
        if let Source::Spec(spec) = &source {
            for warning in &spec.warnings {
                eprintln!("warning: {warning}");
            }
        }
        let mut overrides = Overrides::default();
        if !self.channels.is_empty() {
            let cwd = std::env::current_dir()
                .map_err(BuildError::io("reading the current directory", "."))?;
            let config = ChannelConfig::default_with_root_dir(cwd);
            for channel in &self.channels {
                overrides
                    .channels
                    .extend(resolve_channel(channel, &config).map_err(BuildError::Usage)?);
            }
        }
        overrides.platforms = self
            .platforms
            .iter()
            .map(|p| parse_platform(p).map_err(BuildError::Usage))
            .collect::<Result<_, _>>()?;
        if let Some(base) = base {
            overrides.base = Some(
                ImageRef::from_str(base)
                    .map_err(|e| BuildError::Usage(format!("invalid --base: {e}")))?,
            );
        }
        Ok(BuildRequest { source, overrides })
    }
}
