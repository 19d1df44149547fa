//! Options several subcommands share, each declared once.

use std::{path::PathBuf, str::FromStr};

use trousse_builder::{
    cache::CacheDir,
    net::channel_url::{resolve_channel, ChannelConfig},
    progress::Reporter,
    settings::parse_platform,
    source::repo::{is_repository_address, GitPolicy, RepoAddress, RepoRequest},
    BuildError, BuildRequest, ImageSettings, Input, Overrides, ResolveOptions, Source,
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
    #[arg(long, env = trousse_builder::settings::DEFAULT_BASE_ENV)]
    pub default_base: Option<String>,
    /// Make the image for a JupyterHub: add jupyterhub-singleuser and jupyterlab when the
    /// spec lacks them [default for repositories; a spec's `trousse: jupyter:` otherwise].
    #[arg(long, overrides_with = "no_jupyter")]
    pub jupyter: bool,
    /// Add no single-user server, even to a repository's environment.
    #[arg(long, overrides_with = "jupyter")]
    pub no_jupyter: bool,
    /// The Python (X.Y) of a requirements.txt's environment [default: 3.12].
    #[arg(long, value_name = "X.Y")]
    pub python: Option<String>,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Fetch a channel from a mirror: CHANNEL=URL, e.g. conda-forge=https://mirror.example/conda-forge
    /// (repeatable); locks and images still name the channel itself.
    #[arg(long = "channel-mirror", value_name = "CHANNEL=URL", value_parser = parse_mirror)]
    pub channel_mirrors: Vec<String>,
    /// A rattler or pixi configuration file (config.toml) whose [mirrors] are used too.
    #[arg(long, value_name = "FILE", env = "TROUSSE_MIRRORS_CONFIG")]
    pub mirrors_config: Option<PathBuf>,
}

/// A `--channel-mirror` value, checked.
pub fn parse_mirror(text: &str) -> Result<String, String> {
    trousse_builder::net::mirrors::Mirrors::default().add_flag(text)?;
    Ok(text.to_string())
}

