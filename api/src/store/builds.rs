//! The `builds` table: one row per build, queued, running or finished.

use super::{environments::NewBuild, now, record_digest, EnvironmentRow, Status, Store};
use crate::error::ApiError;

/// A build claimed by a service: its id, and which start this is (1 for the first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The build's id.
    pub id: String,
    /// How often it was started, this time included.
    pub attempts: i64,
    /// The request that queued it.
    pub request_id: Option<String>,
    /// Who holds it (`INSTANCE/SLOT`): renewals, events and its end must come from it.
    pub owner: String,
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
    /// Why it failed (or was cancelled).
    pub error: Option<String>,
}

/// What a cancellation stopped.
#[derive(Debug, Clone)]
pub(crate) struct Cancelled {
    /// The environments that waited on the build, now failed.
    pub(crate) environments: Vec<EnvironmentRow>,
    /// Whether a service was building it (it writes the build's last event).
    pub(crate) was_running: bool,
}

impl Store {
    /// An unfinished build with this key, to share.
    pub async fn unfinished_build(&self, build_key: &str) -> Result<Option<String>, ApiError> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM builds WHERE build_key = $1 AND status IN ('queued', 'building') LIMIT 1",
        )
        .bind(build_key)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Saves a new build.
    pub async fn insert_build(
        &self,
        id: &str,
        environment_id: &str,
        build_key: &str,
        settings: &str,
    ) -> Result<(), ApiError> {
        let mut tx = self.begin_write().await?;
        let build = NewBuild {
            id,
            key: build_key,
            settings,
            request_id: None,
        };
        insert_build_row(&mut tx, environment_id, &build).await?;
        tx.commit().await?;
        Ok(())
    }

    /// A build by id.
    pub async fn build(&self, id: &str) -> Result<Option<BuildRow>, ApiError> {
        Ok(sqlx::query_as::<_, BuildRow>(
            "SELECT id, environment_id, status, attempts, settings, error FROM builds WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
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

    /// Takes the oldest build that waits, or whose claimer's lease ran out, for
    /// `owner` until `lease` seconds from now; marks it (and the environments
    /// waiting on it) as building. Several services claim from one PostgreSQL
    /// without waiting on each other (`SKIP LOCKED`).
    pub async fn claim_build(&self, owner: &str, lease: i64) -> Result<Option<Claim>, ApiError> {
        let skip_locked = if self.is_shared() {
            " FOR UPDATE SKIP LOCKED"
        } else {
            ""
        };
        let mut tx = self.begin_write().await?;
        let claimed: Option<(String, i64, Option<String>)> = sqlx::query_as(&format!(
            "UPDATE builds SET status = 'building', attempts = attempts + 1, lease_owner = $1,
               lease_expires = $2, updated_at = $3
             WHERE id = (SELECT id FROM builds
               WHERE status = 'queued'
                  OR (status = 'building' AND (lease_expires IS NULL OR lease_expires < $3))
               ORDER BY created_at, id LIMIT 1{skip_locked})
             RETURNING id, attempts, request_id"
        ))
        .bind(owner)
        .bind(now() + lease)
        .bind(now())
        .fetch_optional(&mut *tx)
        .await?;
        let Some((id, attempts, request_id)) = claimed else {
            return Ok(None);
        };
        sqlx::query(
            "UPDATE environments SET status = 'building', updated_at = $1 WHERE build_id = $2",
        )
        .bind(now())
        .bind(&id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(Claim {
            id,
            attempts,
            request_id,
            owner: owner.to_string(),
        }))
    }

    /// Fails an unfinished build with `reason`, and the environments that wait
    /// on it; `None` when it had ended already. A service building it learns
    /// it at its next lease renewal, stops, and writes the last event.
    pub(crate) async fn cancel_build(
        &self,
        build_id: &str,
        reason: &str,
        may_cancel: impl Fn(&str) -> bool,
    ) -> Result<Option<Cancelled>, ApiError> {
        let mut tx = self.begin_write().await?;
        let status: Option<Status> = sqlx::query_scalar("SELECT status FROM builds WHERE id = $1")
            .bind(build_id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(status @ (Status::Queued | Status::Building)) = status else {
            return Ok(None);
        };
        // in the transaction: an environment of another course joining meanwhile is seen
        refuse_other_courses(&mut tx, build_id, may_cancel).await?;
        // written only if no claimer changed it since it was read
        let done = sqlx::query(
            "UPDATE builds SET status = 'failed', error = $1, lease_expires = NULL, updated_at = $2
             WHERE id = $3 AND status = $4",
        )
        .bind(reason)
        .bind(now())
        .bind(build_id)
        .bind(status)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Err(ApiError::Conflict(
                "the build changed while it was cancelled: try again".into(),
            ));
        }
        sqlx::query(
            "UPDATE environments SET status = 'failed', error = $1, updated_at = $2 WHERE build_id = $3",
        )
        .bind(reason)
        .bind(now())
        .bind(build_id)
        .execute(&mut *tx)
        .await?;
        let environments =
            sqlx::query_as::<_, EnvironmentRow>("SELECT * FROM environments WHERE build_id = $1")
                .bind(build_id)
                .fetch_all(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(Some(Cancelled {
            environments,
            was_running: status == Status::Building,
        }))
    }

    /// Extends `owner`'s lease on a build; false when the lease was lost (another took the build).
    pub async fn renew_lease(&self, id: &str, owner: &str, lease: i64) -> Result<bool, ApiError> {
        let done = sqlx::query(
            "UPDATE builds SET lease_expires = $1
             WHERE id = $2 AND lease_owner = $3 AND status = 'building'",
        )
        .bind(now() + lease)
        .bind(id)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Lets go of the builds an instance's claimers (`INSTANCE/SLOT`) held when
    /// it stopped: they can be claimed at once.
    pub async fn release_leases(&self, instance: &str) -> Result<u64, ApiError> {
        let done = sqlx::query(
            "UPDATE builds SET lease_expires = NULL
             WHERE (lease_owner = $1 OR lease_owner LIKE $2) AND status = 'building'",
        )
        .bind(instance)
        .bind(format!("{instance}/%"))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Ends a build `owner` holds and the environments waiting on it; `None`
    /// (nothing written) when its lease was lost to another claimer.
    pub async fn finish_build(
        &self,
        id: &str,
        owner: &str,
        outcome: Result<(&str, i64), &str>,
        seconds: f64,
    ) -> Result<Option<Vec<EnvironmentRow>>, ApiError> {
        let mut tx = self.begin_write().await?;
        let (status, digest, bytes, error) = match outcome {
            Ok((digest, bytes)) => (Status::Ready, Some(digest), Some(bytes), None),
            Err(error) => (Status::Failed, None, None, Some(error)),
        };
        let done = sqlx::query(
            "UPDATE builds SET status = $1, digest = $2, error = $3, seconds = $4, updated_at = $5,
               lease_expires = NULL
             WHERE id = $6 AND lease_owner = $7 AND status = 'building'",
        )
        .bind(status)
        .bind(digest)
        .bind(error)
        .bind(seconds)
        .bind(now())
        .bind(id)
        .bind(owner)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(None);
        }
        sqlx::query(
            "UPDATE environments SET status = $1, digest = $2, bytes = $3, error = $4, updated_at = $5
             WHERE build_id = $6",
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
            sqlx::query_as::<_, EnvironmentRow>("SELECT * FROM environments WHERE build_id = $1")
                .bind(id)
                .fetch_all(&mut *tx)
                .await?;
        if let Some(digest) = digest {
            for env in &envs {
                record_digest(&mut tx, env, digest).await?;
            }
        }
        tx.commit().await?;
        Ok(Some(envs))
    }
}

/// Refuses a cancellation when a course `may_cancel` refuses waits on the build.
async fn refuse_other_courses(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    build_id: &str,
    may_cancel: impl Fn(&str) -> bool,
) -> Result<(), ApiError> {
    let courses: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT course FROM environments WHERE build_id = $1")
            .bind(build_id)
            .fetch_all(&mut **tx)
            .await?;
    match courses.iter().find(|c| !may_cancel(c)) {
        Some(course) => Err(ApiError::Forbidden(format!(
            "this build is shared with an environment of course '{course}': only someone \
             who manages every course waiting on it cancels it"
        ))),
        None => Ok(()),
    }
}

/// Queues a build in a transaction.
pub(super) async fn insert_build_row(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    environment_id: &str,
    build: &NewBuild<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO builds (id, environment_id, build_key, settings, status, attempts, created_at,
           updated_at, request_id)
         VALUES ($1, $2, $3, $4, 'queued', 0, $5, $6, $7)",
    )
    .bind(build.id)
    .bind(environment_id)
    .bind(build.key)
    .bind(build.settings)
    .bind(now())
    .bind(now())
    .bind(build.request_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
