//! `trousse store`: the service's database as a whole.

use std::path::PathBuf;

use trousse_builder::BuildError;

use crate::args::RegistryArgs;

/// Manage the service's database.
#[derive(clap::Subcommand, Debug)]
pub enum StoreCommand {
    /// Copy a stopped SQLite deployment into an empty PostgreSQL database,
    /// pushing the images its /v2/ served to the registry (--push-to).
    Copy {
        /// The data directory of the service to copy (stopped).
        #[arg(long, env = "TROUSSE_DATA_DIR")]
        data_dir: PathBuf,
        /// The PostgreSQL database to copy into (postgres://USER@HOST/NAME), empty.
        #[arg(long, env = "TROUSSE_DATABASE_URL", hide_env_values = true)]
        to: String,
        /// Push the images to this registry (HOST/PREFIX): the new deployment's --push-to.
        #[arg(long)]
        push_to: Option<String>,
        #[command(flatten)]
        registry: RegistryArgs,
    },
}

/// Runs `trousse store …`.
pub async fn run(command: StoreCommand) -> anyhow::Result<()> {
    let StoreCommand::Copy {
        data_dir,
        to,
        push_to,
        registry,
    } = command;
    let database = trousse_api::Database::new(Some(&to), data_dir.clone())
        .map_err(|e| BuildError::Usage(e.to_string()))?;
    let images = push_to.map(|prefix| trousse_api::ImageDestination {
        prefix,
        registry: registry.options(None),
    });
    let report = trousse_api::copy_data_dir(&data_dir, &database, images.as_ref()).await?;
    for (table, rows) in &report.rows.tables {
        eprintln!("{rows:>8} rows  {table}");
    }
    for image in &report.images {
        eprintln!("pushed {image}");
    }
    eprintln!(
        "copied {} rows into {database}{}",
        report.rows.tables.iter().map(|(_, n)| n).sum::<u64>(),
        if report.images.is_empty() {
            String::new()
        } else {
            format!(", {} images pushed", report.images.len())
        }
    );
    Ok(())
}
