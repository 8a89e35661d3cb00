//! `/admin`: the operators' console. People with the admin role (or in `admin_groups`) only.
//! It calls the admin API's functions (`flows::admin_api`), so console and API act alike.
//! Destructive actions go through a confirmation step and need a recent sign-in
//! (`admin_reauth_after`, five minutes); every form carries the session's CSRF token; every change is audited with the person.

use std::collections::HashMap;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tower_sessions::Session;

use crate::flows::admin_api::{self as api, Actor, AdminApiError};
use crate::flows::session::SignedIn;
use crate::http::HttpState;
use crate::http::admin_views::{AdminPage, Cell, Field, FormView, NavLink, Section, Table};
use crate::http::error::PageError;
use crate::http::middleware::session::{self, current_user};
use crate::http::{redirect, render};

const SECTIONS: &[(&str, &str)] = &[
    ("", "Overview"),
    ("/people", "People"),
    ("/resources", "MCP servers"),
    ("/clients", "Clients"),
    ("/grants", "Grants"),
    ("/audit", "Audit log"),
    ("/keys", "Signing keys"),
    ("/settings", "Settings"),
];

type Answer = Result<Response, Response>;

fn page_error(e: PageError) -> Response {
    e.into_response()
}

fn api_error(e: AdminApiError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
    PageError::new(status, "The change was not made", e.message).into_response()
}

/// The signed-in admin, or where to go instead (sign in; or 403).
async fn admin(state: &HttpState, session: &Session, fresh: bool) -> Result<(SignedIn, Actor), Response> {
    let login = || redirect(StatusCode::SEE_OTHER, &format!("{}?next=admin", state.routes.path("/login")));
    let Some(who) = current_user(state, session).await.map_err(page_error)? else {
        return Err(login());
    };
    if !api::is_admin(state, who.user_id).await.map_err(api_error)? {
        return Err(PageError::new(
            StatusCode::FORBIDDEN,
            "For administrators only",
            "The console is for people with the admin role. Ask an administrator if you need it.",
        )
        .into_response());
    }
    if fresh && who.auth_time < crate::flows::now() - state.settings.admin_reauth_after.as_i64() {
        // A destructive action: sign in again first.
        return Err(login());
    }
    let actor = Actor(format!("person:{}", who.username));
    Ok((who, actor))
}

fn path(state: &HttpState, p: &str) -> String {
    state.routes.path(&format!("/admin{p}"))
}

async fn page(
    state: &HttpState,
    session: &Session,
    who: &SignedIn,
    current: &str,
    sections: Vec<Section>,
) -> Result<AdminPage, Response> {
    let _ = session;
    let title = SECTIONS.iter().find(|(p, _)| *p == current).map(|(_, t)| *t).unwrap_or("Admin").to_string();
    Ok(AdminPage {
        css_href: state.routes.stylesheet(),
        title,
        nav: SECTIONS
            .iter()
            .map(|(p, label)| NavLink { href: path(state, p), label: label.to_string(), current: *p == current })
            .collect(),
        username: who.username.clone(),
        notice: None,
        secret: None,
        sections,
    })
}

fn section(heading: &str) -> Section {
    Section { heading: heading.into(), table: None, form: None, pre: None, empty: String::new() }
}

fn text(s: impl Into<String>) -> Cell {
    Cell::Text(s.into())
}

fn date(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| d.format(&time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]")).ok())
        .unwrap_or_default()
}

/// A link to the confirmation step of `action` (a POST path under /admin) described by `what`.
fn confirm_link(state: &HttpState, action: &str, what: &str, label: &str) -> Cell {
    let q = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("do", action)
        .append_pair("what", what)
        .finish();
    Cell::Link { href: format!("{}?{q}", path(state, "/confirm")), label: label.into() }
}

async fn csrf(session: &Session) -> Result<String, Response> {
    session::csrf_token(session).await.map_err(page_error)
}

/// A form post that changes something: an admin (recently signed in when `destructive`), and the
/// session's CSRF token.
async fn change(
    state: &HttpState,
    session: &Session,
    form: &HashMap<String, String>,
    destructive: bool,
) -> Result<(SignedIn, Actor), Response> {
    let admin = admin(state, session, destructive).await?;
    session::check_csrf(session, form.get("csrf_token").map(String::as_str)).await.map_err(page_error)?;
    Ok(admin)
}

