-- Submissions per caller per minute, counted in the store so that a limit
-- holds across every replica sharing it. Old minutes are pruned as they go.
CREATE TABLE rate_windows (
    caller TEXT NOT NULL,
    minute INTEGER NOT NULL,
    count  INTEGER NOT NULL,
    PRIMARY KEY (caller, minute)
);
