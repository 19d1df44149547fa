//! What a checked submission does to its environment (the domain's
//! decision, from what the store holds), written to the store.

use axum::http::StatusCode;
use trousse_builder::{BuildKey, ImageSettings, Lock, SettingsRecord};

use super::submission::Submission;
use crate::domain::COMPRESSION;
use crate::{
    auth::Principal,
    domain::decision::{self, Answer, Decision, Facts, Image, Row},
    error::ApiError,
    store::{now, EnvironmentRow, NewBuild, RowWrite, Status},
    AppState,
};

fn new_id() -> Result<String, ApiError> {
    let mut bytes = [0u8; 12];
    getrandom::fill(&mut bytes)
        .map_err(|e| ApiError::Internal(format!("no randomness for an id: {e}")))?;
    Ok(hex::encode(bytes))
}

/// How often a submission is decided again when another replica wrote its
/// environment or build first.
const RACES: usize = 3;

/// What a submission makes of its environment's row, stored, with the HTTP status it answers.
pub(super) async fn decide(
    state: &AppState,
    course: &str,
    submission: Submission,
    caller: Option<&Principal>,
) -> Result<(EnvironmentRow, StatusCode), ApiError> {
    // one submission per environment at a time in this process; across replicas
    // the store's unique rows make the later writer decide again, from what the
    // first one wrote
    let slot = state.submission_slot(course, &submission.name);
    let _turn = slot.lock().await;
    let mut race = 1;
    let mut solved = None;
    loop {
        match decide_once(state, course, &submission, &mut solved, caller).await {
            Err(ApiError::Conflict(message)) if race < RACES => {
                tracing::debug!(course, "decided again: {message}");
                race += 1;
            }
            answer => return answer,
        }
    }
}

async fn decide_once(
    state: &AppState,
    course: &str,
    submission: &Submission,
    solved: &mut Option<(Lock, ImageSettings)>,
    caller: Option<&Principal>,
) -> Result<(EnvironmentRow, StatusCode), ApiError> {
    let course = course.to_string();
    let current = state
        .store
        .current_environment(&course, &submission.name)
        .await?;
    let known = current.as_ref().map(EnvironmentRow::known);
    if let Some(answer) = decision::same_request(known, &submission.request_hash) {
        if answer == Answer::Done {
            state.metrics.cache_hits.inc();
        }
        if let Some(env) = current {
            return Ok((env, status_of(answer)));
        }
    }

    // solved once: deciding again after a race reads the store again, not the channels
    let (lock, settings) = match solved {
        Some(solved) => solved,
        None => {
            // what costs is solving: that is what a caller's rate counts
            if let Some(caller) = caller {
                state.charge_submission(caller).await?;
            }
            solved.insert(submission.lock(state).await?)
        }
    };
    let key = BuildKey::new(&lock.hash(), settings, COMPRESSION);
    let (ready, unfinished) = images_of(state, &key, &course, &submission.name).await?;
    let decision = decision::decide(Facts {
        current: current.as_ref().map(EnvironmentRow::known),
        ready: ready.as_ref().map(EnvironmentRow::known),
        unfinished,
    });
    within_quota(state, &course, &decision).await?;
    let was = current.as_ref().map(|c| (c.request_hash.clone(), c.status));
    let env = apply(&course, submission, current, lock, &decision)?;
    let was = was.as_ref().map(|(hash, status)| (hash.as_str(), *status));
    store_decision(state, &env, &decision, was, &key, settings).await?;
    if matches!(decision.image, Image::Reuse { .. }) {
        state.metrics.cache_hits.inc();
    }
    Ok((env, status_of(decision.answer())))
}

/// What exists of a build key: a ready environment whose image can be reused
/// here, and an unfinished build to join (with its status).
async fn images_of(
    state: &AppState,
    key: &BuildKey,
    course: &str,
    name: &str,
) -> Result<(Option<EnvironmentRow>, Option<(String, Status)>), ApiError> {
    let ready = state
        .store
        .ready_with_build_key(key.as_str())
        .await?
        .filter(|b| {
            // a registry holds the image in the repository it was pushed to only
            state.config.push_to.is_none() || (b.course == course && b.name == name)
        });
    let unfinished = match state.store.unfinished_build(key.as_str()).await? {
        Some(id) => {
            let status = state
                .store
                .build(&id)
                .await?
                .map_or(Status::Queued, |b| b.status);
            Some((id, status))
        }
        None => None,
    };
    Ok((ready, unfinished))
}

