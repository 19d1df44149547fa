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
    lock::is_lock_file,
    spec::{parse_platform, resolve_channel},
    BuildError, BuildInput, BuildOptions, Compression, EnvSpec, ImageSettings, Lock,
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

/// Reads a spec and applies the command-line overrides.
fn load_spec(path: &Path, args: &SolveArgs) -> Result<EnvSpec, BuildError> {
    let mut spec = EnvSpec::from_path(path)?;
    if !args.channels.is_empty() {
        let config = rattler_channel_config()?;
        spec.channels = args
            .channels
            .iter()
            .map(|c| resolve_channel(c, &config).map_err(BuildError::Unsupported))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .flatten()
            .collect();
    }
    if !args.platforms.is_empty() {
        spec.image.platforms = parse_platforms(&args.platforms)?;
    }
    Ok(spec)
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
            let env = load_spec(&spec, &solve)?;
            let reporter = progress::reporter(false);
            let lock = trousse_builder::lock_spec(&env, cache_dir(&solve), &reporter).await?;
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
            let mut build_input = if is_lock_file(&input) {
                if !solve.channels.is_empty() {
                    return Err(BuildError::Unsupported(
                        "-c/--channel has no effect on a lock file: lock the spec again".into(),
                    )
                    .into());
                }
                let mut lock = Lock::from_path(&input)?;
                let mut settings = ImageSettings::default();
                if !solve.platforms.is_empty() {
                    let wanted = parse_platforms(&solve.platforms)?;
                    for p in &wanted {
                        if lock.platform(*p).is_none() {
                            return Err(BuildError::Unsupported(format!(
                                "{} does not lock platform {p}",
                                input.display()
                            ))
                            .into());
                        }
                    }
                    lock.platforms.retain(|p| wanted.contains(&p.platform));
                    settings.platforms = wanted;
                }
                BuildInput::Lock { lock, settings }
            } else {
                BuildInput::Spec(load_spec(&input, &solve)?)
            };
            if let Some(base) = base {
                let base = ImageRef::from_str(&base)
                    .map_err(BuildError::from)
                    .context("invalid --base")?;
                match &mut build_input {
                    BuildInput::Spec(spec) => spec.image.base = base,
                    BuildInput::Lock { settings, .. } => settings.base = base,
                }
            }
            let options = BuildOptions {
                cache_dir: cache_dir(&solve),
                compression,
                output,
                reporter: progress::reporter(json),
                registry: RegistryOptions {
                    insecure: solve.insecure_registries.clone(),
                    layer_pool: solve.layer_pool.clone(),
                },
            };
            let report = trousse_builder::build(build_input, options).await?;
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
            let spec = load_spec(&spec_path, args)?;
            let options = BuildOptions {
                cache_dir: cache_dir(args),
                compression: Compression::Gzip,
                output: ImageRef::from_str(&image)?,
                reporter: progress::reporter(true),
                registry: options.clone(),
            };
            trousse_builder::build(BuildInput::Spec(spec), options).await
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
