//! The `trousse` command line: argument parsing and wiring only.

mod progress;

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    str::FromStr,
};

use anyhow::Context;
use clap::{Parser, Subcommand};
use trousse_builder::{
    cache::CacheDir,
    inspect::inspect,
    spec::{parse_platform, resolve_channel},
    BuildError, BuildOptions, BuildRequest, Compression, ImageSettings, Overrides, ResolveOptions,
    Source,
};
use trousse_registry_client::{ImageRef, RegistryOptions};

#[derive(Parser)]
#[command(
    name = "trousse",
    version,
    about = "Build reproducible, per-package-layered OCI images of conda environments"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct SolveArgs {
    /// Channel to solve against (repeatable); replaces the spec's channels.
    #[arg(short = 'c', long = "channel")]
    channels: Vec<String>,
    /// Target platform (repeatable), e.g. linux-64 or linux-aarch64; replaces the spec's.
    #[arg(long = "platform")]
    platforms: Vec<String>,
    /// Cache directory [default: $TROUSSE_CACHE_DIR or ~/.cache/trousse].
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Registry (HOST[:PORT]) to reach over plain HTTP; loopback registries always are.
    #[arg(long = "insecure-registry")]
    insecure_registries: Vec<String>,
    /// Repository (HOST/REPO) that keeps every pushed layer, so other repositories mount it.
    #[arg(long, env = "TROUSSE_LAYER_POOL")]
    layer_pool: Option<String>,
    /// The base image of specs and locks that name none (a mirror of the default, or scratch)
    /// [default: Ubuntu 24.04, pinned by digest].
    #[arg(long, env = trousse_builder::spec::DEFAULT_BASE_ENV)]
    default_base: Option<String>,
}

impl SolveArgs {
    fn registry_options(&self) -> RegistryOptions {
        RegistryOptions {
            insecure: self.insecure_registries.clone(),
            layer_pool: self.layer_pool.clone(),
        }
    }

    /// The image settings of a spec or lock that states none.
    fn image_defaults(&self) -> Result<ImageSettings, BuildError> {
        let mut defaults = ImageSettings::default();
        if let Some(base) = &self.default_base {
            defaults.base = ImageRef::from_str(base).map_err(|e| {
                BuildError::Unsupported(format!(
                    "invalid --default-base / TROUSSE_DEFAULT_BASE: {e}"
                ))
            })?;
        }
        Ok(defaults)
    }
}

