-- Indexes the background job's statements use, so that on a company-sized database each of its
-- batches is a range scan instead of a scan of the whole table (issue 18): the expiry sweep's
-- tables that had no index on their expiry, and what deleting a stale dynamic client cascades to
-- (its grants, their codes) and how the clean-up finds those clients.
CREATE INDEX revoked_access_tokens_expires ON revoked_access_tokens (expires_at);
CREATE INDEX used_client_assertions_expires ON used_client_assertions (expires_at);
CREATE INDEX login_throttle_updated ON login_throttle (updated_at);
CREATE INDEX grants_client ON grants (client_id);
CREATE INDEX authorization_codes_grant ON authorization_codes (grant_id);
CREATE INDEX clients_kind_last_used ON clients (kind, last_used_at);
