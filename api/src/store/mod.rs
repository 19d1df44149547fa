//! The service's state in SQLite: environments, builds and their events, the
//! tags and blobs the pull endpoint serves, and token hashes.

use std::{path::Path, str::FromStr, time::Duration};

use sqlx::{
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
    SqlitePool,
};

use crate::error::ApiError;

mod builds;
mod course_settings;
mod environments;
mod events;
mod images;
mod sessions;
mod tokens;
mod traces;
mod upgrades;
mod windows;

#[cfg(test)]
mod tests;

pub(crate) use environments::{EnvironmentRow, Version};
pub(crate) use sessions::{SessionRow, SignInRow};

pub(crate) use crate::domain::Status;

/// A status is stored as its name.
impl sqlx::Type<sqlx::Sqlite> for Status {
    fn type_info() -> sqlx::sqlite::SqliteTypeInfo {
        <str as sqlx::Type<sqlx::Sqlite>>::type_info()
    }

    fn compatible(ty: &sqlx::sqlite::SqliteTypeInfo) -> bool {
        <str as sqlx::Type<sqlx::Sqlite>>::compatible(ty)
    }
}

impl<'q> sqlx::Encode<'q, sqlx::Sqlite> for Status {
    fn encode_by_ref(
        &self,
        buf: &mut <sqlx::Sqlite as sqlx::Database>::ArgumentBuffer<'q>,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        <&str as sqlx::Encode<'q, sqlx::Sqlite>>::encode_by_ref(&self.name(), buf)
    }
}

impl<'r> sqlx::Decode<'r, sqlx::Sqlite> for Status {
    fn decode(value: sqlx::sqlite::SqliteValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        let name = <&str as sqlx::Decode<'r, sqlx::Sqlite>>::decode(value)?;
        Status::from_name(name).ok_or_else(|| format!("unknown status '{name}'").into())
    }
}

/// The SQLite database of a data directory.
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
    /// The database file.
    path: std::path::PathBuf,
    /// Its device and inode when it was opened.
    identity: (u64, u64),
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

impl Store {
    /// Opens (creating and migrating) the database in `data_dir`.
    pub async fn open(data_dir: &Path) -> Result<Self, ApiError> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            ApiError::Internal(format!("cannot create {}: {e}", data_dir.display()))
        })?;
        let path = data_dir.join("trousse.db");
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .map_err(|e| ApiError::Internal(format!("bad database path: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        let migrator = sqlx::migrate!("./migrations");
        if migrator.run(&pool).await.is_err() {
            // another process (a `token create` beside a first `serve`) migrated at the same
            // time: what it applied is now recorded, so a second run finds nothing left to do
            migrator
                .run(&pool)
                .await
                .map_err(|e| ApiError::Internal(format!("migrating {}: {e}", path.display())))?;
        }
        let identity = file_identity(&path)
            .map_err(|e| ApiError::Internal(format!("reading {}: {e}", path.display())))?;
        Ok(Self {
            pool,
            path,
            identity,
        })
    }

    /// The connection pool, for tests that write rows as older versions did.
    #[cfg(test)]
    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Checks that the database file is still the one opened and that it takes writes.
    pub async fn ping(&self) -> Result<(), ApiError> {
        match file_identity(&self.path) {
            Ok(identity) if identity == self.identity => {}
            Ok(_) => {
                return Err(ApiError::Internal(format!(
                    "{} was replaced since the service opened it: restart the service",
                    self.path.display()
                )))
            }
            Err(e) => {
                return Err(ApiError::Internal(format!(
                    "{} is gone ({e}): the service writes into a deleted file; restore it from a backup and restart",
                    self.path.display()
                )))
            }
        }
        // a write lock, taken and let go: fails on a read-only file or directory
        let mut connection = self.pool.acquire().await?;
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut *connection)
            .await?;
        sqlx::query("ROLLBACK").execute(&mut *connection).await?;
        Ok(())
    }
}

async fn record_digest(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    env: &EnvironmentRow,
    digest: &str,
) -> Result<(), ApiError> {
    sqlx::query(
        "INSERT OR IGNORE INTO environment_digests
           (environment_id, digest, lock_hash, created_at, lock, packages)
         VALUES (?, ?, ?, ?, ?, ?)",
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
