-- Submissions per caller per minute, counted in the store so that a limit
-- holds across every replica sharing it. Old minutes are pruned as they go.
CREATE TABLE rate_windows (
    caller TEXT NOT NULL,
    minute BIGINT NOT NULL,
    count  BIGINT NOT NULL,
    PRIMARY KEY (caller, minute)
);
