//! The scenarios: one timed operation each, validated, and the worker loop that runs one for a
//! fixed window. Each worker owns its connection and principal, so workers never contend in the
//! generator.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::dpop::DpopKey;
use crate::flows::{
    authorize_path, code_from, hidden, machine_token_ok, pkce, random_b64, redeem, redeem_with, register_client,
    tokens_ok, tokens_ok_as,
};
use crate::http1::{Conn, expect_status, form, snippet};
use crate::setup::{Fixture, Principal};
use crate::target::{Metadata, Target};
use crate::{Res, STOP};

/// The order of `all`: the scenarios that need no sign-in first, so their peak RSS is the server's
/// without the argon2 hashes of the setup; `login` last.
pub const ALL: &[&str] = &[
    "healthz",
    "readyz",
    "metadata",
    "jwks",
    "register",
    "client_credentials",
    "introspect",
    "authcode",
    "refresh",
    "authcode_dpop",
    "refresh_dpop",
    "login",
];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Scenario {
    Healthz,
    Readyz,
    Metadata,
    Jwks,
    Register,
    Authcode,
    Refresh,
    /// `authcode` and `refresh` with a DPoP proof on each token request (bound tokens).
    AuthcodeDpop,
    RefreshDpop,
    Introspect,
    Login,
    ClientCredentials,
}

impl Scenario {
    pub fn parse(s: &str) -> Res<Scenario> {
        Ok(match s {
            "healthz" => Scenario::Healthz,
            "readyz" => Scenario::Readyz,
            "metadata" => Scenario::Metadata,
            "jwks" => Scenario::Jwks,
            "register" => Scenario::Register,
            "authcode" => Scenario::Authcode,
            "refresh" => Scenario::Refresh,
            "authcode_dpop" => Scenario::AuthcodeDpop,
            "refresh_dpop" => Scenario::RefreshDpop,
            "introspect" => Scenario::Introspect,
            "login" => Scenario::Login,
            "client_credentials" => Scenario::ClientCredentials,
            other => return Err(format!("unknown scenario {other:?} (one of {} or all)", ALL.join(", "))),
        })
    }
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Healthz => "healthz",
            Scenario::Readyz => "readyz",
            Scenario::Metadata => "metadata",
            Scenario::Jwks => "jwks",
            Scenario::Register => "register",
            Scenario::Authcode => "authcode",
            Scenario::Refresh => "refresh",
            Scenario::AuthcodeDpop => "authcode_dpop",
            Scenario::RefreshDpop => "refresh_dpop",
            Scenario::Introspect => "introspect",
            Scenario::Login => "login",
            Scenario::ClientCredentials => "client_credentials",
        }
    }
    pub fn needs_principals(self) -> bool {
        matches!(
            self,
            Scenario::Authcode
                | Scenario::Refresh
                | Scenario::AuthcodeDpop
                | Scenario::RefreshDpop
                | Scenario::Introspect
                | Scenario::Login
        )
    }
    /// The person, the MCP server and the machine client, made through the CLI.
    pub fn needs_fixture(self) -> bool {
        self.needs_principals() || self == Scenario::ClientCredentials
    }
}

/// What the workers share, read-only.
pub struct Ctx {
    pub target: Target,
    pub fixture: Option<Fixture>,
    pub register_body: String,
}

/// One concurrent worker: it keeps its connection and principal from one scenario to the next.
pub struct Worker {
    pub conn: Conn,
    pub principal: Principal,
    /// The login page's CSRF token for the next login.
    pub login_csrf: Option<String>,
    /// The worker's DPoP key, and its chain of refresh tokens bound to it.
    pub dpop: DpopKey,
    pub dpop_refresh: Option<String>,
}

#[derive(Deserialize)]
struct Introspection<'a> {
    active: bool,
    #[serde(borrow)]
    aud: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<serde_json::Map<String, serde_json::Value>>,
}

/// A GET of a health endpoint whose body must pass `ok`.
async fn probe(w: &mut Worker, path: &str, what: &str, ok: impl Fn(&str) -> bool) -> Res<Duration> {
    let t0 = Instant::now();
    let r = w.conn.get(path).await?;
    expect_status(&r, 200, what)?;
    if !ok(r.text()) {
        return Err(format!("{what}: unexpected body {}", snippet(r.text())));
    }
    Ok(t0.elapsed())
}

