//! What a submission does, decided from what the store holds: pure functions,
//! so that every case is a unit test rather than a database scenario.

use axum::http::StatusCode;

use crate::store::{EnvironmentRow, Status};

/// A request already answered: the same request for the same environment.
pub fn same_request(current: Option<&EnvironmentRow>, request_hash: &str) -> Option<StatusCode> {
    let env = current.filter(|e| e.request_hash == request_hash && e.status != Status::Failed)?;
    Some(if env.status == Status::Ready {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    })
}

/// What happens to the environment's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Row {
    /// A new environment, replacing the current one (a ready exam, which never changes).
    Insert {
        /// The environment it replaces as the course's current one.
        replaces: Option<String>,
    },
    /// The current environment is updated.
    Update,
}

/// What happens about the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Image {
    /// The same lock and settings are built already: reuse that image.
    Reuse {
        /// Its digest.
        digest: Option<String>,
        /// Its bytes.
        bytes: Option<i64>,
        /// The build that made it.
        build_id: Option<String>,
    },
    /// A build of the same key is queued or running: wait for it.
    Join {
        /// That build.
        build_id: String,
        /// Where it stands.
        status: Status,
    },
    /// Nothing to reuse or join: start a build.
    Start,
}

/// The decision about a submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// What happens to the row.
    pub row: Row,
    /// What happens about the image.
    pub image: Image,
}

impl Decision {
    /// The answer's status: 200 when nothing is left to do, else 202.
    pub fn http_status(&self) -> StatusCode {
        match self.image {
            Image::Reuse { .. } => StatusCode::OK,
            _ => StatusCode::ACCEPTED,
        }
    }

    /// The environment's status once the decision is applied.
    pub fn status(&self) -> Status {
        match &self.image {
            Image::Reuse { .. } => Status::Ready,
            Image::Join { status, .. } => *status,
            Image::Start => Status::Queued,
        }
    }
}

/// What the store holds that bears on a new request of an environment.
pub struct Facts<'a> {
    /// The course's current environment of that name.
    pub current: Option<&'a EnvironmentRow>,
    /// A ready environment built from the same key, usable for this one.
    pub ready: Option<&'a EnvironmentRow>,
    /// A queued or running build of the same key, and its status.
    pub unfinished: Option<(String, Status)>,
}

/// Decides what a new request does.
pub fn decide(facts: Facts<'_>) -> Decision {
    let row = match facts.current {
        Some(e) if e.exam && e.status == Status::Ready => Row::Insert {
            replaces: Some(e.id.clone()),
        },
        Some(_) => Row::Update,
        None => Row::Insert { replaces: None },
    };
    let image = match (facts.ready, facts.unfinished) {
        (Some(built), _) => Image::Reuse {
            digest: built.digest.clone(),
            bytes: built.bytes,
            build_id: built.build_id.clone(),
        },
        (None, Some((build_id, status))) => Image::Join { build_id, status },
        (None, None) => Image::Start,
    };
    Decision { row, image }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(status: Status, exam: bool) -> EnvironmentRow {
        EnvironmentRow {
            id: "e1".into(),
            course: "c".into(),
            name: "n".into(),
            exam,
            current: true,
            request_hash: "r1".into(),
            spec: None,
            source: None,
            lock: String::new(),
            lock_hash: String::new(),
            packages: 0,
            status,
            error: None,
            digest: Some("sha256:aa".into()),
            bytes: Some(7),
            build_id: Some("b1".into()),
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn the_same_request_is_answered_from_what_exists_unless_it_failed() {
        let ready = env(Status::Ready, false);
        assert_eq!(same_request(Some(&ready), "r1"), Some(StatusCode::OK));
        let building = env(Status::Building, false);
        assert_eq!(
            same_request(Some(&building), "r1"),
            Some(StatusCode::ACCEPTED)
        );
        let failed = env(Status::Failed, false);
        assert_eq!(same_request(Some(&failed), "r1"), None);
        assert_eq!(same_request(Some(&ready), "r2"), None);
        assert_eq!(same_request(None, "r1"), None);
    }

    #[test]
    fn a_ready_build_of_the_same_key_is_reused_else_joined_else_started() {
        let other = env(Status::Ready, false);
        let reuse = decide(Facts {
            current: None,
            ready: Some(&other),
            unfinished: Some(("b2".into(), Status::Building)),
        });
        assert_eq!(reuse.row, Row::Insert { replaces: None });
        assert_eq!(reuse.http_status(), StatusCode::OK);
        assert_eq!(reuse.status(), Status::Ready);
        assert!(
            matches!(reuse.image, Image::Reuse { ref digest, .. } if digest.as_deref() == Some("sha256:aa"))
        );

        let join = decide(Facts {
            current: None,
            ready: None,
            unfinished: Some(("b2".into(), Status::Building)),
        });
        assert_eq!(join.http_status(), StatusCode::ACCEPTED);
        assert_eq!(join.status(), Status::Building);

        let start = decide(Facts {
            current: None,
            ready: None,
            unfinished: None,
        });
        assert_eq!(start.image, Image::Start);
        assert_eq!(start.status(), Status::Queued);
    }

    #[test]
    fn a_ready_exam_is_never_changed_a_changed_request_makes_a_new_one() {
        let exam = env(Status::Ready, true);
        let d = decide(Facts {
            current: Some(&exam),
            ready: None,
            unfinished: None,
        });
        assert_eq!(
            d.row,
            Row::Insert {
                replaces: Some("e1".into())
            }
        );
        let building_exam = env(Status::Building, true);
        let d = decide(Facts {
            current: Some(&building_exam),
            ready: None,
            unfinished: None,
        });
        assert_eq!(d.row, Row::Update);
        let course = env(Status::Ready, false);
        let d = decide(Facts {
            current: Some(&course),
            ready: None,
            unfinished: None,
        });
        assert_eq!(d.row, Row::Update);
    }
}