/// Refuses a new name beyond the course's number of environments, and a new
/// build once its environments hold its bytes; what exists is still answered.
async fn within_quota(state: &AppState, course: &str, decision: &Decision) -> Result<(), ApiError> {
    let new_name = matches!(decision.row, Row::Insert { replaces: None });
    let new_build = matches!(decision.image, Image::Start);
    if !new_name && !new_build {
        return Ok(());
    }
    let (environments, bytes) = state.store.course_usage(course).await?;
    let config = &state.config;
    if new_name && environments >= config.max_course_environments {
        return Err(ApiError::Quota(format!(
            "course '{course}' offers {environments} environments, its quota: archive one \
             (POST /api/v1/environments/ID/archive) or ask an administrator for more"
        )));
    }
    if new_build && bytes as u64 >= config.max_course_bytes {
        return Err(ApiError::Quota(format!(
            "the environments of course '{course}' hold {}, its quota of {}: archive one or \
             ask an administrator for more",
            bytesize::ByteSize(bytes as u64),
            bytesize::ByteSize(config.max_course_bytes)
        )));
    }
    Ok(())
}

/// The HTTP status of an answer: 200 when done, 202 when a build was started or joined.
fn status_of(answer: Answer) -> StatusCode {
    match answer {
        Answer::Done => StatusCode::OK,
        Answer::Accepted => StatusCode::ACCEPTED,
    }
}

/// The environment's row as the decision makes it.
fn apply(
    course: &str,
    submission: &Submission,
    current: Option<EnvironmentRow>,
    lock: &Lock,
    decision: &Decision,
) -> Result<EnvironmentRow, ApiError> {
    let mut env = match (current, &decision.row) {
        (Some(e), Row::Update) => e,
        _ => EnvironmentRow {
            id: new_id()?,
            course: course.to_string(),
            name: submission.name.clone(),
            exam: submission.exam,
            current: true,
            request_hash: String::new(),
            spec: None,
            source: None,
            lock: String::new(),
            lock_hash: String::new(),
            packages: 0,
            status: Status::Queued,
            error: None,
            digest: None,
            bytes: None,
            build_id: None,
            created_at: now(),
            updated_at: now(),
        },
    };
    env.exam = submission.exam;
    env.request_hash = submission.request_hash.clone();
    env.spec = submission.what.spec_text().map(str::to_string);
    env.source = submission.what.source_record().map(str::to_string);
    env.lock = lock.text.clone();
    env.lock_hash = lock.hash();
    env.packages = lock
        .platforms
        .iter()
        .map(|p| p.records.len() + p.pypi.len())
        .sum::<usize>() as i64;
    env.error = None;
    env.status = decision.status();
    (env.digest, env.bytes, env.build_id) = match &decision.image {
        Image::Reuse {
            digest,
            bytes,
            build_id,
        } => (digest.clone(), *bytes, build_id.clone()),
        Image::Join { build_id, .. } => (None, None, Some(build_id.clone())),
        Image::Start => (None, None, Some(new_id()?)),
    };
    Ok(env)
}

/// Writes the decision: the row and its new build in one transaction, or the tags of a reused image.
async fn store_decision(
    state: &AppState,
    env: &EnvironmentRow,
    decision: &Decision,
    was: Option<(&str, Status)>,
    key: &BuildKey,
    settings: &ImageSettings,
) -> Result<(), ApiError> {
    let row = match &decision.row {
        Row::Insert { replaces } => RowWrite::Insert {
            replaces: replaces.as_deref(),
        },
        Row::Update => RowWrite::Update { was },
    };
    let record = serde_json::to_string(&SettingsRecord::from(settings))
        .map_err(|e| ApiError::Internal(format!("storing the settings: {e}")))?;
    let request_id = crate::request_id::current();
    let build = match (&decision.image, &env.build_id) {
        (Image::Start, Some(id)) => Some(NewBuild {
            id,
            key: key.as_str(),
            settings: &record,
            request_id: request_id.as_deref(),
        }),
        _ => None,
    };
    state.store.save_environment(env, row, build).await?;
    match (&decision.image, &env.digest) {
        (Image::Start, _) => state.builds.wake(),
        (Image::Reuse { .. }, Some(digest)) => state.publish_tags(env, digest).await?,
        _ => {}
    }
    Ok(())
}
