//! `portcullis-load`: the load benchmark. Targets a running Portcullis (`--target`) or starts the
//! `portcullis` binary next to it on a fresh SQLite file or a fresh Postgres database, sets up
//! users, clients, resources and grants through the public interfaces (the CLI, `/register`, the
//! login and consent forms), runs each scenario for a fixed time at a fixed concurrency, and
//! reports ops/s and latency percentiles: one JSON line per scenario on stdout, a table on stderr.
//!
//! It speaks HTTP/1.1 itself over keep-alive connections (one per worker, `TCP_NODELAY`), so the
//! generator costs little CPU per request; every run reports the generator's own CPU use, so a
//! saturated generator is visible. Every response is validated (status and body shape); failures
//! are counted, never timed.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use clap::Parser;
use serde::Deserialize;
use sha2::Digest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

static STOP: AtomicBool = AtomicBool::new(false);

const ALL: &[&str] =
    &["healthz", "readyz", "metadata", "jwks", "register", "introspect", "authcode", "refresh", "login"];
const REDIRECT_URI: &str = "http://127.0.0.1:33333/callback";
const SCOPE: &str = "mcp:tools";

#[derive(Parser, Debug)]
#[command(name = "portcullis-load", about = "Load benchmark for Portcullis")]
struct Opts {
    /// Scenario: healthz, readyz (one database round trip), metadata, jwks, register, authcode, refresh, introspect, login, or all
    /// (comma-separated lists work too).
    #[arg(long, default_value = "all")]
    scenario: String,
    /// Measured seconds per scenario.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of unmeasured warm-up before each scenario.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Concurrent workers, each with its own keep-alive connection (and client, session, grant).
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Database for a server this tool starts: `sqlite` (a fresh file) or a Postgres admin URL
    /// (`postgres://postgres@127.0.0.1:5432/postgres`): a fresh database is created and dropped.
    /// With --target: the running server's own database URL, used by the CLI to add the user and
    /// the resource (alternatively pass --config).
    #[arg(long, default_value = "sqlite")]
    db: String,
    /// A running server's base URL (plain http), e.g. http://127.0.0.1:8080; nothing is started.
    #[arg(long)]
    target: Option<String>,
    /// With --target: the server's PID, for its CPU use and peak RSS.
    #[arg(long)]
    server_pid: Option<u32>,
    /// With --target: the server's configuration file, for the CLI setup steps.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Pin the started server to this CPU (`taskset -c N`).
    #[arg(long)]
    server_cpu: Option<usize>,
    /// Pin this load generator to this CPU (`taskset -a -p -c N` on itself, before any thread starts).
    #[arg(long)]
    load_cpu: Option<usize>,
    /// Runtime threads of the load generator (1: a single-threaded runtime).
    #[arg(long, default_value_t = 1)]
    load_threads: usize,
    /// The `portcullis` binary (default: the one next to this executable).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// An extra environment variable for a server this tool starts (repeatable), e.g.
    /// `GLIBC_TUNABLES=glibc.malloc.mmap_threshold=131072`.
    #[arg(long = "server-env", value_name = "KEY=VALUE")]
    server_env: Vec<String>,
    /// Keep the temporary directory (config, SQLite file, server log) and the Postgres database.
    #[arg(long)]
    keep: bool,
}

fn main() {
    let opts = Opts::parse();
    if let Some(cpu) = opts.load_cpu {
        // Before the runtime exists, so every thread it starts inherits the affinity.
        let pid = std::process::id().to_string();
        let ok = Command::new("taskset")
            .args(["-a", "-p", "-c", &cpu.to_string(), &pid])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("error: could not pin the load generator to CPU {cpu} with taskset");
            std::process::exit(2);
        }
    }
    let rt = if opts.load_threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(opts.load_threads).enable_all().build()
    }
    .expect("tokio runtime");
    let code = rt.block_on(async {
        tokio::spawn(async {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("interrupted: finishing the current scenario early and cleaning up");
                STOP.store(true, Ordering::SeqCst);
            }
        });
        match run(opts).await {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("error: {e}");
                1
            }
        }
    });
    std::process::exit(code);
}

type Res<T> = Result<T, String>;

// ---------------------------------------------------------------------------------------------
// A minimal HTTP/1.1 client: keep-alive, Content-Length and chunked bodies, one cookie.

struct Response {
    status: u16,
    location: Option<String>,
    set_cookies: Vec<String>,
    body: Vec<u8>,
}

impl Response {
    fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap_or("<binary>")
    }
    fn json<'a, T: Deserialize<'a>>(&'a self) -> Res<T> {
        serde_json::from_slice(&self.body).map_err(|e| format!("bad JSON body ({e}): {}", snippet(self.text())))
    }
}

fn snippet(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ").chars().take(160).collect()
}

