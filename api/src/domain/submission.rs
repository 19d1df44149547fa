//! What a teacher submits for an environment: exactly one of a spec, a lock
//! and a repository, named and identified by the hash of the request.

use sha2::{Digest, Sha256};
use trousse_builder::{error::clip, EnvSpec, Source};

use crate::error::ApiError;

/// What was submitted, checked.
#[derive(Debug, Clone)]
pub(crate) enum Submitted {
    /// A spec (an environment.yml or a requirements.txt), solved at submission.
    Spec {
        /// Its text, as sent.
        text: String,
        /// It, parsed.
        spec: Box<EnvSpec>,
    },
    /// A lock (rattler, conda-lock or an explicit list), read at submission.
    Lock {
        /// Its text, as sent.
        text: String,
    },
    /// A git repository at a commit: its environment and files.
    Repository {
        /// What it builds from.
        source: Source,
        /// Its source record (URL, ref, commit), as JSON.
        record: String,
    },
}

impl Submitted {
    /// The spec's text, kept with the environment.
    pub(crate) fn spec_text(&self) -> Option<&str> {
        match self {
            Submitted::Spec { text, .. } => Some(text),
            Submitted::Lock { .. } | Submitted::Repository { .. } => None,
        }
    }

    /// A repository's source record, kept with the environment.
    pub(crate) fn source_record(&self) -> Option<&str> {
        match self {
            Submitted::Repository { record, .. } => Some(record),
            Submitted::Spec { .. } | Submitted::Lock { .. } => None,
        }
    }
}

/// What identifies a request: the same request of the same environment is
/// answered from what it made.
pub(crate) fn request_hash(kind: &str, exam: bool, text: &str) -> String {
    hex::encode(Sha256::digest(format!("{kind}\n{exam}\n{text}").as_bytes()))
}

/// Names of courses and environments: one OCI repository path component each.
pub(crate) fn check_name(kind: &str, name: &str) -> Result<(), ApiError> {
    let ok = crate::names::is_name(name);
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid_name",
            format!(
                "{kind} name '{}' must be 1 to 64 of a-z, 0-9, '.', '_', '-', starting and ending with a letter or digit",
                clip(name, 80)
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_one_lowercase_path_component() {
        for good in ["a", "physics-101", "ma.th_2", &"x".repeat(64)] {
            assert!(check_name("course", good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "A",
            "a/b",
            "a b",
            "../x",
            "é",
            &"x".repeat(65),
        ] {
            let error = check_name("course", bad).unwrap_err();
            assert!(
                matches!(
                    error,
                    ApiError::BadRequest {
                        code: "invalid_name",
                        ..
                    }
                ),
                "{bad}: {error:?}"
            );
        }
    }

    #[test]
    fn a_request_is_identified_by_its_kind_its_exam_flag_and_its_text() {
        let spec = request_hash("spec", false, "name: a");
        assert_eq!(spec, request_hash("spec", false, "name: a"));
        assert_ne!(spec, request_hash("spec", true, "name: a"));
        assert_ne!(spec, request_hash("lock", false, "name: a"));
        assert_ne!(spec, request_hash("spec", false, "name: b"));
        assert_eq!(spec.len(), 64);
    }

    #[test]
    fn only_a_spec_keeps_its_text_and_only_a_repository_its_record() {
        let lock = Submitted::Lock {
            text: "lock".into(),
        };
        assert_eq!(lock.spec_text(), None);
        assert_eq!(lock.source_record(), None);
    }
}
