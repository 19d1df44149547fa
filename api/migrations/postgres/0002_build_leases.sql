-- Builds are claimed (by `serve` or `trousse worker`) with a lease the
-- claimer renews while it builds; a build whose lease ran out is taken by
-- another. One unfinished build per key, whichever replica asks.
ALTER TABLE builds ADD COLUMN lease_owner TEXT;
ALTER TABLE builds ADD COLUMN lease_expires BIGINT;
CREATE UNIQUE INDEX builds_unfinished_key ON builds (build_key) WHERE status IN ('queued', 'building');
CREATE INDEX builds_claimable ON builds (status, created_at);
