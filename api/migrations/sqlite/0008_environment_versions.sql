-- Each digest an environment has had keeps the lock and package count it was
-- built from, so a teacher can make an earlier version current again (roll
-- back). Versions recorded before this have none: they cannot be restored.
ALTER TABLE environment_digests ADD COLUMN lock TEXT;
ALTER TABLE environment_digests ADD COLUMN packages INTEGER;
