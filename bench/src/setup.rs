//! Who the benchmark acts as, prepared through the public interfaces before any timing: a person,
//! an MCP server with introspection credentials and a machine client allowed to reach it (through
//! the CLI), and per worker a registered client with a signed-in session that consented, and its
//! first tokens.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::Res;
use crate::flows::{authorize_path, code_from, hidden, pkce, random_b64, redeem, register_client};
use crate::http1::{Conn, expect_status, form};
use crate::launch::{CliDb, cli};
use crate::target::{Target, absolute, path_of};

/// What every worker shares: the person who signs in, the MCP server the tokens are for, and the
/// machine client (`client_credentials`, secret in a Basic header) that may reach it.
#[derive(Clone)]
pub struct Fixture {
    pub username: String,
    pub password: String,
    pub resource: String,
    /// The audience of the tokens the `introspect` scenario sends: `resource` for Portcullis; the
    /// peer introspects only opaque tokens, which it issues for a second MCP server.
    pub introspect_resource: String,
    pub introspection_basic: String,
    pub machine_basic: String,
}

/// Adds a person and an MCP server with introspection credentials through the CLI, under fresh
/// names so a target that is already in use keeps its own.
pub fn setup_fixture(bin: &Path, db: &CliDb) -> Res<Fixture> {
    let tag = random_b64(6).replace(['-', '_'], "x").to_lowercase();
    let username = format!("load-{tag}");
    let password = format!("pw-{}", random_b64(12));
    cli(bin, db, &["user", "add", &username, "--password-stdin"], Some(&format!("{password}\n")))?;
    let resource = format!("http://127.0.0.1:3001/mcp-{tag}");
    let out = cli(
        bin,
        db,
        &["resource", "add", &resource, "--name", "Load MCP", "--scope", "mcp:tools=Use the tools", "--introspection"],
        None,
    )?;
    let field = |name: &str| {
        out.lines()
            .find_map(|l| l.trim().strip_prefix(name).map(|v| v.trim().to_string()))
            .ok_or_else(|| format!("`resource add --introspection` printed no {name}: {out}"))
    };
    let id = field("client_id:")?;
    let secret = field("client_secret:")?;
    let machine_id = format!("load-machine-{tag}");
    let out = cli(
        bin,
        db,
        &[
            "client",
            "add",
            "--name",
            "Load machine",
            "--client-id",
            &machine_id,
            "--grant",
            "client_credentials",
            "--confidential",
            "--resource",
            &resource,
            "--scope",
            "mcp:tools",
        ],
        None,
    )?;
    let machine_secret = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("client_secret (shown once):").map(|v| v.trim().to_string()))
        .ok_or_else(|| format!("`client add --grant client_credentials` printed no secret: {out}"))?;
    Ok(Fixture {
        username,
        password,
        introspect_resource: resource.clone(),
        resource,
        introspection_basic: format!("Basic {}", STANDARD.encode(format!("{id}:{secret}"))),
        machine_basic: format!("Basic {}", STANDARD.encode(format!("{machine_id}:{machine_secret}"))),
    })
}

/// One worker's identity: its client, its signed-in session, and its tokens.
#[derive(Default, Clone)]
pub struct Principal {
    pub client_id: String,
    pub cookie: Option<String>,
    pub refresh_token: String,
    /// The token the `introspect` scenario sends (for `Fixture::introspect_resource`).
    pub access_token: String,
}

/// A fresh client, signed in through the login form and consented through the consent form, with
/// its first tokens. The connection's cookie is the signed-in session.
pub async fn principal(c: &mut Conn, t: &Target, fx: &Fixture, register: &str) -> Res<Principal> {
    c.cookie = None;
    let client_id = register_client(c, t, register).await?;
    let p = pkce();
    let state = random_b64(8);
    let r = c.get(&authorize_path(t, fx, &client_id, &p, &state)).await?;
    expect_status(&r, 303, "authorize (not signed in)")?;
    let login = path_of(&absolute(t, r.location.as_deref().ok_or("no login redirect")?))?;
    let r = c.get(&login).await?;
    expect_status(&r, 200, "login page")?;
    let csrf = hidden(r.text(), "csrf_token")?;
    let next = hidden(r.text(), "next")?;
    let body = form(&[("username", &fx.username), ("password", &fx.password), ("csrf_token", &csrf), ("next", &next)]);
    let r = c.post_form(&t.login, &[], &body).await?;
    expect_status(&r, 303, "login")?;
    let consent = path_of(&absolute(t, r.location.as_deref().ok_or("no consent redirect")?))?;
    let r = c.get(&consent).await?;
    expect_status(&r, 200, "consent page")?;
    let csrf = hidden(r.text(), "csrf_token")?;
    let request_id = hidden(r.text(), "request_id")?;
    let body = form(&[("csrf_token", &csrf), ("request_id", &request_id), ("decision", "approve")]);
    let r = c.post_form(&t.consent, &[], &body).await?;
    expect_status(&r, 303, "consent")?;
    let code = code_from(r.location.as_deref(), t, &state)?;
    let (access_token, refresh_token) = redeem(c, t, fx, &client_id, &code, &p.verifier).await?;
    Ok(Principal { client_id, cookie: c.cookie.clone(), refresh_token, access_token })
}
