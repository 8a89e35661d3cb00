//! The target: where it is, and its endpoints as its metadata names them (so a path issuer or
//! renamed endpoints need no flags).

use std::borrow::Cow;
use std::net::{SocketAddr, ToSocketAddrs};

use serde::Deserialize;

use crate::Res;
use crate::http1::{Conn, expect_status};

/// Which server the target is: Portcullis, or the reference peer (`--peer`), whose session and
/// redirects differ in ways the generator must know.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Portcullis,
    Peer,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Portcullis => "portcullis",
            Kind::Peer => "peer",
        }
    }

    /// The cookies a worker keeps: the session's, and the peer's interaction cookies (each with
    /// its `.sig` companion) that bind its login and consent forms to the browser.
    pub fn cookies(self) -> &'static [&'static str] {
        match self {
            Kind::Portcullis => &["portcullis"],
            Kind::Peer => &[
                "peer_session",
                "peer_session.sig",
                "peer_interaction",
                "peer_interaction.sig",
                "peer_resume",
                "peer_resume.sig",
            ],
        }
    }

    /// The status of the redirect that carries the code to the client.
    pub fn code_status(self) -> u16 {
        match self {
            Kind::Portcullis => 302,
            Kind::Peer => 303,
        }
    }
}

/// Where the server is, what it is, and the paths (with query, if any) of its endpoints.
#[derive(Clone)]
pub struct Target {
    pub kind: Kind,
    pub addr: SocketAddr,
    pub host: String,
    pub issuer: String,
    pub authorize: String,
    pub token: String,
    /// The token endpoint's absolute URL: what a DPoP proof's `htu` names.
    pub token_url: String,
    pub register: String,
    pub jwks: String,
    pub introspect: String,
    pub metadata: String,
    pub login: String,
    pub consent: String,
    pub healthz: String,
    pub readyz: String,
}

impl Target {
    /// A server at `addr` (`host` for the Host header) whose endpoints are not known yet.
    pub fn unresolved(addr: SocketAddr, host: String) -> Target {
        Target {
            kind: Kind::Portcullis,
            addr,
            host,
            issuer: String::new(),
            authorize: String::new(),
            token: String::new(),
            token_url: String::new(),
            register: String::new(),
            jwks: String::new(),
            introspect: String::new(),
            metadata: String::new(),
            login: String::new(),
            consent: String::new(),
            healthz: String::new(),
            readyz: String::new(),
        }
    }
}

/// The fields of the RFC 8414 metadata this tool uses (borrowed: the `metadata` scenario parses it
/// on every operation).
#[derive(Deserialize)]
pub struct Metadata<'a> {
    #[serde(borrow)]
    pub issuer: Cow<'a, str>,
    #[serde(borrow)]
    pub authorization_endpoint: Cow<'a, str>,
    #[serde(borrow)]
    pub token_endpoint: Cow<'a, str>,
    #[serde(borrow)]
    pub registration_endpoint: Cow<'a, str>,
    #[serde(borrow)]
    pub jwks_uri: Cow<'a, str>,
    #[serde(borrow)]
    pub introspection_endpoint: Cow<'a, str>,
    pub code_challenge_methods_supported: Vec<Cow<'a, str>>,
}

/// The path and query of an absolute URL: requests go to the target's address, whatever host the URL
/// names.
pub fn path_of(url: &str) -> Res<String> {
    let u = url::Url::parse(url).map_err(|e| format!("bad URL {url:?}: {e}"))?;
    Ok(match u.query() {
        Some(q) => format!("{}?{q}", u.path()),
        None => u.path().to_string(),
    })
}

/// Resolves the base URL and reads the endpoints from the authorization server metadata.
pub async fn discover(base: &str) -> Res<Target> {
    let u = url::Url::parse(base).map_err(|e| format!("bad --target {base:?}: {e}"))?;
    if u.scheme() != "http" {
        return Err("only plain-http targets are supported".into());
    }
    let host = u.host_str().ok_or("the target has no host")?.to_string();
    let port = u.port_or_known_default().unwrap_or(80);
    let addr = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| format!("resolving {host}: {e}"))?
        .next()
        .ok_or("the target host does not resolve")?;
    let prefix = u.path().trim_end_matches('/').to_string();
    let mut t = Target {
        metadata: format!("/.well-known/oauth-authorization-server{prefix}"),
        login: format!("{prefix}/login"),
        consent: format!("{prefix}/consent"),
        healthz: format!("{prefix}/healthz"),
        readyz: format!("{prefix}/readyz"),
        ..Target::unresolved(addr, format!("{host}:{port}"))
    };
    let mut c = Conn::new(&t);
    let r = c.get(&t.metadata).await?;
    expect_status(&r, 200, "metadata")?;
    let m: Metadata = r.json()?;
    t.issuer = m.issuer.to_string();
    t.authorize = path_of(&m.authorization_endpoint)?;
    t.token = path_of(&m.token_endpoint)?;
    t.token_url = m.token_endpoint.to_string();
    t.register = path_of(&m.registration_endpoint)?;
    t.jwks = path_of(&m.jwks_uri)?;
    t.introspect = path_of(&m.introspection_endpoint)?;
    Ok(t)
}

/// A `Location` made absolute against the target (the server redirects with paths).
pub fn absolute(t: &Target, loc: &str) -> String {
    if loc.starts_with('/') { format!("http://{}{loc}", t.host) } else { loc.to_string() }
}
