//! Each table's queries against a fresh database (a new data directory).

use super::*;
use crate::{auth::Role, domain::window::Window, error::ApiError};

/// A store in a new data directory (kept while the test runs).
async fn sqlite() -> (Option<tempfile::TempDir>, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&Database::Sqlite(dir.path().into()))
        .await
        .unwrap();
    (Some(dir), store)
}

/// A store in a new database of the tests' PostgreSQL server.
async fn postgres() -> (Option<tempfile::TempDir>, Store) {
    let url = tokio::task::spawn_blocking(|| {
        trousse_testkit::postgres::Postgres::shared().new_database("store")
    })
    .await
    .unwrap()
    .unwrap();
    let database = Database::new(Some(&url), "/nonexistent".into()).unwrap();
    (None, Store::open(&database).await.unwrap())
}

/// Each test below, once on each store.
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test]
            async fn $name() {
                let (_dir, store) = super::sqlite().await;
                super::$name(store).await;
            })*
        }
        mod postgres {
            $(#[tokio::test]
            async fn $name() {
                let (_dir, store) = super::postgres().await;
                super::$name(store).await;
            })*
        }
    };
}

on_both_stores!(
    late_joiners_and_late_writers_are_refused,
    a_deleted_environment_leaves_a_shared_build_to_the_others,
    calls_are_counted_per_caller_and_minute,
    a_lease_that_runs_out_lets_another_take_the_build,
    one_unfinished_build_per_key_whoever_writes_it,
    concurrent_claims_take_each_build_once,
    environments_replace_the_current_one_and_keep_every_digest,
    builds_are_queued_started_and_finished_with_their_environments,
    events_are_read_in_order_after_a_sequence_number,
    tokens_keep_their_role_and_courses,
    exam_windows_are_set_replaced_and_deleted,
    a_course_keeps_its_git_token_and_webhook_secret,
    an_image_published_to_a_repository_serves_its_blobs_and_tags,
    sessions_expire_and_sign_ins_are_taken_once,
);

/// Saves `row` as a new current environment with a new build of its own
/// (`row.build_id`, under `key`), as a submission's decision does.
async fn insert_with_build(
    store: &Store,
    row: &EnvironmentRow,
    key: &str,
    request_id: Option<&str>,
) -> Result<(), ApiError> {
    let new = NewBuild {
        id: row.build_id.as_deref().expect("a row with a build"),
        key,
        settings: "{}",
        request_id,
    };
    store
        .save_environment(row, RowWrite::Insert { replaces: None }, Some(new))
        .await
}

fn environment(id: &str, name: &str, build_id: &str) -> EnvironmentRow {
    EnvironmentRow {
        id: id.into(),
        course: "physics".into(),
        name: name.into(),
        exam: false,
        current: true,
        request_hash: format!("request of {id}"),
        spec: Some("name: x".into()),
        source: None,
        lock: "lock text".into(),
        lock_hash: format!("lock of {id}"),
        packages: 3,
        status: Status::Queued,
        error: None,
        digest: None,
        bytes: None,
        build_id: Some(build_id.into()),
        created_at: now(),
        updated_at: now(),
    }
}

