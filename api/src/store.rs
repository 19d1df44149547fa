//! The service's state in SQLite: environments, builds and their events, the
//! tags and blobs the pull endpoint serves, and token hashes.

use std::{path::Path, str::FromStr, time::Duration};

use sqlx::{
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
    SqlitePool,
};

use crate::{auth::Role, error::ApiError};

/// Where an environment's build stands.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    sqlx::Type,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "TEXT", rename_all = "lowercase")]
pub enum Status {
    /// Waiting for a build slot.
    Queued,
    /// Being built.
    Building,
    /// Built: its image can be pulled.
    Ready,
    /// The build failed; `error` says why.
    Failed,
}

impl Status {
    /// The name stored and shown.
    pub fn name(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Building => "building",
            Status::Ready => "ready",
            Status::Failed => "failed",
        }
    }

    /// Whether nothing more will happen to it.
    pub fn is_final(self) -> bool {
        matches!(self, Status::Ready | Status::Failed)
    }
}

/// An environment as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EnvironmentRow {
    /// Its id.
    pub id: String,
    /// The course.
    pub course: String,
    /// Its name within the course.
    pub name: String,
    /// Whether it is an exam environment (frozen once ready).
    pub exam: bool,
    /// Whether it is what the course's name means now.
    pub current: bool,
    /// The hash of the request that made it.
    pub request_hash: String,
    /// The spec it was made from, if any.
    pub spec: Option<String>,
    /// The repository it was made from (JSON source record), if any.
    pub source: Option<String>,
    /// Its lock file.
    pub lock: String,
    /// The lock's sha256.
    pub lock_hash: String,
    /// How many packages the lock holds.
    pub packages: i64,
    /// Its status name.
    pub status: Status,
    /// Why its build failed.
    pub error: Option<String>,
    /// Its image digest, once ready.
    pub digest: Option<String>,
    /// The image's total layer bytes, once ready.
    pub bytes: Option<i64>,
    /// The build that makes it.
    pub build_id: Option<String>,
    /// Creation time, seconds since the epoch.
    pub created_at: i64,
    /// Last change, seconds since the epoch.
    pub updated_at: i64,
}

/// A build as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BuildRow {
    /// Its id.
    pub id: String,
    /// The environment that asked for it first.
    pub environment_id: String,
    /// Its status name.
    pub status: Status,
    /// How often it was started.
    pub attempts: i64,
    /// The image settings it builds (`SettingsRecord` JSON).
    pub settings: Option<String>,
}

