//! Builds in the background: a bounded number at once, each one's events kept
//! in the store and broadcast to whoever follows them live.

pub(crate) mod event;

use std::{
    collections::HashMap,
    path::Path,
    str::FromStr,
    sync::{Arc, Mutex, Weak},
    time::Instant,
};

use tokio::sync::{broadcast, mpsc, Semaphore};
use trousse_builder::{
    progress::Event, source::repo::stored_content, BuildOptions, BuildReport, ImageSettings, Lock,
    Resolved, SettingsRecord,
};
use trousse_registry_client::{open_image, ImageRef};

use crate::{
    builds::event::BuildEvent,
    error::ApiError,
    store::{EnvironmentRow, Status},
    AppState,
};

/// One event of a build: its number and its JSON.
pub(crate) type NumberedEvent = (i64, String);

/// The builds waiting for a slot or running.
pub struct BuildQueue {
    slots: Semaphore,
    live: Mutex<HashMap<String, broadcast::Sender<NumberedEvent>>>,
    state: Mutex<Weak<AppState>>,
}

impl BuildQueue {
    /// A queue running at most `max_builds` builds at once.
    pub fn new(max_builds: usize) -> Self {
        Self {
            slots: Semaphore::new(max_builds.max(1)),
            live: Mutex::new(HashMap::new()),
            state: Mutex::new(Weak::new()),
        }
    }

    /// Connects the queue to the service it builds for.
    pub fn attach(&self, state: &Arc<AppState>) {
        if let Ok(mut s) = self.state.lock() {
            *s = Arc::downgrade(state);
        }
    }

    /// Starts a stored build in the background.
    pub fn submit(&self, build_id: String) {
        let Some(state) = self.state.lock().ok().and_then(|s| s.upgrade()) else {
            return;
        };
        let sender = broadcast::channel(1024).0;
        if let Ok(mut live) = self.live.lock() {
            live.insert(build_id.clone(), sender.clone());
        }
        state.metrics.queue_length.inc();
        tokio::spawn(async move {
            let queue = &state.builds;
            let permit = queue.slots.acquire().await;
            state.metrics.queue_length.dec();
            if let Err(e) = run(&state, &build_id, sender).await {
                tracing::error!(build = %build_id, "build bookkeeping failed: {e}");
            }
            drop(permit);
            if let Ok(mut live) = queue.live.lock() {
                live.remove(&build_id);
            }
        });
    }

    /// Follows a running build's events, if it runs in this process.
    pub fn subscribe(&self, build_id: &str) -> Option<broadcast::Receiver<NumberedEvent>> {
        self.live
            .lock()
            .ok()?
            .get(build_id)
            .map(broadcast::Sender::subscribe)
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
        live: broadcast::Sender<NumberedEvent>,
    ) -> Result<Self, ApiError> {
        let mut seq = state.store.last_event(build_id).await?;
        let (sender, mut receiver) = mpsc::unbounded_channel::<BuildEvent>();
        let store = state.store.clone();
        let build_id = build_id.to_string();
        let writer = tokio::spawn(async move {
            while let Some(event) = receiver.recv().await {
                seq += 1;
                let Ok(text) = serde_json::to_string(&event) else {
                    continue;
                };
                if let Err(e) = store.add_event(&build_id, seq, &text).await {
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
    build_id: &str,
    live: broadcast::Sender<NumberedEvent>,
) -> Result<(), ApiError> {
    let Some(build) = state.store.build(build_id).await? else {
        return Ok(());
    };
    let Some(env) = state.store.environment(&build.environment_id).await? else {
        return Ok(());
    };
    let attempt = state.store.start_build(build_id).await?;
    let log = EventLog::open(state, build_id, live).await?;
    log.emit(BuildEvent::Status {
        status: Status::Building,
        attempt,
    });
    state.metrics.builds_started.inc();
    let started = Instant::now();
    let outcome = tokio::time::timeout(
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
    )
    .await
    .unwrap_or_else(|_| {
        Err(ApiError::Internal(format!(
            "the build took longer than {} s",
            state.config.build_timeout.as_secs()
        )))
    });
    let seconds = started.elapsed().as_secs_f64();
    state.metrics.build_seconds.observe(seconds);
    let _ = std::fs::remove_dir_all(state.config.work_dir().join(build_id));
    finish(state, build_id, log, outcome, seconds).await
}

/// Records a build's outcome: its row, the tags of its environments, the
/// metric, and the last event.
async fn finish(
    state: &Arc<AppState>,
    build_id: &str,
    log: EventLog,
    outcome: Result<BuildReport, ApiError>,
    seconds: f64,
) -> Result<(), ApiError> {
    let last = match outcome {
        Ok(report) => {
            let envs = state
                .store
                .finish_build(build_id, Ok((&report.digest, report.bytes as i64)), seconds)
                .await?;
            for env in &envs {
                state.publish_tags(env, &report.digest).await?;
                state
                    .traces
                    .record(None, crate::traces::Verb::Built, env)
                    .await;
            }
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
        Err(error) => {
            let message = error.to_string();
            let envs = state
                .store
                .finish_build(build_id, Err(&message), seconds)
                .await?;
            for env in &envs {
                state
                    .traces
                    .record(None, crate::traces::Verb::Failed, env)
                    .await;
            }
            state.metrics.record_build("failed");
            BuildEvent::failed(message)
        }
    };
    log.close(last).await;
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
