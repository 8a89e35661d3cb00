//! Hostile input: a catalogue of malformed, oversized, repeated, mis-encoded, injection-looking and
//! open-redirect requests against every endpoint of the real app. Each must get a clean 4xx (a JSON
//! error on API endpoints, an error page on browser endpoints), never a 5xx, a redirect off-site or
//! a header split; afterwards the server is healthy, a normal flow still works, and no failed request
//! wrote a row.

use std::sync::Arc;

use portcullis::store::Db;
use reqwest::cookie::CookieStore;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{
    Engine, MCP, OAuthParams, PASSWORD, TestApp, approve_consent, authorize_approve_at, browser, count_rows, db_tests,
    hidden, location, pkce, query_of,
};

db_tests!(
    catalogue_gets_clean_4xx_and_writes_nothing,
    hostile_names_and_state_are_rendered_literally,
    rate_limit_answers_429_in_the_endpoint_s_own_kind,
);

const REDIRECT: &str = "https://app.example/cb";
const LOOPBACK: &str = "http://127.0.0.1/cb";
const SQL: &str = "'; DROP TABLE users; --";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
/// A valid authorization request for the fixture client, before the parameter under test.
const AQ: &str = "response_type=code&client_id={client_id}&code_challenge={challenge}&code_challenge_method=S256";
const KIB: usize = 1024;

/// Tables no failed request may write to. `audit_events` (failed sign-ins are recorded),
/// `web_sessions` (every browser gets a session with its CSRF token) and `login_throttle` (failed
/// sign-ins count towards a lockout) may grow, by design.
const TABLES: &[&str] = &[
    "clients",
    "grants",
    "authorization_codes",
    "refresh_tokens",
    "users",
    "resources",
    "resource_scopes",
    "revoked_access_tokens",
    "initial_access_tokens",
    "signing_keys",
    "used_client_assertions",
];

// ---- the catalogue ----

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// 4xx, `application/json`, an `error` string.
    Json,
    /// 4xx, `text/html` with an `<h1>`, no `<script>`.
    Page,
    /// 302/303 to this server (a relative path) or to the client's registered redirect URI; no
    /// CR/LF anywhere in `Location`, no injected header.
    SafeRedirect,
    /// Refused by the HTTP parser (hyper) before the app sees it: any 4xx, whatever the body.
    Transport,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    /// A browser with a session (and its CSRF token) but nobody signed in.
    Anon,
    /// alice's signed-in browser.
    Alice,
    /// A brand-new browser with its own session and CSRF token (for cases that sign in).
    Fresh,
}

