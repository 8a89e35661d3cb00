-- Credentials a resource server (MCP server) uses to call /introspect. The id is public, the secret
-- stored as a SHA-256 hash.
ALTER TABLE resources ADD COLUMN introspection_id TEXT;
ALTER TABLE resources ADD COLUMN introspection_secret_hash BLOB;
CREATE UNIQUE INDEX resources_introspection_id ON resources (introspection_id);
