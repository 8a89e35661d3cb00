-- Admin API tokens: named, hashed at rest (SHA-256 of a 256-bit random token), expiring,
-- revocable. Created with `portcullis admin-token create`.
CREATE TABLE admin_tokens (
    id           UUID PRIMARY KEY,
    name         TEXT NOT NULL UNIQUE,
    token_hash   BYTEA NOT NULL UNIQUE,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT,
    revoked_at   BIGINT,
    last_used_at BIGINT
);
