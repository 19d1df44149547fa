//! `trousse build`: an environment.yml or a lock file into an image.

use std::str::FromStr;

use trousse_builder::{BuildError, BuildOptions, BuildReport, Compression};
use trousse_registry_client::ImageRef;

use crate::{
    args::{RepoArgs, SolveArgs},
    progress,
};

/// Build an image from an environment.yml, a lock file or a git repository.
#[derive(clap::Args, Debug)]
pub struct BuildArgs {
    /// The environment.yml, the lock file, or the git repository (https://, ssh://,
    /// git@HOST:PATH, git://, file:// or a local repository's directory; URL@REF picks a ref).
    pub input: String,
    /// Where to write the image: oci:DIR[:TAG], oci-archive:FILE[:TAG],
    /// docker-archive:FILE[:NAME:TAG] (for docker load) or docker://HOST/REPO[:TAG] (a push).
    #[arg(short, long)]
    pub output: String,
    /// The base image, replacing the spec's: scratch, oci:DIR[:TAG], oci-archive:FILE[:TAG]
    /// or docker://HOST/REPO[:TAG][@DIGEST].
    #[arg(long)]
    pub base: Option<String>,
    /// Layer compression.
    #[arg(long, default_value = "gzip", value_parser = ["gzip", "zstd"])]
    pub compression: String,
    /// Print a JSON report as the last line of stdout (on failure: the error's kind,
    /// message and exit code).
    #[arg(long)]
    pub json: bool,
    /// The environment of a pixi lock to build [default: default].
    #[arg(long, value_name = "NAME")]
    pub environment: Option<String>,
    /// Repository (HOST/REPO) that keeps every pushed layer, so other repositories mount it.
    #[arg(long, env = "TROUSSE_LAYER_POOL")]
    pub layer_pool: Option<String>,
    #[command(flatten)]
    pub repo: RepoArgs,
    #[command(flatten)]
    pub solve: SolveArgs,
}

/// Runs `trousse build`.
pub async fn run(args: BuildArgs) -> anyhow::Result<()> {
    let output = ImageRef::from_str(&args.output)
        .map_err(|e| BuildError::Usage(format!("invalid --output: {e}")))?;
    let compression = Compression::from_str(&args.compression).map_err(BuildError::Usage)?;
    let reporter = progress::reporter(args.json);
    let resolved = args
        .solve
        .request_input(
            &args.input,
            &args.repo,
            args.base.as_deref(),
            args.environment.as_deref(),
        )
        .await?
        .resolve(
            &args.solve.image_defaults()?,
            &args.solve.resolve_options(reporter.clone())?,
        )
        .await?;
    let options = BuildOptions {
        mirrors: args.solve.mirrors()?,
        post_build_network: args.repo.post_build_network,
        max_image_bytes: None,
        cache_dir: args.solve.cache_dir(),
        compression,
        output,
        reporter,
        registry: args.solve.registry.options(args.layer_pool.clone()),
    };
    let report = trousse_builder::build(resolved, options).await?;
    summarize(&report);
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("{}", report.digest);
    }
    Ok(())
}

/// What a build did, on stderr.
fn summarize(report: &BuildReport) {
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
            push.blobs_uploaded, push.bytes_uploaded, push.blobs_present, push.blobs_mounted
        );
    }
}
