-- A course's own push webhook secret, for /api/v1/courses/{course}/hooks/git:
-- a course's teachers set it, and it rebuilds that course's environments only.
CREATE TABLE course_webhook_secrets (
    course     TEXT PRIMARY KEY,
    secret     TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
