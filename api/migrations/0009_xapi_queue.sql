-- Learning-analytics traces waiting for the Learning Record Store: a
-- statement is queued in the request (or build) that causes it and sent by a
-- background task, retried with growing delays while the LRS is down.
CREATE TABLE xapi_queue (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    statement  TEXT NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    next_at    INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX xapi_queue_due ON xapi_queue (next_at);

-- The exam windows whose opening and closing were traced already.
CREATE TABLE xapi_exam_marks (
    course TEXT NOT NULL,
    name   TEXT NOT NULL,
    mark   TEXT NOT NULL,
    at     INTEGER NOT NULL,
    PRIMARY KEY (course, name, mark, at)
);