async fn environments_replace_the_current_one_and_keep_every_digest(store: Store) {
    let mut first = environment("e1", "lab", "b1");
    first.digest = Some("sha256:aa".into());
    store.insert_environment(&first, None).await.unwrap();
    let second = environment("e2", "lab", "b2");
    store.insert_environment(&second, Some("e1")).await.unwrap();
    let current = store.current_environment("physics", "lab").await.unwrap();
    assert_eq!(current.map(|e| e.id), Some("e2".into()));
    assert!(!store.environment("e1").await.unwrap().unwrap().current);
    assert_eq!(store.course_environments("physics").await.unwrap().len(), 2);
    assert!(store
        .course_environments("chemistry")
        .await
        .unwrap()
        .is_empty());

    let mut updated = second.clone();
    updated.status = Status::Ready;
    updated.digest = Some("sha256:bb".into());
    // a row read before another writer changed it is not written over
    let stale = RowWrite::Update {
        was: Some(("another request", Status::Queued)),
    };
    let refused = store.save_environment(&updated, stale, None).await;
    assert!(matches!(refused, Err(ApiError::Conflict(_))), "{refused:?}");
    let read_as = RowWrite::Update {
        was: Some((second.request_hash.as_str(), Status::Queued)),
    };
    store
        .save_environment(&updated, read_as, None)
        .await
        .unwrap();
    store.update_environment(&updated).await.unwrap();
    let read = store.environment("e2").await.unwrap().unwrap();
    assert_eq!(
        (read.status, read.digest.as_deref()),
        (Status::Ready, Some("sha256:bb"))
    );
    assert_eq!(store.digests("e1").await.unwrap(), ["sha256:aa"]);
    assert_eq!(store.digests("e2").await.unwrap(), ["sha256:bb"]);
    // only a current course environment made from a repository follows its pushes
    assert!(store.following_environments().await.unwrap().is_empty());
}

