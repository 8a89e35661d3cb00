-- Hosts whose Client ID Metadata Documents are refused, blocked at run time by an operator (the
-- console or the admin API); beside the config file's cimd_deny_hosts. An entry covers its
-- subdomains.
CREATE TABLE blocked_hosts (
    host       TEXT PRIMARY KEY NOT NULL,
    blocked_by TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
