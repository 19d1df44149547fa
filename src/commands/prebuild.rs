//! `trousse prebuild`: lock, build and push every stack of a directory.

use std::{
    path::{Path, PathBuf},
    str::FromStr,
};

use anyhow::Context;
use trousse_builder::{error::error_chain, BuildError, BuildOptions, BuildReport, Compression};
use trousse_registry_client::{ImageRef, RegistryOptions};

use crate::{args::SolveArgs, progress};

/// Lock, build and push every stack of a directory of specs, skipping unchanged ones.
#[derive(clap::Args, Debug)]
pub struct PrebuildArgs {
    /// The directory of environment.yml files (one stack each).
    pub dir: PathBuf,
    /// Where to push: HOST/PREFIX; each stack goes to HOST/PREFIX/NAME:latest.
    #[arg(long)]
    pub registry: String,
    /// Print the summary as JSON on stdout (one line a stack is printed otherwise).
    #[arg(long)]
    pub json: bool,
    /// Write the summary as JSON to this file.
    #[arg(long)]
    pub summary: Option<PathBuf>,
    /// Repository (HOST/REPO) that keeps every pushed layer [default: HOST/PREFIX/trousse-layers].
    #[arg(long, env = "TROUSSE_LAYER_POOL")]
    pub layer_pool: Option<String>,
    #[command(flatten)]
    pub solve: SolveArgs,
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

/// Runs `trousse prebuild`: a failed stack does not stop the others.
pub async fn run(args: PrebuildArgs) -> anyhow::Result<()> {
    let registry = args.registry.trim_end_matches('/');
    let options = args.solve.registry.options(Some(
        args.layer_pool
            .clone()
            .unwrap_or_else(|| format!("{registry}/trousse-layers")),
    ));
    let mut stacks = Vec::new();
    for spec in stack_specs(&args.dir)? {
        let stack = spec
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        let image = format!("docker://{registry}/{stack}:latest");
        let line = match build_stack(&spec, &image, &args.solve, &options).await {
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
                error: Some(error_chain(&e)),
            },
        };
        if !args.json {
            print_line(&line);
        }
        stacks.push(line);
    }
    let json = serde_json::to_string_pretty(&stacks)?;
    if let Some(path) = &args.summary {
        std::fs::write(path, &json).with_context(|| format!("writing {}", path.display()))?;
    }
    if args.json {
        println!("{json}");
    }
    let failed = stacks.iter().filter(|s| s.error.is_some()).count();
    if failed > 0 {
        anyhow::bail!("{failed} of {} stacks failed", stacks.len());
    }
    Ok(())
}

/// The specs of a directory, sorted.
fn stack_specs(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut specs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| BuildError::Usage(format!("cannot read {}: {e}", dir.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yml" | "yaml")))
        .collect();
    specs.sort();
    Ok(specs)
}

async fn build_stack(
    spec: &Path,
    image: &str,
    solve: &SolveArgs,
    registry: &RegistryOptions,
) -> Result<BuildReport, BuildError> {
    let reporter = progress::reporter(true);
    let resolved = solve
        .request(spec, None, None)
        .await?
        .resolve(
            &solve.image_defaults()?,
            &solve.resolve_options(reporter.clone())?,
        )
        .await?;
    let options = BuildOptions {
        mirrors: solve.mirrors()?,
        post_build_network: false,
        max_image_bytes: None,
        cache_dir: solve.cache_dir(),
        compression: Compression::Gzip,
        output: ImageRef::from_str(image)?,
        reporter,
        registry: registry.clone(),
    };
    trousse_builder::build(resolved, options).await
}

fn print_line(line: &PrebuiltStack) {
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
}
