//! The reference peer (`--peer`, `--peer-only`): node-oidc-provider configured as an MCP
//! authorization server by `bench/peer/peer.mjs`. Starting and stopping it (under `taskset` like
//! the server), its fixture (the person, the two MCP servers and the resource server's
//! credentials, all handed to it at start), and each worker's setup through its own login and
//! consent pages.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;

use crate::flows::{
    REDIRECT_URI, authorize_path, authorize_path_for, code_from, pkce, random_b64, redeem, register_client,
};
use crate::http1::{Conn, expect_status, form, snippet};
use crate::launch::{free_port, terminate};
use crate::setup::{Fixture, Principal};
use crate::target::{Kind, Target, absolute, discover, path_of};
use crate::{Opts, Res};

/// The scenarios both servers run (and `all` means with a peer).
pub const SCENARIOS: &[&str] = &["metadata", "jwks", "register", "authcode", "refresh", "introspect"];

/// The MCP servers the peer issues tokens for: JWT access tokens for the first, opaque ones (which
/// it can introspect) for the second.
const RESOURCE: &str = "http://127.0.0.1:3001/mcp";
const OPAQUE_RESOURCE: &str = "http://127.0.0.1:3001/mcp-opaque";
const RS_CLIENT_ID: &str = "load-rs";

#[derive(clap::Args, Debug)]
pub struct PeerOpts {
    /// Run each scenario against Portcullis and at once against the reference peer
    /// (node-oidc-provider, bench/peer/peer.mjs, started with `node` under `taskset -c` of
    /// --server-cpu) at the same concurrency, duration and warm-up, then print both tables and each
    /// scenario's ratio
    /// (Portcullis ops/s / peer ops/s, with both p99s and the target ratio of issue 18), also as
    /// JSON lines (`"kind":"ratio"`). Scenarios: metadata, jwks, register, authcode, refresh,
    /// introspect (`all` means these six).
    #[arg(long, conflicts_with = "target")]
    pub peer: bool,
    /// Run the peer alone (no Portcullis, no ratios).
    #[arg(long, conflicts_with_all = ["target", "peer"])]
    pub peer_only: bool,
    /// The peer's directory (peer.mjs and its node_modules); default: bench/peer of the checkout
    /// this tool was built from, else ./bench/peer.
    #[arg(long, value_name = "DIR")]
    pub peer_dir: Option<PathBuf>,
    /// The node binary that runs the peer.
    #[arg(long, value_name = "PATH", default_value = "node")]
    pub node: PathBuf,
    /// An extra environment variable for the peer (repeatable), e.g. `PEER_SIGNING_ALG=ES256`.
    #[arg(long = "peer-env", value_name = "KEY=VALUE")]
    pub peer_env: Vec<String>,
}

impl PeerOpts {
    pub fn enabled(&self) -> bool {
        self.peer || self.peer_only
    }
}

/// A started peer; `stop` ends it and removes its directory (kept with --keep).
pub struct Peer {
    child: Child,
    pub pid: u32,
    dir: PathBuf,
    keep: bool,
    /// What to call it in tables: node-oidc-provider's version and node's.
    pub label: String,
}