struct Conn {
    addr: SocketAddr,
    host: String,
    stream: Option<TcpStream>,
    wbuf: Vec<u8>,
    rbuf: Vec<u8>,
    /// The `portcullis` session cookie (`name=value`), if any.
    cookie: Option<String>,
    cookie_name: String,
}

impl Conn {
    fn new(target: &Target) -> Conn {
        Conn {
            addr: target.addr,
            host: target.host.clone(),
            stream: None,
            wbuf: Vec::with_capacity(4096),
            rbuf: Vec::with_capacity(16384),
            cookie: None,
            cookie_name: "portcullis".into(),
        }
    }

    async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<(&str, &[u8])>,
    ) -> Res<Response> {
        let reused = self.stream.is_some();
        let mut r = self.exchange(method, path, headers, body).await;
        if let Err(e) = &r {
            self.stream = None;
            // A kept-alive connection the server closed while idle: the request never arrived.
            if reused && (e.starts_with("connection closed") || e.starts_with("write:")) {
                r = self.exchange(method, path, headers, body).await;
                if r.is_err() {
                    self.stream = None;
                }
            }
        }
        r
    }

    async fn exchange(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<(&str, &[u8])>,
    ) -> Res<Response> {
        if self.stream.is_none() {
            let s = TcpStream::connect(self.addr).await.map_err(|e| format!("connect {}: {e}", self.addr))?;
            s.set_nodelay(true).map_err(|e| e.to_string())?;
            self.stream = Some(s);
            self.rbuf.clear();
        }
        let w = &mut self.wbuf;
        w.clear();
        write!(w, "{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.host).ok();
        for (k, v) in headers {
            write!(w, "{k}: {v}\r\n").ok();
        }
        if let Some(c) = &self.cookie {
            write!(w, "Cookie: {c}\r\n").ok();
        }
        if let Some((ct, b)) = body {
            write!(w, "Content-Type: {ct}\r\nContent-Length: {}\r\n\r\n", b.len()).ok();
            w.extend_from_slice(b);
        } else {
            w.extend_from_slice(b"\r\n");
        }
        let stream = self.stream.as_mut().expect("connected");
        stream.write_all(&self.wbuf).await.map_err(|e| format!("write: {e}"))?;
        let res = read_response(stream, &mut self.rbuf).await?;
        let (res, close) = res;
        if close {
            self.stream = None;
        }
        for c in &res.set_cookies {
            let first = c.split(';').next().unwrap_or("").trim();
            if let Some((name, value)) = first.split_once('=')
                && name == self.cookie_name
            {
                let removed = value.is_empty() || c.to_ascii_lowercase().contains("max-age=0");
                self.cookie = if removed { None } else { Some(first.to_string()) };
            }
        }
        Ok(res)
    }

    async fn get(&mut self, path: &str) -> Res<Response> {
        self.request("GET", path, &[], None).await
    }

    async fn post_form(&mut self, path: &str, headers: &[(&str, &str)], form: &str) -> Res<Response> {
        self.request("POST", path, headers, Some(("application/x-www-form-urlencoded", form.as_bytes()))).await
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Res<()> {
    if buf.capacity() - buf.len() < 4096 {
        buf.reserve(16384);
    }
    let n = stream.read_buf(buf).await.map_err(|e| format!("read: {e}"))?;
    if n == 0 {
        return Err("connection closed by the server".into());
    }
    Ok(())
}

/// Reads one response; `buf` may hold bytes already received. Returns the response and whether the
/// server will close the connection.
async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Res<(Response, bool)> {
    let head_end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i;
        }
        fill(stream, buf).await?;
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| "response head is not UTF-8".to_string())?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut length = None;
    let mut chunked = false;
    let mut close = false;
    let mut location = None;
    let mut set_cookies = Vec::new();
    for line in lines {
        let Some((k, v)) = line.split_once(':') else { continue };
        let v = v.trim();
        if k.eq_ignore_ascii_case("content-length") {
            length = v.parse::<usize>().ok();
        } else if k.eq_ignore_ascii_case("transfer-encoding") {
            chunked = v.to_ascii_lowercase().contains("chunked");
        } else if k.eq_ignore_ascii_case("connection") {
            close = v.eq_ignore_ascii_case("close");
        } else if k.eq_ignore_ascii_case("location") {
            location = Some(v.to_string());
        } else if k.eq_ignore_ascii_case("set-cookie") {
            set_cookies.push(v.to_string());
        }
    }
    let mut pos = head_end + 4;
    let body = if chunked {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(i) = find(&buf[pos..], b"\r\n") {
                    break pos + i;
                }
                fill(stream, buf).await?;
            };
            let size_text = std::str::from_utf8(&buf[pos..line_end]).unwrap_or("");
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| format!("bad chunk size {size_text:?}"))?;
            let data_start = line_end + 2;
            while buf.len() < data_start + size + 2 {
                fill(stream, buf).await?;
            }
            body.extend_from_slice(&buf[data_start..data_start + size]);
            pos = data_start + size + 2;
            if size == 0 {
                break;
            }
        }
        body
    } else {
        let n = length.unwrap_or(0);
        while buf.len() < pos + n {
            fill(stream, buf).await?;
        }
        let body = buf[pos..pos + n].to_vec();
        pos += n;
        body
    };
    buf.drain(..pos);
    Ok((Response { status, location, set_cookies, body }, close))
}