async fn builds_are_queued_started_and_finished_with_their_environments(store: Store) {
    store
        .insert_environment(&environment("e1", "lab", "b1"), None)
        .await
        .unwrap();
    store.insert_build("b1", "e1", "key-1", "{}").await.unwrap();
    assert_eq!(
        store.unfinished_build("key-1").await.unwrap().as_deref(),
        Some("b1")
    );
    assert_eq!(store.queue_length().await.unwrap(), 1);
    let claim = store.claim_build("me", 30).await.unwrap().unwrap();
    assert_eq!((claim.id.as_str(), claim.attempts), ("b1", 1));
    assert_eq!(store.claim_build("me", 30).await.unwrap(), None);
    // the service restarted: what it held is taken again, and counted
    assert_eq!(store.release_leases("me").await.unwrap(), 1);
    let again = store.claim_build("me", 30).await.unwrap().unwrap();
    assert_eq!(again.attempts, 2, "attempts are counted");
    assert_eq!(
        store.environment("e1").await.unwrap().unwrap().status,
        Status::Building
    );
    let finished = store
        .finish_build("b1", "me", Ok(("sha256:cc", 42)), 1.5)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(finished.len(), 1);
    assert_eq!(finished[0].bytes, Some(42));
    let build = store.build("b1").await.unwrap().unwrap();
    assert_eq!((build.status, build.attempts), (Status::Ready, 2));
    assert_eq!(store.queue_length().await.unwrap(), 0);
    assert_eq!(store.unfinished_build("key-1").await.unwrap(), None);
    let ready = store.ready_with_build_key("key-1").await.unwrap();
    assert_eq!(ready.map(|e| e.id), Some("e1".into()));
    assert_eq!(store.digests("e1").await.unwrap(), ["sha256:cc"]);

    store
        .insert_environment(&environment("e2", "other", "b2"), None)
        .await
        .unwrap();
    store.insert_build("b2", "e2", "key-2", "{}").await.unwrap();
    store.claim_build("me", 30).await.unwrap().unwrap();
    let failed = store
        .finish_build("b2", "me", Err("no space"), 0.1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(failed[0].error.as_deref(), Some("no space"));
    assert_eq!(failed[0].status, Status::Failed);
    assert_eq!(
        store
            .ready_with_build_key("key-2")
            .await
            .unwrap()
            .map(|e| e.id),
        None
    );
}

async fn a_lease_that_runs_out_lets_another_take_the_build(store: Store) {
    for (env, build, key) in [("e1", "b1", "k1"), ("e2", "b2", "k2")] {
        let row = environment(env, env, build);
        insert_with_build(&store, &row, key, Some("req-1"))
            .await
            .unwrap();
    }
    // a lease already run out: as if its holder had died
    let first = store.claim_build("dead", -1).await.unwrap().unwrap();
    assert_eq!(first.id, "b1");
    // the oldest claimable build first: the one whose lease ran out
    let taken = store.claim_build("alive", 30).await.unwrap().unwrap();
    assert_eq!((taken.id.as_str(), taken.attempts), ("b1", 2));
    assert_eq!(
        taken.request_id.as_deref(),
        Some("req-1"),
        "its logs name its request"
    );
    let next = store.claim_build("alive", 30).await.unwrap().unwrap();
    assert_eq!((next.id.as_str(), next.attempts), ("b2", 1));
    assert_eq!(store.claim_build("other", 30).await.unwrap(), None);
    // the dead one can neither renew nor write the end of what it lost
    assert!(!store.renew_lease("b1", "dead", 30).await.unwrap());
    assert!(store.renew_lease("b1", "alive", 30).await.unwrap());
    assert!(store
        .finish_build("b1", "dead", Ok(("sha256:00", 1)), 1.0)
        .await
        .unwrap()
        .is_none());
    let ended = store
        .finish_build("b1", "alive", Ok(("sha256:11", 1)), 1.0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ended[0].digest.as_deref(), Some("sha256:11"));
}

async fn one_unfinished_build_per_key_whoever_writes_it(store: Store) {
    let first = environment("e1", "lab", "b1");
    insert_with_build(&store, &first, "same-key", Some("req-1"))
        .await
        .unwrap();
    // another replica decided the same build for another environment at the same time
    let second = environment("e2", "other", "b2");
    let refused = insert_with_build(&store, &second, "same-key", Some("req-1")).await;
    assert!(matches!(refused, Err(ApiError::Conflict(_))), "{refused:?}");
    assert!(
        store.environment("e2").await.unwrap().is_none(),
        "nothing half-written"
    );
    // and the same environment's current row, written twice
    let twin = environment("e3", "lab", "b1");
    let refused = store
        .save_environment(&twin, RowWrite::Insert { replaces: None }, None)
        .await;
    assert!(matches!(refused, Err(ApiError::Conflict(_))), "{refused:?}");
}

async fn concurrent_claims_take_each_build_once(store: Store) {
    for i in 0..12 {
        let (env, build, key) = (format!("e{i}"), format!("b{i}"), format!("k{i}"));
        let row = environment(&env, &env, &build);
        insert_with_build(&store, &row, &key, Some("req-1"))
            .await
            .unwrap();
    }
    let claimers = (0..6).map(|w| {
        let store = store.clone();
        tokio::spawn(async move {
            let mut mine = Vec::new();
            while let Some(claim) = store.claim_build(&format!("w{w}"), 30).await.unwrap() {
                mine.push(claim.id);
            }
            mine
        })
    });
    let mut all: Vec<String> = Vec::new();
    for claimer in claimers {
        all.extend(claimer.await.unwrap());
    }
    all.sort();
    let mut expected: Vec<String> = (0..12).map(|i| format!("b{i}")).collect();
    expected.sort();
    assert_eq!(all, expected, "each build claimed exactly once");
}

async fn calls_are_counted_per_caller_and_minute(store: Store) {
    let (first, left) = store.count_call("token:a").await.unwrap();
    assert_eq!(first, 1);
    assert!((1..=60).contains(&left));
    let counts = futures::future::join_all((0..5).map(|_| store.count_call("token:a"))).await;
    let mut counts: Vec<i64> = counts.into_iter().map(|c| c.unwrap().0).collect();
    counts.sort();
    // unless the minute turned meanwhile, every concurrent call got its own number
    assert!(
        counts == [2, 3, 4, 5, 6] || counts.contains(&1),
        "{counts:?}"
    );
    assert_eq!(
        store.count_call("token:b").await.unwrap().0,
        1,
        "per caller"
    );
}

async fn a_deleted_environment_leaves_a_shared_build_to_the_others(store: Store) {
    let mut first = environment("e1", "lab", "b1");
    first.status = Status::Ready;
    insert_with_build(&store, &first, "k1", None).await.unwrap();
    // another course's environment joined the same build
    let mut joined = environment("e2", "lab", "b1");
    joined.course = "chemistry".into();
    joined.status = Status::Ready;
    store.insert_environment(&joined, None).await.unwrap();
    store.add_event("b1", 1, "event", None).await.unwrap();
    store.delete_environment("e1").await.unwrap();
    assert!(store.environment("e1").await.unwrap().is_none());
    let build = store.build("b1").await.unwrap().unwrap();
    assert_eq!(build.environment_id, "e2", "the build is the other's now");
    assert_eq!(store.events("b1", 0).await.unwrap().len(), 1);
    store.delete_environment("e2").await.unwrap();
    assert!(
        store.build("b1").await.unwrap().is_none(),
        "and goes with the last"
    );
    assert!(store.events("b1", 0).await.unwrap().is_empty());
}

async fn late_joiners_and_late_writers_are_refused(store: Store) {
    let first = environment("e1", "lab", "b1");
    insert_with_build(&store, &first, "k1", None).await.unwrap();
    let claim = store.claim_build("host/0", 30).await.unwrap().unwrap();
    // a claimer that lost the build writes no event; its holder does
    store
        .add_event("b1", 1, "stale", Some("host/1"))
        .await
        .unwrap();
    store
        .add_event("b1", 1, "held", Some(&claim.owner))
        .await
        .unwrap();
    assert_eq!(
        store.events("b1", 0).await.unwrap(),
        [(1, "held".to_string())]
    );
    store
        .finish_build("b1", &claim.owner, Ok(("sha256:aa", 1)), 1.0)
        .await
        .unwrap()
        .unwrap();
    // a row decided to join b1 before it ended: written now, nothing would update it
    let mut late = environment("e2", "other", "b1");
    late.status = Status::Queued;
    let refused = store
        .save_environment(&late, RowWrite::Insert { replaces: None }, None)
        .await;
    assert!(matches!(refused, Err(ApiError::Conflict(_))), "{refused:?}");
}

async fn events_are_read_in_order_after_a_sequence_number(store: Store) {
    store
        .insert_environment(&environment("e1", "lab", "b1"), None)
        .await
        .unwrap();
    store.insert_build("b1", "e1", "key", "{}").await.unwrap();
    assert_eq!(store.last_event("b1").await.unwrap(), 0);
    for seq in 1..=3 {
        store
            .add_event("b1", seq, &format!("event {seq}"), None)
            .await
            .unwrap();
    }
    let after_one = store.events("b1", 1).await.unwrap();
    assert_eq!(
        after_one,
        [(2, "event 2".to_string()), (3, "event 3".to_string())]
    );
    assert_eq!(store.last_event("b1").await.unwrap(), 3);
}

async fn tokens_keep_their_role_and_courses(store: Store) {
    let courses = vec!["physics".to_string()];
    store
        .add_token("hash-1", Role::Teacher, &courses, Some("Ada"), None)
        .await
        .unwrap();
    let token = store.token("hash-1").await.unwrap().unwrap();
    assert_eq!(token.role, Role::Teacher);
    assert_eq!(token.courses, courses);
    assert!(store.token("hash-2").await.unwrap().is_none());
    // an expired token is refused; a revoked one is gone
    store
        .add_token("0123456789abcdef", Role::Hub, &[], None, Some(now() - 1))
        .await
        .unwrap();
    assert!(store.token("0123456789abcdef").await.unwrap().is_none());
    let listed = store.tokens().await.unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed
        .iter()
        .any(|t| t.id == "0123456789ab" && t.expires_at.is_some()));
    assert!(store.revoke_token("0123456789ab").await.unwrap());
    assert!(!store.revoke_token("0123456789ab").await.unwrap());
    assert!(store.revoke_token("xyz").await.is_err());
    assert_eq!(store.tokens().await.unwrap().len(), 1);
}

