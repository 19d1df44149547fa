//! The service's state: environments, builds and their events, the tags and
//! blobs the pull endpoint serves, token hashes, sessions. SQLite in the data
//! directory by default, PostgreSQL when several services share it; the same
//! query text runs on both (sqlx's Any driver; `$N` placeholders, `ON
//! CONFLICT`, flags as 0/1), each with its own migrations.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use sqlx::{
    any::{AnyPoolOptions, AnyTypeInfo, AnyTypeInfoKind},
    AnyPool, Executor,
};

use crate::error::ApiError;

mod builds;
mod collect;
mod copy;
mod course_settings;
mod database;
mod environments;
mod events;
mod images;
mod rates;
mod sessions;
mod tokens;
mod traces;
mod upgrades;
mod windows;

#[cfg(test)]
mod tests;

pub(crate) use builds::Claim;
pub use copy::CopiedRows;
pub use database::Database;
pub(crate) use environments::{EnvironmentRow, NewBuild, RowWrite, Version};
pub(crate) use sessions::{SessionRow, SignInRow};
pub use tokens::TokenInfo;
pub(crate) use tokens::TOKEN_ID_DIGITS;

pub(crate) use crate::domain::Status;

/// A status is stored as its name.
impl sqlx::Type<sqlx::Any> for Status {
    fn type_info() -> AnyTypeInfo {
        <str as sqlx::Type<sqlx::Any>>::type_info()
    }

    fn compatible(ty: &AnyTypeInfo) -> bool {
        <str as sqlx::Type<sqlx::Any>>::compatible(ty)
    }
}

impl<'q> sqlx::Encode<'q, sqlx::Any> for Status {
    fn encode_by_ref(
        &self,
        buf: &mut <sqlx::Any as sqlx::Database>::ArgumentBuffer<'q>,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        <String as sqlx::Encode<'q, sqlx::Any>>::encode(self.name().to_string(), buf)
    }
}

impl<'r> sqlx::Decode<'r, sqlx::Any> for Status {
    fn decode(value: sqlx::any::AnyValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        let name = <&str as sqlx::Decode<'r, sqlx::Any>>::decode(value)?;
        Status::from_name(name).ok_or_else(|| format!("unknown status '{name}'").into())
    }
}

/// A yes/no column, stored as 0 or 1 in both stores (one query text for both).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Flag(bool);

impl From<Flag> for bool {
    fn from(flag: Flag) -> bool {
        flag.0
    }
}

impl sqlx::Type<sqlx::Any> for Flag {
    fn type_info() -> AnyTypeInfo {
        <i64 as sqlx::Type<sqlx::Any>>::type_info()
    }

    fn compatible(ty: &AnyTypeInfo) -> bool {
        matches!(
            ty.kind(),
            AnyTypeInfoKind::SmallInt | AnyTypeInfoKind::Integer | AnyTypeInfoKind::BigInt
        )
    }
}

impl<'r> sqlx::Decode<'r, sqlx::Any> for Flag {
    fn decode(value: sqlx::any::AnyValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        Ok(Flag(
            <i64 as sqlx::Decode<'r, sqlx::Any>>::decode(value)? != 0,
        ))
    }
}

/// The service's rows: SQLite in the data directory, or PostgreSQL.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    kind: Kind,
}

/// Which database a store is, and what its health check reads.
#[derive(Debug, Clone)]
enum Kind {
    /// A SQLite file, with its device and inode when it was opened.
    Sqlite { path: PathBuf, identity: (u64, u64) },
    /// A PostgreSQL server.
    Postgres,
}

/// The device and inode of a file.
fn file_identity(path: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path)?;
    Ok((meta.dev(), meta.ino()))
}

/// Seconds since the epoch.
pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// What each SQLite connection sets: write-ahead log, waits rather than fails on a lock.
const SQLITE_PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
     PRAGMA busy_timeout = 30000; PRAGMA foreign_keys = ON;";

impl Store {
    /// Opens (creating and migrating) the database.
    pub async fn open(database: &Database) -> Result<Self, ApiError> {
        sqlx::any::install_default_drivers();
        match database {
            Database::Sqlite(data_dir) => Self::open_sqlite(data_dir).await,
            Database::Postgres(url) => Self::open_postgres(database, url.expose()).await,
        }
    }