fn form(pairs: &[(&str, &str)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

fn expect_status(r: &Response, want: u16, what: &str) -> Res<()> {
    if r.status == want {
        Ok(())
    } else {
        Err(format!("{what}: status {} (want {want}): {}", r.status, snippet(r.text())))
    }
}

fn random_b64(n: usize) -> String {
    let mut b = vec![0u8; n];
    rand::fill(&mut b[..]);
    URL_SAFE_NO_PAD.encode(b)
}

// ---------------------------------------------------------------------------------------------
// The target: where it is, and its endpoints as its metadata names them.

struct Target {
    addr: SocketAddr,
    host: String,
    issuer: String,
    authorize: String,
    token: String,
    register: String,
    jwks: String,
    introspect: String,
    metadata: String,
    login: String,
    consent: String,
    healthz: String,
    readyz: String,
}

#[derive(Deserialize)]
struct Metadata<'a> {
    #[serde(borrow)]
    issuer: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    authorization_endpoint: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    token_endpoint: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    registration_endpoint: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    jwks_uri: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    introspection_endpoint: std::borrow::Cow<'a, str>,
    code_challenge_methods_supported: Vec<std::borrow::Cow<'a, str>>,
}

fn path_of(url: &str) -> Res<String> {
    let u = url::Url::parse(url).map_err(|e| format!("bad URL {url:?}: {e}"))?;
    Ok(match u.query() {
        Some(q) => format!("{}?{q}", u.path()),
        None => u.path().to_string(),
    })
}

async fn discover(base: &str) -> Res<Target> {
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
        addr,
        host: format!("{host}:{port}"),
        issuer: String::new(),
        authorize: String::new(),
        token: String::new(),
        register: String::new(),
        jwks: String::new(),
        introspect: String::new(),
        metadata: format!("/.well-known/oauth-authorization-server{prefix}"),
        login: format!("{prefix}/login"),
        consent: format!("{prefix}/consent"),
        healthz: format!("{prefix}/healthz"),
        readyz: format!("{prefix}/readyz"),
    };
    let mut c = Conn::new(&t);
    let r = c.get(&t.metadata).await?;
    expect_status(&r, 200, "metadata")?;
    let m: Metadata = r.json()?;
    t.issuer = m.issuer.to_string();
    t.authorize = path_of(&m.authorization_endpoint)?;
    t.token = path_of(&m.token_endpoint)?;
    t.register = path_of(&m.registration_endpoint)?;
    t.jwks = path_of(&m.jwks_uri)?;
    t.introspect = path_of(&m.introspection_endpoint)?;
    Ok(t)
}

// ---------------------------------------------------------------------------------------------
// Starting a server, and the CLI.

struct Server {
    child: Child,
    pid: u32,
    dir: PathBuf,
    config: PathBuf,
    pg: Option<(String, String)>, // (admin URL, database name)
    keep: bool,
}

fn free_port() -> Res<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

fn server_binary(opts: &Opts) -> Res<PathBuf> {
    if let Some(b) = &opts.server_bin {
        return Ok(b.clone());
    }
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let bin = me.with_file_name("portcullis");
    if bin.exists() {
        Ok(bin)
    } else {
        Err(format!("{} not found: build it (cargo build --release --bins) or pass --server-bin", bin.display()))
    }
}

fn pg_database_url(admin: &str, name: &str) -> Res<String> {
    let mut u = url::Url::parse(admin).map_err(|e| format!("bad Postgres URL: {e}"))?;
    u.set_path(&format!("/{name}"));
    Ok(u.to_string())
}

async fn pg_admin(admin: &str, sql: &str) -> Res<()> {
    use sqlx::Connection;
    let mut c = sqlx::postgres::PgConnection::connect(admin).await.map_err(|e| format!("Postgres {admin}: {e}"))?;
    sqlx::query(sql).execute(&mut c).await.map_err(|e| format!("{sql}: {e}"))?;
    c.close().await.ok();
    Ok(())
}

