-- The order versions were recorded in, kept in a column of its own (both
-- stores have it; PostgreSQL has no rowid): the newest of two versions
-- built in one second is the one recorded last.
ALTER TABLE environment_digests ADD COLUMN seq INTEGER;
UPDATE environment_digests SET seq = rowid;
