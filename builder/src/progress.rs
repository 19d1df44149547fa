//! Typed progress events: the builder reports, the CLI and the API display.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// A pipeline stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// Solving the spec against the channels.
    Solve,
    /// Downloading and extracting packages.
    Fetch,
    /// Linking packages into per-package staging directories.
    Stage,
    /// Writing compressed layer tars.
    Layer,
    /// Writing the image config, manifests and index.
    Image,
    /// Writing the image to its target.
    Publish,
}

impl Stage {
    /// The stage's name as used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Solve => "solve",
            Stage::Fetch => "fetch",
            Stage::Stage => "stage",
            Stage::Layer => "layer",
            Stage::Image => "image",
            Stage::Publish => "publish",
        }
    }
}

/// Something that happened during a build.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A stage began; `total` counts its units of work when known.
    StageStarted {
        /// The stage.
        stage: Stage,
        /// How many units (packages, layers) the stage will process.
        total: u64,
    },
    /// One unit of a stage's work is done.
    Progress {
        /// The stage.
        stage: Stage,
        /// What was done (a package or a layer).
        item: String,
        /// Whether it came from the cache.
        cached: bool,
    },
    /// A stage ended.
    StageFinished {
        /// The stage.
        stage: Stage,
        /// How long it took.
        seconds: f64,
    },
}

/// Receives progress events; must be cheap and must not block.
pub type Reporter = Arc<dyn Fn(&Event) + Send + Sync>;

/// A reporter that drops every event.
pub fn silent() -> Reporter {
    Arc::new(|_| {})
}

/// Runs a stage's work between its started and finished events; returns its seconds too.
pub(crate) async fn timed<T>(
    reporter: &Reporter,
    stage: Stage,
    total: u64,
    work: impl std::future::Future<Output = Result<T, crate::BuildError>>,
) -> Result<(T, f64), crate::BuildError> {
    let started = std::time::Instant::now();
    reporter(&Event::StageStarted { stage, total });
    let value = work.await?;
    let seconds = started.elapsed().as_secs_f64();
    reporter(&Event::StageFinished { stage, seconds });
    Ok((value, seconds))
}
