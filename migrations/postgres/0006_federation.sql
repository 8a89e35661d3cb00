-- Company sign-in: people linked to upstream identity providers, groups, access policy by group,
-- the admin role, and a per-person "sessions before this instant are over" mark (back-channel
-- logout). People who only sign in upstream have an empty password_hash, which never verifies.
ALTER TABLE users ADD COLUMN is_admin BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE users ADD COLUMN sessions_not_before BIGINT NOT NULL DEFAULT 0;

CREATE TABLE user_identities (
    provider      TEXT NOT NULL,
    subject       TEXT NOT NULL,
    user_id       UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    email         TEXT,
    -- the provider's session id (`sid`) of the latest sign-in, for back-channel logout by sid
    session_id    TEXT,
    created_at    BIGINT NOT NULL,
    last_login_at BIGINT NOT NULL,
    PRIMARY KEY (provider, subject)
);
CREATE INDEX user_identities_by_user ON user_identities (user_id);

-- source: 'local' (managed with `portcullis group`) or the provider id that reported the group;
-- a provider's groups are replaced at each sign-in through it.
CREATE TABLE user_groups (
    user_id UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name    TEXT NOT NULL,
    source  TEXT NOT NULL,
    PRIMARY KEY (user_id, name, source)
);
CREATE INDEX user_groups_by_name ON user_groups (name);

-- JSON arrays of group names; empty: everyone.
ALTER TABLE resources ADD COLUMN allowed_groups TEXT NOT NULL DEFAULT '[]';
ALTER TABLE resource_scopes ADD COLUMN groups TEXT NOT NULL DEFAULT '[]';
