-- Environments of courses, their builds and build events, the images the
-- pull endpoint serves, and API tokens (only their hashes).

CREATE TABLE environments (
    id           TEXT PRIMARY KEY,
    course       TEXT NOT NULL,
    name         TEXT NOT NULL,
    exam         INTEGER NOT NULL,
    -- 1 for the environment a course's NAME currently means; frozen exam
    -- environments replaced by a changed request keep 0
    current      INTEGER NOT NULL,
    request_hash TEXT NOT NULL,
    spec         TEXT,
    lock         TEXT NOT NULL,
    lock_hash    TEXT NOT NULL,
    packages     INTEGER NOT NULL,
    status       TEXT NOT NULL,
    error        TEXT,
    digest       TEXT,
    bytes        INTEGER,
    build_id     TEXT,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
CREATE UNIQUE INDEX environments_current ON environments (course, name) WHERE current = 1;

-- every digest an environment has had, newest last
CREATE TABLE environment_digests (
    environment_id TEXT NOT NULL REFERENCES environments (id),
    digest         TEXT NOT NULL,
    lock_hash      TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    PRIMARY KEY (environment_id, digest)
);

CREATE TABLE builds (
    id             TEXT PRIMARY KEY,
    environment_id TEXT NOT NULL REFERENCES environments (id),
    -- the lock and the image settings: equal keys make equal images
    build_key      TEXT NOT NULL,
    status         TEXT NOT NULL,
    attempts       INTEGER NOT NULL,
    error          TEXT,
    digest         TEXT,
    seconds        REAL,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
);

CREATE INDEX builds_by_key ON builds (build_key, status);

CREATE TABLE build_events (
    build_id TEXT NOT NULL REFERENCES builds (id),
    seq      INTEGER NOT NULL,
    data     TEXT NOT NULL,
    PRIMARY KEY (build_id, seq)
);

-- what the pull endpoint serves: manifests (by tag and digest) and blobs, per repository
CREATE TABLE tags (
    repository TEXT NOT NULL,
    tag        TEXT NOT NULL,
    digest     TEXT NOT NULL,
    PRIMARY KEY (repository, tag)
);
-- the manifests and blobs that make up each image the service built
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
    created_at  INTEGER NOT NULL
);
