//! The `trousse` command line: argument parsing and wiring only, one module
//! per subcommand in `commands/`.

mod args;
mod commands;
mod progress;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use trousse_builder::BuildError;

use commands::{
    build::BuildArgs, cache::CacheCommand, images::ImagesCommand, inspect::InspectArgs,
    lock::LockArgs, prebuild::PrebuildArgs, serve::ServeArgs, store::StoreCommand,
    token::TokenCommand,
};

#[derive(Parser)]
#[command(
    name = "trousse",
    version,
    about = "Build reproducible, per-package-layered OCI images of conda environments"
)]
struct Cli {
    /// Logs as text lines, or as one JSON object per line (with each
    /// request's id) for a log collector.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "TROUSSE_LOG_FORMAT"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum LogFormat {
    /// Lines for a person.
    Text,
    /// One JSON object per line, span fields (request and build ids) included.
    Json,
}

/// Logs to stderr, at `RUST_LOG`'s levels (rattler's own warnings, about a
/// cache entry it repairs, are not the user's business).
fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(
            "warn,rattler=error,rattler_cache=error,rattler_package_streaming=error",
        )
    });
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => logs
            .json()
            .with_current_span(false)
            .with_span_list(true)
            .init(),
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
}

#[derive(Subcommand)]
enum Command {
    /// Solve an environment.yml and write its lock file.
    Lock(LockArgs),
    /// Build an image from an environment.yml or a lock file.
    Build(BuildArgs),
    /// Lock, build and push every stack of a directory of specs, skipping unchanged ones.
    Prebuild(PrebuildArgs),
    /// Serve the HTTP API a JupyterHub queries, and the images through /v2/.
    Serve(Box<ServeArgs>),
    /// Run builds queued in a shared PostgreSQL database (the same flags as serve;
    /// --listen answers /health and /metrics only).
    Worker(Box<ServeArgs>),
    /// Manage the service's API tokens.
    Token {
        #[command(subcommand)]
        action: TokenCommand,
    },
    /// Manage the service's database (copy a SQLite deployment to PostgreSQL).
    Store {
        #[command(subcommand)]
        action: StoreCommand,
    },
    /// Collect the service's image store (a dry run unless --delete).
    Images {
        #[command(subcommand)]
        action: ImagesCommand,
    },
    /// Manage the local cache.
    Cache {
        #[command(subcommand)]
        action: CacheCommand,
    },
    /// List the layers of an image and the packages in each.
    Inspect(InspectArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs(cli.log_format);
    let json_errors = match &cli.command {
        Command::Build(b) => b.json,
        Command::Inspect(i) => i.json,
        Command::Lock(l) => l.json,
        _ => false,
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => report_error(&error, json_errors),
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Lock(args) => commands::lock::run(args).await,
        Command::Build(args) => commands::build::run(args).await,
        Command::Prebuild(args) => commands::prebuild::run(args).await,
        Command::Serve(args) => commands::serve::run(*args).await,
        Command::Worker(args) => commands::serve::run_worker(*args).await,
        Command::Token { action } => commands::token::run(action).await,
        Command::Store { action } => commands::store::run(action).await,
        Command::Images { action } => commands::images::run(action).await,
        Command::Cache { action } => commands::cache::run(action),
        Command::Inspect(args) => commands::inspect::run(args).await,
    }
}

/// Prints the error with its causes (and, for `--json`, one JSON object on
/// stdout); the exit code says its kind, as the README lists them.
fn report_error(error: &anyhow::Error, json: bool) -> ExitCode {
    let build_error = error.downcast_ref::<BuildError>();
    let code = build_error.map_or(1, BuildError::exit_code);
    eprintln!("error: {error:#}");
    if json {
        let kind = build_error.map_or("error", BuildError::kind);
        println!(
            "{}",
            serde_json::json!({"error": kind, "message": format!("{error:#}"), "exit_code": code})
        );
    }
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
