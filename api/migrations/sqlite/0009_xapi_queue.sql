-- Learning-analytics traces waiting for the Learning Record Store: a
-- statement is queued in the request (or build) that causes it and sent by a
-- background task; while the LRS is down the whole queue waits (the sender
-- keeps the delay), oldest first.
CREATE TABLE xapi_queue (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    statement  TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

-- The exam windows whose opening and closing were traced already.
CREATE TABLE xapi_exam_marks (
    course TEXT NOT NULL,
    name   TEXT NOT NULL,
    mark   TEXT NOT NULL,
    at     INTEGER NOT NULL,
    PRIMARY KEY (course, name, mark, at)
);