struct Case {
    name: String,
    method: &'static str,
    target: Vec<u8>,
    headers: Vec<(&'static str, Vec<u8>)>,
    body: Vec<u8>,
    who: Who,
    kind: Kind,
    status: Option<u16>,
    /// Sent over a raw socket: bytes an HTTP client library would re-encode or refuse.
    raw: bool,
    /// Chunked request body (no Content-Length); raw only.
    chunked: bool,
}

fn case(kind: Kind, name: &str, method: &'static str, target: impl AsRef<[u8]>) -> Case {
    Case {
        name: name.to_string(),
        method,
        target: target.as_ref().to_vec(),
        headers: Vec::new(),
        body: Vec::new(),
        who: Who::Anon,
        kind,
        status: None,
        raw: false,
        chunked: false,
    }
}

fn api(name: &str, method: &'static str, target: impl AsRef<[u8]>) -> Case {
    case(Kind::Json, name, method, target)
}

fn page(name: &str, method: &'static str, target: impl AsRef<[u8]>) -> Case {
    case(Kind::Page, name, method, target)
}

fn redirect(name: &str, method: &'static str, target: impl AsRef<[u8]>) -> Case {
    case(Kind::SafeRedirect, name, method, target)
}

impl Case {
    fn typed(mut self, content_type: &str, body: impl AsRef<[u8]>) -> Self {
        self.headers.push(("content-type", content_type.as_bytes().to_vec()));
        self.body = body.as_ref().to_vec();
        self
    }
    fn form(self, body: impl AsRef<[u8]>) -> Self {
        self.typed("application/x-www-form-urlencoded", body)
    }
    fn json(self, body: impl AsRef<[u8]>) -> Self {
        self.typed("application/json", body)
    }
    /// A body without any Content-Type.
    fn bare(mut self, body: impl AsRef<[u8]>) -> Self {
        self.body = body.as_ref().to_vec();
        self
    }
    fn header(mut self, name: &'static str, value: impl AsRef<[u8]>) -> Self {
        self.headers.push((name, value.as_ref().to_vec()));
        self
    }
    fn bearer(self, token: &str) -> Self {
        self.header("authorization", format!("Bearer {token}"))
    }
    fn basic(self, credentials: impl AsRef<[u8]>) -> Self {
        use base64::Engine as _;
        let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
        self.header("authorization", format!("Basic {encoded}"))
    }
    fn alice(mut self) -> Self {
        self.who = Who::Alice;
        self
    }
    fn fresh(mut self) -> Self {
        self.who = Who::Fresh;
        self
    }
    fn status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }
    fn raw(mut self) -> Self {
        self.raw = true;
        self
    }
    fn chunked(mut self) -> Self {
        self.raw = true;
        self.chunked = true;
        self
    }
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// `n` bytes of a form body: `key=xxxx...`.
fn big_form(key: &str, n: usize) -> String {
    format!("{key}={}", "x".repeat(n))
}

fn hundred_params(prefix: &str) -> String {
    let junk: Vec<String> = (0..100).map(|i| format!("p{i}=v")).collect();
    format!("{prefix}&{}", junk.join("&"))
}

fn nested(depth: usize, open: &str, close: &str) -> String {
    format!("{}{}", open.repeat(depth), close.repeat(depth))
}

/// The catalogue: every case must get its clean answer.
fn catalogue() -> Vec<Case> {
    let nine_k = "x".repeat(9 * KIB);
    let over_limit = 70 * KIB;
    let crlf_state = enc("a\r\nSet-Cookie: injected=1");
    let mut v = vec![
        // ---- /authorize GET: failures before a redirect can be trusted show a page ----
        page("authorize: no parameters", "GET", "/authorize").status(400),
        page("authorize: SQL client_id", "GET", format!("/authorize?client_id={}", enc(SQL))).status(400),
        page("authorize: {{7*7}} client_id", "GET", format!("/authorize?client_id={}", enc("{{7*7}}"))),
        page("authorize: ${7*7} client_id", "GET", format!("/authorize?client_id={}", enc("${7*7}"))),
        page(
            "authorize: <script> client_id",
            "GET",
            format!("/authorize?client_id={}", enc("<script>alert(1)</script>")),
        ),
        page("authorize: repeated client_id", "GET", format!("/authorize?{AQ}&client_id={{client_id}}")).status(400),
        page(
            "authorize: repeated redirect_uri",
            "GET",
            format!("/authorize?{AQ}&redirect_uri={}&redirect_uri={}", enc(REDIRECT), enc(REDIRECT)),
        )
        .status(400),
        page("authorize: repeated state", "GET", format!("/authorize?{AQ}&state=a&state=b")).status(400),
        page("authorize: repeated response_type", "GET", format!("/authorize?{AQ}&response_type=code")).status(400),
        page("authorize: 9 KiB state", "GET", format!("/authorize?{AQ}&state={nine_k}")).status(400),
        page("authorize: 9 KiB client_id", "GET", format!("/authorize?client_id={nine_k}")).status(400),
        page("authorize: 100 parameters", "GET", format!("/authorize?{}", hundred_params(AQ))).status(400),
        page("authorize: %ZZ in client_id", "GET", "/authorize?client_id=%ZZ%ZZ").status(400),
        page("authorize: %C3%28 (invalid UTF-8) in client_id", "GET", "/authorize?client_id=%C3%28").status(400),
        page(
            "authorize: %C3%28 in redirect_uri",
            "GET",
            format!("/authorize?{AQ}&redirect_uri=https%3A%2F%2Fapp.example%2Fcb%C3%28"),
        )
        .status(400),
        page(
            "authorize: %ZZ in redirect_uri",
            "GET",
            format!("/authorize?{AQ}&redirect_uri=https%3A%2F%2Fapp.example%2Fcb%ZZ"),
        )
        .status(400),
        // hyper refuses non-ASCII bytes in the request line with a bare 400: the app never sees it.
        case(
            Kind::Transport,
            "authorize: raw invalid UTF-8 bytes in the query",
            "GET",
            b"/authorize?client_id=\xff\xfe\xc3\x28".as_slice(),
        )
        .raw()
        .status(400),
        page(
            "authorize: client_id as a metadata URL (CIMD off)",
            "GET",
            format!("/authorize?client_id={}", enc("https://evil.example/client.json")),
        )
        .status(400),
    ];
    // Open redirects: none of these is registered, so the answer is a page, never a Location.
    for (what, uri) in [
        ("https://evil.example", "https://evil.example"),
        ("//evil.example", "//evil.example"),
        ("lookalike host", "https://app.example.evil.example/cb"),
        ("javascript:", "javascript:alert(1)"),
        ("data:", "data:text/html,<script>alert(1)</script>"),
        ("userinfo", "https://app.example@evil.example/cb"),
        ("dot segments", "https://app.example/cb/../../evil"),
        ("query smuggling", "https://evil.example/?https://app.example/cb"),
        ("fragment", "https://app.example/cb#evil"),
        ("http downgrade", "http://app.example/cb"),
        ("CR/LF header injection", "https://app.example/cb\r\nSet-Cookie: injected=1"),
        ("trailing tab", "https://app.example/cb\t"),
        ("loopback userinfo", "http://127.0.0.1:8080@evil.example/cb"),
        ("loopback lookalike", "http://127.0.0.1.evil.example/cb"),
        ("backslash", "https://app.example\\@evil.example/cb"),
    ] {
        v.push(
            page(
                &format!("authorize GET: redirect_uri {what}"),
                "GET",
                format!("/authorize?{AQ}&redirect_uri={}", enc(uri)),
            )
            .status(400),
        );
    }
    for (what, uri) in [("https://evil.example", "https://evil.example"), ("javascript:", "javascript:alert(1)")] {
        v.push(
            page(&format!("authorize POST: redirect_uri {what}"), "POST", "/authorize")
                .form(format!("{AQ}&redirect_uri={}", enc(uri)))
                .status(400),
        );
    }
    v.extend([
        // ---- /authorize POST ----
        page("authorize POST: body over 64 KiB", "POST", "/authorize").form(big_form("state", over_limit)).status(413),
        page("authorize POST: chunked body over 64 KiB", "POST", "/authorize")
            .form(big_form("state", over_limit))
            .chunked()
            .status(413),
        page("authorize POST: raw invalid UTF-8 body", "POST", "/authorize").form(b"client_id=\xff\xfe".as_slice()).status(400),
        page("authorize POST: repeated client_id", "POST", "/authorize").form(format!("{AQ}&client_id={{client_id}}")).status(400),
        page("authorize POST: 100 parameters", "POST", "/authorize").form(hundred_params(AQ)).status(400),
        page("authorize POST: JSON body", "POST", "/authorize").json(r#"{"client_id":"{client_id}"}"#).status(400),
        page("authorize POST: %C3%28 in form", "POST", "/authorize").form("client_id=%C3%28").status(400),
        page("authorize POST: %ZZ in form", "POST", "/authorize").form("client_id=%ZZ").status(400),
        // ---- /login ----
        page("login POST: no CSRF token", "POST", "/login").form("username=alice&password=x").status(403),
        page("login POST: wrong CSRF token", "POST", "/login").form("username=alice&password=x&csrf_token=forged").status(403),
        page("login POST: SQL username", "POST", "/login")
            .form(format!("username={}&password=x&csrf_token={{csrf}}", enc(SQL)))
            .status(401),
        page("login POST: {{7*7}} username", "POST", "/login")
            .form(format!("username={}&password=x&csrf_token={{csrf}}", enc("{{7*7}}")))
            .status(401),
        page("login POST: ${7*7} username", "POST", "/login")
            .form(format!("username={}&password=x&csrf_token={{csrf}}", enc("${7*7}")))
            .status(401),
        page("login POST: <script> username", "POST", "/login")
            .form(format!("username={}&password=x&csrf_token={{csrf}}", enc("<script>alert(1)</script>")))
            .status(401),
        page("login POST: 9 KiB username", "POST", "/login")
            .form(format!("username={nine_k}&password=x&csrf_token={{csrf}}"))
            .status(401),
        page("login POST: 60 KiB password", "POST", "/login")
            .form(format!("username=alice&password={}&csrf_token={{csrf}}", "p".repeat(60 * KIB)))
            .status(401),
        page("login POST: %ZZ username", "POST", "/login").form("username=%ZZ&password=x&csrf_token={csrf}").status(401),
        page("login POST: %C3%28 password", "POST", "/login").form("username=alice&password=%C3%28&csrf_token={csrf}").status(401),
        page("login POST: raw invalid UTF-8 bytes", "POST", "/login")
            .form(b"username=\xff\xfe&password=\xc3\x28&csrf_token={csrf}".as_slice())
            .raw()
            .status(401),
        page("login POST: wrong password, next off-site", "POST", "/login")
            .form(format!("username=alice&password=wrong-password&csrf_token={{csrf}}&next={}", enc("https://evil.example"))),
        page("login POST: body over 64 KiB", "POST", "/login").form(big_form("username", over_limit)).status(413),
        page("login GET: next off-site", "GET", format!("/login?next={}", enc("https://evil.example"))).status(400),
        page("login GET: request_id //evil.example", "GET", format!("/login?request_id={}", enc("//evil.example"))).status(400),
        page("login GET: request_id SQL", "GET", format!("/login?request_id={}", enc(SQL))).status(400),
        page("login GET: request_id %C3%28", "GET", "/login?request_id=%C3%28").status(400),
        // ---- /consent ----
        page("consent GET: SQL request_id", "GET", format!("/consent?request_id={}", enc(SQL))).status(400),
        page("consent GET: {{7*7}} request_id", "GET", format!("/consent?request_id={}", enc("{{7*7}}"))).status(400),
        page("consent POST: no CSRF token", "POST", "/consent").form("request_id=x&decision=approve").status(403),
        page("consent POST: unknown request", "POST", "/consent")
            .alice()
            .form(format!("csrf_token={{csrf}}&request_id={}&decision=approve", enc(SQL)))
            .status(400),
        page("consent POST: {{7*7}} decision", "POST", "/consent")
            .alice()
            .form(format!("csrf_token={{csrf}}&request_id=nope&decision={}", enc("{{7*7}}")))
            .status(400),
        page("consent POST: body over 64 KiB", "POST", "/consent").alice().form(big_form("request_id", over_limit)).status(413),
        // ---- /account ----
        page("account revoke: no CSRF token", "POST", "/account/revoke").form("grant_id=x").status(403),
        page("account revoke: SQL grant_id", "POST", "/account/revoke")
            .alice()
            .form(format!("csrf_token={{csrf}}&grant_id={}", enc("' OR '1'='1")))
            .status(404),
        page("account revoke: unknown grant", "POST", "/account/revoke")
            .alice()
            .form("csrf_token={csrf}&grant_id=00000000-0000-0000-0000-000000000000")
            .status(404),
        page("account password: wrong current password", "POST", "/account/password")
            .alice()
            .form(format!(
                "csrf_token={{csrf}}&current_password={}&new_password=aaaaaaaaaaaaaaaa&confirm_password=aaaaaaaaaaaaaaaa",
                enc(SQL)
            ))
            .status(400),
        page("account password: mismatched new passwords", "POST", "/account/password")
            .alice()
            .form(format!(
                "csrf_token={{csrf}}&current_password={}&new_password={}&confirm_password=other",
                enc(PASSWORD),
                enc("{{7*7}}${7*7}-long-enough")
            ))
            .status(400),
        page("account password: {{7*7}} too short", "POST", "/account/password")
            .alice()
            .form(format!(
                "csrf_token={{csrf}}&current_password={}&new_password={}&confirm_password={}",
                enc(PASSWORD),
                enc("{{7*7}}"),
                enc("{{7*7}}")
            ))
            .status(400),
        page("account password: no CSRF token", "POST", "/account/password").alice().form("current_password=x").status(403),
        page("account revoke: body over 64 KiB", "POST", "/account/revoke").alice().form(big_form("grant_id", over_limit)).status(413),
        page("logout POST: no CSRF token", "POST", "/logout").alice().form("").status(403),
        // ---- /token ----
        api("token: JSON body", "POST", "/token").json(r#"{"grant_type":"authorization_code","code":"x"}"#).status(400),
        api("token: no content type", "POST", "/token").bare("grant_type=authorization_code&code=x").status(400),
        api("token: text/plain", "POST", "/token").typed("text/plain", "grant_type=authorization_code").status(400),
        api("token: multipart", "POST", "/token")
            .typed("multipart/form-data; boundary=x", "--x\r\nContent-Disposition: form-data; name=\"grant_type\"\r\n\r\nauthorization_code\r\n--x--\r\n")
            .status(400),
        api("token: body over 64 KiB", "POST", "/token").form(big_form("code", over_limit)).status(413),
        api("token: chunked body over 64 KiB", "POST", "/token").form(big_form("code", over_limit)).chunked().status(413),
        api("token: 9 KiB code", "POST", "/token")
            .form(format!("grant_type=authorization_code&client_id={{client_id}}&code={nine_k}"))
            .status(400),
        api("token: 100 parameters", "POST", "/token").form(hundred_params("grant_type=authorization_code")).status(400),
        api("token: repeated code", "POST", "/token")
            .form("grant_type=authorization_code&client_id={client_id}&code=a&code=b")
            .status(400),
        api("token: repeated client_id", "POST", "/token")
            .form("grant_type=authorization_code&client_id={client_id}&client_id=other&code=a")
            .status(400),
        api("token: repeated redirect_uri", "POST", "/token")
            .form(format!(
                "grant_type=authorization_code&client_id={{client_id}}&code=a&redirect_uri={}&redirect_uri={}",
                enc(REDIRECT),
                enc("https://evil.example")
            ))
            .status(400),
        api("token: repeated grant_type", "POST", "/token")
            .form("grant_type=authorization_code&grant_type=refresh_token&client_id={client_id}")
            .status(400),
        api("token: %ZZ code", "POST", "/token").form("grant_type=authorization_code&client_id={client_id}&code=%ZZ").status(400),
        api("token: %C3%28 code", "POST", "/token")
            .form("grant_type=authorization_code&client_id={client_id}&code=%C3%28")
            .status(400),
        api("token: raw invalid UTF-8 body", "POST", "/token")
            .form(b"grant_type=authorization_code&client_id={client_id}&code=\xff\xfe".as_slice())
            .status(400),
        api("token: latin-1 body", "POST", "/token")
            .typed("application/x-www-form-urlencoded; charset=iso-8859-1", b"grant_type=authorization_code&code=caf\xe9".as_slice())
            .status(400),
        api("token: SQL code", "POST", "/token")
            .form(format!("grant_type=authorization_code&client_id={{client_id}}&code={}", enc("' OR '1'='1")))
            .status(400),
        api("token: SQL client_id", "POST", "/token").form(format!("grant_type=authorization_code&client_id={}&code=x", enc(SQL))).status(401),
        api("token: {{7*7}} grant_type", "POST", "/token")
            .form(format!("grant_type={}&client_id={{client_id}}", enc("{{7*7}}")))
            .status(400),
        api("token: password grant", "POST", "/token")
            .form("grant_type=password&client_id={client_id}&username=alice&password=x")
            .status(400),
        api("token: SQL refresh_token", "POST", "/token")
            .form(format!("grant_type=refresh_token&client_id={{client_id}}&refresh_token={}", enc(SQL)))
            .status(400),
        api("token: off-site redirect_uri with a bogus code", "POST", "/token")
            .form(format!(
                "grant_type=authorization_code&client_id={{client_id}}&code=bogus&code_verifier={}&redirect_uri={}",
                "v".repeat(43),
                enc("https://evil.example")
            ))
            .status(400),
        api("token: Basic not base64", "POST", "/token").form("grant_type=authorization_code&code=x").header("authorization", "Basic !!!").status(401),
        api("token: Basic decoding to invalid UTF-8", "POST", "/token")
            .form("grant_type=authorization_code&code=x")
            .basic(b"\xff\xfe:\xc3\x28".as_slice())
            .status(401),
        api("token: Basic with an SQL secret for a public client", "POST", "/token")
            .form("grant_type=authorization_code&code=x")
            .basic(format!("{{client_id}}:{}", enc(SQL)))
            .status(401),
        api("token: GET", "GET", "/token").status(405),
        api("token: PUT", "PUT", "/token").form("grant_type=authorization_code").status(405),
        // ---- /register ----
        api("register: arrays nested 10,000 deep", "POST", "/register")
            .json(format!(r#"{{"redirect_uris":{}}}"#, nested(10_000, "[", "]")))
            .status(400),
        api("register: objects nested 10,000 deep", "POST", "/register")
            .json(format!(r#"{{"redirect_uris":["{REDIRECT}"],"x":{}}}"#, nested(10_000, r#"{"a":"#, "}").replacen("{\"a\":}", "{\"a\":1}", 1)))
            .status(400),
        api("register: 60 KiB array of redirect URIs", "POST", "/register")
            .json(json!({ "redirect_uris": (0..1900).map(|i| format!("https://a.example/{i}")).collect::<Vec<_>>(), "token_endpoint_auth_method": "none" }).to_string())
            .status(400),
        api("register: body over 64 KiB", "POST", "/register")
            .json(json!({ "redirect_uris": [REDIRECT], "client_name": "x".repeat(over_limit) }).to_string())
            .status(413),
        api("register: 60 KiB client_name", "POST", "/register")
            .json(json!({ "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none", "client_name": "x".repeat(60 * KIB) }).to_string())
            .status(400),
        api("register: form body", "POST", "/register").form(format!("redirect_uris={}", enc(REDIRECT))).status(400),
        api("register: no content type", "POST", "/register").bare(format!(r#"{{"redirect_uris":["{REDIRECT}"]}}"#)).status(400),
        api("register: text/plain JSON", "POST", "/register").typed("text/plain", format!(r#"{{"redirect_uris":["{REDIRECT}"]}}"#)).status(400),
        api("register: invalid JSON", "POST", "/register").json(r#"{"redirect_uris": ["#).status(400),
        api("register: top-level array", "POST", "/register").json(format!(r#"["{REDIRECT}"]"#)).status(400),
        api("register: empty body", "POST", "/register").json("").status(400),
        api("register: raw invalid UTF-8 in a string", "POST", "/register")
            .json(b"{\"redirect_uris\":[\"https://app.example/cb\"],\"client_name\":\"\xff\xfe\"}".as_slice())
            .status(400),
        api("register: lone surrogate escape", "POST", "/register")
            .json(format!(r#"{{"redirect_uris":["{REDIRECT}"],"client_name":"\ud800"}}"#))
            .status(400),
        api("register: number out of range", "POST", "/register").json(r#"{"redirect_uris":1e999999}"#).status(400),
        api("register: redirect_uris not an array", "POST", "/register").json(format!(r#"{{"redirect_uris":"{REDIRECT}"}}"#)).status(400),
        api("register: SQL client_name with a javascript: redirect", "POST", "/register")
            .json(json!({ "redirect_uris": ["javascript:alert(1)"], "client_name": SQL }).to_string())
            .status(400),
        api("register: {{7*7}} client_name with a CR/LF redirect", "POST", "/register")
            .json(json!({ "redirect_uris": ["https://app.example/cb\r\nSet-Cookie: injected=1"], "client_name": "{{7*7}}" }).to_string())
            .status(400),
        api("register: //evil.example redirect", "POST", "/register").json(json!({ "redirect_uris": ["//evil.example"] }).to_string()).status(400),
        api("register: redirect with a fragment", "POST", "/register")
            .json(json!({ "redirect_uris": ["https://app.example/cb#x"], "client_name": "${7*7}" }).to_string())
            .status(400),
        api("register: {{7*7}} auth method", "POST", "/register")
            .json(json!({ "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "{{7*7}}" }).to_string())
            .status(400),
        api("register: GET", "GET", "/register").status(405),
        api("register: DELETE", "DELETE", "/register").status(405),
        // ---- /register/{client_id} ----
        api("register/{id} GET: no token", "GET", "/register/{client_id}").status(401),
        api("register/{id} GET: SQL bearer", "GET", "/register/{client_id}").bearer(&enc(SQL)).status(401),
        api("register/{id} GET: SQL client id", "GET", format!("/register/{}", enc(SQL).replace('+', "%20"))).bearer("x").status(401),
        api("register/{id} GET: {{7*7}} bearer", "GET", "/register/{client_id}").bearer("{{7*7}}").status(401),
        api("register/{id} DELETE: wrong token", "DELETE", "/register/{client_id}").bearer("not-the-token").status(401),
        api("register/{id} PUT: nested 10,000 deep", "PUT", "/register/{client_id}")
            .bearer("{reg_token}")
            .json(format!(r#"{{"client_id":"{{client_id}}","redirect_uris":{}}}"#, nested(10_000, "[", "]")))
            .status(400),
        api("register/{id} PUT: javascript: redirect", "PUT", "/register/{client_id}")
            .bearer("{reg_token}")
            .json(r#"{"client_id":"{client_id}","redirect_uris":["javascript:alert(1)"],"token_endpoint_auth_method":"none","client_name":"'; DROP TABLE clients; --"}"#)
            .status(400),
        api("register/{id} PUT: another client's id", "PUT", "/register/{client_id}")
            .bearer("{reg_token}")
            .json(json!({ "client_id": SQL, "redirect_uris": ["https://evil.example/cb"] }).to_string())
            .status(400),
        api("register/{id} PUT: body over 64 KiB", "PUT", "/register/{client_id}")
            .bearer("{reg_token}")
            .json(json!({ "client_id": "{client_id}", "client_name": "x".repeat(over_limit) }).to_string())
            .status(413),
        api("register/{id} PUT: form body", "PUT", "/register/{client_id}").bearer("{reg_token}").form("client_id={client_id}").status(400),
        api("register/{id} PUT: no token", "PUT", "/register/{client_id}").json(r#"{"client_id":"{client_id}"}"#).status(401),
        api("register/{id} POST", "POST", "/register/{client_id}").json("{}").status(405),
        // ---- /revoke ----
        api("revoke: GET", "GET", "/revoke").status(405),
        api("revoke: JSON body", "POST", "/revoke").json(r#"{"token":"x"}"#).status(400),
        api("revoke: no client", "POST", "/revoke").form("token=x").status(400),
        api("revoke: no token", "POST", "/revoke").form("client_id={client_id}").status(400),
        api("revoke: repeated token", "POST", "/revoke").form("client_id={client_id}&token=a&token=b").status(400),
        api("revoke: 9 KiB token", "POST", "/revoke").form(format!("client_id={{client_id}}&token={nine_k}")).status(400),
        api("revoke: raw invalid UTF-8", "POST", "/revoke").form(b"client_id={client_id}&token=\xff".as_slice()).status(400),
        api("revoke: body over 64 KiB", "POST", "/revoke").form(big_form("token", over_limit)).status(413),
        // ---- /introspect ----
        api("introspect: GET", "GET", "/introspect").status(405),
        api("introspect: no credentials", "POST", "/introspect").form("token=x").status(401),
        api("introspect: Basic garbage", "POST", "/introspect").form("token=x").header("authorization", "Basic %%%").status(401),
        api("introspect: Basic SQL id", "POST", "/introspect").form("token=x").basic(format!("{}:x", enc(SQL))).status(401),
        api("introspect: JSON body", "POST", "/introspect").json(r#"{"token":"x"}"#).status(400),
        api("introspect: 100 parameters", "POST", "/introspect").form(hundred_params("token=x")).status(400),
        api("introspect: body over 64 KiB", "POST", "/introspect").form(big_form("token", over_limit)).status(413),
        // ---- /userinfo ----
        api("userinfo: no bearer", "GET", "/userinfo").status(401),
        api("userinfo: {{7*7}} bearer", "GET", "/userinfo").bearer("{{7*7}}").status(401),
        api("userinfo: 9 KiB bearer", "GET", "/userinfo").bearer(&nine_k).status(401),
        api("userinfo: alg none JWT", "GET", "/userinfo").bearer("eyJhbGciOiJub25lIiwidHlwIjoiYXQrand0In0.eyJzdWIiOiJ4In0.").status(401),
        api("userinfo: obs-text bearer", "GET", "/userinfo").header("authorization", b"Bearer \xff\xfe".as_slice()).status(401),
        api("userinfo: POST SQL bearer", "POST", "/userinfo").bearer(&enc(SQL)).form("").status(401),
        api("userinfo: PUT", "PUT", "/userinfo").status(405),
        api("userinfo: DELETE", "DELETE", "/userinfo").status(405),
        // ---- metadata, keys, unknown paths ----
        api("metadata: POST", "POST", "/.well-known/oauth-authorization-server").json("{}").status(405),
        api("oidc metadata: DELETE", "DELETE", "/.well-known/openid-configuration").status(405),
        api("metadata: path suffix", "GET", "/.well-known/oauth-authorization-server/evil").status(404),
        api("well-known: dot-dot", "GET", "/.well-known/%2e%2e/%2e%2e/etc/passwd").raw().status(404),
        api("well-known: unknown, Accept text/html", "GET", "/.well-known/anything").header("accept", "text/html").status(404),
        api("well-known: template name", "GET", format!("/.well-known/{}", enc("{{7*7}}"))).status(404),
        api("jwks: POST", "POST", "/jwks.json").json("{}").status(405),
        api("jwks: PUT", "PUT", "/jwks.json").status(405),
        api("unknown path", "GET", "/wp-admin").status(404),
        page("unknown path, Accept text/html", "GET", "/wp-admin").header("accept", "text/html").status(404),
        api("static: traversal", "GET", "/static/..%2f..%2fCargo.toml").raw().status(404),
        api("NUL in path", "GET", "/%00").status(404),
        // ---- redirects that must stay safe ----
        redirect("authorize: CR/LF in state (signed out)", "GET", format!("/authorize?{AQ}&redirect_uri={}&state={crlf_state}", enc(REDIRECT))),
        redirect(
            "authorize: CR/LF in state, error to client",
            "GET",
            format!("/authorize?response_type=token&client_id={{client_id}}&redirect_uri={}&state={crlf_state}", enc(REDIRECT)),
        ),
        redirect("authorize: {{7*7}} scope", "GET", format!("/authorize?{AQ}&redirect_uri={}&scope={}&state={}", enc(REDIRECT), enc("{{7*7}}"), enc(SQL))),
        redirect("authorize: javascript: resource", "GET", format!("/authorize?{AQ}&redirect_uri={}&resource={}", enc(REDIRECT), enc("javascript:alert(1)"))),
        redirect(
            "authorize: SQL code_challenge_method",
            "GET",
            format!(
                "/authorize?response_type=code&client_id={{client_id}}&code_challenge={{challenge}}&redirect_uri={}&code_challenge_method={}",
                enc(REDIRECT),
                enc(SQL)
            ),
        )
        .alice(),
        redirect("account: signed out", "GET", "/account"),
        redirect("login: next off-site", "POST", "/login")
            .fresh()
            .form(format!("username=alice&password={}&csrf_token={{csrf}}&next={}", enc(PASSWORD), enc("https://evil.example"))),
        redirect("login: next //evil.example", "POST", "/login")
            .fresh()
            .form(format!("username=alice&password={}&csrf_token={{csrf}}&next={}", enc(PASSWORD), enc("//evil.example/x"))),
        redirect("login: next with CR/LF", "POST", "/login")
            .fresh()
            .form(format!("username=alice&password={}&csrf_token={{csrf}}&next={}", enc(PASSWORD), enc("x\r\nSet-Cookie: injected=1"))),
    ]);
    v.extend(framework_and_nul_cases());
    v
}

/// Requests refused before a handler runs (a method the router does not route, a body or query
/// the extractors refuse, a path that is not UTF-8) get the same error page or JSON error as the
/// rest; NUL bytes, which Postgres refuses in text, are refused alike on both engines.
fn framework_and_nul_cases() -> Vec<Case> {
    vec![
        // Methods not allowed on browser endpoints.
        page("authorize: DELETE", "DELETE", "/authorize").status(405),
        page("authorize: PUT", "PUT", "/authorize").form("client_id=x").status(405),
        page("login: PUT", "PUT", "/login").form("username=alice").status(405),
        page("consent: DELETE", "DELETE", "/consent").status(405),
        page("account: POST", "POST", "/account").form("").status(405),
        page("account revoke: GET", "GET", "/account/revoke").status(405),
        page("logout: PUT", "PUT", "/logout").status(405),
        // Form bodies the Form extractor refuses.
        page("login POST: JSON body", "POST", "/login").json(r#"{"username":"alice","password":"x"}"#),
        page("login POST: no content type", "POST", "/login").bare("username=alice&password=x"),
        page("login POST: repeated username", "POST", "/login")
            .form("username=alice&username=bob&password=x&csrf_token={csrf}"),
        page("consent POST: JSON body", "POST", "/consent").alice().json(r#"{"decision":"approve"}"#),
        page("account password: JSON body", "POST", "/account/password").alice().json("{}"),
        // Queries the Query extractor refuses.
        page("consent GET: no request_id", "GET", "/consent").status(400),
        page("consent GET: repeated request_id", "GET", "/consent?request_id=a&request_id=b"),
        page("login GET: repeated request_id", "GET", "/login?request_id=a&request_id=b"),
        page("account GET: repeated revoked", "GET", "/account?revoked=a&revoked=b").alice(),
        // Methods not allowed on API endpoints.
        api("register/{id}: PATCH", "PATCH", "/register/{client_id}").json("{}").status(405),
        // A path parameter that is not UTF-8 is a malformed request (400), answered as JSON like the rest.
        api("register/{id} GET: %C3%28 in the path", "GET", "/register/%C3%28").bearer("x").status(400),
        // NUL bytes (Postgres refuses them in text): answered alike on both engines.
        page("authorize: NUL client_id", "GET", "/authorize?client_id=a%00b").status(400),
        page("login POST: NUL username", "POST", "/login")
            .form("username=a%00b&password=x&csrf_token={csrf}")
            .status(401),
        api("token: NUL client_id", "POST", "/token")
            .form("grant_type=authorization_code&client_id=a%00b&code=x")
            .status(401),
        api("register/{id} GET: NUL client id", "GET", "/register/a%00b").bearer("x").status(401),
        api("introspect: NUL id", "POST", "/introspect").form("token=x").basic("a\0b:x").status(401),
        // Refused as invalid metadata on both engines.
        api("register: NUL client_name", "POST", "/register")
            .json(
                json!({ "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none", "client_name": "a\u{0}b" })
                    .to_string(),
            )
            .status(400),
    ]
}

// ---- running a case ----

struct Fixture {
    client_id: String,
    reg_token: String,
    anon: Browser,
    alice: Browser,
}

struct Browser {
    http: reqwest::Client,
    jar: Arc<reqwest::cookie::Jar>,
    csrf: String,
}

fn new_client(jar: &Arc<reqwest::cookie::Jar>) -> reqwest::Client {
    let _ = browser(); // installs the TLS provider
    reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// A browser with a session and that session's CSRF token (from the login page).
async fn anon_browser(app: &TestApp) -> Browser {
    let jar = Arc::new(reqwest::cookie::Jar::default());
    let http = new_client(&jar);
    let page = http.get(app.url("/login")).send().await.expect("login page").text().await.expect("text");
    Browser { csrf: hidden(&page, "csrf_token"), http, jar }
}

/// alice signed in; the CSRF token is the signed-in session's (sign-in renews it).
async fn alice_browser(app: &TestApp) -> Browser {
    let mut b = anon_browser(app).await;
    let res = app.login(&b.http, "alice", PASSWORD).await;
    assert_eq!(res.status(), 200, "alice signs in");
    let page = b.http.get(app.url("/account")).send().await.expect("account").text().await.expect("text");
    b.csrf = hidden(&page, "csrf_token");
    b
}

/// The fixture client, which alice has approved once through each redirect URI: its errors may
/// be redirected to them (RFC 9700 §4.11.2; an unapproved client's errors are pages).
async fn fixture(app: &TestApp) -> Fixture {
    let c = app
        .register(json!({
            "redirect_uris": [REDIRECT, LOOPBACK],
            "token_endpoint_auth_method": "none",
            "client_name": "Hostile fixture",
        }))
        .await;
    let client_id = c["client_id"].as_str().expect("client_id").to_string();
    let alice = alice_browser(app).await;
    for redirect in [REDIRECT, LOOPBACK] {
        let (_, challenge) = pkce();
        let loc =
            authorize_approve_at(&alice.http, &app.base, &OAuthParams::authorize(&client_id, redirect, &challenge))
                .await;
        assert!(loc.starts_with(redirect) && loc.contains("code="), "approved: {loc}");
    }
    Fixture {
        client_id,
        reg_token: c["registration_access_token"].as_str().expect("registration_access_token").to_string(),
        anon: anon_browser(app).await,
        alice,
    }
}

fn replace(haystack: &[u8], from: &str, to: &str) -> Vec<u8> {
    let from = from.as_bytes();
    let mut out = Vec::with_capacity(haystack.len());
    let mut i = 0;
    while i < haystack.len() {
        if haystack[i..].starts_with(from) {
            out.extend_from_slice(to.as_bytes());
            i += from.len();
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    out
}

struct Answer {
    status: u16,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

async fn send(app: &TestApp, fx: &Fixture, case: &Case) -> Result<Answer, String> {
    let fresh;
    let b = match case.who {
        Who::Anon => &fx.anon,
        Who::Alice => &fx.alice,
        Who::Fresh => {
            fresh = anon_browser(app).await;
            &fresh
        }
    };
    let fill = |bytes: &[u8]| {
        let v = replace(bytes, "{client_id}", &fx.client_id);
        let v = replace(&v, "{reg_token}", &fx.reg_token);
        let v = replace(&v, "{challenge}", CHALLENGE);
        replace(&v, "{csrf}", &b.csrf)
    };
    let target = fill(&case.target);
    let body = fill(&case.body);
    let headers: Vec<(&str, Vec<u8>)> = case.headers.iter().map(|(n, v)| (*n, fill(v))).collect();
    if case.raw {
        let cookie = b.jar.cookies(&app.url("/").parse().expect("url"));
        return raw_send(
            app,
            case.method,
            &target,
            &headers,
            cookie.as_ref().map(|c| c.as_bytes()),
            &body,
            case.chunked,
        )
        .await;
    }
    let url = format!("{}{}", app.base, String::from_utf8(target).map_err(|_| "target must be UTF-8 unless raw")?);
    let method = reqwest::Method::from_bytes(case.method.as_bytes()).expect("method");
    let mut req = b.http.request(method, url);
    for (n, v) in headers {
        req = req.header(n, reqwest::header::HeaderValue::from_bytes(&v).expect("header value"));
    }
    let res = req.body(body).send().await.map_err(|e| format!("request failed: {e}"))?;
    let status = res.status().as_u16();
    let headers = res.headers().iter().map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec())).collect();
    let body = res.bytes().await.map_err(|e| format!("reading the body failed: {e}"))?.to_vec();
    Ok(Answer { status, headers, body })
}

/// HTTP/1.1 over a plain socket, `Connection: close`, response read to the end.
async fn raw_send(
    app: &TestApp,
    method: &str,
    target: &[u8],
    headers: &[(&str, Vec<u8>)],
    cookie: Option<&[u8]>,
    body: &[u8],
    chunked: bool,
) -> Result<Answer, String> {
    let host = app.base.trim_start_matches("http://").split('/').next().expect("host").to_string();
    let mut req = Vec::new();
    req.extend_from_slice(method.as_bytes());
    req.push(b' ');
    req.extend_from_slice(target);
    req.extend_from_slice(format!(" HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n").as_bytes());
    for (n, v) in headers {
        req.extend_from_slice(n.as_bytes());
        req.extend_from_slice(b": ");
        req.extend_from_slice(v);
        req.extend_from_slice(b"\r\n");
    }
    if let Some(c) = cookie {
        req.extend_from_slice(b"Cookie: ");
        req.extend_from_slice(c);
        req.extend_from_slice(b"\r\n");
    }
    if chunked {
        req.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
        for chunk in body.chunks(4096) {
            req.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            req.extend_from_slice(chunk);
            req.extend_from_slice(b"\r\n");
        }
        req.extend_from_slice(b"0\r\n\r\n");
    } else {
        req.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
        req.extend_from_slice(body);
    }
    let mut sock = tokio::net::TcpStream::connect(&host).await.map_err(|e| format!("connect: {e}"))?;
    // The server may answer (413) and close before reading everything: a failed write is fine.
    let _ = sock.write_all(&req).await;
    let mut out = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(30), sock.read_to_end(&mut out)).await;
    if read.is_err() {
        return Err("no answer within 30 s".into());
    }
    if out.is_empty() {
        return Err("connection closed without an answer".into());
    }
    parse_response(&out)
}

fn parse_response(raw: &[u8]) -> Result<Answer, String> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or("no end of headers")?;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or("no status line")?;
    let status: u16 =
        status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or(format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, Vec<u8>)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().as_bytes().to_vec()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    if headers.iter().any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case(b"chunked")) {
        let mut decoded = Vec::new();
        let mut rest = body.as_slice();
        loop {
            let line_end = rest.windows(2).position(|w| w == b"\r\n").ok_or("bad chunk")?;
            let size = usize::from_str_radix(String::from_utf8_lossy(&rest[..line_end]).trim(), 16)
                .map_err(|_| "bad chunk size")?;
            rest = &rest[line_end + 2..];
            if size == 0 {
                break;
            }
            decoded.extend_from_slice(&rest[..size.min(rest.len())]);
            rest = &rest[(size + 2).min(rest.len())..];
        }
        body = decoded;
    }
    Ok(Answer { status, headers, body })
}

/// What the answer must look like; `Err` describes the violation.
fn judge(case: &Case, a: &Answer) -> Result<(), String> {
    let ct = a.header("content-type").unwrap_or_default();
    let summary = || {
        let text = a.text();
        let cut: String = text.chars().take(300).collect();
        format!("status {} content-type {ct:?} location {:?} body {cut:?}", a.status, a.header("location"))
    };
    if a.status >= 500 {
        return Err(format!("server error: {}", summary()));
    }
    for (n, v) in &a.headers {
        if n.contains("injected")
            || (n.eq_ignore_ascii_case("set-cookie") && String::from_utf8_lossy(v).contains("injected"))
        {
            return Err(format!("header injection: {n}: {}", String::from_utf8_lossy(v)));
        }
        if v.contains(&b'\r') || v.contains(&b'\n') {
            return Err(format!("CR/LF in header {n}"));
        }
    }
    if let Some(expected) = case.status
        && a.status != expected
    {
        return Err(format!("expected {expected}: {}", summary()));
    }
    match case.kind {
        Kind::Json | Kind::Page | Kind::Transport if !(400..500).contains(&a.status) => {
            Err(format!("expected a 4xx: {}", summary()))
        }
        Kind::Json => {
            if !ct.starts_with("application/json") {
                return Err(format!("expected application/json: {}", summary()));
            }
            let v: Value = serde_json::from_slice(&a.body).map_err(|_| format!("not JSON: {}", summary()))?;
            match v["error"].as_str() {
                Some(e) if !e.is_empty() => Ok(()),
                _ => Err(format!("no error field: {}", summary())),
            }
        }
        Kind::Page => {
            let body = a.text();
            if !ct.starts_with("text/html") {
                return Err(format!("expected text/html: {}", summary()));
            }
            if !body.contains("<h1") {
                return Err(format!("no <h1> in the page: {}", summary()));
            }
            if body.to_ascii_lowercase().contains("<script") {
                return Err(format!("a <script> in the page: {}", summary()));
            }
            if a.header("location").is_some() {
                return Err(format!("an error page with a Location: {}", summary()));
            }
            Ok(())
        }
        Kind::Transport => Ok(()),
        Kind::SafeRedirect => {
            if !matches!(a.status, 302 | 303) {
                return Err(format!("expected a redirect: {}", summary()));
            }
            let loc = a.header("location").unwrap_or_default();
            let on_site = loc.starts_with('/') && !loc.starts_with("//") && !loc.starts_with("/\\");
            let to_client = loc.starts_with(&format!("{REDIRECT}?")) || loc.starts_with(&format!("{LOOPBACK}?"));
            if !(on_site || to_client) {
                return Err(format!("redirect off-site or empty: {}", summary()));
            }
            Ok(())
        }
    }
}

async fn run_catalogue(app: &TestApp, fx: &Fixture, cases: &[Case]) -> Vec<String> {
    let mut failures = Vec::new();
    for case in cases {
        let verdict = match send(app, fx, case).await {
            Ok(answer) => judge(case, &answer),
            Err(e) => Err(e),
        };
        if let Err(e) = verdict {
            failures.push(format!("{} {} — {e}", case.method, case.name));
        }
    }
    failures
}

async fn counts(db: &Db) -> Vec<(&'static str, i64)> {
    let mut v = Vec::new();
    for t in TABLES {
        v.push((*t, count_rows(db, t).await));
    }
    v
}

fn config(c: &mut portcullis::config::Config) {
    c.rate_limit_per_ip = portcullis::config::RateLimits::off();
    c.rate_limit_total = portcullis::config::RateLimits::off();
    c.registrations_per_ip_per_hour = 0;
    c.login_max_failures = 10_000;
    c.cimd_policy = portcullis::config::CimdPolicy::Off;
}

async fn spawn(engine: Engine) -> TestApp {
    TestApp::spawn_with(engine, "", config).await.with_defaults().await
}

async fn management_view(app: &TestApp, fx: &Fixture) -> Value {
    let res = app
        .http
        .get(app.url(&format!("/register/{}", fx.client_id)))
        .bearer_auth(&fx.reg_token)
        .send()
        .await
        .expect("read registration");
    assert_eq!(res.status(), 200);
    res.json().await.expect("json")
}

// ---- tests ----

async fn catalogue_gets_clean_4xx_and_writes_nothing(engine: Engine) {
    let app = spawn(engine).await;
    let fx = fixture(&app).await;
    let cases = catalogue();
    let refusals = cases.iter().filter(|c| c.kind != Kind::SafeRedirect).count();
    assert!(refusals >= 60, "the catalogue has {refusals} refusal cases");
    eprintln!("{} cases: {refusals} refusals, {} safe redirects", cases.len(), cases.len() - refusals);
    let before = counts(&app.db).await;
    let registration = management_view(&app, &fx).await;

    let failures = run_catalogue(&app, &fx, &cases).await;
    assert!(failures.is_empty(), "{} of {} cases misbehaved:\n{}", failures.len(), cases.len(), failures.join("\n"));

    // Still healthy, nothing written, the fixture client unchanged.
    let res = app.http.get(app.url("/readyz")).send().await.expect("readyz");
    assert_eq!(res.status(), 200, "readyz after the catalogue");
    assert_eq!(counts(&app.db).await, before, "a failed request wrote a row");
    assert_eq!(management_view(&app, &fx).await, registration, "a failed update changed the client");

    // A normal flow still works, for the fixture client and alice's unchanged password.
    let http = browser();
    assert_eq!(app.login(&http, "alice", PASSWORD).await.status(), 200, "alice's password still works");
    let (verifier, challenge) = pkce();
    let loc =
        app.authorize_approve(&http, &OAuthParams::authorize(&fx.client_id, REDIRECT, &challenge).state("after")).await;
    let q = query_of(&loc);
    assert_eq!(q.get("state").map(String::as_str), Some("after"));
    let (status, tokens) =
        app.token(&OAuthParams::code(&fx.client_id, &q["code"], &verifier).redirect_uri(REDIRECT)).await;
    assert_eq!(status, 200, "{tokens}");
    assert!(tokens["access_token"].is_string(), "{tokens}");
}

/// Hostile client_name, login username and state are shown as text: escaped, never evaluated,
/// no markup; the state comes back byte for byte; the database is intact afterwards.
async fn hostile_names_and_state_are_rendered_literally(engine: Engine) {
    let app = spawn(engine).await;
    let name = "<script>alert(1)</script> '; DROP TABLE users; -- {{7*7}} ${7*7} #{7*7} <%= 7*7 %>";
    let c = app
        .register(json!({ "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none", "client_name": name }))
        .await;
    let client_id = c["client_id"].as_str().expect("client_id");
    assert_eq!(c["client_name"], name, "client_name is stored as sent");

    // The login page echoes a hostile username as text.
    let http = browser();
    let res = app.login(&http, "x'; DROP TABLE users; --{{7*7}}${7*7}<b>", "wrong").await;
    assert_eq!(res.status(), 401);
    let page = res.text().await.expect("page");
    assert!(
        unescape(&page).contains("x'; DROP TABLE users; --{{7*7}}${7*7}<b>"),
        "username not rendered literally:\n{page}"
    );
    assert!(!page.contains("<b>"), "{page}");

    assert_eq!(app.login(&http, "alice", PASSWORD).await.status(), 200);
    let (verifier, challenge) = pkce();
    let state = "'; DROP TABLE users; -- {{7*7}} ${7*7} <script>x</script> \r\nSet-Cookie: injected=1";
    let query = OAuthParams::authorize(client_id, REDIRECT, &challenge).state(state);
    let res = http.get(app.url("/authorize")).query(&query).send().await.expect("authorize");
    assert_eq!(res.status(), 200, "consent page");
    let page = res.text().await.expect("page");
    // Shown once, quoted, shortened to 40 characters (a self-chosen name must not take over the page).
    let shown = format!("“{}…”", name.chars().take(39).collect::<String>().trim_end());
    assert!(unescape(&page).contains(&shown), "the client name is not rendered literally on the consent page:\n{page}");
    assert!(!page.to_ascii_lowercase().contains("<script"), "markup from the client name:\n{page}");
    assert!(!page.contains("<%="), "{page}");

    let res = approve_consent(&http, &app.url("/consent"), &page).await;
    assert_eq!(res.status(), 303);
    assert!(res.headers().get_all("set-cookie").iter().all(|v| !v.to_str().unwrap_or("").contains("injected")));
    let loc = location(&res);
    assert!(loc.starts_with(&format!("{REDIRECT}?")), "{loc}");
    assert!(!loc.contains('\r') && !loc.contains('\n') && !loc.contains(' '), "{loc:?}");
    let q = query_of(&loc);
    assert_eq!(q.get("state").map(String::as_str), Some(state), "state comes back byte for byte");
    let (status, tokens) = app.token(&OAuthParams::code(client_id, &q["code"], &verifier).redirect_uri(REDIRECT)).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(count_rows(&app.db, "users").await, 1, "users intact");
    assert_eq!(count_rows(&app.db, "clients").await, 1);
    let _ = MCP;
}

/// The text of HTML-escaped markup (askama escapes `<>&"'` as numeric or named references).
fn unescape(html: &str) -> String {
    [
        ("&#60;", "<"),
        ("&lt;", "<"),
        ("&#62;", ">"),
        ("&gt;", ">"),
        ("&#39;", "'"),
        ("&#x27;", "'"),
        ("&#34;", "\""),
        ("&quot;", "\""),
    ]
    .iter()
    .fold(html.to_string(), |s, (from, to)| s.replace(from, to))
    .replace("&#38;", "&")
    .replace("&amp;", "&")
}

/// The one test with rate limits on: a 429 is JSON on API endpoints and a page on browser ones,
/// with `Retry-After` on both.
async fn rate_limit_answers_429_in_the_endpoint_s_own_kind(engine: Engine) {
    let app = TestApp::spawn_with(engine, "", |c| {
        let two =
            portcullis::config::RateLimits { authorize: 2, token: 2, register: 2, introspect: 2, login: 2, revoke: 2 };
        c.rate_limit_per_ip = two;
        c.rate_limit_total = portcullis::config::RateLimits::off();
    })
    .await
    .with_defaults()
    .await;
    let fx = Fixture {
        client_id: "none".into(),
        reg_token: "none".into(),
        anon: Browser { http: new_client(&Arc::default()), jar: Arc::default(), csrf: String::new() },
        alice: Browser { http: new_client(&Arc::default()), jar: Arc::default(), csrf: String::new() },
    };
    let before = counts(&app.db).await;
    let mut failures = Vec::new();
    for (path, kind, body) in [
        ("/token", Kind::Json, "grant_type=authorization_code&code=x&client_id=x"),
        ("/revoke", Kind::Json, "token=x&client_id=x"),
        ("/introspect", Kind::Json, "token=x"),
        ("/register", Kind::Json, "{}"),
        ("/authorize", Kind::Page, "client_id=x"),
        ("/login", Kind::Page, "username=x&password=y"),
    ] {
        let mut c = case(kind, &format!("{path} over its rate limit"), "POST", path).status(429);
        c = if path == "/register" { c.json(body) } else { c.form(body) };
        for _ in 0..2 {
            let _ = send(&app, &fx, &c).await;
        }
        match send(&app, &fx, &c).await {
            Ok(a) => {
                if let Err(e) = judge(&c, &a) {
                    failures.push(format!("{}: {e}", c.name));
                } else if a.header("retry-after").is_none() {
                    failures.push(format!("{}: no Retry-After", c.name));
                }
            }
            Err(e) => failures.push(format!("{}: {e}", c.name)),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(counts(&app.db).await, before);
    assert_eq!(app.http.get(app.url("/readyz")).send().await.expect("readyz").status(), 200);
}
