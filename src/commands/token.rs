//! `trousse token`: the service's API tokens.

use std::path::PathBuf;

use trousse_api::{NewToken, Role};
use trousse_builder::BuildError;

/// Where the tokens are: the service's data directory, or its PostgreSQL database.
#[derive(clap::Args, Debug)]
pub struct StoreArgs {
    /// The service's data directory.
    #[arg(long, env = "TROUSSE_DATA_DIR")]
    data_dir: PathBuf,
    /// The service's PostgreSQL database, when it has one.
    #[arg(long, env = "TROUSSE_DATABASE_URL", hide_env_values = true)]
    database: Option<String>,
}

impl StoreArgs {
    /// The data directory given.
    pub fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }

    /// The database these flags name.
    pub fn database(self) -> anyhow::Result<trousse_api::Database> {
        // a typo must not make a second, empty service directory
        if self.database.is_none() && !self.data_dir.is_dir() {
            return Err(BuildError::Usage(format!(
                "{} is not a directory: give the --data-dir of the service (create it first for a new one)",
                self.data_dir.display()
            ))
            .into());
        }
        trousse_api::Database::new(self.database.as_deref(), self.data_dir)
            .map_err(|e| BuildError::Usage(e.to_string()).into())
    }
}

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
        /// Days until it stops working (1 to 3650).
        #[arg(long, default_value_t = 365, conflicts_with = "no_expiry")]
        expires_in_days: u64,
        /// It never stops working (until revoked).
        #[arg(long)]
        no_expiry: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List the tokens: id, role, courses, description, dates (never a token).
    List {
        /// One JSON document instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Revoke a token by the id `list` shows: every service refuses it at once.
    Revoke {
        /// The token's id.
        id: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// Runs `trousse token …`.
pub async fn run(command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create {
            role,
            courses,
            description,
            expires_in_days,
            no_expiry,
            store,
        } => {
            let role: Role = role
                .parse()
                .map_err(|e| BuildError::Usage(format!("invalid --role: {e}")))?;
            if role == Role::Teacher && courses.is_empty() {
                return Err(BuildError::Usage(
                    "a teacher token needs at least one --course COURSE".into(),
                )
                .into());
            }
            let new = NewToken {
                role,
                courses,
                description,
                expires_in_days: (!no_expiry).then_some(expires_in_days),
            };
            let made = trousse_api::create_token(&store.database()?, &new).await?;
            println!("{}", made.token);
        }
        TokenCommand::List { json, store } => {
            let tokens = trousse_api::list_tokens(&store.database()?).await?;
            if json {
                println!("{}", serde_json::json!({ "tokens": tokens }));
            } else {
                print_table(&tokens);
            }
        }
        TokenCommand::Revoke { id, store } => {
            trousse_api::revoke_token(&store.database()?, &id).await?;
            eprintln!("revoked {id}");
        }
    }
    Ok(())
}

fn date(seconds: Option<i64>) -> String {
    seconds
        .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
        .map_or("never".into(), |d| d.format("%Y-%m-%d %H:%M").to_string())
}

fn print_table(tokens: &[trousse_api::TokenInfo]) {
    println!(
        "{:<12}  {:<7}  {:<16}  {:<16}  {:<20}  DESCRIPTION",
        "ID", "ROLE", "CREATED", "EXPIRES", "COURSES"
    );
    for t in tokens {
        println!(
            "{:<12}  {:<7}  {:<16}  {:<16}  {:<20}  {}",
            t.id,
            t.role,
            date(Some(t.created_at)),
            date(t.expires_at),
            t.courses.join(","),
            t.description.as_deref().unwrap_or("")
        );
    }
}