    async fn open_sqlite(data_dir: &Path) -> Result<Self, ApiError> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            ApiError::Internal(format!("cannot create {}: {e}", data_dir.display()))
        })?;
        let path = data_dir.join("trousse.db");
        let url = format!(
            "sqlite://{}?mode=rwc",
            percent_encoding::utf8_percent_encode(
                &path.to_string_lossy(),
                percent_encoding::NON_ALPHANUMERIC
            )
            .to_string()
            .replace("%2F", "/")
        );
        let pool = AnyPoolOptions::new()
            .max_connections(8)
            .after_connect(|connection, _| {
                Box::pin(async move {
                    connection.execute(SQLITE_PRAGMAS).await?;
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        migrate(
            &pool,
            sqlx::migrate!("./migrations/sqlite"),
            &path.display().to_string(),
        )
        .await?;
        let identity = file_identity(&path)
            .map_err(|e| ApiError::Internal(format!("reading {}: {e}", path.display())))?;
        Ok(Self {
            pool,
            kind: Kind::Sqlite { path, identity },
        })
    }

    async fn open_postgres(database: &Database, url: &str) -> Result<Self, ApiError> {
        let pool = AnyPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await
            .map_err(|e| {
                ApiError::Unavailable(format!(
                    "cannot reach the database {database}: {}",
                    database.scrub(&e.to_string())
                ))
            })?;
        migrate(
            &pool,
            sqlx::migrate!("./migrations/postgres"),
            &database.to_string(),
        )
        .await?;
        Ok(Self {
            pool,
            kind: Kind::Postgres,
        })
    }

    /// A transaction that will write. SQLite's takes the write lock at once
    /// (`BEGIN IMMEDIATE`): one that reads first and writes later would fail
    /// with "database is locked" (a stale snapshot) when another writer
    /// committed in between, which waiting cannot cure.
    pub(crate) async fn begin_write(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.kind {
            Kind::Sqlite { .. } => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Kind::Postgres => self.pool.begin().await,
        }
    }

    /// Whether this store is PostgreSQL (several services may share it).
    pub fn is_shared(&self) -> bool {
        matches!(self.kind, Kind::Postgres)
    }

    /// The connection pool, for tests that write rows as older versions did.
    #[cfg(test)]
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Checks that the database takes writes (and, for SQLite, that its file is still the one opened).
    pub async fn ping(&self) -> Result<(), ApiError> {
        match &self.kind {
            Kind::Sqlite { path, identity } => {
                check_identity(path, *identity)?;
                // a write lock, taken and let go: fails on a read-only file or directory
                let mut connection = self.pool.acquire().await?;
                connection.execute("BEGIN IMMEDIATE").await?;
                connection.execute("ROLLBACK").await?;
            }
            Kind::Postgres => {
                // a standby (or a primary gone read-only) takes no writes
                let read_only: String = sqlx::query_scalar("SHOW transaction_read_only")
                    .fetch_one(&self.pool)
                    .await?;
                if read_only == "on" {
                    return Err(ApiError::Unavailable(
                        "the database takes no writes (a standby, or read-only)".into(),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Runs a store's migrations; a second try covers another process that migrated at the same time.
async fn migrate(
    pool: &AnyPool,
    migrator: sqlx::migrate::Migrator,
    name: &str,
) -> Result<(), ApiError> {
    if migrator.run(pool).await.is_err() {
        // another process (a `token create` beside a first `serve`) migrated at the same
        // time: what it applied is now recorded, so a second run finds nothing left to do
        migrator
            .run(pool)
            .await
            .map_err(|e| ApiError::Internal(format!("migrating {name}: {e}")))?;
    }
    Ok(())
}

/// Fails when the SQLite file opened was replaced or removed since.
fn check_identity(path: &Path, opened: (u64, u64)) -> Result<(), ApiError> {
    match file_identity(path) {
        Ok(identity) if identity == opened => Ok(()),
        Ok(_) => Err(ApiError::Internal(format!(
            "{} was replaced since the service opened it: restart the service",
            path.display()
        ))),
        Err(e) => Err(ApiError::Internal(format!(
            "{} is gone ({e}): the service writes into a deleted file; restore it from a backup and restart",
            path.display()
        ))),
    }
}

async fn record_digest(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    env: &EnvironmentRow,
    digest: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO environment_digests
           (environment_id, digest, lock_hash, created_at, lock, packages, seq)
         VALUES ($1, $2, $3, $4, $5, $6,
           (SELECT COALESCE(MAX(seq), 0) + 1 FROM environment_digests))
         ON CONFLICT DO NOTHING",
    )
    .bind(&env.id)
    .bind(digest)
    .bind(&env.lock_hash)
    .bind(now())
    .bind(&env.lock)
    .bind(env.packages)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