async fn start_server(opts: &Opts) -> Res<(Server, String)> {
    let bin = server_binary(opts)?;
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis();
    let dir = std::env::temp_dir().join(format!("portcullis-load-{}-{stamp}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let (database_url, pg) = if opts.db == "sqlite" {
        (format!("sqlite://{}", dir.join("portcullis.db").display()), None)
    } else if opts.db.starts_with("postgres://") || opts.db.starts_with("postgresql://") {
        let name = format!("portcullis_load_{}_{stamp}", std::process::id());
        pg_admin(&opts.db, &format!("CREATE DATABASE {name}")).await?;
        (pg_database_url(&opts.db, &name)?, Some((opts.db.clone(), name)))
    } else {
        return Err(format!("--db must be sqlite or a postgres:// URL, not {:?}", opts.db));
    };
    let port = free_port()?;
    let limits = "authorize = 0\ntoken = 0\nregister = 0\nintrospect = 0\nlogin = 0\nrevoke = 0\n";
    let config = format!(
        "issuer = \"http://127.0.0.1:{port}\"\nbind = \"127.0.0.1:{port}\"\ndatabase_url = \"{database_url}\"\n\
         data_dir = \"{}\"\nlog_level = \"warn\"\nbootstrap_admin = false\nregistrations_per_ip_per_hour = 0\n\
         max_dynamic_clients = 100000000\nlogin_max_failures = 1000000\n\n\
         [rate_limit_per_ip]\n{limits}\n[rate_limit_total]\n{limits}",
        dir.display()
    );
    let config_path = dir.join("portcullis.toml");
    std::fs::write(&config_path, config).map_err(|e| e.to_string())?;
    let log = std::fs::File::create(dir.join("server.log")).map_err(|e| e.to_string())?;
    let mut cmd = match opts.server_cpu {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(cpu.to_string()).arg(&bin);
            c
        }
        None => Command::new(&bin),
    };
    cmd.arg("--config").arg(&config_path).arg("serve").current_dir(&dir).env_remove("RUST_LOG");
    for (k, _) in std::env::vars() {
        if k.starts_with("PORTCULLIS_") || k == "DATABASE_URL" {
            cmd.env_remove(k);
        }
    }
    for kv in &opts.server_env {
        let (k, v) = kv.split_once('=').ok_or_else(|| format!("--server-env {kv:?}: expected KEY=VALUE"))?;
        cmd.env(k, v);
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("starting {}: {e}", bin.display()))?;
    let pid = child.id();
    let mut server = Server { child, pid, dir, config: config_path, pg, keep: opts.keep };
    let base = format!("http://127.0.0.1:{port}");
    let t = Target {
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        host: format!("127.0.0.1:{port}"),
        issuer: String::new(),
        authorize: String::new(),
        token: String::new(),
        register: String::new(),
        jwks: String::new(),
        introspect: String::new(),
        metadata: String::new(),
        login: String::new(),
        consent: String::new(),
        healthz: "/healthz".into(),
        readyz: String::new(),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(status)) = server.child.try_wait() {
            let log = std::fs::read_to_string(server.dir.join("server.log")).unwrap_or_default();
            let e = format!("the server exited ({status}):\n{log}");
            server.stop().await;
            return Err(e);
        }
        let mut c = Conn::new(&t);
        if let Ok(r) = c.get("/healthz").await
            && r.status == 200
        {
            break;
        }
        if Instant::now() > deadline {
            server.stop().await;
            return Err("the server did not become healthy within 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok((server, base))
}

impl Server {
    async fn stop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.pid.to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => break,
                _ if Instant::now() > deadline => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        if self.keep {
            eprintln!("kept {} (config, database, server.log)", self.dir.display());
            if let Some((_, name)) = &self.pg {
                eprintln!("kept Postgres database {name}");
            }
            return;
        }
        if let Some((admin, name)) = self.pg.take()
            && let Err(e) = pg_admin(&admin, &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await
        {
            eprintln!("warning: could not drop database {name}: {e}");
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// How the CLI reaches the server's database.
enum CliDb {
    Config(PathBuf),
    Url(String),
}

fn cli(bin: &Path, db: &CliDb, args: &[&str], stdin: Option<&str>) -> Res<String> {
    let mut cmd = Command::new(bin);
    match db {
        CliDb::Config(p) => {
            cmd.arg("--config").arg(p);
        }
        CliDb::Url(u) => {
            cmd.env("PORTCULLIS_DATABASE_URL", u).env("PORTCULLIS_BOOTSTRAP_ADMIN", "false");
        }
    }
    cmd.args(args).current_dir(std::env::temp_dir()).env("RUST_LOG", "error");
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("running {}: {e}", bin.display()))?;
    if let Some(input) = stdin {
        child.stdin.take().expect("piped").write_all(input.as_bytes()).map_err(|e| e.to_string())?;
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "portcullis {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

// ---------------------------------------------------------------------------------------------
// Fixtures: a person, an MCP server with introspection credentials, and per-worker principals
// (a registered client, a signed-in session that consented, tokens).

struct Fixture {
    username: String,
    password: String,
    resource: String,
    introspection_basic: String,
}

fn setup_fixture(bin: &Path, db: &CliDb) -> Res<Fixture> {
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
    Ok(Fixture {
        username,
        password,
        resource,
        introspection_basic: format!("Basic {}", STANDARD.encode(format!("{id}:{secret}"))),
    })
}

#[derive(Default, Clone)]
struct Principal {
    client_id: String,
    cookie: Option<String>,
    refresh_token: String,
    access_token: String,
}

#[derive(Deserialize)]
struct Registered<'a> {
    #[serde(borrow)]
    client_id: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    registration_access_token: std::borrow::Cow<'a, str>,
    redirect_uris: Vec<std::borrow::Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Tokens<'a> {
    #[serde(borrow)]
    access_token: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    token_type: std::borrow::Cow<'a, str>,
    expires_in: i64,
    #[serde(borrow)]
    refresh_token: Option<std::borrow::Cow<'a, str>>,
}

fn register_body() -> String {
    serde_json::json!({
        "client_name": "portcullis-load",
        "redirect_uris": [REDIRECT_URI],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    })
    .to_string()
}

async fn register_client(c: &mut Conn, t: &Target, body: &str) -> Res<String> {
    let r = c.request("POST", &t.register, &[], Some(("application/json", body.as_bytes()))).await?;
    expect_status(&r, 201, "register")?;
    let reg: Registered = r.json()?;
    if reg.client_id.is_empty() || reg.registration_access_token.is_empty() || reg.redirect_uris.len() != 1 {
        return Err(format!("register: unexpected body {}", snippet(r.text())));
    }
    Ok(reg.client_id.into_owned())
}

fn hidden(html: &str, name: &str) -> Res<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker).ok_or_else(|| format!("no hidden field {name} in the page"))? + marker.len();
    let end = html[start..].find('"').ok_or("unterminated value")? + start;
    Ok(html[start..end].replace("&#x2d;", "-").replace("&#x5f;", "_").replace("&amp;", "&"))
}

struct Pkce {
    verifier: String,
    challenge: String,
}

fn pkce() -> Pkce {
    let verifier = random_b64(32);
    let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
    Pkce { verifier, challenge }
}

fn authorize_path(t: &Target, fx: &Fixture, client_id: &str, pkce: &Pkce, state: &str) -> String {
    let q = form(&[
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", REDIRECT_URI),
        ("code_challenge", &pkce.challenge),
        ("code_challenge_method", "S256"),
        ("state", state),
        ("resource", &fx.resource),
        ("scope", SCOPE),
    ]);
    format!("{}?{q}", t.authorize)
}

/// The code from a redirect to the client, checking `state` and `iss`.
fn code_from(location: Option<&str>, t: &Target, state: &str) -> Res<String> {
    let loc = location.ok_or("no Location header")?;
    if !loc.starts_with(REDIRECT_URI) {
        return Err(format!("redirected to {loc} instead of the client"));
    }
    let u = url::Url::parse(loc).map_err(|e| e.to_string())?;
    let (mut code, mut st, mut iss, mut err) = (None, None, None, None);
    for (k, v) in u.query_pairs() {
        match k.as_ref() {
            "code" => code = Some(v.into_owned()),
            "state" => st = Some(v.into_owned()),
            "iss" => iss = Some(v.into_owned()),
            "error" => err = Some(v.into_owned()),
            _ => {}
        }
    }
    if let Some(e) = err {
        return Err(format!("authorization error {e}: {loc}"));
    }
    if st.as_deref() != Some(state) || iss.as_deref() != Some(t.issuer.as_str()) {
        return Err(format!("state or iss wrong in {loc}"));
    }
    code.filter(|c| !c.is_empty()).ok_or_else(|| format!("no code in {loc}"))
}

/// Redeems a code; returns (access token, refresh token).
async fn redeem(
    c: &mut Conn,
    t: &Target,
    fx: &Fixture,
    client_id: &str,
    code: &str,
    verifier: &str,
) -> Res<(String, String)> {
    let body = form(&[
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", REDIRECT_URI),
        ("client_id", client_id),
        ("code_verifier", verifier),
        ("resource", &fx.resource),
    ]);
    let r = c.post_form(&t.token, &[], &body).await?;
    expect_status(&r, 200, "token (authorization_code)")?;
    tokens_ok(&r)
}

fn tokens_ok(r: &Response) -> Res<(String, String)> {
    let tok: Tokens = r.json()?;
    if tok.token_type != "Bearer" || tok.expires_in <= 0 || tok.access_token.split('.').count() != 3 {
        return Err(format!("token: unexpected body {}", snippet(r.text())));
    }
    let refresh = tok.refresh_token.ok_or("token: no refresh_token")?;
    Ok((tok.access_token.into_owned(), refresh.into_owned()))
}

/// A fresh client, signed in through the login form and consented through the consent form, with
/// its first tokens. The connection's cookie is the signed-in session.
async fn principal(c: &mut Conn, t: &Target, fx: &Fixture, register: &str) -> Res<Principal> {
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

fn absolute(t: &Target, loc: &str) -> String {
    if loc.starts_with('/') { format!("http://{}{loc}", t.host) } else { loc.to_string() }
}

// ---------------------------------------------------------------------------------------------
// Scenarios.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Scenario {
    Healthz,
    Readyz,
    Metadata,
    Jwks,
    Register,
    Authcode,
    Refresh,
    Introspect,
    Login,
}

impl Scenario {
    fn parse(s: &str) -> Res<Scenario> {
        Ok(match s {
            "healthz" => Scenario::Healthz,
            "readyz" => Scenario::Readyz,
            "metadata" => Scenario::Metadata,
            "jwks" => Scenario::Jwks,
            "register" => Scenario::Register,
            "authcode" => Scenario::Authcode,
            "refresh" => Scenario::Refresh,
            "introspect" => Scenario::Introspect,
            "login" => Scenario::Login,
            other => return Err(format!("unknown scenario {other:?} (one of {} or all)", ALL.join(", "))),
        })
    }
    fn name(self) -> &'static str {
        match self {
            Scenario::Healthz => "healthz",
            Scenario::Readyz => "readyz",
            Scenario::Metadata => "metadata",
            Scenario::Jwks => "jwks",
            Scenario::Register => "register",
            Scenario::Authcode => "authcode",
            Scenario::Refresh => "refresh",
            Scenario::Introspect => "introspect",
            Scenario::Login => "login",
        }
    }
    fn needs_principals(self) -> bool {
        matches!(self, Scenario::Authcode | Scenario::Refresh | Scenario::Introspect | Scenario::Login)
    }
}

struct Ctx {
    target: Target,
    fixture: Option<Fixture>,
    register_body: String,
}

struct Worker {
    conn: Conn,
    principal: Principal,
    /// The login page's CSRF token for the next login.
    login_csrf: Option<String>,
}

#[derive(Deserialize)]
struct Introspection<'a> {
    active: bool,
    #[serde(borrow)]
    aud: Option<std::borrow::Cow<'a, str>>,
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
            expect_status(&r, 302, "authorize")?;
            let code = code_from(r.location.as_deref(), t, &state)?;
            redeem(&mut w.conn, t, fx, &w.principal.client_id, &code, &p.verifier).await?;
            Ok(t0.elapsed())
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
            if !i.active || i.aud.as_deref() != Some(fx.resource.as_str()) {
                return Err(format!("introspect: not active for the resource: {}", snippet(r.text())));
            }
            Ok(t0.elapsed())
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

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    errors: u64,
    samples: BTreeMap<String, u64>,
}

async fn work(s: Scenario, mut w: Worker, ctx: Arc<Ctx>, measure_from: Instant, end: Instant) -> (Worker, Tally) {
    let mut tally = Tally::default();
    match s {
        Scenario::Authcode | Scenario::Refresh => w.conn.cookie = w.principal.cookie.clone(),
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

// ---------------------------------------------------------------------------------------------
// CPU and memory from /proc.

const TICKS_PER_SEC: f64 = 100.0;

fn proc_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime); `after` starts at field 3.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// (busy, total) ticks of the whole machine.
fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?;
    let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4)?;
    Some((total - idle, total))
}

