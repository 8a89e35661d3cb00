//! Operator actions behind the CLI and the config file: users, resources, clients, keys.
//! Each validates fully before writing, so bad input leaves nothing behind.

use serde_json::json;

use crate::config::{ResourceConfig, Settings};
use crate::oauth::client_metadata::ClientMetadata;
use crate::oauth::resource::ResourceUri;
use crate::oauth::scope::ScopeSet;
use crate::store::clients::{ClientKind, NewClient};
use crate::store::resources::{NewResource, ScopeRow};
use crate::store::{self, Db, StoreError};
use crate::tokens::secrets;
use crate::users::groups::Groups;
use crate::users::password::{self, Hasher};

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    Invalid(String),
    /// What the operation names does not exist.
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Password(#[from] password::PasswordError),
}

fn invalid(msg: impl Into<String>) -> AdminError {
    AdminError::Invalid(msg.into())
}

fn not_found(what: String) -> impl FnOnce(StoreError) -> AdminError {
    move |e| match e {
        StoreError::NotFound => AdminError::NotFound(format!("{what} does not exist")),
        e => e.into(),
    }
}

// ---- users ----

pub fn validate_username(name: &str) -> Result<(), AdminError> {
    let ok =
        !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c));
    if ok { Ok(()) } else { Err(invalid(format!("invalid username {name:?}: use 1-64 of A-Z a-z 0-9 . _ - @"))) }
}

pub async fn add_user(
    db: &Db,
    hasher: &Hasher,
    username: &str,
    password: &str,
) -> Result<store::users::User, AdminError> {
    add_user_with_profile(db, hasher, username, password, None, None).await
}

/// Adds a user with an optional display name and email (OpenID Connect `profile` and `email`).
/// Everything is checked before the one insert, so a bad value writes nothing.
pub async fn add_user_with_profile(
    db: &Db,
    hasher: &Hasher,
    username: &str,
    password: &str,
    display_name: Option<&str>,
    email: Option<&str>,
) -> Result<store::users::User, AdminError> {
    validate_username(username)?;
    password::check_policy(password)?;
    if let Some(name) = display_name
        && (name.trim().is_empty() || name.len() > 200 || name.chars().any(char::is_control))
    {
        return Err(invalid("display name must be 1-200 printable characters"));
    }
    if let Some(email) = email
        && (email.len() > 254 || !email.contains('@') || email.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        return Err(invalid(format!("{email:?} is not an email address")));
    }
    let user = add_user_inner(db, hasher, username, password).await?;
    if display_name.is_some() || email.is_some() {
        store::users::set_profile(db, username, display_name, email, store::now()).await?;
    }
    Ok(store::users::by_id(db, user.id).await?.unwrap_or(user))
}

async fn add_user_inner(
    db: &Db,
    hasher: &Hasher,
    username: &str,
    password: &str,
) -> Result<store::users::User, AdminError> {
    let hash = hasher.hash(password.to_string()).await?;
    Ok(store::users::create(db, username, &hash, store::now()).await?)
}

/// What `user add` may say about a person besides name and password.
#[derive(Debug, Default)]
pub struct Profile<'a> {
    pub display_name: Option<&'a str>,
    pub email: Option<&'a str>,
    pub groups: Groups,
    pub is_admin: bool,
}

/// Group names from the command line or an API call, checked.
pub fn parse_groups(names: &[String]) -> Result<Groups, AdminError> {
    Groups::parse(names).map_err(|e| invalid(e.to_string()))
}

/// Adds a person with a profile, local groups and the admin role. Every value is checked before
/// the first write.
pub async fn add_person(
    db: &Db,
    hasher: &Hasher,
    username: &str,
    password: &str,
    profile: &Profile<'_>,
) -> Result<store::users::User, AdminError> {
    let user = add_user_with_profile(db, hasher, username, password, profile.display_name, profile.email).await?;
    if profile.is_admin {
        store::users::set_admin(db, username, true, store::now()).await?;
    }
    for group in profile.groups.iter() {
        store::groups::add_local(db, user.id, group).await?;
    }
    Ok(store::users::by_id(db, user.id).await?.unwrap_or(user))
}

