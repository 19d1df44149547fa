-- Tokens may expire (seconds since the epoch; NULL: never).
ALTER TABLE tokens ADD COLUMN expires_at BIGINT;
