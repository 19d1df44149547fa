-- The git repository an environment was built from, as JSON
-- ({"url", "reference", "commit", "submodules"}); NULL for a spec or a lock.
ALTER TABLE environments ADD COLUMN source TEXT;
