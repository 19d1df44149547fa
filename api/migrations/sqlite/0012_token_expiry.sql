-- Tokens may expire (seconds since the epoch; NULL: never, as every token
-- made before this). An expired token is refused like an unknown one.
ALTER TABLE tokens ADD COLUMN expires_at INTEGER;