/// Adds people to a local group; every name is checked before the first write.
pub async fn group_add(db: &Db, group: &str, usernames: &[String]) -> Result<(), AdminError> {
    crate::users::groups::check_name(group).map_err(|e| invalid(e.to_string()))?;
    let people = people_named(db, usernames).await?;
    for id in people {
        store::groups::add_local(db, id, group).await?;
    }
    Ok(())
}

/// Removes people from a local group (groups from a provider change at the person's next sign-in).
pub async fn group_remove(db: &Db, group: &str, usernames: &[String]) -> Result<(), AdminError> {
    let people = people_named(db, usernames).await?;
    for (id, name) in people.into_iter().zip(usernames) {
        store::groups::remove_local(db, id, group)
            .await
            .map_err(|_| invalid(format!("{name} is not in the local group {group:?}")))?;
    }
    Ok(())
}

async fn people_named(db: &Db, usernames: &[String]) -> Result<Vec<uuid::Uuid>, AdminError> {
    let mut ids = Vec::new();
    for name in usernames {
        let user =
            store::users::by_username(db, name).await?.ok_or_else(|| invalid(format!("no user named {name:?}")))?;
        ids.push(user.id);
    }
    Ok(ids)
}

pub async fn set_password(db: &Db, hasher: &Hasher, username: &str, password: &str) -> Result<(), AdminError> {
    password::check_policy(password)?;
    let hash = hasher.hash(password.to_string()).await?;
    store::users::set_password(db, username, &hash, store::now()).await.map_err(not_found(format!("user {username:?}")))
}

pub async fn set_disabled(db: &Db, username: &str, disabled: bool) -> Result<(), AdminError> {
    store::users::set_disabled(db, username, disabled, store::now())
        .await
        .map_err(not_found(format!("user {username:?}")))
}

/// Creates an admin API token named `name`: returns the token (shown once; only its hash is kept).
pub async fn create_admin_token(db: &Db, name: &str, expires_in: Option<u64>) -> Result<String, AdminError> {
    if name.is_empty() || name.len() > 64 || !name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
        return Err(invalid(format!("invalid token name {name:?}: use 1-64 of A-Z a-z 0-9 . _ -")));
    }
    let now = store::now();
    let expires_at = match expires_in {
        Some(0) => return Err(invalid("--expires-in must be greater than zero")),
        Some(s) => Some(now + s as i64),
        None => None,
    };
    let token = format!("pca_{}", secrets::random_token());
    store::admin_tokens::create(db, name, &secrets::hash(&token), expires_at, now).await?;
    Ok(token)
}

pub async fn revoke_admin_token(db: &Db, name: &str) -> Result<(), AdminError> {
    store::admin_tokens::revoke(db, name, store::now()).await.map_err(not_found(format!("a live admin token {name:?}")))
}

/// On a database without users, creates `admin` with a random password and returns it.
pub async fn bootstrap_admin(db: &Db, hasher: &Hasher) -> Result<Option<String>, AdminError> {
    if store::users::count(db).await? > 0 {
        return Ok(None);
    }
    let password = secrets::random_string(15);
    match add_user(db, hasher, "admin", &password).await {
        Ok(_) => {
            store::users::set_admin(db, "admin", true, store::now()).await?;
            Ok(Some(password))
        }
        // Another node created it first.
        Err(AdminError::Store(StoreError::Conflict(_))) => Ok(None),
        Err(e) => Err(e),
    }
}

// ---- resources ----

/// A resource as the operator describes it, before validation.
#[derive(Clone, Debug, Default)]
pub struct ResourceSpec {
    pub uri: String,
    pub name: String,
    /// (name, description, is_default)
    pub scopes: Vec<(String, String, bool)>,
    pub token_lifetime: Option<u64>,
    /// Only people in one of these groups may use it; empty: everyone.
    pub allowed_groups: Vec<String>,
    /// (scope name, the groups that may have it)
    pub scope_groups: Vec<(String, Vec<String>)>,
}

