//! `portcullis doctor`: checks a deployment from the outside, as an MCP client would, and says
//! what to fix. It reads the issuer's metadata documents and keys over HTTP, then each MCP server's
//! protected-resource metadata (RFC 9728) and its answer to an unauthenticated request; with
//! `token_check`, it mints a short-lived token for each server (and one for another audience) and
//! sees which the server accepts.
//!
//! These are an operator's own URLs, so the requests go out directly (loopback and private
//! addresses allowed), not through the fetcher for client-supplied URLs.

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::oauth::resource::ResourceUri;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Pass,
    Warn,
    Fail,
}

/// One check's outcome: what was checked, what was found, and what to do.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub check: String,
    pub status: Status,
    pub detail: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub hint: String,
}

/// What the doctor needs to know.
pub struct Subject<'a> {
    pub issuer: &'a str,
    /// The kid of the key that signs now (from the database), to look for in the JWKS.
    pub signing_kid: Option<&'a str>,
    /// The MCP servers to check: (canonical URL, tokens minted for it when checking tokens).
    pub servers: Vec<Server>,
}

pub struct Server {
    pub uri: String,
    /// With `--token-check`: a token for this server, and one for another audience.
    pub tokens: Option<(String, String)>,
}

#[derive(Default)]
pub struct Report {
    pub checks: Vec<Check>,
}

impl Report {
    fn add(&mut self, check: impl Into<String>, status: Status, detail: impl Into<String>, hint: impl Into<String>) {
        self.checks.push(Check { check: check.into(), status, detail: detail.into(), hint: hint.into() });
    }

    pub fn failed(&self) -> bool {
        self.checks.iter().any(|c| c.status == Status::Fail)
    }
}

struct Answer {
    status: u16,
    date: Option<String>,
    www_authenticate: Option<String>,
    json: Option<Value>,
}

async fn get(http: &reqwest::Client, url: &str) -> Result<Answer, String> {
    send(http.get(url).header("accept", "application/json")).await
}

async fn send(req: reqwest::RequestBuilder) -> Result<Answer, String> {
    let res = req.send().await.map_err(|e| e.to_string())?;
    let header = |name: &str| res.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let (date, www_authenticate) = (header("date"), header("www-authenticate"));
    let status = res.status().as_u16();
    let body = res.bytes().await.map_err(|e| e.to_string())?;
    Ok(Answer { status, date, www_authenticate, json: serde_json::from_slice(&body).ok() })
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// RFC 8414 §3: the well-known segment goes between the host and the issuer's path.
fn well_known(issuer: &str, name: &str) -> String {
    match url::Url::parse(issuer) {
        Ok(u) => format!("{}/.well-known/{name}{}", u.origin().ascii_serialization(), u.path().trim_end_matches('/')),
        Err(_) => format!("{issuer}/.well-known/{name}"),
    }
}

/// Checks of the configuration itself (no network): a public issuer whose private signing keys
/// would be stored in clear fails (review item 12). `main` appends these to the report.
pub fn settings_checks(settings: &crate::config::Settings) -> Vec<Check> {
    let mut report = Report::default();
    match settings.keys_in_clear_warning() {
        Some(warning) => report.add(
            "signing keys encrypted at rest",
            Status::Fail,
            warning,
            "set key_encryption_secret (PORTCULLIS_KEY_ENCRYPTION_SECRET) to a long random value kept outside the database",
        ),
        None => report.add(
            "signing keys encrypted at rest",
            Status::Pass,
            match settings.keys.encryption_secret {
                Some(_) => "key_encryption_secret is set",
                None => "development issuer (http or loopback)",
            },
            "",
        ),
    }
    report.checks
}

pub async fn examine(subject: &Subject<'_>) -> Report {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut report = Report::default();
    let http = match reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            report.add("http client", Status::Fail, e.to_string(), "");
            return report;
        }
    };
    let issuer = subject.issuer;
    issuer_checks(&http, subject, &mut report).await;
    for server in &subject.servers {
        server_checks(&http, issuer, server, &mut report).await;
    }
    report
}