fn status_kb(pid: u32, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find_map(|l| l.strip_prefix(key)?.trim().trim_end_matches("kB").trim().parse().ok())
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// CPU ticks of every `postgres` process on the machine (the database's share of the work).
fn postgres_ticks() -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc") else { return 0 };
    dir.filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit())))
        .filter_map(|e| {
            let pid = e.file_name().to_string_lossy().into_owned();
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            stat.contains("(postgres)").then(|| proc_ticks(&pid)).flatten()
        })
        .sum()
}

struct Snapshot {
    at: Instant,
    postgres: u64,
    me: Option<u64>,
    server: Option<u64>,
    machine: Option<(u64, u64)>,
}

fn snapshot(server_pid: Option<u32>) -> Snapshot {
    Snapshot {
        at: Instant::now(),
        postgres: postgres_ticks(),
        me: proc_ticks("self"),
        server: server_pid.and_then(|p| proc_ticks(&p.to_string())),
        machine: machine_ticks(),
    }
}

// ---------------------------------------------------------------------------------------------

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[i.clamp(1, sorted.len()) - 1] as f64 / 1000.0
}

fn round(x: f64, digits: i32) -> f64 {
    let m = 10f64.powi(digits);
    (x * m).round() / m
}

async fn run(opts: Opts) -> Res<()> {
    if opts.concurrency == 0 || opts.duration <= 0.0 {
        return Err("--concurrency and --duration must be positive".into());
    }
    let scenarios: Vec<Scenario> = if opts.scenario == "all" {
        ALL.iter().map(|s| Scenario::parse(s)).collect::<Res<_>>()?
    } else {
        opts.scenario.split(',').map(|s| Scenario::parse(s.trim())).collect::<Res<_>>()?
    };
    let (mut server, base, cli_db, server_pid, db_label) = match &opts.target {
        Some(base) => {
            let cli_db = match (&opts.config, opts.db.as_str()) {
                (Some(p), _) => Some(CliDb::Config(p.clone())),
                (None, "sqlite") => None,
                (None, url) => Some(CliDb::Url(url.to_string())),
            };
            (None, base.clone(), cli_db, opts.server_pid, "external".to_string())
        }
        None => {
            let (s, base) = start_server(&opts).await?;
            let cli_db = CliDb::Config(s.config.clone());
            let pid = s.pid;
            let label = if opts.db == "sqlite" { "sqlite".to_string() } else { "postgres".to_string() };
            eprintln!("started {} (pid {pid}) on {base} with {label}", server_binary(&opts)?.display());
            (Some(s), base, Some(cli_db), Some(pid), label)
        }
    };
    let result = benchmark(&opts, &scenarios, &base, cli_db.as_ref(), server_pid, &db_label).await;
    if let Some(s) = server.as_mut() {
        s.stop().await;
    }
    result
}