impl From<&ResourceConfig> for ResourceSpec {
    fn from(r: &ResourceConfig) -> Self {
        ResourceSpec {
            uri: r.uri.clone(),
            name: r.name.clone(),
            scopes: r.scopes.iter().map(|s| (s.name.clone(), s.description.clone(), s.default)).collect(),
            token_lifetime: r.token_lifetime.map(|s| s.0),
            allowed_groups: r.allowed_groups.clone(),
            scope_groups: r.scopes.iter().map(|s| (s.name.clone(), s.groups.clone())).collect(),
        }
    }
}

/// Parses `NAME=DESCRIPTION` from the command line.
pub fn parse_scope_arg(arg: &str) -> Result<(String, String), AdminError> {
    let (name, description) =
        arg.split_once('=').ok_or_else(|| invalid(format!("--scope {arg:?}: expected NAME=DESCRIPTION")))?;
    Ok((name.trim().to_string(), description.trim().to_string()))
}

pub fn validate_resource(spec: &ResourceSpec) -> Result<NewResource, AdminError> {
    let uri = ResourceUri::parse(&spec.uri).map_err(|e| invalid(format!("resource URI {:?}: {e}", spec.uri)))?;
    let name = spec.name.trim();
    if name.is_empty() || name.len() > 200 {
        return Err(invalid("resource name must be 1-200 characters"));
    }
    let mut scopes = Vec::new();
    for (scope, description, is_default) in &spec.scopes {
        let parsed = ScopeSet::parse(scope).map_err(|e| invalid(format!("scope {scope:?}: {e}")))?;
        if parsed.len() != 1 {
            return Err(invalid(format!("scope {scope:?} must be a single name without spaces")));
        }
        if crate::oauth::authorize::BUILT_IN_SCOPES.contains(&scope.as_str()) {
            return Err(invalid(format!("scope {scope:?} is built in; do not declare it on a resource")));
        }
        if description.is_empty() {
            return Err(invalid(format!("scope {scope:?} needs a description (it is shown on the consent page)")));
        }
        if scopes.iter().any(|s: &ScopeRow| &s.name == scope) {
            return Err(invalid(format!("scope {scope:?} is listed twice")));
        }
        let groups = spec.scope_groups.iter().find(|(s, _)| s == scope).map(|(_, g)| g.as_slice()).unwrap_or(&[]);
        let groups = Groups::parse(groups).map_err(|e| invalid(format!("scope {scope:?}: {e}")))?;
        scopes.push(ScopeRow {
            name: scope.clone(),
            description: description.clone(),
            is_default: *is_default,
            groups,
        });
    }
    let token_lifetime = match spec.token_lifetime {
        Some(0) => return Err(invalid("token lifetime must be greater than zero")),
        Some(n) if n > 86_400 => return Err(invalid("token lifetime must be at most 24 hours")),
        Some(n) => Some(n as i64),
        None => None,
    };
    if let Some((unknown, _)) = spec.scope_groups.iter().find(|(s, _)| !scopes.iter().any(|r| &r.name == s)) {
        return Err(invalid(format!("groups are given for scope {unknown:?}, which the resource does not declare")));
    }
    let allowed_groups = Groups::parse(&spec.allowed_groups).map_err(|e| invalid(format!("allowed_groups: {e}")))?;
    Ok(NewResource { uri: uri.as_str().to_string(), name: name.to_string(), token_lifetime, allowed_groups, scopes })
}

pub async fn add_resource(db: &Db, spec: &ResourceSpec) -> Result<store::resources::Resource, AdminError> {
    let new = validate_resource(spec)?;
    Ok(store::resources::create(db, &new, store::now()).await?)
}

pub async fn remove_resource(db: &Db, uri: &str) -> Result<(), AdminError> {
    let canonical = ResourceUri::parse_requested(uri).map_err(|e| invalid(format!("resource URI {uri:?}: {e}")))?;
    store::resources::remove(db, canonical.as_str()).await.map_err(not_found(format!("resource {canonical}")))
}

