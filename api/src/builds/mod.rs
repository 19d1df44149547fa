//! Builds in the background: a bounded number at once, claimed from the store
//! under a lease (so that replicas and workers share one queue and a build
//! whose service died is taken by another), each one's events kept in the
//! store and broadcast to whoever follows them live in this process.

pub(crate) mod event;

use std::{
    collections::HashMap,
    path::Path,
    str::FromStr,
    sync::{Arc, Mutex, Weak},
    time::{Duration, Instant},
};

use tokio::sync::{broadcast, mpsc, Notify};
use trousse_builder::{
    progress::Event, source::repo::stored_content, BuildOptions, BuildReport, ImageSettings, Lock,
    Resolved, SettingsRecord,
};
use trousse_registry_client::{open_image, ImageRef};

use crate::{
    builds::event::BuildEvent,
    error::ApiError,
    store::{Claim, EnvironmentRow, Status},
    AppState,
};

/// One event of a build: its number and its JSON.
pub(crate) type NumberedEvent = (i64, String);

/// How often an idle claimer looks for builds another service queued, or
/// whose claimer stopped renewing its lease.
const POLL: Duration = Duration::from_secs(1);

/// How often a build is started before it is failed for good: a build that
/// kills whatever runs it must not take every worker in turn forever.
const MAX_ATTEMPTS: i64 = 3;

/// The builds this service runs: claimers that take queued builds from the
/// store (this service's own, or any replica's when the store is shared), each
/// under a lease renewed while it builds, its events broadcast to followers here.
pub struct BuildQueue {
    slots: usize,
    owner: String,
    lease: Duration,
    wake: Arc<Notify>,
    live: Mutex<HashMap<String, broadcast::Sender<NumberedEvent>>>,
}

impl BuildQueue {
    /// A queue of `max_builds` claimers holding leases as `owner`.
    pub fn new(max_builds: usize, owner: String, lease: Duration) -> Self {
        Self {
            slots: max_builds.max(1),
            owner,
            lease: lease.max(Duration::from_secs(3)),
            wake: Arc::new(Notify::new()),
            live: Mutex::new(HashMap::new()),
        }
    }

    /// Starts the claimers (a service with builds, or a worker).
    pub fn start(&self, state: &Arc<AppState>) {
        for slot in 0..self.slots {
            // each claimer holds leases in its own name: two never share a build
            let owner = format!("{}/{slot}", self.owner);
            tokio::spawn(claimer(Arc::downgrade(state), self.wake.clone(), owner));
        }
    }

    /// Tells an idle claimer that a build was queued.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Follows a running build's events, if it runs in this process.
    pub fn subscribe(&self, build_id: &str) -> Option<broadcast::Receiver<NumberedEvent>> {
        self.live
            .lock()
            .ok()?
            .get(build_id)
            .map(broadcast::Sender::subscribe)
    }

    fn lease_seconds(&self) -> i64 {
        self.lease.as_secs() as i64
    }
}