async fn exam_windows_are_set_replaced_and_deleted(store: Store) {
    let window = Window {
        opens: Some(1000),
        closes: None,
    };
    store.set_window("physics", "exam", window).await.unwrap();
    let later = Window {
        opens: Some(2000),
        closes: Some(3000),
    };
    store.set_window("physics", "exam", later).await.unwrap();
    assert_eq!(store.window("physics", "exam").await.unwrap(), Some(later));
    assert!(store.delete_window("physics", "exam").await.unwrap());
    assert!(!store.delete_window("physics", "exam").await.unwrap());
    assert_eq!(store.window("physics", "exam").await.unwrap(), None);
}

async fn a_course_keeps_its_git_token_and_webhook_secret(store: Store) {
    assert_eq!(store.git_token("physics").await.unwrap(), None);
    store.set_git_token("physics", "t1").await.unwrap();
    store.set_git_token("physics", "t2").await.unwrap();
    assert_eq!(
        store.git_token("physics").await.unwrap().as_deref(),
        Some("t2")
    );
    store.set_webhook_secret("physics", "s1").await.unwrap();
    assert_eq!(
        store.webhook_secret("physics").await.unwrap().as_deref(),
        Some("s1")
    );
    assert!(store.delete_git_token("physics").await.unwrap());
    assert!(store.delete_webhook_secret("physics").await.unwrap());
    assert!(!store.delete_git_token("physics").await.unwrap());
    assert_eq!(store.git_token("physics").await.unwrap(), None);
    assert_eq!(store.webhook_secret("chemistry").await.unwrap(), None);
}

