-- The teachers' page: signed-in sessions, and sign-ins under way (their OIDC
-- `state`, `nonce` and PKCE verifier), kept here so that any replica can end a
-- sign-in another one started. Only a hash of the session cookie is stored.
CREATE TABLE page_sessions (
    hash       TEXT PRIMARY KEY,
    csrf       TEXT NOT NULL,
    subject    TEXT NOT NULL,
    name       TEXT NOT NULL,
    principal  TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX page_sessions_expiry ON page_sessions (expires_at);

CREATE TABLE page_sign_ins (
    state      TEXT PRIMARY KEY,
    provider   TEXT NOT NULL,
    nonce      TEXT NOT NULL,
    verifier   TEXT NOT NULL,
    return_to  TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
