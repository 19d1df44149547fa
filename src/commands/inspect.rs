//! `trousse inspect`: the layers of an image and the packages in each.

use std::{io::Write, str::FromStr};

use trousse_builder::{
    image::inspect::{inspect, ManifestSummary},
    BuildError,
};
use trousse_registry_client::ImageRef;

use crate::args::RegistryArgs;

/// List the layers of an image and the packages in each.
#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// The image: oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE
    /// or docker://HOST/REPO[:TAG][@DIGEST].
    pub image: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Runs `trousse inspect`.
pub async fn run(args: InspectArgs) -> anyhow::Result<()> {
    let reference = ImageRef::from_str(&args.image)
        .map_err(|e| BuildError::Usage(format!("invalid image reference: {e}")))?;
    let manifests = inspect(&reference, &args.registry.options(None)).await?;
    let mut out = std::io::stdout().lock();
    let written = if args.json {
        writeln!(out, "{}", serde_json::to_string(&manifests)?)
    } else {
        manifests
            .iter()
            .try_for_each(|m| print_manifest(&mut out, m))
    };
    match written {
        // the reader stopped reading (`| head`): nothing more to say
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// One platform: what it runs, then its layers and the packages in each.
fn print_manifest(out: &mut impl Write, m: &ManifestSummary) -> std::io::Result<()> {
    writeln!(out, "{} {}", m.platform, m.digest)?;
    if let Some(run) = &m.config {
        let words = |v: &[String]| {
            if v.is_empty() {
                "-".to_string()
            } else {
                v.join(" ")
            }
        };
        writeln!(out, "  entrypoint: {}", words(&run.entrypoint))?;
        writeln!(out, "  command:    {}", words(&run.command))?;
        writeln!(
            out,
            "  user:       {}  workdir: {}",
            run.user, run.working_dir
        )?;
        for env in &run.env {
            writeln!(out, "  env:        {env}")?;
        }
        for (key, value) in &run.labels {
            writeln!(out, "  label:      {key}={value}")?;
        }
    }
    for (i, layer) in m.layers.iter().enumerate() {
        let what = if layer.packages.is_empty() {
            "(base or environment files)".to_string()
        } else {
            layer.packages.join(" ")
        };
        let short = layer.digest.get(..19).unwrap_or(&layer.digest);
        writeln!(out, "  {i:>3} {:>12} {short} {what}", layer.size)?;
    }
    Ok(())
}