/// A stored token.
#[derive(Debug, Clone)]
pub struct TokenRecord {
    /// The role.
    pub role: Role,
    /// The courses granted (teachers).
    pub courses: Vec<String>,
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
pub fn now() -> i64 {
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

    /// The builds stored before their settings were (`id`, environment's spec, lock).
    pub async fn builds_without_settings(
        &self,
    ) -> Result<Vec<(String, Option<String>, String)>, ApiError> {
        Ok(sqlx::query_as::<_, (String, Option<String>, String)>(
            "SELECT b.id, e.spec, e.lock FROM builds b JOIN environments e ON e.id = b.environment_id
             WHERE b.settings IS NULL",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Gives an older build its settings and the key they make now.
    pub async fn set_build_settings(
        &self,
        id: &str,
        build_key: &str,
        settings: &str,
    ) -> Result<(), ApiError> {
        sqlx::query("UPDATE builds SET build_key = ?, settings = ? WHERE id = ?")
            .bind(build_key)
            .bind(settings)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Rewrites every stored text cell that may hold a URL with `scrub`'s
    /// answer where it has one; the ids of environments whose lock changed.
    pub async fn scrub_urls(
        &self,
        scrub: impl Fn(&str) -> Option<String>,
    ) -> Result<Vec<String>, ApiError> {
        const CELLS: [(&str, &str); 7] = [
            ("environments", "spec"),
            ("environments", "lock"),
            ("environments", "source"),
            ("environments", "error"),
            ("builds", "error"),
            ("builds", "settings"),
            ("build_events", "data"),
        ];
        let mut locks = Vec::new();
        for (table, column) in CELLS {
            let rows: Vec<(i64, String)> = sqlx::query_as(&format!(
                "SELECT rowid, {column} FROM {table} WHERE {column} LIKE '%://%@%'"
            ))
            .fetch_all(&self.pool)
            .await?;
            for (rowid, text) in rows {
                let Some(clean) = scrub(&text) else { continue };
                sqlx::query(&format!("UPDATE {table} SET {column} = ? WHERE rowid = ?"))
                    .bind(&clean)
                    .bind(rowid)
                    .execute(&self.pool)
                    .await?;
                if (table, column) == ("environments", "lock") {
                    let id: String =
                        sqlx::query_scalar("SELECT id FROM environments WHERE rowid = ?")
                            .bind(rowid)
                            .fetch_one(&self.pool)
                            .await?;
                    locks.push(id);
                }
            }
        }
        Ok(locks)
    }

    /// Sets an environment's lock hash (after its lock was scrubbed).
    pub async fn set_lock_hash(&self, id: &str, lock_hash: &str) -> Result<(), ApiError> {
        sqlx::query("UPDATE environments SET lock_hash = ? WHERE id = ?")
            .bind(lock_hash)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Stores a token's hash.
    pub async fn add_token(
        &self,
        hash: &str,
        role: Role,
        courses: &[String],
        description: Option<&str>,
    ) -> Result<(), ApiError> {
        sqlx::query(
            "INSERT INTO tokens (hash, role, courses, description, created_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(hash)
        .bind(role.name())
        .bind(serde_json::to_string(courses).unwrap_or_default())
        .bind(description)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The token with this hash.
    pub async fn token(&self, hash: &str) -> Result<Option<TokenRecord>, ApiError> {
        let row: Option<(String, String)> =
            sqlx::query_as("SELECT role, courses FROM tokens WHERE hash = ?")
                .bind(hash)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.and_then(|(role, courses)| {
            Some(TokenRecord {
                role: role.parse().ok()?,
                courses: serde_json::from_str(&courses).unwrap_or_default(),
            })
        }))
    }

    /// An environment by id.
    pub async fn environment(&self, id: &str) -> Result<Option<EnvironmentRow>, ApiError> {
        Ok(
            sqlx::query_as::<_, EnvironmentRow>("SELECT * FROM environments WHERE id = ?")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// The environment a course's name means now.
    pub async fn current_environment(
        &self,
        course: &str,
        name: &str,
    ) -> Result<Option<EnvironmentRow>, ApiError> {
        Ok(sqlx::query_as::<_, EnvironmentRow>(
            "SELECT * FROM environments WHERE course = ? AND name = ? AND current = 1",
        )
        .bind(course)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// The environments of a course, newest first.
    pub async fn course_environments(&self, course: &str) -> Result<Vec<EnvironmentRow>, ApiError> {
        Ok(sqlx::query_as::<_, EnvironmentRow>(
            "SELECT * FROM environments WHERE course = ? ORDER BY created_at DESC, id",
        )
        .bind(course)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Sets (or replaces) a course's git deploy token.
    pub async fn set_git_token(&self, course: &str, token: &str) -> Result<(), ApiError> {
        sqlx::query(
            "INSERT INTO course_git_tokens (course, token, updated_at) VALUES (?, ?, ?)
             ON CONFLICT (course) DO UPDATE SET token = excluded.token, updated_at = excluded.updated_at",
        )
        .bind(course)
        .bind(token)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Removes a course's git deploy token; whether it had one.
    pub async fn delete_git_token(&self, course: &str) -> Result<bool, ApiError> {
        let done = sqlx::query("DELETE FROM course_git_tokens WHERE course = ?")
            .bind(course)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// A course's git deploy token, for the fetch that needs it (never for an answer).
    pub async fn git_token(&self, course: &str) -> Result<Option<String>, ApiError> {
        Ok(
            sqlx::query_scalar("SELECT token FROM course_git_tokens WHERE course = ?")
                .bind(course)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Sets (or replaces) a course's push webhook secret.
    pub async fn set_webhook_secret(&self, course: &str, secret: &str) -> Result<(), ApiError> {
        sqlx::query(
            "INSERT INTO course_webhook_secrets (course, secret, updated_at) VALUES (?, ?, ?)
             ON CONFLICT (course) DO UPDATE SET secret = excluded.secret, updated_at = excluded.updated_at",
        )
        .bind(course)
        .bind(secret)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Removes a course's push webhook secret; whether it had one.
    pub async fn delete_webhook_secret(&self, course: &str) -> Result<bool, ApiError> {
        let done = sqlx::query("DELETE FROM course_webhook_secrets WHERE course = ?")
            .bind(course)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// A course's push webhook secret, if set.
    pub async fn webhook_secret(&self, course: &str) -> Result<Option<String>, ApiError> {
        Ok(
            sqlx::query_scalar("SELECT secret FROM course_webhook_secrets WHERE course = ?")
                .bind(course)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Sets (or replaces) the time window of a course's exam.
    pub async fn set_window(
        &self,
        course: &str,
        name: &str,
        window: crate::exam_windows::Window,
    ) -> Result<(), ApiError> {
        sqlx::query(
            "INSERT INTO exam_windows (course, name, opens, closes, updated_at) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (course, name) DO UPDATE SET opens = excluded.opens,
             closes = excluded.closes, updated_at = excluded.updated_at",
        )
        .bind(course)
        .bind(name)
        .bind(window.opens)
        .bind(window.closes)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Removes the time window of a course's exam; whether it had one.
    pub async fn delete_window(&self, course: &str, name: &str) -> Result<bool, ApiError> {
        let done = sqlx::query("DELETE FROM exam_windows WHERE course = ? AND name = ?")
            .bind(course)
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The time window of a course's exam, if it has one.
    pub async fn window(
        &self,
        course: &str,
        name: &str,
    ) -> Result<Option<crate::exam_windows::Window>, ApiError> {
        let row: Option<(Option<i64>, Option<i64>)> =
            sqlx::query_as("SELECT opens, closes FROM exam_windows WHERE course = ? AND name = ?")
                .bind(course)
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(opens, closes)| crate::exam_windows::Window { opens, closes }))
    }

    /// The current course (not exam) environments built from a repository: those a push moves.
    pub async fn following_environments(&self) -> Result<Vec<EnvironmentRow>, ApiError> {
        Ok(sqlx::query_as::<_, EnvironmentRow>(
            "SELECT * FROM environments WHERE current = 1 AND exam = 0 AND source IS NOT NULL
             ORDER BY course, name",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// A ready environment whose build has this key, anywhere.
    pub async fn ready_with_build_key(
        &self,
        build_key: &str,
    ) -> Result<Option<EnvironmentRow>, ApiError> {
        Ok(sqlx::query_as::<_, EnvironmentRow>(
            "SELECT e.* FROM environments e JOIN builds b ON b.id = e.build_id
             WHERE b.build_key = ? AND b.status = 'ready' AND e.status = 'ready' LIMIT 1",
        )
        .bind(build_key)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// An unfinished build with this key, to share.
    pub async fn unfinished_build(&self, build_key: &str) -> Result<Option<String>, ApiError> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM builds WHERE build_key = ? AND status IN ('queued', 'building') LIMIT 1",
        )
        .bind(build_key)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// The digests an environment has had, oldest first.
    pub async fn digests(&self, environment_id: &str) -> Result<Vec<String>, ApiError> {
        Ok(sqlx::query_scalar(
            "SELECT digest FROM environment_digests WHERE environment_id = ? ORDER BY created_at, digest",
        )
        .bind(environment_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Saves a new environment; `replaces` stops being current in the same transaction.
    pub async fn insert_environment(
        &self,
        env: &EnvironmentRow,
        replaces: Option<&str>,
    ) -> Result<(), ApiError> {
        let mut tx = self.pool.begin().await?;
        if let Some(old) = replaces {
            sqlx::query("UPDATE environments SET current = 0, updated_at = ? WHERE id = ?")
                .bind(now())
                .bind(old)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "INSERT INTO environments (id, course, name, exam, current, request_hash, spec, source,
               lock, lock_hash, packages, status, error, digest, bytes, build_id, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&env.id)
        .bind(&env.course)
        .bind(&env.name)
        .bind(env.exam)
        .bind(env.current)
        .bind(&env.request_hash)
        .bind(&env.spec)
        .bind(&env.source)
        .bind(&env.lock)
        .bind(&env.lock_hash)
        .bind(env.packages)
        .bind(env.status)
        .bind(&env.error)
        .bind(&env.digest)
        .bind(env.bytes)
        .bind(&env.build_id)
        .bind(env.created_at)
        .bind(env.updated_at)
        .execute(&mut *tx)
        .await?;
        if let Some(digest) = &env.digest {
            record_digest(&mut tx, &env.id, digest, &env.lock_hash).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Points an existing environment at a new request, lock and build (a course update).
    pub async fn update_environment(&self, env: &EnvironmentRow) -> Result<(), ApiError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE environments SET request_hash = ?, spec = ?, source = ?, lock = ?, lock_hash = ?,
               packages = ?, status = ?, error = ?, digest = ?, bytes = ?, build_id = ?, updated_at = ?
             WHERE id = ?",
        )
        .bind(&env.request_hash)
        .bind(&env.spec)
        .bind(&env.source)
        .bind(&env.lock)
        .bind(&env.lock_hash)
        .bind(env.packages)
        .bind(env.status)
        .bind(&env.error)
        .bind(&env.digest)
        .bind(env.bytes)
        .bind(&env.build_id)
        .bind(now())
        .bind(&env.id)
        .execute(&mut *tx)
        .await?;
        if let Some(digest) = &env.digest {
            record_digest(&mut tx, &env.id, digest, &env.lock_hash).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Saves a new build.
    pub async fn insert_build(
        &self,
        id: &str,
        environment_id: &str,
        build_key: &str,
        settings: &str,
    ) -> Result<(), ApiError> {
        sqlx::query(
            "INSERT INTO builds (id, environment_id, build_key, settings, status, attempts, created_at, updated_at)
             VALUES (?, ?, ?, ?, 'queued', 0, ?, ?)",
        )
        .bind(id)
        .bind(environment_id)
        .bind(build_key)
        .bind(settings)
        .bind(now())
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A build by id.
    pub async fn build(&self, id: &str) -> Result<Option<BuildRow>, ApiError> {
        Ok(sqlx::query_as::<_, BuildRow>(
            "SELECT id, environment_id, status, attempts, settings FROM builds WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Builds that were queued or running when the service stopped.
    pub async fn unfinished_builds(&self) -> Result<Vec<String>, ApiError> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM builds WHERE status IN ('queued', 'building') ORDER BY created_at, id",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// How many builds wait or run.
    pub async fn queue_length(&self) -> Result<i64, ApiError> {
        Ok(
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM builds WHERE status IN ('queued', 'building')",
            )
            .fetch_one(&self.pool)
            .await?,
        )
    }

    /// Marks a build (and the environments waiting on it) as started once more.
    pub async fn start_build(&self, id: &str) -> Result<i64, ApiError> {
        let mut tx = self.pool.begin().await?;
        let attempts: i64 = sqlx::query_scalar(
            "UPDATE builds SET status = 'building', attempts = attempts + 1, updated_at = ?
             WHERE id = ? RETURNING attempts",
        )
        .bind(now())
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE environments SET status = 'building', updated_at = ? WHERE build_id = ?",
        )
        .bind(now())
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(attempts)
    }

    /// Ends a build and the environments waiting on it.
    pub async fn finish_build(
        &self,
        id: &str,
        outcome: Result<(&str, i64), &str>,
        seconds: f64,
    ) -> Result<Vec<EnvironmentRow>, ApiError> {
        let mut tx = self.pool.begin().await?;
        let (status, digest, bytes, error) = match outcome {
            Ok((digest, bytes)) => (Status::Ready, Some(digest), Some(bytes), None),
            Err(error) => (Status::Failed, None, None, Some(error)),
        };
        sqlx::query(
            "UPDATE builds SET status = ?, digest = ?, error = ?, seconds = ?, updated_at = ? WHERE id = ?",
        )
        .bind(status)
        .bind(digest)
        .bind(error)
        .bind(seconds)
        .bind(now())
        .bind(id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE environments SET status = ?, digest = ?, bytes = ?, error = ?, updated_at = ?
             WHERE build_id = ?",
        )
        .bind(status)
        .bind(digest)
        .bind(bytes)
        .bind(error)
        .bind(now())
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let envs =
            sqlx::query_as::<_, EnvironmentRow>("SELECT * FROM environments WHERE build_id = ?")
                .bind(id)
                .fetch_all(&mut *tx)
                .await?;
        if let Some(digest) = digest {
            for env in &envs {
                record_digest(&mut tx, &env.id, digest, &env.lock_hash).await?;
            }
        }
        tx.commit().await?;
        Ok(envs)
    }

    /// Appends an event to a build's log.
    pub async fn add_event(&self, build_id: &str, seq: i64, data: &str) -> Result<(), ApiError> {
        sqlx::query("INSERT OR REPLACE INTO build_events (build_id, seq, data) VALUES (?, ?, ?)")
            .bind(build_id)
            .bind(seq)
            .bind(data)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// A build's events after `after`, in order.
    pub async fn events(&self, build_id: &str, after: i64) -> Result<Vec<(i64, String)>, ApiError> {
        Ok(sqlx::query_as(
            "SELECT seq, data FROM build_events WHERE build_id = ? AND seq > ? ORDER BY seq",
        )
        .bind(build_id)
        .bind(after)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The last event number of a build (0 when none).
    pub async fn last_event(&self, build_id: &str) -> Result<i64, ApiError> {
        Ok(sqlx::query_scalar::<_, Option<i64>>(
            "SELECT MAX(seq) FROM build_events WHERE build_id = ?",
        )
        .bind(build_id)
        .fetch_one(&self.pool)
        .await?
        .unwrap_or(0))
    }

    /// Remembers the manifests and blobs of a built image.
    pub async fn record_image(
        &self,
        digest: &str,
        blobs: &[(String, Option<String>)],
    ) -> Result<(), ApiError> {
        let mut tx = self.pool.begin().await?;
        for (blob, media_type) in blobs {
            sqlx::query(
                "INSERT OR IGNORE INTO image_blobs (image_digest, digest, media_type) VALUES (?, ?, ?)",
            )
            .bind(digest)
            .bind(blob)
            .bind(media_type)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Makes a built image servable from `repository`, under the tags given.
    pub async fn publish_image(
        &self,
        repository: &str,
        tags: &[&str],
        digest: &str,
    ) -> Result<(), ApiError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT OR IGNORE INTO repository_blobs (repository, digest, media_type)
             SELECT ?, digest, media_type FROM image_blobs WHERE image_digest = ?",
        )
        .bind(repository)
        .bind(digest)
        .execute(&mut *tx)
        .await?;
        for tag in tags {
            sqlx::query("INSERT OR REPLACE INTO tags (repository, tag, digest) VALUES (?, ?, ?)")
                .bind(repository)
                .bind(tag)
                .bind(digest)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The tags of a repository, sorted.
    pub async fn tags(&self, repository: &str) -> Result<Vec<String>, ApiError> {
        Ok(
            sqlx::query_scalar("SELECT tag FROM tags WHERE repository = ? ORDER BY tag")
                .bind(repository)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Whether the service serves anything from a repository.
    pub async fn repository_exists(&self, repository: &str) -> Result<bool, ApiError> {
        Ok(sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM repository_blobs WHERE repository = ?",
        )
        .bind(repository)
        .fetch_one(&self.pool)
        .await?
            > 0)
    }

    /// The digest a tag points to.
    pub async fn tag(&self, repository: &str, tag: &str) -> Result<Option<String>, ApiError> {
        Ok(
            sqlx::query_scalar("SELECT digest FROM tags WHERE repository = ? AND tag = ?")
                .bind(repository)
                .bind(tag)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Whether `repository` serves the blob or manifest `digest`, with its media type if known.
    pub async fn repository_blob(
        &self,
        repository: &str,
        digest: &str,
    ) -> Result<Option<Option<String>>, ApiError> {
        Ok(sqlx::query_scalar(
            "SELECT media_type FROM repository_blobs WHERE repository = ? AND digest = ?",
        )
        .bind(repository)
        .bind(digest)
        .fetch_optional(&self.pool)
        .await?)
    }
}

async fn record_digest(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    environment_id: &str,
    digest: &str,
    lock_hash: &str,
) -> Result<(), ApiError> {
    sqlx::query(
        "INSERT OR IGNORE INTO environment_digests (environment_id, digest, lock_hash, created_at)
         VALUES (?, ?, ?, ?)",
    )
    .bind(environment_id)
    .bind(digest)
    .bind(lock_hash)
    .bind(now())
    .execute(&mut **tx)
    .await?;
    Ok(())
}