async fn issuer_checks(http: &reqwest::Client, subject: &Subject<'_>, report: &mut Report) {
    let issuer = subject.issuer;
    match url::Url::parse(issuer) {
        Ok(u) if u.scheme() == "https" || is_loopback(&u) => report.add("issuer uses https", Status::Pass, issuer, ""),
        Ok(_) => report.add(
            "issuer uses https",
            Status::Fail,
            format!("{issuer} is plain http on a public host"),
            "serve https (tls_cert_file/tls_key_file, or a TLS-terminating proxy) and set issuer to the https URL",
        ),
        Err(e) => report.add("issuer uses https", Status::Fail, e.to_string(), "set issuer to the public URL"),
    }
    let oauth_url = well_known(issuer, "oauth-authorization-server");
    let oauth = match get(http, &oauth_url).await {
        Ok(a) if a.status == 200 && a.json.is_some() => {
            report.add("issuer answers", Status::Pass, format!("{oauth_url} → 200"), "");
            if let Some(date) = a.date.as_deref().and_then(httpdate) {
                let skew = (date - crate::store::now()).abs();
                if skew > 60 {
                    report.add(
                        "clock",
                        Status::Warn,
                        format!("the server's clock is {skew} s off this machine's"),
                        "run NTP on both: tokens carry times, and skew makes them look expired or future",
                    );
                } else {
                    report.add("clock", Status::Pass, format!("within {skew} s"), "");
                }
            }
            a.json.unwrap_or_default()
        }
        Ok(a) => {
            report.add(
                "issuer answers",
                Status::Fail,
                format!("{oauth_url} → HTTP {}", a.status),
                "is the server running at the issuer's URL? is a proxy forwarding the well-known path?",
            );
            return;
        }
        Err(e) => {
            report.add(
                "issuer answers",
                Status::Fail,
                format!("{oauth_url}: {e}"),
                "is the server running and reachable from here?",
            );
            return;
        }
    };
    let field = |doc: &Value, k: &str| doc.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
    if field(&oauth, "issuer") == issuer {
        report.add("metadata issuer", Status::Pass, "byte-equal to the issuer", "");
    } else {
        report.add(
            "metadata issuer",
            Status::Fail,
            format!("the metadata says {:?}", field(&oauth, "issuer")),
            "set `issuer` to exactly the URL clients use (no trailing slash)",
        );
    }
    let under: Vec<String> = ["authorization_endpoint", "token_endpoint", "jwks_uri", "registration_endpoint"]
        .iter()
        .map(|k| field(&oauth, k))
        .filter(|v| !v.is_empty() && !v.starts_with(issuer))
        .collect();
    if under.is_empty() {
        report.add("endpoints under the issuer", Status::Pass, "", "");
    } else {
        report.add("endpoints under the issuer", Status::Fail, under.join(", "), "the issuer must be the public URL");
    }
    let oidc_url = format!("{issuer}/.well-known/openid-configuration");
    match get(http, &oidc_url).await {
        Ok(a) if a.status == 200 => {
            let oidc = a.json.unwrap_or_default();
            let agree = ["issuer", "token_endpoint", "jwks_uri"].iter().all(|k| field(&oidc, k) == field(&oauth, k));
            if agree {
                report.add("OIDC discovery agrees", Status::Pass, "", "");
            } else {
                report.add(
                    "OIDC discovery agrees",
                    Status::Fail,
                    "issuer, token_endpoint or jwks_uri differ",
                    "a proxy may rewrite one of the documents",
                );
            }
        }
        Ok(a) => report.add(
            "OIDC discovery agrees",
            Status::Warn,
            format!("{oidc_url} → HTTP {}", a.status),
            "forward /.well-known/openid-configuration too",
        ),
        Err(e) => report.add("OIDC discovery agrees", Status::Warn, e, ""),
    }
    let jwks_uri = field(&oauth, "jwks_uri");
    match get(http, &jwks_uri).await {
        Ok(a) if a.status == 200 => {
            let kids: Vec<String> = a
                .json
                .as_ref()
                .and_then(|j| j.get("keys"))
                .and_then(Value::as_array)
                .map(|keys| {
                    keys.iter().filter_map(|k| k.get("kid").and_then(Value::as_str)).map(str::to_string).collect()
                })
                .unwrap_or_default();
            match subject.signing_kid {
                Some(kid) if kids.iter().any(|k| k == kid) => report.add(
                    "JWKS holds the signing key",
                    Status::Pass,
                    format!("{} keys, {kid} among them", kids.len()),
                    "",
                ),
                Some(kid) => report.add(
                    "JWKS holds the signing key",
                    Status::Fail,
                    format!("{kid} is not among {kids:?}"),
                    "is this the server's database? (--config / PORTCULLIS_DATABASE_URL)",
                ),
                None => report.add(
                    "JWKS holds the signing key",
                    Status::Warn,
                    "no signing key in the database yet",
                    "start the server once",
                ),
            }
        }
        Ok(a) => report.add("JWKS holds the signing key", Status::Fail, format!("{jwks_uri} → HTTP {}", a.status), ""),
        Err(e) => report.add("JWKS holds the signing key", Status::Fail, format!("{jwks_uri}: {e}"), ""),
    }
}

