//! The `environments` table (and `environment_digests`): what each course offers, and where its build stands.

use super::{now, record_digest, Status, Store};
use crate::domain::decision::Known;
use crate::error::ApiError;

/// A version an environment had: what a roll-back restores.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Version {
    /// The image's digest.
    pub(crate) digest: String,
    /// The lock it was built from.
    #[serde(skip)]
    pub(crate) lock: String,
    /// The lock's hash.
    pub(crate) lock_hash: String,
    /// Its packages.
    pub(crate) packages: i64,
    /// When it was built (seconds since the epoch).
    pub(crate) created_at: i64,
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
    #[sqlx(try_from = "super::Flag")]
    pub exam: bool,
    /// Whether it is what the course's name means now.
    #[sqlx(try_from = "super::Flag")]
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

impl EnvironmentRow {
    /// What a decision reads of the row.
    pub fn known(&self) -> Known<'_> {
        Known {
            id: &self.id,
            exam: self.exam,
            status: self.status,
            request_hash: &self.request_hash,
            digest: self.digest.as_deref(),
            bytes: self.bytes,
            build_id: self.build_id.as_deref(),
        }
    }
}

impl Store {
    /// An environment by id.
    pub async fn environment(&self, id: &str) -> Result<Option<EnvironmentRow>, ApiError> {
        Ok(
            sqlx::query_as::<_, EnvironmentRow>("SELECT * FROM environments WHERE id = $1")
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
            "SELECT * FROM environments WHERE course = $1 AND name = $2 AND current = 1",
        )
        .bind(course)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// The environments of a course, newest first.
    pub async fn course_environments(&self, course: &str) -> Result<Vec<EnvironmentRow>, ApiError> {
        Ok(sqlx::query_as::<_, EnvironmentRow>(
            "SELECT * FROM environments WHERE course = $1 ORDER BY created_at DESC, id",
        )
        .bind(course)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Refuses (a conflict: decide again) a row that joins a build which ended
    /// since it was read: its end updated the rows waiting then, not this one.
    /// PostgreSQL holds the build's row until the transaction ends.
    async fn still_unfinished(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        env: &EnvironmentRow,
    ) -> Result<(), ApiError> {
        let (Some(joined), Status::Queued | Status::Building) = (&env.build_id, env.status) else {
            return Ok(());
        };
        let hold = if self.is_shared() { " FOR SHARE" } else { "" };
        let status: Option<Status> =
            sqlx::query_scalar(&format!("SELECT status FROM builds WHERE id = $1{hold}"))
                .bind(joined)
                .fetch_optional(&mut **tx)
                .await?;
        match status {
            // a build written after its row (the tests) is not one that ended
            None | Some(Status::Queued | Status::Building) => Ok(()),
            _ => Err(ApiError::Conflict(format!(
                "the build {} of course '{}' joined has just ended: decide again",
                env.name, env.course
            ))),
        }
    }

    /// Deletes an environment, its versions, and the builds and events only it
    /// had; a build it asked for first that others share is left to them.
    pub(crate) async fn delete_environment(&self, id: &str) -> Result<(), ApiError> {
        let mut tx = self.begin_write().await?;
        // held (and checked) first: a submission queueing a build meanwhile wins, and this waits
        let idle = sqlx::query(
            "UPDATE environments SET updated_at = updated_at
             WHERE id = $1 AND status NOT IN ('queued', 'building')",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if idle.rows_affected() != 1 {
            return Err(ApiError::Conflict(
                "the environment is building (or gone): cancel its build first".into(),
            ));
        }
        sqlx::query(
            "UPDATE builds SET environment_id = (SELECT e.id FROM environments e
                 WHERE e.build_id = builds.id AND e.id <> $1 ORDER BY e.id LIMIT 1)
             WHERE environment_id = $1 AND EXISTS (SELECT 1 FROM environments e
                 WHERE e.build_id = builds.id AND e.id <> $1)",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        for sql in [
            "DELETE FROM build_events WHERE build_id IN (SELECT id FROM builds WHERE environment_id = $1)",
            "DELETE FROM builds WHERE environment_id = $1",
            "DELETE FROM environment_digests WHERE environment_id = $1",
            "DELETE FROM environments WHERE id = $1",
        ] {
            sqlx::query(sql).bind(id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// What a course uses: its current environments, and their image bytes together.
    pub(crate) async fn course_usage(&self, course: &str) -> Result<(i64, i64), ApiError> {
        Ok(sqlx::query_as(
            "SELECT COUNT(*), CAST(COALESCE(SUM(bytes), 0) AS BIGINT) FROM environments
             WHERE course = $1 AND current = 1",
        )
        .bind(course)
        .fetch_one(&self.pool)
        .await?)
    }

    /// Every course that has environments, by name.
    pub(crate) async fn courses(&self) -> Result<Vec<String>, ApiError> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT course FROM environments ORDER BY course LIMIT 10000",
        )
        .fetch_all(&self.pool)
        .await?)
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
             WHERE b.build_key = $1 AND b.status = 'ready' AND e.status = 'ready' LIMIT 1",
        )
        .bind(build_key)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// The digests an environment has had, oldest first.
    pub async fn digests(&self, environment_id: &str) -> Result<Vec<String>, ApiError> {
        Ok(sqlx::query_scalar(
            "SELECT digest FROM environment_digests WHERE environment_id = $1 ORDER BY created_at, digest",
        )
        .bind(environment_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The versions of an environment that can be restored, newest first.
    pub(crate) async fn versions(&self, environment_id: &str) -> Result<Vec<Version>, ApiError> {
        Ok(sqlx::query_as(
            "SELECT digest, lock, lock_hash, COALESCE(packages, 0) AS packages, created_at
             FROM environment_digests
             WHERE environment_id = $1 AND lock IS NOT NULL ORDER BY created_at DESC, seq DESC",
        )
        .bind(environment_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Points a course environment back at one of its earlier versions (ready, as built then).
    pub(crate) async fn restore_version(
        &self,
        env: &EnvironmentRow,
        version: &Version,
    ) -> Result<(), ApiError> {
        sqlx::query(
            "UPDATE environments SET digest = $1, lock = $2, lock_hash = $3, packages = $4, status = $5,
               error = NULL, bytes = NULL, request_hash = $6, updated_at = $7 WHERE id = $8",
        )
        .bind(&version.digest)
        .bind(&version.lock)
        .bind(&version.lock_hash)
        .bind(version.packages)
        .bind(Status::Ready)
        .bind(format!("restored:{}", version.digest))
        .bind(now())
        .bind(&env.id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Makes an environment the current one of its name (the one current before stops being so),
    /// or, `current` false, the current one of none (archived).
    pub(crate) async fn set_current(
        &self,
        env: &EnvironmentRow,
        current: bool,
    ) -> Result<(), ApiError> {
        let mut tx = self.begin_write().await?;
        if current {
            sqlx::query(
                "UPDATE environments SET current = 0, updated_at = $1
                 WHERE course = $2 AND name = $3 AND id <> $4 AND current = 1",
            )
            .bind(now())
            .bind(&env.course)
            .bind(&env.name)
            .bind(&env.id)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("UPDATE environments SET current = $1, updated_at = $2 WHERE id = $3")
            .bind(i64::from(current))
            .bind(now())
            .bind(&env.id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Saves a new environment; `replaces` stops being current in the same transaction.
    pub async fn insert_environment(
        &self,
        env: &EnvironmentRow,
        replaces: Option<&str>,
    ) -> Result<(), ApiError> {
        self.save_environment(env, RowWrite::Insert { replaces }, None)
            .await
    }

    /// Points an existing environment at a new request, lock and build (a course update).
    pub async fn update_environment(&self, env: &EnvironmentRow) -> Result<(), ApiError> {
        self.save_environment(env, RowWrite::Update { was: None }, None)
            .await
    }

    /// Writes an environment's row and the new build it waits on, if any, in
    /// one transaction. When another submission (on any replica) made the
    /// environment's current row or an unfinished build of the same key first,
    /// nothing is written and the answer is a conflict: decide again.
    pub(crate) async fn save_environment(
        &self,
        env: &EnvironmentRow,
        row: RowWrite<'_>,
        build: Option<NewBuild<'_>>,
    ) -> Result<(), ApiError> {
        let mut tx = self.begin_write().await?;
        if build.is_none() {
            self.still_unfinished(&mut tx, env).await?;
        }
        let written = async {
            let changed = match row {
                RowWrite::Insert { replaces } => {
                    insert_row(&mut tx, env, replaces).await?;
                    true
                }
                RowWrite::Update { was } => update_row(&mut tx, env, was).await?,
            };
            if !changed {
                return Ok(false);
            }
            if let Some(build) = build {
                super::builds::insert_build_row(&mut tx, &env.id, &build).await?;
            }
            if let Some(digest) = &env.digest {
                record_digest(&mut tx, env, digest).await?;
            }
            Ok::<_, sqlx::Error>(true)
        }
        .await;
        match written {
            Ok(true) => Ok(tx.commit().await?),
            // the row changed since it was read (its build ended, another replica wrote)
            Ok(false) => Err(ApiError::Conflict(format!(
                "the environment '{}' of course '{}' changed while this request was decided: send it again",
                env.name, env.course
            ))),
            Err(e)
                if e.as_database_error()
                    .is_some_and(|d| d.kind() == sqlx::error::ErrorKind::UniqueViolation) =>
            {
                Err(ApiError::Conflict(format!(
                    "the environment '{}' of course '{}' was changed by another request at the same time: send it again",
                    env.name, env.course
                )))
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// How a row is written: new (replacing the current one of its name), or over itself.
#[derive(Debug, Clone, Copy)]
pub(crate) enum RowWrite<'a> {
    /// A new row; `replaces` stops being current.
    Insert {
        /// The row current until now.
        replaces: Option<&'a str>,
    },
    /// The same row, changed — only if it still has the request hash and
    /// status it was read with, when given.
    Update {
        /// (request hash, status) as read.
        was: Option<(&'a str, Status)>,
    },
}

/// A build to queue with the row that waits on it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NewBuild<'a> {
    /// Its id.
    pub(crate) id: &'a str,
    /// Its build key (one unfinished build per key).
    pub(crate) key: &'a str,
    /// The image settings it builds (`SettingsRecord` JSON).
    pub(crate) settings: &'a str,
    /// The request that queued it, for its logs.
    pub(crate) request_id: Option<&'a str>,
}

async fn insert_row(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    env: &EnvironmentRow,
    replaces: Option<&str>,
) -> Result<(), sqlx::Error> {
    if let Some(old) = replaces {
        sqlx::query("UPDATE environments SET current = 0, updated_at = $1 WHERE id = $2")
            .bind(now())
            .bind(old)
            .execute(&mut **tx)
            .await?;
    }
    let query = sqlx::query(
        "INSERT INTO environments (id, course, name, exam, current, request_hash, spec, source,
           lock, lock_hash, packages, status, error, digest, bytes, build_id, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)",
    )
    .bind(&env.id)
    .bind(&env.course)
    .bind(&env.name)
    .bind(i64::from(env.exam))
    .bind(i64::from(env.current));
    bind_contents(query, env)
        .bind(env.created_at)
        .bind(env.updated_at)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Binds what a build decides of an environment, in the order both writes name
/// it: `request_hash, spec, source, lock, lock_hash, packages, status, error,
/// digest, bytes, build_id`.
fn bind_contents<'q>(
    query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    env: &'q EnvironmentRow,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    query
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
}

async fn update_row(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    env: &EnvironmentRow,
    was: Option<(&str, Status)>,
) -> Result<bool, sqlx::Error> {
    let unchanged = if was.is_some() {
        " AND request_hash = $14 AND status = $15"
    } else {
        ""
    };
    let sql = format!(
        "UPDATE environments SET request_hash = $1, spec = $2, source = $3, lock = $4, lock_hash = $5,
           packages = $6, status = $7, error = $8, digest = $9, bytes = $10, build_id = $11, updated_at = $12
         WHERE id = $13{unchanged}"
    );
    let mut query = bind_contents(sqlx::query(&sql), env)
        .bind(now())
        .bind(&env.id);
    if let Some((request_hash, status)) = was {
        query = query.bind(request_hash).bind(status);
    }
    Ok(query.execute(&mut **tx).await?.rows_affected() == 1)
}
