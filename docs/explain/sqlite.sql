.print '=== web_sessions by id (session load) [authcode, refresh, login]'
EXPLAIN QUERY PLAN SELECT data FROM web_sessions WHERE id = 's' AND expires_at > 1800000000;
.print '=== clients by id [authcode, refresh, client_credentials]'
EXPLAIN QUERY PLAN SELECT client_id, kind, client_name, metadata, secret_hash, registration_token_hash, created_at, updated_at, last_used_at, metadata_expires_at FROM clients WHERE client_id = 'c';
.print '=== resources by uri with scopes [authcode]'
EXPLAIN QUERY PLAN SELECT r.id, r.uri, r.name, r.token_lifetime, r.created_at, r.updated_at, r.introspection_id, r.introspection_secret_hash, r.allowed_groups, s.name AS scope_name, s.description AS scope_description, s.is_default AS scope_is_default, s.groups AS scope_groups FROM resources r LEFT JOIN resource_scopes s ON s.resource_id = r.id WHERE r.uri = 'https://mcp3.example.com/mcp' ORDER BY s.position;
.print '=== grants standing (person + live grant) [authcode]'
EXPLAIN QUERY PLAN SELECT NOT u.disabled AS enabled, g.id, g.user_id, g.client_id, g.resource_id, g.scope, g.created_at, g.updated_at, g.last_used_at, g.revoked_at, g.client_fingerprint FROM users u LEFT JOIN grants g ON g.user_id = u.id AND g.client_id = 'c' AND g.resource_id = X'00' AND g.revoked_at IS NULL WHERE u.id = X'00';
.print '=== authorization_codes insert [authcode]'
EXPLAIN QUERY PLAN INSERT INTO authorization_codes (code_hash, grant_id, client_id, user_id, resource_id, redirect_uri, scope, code_challenge, nonce, auth_time, created_at, expires_at, dpop_jkt) VALUES (randomblob(32), X'00', 'c', X'00', X'00', 'http://127.0.0.1:5000/cb', 'tools', 'x', NULL, 1800000000, 1800000000, 1800000000 + 60, NULL);
.print '=== authorization_codes redeem (UPDATE ... RETURNING) [authcode]'
EXPLAIN QUERY PLAN UPDATE authorization_codes SET redeemed_at = 1800000000, issued_jti = 'j', issued_family_id = X'00' WHERE code_hash = X'00' AND redeemed_at IS NULL AND expires_at > 1800000000 - 100000000 RETURNING grant_id, client_id, user_id, resource_id, redirect_uri, scope, code_challenge, nonce, auth_time, created_at, expires_at, dpop_jkt, (SELECT r.uri FROM resources r WHERE r.id = authorization_codes.resource_id) AS resource_uri, (SELECT r.token_lifetime FROM resources r WHERE r.id = authorization_codes.resource_id) AS token_lifetime, (SELECT g.revoked_at IS NULL AND NOT u.disabled FROM grants g JOIN users u ON u.id = g.user_id WHERE g.id = authorization_codes.grant_id) AS grant_live, (SELECT g.last_used_at FROM grants g WHERE g.id = authorization_codes.grant_id) AS grant_last_used;
.print '=== refresh_tokens insert [authcode, refresh]'
EXPLAIN QUERY PLAN INSERT INTO refresh_tokens (id, token_hash, grant_id, family_id, parent_id, client_id, scope, created_at, expires_at, family_started_at, dpop_jkt) VALUES (randomblob(16), randomblob(32), X'00', randomblob(16), NULL, 'c', 'tools', 1800000000, 1800000000 + 2592000, 1800000000, NULL);
.print '=== refresh_tokens by hash, locked (rotation) [refresh]'
EXPLAIN QUERY PLAN SELECT t.id, t.grant_id, t.family_id, t.client_id, t.scope, t.created_at, t.expires_at, t.rotated_at, t.family_started_at, t.successor_id, t.successor_sealed, t.revoked_at, t.dpop_jkt, g.user_id, g.resource_id, (g.revoked_at IS NULL AND NOT u.disabled) AS grant_live, g.last_used_at AS grant_last_used_at, r.uri AS resource_uri, r.token_lifetime, (r.allowed_groups <> '[]' OR EXISTS (SELECT 1 FROM resource_scopes s WHERE s.resource_id = r.id AND s.groups <> '[]')) AS restricted FROM refresh_tokens t JOIN grants g ON g.id = t.grant_id JOIN users u ON u.id = g.user_id JOIN resources r ON r.id = g.resource_id WHERE t.token_hash = X'00';
.print '=== refresh_tokens mark rotated [refresh]'
EXPLAIN QUERY PLAN UPDATE refresh_tokens SET rotated_at = 1800000000, successor_id = randomblob(16), successor_sealed = randomblob(32) WHERE id = (SELECT id FROM refresh_tokens WHERE token_hash = X'00') AND rotated_at IS NULL;
.print '=== introspection (caller + token liveness) [introspect]'
EXPLAIN QUERY PLAN SELECT id, uri, name, token_lifetime, created_at, updated_at, introspection_id, introspection_secret_hash, allowed_groups, NOT EXISTS (SELECT 1 FROM revoked_access_tokens WHERE jti = 'jti-none') AND EXISTS (SELECT 1 FROM grants g JOIN users u ON u.id = g.user_id WHERE g.user_id = X'00' AND g.client_id = 'c' AND g.resource_id = resources.id AND g.revoked_at IS NULL AND NOT u.disabled AND g.created_at <= 1800000000) AS token_live FROM resources WHERE introspection_id = 'rs-seed-3';
.print '=== clients insert (registration) [register]'
EXPLAIN QUERY PLAN INSERT INTO clients (client_id, kind, client_name, metadata, secret_hash, registration_token_hash, created_at, updated_at, metadata_expires_at, registered_ip, registered_net) VALUES ('explain-new-client', 'dynamic', 'X', '{}', NULL, randomblob(32), 1800000000, 1800000000, NULL, '127.0.0.1', '127.0.0.1') RETURNING client_id, kind, client_name, metadata, secret_hash, registration_token_hash, created_at, updated_at, last_used_at, metadata_expires_at;
.print '=== audit_events insert [register, client_credentials, login]'
EXPLAIN QUERY PLAN INSERT INTO audit_events (id, at, event, actor, user_id, client_id, ip, details) VALUES (randomblob(16), 1800000000, 'client_registered', NULL, NULL, 'c', '127.0.0.1', '{}');
.print '=== dynamic client count (max_dynamic_clients, every 5 s) [register]'
EXPLAIN QUERY PLAN SELECT COUNT(*) FROM clients WHERE kind = 'dynamic';
.print '=== machine client reach [client_credentials]'
EXPLAIN QUERY PLAN SELECT r.uri, r.token_lifetime, a.scope, s.name AS scope_name FROM client_resources a JOIN resources r ON r.id = a.resource_id LEFT JOIN resource_scopes s ON s.resource_id = r.id WHERE a.client_id = 'c' ORDER BY r.uri, s.position;
.print '=== users by username [login]'
EXPLAIN QUERY PLAN SELECT id, username, password_hash, display_name, email, disabled, created_at, updated_at, is_admin, sessions_not_before FROM users WHERE username = 'person12345';
.print '=== login_throttle count (upsert) [login]'
EXPLAIN QUERY PLAN INSERT INTO login_throttle (key, failures, locked_until, updated_at) VALUES ('pair:x', 1, 0, 1800000000) ON CONFLICT (key) DO UPDATE SET failures = CASE WHEN login_throttle.updated_at > 1800000000 - 86400 THEN login_throttle.failures + 1 ELSE 1 END, updated_at = excluded.updated_at RETURNING failures, locked_until;
.print '=== web_sessions insert [login]'
EXPLAIN QUERY PLAN INSERT INTO web_sessions (id, data, expires_at, pending_from) VALUES ('explain-session', randomblob(32), 1800000000 + 43200, NULL) ON CONFLICT (id) DO NOTHING;
.print '=== sweep: authorization_codes batch [sweep]'
EXPLAIN QUERY PLAN DELETE FROM authorization_codes WHERE rowid IN (SELECT rowid FROM authorization_codes WHERE expires_at < 1800000000 - 86400 ORDER BY expires_at LIMIT 500);
.print '=== sweep: web_sessions batch [sweep]'
EXPLAIN QUERY PLAN DELETE FROM web_sessions WHERE rowid IN (SELECT rowid FROM web_sessions WHERE expires_at < 1800000000 ORDER BY expires_at LIMIT 500);
.print '=== sweep: revoked_access_tokens batch [sweep]'
EXPLAIN QUERY PLAN DELETE FROM revoked_access_tokens WHERE rowid IN (SELECT rowid FROM revoked_access_tokens WHERE expires_at < 1800000000 ORDER BY expires_at LIMIT 500);
.print '=== sweep: refresh_tokens batch [sweep]'
EXPLAIN QUERY PLAN DELETE FROM refresh_tokens WHERE rowid IN (SELECT rowid FROM refresh_tokens WHERE expires_at < 1800000000 - 86400 ORDER BY expires_at LIMIT 500);
.print '=== sweep: used_client_assertions batch [sweep]'
EXPLAIN QUERY PLAN DELETE FROM used_client_assertions WHERE rowid IN (SELECT rowid FROM used_client_assertions WHERE expires_at < 1800000000 ORDER BY expires_at LIMIT 500);
.print '=== sweep: login_throttle batch [sweep]'
EXPLAIN QUERY PLAN DELETE FROM login_throttle WHERE rowid IN (SELECT rowid FROM login_throttle WHERE updated_at < 1800000000 - 86400 AND locked_until < 1800000000 ORDER BY updated_at LIMIT 500);
.print '=== sweep: audit_events past retention (365 d) batch [sweep]'
EXPLAIN QUERY PLAN DELETE FROM audit_events WHERE id IN (SELECT id FROM audit_events WHERE at < 1800000000 - 31536000 ORDER BY at LIMIT 1000);
.print '=== clean-up: stale dynamic clients, one batch of at most 50 (cascades to grants, codes, refresh tokens) [sweep]'
EXPLAIN QUERY PLAN DELETE FROM clients WHERE rowid IN (SELECT rowid FROM clients WHERE kind = 'dynamic' AND ((last_used_at IS NULL AND created_at < 1800000000 - 86400) OR (last_used_at IS NOT NULL AND last_used_at < 1800000000 - 7776000)) LIMIT 50) RETURNING client_id;
.print '=== audit listing: newest 50 [admin]'
EXPLAIN QUERY PLAN SELECT id, at, event, actor, user_id, client_id, ip, details FROM audit_events WHERE (NULL IS NULL OR event = NULL) AND (NULL IS NULL OR actor = NULL) AND (NULL IS NULL OR client_id = NULL) AND (NULL IS NULL OR at >= NULL) AND (NULL IS NULL OR id < NULL) ORDER BY at DESC, id DESC LIMIT 50;
.print '=== audit listing: one event (login_failed) [admin]'
EXPLAIN QUERY PLAN SELECT id, at, event, actor, user_id, client_id, ip, details FROM audit_events WHERE ('login_failed' IS NULL OR event = 'login_failed') AND (NULL IS NULL OR actor = NULL) AND (NULL IS NULL OR client_id = NULL) AND (NULL IS NULL OR at >= NULL) AND (NULL IS NULL OR id < NULL) ORDER BY at DESC, id DESC LIMIT 50;
.print '=== audit listing: rare event (cli_change), next page [admin]'
EXPLAIN QUERY PLAN SELECT id, at, event, actor, user_id, client_id, ip, details FROM audit_events WHERE ('cli_change' IS NULL OR event = 'cli_change') AND (NULL IS NULL OR actor = NULL) AND (NULL IS NULL OR client_id = NULL) AND (NULL IS NULL OR at >= NULL) AND (X'00' IS NULL OR id < X'00') ORDER BY at DESC, id DESC LIMIT 50;
.print '=== audit listing: one client [admin]'
EXPLAIN QUERY PLAN SELECT id, at, event, actor, user_id, client_id, ip, details FROM audit_events WHERE (NULL IS NULL OR event = NULL) AND (NULL IS NULL OR actor = NULL) AND ('c' IS NULL OR client_id = 'c') AND (NULL IS NULL OR at >= NULL) AND (NULL IS NULL OR id < NULL) ORDER BY at DESC, id DESC LIMIT 50;