async fn server_checks(http: &reqwest::Client, issuer: &str, server: &Server, report: &mut Report) {
    let name = |what: &str| format!("{}: {what}", server.uri);
    let Ok(uri) = ResourceUri::parse(&server.uri) else {
        report.add(name("URL"), Status::Fail, "not a canonical https URL", "register it as clients will use it");
        return;
    };
    let inserted = uri.metadata_url();
    let root = match url::Url::parse(uri.as_str()) {
        Ok(u) => format!("{}/.well-known/oauth-protected-resource", u.origin().ascii_serialization()),
        Err(_) => inserted.clone(),
    };
    let mut found = None;
    for url in [&inserted, &root] {
        if let Ok(a) = get(http, url).await
            && a.status == 200
            && let Some(doc) = a.json
        {
            found = Some((url.clone(), doc));
            break;
        }
    }
    let Some((url, doc)) = found else {
        report.add(
            name("protected-resource metadata"),
            Status::Fail,
            format!("neither {inserted} nor {root} answers 200 with JSON"),
            "serve the document `portcullis resource add` printed (README: Connect your MCP server)",
        );
        return;
    };
    let status = if url == inserted { Status::Pass } else { Status::Warn };
    let hint = if url == inserted { "" } else { "serve it at the path-inserted URL too (RFC 9728 §3.1)" };
    report.add(name("protected-resource metadata"), status, url, hint);
    let resource = doc.get("resource").and_then(Value::as_str).unwrap_or_default();
    if resource == uri.as_str() {
        report.add(name("metadata resource"), Status::Pass, resource, "");
    } else {
        report.add(
            name("metadata resource"),
            Status::Fail,
            format!("the document says {resource:?}"),
            format!("set \"resource\" to exactly {:?}: clients bind tokens to it", uri.as_str()),
        );
    }
    let servers: Vec<&str> = doc
        .get("authorization_servers")
        .and_then(Value::as_array)
        .map(|l| l.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if servers.contains(&issuer) {
        report.add(name("authorization_servers"), Status::Pass, issuer, "");
    } else {
        report.add(
            name("authorization_servers"),
            Status::Fail,
            format!("lists {servers:?}"),
            format!("list this issuer: \"authorization_servers\": [\"{issuer}\"]"),
        );
    }
    let anonymous = mcp_request(http, uri.as_str(), None).await;
    match anonymous {
        Ok(a) if a.status == 401 && a.www_authenticate.as_deref().is_some_and(|h| h.contains("resource_metadata=")) => {
            report.add(name("401 without a token"), Status::Pass, "WWW-Authenticate names resource_metadata", "")
        }
        Ok(a) if a.status == 401 => report.add(
            name("401 without a token"),
            Status::Fail,
            format!("401, but WWW-Authenticate is {:?}", a.www_authenticate.unwrap_or_default()),
            format!("answer with WWW-Authenticate: Bearer resource_metadata=\"{inserted}\""),
        ),
        Ok(a) => report.add(
            name("401 without a token"),
            Status::Fail,
            format!("an MCP request without a token got HTTP {}", a.status),
            "require a token: answer 401 with WWW-Authenticate naming resource_metadata",
        ),
        Err(e) => report.add(name("401 without a token"), Status::Fail, e, "is the MCP server running?"),
    }
    if let Some((good, foreign)) = &server.tokens {
        match mcp_request(http, uri.as_str(), Some(good)).await {
            Ok(a) if a.status != 401 && a.status != 403 => {
                report.add(name("accepts its token"), Status::Pass, format!("HTTP {}", a.status), "")
            }
            Ok(a) => report.add(
                name("accepts its token"),
                Status::Fail,
                format!("a valid token for it got HTTP {}", a.status),
                format!("verify against {issuer}/jwks.json with iss {issuer} and aud {}", uri.as_str()),
            ),
            Err(e) => report.add(name("accepts its token"), Status::Fail, e, ""),
        }
        match mcp_request(http, uri.as_str(), Some(foreign)).await {
            Ok(a) if a.status == 401 || a.status == 403 => {
                report.add(name("refuses another audience"), Status::Pass, format!("HTTP {}", a.status), "")
            }
            Ok(a) => report.add(
                name("refuses another audience"),
                Status::Fail,
                format!("a token for another server got HTTP {}", a.status),
                "check the token's aud: a token for another MCP server must not work here",
            ),
            Err(e) => report.add(name("refuses another audience"), Status::Fail, e, ""),
        }
    }
}

/// An MCP `initialize` request, as a client's first.
async fn mcp_request(http: &reqwest::Client, url: &str, token: Option<&str>) -> Result<Answer, String> {
    let body = serde_json::json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": { "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": { "name": "portcullis-doctor", "version": env!("CARGO_PKG_VERSION") } }
    });
    let mut req = http
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_string());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    send(req).await
}

