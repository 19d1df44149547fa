//! What a new version of the service does to the rows an older one left.

use std::path::Path;

use trousse_builder::{BuildKey, EnvSpec, Lock, SettingsRecord};

use crate::{config::ServiceConfig, domain::COMPRESSION, error::ApiError, store::Store};

/// Gives builds stored before their settings were (format 2) the settings of
/// their environment, resolved with today's defaults as those builds were,
/// and the build key those settings make now. Published images, exam images
/// among them, are not touched: only the key that finds them changes.
pub(crate) async fn store_build_settings(
    store: &Store,
    config: &ServiceConfig,
) -> Result<(), ApiError> {
    let builds = store.builds_without_settings().await?;
    for (id, spec, lock_text) in &builds {
        if let Err(e) = upgrade_build(store, config, id, spec.as_deref(), lock_text).await {
            // the build then fails with this cause if it ever runs again
            tracing::warn!(build = %id, "cannot resolve the settings of an older build: {e}");
        }
    }
    if !builds.is_empty() {
        tracing::info!(
            builds = builds.len(),
            "stored the settings and new keys of older builds"
        );
    }
    Ok(())
}

/// Takes, once per data directory, the credentials older versions stored with URLs (a channel or an
/// explicit list's `user:password@`) out of every stored row and cache
/// record. Images built before keep them: rebuild those environments.
pub(crate) async fn scrub_credentials(
    store: &Store,
    config: &ServiceConfig,
) -> Result<(), ApiError> {
    // once per data directory: this version writes no credentials, and the
    // walk reads every small file of the cache
    let done = config.data_dir.join(CREDENTIALS_SCRUBBED);
    if done.exists() {
        return Ok(());
    }
    let scrub = |text: &str| match trousse_builder::net::credentials::scrub(text) {
        std::borrow::Cow::Owned(clean) => Some(clean),
        std::borrow::Cow::Borrowed(_) => None,
    };
    let locks = store.scrub_urls(scrub).await?;
    for id in &locks {
        let Some(env) = store.environment(id).await? else {
            continue;
        };
        let hash = Lock::from_text(&env.lock, Path::new("environment.lock"))
            .map(|lock| lock.hash())
            .unwrap_or_else(|_| env.lock_hash.clone());
        store.set_lock_hash(id, &hash).await?;
    }
    let cache = config.cache_dir();
    let records =
        tokio::task::spawn_blocking(move || trousse_builder::net::credentials::scrub_cache(&cache))
            .await
            .map_err(|e| ApiError::Internal(format!("scrubbing the cache: {e}")))?;
    if !locks.is_empty() || records > 0 {
        tracing::warn!(
            locks = locks.len(),
            cache_records = records,
            "took credentials out of stored URLs; images built before keep them: rebuild those"
        );
    }
    std::fs::write(&done, "")
        .map_err(|e| ApiError::Internal(format!("cannot write {}: {e}", done.display())))
}

/// The file that says a data directory's stored credentials were scrubbed.
pub(crate) const CREDENTIALS_SCRUBBED: &str = "credentials-scrubbed";

async fn upgrade_build(
    store: &Store,
    config: &ServiceConfig,
    id: &str,
    spec: Option<&str>,
    lock_text: &str,
) -> Result<(), ApiError> {
    let lock = Lock::from_text(lock_text, Path::new("environment.lock"))?;
    let settings = match spec {
        Some(spec) => {
            EnvSpec::from_yaml(
                spec,
                Path::new("spec.yml"),
                Path::new("/nonexistent"),
                &config.defaults,
            )
            .map_err(trousse_builder::BuildError::from)?
            .image
        }
        None => {
            let mut settings = config.defaults.clone();
            settings.platforms = lock.platforms.iter().map(|p| p.platform).collect();
            settings
        }
    };
    let key = BuildKey::new(&lock.hash(), &settings, COMPRESSION);
    let record = serde_json::to_string(&SettingsRecord::from(&settings))
        .map_err(|e| ApiError::Internal(format!("storing the settings: {e}")))?;
    store.set_build_settings(id, key.as_str(), &record).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{now, EnvironmentRow};

    const LOCK: &str = include_str!("../../../../shared/conda-data/locks/rattler-numpy-lock.yml");

    #[tokio::test]
    async fn older_builds_get_their_settings_and_a_current_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&crate::store::Database::Sqlite(dir.path().into()))
            .await
            .unwrap();
        let config = ServiceConfig::new(dir.path().to_path_buf(), "localhost".into());
        let env = EnvironmentRow {
            id: "e1".into(),
            course: "c".into(),
            name: "n".into(),
            exam: true,
            current: true,
            request_hash: "r".into(),
            spec: None,
            source: None,
            lock: LOCK.into(),
            lock_hash: "h".into(),
            packages: 1,
            status: crate::domain::Status::Ready,
            error: None,
            digest: Some("sha256:00".into()),
            bytes: None,
            build_id: Some("b1".into()),
            created_at: now(),
            updated_at: now(),
        };
        store.insert_environment(&env, None).await.unwrap();
        // a row as format 2 left it: an old key, no settings
        sqlx::query(
            "INSERT INTO builds (id, environment_id, build_key, status, attempts, created_at, updated_at)
             VALUES ('b1', 'e1', 'old-key', 'ready', 1, 0, 0)",
        )
        .execute(store.pool())
        .await
        .unwrap();

        store_build_settings(&store, &config).await.unwrap();

        let build = store.build("b1").await.unwrap().unwrap();
        let record: SettingsRecord = serde_json::from_str(&build.settings.unwrap()).unwrap();
        let settings = trousse_builder::ImageSettings::try_from(record).unwrap();
        let lock = Lock::from_text(LOCK, Path::new("x")).unwrap();
        let key = BuildKey::new(&lock.hash(), &settings, COMPRESSION);
        let found = store.ready_with_build_key(key.as_str()).await.unwrap();
        assert_eq!(found.map(|e| e.digest), Some(Some("sha256:00".into())));
        assert!(store.builds_without_settings().await.unwrap().is_empty());
    }
}
