-- Builds are claimed (by `serve` or `trousse worker`) with a lease the
-- claimer renews while it builds; a build whose lease ran out is taken by
-- another. One unfinished build per key, whichever service asks: older rows
-- that shared a key while unfinished keep their build under a key of their own.
ALTER TABLE builds ADD COLUMN lease_owner TEXT;
ALTER TABLE builds ADD COLUMN lease_expires INTEGER;
UPDATE builds SET build_key = build_key || '#' || id
 WHERE status IN ('queued', 'building')
   AND id NOT IN (SELECT MIN(id) FROM builds WHERE status IN ('queued', 'building') GROUP BY build_key);
CREATE UNIQUE INDEX builds_unfinished_key ON builds (build_key) WHERE status IN ('queued', 'building');
CREATE INDEX builds_claimable ON builds (status, created_at);
