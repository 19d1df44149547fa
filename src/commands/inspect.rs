//! `trousse inspect`: the layers of an image and the packages in each.

use std::str::FromStr;

use trousse_builder::{inspect::inspect, BuildError};
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
    if args.json {
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
            let short = layer.digest.get(..19).unwrap_or(&layer.digest);
            println!("  {i:>3} {:>12} {short} {what}", layer.size);
        }
    }
    Ok(())
}