#[derive(Subcommand)]
enum Command {
    /// Solve an environment.yml and write its lock file.
    Lock {
        /// The environment.yml.
        spec: PathBuf,
        /// Where to write the lock file.
        #[arg(short, long)]
        output: PathBuf,
        #[command(flatten)]
        solve: SolveArgs,
    },
    /// Build an image from an environment.yml or a lock file.
    Build {
        /// The environment.yml or lock file.
        input: PathBuf,
        /// Where to write the image: oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE[:NAME:TAG].
        #[arg(short, long)]
        output: String,
        /// The base image: scratch or oci:DIR[:TAG]; replaces the spec's.
        #[arg(long)]
        base: Option<String>,
        /// Layer compression: gzip or zstd.
        #[arg(long, default_value = "gzip")]
        compression: String,
        /// Print a JSON report as the last line of stdout.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        solve: SolveArgs,
    },
    /// Lock, build and push every stack of a directory of specs, skipping unchanged ones.
    Prebuild {
        /// The directory of environment.yml files (one stack each).
        dir: PathBuf,
        /// Where to push: HOST/PREFIX; each stack goes to HOST/PREFIX/NAME:latest.
        #[arg(long)]
        registry: String,
        /// Write the summary as JSON to this file.
        #[arg(long)]
        summary: Option<PathBuf>,
        #[command(flatten)]
        solve: SolveArgs,
    },
    /// Serve the HTTP API a JupyterHub queries, and the images through /v2/.
    Serve(ServeArgs),
    /// Manage the service's API tokens.
    Token {
        #[command(subcommand)]
        action: TokenCommand,
    },
    /// Manage the local cache.
    Cache {
        #[command(subcommand)]
        action: CacheCommand,
    },
    /// List the layers of an image and the packages in each.
    Inspect {
        /// The image: oci:DIR[:TAG], oci-archive:FILE[:TAG] or docker-archive:FILE.
        image: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Registry (HOST[:PORT]) to reach over plain HTTP; loopback registries always are.
        #[arg(long = "insecure-registry")]
        insecure_registries: Vec<String>,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// Where the database, the images and the build cache live.
    #[arg(long, env = "TROUSSE_DATA_DIR")]
    data_dir: PathBuf,
    /// HOST[:PORT] that image references name [default: the listen address].
    #[arg(long)]
    public_host: Option<String>,
    /// Builds that may run at once.
    #[arg(long, default_value_t = 2)]
    max_builds: usize,
    /// The longest a build may take, in seconds.
    #[arg(long, default_value_t = 3600)]
    build_timeout: u64,
    /// The largest request body, e.g. 1MiB.
    #[arg(long, default_value = "1MiB")]
    max_body: String,
    /// The most packages a spec may request.
    #[arg(long, default_value_t = 200)]
    max_spec_packages: usize,
    /// A channel specs may use (repeatable) [default: conda-forge].
    #[arg(long = "allow-channel")]
    allowed_channels: Vec<String>,
    /// A base image specs may name besides the default (repeatable).
    #[arg(long = "allow-base")]
    allowed_bases: Vec<String>,
    /// Pulls from /v2/ need a token (Basic auth, the token as password).
    #[arg(long)]
    require_pull_token: bool,
    /// Push images to this registry (HOST/PREFIX) instead of serving them.
    #[arg(long)]
    push_to: Option<String>,
    /// The base image of specs and locks that name none [default: Ubuntu 24.04, pinned].
    #[arg(long, env = trousse_builder::spec::DEFAULT_BASE_ENV)]
    default_base: Option<String>,
    /// Registry (HOST[:PORT]) to reach over plain HTTP; loopback registries always are.
    #[arg(long = "insecure-registry")]
    insecure_registries: Vec<String>,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token and print it (only its hash is kept).
    Create {
        /// admin (everything), teacher (its courses) or hub (read only).
        #[arg(long)]
        role: String,
        /// A course a teacher token is granted (repeatable).
        #[arg(long = "course")]
        courses: Vec<String>,
        /// What the token is for.
        #[arg(long)]
        description: Option<String>,
        /// The service's data directory.
        #[arg(long, env = "TROUSSE_DATA_DIR")]
        data_dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum CacheCommand {
    /// Evict the least recently used packages, staged packages and layers until the cache fits.
    Gc {
        /// The most the cache may hold, e.g. 20GiB, 500MB or a byte count.
        #[arg(long)]
        max_size: String,
        /// Cache directory [default: $TROUSSE_CACHE_DIR or ~/.cache/trousse].
        #[arg(long)]
        cache_dir: Option<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let code = error
                .downcast_ref::<BuildError>()
                .map(BuildError::exit_code)
                .unwrap_or(1);
            eprintln!("error: {error:#}");
            ExitCode::from(code as u8)
        }
    }
}

fn cache_dir(args: &SolveArgs) -> PathBuf {
    args.cache_dir
        .clone()
        .unwrap_or_else(CacheDir::default_location)
}

/// Reads a spec or a lock and the command-line overrides into a build request.
fn build_request(
    path: &Path,
    args: &SolveArgs,
    base: Option<&str>,
) -> Result<BuildRequest, BuildError> {
    let source = Source::read(path, &args.image_defaults()?)?;
    let mut overrides = Overrides::default();
    if !args.channels.is_empty() {
        let config = rattler_channel_config()?;
        for channel in &args.channels {
            overrides
                .channels
                .extend(resolve_channel(channel, &config).map_err(BuildError::Unsupported)?);
        }
    }
    overrides.platforms = parse_platforms(&args.platforms)?;
    if let Some(base) = base {
        overrides.base = Some(ImageRef::from_str(base)?);
    }
    Ok(BuildRequest { source, overrides })
}

impl SolveArgs {
    /// Where a request is solved.
    fn resolve_options(&self, reporter: trousse_builder::progress::Reporter) -> ResolveOptions {
        ResolveOptions {
            cache_dir: cache_dir(self),
            registry: self.registry_options(),
            reporter,
        }
    }
}

fn rattler_channel_config() -> Result<trousse_builder::spec::ChannelConfig, BuildError> {
    let cwd =
        std::env::current_dir().map_err(BuildError::io("reading the current directory", "."))?;
    Ok(trousse_builder::spec::ChannelConfig::default_with_root_dir(
        cwd,
    ))
}

fn parse_platforms(names: &[String]) -> Result<Vec<trousse_builder::spec::Subdir>, BuildError> {
    names
        .iter()
        .map(|p| parse_platform(p).map_err(BuildError::Unsupported))
        .collect()
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Lock {
            spec,
            output,
            solve,
        } => {
            let request = build_request(&spec, &solve, None)?;
            if let Source::Lock { .. } = request.source {
                return Err(BuildError::Unsupported(format!(
                    "{} is a lock file already: build it with `trousse build`",
                    spec.display()
                ))
                .into());
            }
            let options = solve.resolve_options(progress::reporter(false));
            let lock = request
                .resolve(&solve.image_defaults()?, &options)
                .await?
                .lock;
            lock.write(&output)?;
            let packages: usize = lock.platforms.iter().map(|p| p.records.len()).sum();
            eprintln!(
                "wrote {} ({packages} packages, sha256 {})",
                output.display(),
                lock.hash()
            );
            Ok(())
        }
        Command::Build {
            input,
            output,
            base,
            compression,
            json,
            solve,
        } => {
            let output = ImageRef::from_str(&output)
                .map_err(BuildError::from)
                .context("invalid --output")?;
            let compression =
                Compression::from_str(&compression).map_err(BuildError::Unsupported)?;
            let reporter = progress::reporter(json);
            let request = build_request(&input, &solve, base.as_deref())?;
            let resolved = request
                .resolve(
                    &solve.image_defaults()?,
                    &solve.resolve_options(reporter.clone()),
                )
                .await?;
            let options = BuildOptions {
                cache_dir: cache_dir(&solve),
                compression,
                output,
                reporter,
                registry: solve.registry_options(),
            };
            let report = trousse_builder::build(resolved, options).await?;
            if report.cached {
                eprintln!(
                    "{} already holds this build: {}",
                    report.output, report.digest
                );
            } else {
                eprintln!(
                    "built {} -> {} ({} layers, {} cached, {} bytes)",
                    report.digest, report.output, report.layers, report.cached_layers, report.bytes
                );
            }
            if let Some(push) = &report.push {
                eprintln!(
                    "pushed {} blobs ({} bytes), {} already there, {} mounted",
                    push.blobs_uploaded,
                    push.bytes_uploaded,
                    push.blobs_present,
                    push.blobs_mounted
                );
            }
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                println!("{}", report.digest);
            }
            Ok(())
        }
        Command::Prebuild {
            dir,
            registry,
            summary,
            solve,
        } => prebuild(&dir, &registry, summary.as_deref(), &solve).await,
        Command::Serve(args) => serve(args).await,
        Command::Token {
            action:
                TokenCommand::Create {
                    role,
                    courses,
                    description,
                    data_dir,
                },
        } => {
            let role = role
                .parse()
                .map_err(BuildError::Unsupported)
                .context("invalid --role")?;
            let token =
                trousse_api::create_token(&data_dir, role, &courses, description.as_deref())
                    .await?;
            println!("{token}");
            Ok(())
        }
        Command::Cache {
            action:
                CacheCommand::Gc {
                    max_size,
                    cache_dir,
                    json,
                },
        } => {
            let max_bytes = trousse_builder::cache_gc::parse_size(&max_size)
                .map_err(BuildError::Unsupported)
                .context("invalid --max-size")?;
            let cache = CacheDir::new(cache_dir.unwrap_or_else(CacheDir::default_location))?;
            let report = trousse_builder::cache_gc::collect_garbage(&cache, max_bytes)?;
            eprintln!(
                "{}: {} -> {} bytes, {} entries evicted, {} kept",
                cache.root().display(),
                report.bytes_before,
                report.bytes_after,
                report.entries_removed,
                report.entries_kept
            );
            if json {
                println!("{}", serde_json::to_string(&report)?);
            }
            Ok(())
        }
        Command::Inspect {
            image,
            json,
            insecure_registries,
        } => {
            let reference = ImageRef::from_str(&image).map_err(BuildError::from)?;
            let registry = RegistryOptions {
                insecure: insecure_registries,
                layer_pool: None,
            };
            let manifests = inspect(&reference, &registry).await?;
            if json {
                println!("{}", serde_json::to_string(&manifests)?);
                return Ok(());
            }
            for m in manifests {
                println!("{} {}", m.platform, m.digest);
                for (i, layer) in m.layers.iter().enumerate() {
                    let what = if layer.packages.is_empty() {
                        "(base or environment files)".to_string()
                    } else {
                        layer.packages.join(" ")
                    };
                    println!("  {i:>3} {:>12} {} {what}", layer.size, &layer.digest[..19]);
                }
            }
            Ok(())
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let address = listener.local_addr()?;
    let mut config = trousse_api::Config::new(
        args.data_dir,
        args.public_host.unwrap_or_else(|| address.to_string()),
    );
    config.max_builds = args.max_builds;
    config.build_timeout = std::time::Duration::from_secs(args.build_timeout);
    config.max_body_bytes = trousse_builder::cache_gc::parse_size(&args.max_body)
        .map_err(BuildError::Unsupported)
        .context("invalid --max-body")? as usize;
    config.max_spec_packages = args.max_spec_packages;
    if !args.allowed_channels.is_empty() {
        config.allowed_channels = args.allowed_channels;
    }
    config.allowed_bases = args.allowed_bases;
    config.require_pull_token = args.require_pull_token;
    config.push_to = args.push_to;
    config.registry = RegistryOptions {
        insecure: args.insecure_registries,
        layer_pool: None,
    };
    if let Some(base) = args.default_base {
        config.defaults.base = ImageRef::from_str(&base)
            .map_err(BuildError::from)
            .context("invalid --default-base / TROUSSE_DEFAULT_BASE")?;
    }
    eprintln!("trousse serving on http://{address}");
    trousse_api::serve(listener, config).await?;
    Ok(())
}

/// One stack's line of the prebuild summary.
#[derive(serde::Serialize)]
struct PrebuiltStack {
    stack: String,
    image: String,
    digest: Option<String>,
    cached: bool,
    bytes_uploaded: u64,
    error: Option<String>,
}

/// Builds and pushes every spec of `dir`; a failed stack does not stop the others.
async fn prebuild(
    dir: &Path,
    registry: &str,
    summary: Option<&Path>,
    args: &SolveArgs,
) -> anyhow::Result<()> {
    let mut specs: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yml" | "yaml")))
        .collect();
    specs.sort();
    let registry = registry.trim_end_matches('/');
    let options = RegistryOptions {
        insecure: args.insecure_registries.clone(),
        layer_pool: Some(
            args.layer_pool
                .clone()
                .unwrap_or_else(|| format!("{registry}/trousse-layers")),
        ),
    };
    let mut stacks = Vec::new();
    for spec_path in specs {
        let stack = spec_path
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        let image = format!("docker://{registry}/{stack}:latest");
        let result = async {
            let reporter = progress::reporter(true);
            let resolved = build_request(&spec_path, args, None)?
                .resolve(
                    &args.image_defaults()?,
                    &args.resolve_options(reporter.clone()),
                )
                .await?;
            let options = BuildOptions {
                cache_dir: cache_dir(args),
                compression: Compression::Gzip,
                output: ImageRef::from_str(&image)?,
                reporter,
                registry: options.clone(),
            };
            trousse_builder::build(resolved, options).await
        }
        .await;
        let line = match result {
            Ok(report) => PrebuiltStack {
                stack,
                image,
                digest: Some(report.digest),
                cached: report.cached,
                bytes_uploaded: report.push.map_or(0, |p| p.bytes_uploaded),
                error: None,
            },
            Err(e) => PrebuiltStack {
                stack,
                image,
                digest: None,
                cached: false,
                bytes_uploaded: 0,
                error: Some(e.to_string()),
            },
        };
        eprintln!(
            "{:<24} {:<8} {:>12} bytes uploaded  {}",
            line.stack,
            match (&line.error, line.cached) {
                (Some(_), _) => "FAILED",
                (None, true) => "cached",
                (None, false) => "built",
            },
            line.bytes_uploaded,
            line.digest
                .as_deref()
                .or(line.error.as_deref())
                .unwrap_or_default()
        );
        stacks.push(line);
    }
    let json = serde_json::to_string_pretty(&stacks)?;
    if let Some(path) = summary {
        std::fs::write(path, &json).with_context(|| format!("writing {}", path.display()))?;
    }
    println!("{json}");
    let failed = stacks.iter().filter(|s| s.error.is_some()).count();
    if failed > 0 {
        anyhow::bail!("{failed} of {} stacks failed", stacks.len());
    }
    Ok(())
}