/// Issues (or replaces) the credentials an MCP server uses at /introspect. The secret is returned
/// once; only its hash is kept.
pub async fn issue_introspection_credentials(db: &Db, uri: &str) -> Result<(String, String), AdminError> {
    let canonical = ResourceUri::parse_requested(uri).map_err(|e| invalid(format!("resource URI {uri:?}: {e}")))?;
    let id = format!("rs-{}", secrets::random_string(12));
    let secret = secrets::random_token();
    store::resources::set_introspection(db, canonical.as_str(), &id, &secrets::hash(&secret), store::now())
        .await
        .map_err(not_found(format!("resource {canonical}")))?;
    Ok((id, secret))
}

// ---- registration ----

pub async fn issue_initial_access_token(db: &Db, label: &str, expires_in: Option<u64>) -> Result<String, AdminError> {
    if label.trim().is_empty() || label.len() > 100 {
        return Err(invalid("label must be 1-100 characters"));
    }
    let token = secrets::random_token();
    let now = store::now();
    let expires_at = expires_in.map(|s| now + s.min(10 * 365 * 86_400) as i64);
    store::registration::create_initial_token(db, &secrets::hash(&token), label, now, expires_at).await?;
    Ok(token)
}

/// Clients for listing: dynamic registrations with the same name, redirect URIs and software id
/// (claude.ai registers one per connection) are one group, shown by its newest member.
pub struct ClientGroup {
    pub newest: store::clients::Client,
    pub count: usize,
}

pub fn group_clients(clients: Vec<store::clients::Client>, group: bool) -> Vec<ClientGroup> {
    let mut out: Vec<(Option<String>, ClientGroup)> = Vec::new();
    for c in clients {
        let key = (group && c.kind == ClientKind::Dynamic).then(|| {
            let m = &c.metadata;
            json!([c.client_name, m.get("redirect_uris"), m.get("software_id")]).to_string()
        });
        match out.iter_mut().find(|(k, _)| key.is_some() && *k == key) {
            Some((_, g)) => {
                g.count += 1;
                if c.created_at >= g.newest.created_at {
                    g.newest = c;
                }
            }
            None => out.push((key, ClientGroup { newest: c, count: 1 })),
        }
    }
    out.into_iter().map(|(_, g)| g).collect()
}

// ---- grants ----

pub async fn revoke_grant(db: &Db, id: &str) -> Result<(), AdminError> {
    let id: uuid::Uuid =
        id.parse().map_err(|_| invalid(format!("{id:?} is not a grant id (see `portcullis grant list`)")))?;
    let by = crate::flows::revocation::Revoker::Operator;
    if !crate::flows::revocation::revoke_grant(db, id, None, by, store::now()).await? {
        return Err(invalid(format!("grant {id} does not exist or is already revoked")));
    }
    Ok(())
}

// ---- clients ----

mod machine;

pub use machine::{ClientKeys, ReachSpec, reach_from_flags};

#[derive(Clone, Debug, Default)]
pub struct ClientSpec {
    pub client_id: Option<String>,
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub confidential: bool,
    /// For config-declared confidential clients; generated (and returned once) otherwise.
    pub secret: Option<String>,
    /// Grant type names; none: `authorization_code` and `refresh_token`.
    pub grant_types: Vec<String>,
    /// Public keys for `private_key_jwt`, instead of a secret.
    pub keys: Option<ClientKeys>,
    /// `client_credentials`: the MCP servers the client may reach, with the scopes at each.
    pub resources: Vec<ReachSpec>,
    /// RFC 9449: every token request of the client must carry a DPoP proof.
    pub dpop_bound_access_tokens: bool,
}

pub struct AddedClient {
    pub client: store::clients::Client,
    pub secret: Option<String>,
    /// A machine client's reach as stored.
    pub reach: Vec<store::machine_clients::Allowance>,
}

