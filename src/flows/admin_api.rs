//! The admin API (`/admin/api`): the operator's operations as JSON, for automation. Authenticated
//! by admin tokens (`portcullis admin-token create`); every change is audited with the token's
//! name as actor. The operations are the CLI's (`crate::admin`), so both check the same way.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::admin::{self, AdminError, ResourceSpec};
use crate::state::AppState;
use crate::store::{self, StoreError, audit};
use crate::tokens::secrets;

/// An admin API error: a stable `error` code, a sentence, and the HTTP status.
#[derive(Debug, Clone)]
pub struct AdminApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl AdminApiError {
    fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        AdminApiError { status, code, message: message.into() }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(400, "invalid_input", message)
    }
}

impl From<StoreError> for AdminApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(m) => Self::new(409, "conflict", m),
            StoreError::NotFound => Self::new(404, "not_found", "no such object"),
            StoreError::InvalidInput => Self::invalid("the input contains characters that are not allowed"),
            e => {
                tracing::error!(error = %e, "admin API: store failure");
                Self::new(503, "unavailable", "the database is unavailable; try again")
            }
        }
    }
}

impl From<AdminError> for AdminApiError {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::Invalid(m) => Self::invalid(m),
            AdminError::NotFound(m) => Self::new(404, "not_found", m),
            AdminError::Password(p) => Self::invalid(p.to_string()),
            AdminError::Store(s) => s.into(),
        }
    }
}

/// Who is calling: the admin token's name.
#[derive(Debug, Clone)]
pub struct Actor(pub String);

/// The admin token in `Authorization: Bearer`, if it is live.
pub async fn authenticate(state: &AppState, bearer: Option<&str>) -> Result<Actor, AdminApiError> {
    let unauthorized = || AdminApiError::new(401, "unauthorized", "send a live admin token as Authorization: Bearer");
    let token = bearer.ok_or_else(unauthorized)?;
    match store::admin_tokens::authenticate(&state.db, &secrets::hash(token), store::now()).await? {
        Some(t) => Ok(Actor(format!("admin-token:{}", t.name))),
        None => Err(unauthorized()),
    }
}

async fn record(state: &AppState, actor: &Actor, event: &str, details: Value) -> Result<(), AdminApiError> {
    let e = audit::Event { event, actor: Some(&actor.0), details, ..Default::default() };
    Ok(audit::record(&state.db, &e, store::now()).await?)
}

#[derive(Debug, Serialize)]
pub struct Person {
    pub username: String,
    pub display_name: Option<String>,
    pub email: Option<String>,
    pub disabled: bool,
    pub admin: bool,
    pub groups: Vec<String>,
    pub created_at: i64,
}

