//! `trousse cache`: the local cache.

use std::path::PathBuf;

use trousse_builder::{cache::CacheDir, BuildError};

/// Manage the local cache.
#[derive(clap::Subcommand, Debug)]
pub enum CacheCommand {
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

/// Runs `trousse cache …`.
pub fn run(command: CacheCommand) -> anyhow::Result<()> {
    let CacheCommand::Gc {
        max_size,
        cache_dir,
        json,
    } = command;
    let max_bytes = trousse_builder::cache::gc::parse_size(&max_size)
        .map_err(|e| BuildError::Usage(format!("invalid --max-size: {e}")))?;
    // never create a cache to collect it: a typo is said, a cache not made yet is empty
    if let Some(dir) = cache_dir.as_ref().filter(|d| !d.is_dir()) {
        if dir.parent().is_some_and(std::path::Path::is_dir) && !dir.exists() {
            eprintln!("{}: no cache yet, nothing to collect", dir.display());
            return Ok(());
        }
        return Err(BuildError::Usage(format!(
            "{} is not a directory: give the --cache-dir builds used",
            dir.display()
        ))
        .into());
    }
    let cache = CacheDir::new(cache_dir.unwrap_or_else(CacheDir::default_location))?;
    let report = trousse_builder::cache::gc::collect_garbage(&cache, max_bytes)?;
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
