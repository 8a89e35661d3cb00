-- Portcullis schema, Postgres. Times are unix seconds (BIGINT) so that SQL compares them correctly.
-- Secrets (codes, refresh tokens, client secrets, registration tokens) are stored as SHA-256 hashes.

CREATE TABLE users (
    id            UUID PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    display_name  TEXT,
    email         TEXT,
    disabled      BOOLEAN NOT NULL DEFAULT FALSE,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);

CREATE TABLE resources (
    id             UUID PRIMARY KEY,
    uri            TEXT NOT NULL UNIQUE,
    name           TEXT NOT NULL,
    token_lifetime BIGINT,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);

CREATE TABLE resource_scopes (
    resource_id UUID NOT NULL REFERENCES resources(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    description TEXT NOT NULL,
    is_default  BOOLEAN NOT NULL DEFAULT TRUE,
    position    BIGINT NOT NULL,
    PRIMARY KEY (resource_id, name)
);

CREATE TABLE clients (
    client_id               TEXT PRIMARY KEY,
    kind                    TEXT NOT NULL CHECK (kind IN ('static', 'dynamic', 'metadata_document')),
    client_name             TEXT,
    metadata                TEXT NOT NULL,
    secret_hash             BYTEA,
    registration_token_hash BYTEA,
    created_at              BIGINT NOT NULL,
    updated_at              BIGINT NOT NULL,
    last_used_at            BIGINT,
    metadata_expires_at     BIGINT
);
CREATE INDEX clients_kind_created ON clients (kind, created_at);

CREATE TABLE grants (
    id           UUID PRIMARY KEY,
    user_id      UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    client_id    TEXT NOT NULL REFERENCES clients(client_id) ON DELETE CASCADE,
    resource_id  UUID NOT NULL REFERENCES resources(id) ON DELETE CASCADE,
    scope        TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at   BIGINT
);
-- One live grant per person, client and MCP server; revoked ones stay for the audit trail.
CREATE UNIQUE INDEX grants_live ON grants (user_id, client_id, resource_id) WHERE revoked_at IS NULL;

CREATE TABLE authorization_codes (
    code_hash        BYTEA PRIMARY KEY,
    grant_id         UUID NOT NULL REFERENCES grants(id) ON DELETE CASCADE,
    client_id        TEXT NOT NULL,
    user_id          UUID NOT NULL,
    resource_id      UUID NOT NULL,
    redirect_uri     TEXT NOT NULL,
    scope            TEXT NOT NULL,
    code_challenge   TEXT NOT NULL,
    nonce            TEXT,
    auth_time        BIGINT NOT NULL,
    created_at       BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL,
    redeemed_at      BIGINT,
    -- What the redemption issued, so a replay can revoke it.
    issued_family_id UUID,
    issued_jti       TEXT
);
CREATE INDEX authorization_codes_expires ON authorization_codes (expires_at);

CREATE TABLE refresh_tokens (
    id               UUID PRIMARY KEY,
    token_hash       BYTEA NOT NULL UNIQUE,
    grant_id         UUID NOT NULL REFERENCES grants(id) ON DELETE CASCADE,
    family_id        UUID NOT NULL,
    parent_id        UUID,
    client_id        TEXT NOT NULL,
    scope            TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL,
    rotated_at       BIGINT,
    successor_id     UUID,
    -- The successor token sealed under a key derived from this token, for the grace window.
    successor_sealed BYTEA,
    revoked_at       BIGINT
);
CREATE INDEX refresh_tokens_grant ON refresh_tokens (grant_id);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_expires ON refresh_tokens (expires_at);

-- Access tokens revoked before expiry (by jti); introspection reads them.
CREATE TABLE revoked_access_tokens (
    jti        TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);

CREATE TABLE signing_keys (
    kid          TEXT PRIMARY KEY,
    alg          TEXT NOT NULL,
    public_jwk   TEXT NOT NULL,
    private_key  BYTEA NOT NULL,
    encrypted    BOOLEAN NOT NULL,
    created_at   BIGINT NOT NULL,
    activates_at BIGINT NOT NULL
);

CREATE TABLE audit_events (
    id        UUID PRIMARY KEY,
    at        BIGINT NOT NULL,
    event     TEXT NOT NULL,
    actor     TEXT,
    user_id   UUID,
    client_id TEXT,
    ip        TEXT,
    details   TEXT NOT NULL
);
CREATE INDEX audit_events_at ON audit_events (at);

CREATE TABLE web_sessions (
    id         TEXT PRIMARY KEY,
    data       BYTEA NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX web_sessions_expires ON web_sessions (expires_at);
