//! `trousse lock`: solve an environment.yml and write its lock file.

use std::path::PathBuf;

use trousse_builder::{BuildError, Source};

use crate::{
    args::{RepoArgs, SolveArgs},
    progress,
};

/// Solve an environment.yml (or a git repository's) and write its lock file.
#[derive(clap::Args, Debug)]
pub struct LockArgs {
    /// The environment.yml, or a git repository (as for `trousse build`); a conda-lock
    /// file or an explicit list is converted to a rattler lock.
    pub spec: String,
    /// Where to write the lock file.
    #[arg(short, long)]
    pub output: PathBuf,
    /// The base image the environment will run on (it declares the glibc the solve assumes):
    /// scratch, oci:DIR[:TAG], oci-archive:FILE[:TAG] or docker://HOST/REPO[:TAG][@DIGEST].
    #[arg(long)]
    pub base: Option<String>,
    /// Print a JSON report on stdout (errors too, as JSON).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub repo: RepoArgs,
    #[command(flatten)]
    pub solve: SolveArgs,
}

/// Runs `trousse lock`.
pub async fn run(args: LockArgs) -> anyhow::Result<()> {
    let request = args
        .solve
        .request_input(&args.spec, &args.repo, args.base.as_deref(), None)
        .await?;
    if let Source::Lock { .. } = request.source {
        return Err(BuildError::Usage(format!(
            "{} is a lock file already: build it with `trousse build`",
            args.spec
        ))
        .into());
    }
    let options = args.solve.resolve_options(progress::reporter(args.json))?;
    let resolved = request
        .resolve(&args.solve.image_defaults()?, &options)
        .await?;
    let lock = resolved.lock;
    // the spec's image settings travel with the lock: building it makes the
    // spec's image (a repository's files are not in a lock: neither are their settings)
    let settings = trousse_builder::source::repo::without_repository(&resolved.settings);
    lock.write_with_settings(&args.output, &settings)?;
    let packages: usize = lock.platforms.iter().map(|p| p.records.len()).sum();
    let pypi: usize = lock.platforms.iter().map(|p| p.pypi.len()).sum();
    if args.json {
        let platforms: Vec<String> = lock
            .platforms
            .iter()
            .map(|p| p.platform.to_string())
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "lock": args.output,
                "sha256": lock.hash(),
                "packages": packages,
                "pypi_packages": pypi,
                "platforms": platforms,
            })
        );
    } else {
        eprintln!(
            "wrote {} ({packages} conda and {pypi} PyPI packages, sha256 {})",
            args.output.display(),
            lock.hash()
        );
    }
    Ok(())
}
