-- The id of the request that queued a build: its logs, wherever it is built,
-- carry it (X-Request-Id, or one the service made).
ALTER TABLE builds ADD COLUMN request_id TEXT;
