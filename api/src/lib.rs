//! The trousse HTTP service: teachers submit environments for their courses,
//! a JupyterHub asks which image to launch, and `/v2/` serves the images.
//!
//! It calls the builder through the same public functions as the CLI.

#![warn(unreachable_pub)]

mod auth;
mod builds;
mod catalog;
pub mod config;
mod data_dir;
mod domain;
mod error;
mod hub;
mod names;
mod operations;
mod page;
mod repo_fetches;
mod request_id;
mod routes;
mod serving;
mod store;
mod traces;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use axum::http::HeaderMap;

use crate::{
    auth::{presented_token, token_hash, Principal},
    builds::BuildQueue,
    config::{RequestPolicy, ServiceConfig},
    error::ApiError,
    routes::distribution::VerifiedBlobs,
    routes::operations::Metrics,
    store::{EnvironmentRow, Store},
};

pub use auth::{registry::RegistryIssuer, Role};
pub use config::ServiceConfig as Config;
pub use data_dir::copy::{copy_data_dir, CopyReport, ImageDestination};
pub use hub::{launch::HubLauncher, tokens::HubAuth};
pub use operations::collect::{self, collect_images};
pub use operations::tokens::{create_token, list_tokens, revoke_token, MadeToken, NewToken};
pub use serving::{serve, serve_worker, tls};
pub use store::TokenInfo;
pub use store::{CopiedRows, Database};

/// Everything a request handler needs.
pub struct AppState {
    /// The settings.
    pub config: ServiceConfig,
    /// What requests may name.
    pub policy: RequestPolicy,
    /// The database.
    pub store: Store,
    /// The builds.
    pub builds: BuildQueue,
    /// The metrics.
    pub metrics: Metrics,
    /// Blobs already checked against their digest.
    pub verified: VerifiedBlobs,
    submissions: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// JupyterHub tokens recently resolved.
    hub_tokens: hub::tokens::HubTokens,
    /// The repository fetches running.
    pub repo_fetches: repo_fetches::RepoFetches,
    /// What the page keeps (the sign-in provider's keys).
    page: page::PageState,
    /// The allowed channels' packages, for search.
    catalog: Arc<catalog::PackageIndex>,
    /// Learning-analytics traces.
    traces: Arc<traces::Traces>,
    /// This service's hold on its data directory.
    _data_dir: data_dir::lock::DataDirLock,
}

impl AppState {
    /// Opens the store and starts again the builds an earlier run left unfinished.
    pub async fn start(config: ServiceConfig) -> Result<Arc<Self>, ApiError> {
        let policy =
            RequestPolicy::new(&config).map_err(|m| ApiError::bad_request("invalid_config", m))?;
        let data_dir = data_dir::lock::DataDirLock::take(&config.data_dir)?;
        let data_dir_instance = &data_dir.instance().to_string();
        let store = Store::open(&config.database).await?;
        data_dir::upgrade::store_build_settings(&store, &config).await?;
        data_dir::upgrade::scrub_credentials(&store, &config).await?;
        let _ = std::fs::remove_dir_all(config.work_dir());
        let traces = traces::Traces::start(config.xapi.clone(), store.clone());
        let state = Arc::new(Self {
            repo_fetches: repo_fetches::RepoFetches::new(
                config.max_repo_fetches,
                config.max_repo_fetches_per_course,
            ),
            builds: BuildQueue::new(
                config.max_builds,
                data_dir.instance().to_string(),
                config.build_lease,
            ),
            config,
            policy,
            store,
            metrics: Metrics::default(),
            verified: VerifiedBlobs::default(),
            submissions: Mutex::new(HashMap::new()),
            hub_tokens: hub::tokens::HubTokens::default(),
            page: page::PageState::default(),
            catalog: Arc::default(),
            traces,
            _data_dir: data_dir,
        });
        if state.config.page.is_some() {
            catalog::keep_fresh(&state.catalog, &state.config, &state.policy);
        }
        // what this service was building when it stopped is taken again at once
        let released = state.store.release_leases(data_dir_instance).await?;
        if released > 0 {
            tracing::info!(builds = released, "taking again the builds left unfinished");
        }
        if state.config.run_builds {
            state.builds.start(&state);
        }
        if state.config.push_to.is_none() {
            operations::collect::every(
                state.store.clone(),
                state.config.data_dir.clone(),
                state.config.gc_interval,
                state.config.keep_versions,
            );
        }
        Ok(state)
    }

