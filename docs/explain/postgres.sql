\pset pager off
SELECT extract(epoch FROM now())::bigint AS now \gset
SELECT id AS sid FROM web_sessions WHERE expires_at > :now ORDER BY id LIMIT 1 OFFSET 777 \gset
SELECT id AS gid, user_id AS uid, client_id AS cid, resource_id AS rid FROM grants WHERE revoked_at IS NULL ORDER BY id LIMIT 1 OFFSET 123456 \gset
SELECT token_hash AS rt FROM refresh_tokens WHERE rotated_at IS NULL AND expires_at > :now ORDER BY id LIMIT 1 OFFSET 4321 \gset
SELECT code_hash AS code FROM authorization_codes ORDER BY created_at DESC LIMIT 1 OFFSET 50 \gset
SELECT client_id AS mcid FROM client_resources LIMIT 1 \gset
SELECT id AS auditid FROM audit_events ORDER BY at DESC LIMIT 1 OFFSET 50 \gset
\echo '=== web_sessions by id (session load) [authcode, refresh, login]'
EXPLAIN (ANALYZE, BUFFERS) SELECT data FROM web_sessions WHERE id = :'sid' AND expires_at > :now;
\echo '=== clients by id [authcode, refresh, client_credentials]'
EXPLAIN (ANALYZE, BUFFERS) SELECT client_id, kind, client_name, metadata, secret_hash, registration_token_hash, created_at, updated_at, last_used_at, metadata_expires_at FROM clients WHERE client_id = :'cid';
\echo '=== resources by uri with scopes [authcode]'
EXPLAIN (ANALYZE, BUFFERS) SELECT r.id, r.uri, r.name, r.token_lifetime, r.created_at, r.updated_at, r.introspection_id, r.introspection_secret_hash, r.allowed_groups, s.name AS scope_name, s.description AS scope_description, s.is_default AS scope_is_default, s.groups AS scope_groups FROM resources r LEFT JOIN resource_scopes s ON s.resource_id = r.id WHERE r.uri = 'https://mcp3.example.com/mcp' ORDER BY s.position;
\echo '=== grants standing (person + live grant) [authcode]'
EXPLAIN (ANALYZE, BUFFERS) SELECT NOT u.disabled AS enabled, g.id, g.user_id, g.client_id, g.resource_id, g.scope, g.created_at, g.updated_at, g.last_used_at, g.revoked_at, g.client_fingerprint FROM users u LEFT JOIN grants g ON g.user_id = u.id AND g.client_id = :'cid' AND g.resource_id = :'rid' AND g.revoked_at IS NULL WHERE u.id = :'uid';
\echo '=== authorization_codes insert [authcode]'
BEGIN;
EXPLAIN (ANALYZE, BUFFERS) INSERT INTO authorization_codes (code_hash, grant_id, client_id, user_id, resource_id, redirect_uri, scope, code_challenge, nonce, auth_time, created_at, expires_at, dpop_jkt) VALUES (sha256(convert_to(clock_timestamp()::text, 'UTF8')), :'gid', :'cid', :'uid', :'rid', 'http://127.0.0.1:5000/cb', 'tools', 'x', NULL, :now, :now, :now + 60, NULL);
ROLLBACK;
\echo '=== authorization_codes redeem (UPDATE ... RETURNING) [authcode]'
BEGIN;
EXPLAIN (ANALYZE, BUFFERS) UPDATE authorization_codes SET redeemed_at = :now, issued_jti = 'j', issued_family_id = :'gid' WHERE code_hash = :'code' AND redeemed_at IS NULL AND expires_at > :now - 100000000 RETURNING grant_id, client_id, user_id, resource_id, redirect_uri, scope, code_challenge, nonce, auth_time, created_at, expires_at, dpop_jkt, (SELECT r.uri FROM resources r WHERE r.id = authorization_codes.resource_id) AS resource_uri, (SELECT r.token_lifetime FROM resources r WHERE r.id = authorization_codes.resource_id) AS token_lifetime, (SELECT g.revoked_at IS NULL AND NOT u.disabled FROM grants g JOIN users u ON u.id = g.user_id WHERE g.id = authorization_codes.grant_id) AS grant_live, (SELECT g.last_used_at FROM grants g WHERE g.id = authorization_codes.grant_id) AS grant_last_used;
ROLLBACK;
\echo '=== refresh_tokens insert [authcode, refresh]'
BEGIN;
EXPLAIN (ANALYZE, BUFFERS) INSERT INTO refresh_tokens (id, token_hash, grant_id, family_id, parent_id, client_id, scope, created_at, expires_at, family_started_at, dpop_jkt) VALUES (gen_random_uuid(), sha256(convert_to(clock_timestamp()::text, 'UTF8')), :'gid', gen_random_uuid(), NULL, :'cid', 'tools', :now, :now + 2592000, :now, NULL);
ROLLBACK;
\echo '=== refresh_tokens by hash, locked (rotation) [refresh]'
BEGIN;
EXPLAIN (ANALYZE, BUFFERS) SELECT t.id, t.grant_id, t.family_id, t.client_id, t.scope, t.created_at, t.expires_at, t.rotated_at, t.family_started_at, t.successor_id, t.successor_sealed, t.revoked_at, t.dpop_jkt, g.user_id, g.resource_id, (g.revoked_at IS NULL AND NOT u.disabled) AS grant_live, g.last_used_at AS grant_last_used_at, r.uri AS resource_uri, r.token_lifetime, (r.allowed_groups <> '[]' OR EXISTS (SELECT 1 FROM resource_scopes s WHERE s.resource_id = r.id AND s.groups <> '[]')) AS restricted FROM refresh_tokens t JOIN grants g ON g.id = t.grant_id JOIN users u ON u.id = g.user_id JOIN resources r ON r.id = g.resource_id WHERE t.token_hash = :'rt' FOR UPDATE OF t;
ROLLBACK;
\echo '=== refresh_tokens mark rotated [refresh]'
BEGIN;
EXPLAIN (ANALYZE, BUFFERS) UPDATE refresh_tokens SET rotated_at = :now, successor_id = gen_random_uuid(), successor_sealed = sha256(convert_to(clock_timestamp()::text, 'UTF8')) WHERE id = (SELECT id FROM refresh_tokens WHERE token_hash = :'rt') AND rotated_at IS NULL;
ROLLBACK;
\echo '=== introspection (caller + token liveness) [introspect]'
EXPLAIN (ANALYZE, BUFFERS) SELECT id, uri, name, token_lifetime, created_at, updated_at, introspection_id, introspection_secret_hash, allowed_groups, NOT EXISTS (SELECT 1 FROM revoked_access_tokens WHERE jti = 'jti-none') AND EXISTS (SELECT 1 FROM grants g JOIN users u ON u.id = g.user_id WHERE g.user_id = :'uid' AND g.client_id = :'cid' AND g.resource_id = resources.id AND g.revoked_at IS NULL AND NOT u.disabled AND g.created_at <= :now) AS token_live FROM resources WHERE introspection_id = 'rs-seed-3';
\echo '=== clients insert (registration) [register]'
BEGIN;
EXPLAIN (ANALYZE, BUFFERS) INSERT INTO clients (client_id, kind, client_name, metadata, secret_hash, registration_token_hash, created_at, updated_at, metadata_expires_at, registered_ip, registered_net) VALUES ('explain-new-client', 'dynamic', 'X', '{}', NULL, sha256(convert_to(clock_timestamp()::text, 'UTF8')), :now, :now, NULL, '127.0.0.1', '127.0.0.1') RETURNING client_id, kind, client_name, metadata, secret_hash, registration_token_hash, created_at, updated_at, last_used_at, metadata_expires_at;
ROLLBACK;
\echo '=== audit_events insert [register, client_credentials, login]'
BEGIN;
EXPLAIN (ANALYZE, BUFFERS) INSERT INTO audit_events (id, at, event, actor, user_id, client_id, ip, details) VALUES (gen_random_uuid(), :now, 'client_registered', NULL, NULL, :'cid', '127.0.0.1', '{}');
ROLLBACK;
\echo '=== dynamic client count (max_dynamic_clients, every 5 s) [register]'
EXPLAIN (ANALYZE, BUFFERS) SELECT COUNT(*) FROM clients WHERE kind = 'dynamic';
\echo '=== machine client reach [client_credentials]'
EXPLAIN (ANALYZE, BUFFERS) SELECT r.uri, r.token_lifetime, a.scope, s.name AS scope_name FROM client_resources a JOIN resources r ON r.id = a.resource_id LEFT JOIN resource_scopes s ON s.resource_id = r.id WHERE a.client_id = :'mcid' ORDER BY r.uri, s.position;
\echo '=== users by username [login]'
EXPLAIN (ANALYZE, BUFFERS) SELECT id, username, password_hash, display_name, email, disabled, created_at, updated_at, is_admin, sessions_not_before FROM users WHERE username = 'person12345';
\echo '=== login_throttle count (upsert) [login]'
BEGIN;
EXPLAIN (ANALYZE, BUFFERS) INSERT INTO login_throttle (key, failures, locked_until, updated_at) VALUES ('pair:x', 1, 0, :now) ON CONFLICT (key) DO UPDATE SET failures = CASE WHEN login_throttle.updated_at > :now - 86400 THEN login_throttle.failures + 1 ELSE 1 END, updated_at = excluded.updated_at RETURNING failures, locked_until;
ROLLBACK;
\echo '=== web_sessions insert [login]'
BEGIN;
EXPLAIN (ANALYZE, BUFFERS) INSERT INTO web_sessions (id, data, expires_at, pending_from) VALUES ('explain-session', sha256(convert_to(clock_timestamp()::text, 'UTF8')), :now + 43200, NULL) ON CONFLICT (id) DO NOTHING;
ROLLBACK;
\echo '=== sweep: authorization_codes batch [sweep]'
BEGIN;
EXPLAIN (ANALYZE, BUFFERS) DELETE FROM authorization_codes WHERE ctid = ANY(ARRAY(SELECT ctid FROM authorization_codes WHERE expires_at < :now - 86400 ORDER BY expires_at LIMIT 500 FOR UPDATE SKIP LOCKED));
ROLLBACK;
\echo '=== sweep: web_sessions batch [sweep]'
BEGIN;
EXPLAIN (ANALYZE, BUFFERS) DELETE FROM web_sessions WHERE ctid = ANY(ARRAY(SELECT ctid FROM web_sessions WHERE expires_at < :now ORDER BY expires_at LIMIT 500 FOR UPDATE SKIP LOCKED));
ROLLBACK;
\echo '=== sweep: revoked_access_tokens batch [sweep]'
BEGIN;
EXPLAIN (ANALYZE, BUFFERS) DELETE FROM revoked_access_tokens WHERE ctid = ANY(ARRAY(SELECT ctid FROM revoked_access_tokens WHERE expires_at < :now ORDER BY expires_at LIMIT 500 FOR UPDATE SKIP LOCKED));
ROLLBACK;
\echo '=== sweep: refresh_tokens batch [sweep]'
BEGIN;
EXPLAIN (ANALYZE, BUFFERS) DELETE FROM refresh_tokens WHERE ctid = ANY(ARRAY(SELECT ctid FROM refresh_tokens WHERE expires_at < :now - 86400 ORDER BY expires_at LIMIT 500 FOR UPDATE SKIP LOCKED));
ROLLBACK;
\echo '=== sweep: used_client_assertions batch [sweep]'
BEGIN;
EXPLAIN (ANALYZE, BUFFERS) DELETE FROM used_client_assertions WHERE ctid = ANY(ARRAY(SELECT ctid FROM used_client_assertions WHERE expires_at < :now ORDER BY expires_at LIMIT 500 FOR UPDATE SKIP LOCKED));
ROLLBACK;
\echo '=== sweep: login_throttle batch [sweep]'
BEGIN;
EXPLAIN (ANALYZE, BUFFERS) DELETE FROM login_throttle WHERE ctid = ANY(ARRAY(SELECT ctid FROM login_throttle WHERE updated_at < :now - 86400 AND locked_until < :now ORDER BY updated_at LIMIT 500 FOR UPDATE SKIP LOCKED));
ROLLBACK;
\echo '=== sweep: audit_events past retention (365 d) batch [sweep]'
BEGIN;
EXPLAIN (ANALYZE, BUFFERS) DELETE FROM audit_events WHERE id IN (SELECT id FROM audit_events WHERE at < :now - 31536000 ORDER BY at LIMIT 1000);
ROLLBACK;
\echo '=== clean-up: stale dynamic clients, one batch of at most 50 (cascades to grants, codes, refresh tokens) [sweep]'
BEGIN;
EXPLAIN (ANALYZE, BUFFERS) DELETE FROM clients WHERE ctid = ANY(ARRAY(SELECT ctid FROM clients WHERE kind = 'dynamic' AND ((last_used_at IS NULL AND created_at < :now - 86400) OR (last_used_at IS NOT NULL AND last_used_at < :now - 7776000)) LIMIT 50 FOR UPDATE SKIP LOCKED)) RETURNING client_id;
ROLLBACK;
\echo '=== audit listing: newest 50 [admin]'
EXPLAIN (ANALYZE, BUFFERS) SELECT id, at, event, actor, user_id, client_id, ip, details FROM audit_events WHERE (CAST(NULL AS TEXT) IS NULL OR event = CAST(NULL AS TEXT)) AND (CAST(NULL AS TEXT) IS NULL OR actor = CAST(NULL AS TEXT)) AND (CAST(NULL AS TEXT) IS NULL OR client_id = CAST(NULL AS TEXT)) AND (CAST(NULL AS BIGINT) IS NULL OR at >= CAST(NULL AS BIGINT)) AND (CAST(NULL AS UUID) IS NULL OR id < CAST(NULL AS UUID)) ORDER BY at DESC, id DESC LIMIT 50;
\echo '=== audit listing: one event (login_failed) [admin]'
EXPLAIN (ANALYZE, BUFFERS) SELECT id, at, event, actor, user_id, client_id, ip, details FROM audit_events WHERE ('login_failed' IS NULL OR event = 'login_failed') AND (CAST(NULL AS TEXT) IS NULL OR actor = CAST(NULL AS TEXT)) AND (CAST(NULL AS TEXT) IS NULL OR client_id = CAST(NULL AS TEXT)) AND (CAST(NULL AS BIGINT) IS NULL OR at >= CAST(NULL AS BIGINT)) AND (CAST(NULL AS UUID) IS NULL OR id < CAST(NULL AS UUID)) ORDER BY at DESC, id DESC LIMIT 50;
\echo '=== audit listing: rare event (cli_change), next page [admin]'
EXPLAIN (ANALYZE, BUFFERS) SELECT id, at, event, actor, user_id, client_id, ip, details FROM audit_events WHERE ('cli_change' IS NULL OR event = 'cli_change') AND (CAST(NULL AS TEXT) IS NULL OR actor = CAST(NULL AS TEXT)) AND (CAST(NULL AS TEXT) IS NULL OR client_id = CAST(NULL AS TEXT)) AND (CAST(NULL AS BIGINT) IS NULL OR at >= CAST(NULL AS BIGINT)) AND (:'auditid' IS NULL OR id < :'auditid') ORDER BY at DESC, id DESC LIMIT 50;
\echo '=== audit listing: one client [admin]'
EXPLAIN (ANALYZE, BUFFERS) SELECT id, at, event, actor, user_id, client_id, ip, details FROM audit_events WHERE (CAST(NULL AS TEXT) IS NULL OR event = CAST(NULL AS TEXT)) AND (CAST(NULL AS TEXT) IS NULL OR actor = CAST(NULL AS TEXT)) AND (:'cid' IS NULL OR client_id = :'cid') AND (CAST(NULL AS BIGINT) IS NULL OR at >= CAST(NULL AS BIGINT)) AND (CAST(NULL AS UUID) IS NULL OR id < CAST(NULL AS UUID)) ORDER BY at DESC, id DESC LIMIT 50;
\echo '=== audit listing, one event: the generic plan of the prepared statement'
SET plan_cache_mode = force_generic_plan;
PREPARE audit_search(text, text, text, bigint, bigint, uuid) AS SELECT id, at, event, actor, user_id, client_id, ip, details FROM audit_events WHERE ($1 IS NULL OR event = $1) AND ($2 IS NULL OR actor = $2) AND ($3 IS NULL OR client_id = $3) AND ($4 IS NULL OR at >= $4) AND ($6 IS NULL OR id < $6) ORDER BY at DESC, id DESC LIMIT $5;
EXPLAIN (ANALYZE, BUFFERS) EXECUTE audit_search('login_failed', NULL, NULL, NULL, 50, NULL);
EXPLAIN (ANALYZE, BUFFERS) EXECUTE audit_search('cli_change', NULL, NULL, NULL, 50, NULL);
RESET plan_cache_mode;
