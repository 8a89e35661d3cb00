-- Portcullis schema, SQLite. Times are unix seconds (INTEGER) so that SQL compares them correctly.
-- Secrets (codes, refresh tokens, client secrets, registration tokens) are stored as SHA-256 hashes.

CREATE TABLE users (
    id            BLOB PRIMARY KEY NOT NULL,
    username      TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    display_name  TEXT,
    email         TEXT,
    disabled      INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);

CREATE TABLE resources (
    id             BLOB PRIMARY KEY NOT NULL,
    uri            TEXT NOT NULL UNIQUE,
    name           TEXT NOT NULL,
    token_lifetime INTEGER,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
);

CREATE TABLE resource_scopes (
    resource_id BLOB NOT NULL REFERENCES resources(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    description TEXT NOT NULL,
    is_default  INTEGER NOT NULL DEFAULT 1,
    position    INTEGER NOT NULL,
    PRIMARY KEY (resource_id, name)
);

CREATE TABLE clients (
    client_id               TEXT PRIMARY KEY NOT NULL,
    kind                    TEXT NOT NULL CHECK (kind IN ('static', 'dynamic', 'metadata_document')),
    client_name             TEXT,
    metadata                TEXT NOT NULL,
    secret_hash             BLOB,
    registration_token_hash BLOB,
    created_at              INTEGER NOT NULL,
    updated_at              INTEGER NOT NULL,
    last_used_at            INTEGER,
    metadata_expires_at     INTEGER
);
CREATE INDEX clients_kind_created ON clients (kind, created_at);

CREATE TABLE grants (
    id           BLOB PRIMARY KEY NOT NULL,
    user_id      BLOB NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    client_id    TEXT NOT NULL REFERENCES clients(client_id) ON DELETE CASCADE,
    resource_id  BLOB NOT NULL REFERENCES resources(id) ON DELETE CASCADE,
    scope        TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked_at   INTEGER
);
-- One live grant per person, client and MCP server; revoked ones stay for the audit trail.
CREATE UNIQUE INDEX grants_live ON grants (user_id, client_id, resource_id) WHERE revoked_at IS NULL;

CREATE TABLE authorization_codes (
    code_hash        BLOB PRIMARY KEY NOT NULL,
    grant_id         BLOB NOT NULL REFERENCES grants(id) ON DELETE CASCADE,
    client_id        TEXT NOT NULL,
    user_id          BLOB NOT NULL,
    resource_id      BLOB NOT NULL,
    redirect_uri     TEXT NOT NULL,
    scope            TEXT NOT NULL,
    code_challenge   TEXT NOT NULL,
    nonce            TEXT,
    auth_time        INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL,
    redeemed_at      INTEGER,
    -- What the redemption issued, so a replay can revoke it.
    issued_family_id BLOB,
    issued_jti       TEXT
);
CREATE INDEX authorization_codes_expires ON authorization_codes (expires_at);

CREATE TABLE refresh_tokens (
    id               BLOB PRIMARY KEY NOT NULL,
    token_hash       BLOB NOT NULL UNIQUE,
    grant_id         BLOB NOT NULL REFERENCES grants(id) ON DELETE CASCADE,
    family_id        BLOB NOT NULL,
    parent_id        BLOB,
    client_id        TEXT NOT NULL,
    scope            TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL,
    rotated_at       INTEGER,
    successor_id     BLOB,
    -- The successor token sealed under a key derived from this token, for the grace window.
    successor_sealed BLOB,
    revoked_at       INTEGER
);
CREATE INDEX refresh_tokens_grant ON refresh_tokens (grant_id);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_expires ON refresh_tokens (expires_at);

-- Access tokens revoked before expiry (by jti); introspection reads them.
CREATE TABLE revoked_access_tokens (
    jti        TEXT PRIMARY KEY NOT NULL,
    expires_at INTEGER NOT NULL
);

CREATE TABLE signing_keys (
    kid          TEXT PRIMARY KEY NOT NULL,
    alg          TEXT NOT NULL,
    public_jwk   TEXT NOT NULL,
    private_key  BLOB NOT NULL,
    encrypted    INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    activates_at INTEGER NOT NULL
);

CREATE TABLE audit_events (
    id        BLOB PRIMARY KEY NOT NULL,
    at        INTEGER NOT NULL,
    event     TEXT NOT NULL,
    actor     TEXT,
    user_id   BLOB,
    client_id TEXT,
    ip        TEXT,
    details   TEXT NOT NULL
);
CREATE INDEX audit_events_at ON audit_events (at);

CREATE TABLE web_sessions (
    id         TEXT PRIMARY KEY NOT NULL,
    data       BLOB NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX web_sessions_expires ON web_sessions (expires_at);