/// An HTTP-date (IMF-fixdate) as a Unix time.
fn httpdate(s: &str) -> Option<i64> {
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    time::PrimitiveDateTime::parse(s, &format).ok().map(|t| t.assume_utc().unix_timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_urls_follow_rfc_8414_insertion() {
        assert_eq!(
            well_known("https://a.example", "oauth-authorization-server"),
            "https://a.example/.well-known/oauth-authorization-server"
        );
        assert_eq!(
            well_known("https://a.example/t1", "oauth-authorization-server"),
            "https://a.example/.well-known/oauth-authorization-server/t1"
        );
        assert_eq!(httpdate("Sun, 06 Nov 1994 08:49:37 GMT"), Some(784111777));
    }

    #[test]
    fn a_public_issuer_without_key_encryption_fails() {
        let settings = |secret: Option<&str>| {
            crate::config::Config {
                issuer: Some("https://auth.example.com".into()),
                database_url: Some(crate::config::Secret::new("sqlite::memory:")),
                key_encryption_secret: secret.map(crate::config::Secret::new),
                ..crate::config::Config::default()
            }
            .validate()
            .unwrap()
        };
        let checks = settings_checks(&settings(None));
        assert_eq!(checks[0].status, Status::Fail, "{:?}", checks[0]);
        assert!(checks[0].hint.contains("key_encryption_secret"));
        assert_eq!(settings_checks(&settings(Some("0123456789abcdef")))[0].status, Status::Pass);
    }
}