/// One operation; returns its timed duration.
async fn op(s: Scenario, w: &mut Worker, ctx: &Ctx) -> Res<Duration> {
    let t = &ctx.target;
    match s {
        Scenario::Healthz => probe(w, &t.healthz, "healthz", |body| body == r#"{"status":"ok"}"#).await,
        Scenario::Readyz => probe(w, &t.readyz, "readyz", |body| body.contains(r#""status":"ready""#)).await,
        Scenario::Metadata => {
            let t0 = Instant::now();
            let r = w.conn.get(&t.metadata).await?;
            expect_status(&r, 200, "metadata")?;
            let m: Metadata = r.json()?;
            if m.issuer != t.issuer || !m.code_challenge_methods_supported.iter().any(|c| c == "S256") {
                return Err("metadata: wrong issuer or no S256".into());
            }
            Ok(t0.elapsed())
        }
        Scenario::Jwks => {
            let t0 = Instant::now();
            let r = w.conn.get(&t.jwks).await?;
            expect_status(&r, 200, "jwks")?;
            let set: Jwks = r.json()?;
            if set.keys.is_empty() || !set.keys.iter().all(|k| k.contains_key("kid") && k.contains_key("kty")) {
                return Err(format!("jwks: unexpected body {}", snippet(r.text())));
            }
            Ok(t0.elapsed())
        }
        Scenario::Register => {
            let t0 = Instant::now();
            register_client(&mut w.conn, t, &ctx.register_body).await?;
            Ok(t0.elapsed())
        }
        Scenario::Authcode => {
            let fx = ctx.fixture.as_ref().expect("fixture");
            let p = pkce();
            let state = random_b64(8);
            let path = authorize_path(t, fx, &w.principal.client_id, &p, &state);
            let t0 = Instant::now();
            let r = w.conn.get(&path).await?;
            expect_status(&r, t.kind.code_status(), "authorize")?;
            let code = code_from(r.location.as_deref(), t, &state)?;
            redeem(&mut w.conn, t, fx, &w.principal.client_id, &code, &p.verifier).await?;
            Ok(t0.elapsed())
        }
        Scenario::AuthcodeDpop => {
            let fx = ctx.fixture.as_ref().expect("fixture");
            let p = pkce();
            let state = random_b64(8);
            let path = authorize_path(t, fx, &w.principal.client_id, &p, &state);
            // The client's cost of a proof is not the server's: made before the clock starts.
            let proof = w.dpop.proof("POST", &t.token_url)?;
            let t0 = Instant::now();
            let r = w.conn.get(&path).await?;
            expect_status(&r, 302, "authorize")?;
            let code = code_from(r.location.as_deref(), t, &state)?;
            redeem_with(&mut w.conn, t, fx, &w.principal.client_id, &code, &p.verifier, Some(&proof)).await?;
            Ok(t0.elapsed())
        }
        Scenario::RefreshDpop => {
            let refresh_token = match w.dpop_refresh.take() {
                Some(r) => r,
                None => bound_chain(w, ctx).await?,
            };
            let body = form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", &refresh_token),
                ("client_id", &w.principal.client_id),
            ]);
            let proof = w.dpop.proof("POST", &t.token_url)?;
            let t0 = Instant::now();
            let r = w.conn.post_form(&t.token, &[("DPoP", &proof)], &body).await?;
            let elapsed = t0.elapsed();
            expect_status(&r, 200, "token (refresh_token, DPoP)")?;
            let (_, next) = tokens_ok_as(&r, "DPoP")?;
            if next == refresh_token {
                return Err("refresh_dpop: the refresh token was not rotated".into());
            }
            w.dpop_refresh = Some(next);
            Ok(elapsed)
        }
        Scenario::Refresh => {
            let body = form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", &w.principal.refresh_token),
                ("client_id", &w.principal.client_id),
            ]);
            let t0 = Instant::now();
            let r = w.conn.post_form(&t.token, &[], &body).await?;
            let elapsed = t0.elapsed();
            expect_status(&r, 200, "token (refresh_token)")?;
            let (_, next) = tokens_ok(&r)?;
            if next == w.principal.refresh_token {
                return Err("refresh: the refresh token was not rotated".into());
            }
            w.principal.refresh_token = next;
            Ok(elapsed)
        }
        Scenario::Introspect => {
            let fx = ctx.fixture.as_ref().expect("fixture");
            let body = form(&[("token", &w.principal.access_token)]);
            let t0 = Instant::now();
            let r = w.conn.post_form(&t.introspect, &[("Authorization", &fx.introspection_basic)], &body).await?;
            expect_status(&r, 200, "introspect")?;
            let i: Introspection = r.json()?;
            if !i.active || i.aud.as_deref() != Some(fx.introspect_resource.as_str()) {
                return Err(format!("introspect: not active for the resource: {}", snippet(r.text())));
            }
            Ok(t0.elapsed())
        }
        Scenario::ClientCredentials => {
            let fx = ctx.fixture.as_ref().expect("fixture");
            let body = form(&[("grant_type", "client_credentials"), ("resource", &fx.resource)]);
            let t0 = Instant::now();
            let r = w.conn.post_form(&t.token, &[("Authorization", &fx.machine_basic)], &body).await?;
            let elapsed = t0.elapsed();
            expect_status(&r, 200, "token (client_credentials)")?;
            machine_token_ok(&r)?;
            Ok(elapsed)
        }
        Scenario::Login => {
            let fx = ctx.fixture.as_ref().expect("fixture");
            // The CSRF token changes with every sign-in: fetch the form first (not timed).
            let csrf = match w.login_csrf.take() {
                Some(c) => c,
                None => {
                    let r = w.conn.get(&t.login).await?;
                    expect_status(&r, 200, "login page")?;
                    hidden(r.text(), "csrf_token")?
                }
            };
            let body =
                form(&[("username", &fx.username), ("password", &fx.password), ("csrf_token", &csrf), ("next", "")]);
            let before = w.conn.cookie.clone();
            let t0 = Instant::now();
            let r = w.conn.post_form(&t.login, &[], &body).await?;
            let elapsed = t0.elapsed();
            expect_status(&r, 200, "login")?;
            if !r.text().contains("You are signed in") || w.conn.cookie.is_none() || w.conn.cookie == before {
                return Err("login: no new signed-in session".into());
            }
            Ok(elapsed)
        }
    }
}