async fn benchmark(
    opts: &Opts,
    scenarios: &[Scenario],
    base: &str,
    cli_db: Option<&CliDb>,
    server_pid: Option<u32>,
    db_label: &str,
) -> Res<()> {
    let target = discover(base).await?;
    let needs_fixture = scenarios.iter().any(|s| s.needs_principals());
    let fixture = if needs_fixture {
        let db = cli_db.ok_or(
            "authcode, refresh, introspect and login need a person and an MCP server: with --target, pass the \
             server's --config or its --db URL so the CLI can add them",
        )?;
        Some(setup_fixture(&server_binary(opts)?, db)?)
    } else {
        None
    };
    let ctx = Arc::new(Ctx { target, fixture, register_body: register_body() });
    let mut workers: Vec<Worker> = (0..opts.concurrency)
        .map(|_| Worker { conn: Conn::new(&ctx.target), principal: Principal::default(), login_csrf: None })
        .collect();
    let mut principals_ready = false;
    let mut rows = Vec::new();
    for &s in scenarios {
        if STOP.load(Ordering::Relaxed) {
            break;
        }
        if s.needs_principals() && !principals_ready {
            // Set up just before the first scenario that needs it, so the scenarios before it show
            // the server's memory without the sign-ins (argon2) this costs.
            let t = Instant::now();
            let fx = ctx.fixture.as_ref().expect("fixture");
            for w in workers.iter_mut() {
                w.principal = principal(&mut w.conn, &ctx.target, fx, &ctx.register_body).await?;
            }
            principals_ready = true;
            let rss = server_pid
                .and_then(|p| status_kb(p, "VmRSS:"))
                .map(|kb| format!(", server RSS now {:.1} MB", kb as f64 / 1024.0));
            eprintln!(
                "set up {} clients with signed-in, consented sessions in {:.1} s{}",
                workers.len(),
                t.elapsed().as_secs_f64(),
                rss.unwrap_or_default()
            );
        }
        let load_before = loadavg();
        let start = Instant::now();
        let measure_from = start + Duration::from_secs_f64(opts.warmup);
        let end = measure_from + Duration::from_secs_f64(opts.duration);
        let mut set = tokio::task::JoinSet::new();
        for w in workers.drain(..) {
            set.spawn(work(s, w, ctx.clone(), measure_from, end));
        }
        // CPU is sampled over the measured window only.
        tokio::time::sleep_until(measure_from.into()).await;
        let before = snapshot(server_pid);
        tokio::time::sleep_until(end.into()).await;
        let after = snapshot(server_pid);
        let mut all = Tally::default();
        while let Some(r) = set.join_next().await {
            let (w, t) = r.map_err(|e| format!("worker panicked: {e}"))?;
            workers.push(w);
            all.latencies_us.extend(t.latencies_us);
            all.errors += t.errors;
            for (k, v) in t.samples {
                *all.samples.entry(k).or_default() += v;
            }
        }
        let wall = after.at.duration_since(before.at).as_secs_f64().max(1e-9);
        let cpu = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(a), Some(b)) => Some(round((b.saturating_sub(a)) as f64 / TICKS_PER_SEC / wall, 2)),
            _ => None,
        };
        let load_cpu = cpu(before.me, after.me);
        let postgres_cpu = cpu(Some(before.postgres), Some(after.postgres));
        let server_cpu = cpu(before.server, after.server);
        // Everything else the machine did meanwhile (other builds and tests), in cores.
        let other_cpu = match (before.machine, after.machine, before.me, after.me) {
            (Some((b0, t0)), Some((b1, t1)), Some(m0), Some(m1)) if t1 > t0 => {
                // Every CPU of the machine, not just the ones this process may run on.
                let cores = std::fs::read_to_string("/proc/stat")
                    .map(|s| s.lines().filter(|l| l.starts_with("cpu") && !l.starts_with("cpu ")).count())
                    .unwrap_or(1)
                    .max(1) as f64;
                let busy = (b1 - b0) as f64 / (t1 - t0) as f64 * cores;
                let server = match (before.server, after.server) {
                    (Some(a), Some(b)) => (b - a) as f64 / TICKS_PER_SEC / wall,
                    _ => 0.0,
                };
                let me = (m1 - m0) as f64 / TICKS_PER_SEC / wall;
                let db = after.postgres.saturating_sub(before.postgres) as f64 / TICKS_PER_SEC / wall;
                Some(round((busy - me - server - db).max(0.0), 2))
            }
            _ => None,
        };
        let mut lat = all.latencies_us;
        lat.sort_unstable();
        let ops = lat.len() as u64;
        let ops_per_s = ops as f64 / opts.duration;
        let mean = if lat.is_empty() {
            f64::NAN
        } else {
            lat.iter().map(|&x| x as f64).sum::<f64>() / lat.len() as f64 / 1000.0
        };
        let peak_rss_mb = server_pid.and_then(|p| status_kb(p, "VmHWM:")).map(|kb| round(kb as f64 / 1024.0, 1));
        let rss_mb = server_pid.and_then(|p| status_kb(p, "VmRSS:")).map(|kb| round(kb as f64 / 1024.0, 1));
        let line = serde_json::json!({
            "scenario": s.name(),
            "db": db_label,
            "concurrency": opts.concurrency,
            "duration_s": opts.duration,
            "ops": ops,
            "ops_per_s": round(ops_per_s, 1),
            "errors": all.errors,
            "p50_ms": round(percentile(&lat, 50.0), 3),
            "p90_ms": round(percentile(&lat, 90.0), 3),
            "p99_ms": round(percentile(&lat, 99.0), 3),
            "max_ms": round(lat.last().map(|&x| x as f64 / 1000.0).unwrap_or(f64::NAN), 3),
            "mean_ms": round(mean, 3),
            "server_peak_rss_mb": peak_rss_mb,
            "server_rss_mb": rss_mb,
            "server_cpu": server_cpu,
            // Server CPU time per operation: the cost the throughput is bounded by on one core.
            "server_cpu_us_per_op": server_cpu.filter(|_| ops > 0).map(|c| round(c * 1e6 / ops_per_s, 0)),
            "postgres_cpu_us_per_op": postgres_cpu.filter(|c| ops > 0 && *c > 0.0).map(|c| round(c * 1e6 / ops_per_s, 0)),
            "load_cpu": load_cpu,
            "postgres_cpu": postgres_cpu,
            "other_cpu": other_cpu,
            "loadavg_before": load_before,
            "server_cpu_pin": opts.server_cpu,
            "load_cpu_pin": opts.load_cpu,
            "error_samples": all.samples,
        });
        println!("{line}");
        std::io::stdout().flush().ok();
        for (k, v) in &all.samples {
            eprintln!("  {} error x{v}: {k}", s.name());
        }
        rows.push(line);
    }
    print_table(&rows);
    Ok(())
}

