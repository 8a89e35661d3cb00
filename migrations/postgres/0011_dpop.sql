-- DPoP (RFC 9449): the key thumbprint (`jkt`) an authorization code (`dpop_jkt` at /authorize)
-- or a public client's refresh token is bound to; NULL: not bound.
ALTER TABLE authorization_codes ADD COLUMN dpop_jkt TEXT;
ALTER TABLE refresh_tokens ADD COLUMN dpop_jkt TEXT;

-- Secrets every node shares, created once by whichever node needs one first (the DPoP nonce key).
CREATE TABLE server_secrets (
    name       TEXT PRIMARY KEY,
    secret     BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);