/// A client checked and ready to write: its row, its secret (shown once), its reach (machine
/// clients; checked against the scope catalogues before it is stored).
struct ClientRecord {
    record: NewClient,
    secret: Option<String>,
    reach: Vec<machine::Reach>,
}

fn client_record(spec: &ClientSpec) -> Result<ClientRecord, AdminError> {
    let client_id = match &spec.client_id {
        Some(id) => {
            let ok = !id.is_empty()
                && id.len() <= 128
                && id.chars().all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c));
            if !ok {
                return Err(invalid(format!(
                    "client id {id:?}: use 1-128 unreserved characters (A-Z a-z 0-9 - . _ ~)"
                )));
            }
            id.clone()
        }
        None => secrets::random_string(16),
    };
    let grant_types = machine::grant_types(&spec.grant_types)?;
    let method = match (&spec.keys, spec.confidential) {
        (Some(_), true) => {
            return Err(invalid(format!("client {client_id:?}: it authenticates one way: a secret or keys, not both")));
        }
        (Some(_), false) => "private_key_jwt",
        (None, true) => "client_secret_basic",
        (None, false) => "none",
    };
    if grant_types.contains(&"authorization_code") && spec.redirect_uris.is_empty() {
        return Err(invalid(format!(
            "client {client_id:?}: an authorization_code client needs at least one redirect URI"
        )));
    }
    let mut request = json!({
        "client_name": spec.name,
        "redirect_uris": spec.redirect_uris,
        "token_endpoint_auth_method": method,
        "grant_types": grant_types,
    });
    match &spec.keys {
        Some(ClientKeys::Jwks(set)) => {
            crate::clients::assertion::check_key_set(set)
                .map_err(|e| invalid(format!("client {client_id:?}: jwks: {e}")))?;
            request["jwks"] = set.clone();
        }
        Some(ClientKeys::JwksUri(uri)) => request["jwks_uri"] = uri.as_str().into(),
        None => {}
    }
    if spec.dpop_bound_access_tokens {
        request["dpop_bound_access_tokens"] = true.into();
    }
    let metadata = ClientMetadata::from_operator(&request).map_err(|e| invalid(e.description()))?;
    let reach = machine::check(&client_id, &metadata, &spec.resources)?;
    let secret = match (spec.confidential, &spec.secret) {
        (false, _) => None,
        (true, Some(s)) if s.len() < 32 => {
            return Err(invalid("client secret must be at least 32 characters"));
        }
        (true, Some(s)) => Some(s.clone()),
        (true, None) => Some(secrets::random_token()),
    };
    let record = NewClient {
        client_id,
        kind: ClientKind::Static,
        client_name: Some(spec.name.clone()),
        metadata: serde_json::Value::Object(metadata.to_json()),
        secret_hash: secret.as_deref().map(secrets::hash),
        registration_token_hash: None,
        metadata_expires_at: None,
        registered_ip: None,
    };
    Ok(ClientRecord { record, secret, reach })
}

/// Scope names of a registered MCP server, by canonical URI.
fn catalogue_of(registered: &[store::resources::Resource], uri: &str) -> Option<Vec<String>> {
    registered.iter().find(|r| r.row.uri == uri).map(|r| r.scopes.iter().map(|s| s.name.clone()).collect())
}

/// `catalogue_of` for the command line's `--resource` flags (see [`reach_from_flags`]).
pub async fn registered_catalogues(db: &Db) -> Result<impl Fn(&str) -> Option<Vec<String>>, AdminError> {
    let registered = store::resources::list(db).await?;
    Ok(move |uri: &str| catalogue_of(&registered, uri))
}

pub async fn add_client(db: &Db, spec: &ClientSpec) -> Result<AddedClient, AdminError> {
    let ClientRecord { record, secret, reach } = client_record(spec)?;
    if reach.is_empty() {
        let client = store::clients::create(db, &record, store::now()).await?;
        return Ok(AddedClient { client, secret, reach: Vec::new() });
    }
    let registered = store::resources::list(db).await?;
    let allowances = machine::allowances(&record.client_id, &reach, |uri| catalogue_of(&registered, uri))?;
    let save = store::machine_clients::Save::Create;
    let client = store::machine_clients::save(db, &record, &allowances, save, store::now()).await?;
    Ok(AddedClient { client, secret, reach: allowances })
}

