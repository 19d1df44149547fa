//! What the service decides, apart from how it is asked (HTTP) and where it
//! keeps things (the store): pure functions over plain values, each case a
//! unit test.

pub(crate) mod decision;
pub(crate) mod submission;
pub(crate) mod window;

use trousse_builder::Compression;

/// The layer compression of the service's images.
pub(crate) const COMPRESSION: Compression = Compression::Gzip;

/// The repository an environment's image is served from.
pub(crate) fn repository(course: &str, name: &str) -> String {
    format!("{course}/{name}")
}

/// Where an environment's build stands.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
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

    /// The status of a stored name.
    pub fn from_name(name: &str) -> Option<Self> {
        [
            Status::Queued,
            Status::Building,
            Status::Ready,
            Status::Failed,
        ]
        .into_iter()
        .find(|s| s.name() == name)
    }

    /// Whether nothing more will happen to it.
    pub fn is_final(self) -> bool {
        matches!(self, Status::Ready | Status::Failed)
    }
}