/// The mirrors of `--channel-mirror` flags and a configuration file.
pub fn mirrors(
    flags: &[String],
    config: Option<&std::path::Path>,
) -> Result<trousse_builder::net::mirrors::Mirrors, BuildError> {
    let mut mirrors = trousse_builder::net::mirrors::Mirrors::default();
    for flag in flags {
        mirrors.add_flag(flag).map_err(BuildError::Usage)?;
    }
    if let Some(path) = config {
        mirrors.add_config_file(path).map_err(BuildError::Usage)?;
    }
    Ok(mirrors)
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
    pub fn resolve_options(&self, reporter: Reporter) -> Result<ResolveOptions, BuildError> {
        Ok(ResolveOptions {
            mirrors: self.mirrors()?,
            cache_dir: self.cache_dir(),
            registry: self.registry.options(None),
            reporter,
            limit: Default::default(),
        })
    }

    /// The channel mirrors these flags give.
    pub fn mirrors(&self) -> Result<trousse_builder::net::mirrors::Mirrors, BuildError> {
        mirrors(&self.channel_mirrors, self.mirrors_config.as_deref())
    }

    /// Reads a spec or a lock (environment `environment` of a pixi lock), with
    /// these overrides and `base`, into a build request.
    pub async fn request(
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
        let input = Input::File {
            path: path.to_path_buf(),
            environment: environment.map(str::to_string),
            python: self.python.clone(),
        };
        let source = input
            .into_source(&self.image_defaults()?, &self.cache_dir())
            .await?;
        print_warnings(&source);
        Ok(BuildRequest {
            source,
            overrides: self.overrides(base)?,
        })
    }

    /// Reads a file, or fetches and reads a git repository (a URL, or a local
    /// repository's directory: its committed HEAD), into a build request.
    pub async fn request_input(
        &self,
        input: &str,
        repo: &RepoArgs,
        base: Option<&str>,
        environment: Option<&str>,
    ) -> Result<BuildRequest, BuildError> {
        let Some(address) = repository_address(input)? else {
            if repo.reference.is_some() || repo.allow_post_build {
                return Err(BuildError::Usage(format!(
                    "--ref and --allow-post-build apply to a repository; {input} is a file"
                )));
            }
            return self
                .request(std::path::Path::new(input), base, environment)
                .await;
        };
        if environment.is_some() {
            return Err(BuildError::Usage(
                "--environment picks an environment of a pixi lock, not of a repository".into(),
            ));
        }
        if self.python.is_some() {
            return Err(BuildError::Usage(
                "--python sets the Python of a requirements file; a repository's runtime.txt names its Python".into(),
            ));
        }
        let source = Input::Repository(RepoRequest {
            address,
            reference: repo.reference.clone(),
            policy: GitPolicy::command_line(),
            allow_post_build: repo.allow_post_build,
        })
        .into_source(&self.image_defaults()?, &self.cache_dir())
        .await?;
        if let Some(content) = source.content() {
            let record = &content.record;
            eprintln!("{} {} at {}", record.url, record.reference, record.commit);
        }
        print_warnings(&source);
        Ok(BuildRequest {
            source,
            overrides: self.overrides(base)?,
        })
    }

    /// The command line's overrides of a source's channels, platforms and base.
    fn overrides(&self, base: Option<&str>) -> Result<Overrides, BuildError> {
        let mut overrides = Overrides::default();
        if !self.channels.is_empty() {
            let cwd = std::env::current_dir()
                .map_err(BuildError::io("reading the current directory", "."))?;
            let config = ChannelConfig::default_with_root_dir(cwd);
            for channel in &self.channels {
                // credentials in the URL are kept in memory, never in a lock or an image
                let channel = trousse_builder::net::credentials::take(channel);
                overrides
                    .channels
                    .extend(resolve_channel(&channel, &config).map_err(BuildError::Usage)?);
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
        overrides.jupyter = match (self.jupyter, self.no_jupyter) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        };
        Ok(overrides)
    }
}

/// What a repository input takes besides its address.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct RepoArgs {
    /// The branch, tag or commit of a repository input, over URL@REF
    /// [default: what the repository's HEAD points at].
    #[arg(long = "ref", value_name = "REF")]
    pub reference: Option<String>,
    /// Run a repository's postBuild script instead of refusing it (with no network).
    #[arg(long)]
    pub allow_post_build: bool,
    /// Give an allowed postBuild a bridged network: it can then reach what the
    /// host's firewall lets containers reach (docs/repositories.md says which rules to add).
    #[arg(long, requires = "allow_post_build")]
    pub post_build_network: bool,
}

/// The repository an input names: a URL, or a directory holding a git repository.
fn repository_address(input: &str) -> Result<Option<RepoAddress>, BuildError> {
    if is_repository_address(input) {
        return Ok(Some(RepoAddress::parse(input)?));
    }
    let path = std::path::Path::new(input);
    if !path.is_dir() {
        return Ok(None);
    }
    if !path.join(".git").exists() {
        return Err(BuildError::Usage(format!(
            "{input} is a directory but not a git repository: commit it (git init, git add, git commit), \
             or give its environment.yml"
        )));
    }
    let absolute = std::fs::canonicalize(path).map_err(BuildError::io("reading", path))?;
    let url = url::Url::from_directory_path(&absolute)
        .map_err(|()| BuildError::Usage(format!("{input} cannot be written as a file:// URL")))?;
    eprintln!("building the committed HEAD of {input} (changes not committed are left out)");
    Ok(Some(RepoAddress::parse(url.as_str())?))
}

fn print_warnings(source: &Source) {
    match source {
        Source::Spec(spec) | Source::Repository { spec, .. } => {
            for warning in &spec.warnings {
                eprintln!("warning: {warning}");
            }
        }
        Source::Lock {
            path,
            settings: None,
            ..
        } => eprintln!(
            "warning: {} carries no image settings (a lock written before trousse kept them, \
             or by another tool): it is built with the defaults and the flags given; lock the \
             spec again to keep its trousse: section",
            path.display()
        ),
        Source::Lock { .. } | Source::Partial(_) => {}
    }
}