/// A new chain of refresh tokens bound to the worker's DPoP key (not timed): this public client's
/// refresh tokens are bound when its code is redeemed with a proof.
async fn bound_chain(w: &mut Worker, ctx: &Ctx) -> Res<String> {
    let fx = ctx.fixture.as_ref().expect("fixture");
    let p = pkce();
    let state = random_b64(8);
    let path = authorize_path(&ctx.target, fx, &w.principal.client_id, &p, &state);
    let r = w.conn.get(&path).await?;
    expect_status(&r, 302, "authorize")?;
    let code = code_from(r.location.as_deref(), &ctx.target, &state)?;
    let proof = w.dpop.proof("POST", &ctx.target.token_url)?;
    let (_, refresh) =
        redeem_with(&mut w.conn, &ctx.target, fx, &w.principal.client_id, &code, &p.verifier, Some(&proof)).await?;
    Ok(refresh)
}

/// After a failed operation, put the worker back into a state where the next one can succeed.
async fn recover(s: Scenario, w: &mut Worker, ctx: &Ctx) {
    if s == Scenario::Refresh {
        // The chain may be broken: start a new one from the signed-in session (not timed).
        let fx = ctx.fixture.as_ref().expect("fixture");
        let p = pkce();
        let state = random_b64(8);
        let path = authorize_path(&ctx.target, fx, &w.principal.client_id, &p, &state);
        w.conn.cookie = w.principal.cookie.clone();
        if let Ok(r) = w.conn.get(&path).await
            && let Ok(code) = code_from(r.location.as_deref(), &ctx.target, &state)
            && let Ok((_, refresh)) =
                redeem(&mut w.conn, &ctx.target, fx, &w.principal.client_id, &code, &p.verifier).await
        {
            w.principal.refresh_token = refresh;
        }
    }
}

/// A worker's (then the scenario's) measurements: every latency in µs, and failures by message.
#[derive(Default)]
pub struct Tally {
    pub latencies_us: Vec<u32>,
    pub errors: u64,
    pub samples: BTreeMap<String, u64>,
}

/// Runs operations until `end`; counts those that start at or after `measure_from` and end by `end`.
pub async fn work(s: Scenario, mut w: Worker, ctx: Arc<Ctx>, measure_from: Instant, end: Instant) -> (Worker, Tally) {
    let mut tally = Tally::default();
    match s {
        Scenario::Authcode | Scenario::Refresh | Scenario::AuthcodeDpop | Scenario::RefreshDpop => {
            w.conn.cookie = w.principal.cookie.clone();
        }
        Scenario::Login => {
            w.conn.cookie = None;
            w.login_csrf = None;
        }
        _ => {}
    }
    while !STOP.load(Ordering::Relaxed) {
        let started = Instant::now();
        if started >= end {
            break;
        }
        let r = op(s, &mut w, &ctx).await;
        let done = Instant::now();
        let counted = started >= measure_from && done <= end;
        match r {
            Ok(d) if counted => tally.latencies_us.push(d.as_micros().min(u32::MAX as u128) as u32),
            Ok(_) => {}
            Err(e) => {
                if counted {
                    tally.errors += 1;
                    let key: String = e.chars().take(120).collect();
                    *tally.samples.entry(key).or_default() += 1;
                }
                recover(s, &mut w, &ctx).await;
            }
        }
    }
    (w, tally)
}

impl Tally {
    /// Adds a worker's tally to the scenario's.
    pub fn add(&mut self, t: Tally) {
        self.latencies_us.extend(t.latencies_us);
        self.errors += t.errors;
        for (k, v) in t.samples {
            *self.samples.entry(k).or_default() += v;
        }
    }
}
