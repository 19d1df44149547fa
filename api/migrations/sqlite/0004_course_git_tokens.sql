-- A course's deploy token for its private git repositories: sent as the
-- password when a repository asks for credentials, never returned by the
-- API nor logged (docs/repositories.md).
CREATE TABLE course_git_tokens (
    course     TEXT PRIMARY KEY,
    token      TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
