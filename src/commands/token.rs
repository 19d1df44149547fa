//! `trousse token`: the service's API tokens.

use std::path::PathBuf;

use trousse_api::Role;
use trousse_builder::BuildError;

/// Manage the service's API tokens.
#[derive(clap::Subcommand, Debug)]
pub enum TokenCommand {
    /// Create a token and print it (only its hash is kept).
    Create {
        /// admin (everything), teacher (its courses) or hub (read only).
        #[arg(long, value_parser = ["admin", "teacher", "hub"])]
        role: String,
        /// A course a teacher token is granted (repeatable; a teacher needs one at least).
        #[arg(long = "course")]
        courses: Vec<String>,
        /// What the token is for.
        #[arg(long)]
        description: Option<String>,
        /// The service's data directory.
        #[arg(long, env = "TROUSSE_DATA_DIR")]
        data_dir: PathBuf,
        /// The service's PostgreSQL database, when it has one.
        #[arg(long, env = "TROUSSE_DATABASE_URL", hide_env_values = true)]
        database: Option<String>,
    },
}

/// Runs `trousse token …`.
pub async fn run(command: TokenCommand) -> anyhow::Result<()> {
    let TokenCommand::Create {
        role,
        courses,
        description,
        data_dir,
        database,
    } = command;
    let role: Role = role
        .parse()
        .map_err(|e| BuildError::Usage(format!("invalid --role: {e}")))?;
    if role == Role::Teacher && courses.is_empty() {
        return Err(
            BuildError::Usage("a teacher token needs at least one --course COURSE".into()).into(),
        );
    }
    // a typo must not make a second, empty service directory
    if database.is_none() && !data_dir.is_dir() {
        return Err(BuildError::Usage(format!(
            "{} is not a directory: give the --data-dir of the service (create it first for a new one)",
            data_dir.display()
        ))
        .into());
    }
    let database = trousse_api::Database::new(database.as_deref(), data_dir)
        .map_err(|e| BuildError::Usage(e.to_string()))?;
    let token =
        trousse_api::create_token(&database, role, &courses, description.as_deref()).await?;
    println!("{token}");
    Ok(())
}