fn print_table(rows: &[serde_json::Value]) {
    let f = |v: &serde_json::Value, k: &str, d: usize| match v.get(k).and_then(|x| x.as_f64()) {
        Some(x) => format!("{x:.d$}"),
        None => "-".into(),
    };
    eprintln!();
    eprintln!(
        "{:<11} {:<9} {:>4} {:>10} {:>8} {:>8} {:>8} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>9}",
        "scenario",
        "db",
        "conc",
        "ops/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "errors",
        "srv cpu",
        "us/op",
        "gen cpu",
        "pg cpu",
        "other",
        "peak RSS"
    );
    for r in rows {
        eprintln!(
            "{:<11} {:<9} {:>4} {:>10} {:>8} {:>8} {:>8} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>9}",
            r["scenario"].as_str().unwrap_or(""),
            r["db"].as_str().unwrap_or(""),
            r["concurrency"],
            f(r, "ops_per_s", 0),
            f(r, "p50_ms", 2),
            f(r, "p90_ms", 2),
            f(r, "p99_ms", 2),
            r["errors"],
            f(r, "server_cpu", 2),
            f(r, "server_cpu_us_per_op", 0),
            f(r, "load_cpu", 2),
            f(r, "postgres_cpu", 2),
            f(r, "other_cpu", 2),
            match r["server_peak_rss_mb"].as_f64() {
                Some(x) => format!("{x:.1} MB"),
                None => "-".into(),
            },
        );
    }
}
