//! `trousse images gc`: collects the service's image store.

use std::time::Duration;

use crate::commands::token::StoreArgs;

/// Manage the service's image store (`DATA/images`).
#[derive(clap::Subcommand, Debug)]
pub enum ImagesCommand {
    /// Find (and with --delete remove) versions beyond those kept, images
    /// nothing refers to, and blob files no image holds.
    Gc {
        /// Remove what is found [default: only report it].
        #[arg(long)]
        delete: bool,
        /// Versions of a course environment kept for roll-backs (exams keep all).
        #[arg(long, default_value_t = trousse_api::config::DEFAULT_KEEP_VERSIONS)]
        keep_versions: i64,
        /// Blob files younger than this many minutes are kept (builds in flight).
        #[arg(long, default_value_t = 60)]
        min_age_minutes: u64,
        /// One JSON object instead of a sentence.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// Runs `trousse images …`.
pub async fn run(command: ImagesCommand) -> anyhow::Result<()> {
    let ImagesCommand::Gc {
        delete,
        keep_versions,
        min_age_minutes,
        json,
        store,
    } = command;
    let data_dir = store.data_dir().to_path_buf();
    let database = store.database()?;
    let how = trousse_api::collect::Collection {
        keep_versions,
        min_age: Duration::from_secs(min_age_minutes * 60),
        delete,
    };
    let done = trousse_api::collect_images(&database, &data_dir, how).await?;
    if json {
        println!("{}", serde_json::to_string(&done)?);
    } else {
        let verb = if delete {
            "removed"
        } else {
            "would remove (dry run; --delete removes)"
        };
        println!(
            "{verb}: {} versions, {} images, {} blobs ({:.1} MB)",
            done.versions,
            done.images,
            done.blobs,
            done.bytes as f64 / 1e6
        );
    }
    Ok(())
}
