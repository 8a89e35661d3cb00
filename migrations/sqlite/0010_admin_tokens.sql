-- Admin API tokens: named, hashed at rest (SHA-256 of a 256-bit random token), expiring,
-- revocable. Created with `portcullis admin-token create`.
CREATE TABLE admin_tokens (
    id           BLOB PRIMARY KEY NOT NULL,
    name         TEXT NOT NULL UNIQUE,
    token_hash   BLOB NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    revoked_at   INTEGER,
    last_used_at INTEGER
);
