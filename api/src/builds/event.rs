//! The events of a build: what the build task writes, stores and broadcasts,
//! and what the server-sent events endpoint reads back. One type, one JSON form.

use serde::{Deserialize, Serialize};
use trousse_builder::progress::Event;

use crate::domain::Status;

/// One event of a build; its JSON `event` field names the kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub(crate) enum BuildEvent {
    /// The build started (again after a restart: `attempt` counts).
    Status {
        /// Where it stands.
        status: Status,
        /// How often it was started.
        attempt: i64,
    },
    /// The build ended: the last event.
    Done {
        /// `ready` or `failed`.
        status: Status,
        /// The image digest, when ready.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        digest: Option<String>,
        /// Layers made, when ready.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        layers: Option<usize>,
        /// Of which cached, when ready.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cached_layers: Option<usize>,
        /// Bytes of the image's layers, when ready.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bytes: Option<u64>,
        /// Why it failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A stage's progress, as the builder reports it.
    #[serde(untagged)]
    Stage(Event),
}

impl BuildEvent {
    /// The SSE event name: the JSON `event` field.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            BuildEvent::Status { .. } => "status",
            BuildEvent::Done { .. } => "done",
            BuildEvent::Stage(Event::StageStarted { .. }) => "stage_started",
            BuildEvent::Stage(Event::Progress { .. }) => "progress",
            BuildEvent::Stage(Event::StageFinished { .. }) => "stage_finished",
        }
    }

    /// The last event of a build that failed with `error`.
    pub(crate) fn failed(error: String) -> Self {
        BuildEvent::Done {
            status: Status::Failed,
            digest: None,
            layers: None,
            cached_layers: None,
            bytes: None,
            error: Some(error),
        }
    }

    /// Whether it is the last event of its build.
    pub(crate) fn is_done(&self) -> bool {
        matches!(self, BuildEvent::Done { .. })
    }

    /// Reads a stored event.
    pub(crate) fn parse(text: &str) -> Option<Self> {
        serde_json::from_str(text).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trousse_builder::progress::Stage;

    #[test]
    fn every_kind_reads_back_as_written_with_its_name() {
        let events = [
            BuildEvent::Status {
                status: Status::Building,
                attempt: 1,
            },
            BuildEvent::Stage(Event::StageStarted {
                stage: Stage::Fetch,
                total: 3,
            }),
            BuildEvent::Stage(Event::Progress {
                stage: Stage::Layer,
                item: "numpy".into(),
                cached: true,
            }),
            BuildEvent::Stage(Event::StageFinished {
                stage: Stage::Publish,
                seconds: 0.5,
            }),
            BuildEvent::failed("no".into()),
        ];
        for event in events {
            let text = serde_json::to_string(&event).unwrap();
            let value: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(value["event"], event.kind(), "{text}");
            assert_eq!(BuildEvent::parse(&text), Some(event.clone()), "{text}");
            assert_eq!(event.is_done(), event.kind() == "done");
        }
    }
}