pub async fn people(state: &AppState) -> Result<Vec<Person>, AdminApiError> {
    let mut out = Vec::new();
    for u in store::users::list(&state.db).await? {
        let groups = store::groups::of_user(&state.db, u.id).await?.iter().map(str::to_string).collect();
        out.push(Person {
            username: u.username,
            display_name: u.display_name,
            email: u.email,
            disabled: u.disabled,
            admin: u.is_admin,
            groups,
            created_at: u.created_at,
        });
    }
    Ok(out)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewPerson {
    pub username: String,
    /// Absent: a random one is generated and returned once.
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub admin: bool,
}

/// Adds a person; the answer carries the password when it was generated (shown once).
pub async fn add_person(state: &AppState, actor: &Actor, p: NewPerson) -> Result<Value, AdminApiError> {
    let groups = admin::parse_groups(&p.groups)?;
    let generated = p.password.is_none();
    let password = p.password.unwrap_or_else(|| secrets::random_string(15));
    let profile = admin::Profile {
        display_name: p.display_name.as_deref(),
        email: p.email.as_deref(),
        groups,
        is_admin: p.admin,
    };
    admin::add_person(&state.db, &state.hasher, &p.username, &password, &profile).await?;
    record(state, actor, "person_added", json!({ "username": p.username })).await?;
    let mut answer = json!({ "username": p.username });
    if generated {
        answer["password"] = password.into();
    }
    Ok(answer)
}

pub async fn set_disabled(
    state: &AppState,
    actor: &Actor,
    username: &str,
    disabled: bool,
) -> Result<(), AdminApiError> {
    admin::set_disabled(&state.db, username, disabled).await?;
    let event = if disabled { "person_disabled" } else { "person_enabled" };
    record(state, actor, event, json!({ "username": username })).await
}

#[derive(Debug, Serialize)]
pub struct Resource {
    pub uri: String,
    pub name: String,
    pub token_lifetime: Option<i64>,
    pub allowed_groups: Vec<String>,
    pub scopes: Vec<Value>,
}

pub async fn resources(state: &AppState) -> Result<Vec<Resource>, AdminApiError> {
    Ok(store::resources::list(&state.db)
        .await?
        .into_iter()
        .map(|r| Resource {
            uri: r.row.uri,
            name: r.row.name,
            token_lifetime: r.row.token_lifetime,
            allowed_groups: r.row.allowed_groups.iter().map(str::to_string).collect(),
            scopes: r
                .scopes
                .iter()
                .map(|s| {
                    let groups: Vec<&str> = s.groups.iter().collect();
                    json!({ "name": s.name, "description": s.description, "default": s.is_default, "groups": groups })
                })
                .collect(),
        })
        .collect())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewScope {
    pub name: String,
    pub description: String,
    #[serde(default = "yes")]
    pub default: bool,
    #[serde(default)]
    pub groups: Vec<String>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewResource {
    pub uri: String,
    pub name: String,
    #[serde(default)]
    pub scopes: Vec<NewScope>,
    #[serde(default)]
    pub allowed_groups: Vec<String>,
    #[serde(default)]
    pub token_lifetime: Option<u64>,
}

pub async fn add_resource(state: &AppState, actor: &Actor, r: NewResource) -> Result<Value, AdminApiError> {
    save_resource(state, actor, r, false).await
}

/// Changes a registered MCP server (name, scopes, groups, lifetime), keeping its grants; `NotFound`
/// when it is not registered.
pub async fn update_resource(state: &AppState, actor: &Actor, r: NewResource) -> Result<Value, AdminApiError> {
    save_resource(state, actor, r, true).await
}

async fn save_resource(state: &AppState, actor: &Actor, r: NewResource, replace: bool) -> Result<Value, AdminApiError> {
    let spec = ResourceSpec {
        uri: r.uri,
        name: r.name,
        scopes: r.scopes.iter().map(|s| (s.name.clone(), s.description.clone(), s.default)).collect(),
        token_lifetime: r.token_lifetime,
        allowed_groups: r.allowed_groups,
        scope_groups: r.scopes.iter().map(|s| (s.name.clone(), s.groups.clone())).collect(),
    };
    let added = if replace {
        let new = admin::validate_resource(&spec)?;
        if store::resources::by_uri(&state.db, &new.uri).await?.is_none() {
            return Err(AdminApiError::new(404, "not_found", format!("{} is not registered", new.uri)));
        }
        store::resources::upsert(&state.db, &new, store::now()).await?
    } else {
        admin::add_resource(&state.db, &spec).await?
    };
    let event = if replace { "resource_updated" } else { "resource_added" };
    record(state, actor, event, json!({ "uri": added.row.uri })).await?;
    Ok(json!({ "uri": added.row.uri, "name": added.row.name }))
}

pub async fn remove_resource(state: &AppState, actor: &Actor, uri: &str) -> Result<(), AdminApiError> {
    admin::remove_resource(&state.db, uri).await?;
    record(state, actor, "resource_removed", json!({ "uri": uri })).await
}

pub async fn grants(state: &AppState, user: Option<&str>, client: Option<&str>) -> Result<Vec<Value>, AdminApiError> {
    Ok(store::grants::list(&state.db, user, client, false)
        .await?
        .into_iter()
        .map(|g| {
            json!({
                "id": g.id, "username": g.username, "client_id": g.client_id.as_str(), "client_name": g.client_name,
                "resource": g.resource_uri, "scope": g.scope.to_space_separated(), "created_at": g.created_at,
                "last_used_at": g.last_used_at,
            })
        })
        .collect())
}

pub async fn revoke_grant(state: &AppState, actor: &Actor, id: &str) -> Result<(), AdminApiError> {
    admin::revoke_grant(&state.db, id).await.map_err(|e| match e {
        AdminError::Invalid(m) if m.contains("does not exist") => AdminApiError::new(404, "not_found", m),
        e => e.into(),
    })?;
    record(state, actor, "grant_revoked_by_api", json!({ "grant_id": id })).await
}

pub async fn audit_events(
    state: &AppState,
    event: Option<&str>,
    limit: Option<i64>,
) -> Result<Vec<Value>, AdminApiError> {
    audit_page(state, event, None, limit).await
}

/// A page of audit events, newest first; `before` is the `id` of the last event of the previous page.
pub async fn audit_page(
    state: &AppState,
    event: Option<&str>,
    before: Option<&str>,
    limit: Option<i64>,
) -> Result<Vec<Value>, AdminApiError> {
    let limit = limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(AdminApiError::invalid("limit must be between 1 and 1000"));
    }
    let before = match before {
        Some(b) => Some(uuid::Uuid::parse_str(b).map_err(|_| AdminApiError::invalid("before must be an event id"))?),
        None => None,
    };
    let filter = audit::Filter { event, before, limit, ..Default::default() };
    Ok(audit::search(&state.db, &filter)
        .await?
        .into_iter()
        .map(|e| {
            json!({
                "id": e.id, "at": e.at, "event": e.event, "actor": e.actor, "client_id": e.client_id, "ip": e.ip,
                "details": serde_json::from_str::<Value>(&e.details).unwrap_or(Value::String(e.details.clone())),
            })
        })
        .collect())
}

/// The console's overview: counts, database health, signing keys, recent security events.
#[derive(Debug)]
pub struct Overview {
    pub people: i64,
    pub resources: usize,
    pub live_grants: usize,
    pub database_ready: bool,
    pub keys: Vec<KeyLine>,
    pub security_events: Vec<Value>,
}

#[derive(Debug, Clone)]
pub struct KeyLine {
    pub kid: String,
    pub alg: String,
    pub state: String,
    pub encrypted: bool,
}

/// Events an operator should look at first.
const SECURITY_EVENTS: &[&str] = &[
    "login_locked",
    "refresh_reuse_detected",
    "code_replay_detected",
    "access_denied_group",
    "upstream_login_failed",
    "id_jag_refused",
    "backchannel_logout",
];

pub async fn overview(state: &AppState) -> Result<Overview, AdminApiError> {
    let mut security_events = Vec::new();
    for e in audit_events(state, None, Some(200)).await? {
        if e["event"].as_str().is_some_and(|n| SECURITY_EVENTS.contains(&n)) && security_events.len() < 10 {
            security_events.push(e);
        }
    }
    Ok(Overview {
        people: store::users::count(&state.db).await?,
        resources: store::resources::list(&state.db).await?.len(),
        live_grants: store::grants::list(&state.db, None, None, false).await?.len(),
        database_ready: state.db.ready().await.is_ok(),
        keys: keys(state).await?,
        security_events,
    })
}

pub async fn keys(state: &AppState) -> Result<Vec<KeyLine>, AdminApiError> {
    use crate::tokens::keys::{self, KeyState};
    let settings = crate::state::key_settings(&state.settings);
    let list = keys::status(&state.db, &settings, store::now())
        .await
        .map_err(|e| AdminApiError::new(503, "unavailable", e.to_string()))?;
    Ok(list
        .into_iter()
        .map(|(row, s)| KeyLine {
            kid: row.kid,
            alg: row.alg,
            encrypted: row.encrypted,
            state: match s {
                KeyState::Pending => "pending (published, signs soon)".into(),
                KeyState::Active => "active (signing)".into(),
                KeyState::Retiring { .. } => "retiring (published, no longer signing)".into(),
                KeyState::Expired => "expired".into(),
            },
        })
        .collect())
}

/// Rotates the signing key: the new one is published first and signs after `key_publish_delay`.
pub async fn rotate_key(state: &AppState, actor: &Actor) -> Result<String, AdminApiError> {
    let settings = crate::state::key_settings(&state.settings);
    let row = crate::tokens::keys::rotate(&state.db, &settings, store::now())
        .await
        .map_err(|e| AdminApiError::new(503, "unavailable", e.to_string()))?;
    record(state, actor, "key_rotated", json!({ "kid": row.kid })).await?;
    Ok(row.kid)
}

/// Ends every session of a person and revokes their grants ("sign out everywhere").
pub async fn sign_out_everywhere(state: &AppState, actor: &Actor, username: &str) -> Result<(), AdminApiError> {
    let Some(user) = store::users::by_username(&state.db, username).await? else {
        return Err(AdminApiError::new(404, "not_found", format!("user {username:?} does not exist")));
    };
    let now = store::now();
    store::users::end_sessions(&state.db, user.id, now).await?;
    for g in store::grants::list_for_user(&state.db, user.id).await? {
        crate::flows::revocation::revoke_grant(
            &state.db,
            g.id,
            Some(g.client_id.as_str()),
            crate::flows::revocation::Revoker::Operator,
            now,
        )
        .await?;
    }
    record(state, actor, "signed_out_everywhere", json!({ "username": username })).await
}

/// Whether a signed-in person may use the console: the admin role, or one of `admin_groups`.
pub async fn is_admin(state: &AppState, user_id: uuid::Uuid) -> Result<bool, AdminApiError> {
    let Some(user) = store::users::by_id(&state.db, user_id).await? else { return Ok(false) };
    if user.is_admin {
        return Ok(true);
    }
    if state.settings.admin_groups.is_empty() {
        return Ok(false);
    }
    let groups = store::groups::of_user(&state.db, user_id).await?;
    Ok(state.settings.admin_groups.iter().any(|g| groups.contains(g)))
}

/// The effective configuration, secrets redacted.
pub fn settings_text(state: &AppState) -> String {
    state.settings.redacted_toml()
}

/// Every client, with its kind (`static` pre-registered, `dynamic`, `metadata_document`), what it
/// registered, and (metadata documents) until when the fetched document is trusted.
pub async fn clients(state: &AppState) -> Result<Vec<Value>, AdminApiError> {
    Ok(store::clients::list(&state.db)
        .await?
        .into_iter()
        .map(|c| {
            json!({
                "client_id": c.client_id.as_str(), "kind": c.kind.as_str(), "client_name": c.client_name,
                "metadata": c.metadata, "created_at": c.created_at, "last_used_at": c.last_used_at,
                "document_fresh_until": c.metadata_expires_at,
            })
        })
        .collect())
}

/// Deletes a client and its grants (a dynamic or metadata-document client registers again; a
/// pre-registered one comes back from the config file at the next start).
pub async fn remove_client(state: &AppState, actor: &Actor, client_id: &str) -> Result<(), AdminApiError> {
    admin::remove_client(&state.db, client_id).await?;
    record(state, actor, "client_deleted_by_admin", json!({ "client_id": client_id })).await
}

/// Issues (or replaces) an MCP server's introspection credentials; the secret is returned once.
pub async fn introspection_credentials(state: &AppState, actor: &Actor, uri: &str) -> Result<Value, AdminApiError> {
    let (id, secret) = admin::issue_introspection_credentials(&state.db, uri).await?;
    record(state, actor, "introspection_credentials_issued", json!({ "uri": uri, "client_id": id })).await?;
    Ok(json!({ "client_id": id, "client_secret": secret }))
}

/// Gives a person a new random password (returned once; the old one stops working).
pub async fn new_password(state: &AppState, actor: &Actor, username: &str) -> Result<String, AdminApiError> {
    let password = secrets::random_string(15);
    admin::set_password(&state.db, &state.hasher, username, &password).await?;
    record(state, actor, "password_set_by_admin", json!({ "username": username })).await?;
    Ok(password)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewClient {
    pub name: String,
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// Issue a secret (returned once).
    #[serde(default)]
    pub confidential: bool,
}

/// Pre-registers a client (as `portcullis client add`); a confidential one's secret is returned once.
pub async fn add_client(state: &AppState, actor: &Actor, c: NewClient) -> Result<Value, AdminApiError> {
    let spec = admin::ClientSpec {
        client_id: c.client_id,
        name: c.name,
        redirect_uris: c.redirect_uris,
        confidential: c.confidential,
        secret: None,
        grant_types: vec![],
        keys: None,
        resources: vec![],
        dpop_bound_access_tokens: false,
    };
    let added = admin::add_client(&state.db, &spec).await?;
    let id = added.client.client_id.as_str().to_string();
    record(state, actor, "client_added_by_admin", json!({ "client_id": id })).await?;
    let mut answer = json!({ "client_id": id });
    if let Some(secret) = added.secret {
        answer["client_secret"] = secret.into();
    }
    Ok(answer)
}

/// Hosts whose metadata documents are refused (blocked at run time; `cimd_deny_hosts` aside).
pub async fn blocked_hosts(state: &AppState) -> Result<Vec<Value>, AdminApiError> {
    Ok(store::blocked_hosts::list(&state.db)
        .await?
        .into_iter()
        .map(|b| json!({ "host": b.host, "blocked_by": b.blocked_by, "created_at": b.created_at }))
        .collect())
}

/// Blocks a host (and its subdomains): its metadata-document clients are refused from now on,
/// at sign-in and at every token request.
pub async fn block_host(state: &AppState, actor: &Actor, host: &str) -> Result<String, AdminApiError> {
    let host = crate::clients::cimd::normal_host(host.trim());
    let ok = !host.is_empty()
        && host.len() <= 253
        && host.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        && !host.starts_with('.')
        && !host.contains("..");
    if !ok {
        return Err(AdminApiError::invalid(format!("{host:?} is not a host name")));
    }
    store::blocked_hosts::add(&state.db, &host, &actor.0, store::now()).await?;
    record(state, actor, "host_blocked", json!({ "host": host })).await?;
    Ok(host)
}

pub async fn unblock_host(state: &AppState, actor: &Actor, host: &str) -> Result<(), AdminApiError> {
    let host = crate::clients::cimd::normal_host(host.trim());
    store::blocked_hosts::remove(&state.db, &host)
        .await
        .map_err(|_| AdminApiError::new(404, "not_found", format!("{host} is not blocked")))?;
    record(state, actor, "host_unblocked", json!({ "host": host })).await
}

/// Replaces a person's local groups (groups from their identity provider are its to change).
pub async fn set_groups(
    state: &AppState,
    actor: &Actor,
    username: &str,
    groups: &[String],
) -> Result<(), AdminApiError> {
    let groups = admin::parse_groups(groups)?;
    let Some(user) = store::users::by_username(&state.db, username).await? else {
        return Err(AdminApiError::new(404, "not_found", format!("user {username:?} does not exist")));
    };
    store::groups::set_local(&state.db, user.id, &groups).await?;
    let names: Vec<&str> = groups.iter().collect();
    record(state, actor, "groups_set", json!({ "username": username, "groups": names })).await
}