async fn an_image_published_to_a_repository_serves_its_blobs_and_tags(store: Store) {
    let blobs = vec![
        (
            "sha256:m".to_string(),
            Some("application/vnd.oci.image.manifest.v1+json".to_string()),
        ),
        ("sha256:l".to_string(), None),
    ];
    store.record_image("sha256:m", &blobs).await.unwrap();
    assert!(!store.repository_exists("physics/lab").await.unwrap());
    store
        .publish_image("physics/lab", &["latest", "v1"], "sha256:m")
        .await
        .unwrap();
    assert!(store.repository_exists("physics/lab").await.unwrap());
    assert_eq!(store.tags("physics/lab").await.unwrap(), ["latest", "v1"]);
    assert_eq!(
        store.tag("physics/lab", "v1").await.unwrap().as_deref(),
        Some("sha256:m")
    );
    assert_eq!(
        store
            .repository_blob("physics/lab", "sha256:l")
            .await
            .unwrap(),
        Some(None)
    );
    // a blob of another repository is not this one's
    assert_eq!(
        store
            .repository_blob("chemistry/lab", "sha256:l")
            .await
            .unwrap(),
        None
    );
}

async fn sessions_expire_and_sign_ins_are_taken_once(store: Store) {
    let row = SessionRow {
        csrf: "c".into(),
        subject: "alice".into(),
        name: "Alice".into(),
        principal: crate::auth::rules::principal_from(false, vec!["math1".into()], vec![]),
    };
    store.add_session("live", &row, now() + 60).await.unwrap();
    store.add_session("old", &row, now() - 1).await.unwrap();
    let live = store.session("live").await.unwrap().unwrap();
    assert_eq!(live.principal.courses, ["math1"]);
    assert!(
        store.session("old").await.unwrap().is_none(),
        "an expired session is no session"
    );
    store.remove_session("live").await.unwrap();
    assert!(store.session("live").await.unwrap().is_none());
    let sign_in = SignInRow {
        provider: "oidc".into(),
        nonce: "n".into(),
        verifier: "v".into(),
        return_to: "/".into(),
    };
    store.add_sign_in("s1", &sign_in, now() + 60).await.unwrap();
    store.add_sign_in("s2", &sign_in, now() - 1).await.unwrap();
    assert_eq!(
        store.take_sign_in("s1").await.unwrap().unwrap().verifier,
        "v"
    );
    assert!(
        store.take_sign_in("s1").await.unwrap().is_none(),
        "a state is used once"
    );
    assert!(
        store.take_sign_in("s2").await.unwrap().is_none(),
        "an expired sign-in is refused"
    );
}
