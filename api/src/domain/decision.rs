//! What a submission does, decided from what the store holds: pure functions,
//! so that every case is a unit test rather than a database scenario.

use super::Status;

/// What the store holds of an environment, as far as a decision reads it.
#[derive(Debug, Clone, Copy)]
pub struct Known<'a> {
    /// Its id.
    pub id: &'a str,
    /// Whether it is an exam's.
    pub exam: bool,
    /// Where its build stands.
    pub status: Status,
    /// The hash of the request that made it.
    pub request_hash: &'a str,
    /// Its image's digest, once built.
    pub digest: Option<&'a str>,
    /// Its image's bytes, once built.
    pub bytes: Option<i64>,
    /// The build that made (or makes) its image.
    pub build_id: Option<&'a str>,
}

/// How a submission is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    /// Nothing is left to do: the image is built (HTTP 200).
    Done,
    /// A build was started or joined (HTTP 202).
    Accepted,
}

/// A request already answered: the same request for the same environment.
pub(crate) fn same_request(current: Option<Known<'_>>, request_hash: &str) -> Option<Answer> {
    let env = current.filter(|e| e.request_hash == request_hash && e.status != Status::Failed)?;
    Some(if env.status == Status::Ready {
        Answer::Done
    } else {
        Answer::Accepted
    })
}

/// What happens to the environment's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Row {
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
pub(crate) enum Image {
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
pub(crate) struct Decision {
    /// What happens to the row.
    pub row: Row,
    /// What happens about the image.
    pub image: Image,
}

impl Decision {
    /// The answer: done when an image is reused, else accepted.
    pub(crate) fn answer(&self) -> Answer {
        match self.image {
            Image::Reuse { .. } => Answer::Done,
            _ => Answer::Accepted,
        }
    }

    /// The environment's status once the decision is applied.
    pub(crate) fn status(&self) -> Status {
        match &self.image {
            Image::Reuse { .. } => Status::Ready,
            Image::Join { status, .. } => *status,
            Image::Start => Status::Queued,
        }
    }
}

/// What the store holds that bears on a new request of an environment.
pub(crate) struct Facts<'a> {
    /// The course's current environment of that name.
    pub current: Option<Known<'a>>,
    /// A ready environment built from the same key, usable for this one.
    pub ready: Option<Known<'a>>,
    /// A queued or running build of the same key, and its status.
    pub unfinished: Option<(String, Status)>,
}

/// Decides what a new request does.
pub(crate) fn decide(facts: Facts<'_>) -> Decision {
    let row = match facts.current {
        Some(e) if e.exam && e.status == Status::Ready => Row::Insert {
            replaces: Some(e.id.to_string()),
        },
        Some(_) => Row::Update,
        None => Row::Insert { replaces: None },
    };
    let image = match (facts.ready, facts.unfinished) {
        (Some(built), _) => Image::Reuse {
            digest: built.digest.map(str::to_string),
            bytes: built.bytes,
            build_id: built.build_id.map(str::to_string),
        },
        (None, Some((build_id, status))) => Image::Join { build_id, status },
        (None, None) => Image::Start,
    };
    Decision { row, image }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(status: Status, exam: bool) -> Known<'static> {
        Known {
            id: "e1",
            exam,
            status,
            request_hash: "r1",
            digest: Some("sha256:aa"),
            bytes: Some(7),
            build_id: Some("b1"),
        }
    }

    #[test]
    fn the_same_request_is_answered_from_what_exists_unless_it_failed() {
        let ready = env(Status::Ready, false);
        assert_eq!(same_request(Some(ready), "r1"), Some(Answer::Done));
        let building = env(Status::Building, false);
        assert_eq!(same_request(Some(building), "r1"), Some(Answer::Accepted));
        let failed = env(Status::Failed, false);
        assert_eq!(same_request(Some(failed), "r1"), None);
        assert_eq!(same_request(Some(ready), "r2"), None);
        assert_eq!(same_request(None, "r1"), None);
    }

    #[test]
    fn a_ready_build_of_the_same_key_is_reused_else_joined_else_started() {
        let other = env(Status::Ready, false);
        let reuse = decide(Facts {
            current: None,
            ready: Some(other),
            unfinished: Some(("b2".into(), Status::Building)),
        });
        assert_eq!(reuse.row, Row::Insert { replaces: None });
        assert_eq!(reuse.answer(), Answer::Done);
        assert_eq!(reuse.status(), Status::Ready);
        assert!(
            matches!(reuse.image, Image::Reuse { ref digest, .. } if digest.as_deref() == Some("sha256:aa"))
        );

        let join = decide(Facts {
            current: None,
            ready: None,
            unfinished: Some(("b2".into(), Status::Building)),
        });
        assert_eq!(join.answer(), Answer::Accepted);
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
            current: Some(exam),
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
            current: Some(building_exam),
            ready: None,
            unfinished: None,
        });
        assert_eq!(d.row, Row::Update);
        let course = env(Status::Ready, false);
        let d = decide(Facts {
            current: Some(course),
            ready: None,
            unfinished: None,
        });
        assert_eq!(d.row, Row::Update);
    }
}
