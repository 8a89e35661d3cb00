-- Client lifecycle and metadata documents: who registered from where (per-IP limits shared by every
-- node), the fetched logo served from here, what a grant was consented against, initial access
-- tokens for closed registration, and used client-assertion ids (RFC 7523 replay protection).
ALTER TABLE clients ADD COLUMN registered_ip TEXT;
ALTER TABLE clients ADD COLUMN logo BLOB;
ALTER TABLE clients ADD COLUMN logo_content_type TEXT;
CREATE INDEX clients_registered_ip ON clients (registered_ip, created_at);

ALTER TABLE grants ADD COLUMN client_fingerprint TEXT;

CREATE TABLE initial_access_tokens (
    token_hash BLOB PRIMARY KEY NOT NULL,
    label      TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    revoked_at INTEGER
);

CREATE TABLE used_client_assertions (
    id         TEXT PRIMARY KEY NOT NULL,
    expires_at INTEGER NOT NULL
);