/// A comma-separated form field as trimmed, non-empty items.
fn comma_list(form: &HashMap<String, String>, key: &str) -> Vec<String> {
    form.get(key)
        .map(|v| v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
        .unwrap_or_default()
}

fn done(state: &HttpState, section_path: &str) -> Response {
    redirect(StatusCode::SEE_OTHER, &path(state, section_path))
}

pub async fn overview(State(state): State<HttpState>, session: Session) -> Answer {
    let (who, _) = admin(&state, &session, false).await?;
    let o = api::overview(&state).await.map_err(api_error)?;
    let mut counts = section("At a glance");
    counts.table = Some(Table {
        headers: vec!["What".into(), "".into()],
        rows: vec![
            vec![text("People"), text(o.people.to_string())],
            vec![text("MCP servers"), text(o.resources.to_string())],
            vec![text("Live grants"), text(o.live_grants.to_string())],
            vec![text("Database"), text(if o.database_ready { "ready" } else { "NOT READY" })],
        ],
    });
    let mut keys = section("Signing keys");
    keys.table = Some(key_table(&o.keys));
    let mut checks = section("Deployment checks (run `portcullis doctor` for the outside view)");
    checks.table = Some(Table {
        headers: vec!["Check".into(), "Status".into(), "Detail".into(), "Fix".into()],
        rows: crate::doctor::settings_checks(&state.settings)
            .into_iter()
            .map(|c| {
                let status = match c.status {
                    crate::doctor::Status::Pass => "PASS",
                    crate::doctor::Status::Warn => "WARN",
                    crate::doctor::Status::Fail => "FAIL",
                };
                vec![text(c.check), text(status), text(c.detail), text(c.hint)]
            })
            .collect(),
    });
    let mut events = section("Recent security events");
    events.empty = "None recently.".into();
    events.table = Some(event_table(&o.security_events));
    let view = page(&state, &session, &who, "", vec![counts, checks, keys, events]).await?;
    Ok(render(&view))
}

fn key_table(keys: &[api::KeyLine]) -> Table {
    Table {
        headers: vec!["Key".into(), "Algorithm".into(), "State".into(), "At rest".into()],
        rows: keys
            .iter()
            .map(|k| {
                let rest = if k.encrypted { "encrypted" } else { "not encrypted (set key_encryption_secret)" };
                vec![text(&k.kid), text(&k.alg), text(&k.state), text(rest)]
            })
            .collect(),
    }
}

fn event_table(events: &[Value]) -> Table {
    let s = |e: &Value, k: &str| e[k].as_str().unwrap_or_default().to_string();
    Table {
        headers: vec!["When".into(), "Event".into(), "Actor".into(), "Client".into(), "Details".into()],
        rows: events
            .iter()
            .map(|e| {
                vec![
                    text(date(e["at"].as_i64().unwrap_or_default())),
                    text(s(e, "event")),
                    text(s(e, "actor")),
                    text(s(e, "client_id")),
                    text(e["details"].to_string()),
                ]
            })
            .collect(),
    }
}

#[derive(serde::Deserialize, Default)]
pub struct PeopleQuery {
    q: Option<String>,
}

pub async fn people(State(state): State<HttpState>, session: Session, Query(f): Query<PeopleQuery>) -> Answer {
    let (who, _) = admin(&state, &session, false).await?;
    people_page(&state, &session, &who, f.q.as_deref(), None).await
}

async fn people_page(
    state: &HttpState,
    session: &Session,
    who: &SignedIn,
    search: Option<&str>,
    secret: Option<(String, String)>,
) -> Answer {
    let needle = search.map(str::trim).filter(|q| !q.is_empty()).map(str::to_lowercase);
    let people: Vec<api::Person> = api::people(state)
        .await
        .map_err(api_error)?
        .into_iter()
        .filter(|p| {
            needle.as_ref().is_none_or(|n| {
                p.username.to_lowercase().contains(n)
                    || p.email.as_deref().unwrap_or_default().to_lowercase().contains(n)
                    || p.groups.iter().any(|g| g.to_lowercase().contains(n))
            })
        })
        .collect();
    let mut find = section("Find");
    find.form = Some(FormView {
        action: path(state, "/people"),
        csrf_token: String::new(),
        fields: vec![Field {
            value: search.unwrap_or_default().to_string(),
            ..Field::new("Name, email or group", "q", "search")
        }],
        submit: "Search".into(),
        danger: false,
        method: "get",
    });
    let mut list = section("People");
    list.empty = "Nobody matches.".into();
    list.table = Some(Table {
        headers: vec![
            "Username".into(),
            "Email".into(),
            "Groups".into(),
            "Status".into(),
            "".into(),
            "".into(),
            "".into(),
            "".into(),
        ],
        rows: people
            .iter()
            .map(|p| {
                let status = match (p.disabled, p.admin) {
                    (true, _) => "disabled",
                    (false, true) => "active, admin",
                    (false, false) => "active",
                };
                let toggle = if p.disabled {
                    confirm_link(
                        state,
                        &format!("/people/{}/enable", p.username),
                        &format!("Enable {}", p.username),
                        "Enable",
                    )
                } else {
                    confirm_link(
                        state,
                        &format!("/people/{}/disable", p.username),
                        &format!("Disable {}", p.username),
                        "Disable",
                    )
                };
                let out = confirm_link(
                    state,
                    &format!("/people/{}/signout", p.username),
                    &format!("Sign {} out everywhere and revoke their grants", p.username),
                    "Sign out everywhere",
                );
                let password = confirm_link(
                    state,
                    &format!("/people/{}/password", p.username),
                    &format!("Give {} a new password (shown once; the old one stops working)", p.username),
                    "New password",
                );
                let grants = Cell::Link {
                    href: format!(
                        "{}?user={}",
                        path(state, "/grants"),
                        url::form_urlencoded::byte_serialize(p.username.as_bytes()).collect::<String>()
                    ),
                    label: "Grants".into(),
                };
                vec![
                    text(&p.username),
                    text(p.email.clone().unwrap_or_default()),
                    text(p.groups.join(", ")),
                    text(status),
                    grants,
                    toggle,
                    password,
                    out,
                ]
            })
            .collect(),
    });
    let mut groups = section("Set a person's local groups");
    groups.form = Some(FormView {
        action: path(state, "/groups"),
        csrf_token: csrf(session).await?,
        fields: vec![
            Field::new("Username", "username", "text").required(),
            Field::new("Groups", "groups", "text")
                .hint("Comma-separated; replaces the local groups (groups from an identity provider stay)"),
        ],
        submit: "Set groups".into(),
        danger: false,
        method: "post",
    });
    let mut add = section("Add a person");
    add.form = Some(FormView {
        action: path(state, "/people"),
        csrf_token: csrf(session).await?,
        fields: vec![
            Field::new("Username", "username", "text").required(),
            Field::new("Email", "email", "email"),
            Field::new("Groups", "groups", "text").hint("Comma-separated, e.g. engineering, mcp-users"),
            Field::new("Administrator", "admin", "checkbox"),
        ],
        submit: "Add (a password is generated and shown once)".into(),
        danger: false,
        method: "post",
    });
    let mut view = page(state, session, who, "/people", vec![find, list, groups, add]).await?;
    view.secret = secret;
    Ok(render(&view))
}

pub async fn add_person(
    State(state): State<HttpState>,
    session: Session,
    Form(form): Form<HashMap<String, String>>,
) -> Answer {
    let (who, actor) = change(&state, &session, &form, false).await?;
    let get = |k: &str| form.get(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    let groups = comma_list(&form, "groups");
    let new = api::NewPerson {
        username: get("username").unwrap_or_default(),
        password: None,
        display_name: None,
        email: get("email"),
        groups,
        admin: get("admin").is_some(),
    };
    let username = new.username.clone();
    let added = api::add_person(&state, &actor, new).await.map_err(api_error)?;
    let password = added["password"].as_str().unwrap_or_default().to_string();
    people_page(&state, &session, &who, None, Some((format!("Added {username}; their password"), password))).await
}

pub async fn set_groups(
    State(state): State<HttpState>,
    session: Session,
    Form(form): Form<HashMap<String, String>>,
) -> Answer {
    let (_, actor) = change(&state, &session, &form, false).await?;
    let username = form.get("username").map(|u| u.trim().to_string()).unwrap_or_default();
    let groups = comma_list(&form, "groups");
    api::set_groups(&state, &actor, &username, &groups).await.map_err(api_error)?;
    Ok(done(&state, "/people"))
}

pub async fn person_action(
    State(state): State<HttpState>,
    session: Session,
    Path((username, action)): Path<(String, String)>,
    Form(form): Form<HashMap<String, String>>,
) -> Answer {
    let (who, actor) = change(&state, &session, &form, true).await?;
    if action == "password" {
        let password = api::new_password(&state, &actor, &username).await.map_err(api_error)?;
        let label = format!("New password for {username}");
        return people_page(&state, &session, &who, None, Some((label, password))).await;
    }
    match action.as_str() {
        "disable" => api::set_disabled(&state, &actor, &username, true).await,
        "enable" => api::set_disabled(&state, &actor, &username, false).await,
        "signout" => api::sign_out_everywhere(&state, &actor, &username).await,
        _ => return Err(PageError::new(StatusCode::NOT_FOUND, "Page not found", "No such action.").into_response()),
    }
    .map_err(api_error)?;
    Ok(done(&state, "/people"))
}

#[derive(serde::Deserialize)]
pub struct ConfirmQuery {
    #[serde(rename = "do")]
    action: String,
    what: String,
}

/// The confirmation step of a destructive action: says what will happen, posts it.
pub async fn confirm(State(state): State<HttpState>, session: Session, Query(q): Query<ConfirmQuery>) -> Answer {
    let (who, _) = admin(&state, &session, true).await?;
    // Only console actions: never a redirect or a post elsewhere.
    let safe =
        q.action.starts_with('/') && !q.action.contains("..") && !q.action.contains("//") && q.action.len() < 300;
    if !safe {
        return Err(PageError::bad_request("That is not a console action.").into_response());
    }
    let mut s = section(&q.what);
    s.form = Some(FormView {
        action: path(&state, &q.action),
        csrf_token: csrf(&session).await?,
        fields: vec![],
        submit: format!("Yes: {}", q.what),
        danger: true,
        method: "post",
    });
    let mut view = page(&state, &session, &who, "confirm", vec![s]).await?;
    view.title = "Are you sure?".into();
    Ok(render(&view))
}

#[derive(serde::Deserialize, Default)]
pub struct EditQuery {
    edit: Option<String>,
}

pub async fn resources(State(state): State<HttpState>, session: Session, Query(q): Query<EditQuery>) -> Answer {
    let (who, _) = admin(&state, &session, false).await?;
    resources_page(&state, &session, &who, q.edit.as_deref(), None).await
}

async fn resources_page(
    state: &HttpState,
    session: &Session,
    who: &SignedIn,
    editing: Option<&str>,
    secret: Option<(String, String)>,
) -> Answer {
    let state = state.clone();
    let session = session.clone();
    let list = api::resources(&state).await.map_err(api_error)?;
    let edited = editing.and_then(|uri| list.iter().find(|r| r.uri == uri));
    let mut table = section("MCP servers");
    table.empty = "None yet: add one below.".into();
    table.table = Some(Table {
        headers: vec![
            "URL".into(),
            "Name".into(),
            "Scopes".into(),
            "Limited to".into(),
            "".into(),
            "".into(),
            "".into(),
        ],
        rows: list
            .iter()
            .map(|r| {
                let scopes: Vec<String> =
                    r.scopes.iter().filter_map(|s| s["name"].as_str().map(str::to_string)).collect();
                let remove = confirm_link(
                    &state,
                    &format!(
                        "/resources/remove?uri={}",
                        url::form_urlencoded::byte_serialize(r.uri.as_bytes()).collect::<String>()
                    ),
                    &format!("Remove {} and every grant for it", r.uri),
                    "Remove",
                );
                let introspection = confirm_link(
                    &state,
                    &format!(
                        "/resources/introspection?uri={}",
                        url::form_urlencoded::byte_serialize(r.uri.as_bytes()).collect::<String>()
                    ),
                    &format!("Issue new /introspect credentials for {} (old ones stop working)", r.uri),
                    "Introspection credentials",
                );
                let edit = Cell::Link {
                    href: format!(
                        "{}?edit={}",
                        path(&state, "/resources"),
                        url::form_urlencoded::byte_serialize(r.uri.as_bytes()).collect::<String>()
                    ),
                    label: "Edit".into(),
                };
                vec![
                    text(&r.uri),
                    text(&r.name),
                    text(scopes.join(" ")),
                    text(r.allowed_groups.join(", ")),
                    edit,
                    introspection,
                    remove,
                ]
            })
            .collect(),
    });
    let heading = if edited.is_some() { "Change an MCP server (its grants are kept)" } else { "Add an MCP server" };
    let mut add = section(heading);
    let prefill = |f: Field, v: String| Field { value: v, ..f };
    let scopes_text = edited
        .map(|r| {
            let each = r.scopes.iter().map(|s| {
                format!("{}={}", s["name"].as_str().unwrap_or_default(), s["description"].as_str().unwrap_or_default())
            });
            each.collect::<Vec<_>>().join("; ")
        })
        .unwrap_or_default();
    let mut fields = vec![
        prefill(
            Field::new("URL (as clients use it)", "uri", "url").required(),
            edited.map(|r| r.uri.clone()).unwrap_or_default(),
        ),
        prefill(Field::new("Name", "name", "text").required(), edited.map(|r| r.name.clone()).unwrap_or_default()),
        prefill(
            Field::new("Scopes", "scopes", "text")
                .hint("name=description, separated by semicolons: mcp:tools=Use the tools"),
            scopes_text,
        ),
        prefill(
            Field::new("Limited to groups", "allowed_groups", "text").hint("Comma-separated; empty: everyone"),
            edited.map(|r| r.allowed_groups.join(", ")).unwrap_or_default(),
        ),
        prefill(
            Field::new("Token lifetime", "token_lifetime", "text")
                .hint("e.g. 10m or 600; empty: access_token_lifetime"),
            edited.and_then(|r| r.token_lifetime).map(|t| t.to_string()).unwrap_or_default(),
        ),
    ];
    if edited.is_some() {
        fields.push(Field::hidden("replace", "yes"));
    }
    add.form = Some(FormView {
        action: path(&state, "/resources"),
        csrf_token: csrf(&session).await?,
        fields,
        submit: if edited.is_some() { "Save".into() } else { "Add".into() },
        danger: false,
        method: "post",
    });
    let mut view = page(&state, &session, who, "/resources", vec![table, add]).await?;
    view.secret = secret;
    Ok(render(&view))
}

pub async fn introspection_credentials(
    State(state): State<HttpState>,
    session: Session,
    Query(q): Query<UriQuery>,
    Form(form): Form<HashMap<String, String>>,
) -> Answer {
    let (who, actor) = change(&state, &session, &form, true).await?;
    let creds = api::introspection_credentials(&state, &actor, &q.uri).await.map_err(api_error)?;
    let shown = format!(
        "client_id {} · client_secret {}",
        creds["client_id"].as_str().unwrap_or_default(),
        creds["client_secret"].as_str().unwrap_or_default()
    );
    resources_page(
        &state,
        &session,
        &who,
        None,
        Some((format!("Credentials for {} at /introspect (HTTP Basic)", q.uri), shown)),
    )
    .await
}

pub async fn clients(State(state): State<HttpState>, session: Session) -> Answer {
    let (who, _) = admin(&state, &session, false).await?;
    clients_page(&state, &session, &who, None).await
}

pub async fn add_client(
    State(state): State<HttpState>,
    session: Session,
    Form(form): Form<HashMap<String, String>>,
) -> Answer {
    let (who, actor) = change(&state, &session, &form, false).await?;
    let get = |k: &str| form.get(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    let new = api::NewClient {
        name: get("name").unwrap_or_default(),
        client_id: get("client_id"),
        redirect_uris: get("redirect_uris")
            .map(|u| u.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default(),
        confidential: get("confidential").is_some(),
    };
    let added = api::add_client(&state, &actor, new).await.map_err(api_error)?;
    let id = added["client_id"].as_str().unwrap_or_default().to_string();
    let secret = added["client_secret"].as_str().map(|s| (format!("Added {id}; its client_secret"), s.to_string()));
    let secret = secret.or_else(|| Some((format!("Added {id} (a public client); its client_id"), id.clone())));
    clients_page(&state, &session, &who, secret).await
}

async fn clients_page(
    state: &HttpState,
    session: &Session,
    who: &SignedIn,
    secret: Option<(String, String)>,
) -> Answer {
    let state = state.clone();
    let session = session.clone();
    let list = api::clients(&state).await.map_err(api_error)?;
    let mut sections = Vec::new();
    for (kind, heading) in [
        ("static", "Pre-registered (config file or CLI)"),
        ("metadata_document", "Metadata documents (identified by their URL)"),
        ("dynamic", "Dynamically registered"),
    ] {
        let s = |c: &Value, k: &str| c[k].as_str().unwrap_or_default().to_string();
        let mut section = section(heading);
        section.empty = "None.".into();
        section.table = Some(Table {
            headers: vec![
                "Client".into(),
                "Name".into(),
                "Redirect URIs".into(),
                "Last used".into(),
                "Document".into(),
                "".into(),
            ],
            rows: list
                .iter()
                .filter(|c| c["kind"] == kind)
                .take(200)
                .map(|c| {
                    let uris: Vec<String> = c["metadata"]["redirect_uris"]
                        .as_array()
                        .map(|l| l.iter().filter_map(Value::as_str).map(str::to_string).collect())
                        .unwrap_or_default();
                    let used = c["last_used_at"].as_i64().map(date).unwrap_or_else(|| "never".into());
                    let id = s(c, "client_id");
                    let delete = confirm_link(
                        &state,
                        &format!(
                            "/clients/delete?client_id={}",
                            url::form_urlencoded::byte_serialize(id.as_bytes()).collect::<String>()
                        ),
                        &format!("Delete the client {id} and its grants"),
                        "Delete",
                    );
                    // Metadata documents: until when the fetched copy is trusted without fetching again.
                    let document = match c["document_fresh_until"].as_i64() {
                        Some(t) if t > crate::flows::now() => format!("fresh until {}", date(t)),
                        Some(t) => format!("stale since {}", date(t)),
                        None => String::new(),
                    };
                    vec![text(&id), text(s(c, "client_name")), text(uris.join(" ")), text(used), text(document), delete]
                })
                .collect(),
        });
        sections.push(section);
    }
    let blocked = api::blocked_hosts(&state).await.map_err(api_error)?;
    let mut hosts = section("Blocked metadata-document hosts (with their subdomains)");
    hosts.empty = "None (besides cimd_deny_hosts in the config file).".into();
    hosts.table = Some(Table {
        headers: vec!["Host".into(), "Blocked by".into(), "Since".into(), "".into()],
        rows: blocked
            .iter()
            .map(|b| {
                let host = b["host"].as_str().unwrap_or_default();
                let unblock = confirm_link(
                    &state,
                    &format!(
                        "/clients/unblock?host={}",
                        url::form_urlencoded::byte_serialize(host.as_bytes()).collect::<String>()
                    ),
                    &format!("Unblock {host}"),
                    "Unblock",
                );
                vec![
                    text(host),
                    text(b["blocked_by"].as_str().unwrap_or_default()),
                    text(date(b["created_at"].as_i64().unwrap_or_default())),
                    unblock,
                ]
            })
            .collect(),
    });
    hosts.form = Some(FormView {
        action: path(&state, "/clients/block"),
        csrf_token: csrf(&session).await?,
        fields: vec![
            Field::new("Host", "host", "text")
                .required()
                .hint("e.g. apps.example.com: its metadata-document clients are refused at once"),
        ],
        submit: "Block".into(),
        danger: true,
        method: "post",
    });
    sections.push(hosts);
    let mut add = section("Pre-register a client");
    add.form = Some(FormView {
        action: path(&state, "/clients"),
        csrf_token: csrf(&session).await?,
        fields: vec![
            Field::new("Name", "name", "text").required(),
            Field::new("Client id", "client_id", "text").hint("Empty: generated"),
            Field::new("Redirect URIs", "redirect_uris", "text").hint("Separated by spaces"),
            Field::new("Confidential (issue a secret)", "confidential", "checkbox"),
        ],
        submit: "Add".into(),
        danger: false,
        method: "post",
    });
    sections.push(add);
    let mut view = page(&state, &session, who, "/clients", sections).await?;
    view.secret = secret;
    Ok(render(&view))
}

pub async fn block_host(
    State(state): State<HttpState>,
    session: Session,
    Form(form): Form<HashMap<String, String>>,
) -> Answer {
    let (_, actor) = change(&state, &session, &form, true).await?;
    api::block_host(&state, &actor, form.get("host").map(String::as_str).unwrap_or_default())
        .await
        .map_err(api_error)?;
    Ok(done(&state, "/clients"))
}

#[derive(serde::Deserialize)]
pub struct HostQuery {
    host: String,
}

pub async fn unblock_host(
    State(state): State<HttpState>,
    session: Session,
    Query(q): Query<HostQuery>,
    Form(form): Form<HashMap<String, String>>,
) -> Answer {
    let (_, actor) = change(&state, &session, &form, true).await?;
    api::unblock_host(&state, &actor, &q.host).await.map_err(api_error)?;
    Ok(done(&state, "/clients"))
}

#[derive(serde::Deserialize)]
pub struct ClientQuery {
    client_id: String,
}

pub async fn remove_client(
    State(state): State<HttpState>,
    session: Session,
    Query(q): Query<ClientQuery>,
    Form(form): Form<HashMap<String, String>>,
) -> Answer {
    let (_, actor) = change(&state, &session, &form, true).await?;
    api::remove_client(&state, &actor, &q.client_id).await.map_err(api_error)?;
    Ok(done(&state, "/clients"))
}

pub async fn add_resource(
    State(state): State<HttpState>,
    session: Session,
    Form(form): Form<HashMap<String, String>>,
) -> Answer {
    let (_, actor) = change(&state, &session, &form, false).await?;
    let get = |k: &str| form.get(k).map(|v| v.trim().to_string()).unwrap_or_default();
    let mut scopes = Vec::new();
    for part in get("scopes").split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((name, description)) = part.split_once('=') else {
            return Err(api_error(AdminApiError::invalid(format!("scope {part:?}: write name=description"))));
        };
        scopes.push(api::NewScope {
            name: name.trim().into(),
            description: description.trim().into(),
            default: true,
            groups: vec![],
        });
    }
    let allowed_groups = comma_list(&form, "allowed_groups");
    let token_lifetime = match get("token_lifetime") {
        t if t.is_empty() => None,
        t => Some(
            crate::config::Seconds::parse(&t)
                .map_err(|e| api_error(AdminApiError::invalid(format!("token lifetime: {e}"))))?
                .0,
        ),
    };
    let new = api::NewResource { uri: get("uri"), name: get("name"), scopes, allowed_groups, token_lifetime };
    if get("replace") == "yes" {
        api::update_resource(&state, &actor, new).await.map_err(api_error)?;
    } else {
        api::add_resource(&state, &actor, new).await.map_err(api_error)?;
    }
    Ok(done(&state, "/resources"))
}

#[derive(serde::Deserialize)]
pub struct UriQuery {
    uri: String,
}

pub async fn remove_resource(
    State(state): State<HttpState>,
    session: Session,
    Query(q): Query<UriQuery>,
    Form(form): Form<HashMap<String, String>>,
) -> Answer {
    let (_, actor) = change(&state, &session, &form, true).await?;
    api::remove_resource(&state, &actor, &q.uri).await.map_err(api_error)?;
    Ok(done(&state, "/resources"))
}

#[derive(serde::Deserialize)]
pub struct GrantFilter {
    user: Option<String>,
    client: Option<String>,
}

pub async fn grants(State(state): State<HttpState>, session: Session, Query(f): Query<GrantFilter>) -> Answer {
    let (who, _) = admin(&state, &session, false).await?;
    let user = f.user.filter(|u| !u.is_empty());
    let client = f.client.filter(|c| !c.is_empty());
    let list = api::grants(&state, user.as_deref(), client.as_deref()).await.map_err(api_error)?;
    let s = |g: &Value, k: &str| g[k].as_str().unwrap_or_default().to_string();
    let mut table = section("Live grants");
    table.empty = "No live grants match.".into();
    table.table = Some(Table {
        headers: vec!["Person".into(), "App".into(), "MCP server".into(), "Scope".into(), "Approved".into(), "".into()],
        rows: list
            .iter()
            .map(|g| {
                let app = g["client_name"].as_str().map(str::to_string).unwrap_or_else(|| s(g, "client_id"));
                let revoke = confirm_link(
                    &state,
                    &format!("/grants/{}/revoke", s(g, "id")),
                    &format!("Revoke {}'s grant for {app}", s(g, "username")),
                    "Revoke",
                );
                vec![
                    text(s(g, "username")),
                    text(app),
                    text(s(g, "resource")),
                    text(s(g, "scope")),
                    text(date(g["created_at"].as_i64().unwrap_or_default())),
                    revoke,
                ]
            })
            .collect(),
    });
    Ok(render(&page(&state, &session, &who, "/grants", vec![table]).await?))
}

pub async fn revoke_grant(
    State(state): State<HttpState>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Answer {
    let (_, actor) = change(&state, &session, &form, true).await?;
    api::revoke_grant(&state, &actor, &id).await.map_err(api_error)?;
    Ok(done(&state, "/grants"))
}

#[derive(serde::Deserialize)]
pub struct AuditFilter {
    event: Option<String>,
    before: Option<String>,
    limit: Option<i64>,
}

pub async fn audit(State(state): State<HttpState>, session: Session, Query(f): Query<AuditFilter>) -> Answer {
    let (who, _) = admin(&state, &session, false).await?;
    let event = f.event.filter(|e| !e.is_empty());
    let limit = f.limit.unwrap_or(100);
    let events =
        api::audit_page(&state, event.as_deref(), f.before.as_deref(), Some(limit)).await.map_err(api_error)?;
    let mut find = section("Filter");
    find.form = Some(FormView {
        action: path(&state, "/audit"),
        csrf_token: String::new(),
        fields: vec![Field {
            value: event.clone().unwrap_or_default(),
            ..Field::new("Event", "event", "search").hint("e.g. login_failed, grant_revoked, cli_change")
        }],
        submit: "Show".into(),
        danger: false,
        method: "get",
    });
    let mut table = section("Events, newest first");
    table.empty = "No events match.".into();
    table.table = Some(event_table(&events));
    let mut sections = vec![find, table];
    // A full page: there may be older events.
    if events.len() as i64 == limit
        && let Some(last) = events.last().and_then(|e| e["id"].as_str())
    {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        q.append_pair("before", last);
        if let Some(e) = &event {
            q.append_pair("event", e);
        }
        let mut more = section("More");
        more.table = Some(Table {
            headers: vec![],
            rows: vec![vec![Cell::Link {
                href: format!("{}?{}", path(&state, "/audit"), q.finish()),
                label: "Older events".into(),
            }]],
        });
        sections.push(more);
    }
    Ok(render(&page(&state, &session, &who, "/audit", sections).await?))
}

pub async fn keys(State(state): State<HttpState>, session: Session) -> Answer {
    let (who, _) = admin(&state, &session, false).await?;
    let keys = api::keys(&state).await.map_err(api_error)?;
    let mut table = section("Keys");
    table.table = Some(key_table(&keys));
    let mut rotate = section("Rotate");
    rotate.table = Some(Table {
        headers: vec![],
        rows: vec![vec![confirm_link(
            &state,
            "/keys/rotate",
            "Rotate the signing key (the new one is published first)",
            "Rotate the signing key",
        )]],
    });
    Ok(render(&page(&state, &session, &who, "/keys", vec![table, rotate]).await?))
}

pub async fn rotate_key(
    State(state): State<HttpState>,
    session: Session,
    Form(form): Form<HashMap<String, String>>,
) -> Answer {
    let (_, actor) = change(&state, &session, &form, true).await?;
    api::rotate_key(&state, &actor).await.map_err(api_error)?;
    Ok(done(&state, "/keys"))
}

pub async fn settings(State(state): State<HttpState>, session: Session) -> Answer {
    let (who, _) = admin(&state, &session, false).await?;
    let mut s = section("The configuration in effect (secrets redacted)");
    s.pre = Some(api::settings_text(&state));
    Ok(render(&page(&state, &session, &who, "/settings", vec![s]).await?))
}
