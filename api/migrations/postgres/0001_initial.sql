-- The whole schema as SQLite's migrations 0001 to 0010 leave it, in
-- PostgreSQL's types. Integers are BIGINT (the service reads them as i64),
-- flags are 0/1 integers as in SQLite, so one query text serves both.
-- Later changes come as a migration in each folder, expand then contract
-- (docs/operations.md): replicas are upgraded one by one.

CREATE TABLE environments (
    id           TEXT PRIMARY KEY,
    course       TEXT NOT NULL,
    name         TEXT NOT NULL,
    exam         BIGINT NOT NULL,
    current      BIGINT NOT NULL,
    request_hash TEXT NOT NULL,
    spec         TEXT,
    lock         TEXT NOT NULL,
    lock_hash    TEXT NOT NULL,
    packages     BIGINT NOT NULL,
    status       TEXT NOT NULL,
    error        TEXT,
    digest       TEXT,
    bytes        BIGINT,
    build_id     TEXT,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    source       TEXT
);
CREATE UNIQUE INDEX environments_current ON environments (course, name) WHERE current = 1;
CREATE INDEX environments_by_course ON environments (course);
CREATE INDEX environments_by_build ON environments (build_id);

CREATE TABLE environment_digests (
    environment_id TEXT NOT NULL REFERENCES environments (id),
    digest         TEXT NOT NULL,
    lock_hash      TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    lock           TEXT,
    packages       BIGINT,
    seq            BIGINT,
    PRIMARY KEY (environment_id, digest)
);

CREATE TABLE builds (
    id             TEXT PRIMARY KEY,
    environment_id TEXT NOT NULL REFERENCES environments (id),
    build_key      TEXT NOT NULL,
    status         TEXT NOT NULL,
    attempts       BIGINT NOT NULL,
    error          TEXT,
    digest         TEXT,
    seconds        DOUBLE PRECISION,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    settings       TEXT
);
CREATE INDEX builds_by_key ON builds (build_key, status);

CREATE TABLE build_events (
    build_id TEXT NOT NULL REFERENCES builds (id),
    seq      BIGINT NOT NULL,
    data     TEXT NOT NULL,
    PRIMARY KEY (build_id, seq)
);

CREATE TABLE tags (
    repository TEXT NOT NULL,
    tag        TEXT NOT NULL,
    digest     TEXT NOT NULL,
    PRIMARY KEY (repository, tag)
);
CREATE TABLE image_blobs (
    image_digest TEXT NOT NULL,
    digest       TEXT NOT NULL,
    media_type   TEXT,
    PRIMARY KEY (image_digest, digest)
);
CREATE TABLE repository_blobs (
    repository TEXT NOT NULL,
    digest     TEXT NOT NULL,
    media_type TEXT,
    PRIMARY KEY (repository, digest)
);

CREATE TABLE tokens (
    hash        TEXT PRIMARY KEY,
    role        TEXT NOT NULL,
    courses     TEXT NOT NULL,
    description TEXT,
    created_at  BIGINT NOT NULL
);

CREATE TABLE course_git_tokens (
    course     TEXT PRIMARY KEY,
    token      TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE exam_windows (
    course     TEXT NOT NULL,
    name       TEXT NOT NULL,
    opens      BIGINT,
    closes     BIGINT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (course, name)
);

CREATE TABLE course_webhook_secrets (
    course     TEXT PRIMARY KEY,
    secret     TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE page_sessions (
    hash       TEXT PRIMARY KEY,
    csrf       TEXT NOT NULL,
    subject    TEXT NOT NULL,
    name       TEXT NOT NULL,
    principal  TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX page_sessions_expiry ON page_sessions (expires_at);

CREATE TABLE page_sign_ins (
    state      TEXT PRIMARY KEY,
    provider   TEXT NOT NULL,
    nonce      TEXT NOT NULL,
    verifier   TEXT NOT NULL,
    return_to  TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE TABLE xapi_queue (
    id         BIGSERIAL PRIMARY KEY,
    statement  TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE xapi_exam_marks (
    course TEXT NOT NULL,
    name   TEXT NOT NULL,
    mark   TEXT NOT NULL,
    at     BIGINT NOT NULL,
    PRIMARY KEY (course, name, mark, at)
);