/// Takes builds from the store and runs them, one at a time, while the service lives.
async fn claimer(state: Weak<AppState>, wake: Arc<Notify>, owner: String) {
    loop {
        let Some(state) = state.upgrade() else { return };
        let queue = &state.builds;
        match state.store.claim_build(&owner, queue.lease_seconds()).await {
            Ok(Some(claim)) => {
                run_claimed(&state, claim).await;
                continue;
            }
            Ok(None) => {}
            Err(e) => tracing::warn!("cannot take builds from the store: {e}"),
        }
        drop(state);
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}

/// Runs a claimed build, broadcasting its events to followers in this process.
async fn run_claimed(state: &Arc<AppState>, claim: Claim) {
    let queue = &state.builds;
    let sender = broadcast::channel(1024).0;
    if let Ok(mut live) = queue.live.lock() {
        live.insert(claim.id.clone(), sender.clone());
    }
    let build_id = claim.id.clone();
    let span = tracing::info_span!(
        "build",
        build = %build_id,
        request_id = claim.request_id.as_deref().unwrap_or("-")
    );
    span.in_scope(|| tracing::info!(attempt = claim.attempts, "building"));
    let outcome = {
        use tracing::Instrument;
        run(state, claim, sender).instrument(span.clone()).await
    };
    span.in_scope(|| tracing::info!("build ended"));
    if let Err(e) = outcome {
        tracing::error!(build = %build_id, "build bookkeeping failed: {e}");
    }
    if let Ok(mut live) = queue.live.lock() {
        live.remove(&build_id);
    }
}

/// Renews a build's lease until it is lost (another service took the build).
async fn keep_lease(state: &Arc<AppState>, build_id: &str, owner: &str) {
    let queue = &state.builds;
    loop {
        tokio::time::sleep(queue.lease / 3).await;
        match state
            .store
            .renew_lease(build_id, owner, queue.lease_seconds())
            .await
        {
            Ok(true) => {}
            Ok(false) => return,
            // the store is down: keep building; the build's end is refused if the lease ran out
            Err(e) => tracing::warn!(build = %build_id, "cannot renew the build's lease: {e}"),
        }
    }
}

/// Numbers, stores and broadcasts the events of one build, in order.
struct EventLog {
    sender: mpsc::UnboundedSender<BuildEvent>,
    writer: tokio::task::JoinHandle<()>,
}

impl EventLog {
    async fn open(
        state: &Arc<AppState>,
        build_id: &str,
        owner: &str,
        live: broadcast::Sender<NumberedEvent>,
    ) -> Result<Self, ApiError> {
        let mut seq = state.store.last_event(build_id).await?;
        let owner = owner.to_string();
        let (sender, mut receiver) = mpsc::unbounded_channel::<BuildEvent>();
        let store = state.store.clone();
        let build_id = build_id.to_string();
        let writer = tokio::spawn(async move {
            while let Some(event) = receiver.recv().await {
                seq += 1;
                let Ok(text) = serde_json::to_string(&event) else {
                    continue;
                };
                if let Err(e) = store.add_event(&build_id, seq, &text, Some(&owner)).await {
                    tracing::warn!(build = %build_id, "cannot store an event: {e}");
                }
                let _ = live.send((seq, text));
            }
        });
        Ok(Self { sender, writer })
    }

    fn emit(&self, event: BuildEvent) {
        let _ = self.sender.send(event);
    }

    fn reporter(&self) -> trousse_builder::progress::Reporter {
        let sender = self.sender.clone();
        Arc::new(move |event: &Event| {
            let _ = sender.send(BuildEvent::Stage(event.clone()));
        })
    }

    /// Writes the last event and waits until every event is stored.
    async fn close(self, last: BuildEvent) {
        self.emit(last);
        drop(self.sender);
        let _ = self.writer.await;
    }
}

async fn run(
    state: &Arc<AppState>,
    claim: Claim,
    live: broadcast::Sender<NumberedEvent>,
) -> Result<(), ApiError> {
    let build_id = claim.id.as_str();
    let Some(build) = state.store.build(build_id).await? else {
        return Ok(());
    };
    let Some(env) = state.store.environment(&build.environment_id).await? else {
        return Ok(());
    };
    let owner = claim.owner.as_str();
    let log = EventLog::open(state, build_id, owner, live).await?;
    log.emit(BuildEvent::Status {
        status: Status::Building,
        attempt: claim.attempts,
    });
    if claim.attempts > MAX_ATTEMPTS {
        let stopped = ApiError::Internal(format!(
            "the build was started {MAX_ATTEMPTS} times and never finished: whatever ran it \
             stopped each time (killed, or out of memory); see the services' logs"
        ));
        return finish(state, build_id, owner, log, Err(stopped), 0.0).await;
    }
    state.metrics.builds_started.inc();
    let started = Instant::now();
    let building = tokio::time::timeout(
        state.config.build_timeout,
        guarded(
            state,
            build_image(
                state,
                build_id,
                &env,
                build.settings.as_deref(),
                log.reporter(),
            ),
        ),
    );
    let outcome = tokio::select! {
        outcome = building => outcome.unwrap_or_else(|_| {
            Err(ApiError::Internal(format!(
                "the build took longer than {} s",
                state.config.build_timeout.as_secs()
            )))
        }),
        () = keep_lease(state, build_id, owner) => {
            let _ = std::fs::remove_dir_all(state.config.work_dir().join(build_id));
            return lost(state, build_id, log).await;
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    state.metrics.build_seconds.observe(seconds);
    let _ = std::fs::remove_dir_all(state.config.work_dir().join(build_id));
    finish(state, build_id, owner, log, outcome, seconds).await
}

/// Records a build's outcome: its row, the tags of its environments, the
/// metric, and the last event.
async fn finish(
    state: &Arc<AppState>,
    build_id: &str,
    owner: &str,
    log: EventLog,
    outcome: Result<BuildReport, ApiError>,
    seconds: f64,
) -> Result<(), ApiError> {
    let failure = outcome.as_ref().err().map(ToString::to_string);
    let stored = match (&outcome, &failure) {
        (Ok(report), _) => Ok((report.digest.as_str(), report.bytes as i64)),
        (Err(_), failure) => Err(failure.as_deref().unwrap_or_default()),
    };
    let Some(envs) = state
        .store
        .finish_build(build_id, owner, stored, seconds)
        .await?
    else {
        return lost(state, build_id, log).await;
    };
    let verb = match &outcome {
        Ok(_) => crate::traces::Verb::Built,
        Err(_) => crate::traces::Verb::Failed,
    };
    for env in &envs {
        if let Ok(report) = &outcome {
            state.publish_tags(env, &report.digest).await?;
        }
        state.traces.record(None, verb, env).await;
    }
    let last = match outcome {
        Ok(report) => {
            state.metrics.record_build("ready");
            BuildEvent::Done {
                status: Status::Ready,
                digest: Some(report.digest),
                layers: Some(report.layers),
                cached_layers: Some(report.cached_layers),
                bytes: Some(report.bytes),
                error: None,
            }
        }
        Err(_) => {
            state.metrics.record_build("failed");
            BuildEvent::failed(failure.unwrap_or_default())
        }
    };
    log.close(last).await;
    Ok(())
}

/// A build whose lease went: cancelled (its last event is written here, the
/// only writer of its events), or taken over by another service (whose events
/// go on from here).
async fn lost(state: &Arc<AppState>, build_id: &str, log: EventLog) -> Result<(), ApiError> {
    let build = state.store.build(build_id).await?;
    match build {
        Some(build) if build.status == Status::Failed => {
            tracing::info!(build = %build_id, "the build was cancelled: stopped");
            let reason = build.error.unwrap_or_else(|| "cancelled".into());
            log.close(BuildEvent::failed(reason)).await;
        }
        _ => {
            tracing::warn!(build = %build_id, "the build's lease was lost: another service builds it now")
        }
    }
    Ok(())
}

/// Runs a build, turning a panic in it into a failed build (and counting it).
async fn guarded(
    state: &Arc<AppState>,
    build: impl std::future::Future<Output = Result<BuildReport, ApiError>>,
) -> Result<BuildReport, ApiError> {
    use futures::FutureExt;
    match std::panic::AssertUnwindSafe(build).catch_unwind().await {
        Ok(outcome) => outcome,
        Err(panic) => {
            state.metrics.panics.inc();
            let message = crate::error::panic_message(&*panic);
            tracing::error!("a build panicked: {message}");
            Err(ApiError::Internal(format!(
                "the build failed on a bug in trousse ({}); it was logged and counted",
                trousse_builder::error::clip(&message, 300)
            )))
        }
    }
}

/// Builds an environment's lock into an image, in the store or the configured registry.
async fn build_image(
    state: &Arc<AppState>,
    build_id: &str,
    env: &EnvironmentRow,
    settings: Option<&str>,
    reporter: trousse_builder::progress::Reporter,
) -> Result<BuildReport, ApiError> {
    let config = &state.config;
    let lock = Lock::from_text(&env.lock, Path::new("environment.lock"))?;
    let record = settings
        .ok_or_else(|| ApiError::Internal(format!("build {build_id} has no stored settings")))?;
    let record: SettingsRecord = serde_json::from_str(record)
        .map_err(|e| ApiError::Internal(format!("the stored settings of {build_id}: {e}")))?;
    let settings = ImageSettings::try_from(record)?;
    let work = config.work_dir().join(build_id);
    let output = match &config.push_to {
        Some(prefix) => ImageRef::from_str(&format!(
            "docker://{}/{}:latest",
            prefix.trim_end_matches('/'),
            crate::domain::repository(&env.course, &env.name)
        ))
        .map_err(|e| ApiError::Internal(e.to_string()))?,
        None => ImageRef::Oci {
            dir: work.clone(),
            tag: None,
        },
    };
    let options = BuildOptions {
        mirrors: config.mirrors.clone(),
        post_build_network: false,
        cache_dir: config.cache_dir(),
        compression: crate::domain::COMPRESSION,
        output: output.clone(),
        reporter,
        registry: config.registry.clone(),
        max_image_bytes: Some(config.max_image_bytes),
    };
    // a repository's files are read again, at the commit the request resolved
    let token = state.store.git_token(&env.course).await?;
    let content =
        stored_content(&settings, &config.git_policy(), token, &config.cache_dir()).await?;
    let mut resolved = Resolved::new(lock, settings);
    resolved.content = content.map(Arc::new);
    let report = trousse_builder::build(resolved, options).await?;
    if config.push_to.is_none() {
        let blobs = store_image(state, &output).await?;
        state.store.record_image(&report.digest, &blobs).await?;
    }
    Ok(report)
}

/// Moves a built image's blobs into the image store; returns (digest, media type) of each.
async fn store_image(
    state: &Arc<AppState>,
    built: &ImageRef,
) -> Result<Vec<(String, Option<String>)>, ApiError> {
    let store = state.config.image_store();
    let opened = open_image(built, &state.config.registry, &store, None)
        .await
        .map_err(|e| ApiError::Internal(format!("reading the built image: {e}")))?;
    let image = &opened.image;
    let mut blobs = vec![(
        image.root.digest().to_string(),
        Some(image.root.media_type().to_string()),
    )];
    let manifests = image
        .manifests()
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    for (descriptor, manifest) in manifests {
        blobs.push((
            descriptor.digest().to_string(),
            Some(descriptor.media_type().to_string()),
        ));
        blobs.push((
            manifest.config().digest().to_string(),
            Some(manifest.config().media_type().to_string()),
        ));
        for layer in manifest.layers() {
            blobs.push((
                layer.digest().to_string(),
                Some(layer.media_type().to_string()),
            ));
        }
    }
    blobs.sort();
    blobs.dedup();
    for (digest, _) in &blobs {
        let digest = digest
            .parse()
            .map_err(|e| ApiError::Internal(format!("{e}")))?;
        store
            .import_from(&image.blobs, &digest)
            .map_err(|e| ApiError::Internal(format!("storing the image: {e}")))?;
    }
    Ok(blobs)
}