pub async fn remove_client(db: &Db, client_id: &str) -> Result<(), AdminError> {
    store::clients::remove(db, client_id).await.map_err(not_found(format!("client {client_id:?}")))
}

/// Applies the resources and clients declared in the config file; idempotent.
pub async fn apply_config(db: &Db, settings: &Settings) -> Result<(), AdminError> {
    // Validate everything first so a bad entry writes nothing.
    let (resources, clients) = declarations(settings)?;
    // Machine clients may reach the MCP servers declared here, or ones registered before.
    let registered =
        if clients.iter().any(|c| !c.reach.is_empty()) { store::resources::list(db).await? } else { Vec::new() };
    let catalogue = |uri: &str| {
        resources
            .iter()
            .find(|r| r.uri == uri)
            .map(|r| r.scopes.iter().map(|s| s.name.clone()).collect())
            .or_else(|| catalogue_of(&registered, uri))
    };
    let allowances = clients
        .iter()
        .map(|c| machine::allowances(&c.record.client_id, &c.reach, catalogue))
        .collect::<Result<Vec<_>, _>>()?;
    let now = store::now();
    for r in &resources {
        store::resources::upsert(db, r, now).await?;
    }
    for (c, reach) in clients.iter().zip(&allowances) {
        // With the reach in the same transaction: a client that lost the grant loses its reach.
        store::machine_clients::save(db, &c.record, reach, store::machine_clients::Save::Upsert, now).await?;
    }
    Ok(())
}

/// Checks the resources and clients declared in the config file, as `serve` would apply them.
/// `config check` runs this too, so it refuses what start-up would refuse (a machine client's
/// reach is checked against the MCP servers declared in the file; others are checked at start).
pub fn validate_declarations(settings: &Settings) -> Result<(Vec<NewResource>, Vec<NewClient>), AdminError> {
    let (resources, clients) = declarations(settings)?;
    Ok((resources, clients.into_iter().map(|c| c.record).collect()))
}

fn declarations(settings: &Settings) -> Result<(Vec<NewResource>, Vec<ClientRecord>), AdminError> {
    let resources = settings.resources.iter().map(|r| validate_resource(&r.into())).collect::<Result<Vec<_>, _>>()?;
    let clients = settings
        .clients
        .iter()
        .map(|c| {
            let keys = match (&c.jwks, &c.jwks_uri) {
                (Some(_), Some(_)) => {
                    return Err(invalid(format!("client {:?}: give jwks or jwks_uri, not both", c.client_id)));
                }
                (Some(set), None) => Some(ClientKeys::Jwks(machine::jwks_value(&c.client_id, set)?)),
                (None, Some(uri)) => Some(ClientKeys::JwksUri(uri.clone())),
                (None, None) => None,
            };
            client_record(&ClientSpec {
                client_id: Some(c.client_id.clone()),
                name: c.name.clone(),
                redirect_uris: c.redirect_uris.clone(),
                confidential: c.client_secret.is_some(),
                secret: c.client_secret.as_ref().map(|s| s.expose().to_string()),
                grant_types: c.grant_types.clone().unwrap_or_default(),
                keys,
                resources: c
                    .resources
                    .iter()
                    .map(|r| ReachSpec { uri: r.uri.clone(), scopes: r.scopes.clone() })
                    .collect(),
                dpop_bound_access_tokens: c.dpop_bound_access_tokens,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    for c in &clients {
        let declared: Vec<machine::Reach> =
            c.reach.iter().filter(|r| resources.iter().any(|d| d.uri == r.uri.as_str())).cloned().collect();
        machine::allowances(&c.record.client_id, &declared, |uri| {
            resources.iter().find(|r| r.uri == uri).map(|r| r.scopes.iter().map(|s| s.name.clone()).collect())
        })?;
    }
    Ok((resources, clients))
}