    /// The caller's token, checked: 401 without a valid one.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, ApiError> {
        let token = presented_token(headers)?.ok_or_else(|| {
            ApiError::Unauthorized("this needs a token: Authorization: Bearer TOKEN".into())
        })?;
        let hash = token_hash(&token);
        if let Some(record) = self.store.token(&hash).await? {
            return Ok(Principal {
                role: record.role,
                courses: record.courses,
                reads: Vec::new(),
                hub_user: None,
                subject: None,
                token_id: Some(hash[..store::TOKEN_ID_DIGITS].to_string()),
            });
        }
        // not one of trousse's: a JupyterHub user's token, when a hub is configured
        if let Some(hub) = self
            .config
            .hub
            .as_ref()
            .filter(|_| !token.starts_with("trs_"))
        {
            if let Some(principal) = self.hub_tokens.resolve(hub, &token).await? {
                return Ok(principal);
            }
        }
        Err(ApiError::Unauthorized("the token is not valid".into()))
    }

    /// An environment the caller may read: 404 when there is none, 403 when not granted.
    pub async fn readable_environment(
        &self,
        principal: &Principal,
        id: &str,
    ) -> Result<EnvironmentRow, ApiError> {
        let env = self
            .store
            .environment(id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("no environment {id}")))?;
        principal.require_read(&env.course)?;
        Ok(env)
    }

    /// The window of a course's exam that `caller` (`None`: anonymous) may
    /// not see now; `None` when it may (or the name has no window).
    pub async fn sealed_exam(
        &self,
        caller: Option<&Principal>,
        course: &str,
        name: &str,
    ) -> Result<Option<domain::window::Window>, ApiError> {
        let Some(window) = self.store.window(course, name).await? else {
            return Ok(None);
        };
        Ok(domain::window::sealed(caller, course, &window, store::now()).then_some(window))
    }

    /// Counts a solve (a new submission or a preview) of `principal`; a `429`
    /// beyond its rate, which every replica on the store counts together.
    /// Administrators and the hub (the platform's own callers) are not counted.
    pub(crate) async fn charge_submission(&self, principal: &Principal) -> Result<(), ApiError> {
        if matches!(principal.role, Role::Admin | Role::Hub) {
            return Ok(());
        }
        let limit = self.config.max_submissions_per_minute;
        let (count, seconds) = self.store.count_call(&principal.rate_key()).await?;
        if count > limit {
            return Err(ApiError::Busy(format!(
                "at most {limit} submissions a minute from one caller: try again in {seconds} s"
            )));
        }
        Ok(())
    }

    /// The lock that orders submissions for one environment.
    fn submission_slot(&self, course: &str, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut slots = self
            .submissions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        slots.retain(|_, slot| Arc::strong_count(slot) > 1);
        slots.entry(format!("{course}/{name}")).or_default().clone()
    }

    /// Makes a ready environment's image pullable from its repository.
    pub async fn publish_tags(&self, env: &EnvironmentRow, digest: &str) -> Result<(), ApiError> {
        if self.config.push_to.is_some() {
            return Ok(());
        }
        let repository = domain::repository(&env.course, &env.name);
        let tags: &[&str] = if env.exam || !env.current {
            &[]
        } else {
            &["latest"]
        };
        self.store.publish_image(&repository, tags, digest).await
    }
}

/// Handlers that take a `Principal` authenticate the request's token first:
/// no route that needs a role can forget to check it.
impl axum::extract::FromRequestParts<Arc<AppState>> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        // a token when one is given; else a page session (its CSRF token for changes)
        if parts
            .headers
            .contains_key(axum::http::header::AUTHORIZATION)
        {
            return state.authenticate(&parts.headers).await;
        }
        match state
            .session_principal(&parts.method, &parts.headers)
            .await?
        {
            Some(principal) => Ok(principal),
            None => state.authenticate(&parts.headers).await,
        }
    }
}