impl Peer {
    pub async fn stop(&mut self) {
        terminate(&mut self.child).await;
        if self.keep {
            eprintln!("kept {} (peer.log)", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    /// The end of its output (start-up notices, server errors).
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("peer.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

/// The directory holding peer.mjs, with its dependencies installed.
fn peer_dir(opts: &PeerOpts) -> Res<PathBuf> {
    let dir = match &opts.peer_dir {
        Some(d) => d.clone(),
        None => [Path::new(env!("CARGO_MANIFEST_DIR")).join("peer"), PathBuf::from("bench/peer")]
            .into_iter()
            .find(|d| d.join("peer.mjs").is_file())
            .ok_or("bench/peer/peer.mjs not found: pass --peer-dir")?,
    };
    if !dir.join("peer.mjs").is_file() {
        return Err(format!("{} has no peer.mjs", dir.display()));
    }
    if !dir.join("node_modules/oidc-provider/package.json").is_file() {
        return Err(format!(
            "{}/node_modules is missing: install the peer's dependencies with `npm ci --prefix bench/peer`",
            dir.display()
        ));
    }
    Ok(dir)
}

/// Starts the peer on a free port with a fresh person and resource server secret; returns it
/// once its metadata answers, with its discovered target and the fixture the workers share.
pub async fn start(opts: &Opts) -> Res<(Peer, Target, Fixture)> {
    let dir = peer_dir(&opts.peer)?;
    let version = {
        let text = std::fs::read_to_string(dir.join("node_modules/oidc-provider/package.json"))
            .map_err(|e| format!("reading oidc-provider's package.json: {e}"))?;
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        v["version"].as_str().unwrap_or("?").to_string()
    };
    let node_version = Command::new(&opts.peer.node)
        .arg("--version")
        .output()
        .map_err(|e| format!("running {} --version: {e} (pass --node)", opts.peer.node.display()))?;
    let node_version = String::from_utf8_lossy(&node_version.stdout).trim().to_string();
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis();
    let run_dir = std::env::temp_dir().join(format!("portcullis-load-peer-{}-{stamp}", std::process::id()));
    std::fs::create_dir_all(&run_dir).map_err(|e| format!("creating {}: {e}", run_dir.display()))?;
    let log = std::fs::File::create(run_dir.join("peer.log")).map_err(|e| e.to_string())?;

    let port = free_port()?;
    let fixture = Fixture {
        username: format!("load-{}", random_b64(6).replace(['-', '_'], "x").to_lowercase()),
        password: format!("pw-{}", random_b64(12)),
        resource: RESOURCE.into(),
        introspect_resource: OPAQUE_RESOURCE.into(),
        introspection_basic: String::new(),
        // No client_credentials scenario against the peer.
        machine_basic: String::new(),
    };
    let rs_secret = random_b64(32);
    let mut cmd = match opts.server_cpu {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(cpu.to_string()).arg(&opts.peer.node);
            c
        }
        None => Command::new(&opts.peer.node),
    };
    cmd.arg("peer.mjs")
        .args(["--port", &port.to_string(), "--resource", RESOURCE, "--opaque-resource", OPAQUE_RESOURCE])
        .current_dir(&dir);
    for (k, _) in std::env::vars() {
        if k.starts_with("PEER_") || k == "NODE_OPTIONS" {
            cmd.env_remove(k);
        }
    }
    cmd.env("NODE_ENV", "production")
        .env("PEER_USERNAME", &fixture.username)
        .env("PEER_PASSWORD", &fixture.password)
        .env("PEER_RS_CLIENT_ID", RS_CLIENT_ID)
        .env("PEER_RS_SECRET", &rs_secret);
    for kv in &opts.peer.peer_env {
        let (k, v) = kv.split_once('=').ok_or_else(|| format!("--peer-env {kv:?}: expected KEY=VALUE"))?;
        cmd.env(k, v);
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("starting {}: {e}", opts.peer.node.display()))?;
    let pid = child.id();
    let label = format!("node-oidc-provider {version} (node {node_version})");
    let mut peer = Peer { child, pid, dir: run_dir, keep: opts.keep, label };
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    // It answers 503 until the provider is built (its signing key is generated first).
    let target = loop {
        if let Ok(Some(status)) = peer.child.try_wait() {
            let e = format!("the peer exited ({status}):\n{}", peer.log_tail());
            peer.stop().await;
            return Err(e);
        }
        match discover(&base).await {
            Ok(t) => break t,
            Err(e) if Instant::now() > deadline => {
                let e = format!("the peer did not serve its metadata within 60 s ({e}):\n{}", peer.log_tail());
                peer.stop().await;
                return Err(e);
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    let fixture = Fixture {
        introspection_basic: format!("Basic {}", STANDARD.encode(format!("{RS_CLIENT_ID}:{rs_secret}"))),
        ..fixture
    };
    eprintln!("started {} (pid {pid}) on {base}", peer.label);
    Ok((peer, Target { kind: Kind::Peer, ..target }, fixture))
}

/// The action of the page's `<form method="post">`, as a path.
fn form_action(html: &str) -> Res<String> {
    let marker = "<form method=\"post\" action=\"";
    let start = html.find(marker).ok_or_else(|| format!("no POST form in the page: {}", snippet(html)))? + marker.len();
    let end = html[start..].find('"').ok_or("unterminated form action")? + start;
    Ok(html[start..end].replace("&amp;", "&"))
}

/// Follows a redirect to an interaction page and checks it is the one expected.
async fn interaction_page(c: &mut Conn, t: &Target, location: Option<&str>, what: &str) -> Res<String> {
    let loc = location.ok_or_else(|| format!("no redirect to the {what} page"))?;
    let path = path_of(&absolute(t, loc))?;
    if !path.starts_with("/interaction/") {
        return Err(format!("redirected to {loc} instead of the {what} page"));
    }
    let r = c.get(&path).await?;
    expect_status(&r, 200, what)?;
    let page = r.text();
    let fields: &[&str] = match what {
        "login page" => &["name=\"username\"", "name=\"password\""],
        _ => &["name=\"decision\" value=\"approve\"", "name=\"decision\" value=\"deny\""],
    };
    if let Some(missing) = fields.iter().find(|f| !page.contains(*f)) {
        return Err(format!("{what}: no {missing} in {}", snippet(page)));
    }
    let action = form_action(page)?;
    if !action.starts_with(&path) {
        return Err(format!("{what}: the form posts to {action}, not under {path}"));
    }
    Ok(action)
}

/// Posts an interaction form; follows the redirect back to the authorization endpoint, whose
/// answer (the next page, or the client's redirect) is returned.
async fn submit(c: &mut Conn, t: &Target, action: &str, body: &str, what: &str) -> Res<crate::http1::Response> {
    let r = c.post_form(action, &[], body).await?;
    expect_status(&r, 303, what)?;
    let resume = path_of(&absolute(t, r.location.as_deref().ok_or_else(|| format!("{what}: no redirect"))?))?;
    if !resume.starts_with(&format!("{}/", t.authorize)) {
        return Err(format!("{what}: redirected to {resume}, not back to the authorization endpoint"));
    }
    let r = c.get(&resume).await?;
    expect_status(&r, 303, "authorization (resumed)")?;
    Ok(r)
}

#[derive(Deserialize)]
struct Opaque {
    access_token: String,
    token_type: String,
    expires_in: i64,
    refresh_token: Option<String>,
    scope: Option<String>,
}

/// A fresh client, signed in through the peer's login form and consented through its consent
/// form for the MCP server (JWT access tokens; its refresh token starts the worker's chain), then
/// consented for the opaque MCP server, whose access token is the one the `introspect` scenario
/// sends.
pub async fn principal(c: &mut Conn, t: &Target, fx: &Fixture, register: &str) -> Res<Principal> {
    c.cookie = None;
    let client_id = register_client(c, t, register).await?;
    let p = pkce();
    let state = random_b64(8);
    let r = c.get(&authorize_path(t, fx, &client_id, &p, &state)).await?;
    expect_status(&r, 303, "authorize (not signed in)")?;
    let action = interaction_page(c, t, r.location.as_deref(), "login page").await?;
    let body = form(&[("username", &fx.username), ("password", &fx.password)]);
    let r = submit(c, t, &action, &body, "login").await?;
    let action = interaction_page(c, t, r.location.as_deref(), "consent page").await?;
    let r = submit(c, t, &action, &form(&[("decision", "approve")]), "consent").await?;
    let code = code_from(r.location.as_deref(), t, &state)?;
    let (_, refresh_token) = redeem(c, t, fx, &client_id, &code, &p.verifier).await?;

    // The opaque MCP server: signed in already, so straight to its consent page.
    let p = pkce();
    let state = random_b64(8);
    let r = c.get(&authorize_path_for(t, &fx.introspect_resource, &client_id, &p, &state)).await?;
    expect_status(&r, 303, "authorize (second MCP server)")?;
    let action = interaction_page(c, t, r.location.as_deref(), "consent page").await?;
    let r = submit(c, t, &action, &form(&[("decision", "approve")]), "consent").await?;
    let code = code_from(r.location.as_deref(), t, &state)?;
    let body = form(&[
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("redirect_uri", REDIRECT_URI),
        ("client_id", &client_id),
        ("code_verifier", &p.verifier),
        ("resource", &fx.introspect_resource),
    ]);
    let r = c.post_form(&t.token, &[], &body).await?;
    expect_status(&r, 200, "token (authorization_code, opaque)")?;
    let tok: Opaque = r.json()?;
    if tok.token_type != "Bearer"
        || tok.expires_in <= 0
        || tok.access_token.len() < 32
        || tok.access_token.contains('.')
        || tok.refresh_token.is_none()
        || tok.scope.as_deref() != Some(crate::flows::SCOPE)
    {
        return Err(format!("token (opaque): unexpected body {}", snippet(r.text())));
    }
    Ok(Principal { client_id, cookie: c.cookie.clone(), refresh_token, access_token: tok.access_token })
}

#[cfg(test)]
mod tests {
    use super::form_action;

    #[test]
    fn form_action_reads_the_post_forms_target() {
        let page =
            r#"<h1>Sign in</h1><form method="post" action="/interaction/a_B-1/login?x=1&amp;y=2" autocomplete="off">"#;
        assert_eq!(form_action(page).unwrap(), "/interaction/a_B-1/login?x=1&y=2");
        assert!(form_action("<form method=\"get\" action=\"/x\">").is_err());
    }
}
