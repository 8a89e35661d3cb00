//! The `portcullis` command: parse arguments, load the configuration, call into the library.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use portcullis::admin::{self, ClientSpec, ResourceSpec};
use portcullis::config::{Config, LogFormat, Settings};
use portcullis::state::{AppState, key_settings};
use portcullis::store::{self, Db};
use portcullis::tokens::keys;
use portcullis::users::password::Hasher;

#[derive(Parser)]
#[command(
    name = "portcullis",
    version,
    about = "OAuth 2.1 authorization server for MCP servers",
    after_help = "Settings come from the config file (--config, or ./portcullis.toml) and from environment \
                  variables PORTCULLIS_<KEY> (e.g. PORTCULLIS_ISSUER, PORTCULLIS_BIND, PORTCULLIS_DATABASE_URL), \
                  which win. `portcullis config check` prints the settings in effect; README.md lists them all."
)]
struct Cli {
    /// Configuration file (default: ./portcullis.toml when present).
    #[arg(long, global = true, env = "PORTCULLIS_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (migrates the database first).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Manage people who sign in.
    #[command(subcommand)]
    User(UserCmd),
    /// Manage MCP servers (resources) and their scopes.
    #[command(subcommand)]
    Resource(ResourceCmd),
    /// Manage pre-registered clients.
    #[command(subcommand)]
    Client(ClientCmd),
    /// Manage signing keys.
    #[command(subcommand)]
    Keys(KeysCmd),
    /// List and revoke grants (a person's consent for a client and an MCP server).
    #[command(subcommand)]
    Grant(GrantCmd),
    /// Read the audit trail.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Validate the configuration and print it, secrets redacted.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Manage local groups (people's groups from an identity provider come with each sign-in).
    #[command(subcommand)]
    Group(GroupCmd),
    /// The company identity providers people sign in with (declared in the config file).
    #[command(subcommand)]
    Idp(IdpCmd),
    /// Tokens for the admin API (/admin/api): named, hashed at rest, expiring, revocable.
    #[command(subcommand, name = "admin-token")]
    AdminToken(AdminTokenCmd),
    /// Check the deployment from the outside, as an MCP client would: the issuer's metadata and
    /// keys, and each MCP server's metadata and 401. Exits non-zero when a check fails.
    Doctor {
        /// MCP server URLs to check (default: every registered one).
        urls: Vec<String>,
        /// Also mint a one-minute token for each server (and one for another audience) and check
        /// that the server accepts the first and refuses the second.
        #[arg(long)]
        token_check: bool,
        /// One JSON document instead of lines.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum GroupCmd {
    /// Add people to a group (created by its first member).
    Add {
        group: String,
        #[arg(required = true)]
        usernames: Vec<String>,
    },
    /// Remove people from a local group.
    Remove {
        group: String,
        #[arg(required = true)]
        usernames: Vec<String>,
    },
    /// Every group and its members, with where each membership comes from (local or a provider).
    List,
}

#[derive(Subcommand)]
enum AdminTokenCmd {
    /// Create a token (printed once).
    Create {
        name: String,
        /// Lifetime: seconds or a duration such as 30d (default: until revoked).
        #[arg(long, value_parser = parse_duration)]
        expires_in: Option<u64>,
    },
    /// List tokens (never the tokens themselves).
    List,
    /// Revoke a token by name.
    Revoke { name: String },
}

#[derive(Subcommand)]
enum IdpCmd {
    /// The configured providers, with the redirect and back-channel logout URIs to register there.
    List,
}

#[derive(Subcommand)]
enum UserCmd {
    /// Add a user.
    Add {
        username: String,
        /// Read the password from standard input (otherwise a random one is generated and printed).
        #[arg(long)]
        password_stdin: bool,
        /// Display name (OpenID Connect `name`).
        #[arg(long)]
        name: Option<String>,
        /// Email address (OpenID Connect `email`).
        #[arg(long)]
        email: Option<String>,
        /// A local group for the person (repeatable).
        #[arg(long = "group", value_name = "GROUP")]
        groups: Vec<String>,
        /// Give the person the admin role.
        #[arg(long)]
        admin: bool,
    },
    /// List users.
    List,
    /// Disable a user: sign-in is refused and their grants stop working.
    Disable { username: String },
    /// Enable a disabled user.
    Enable { username: String },
    /// Set a user's password (read from standard input, or generated and printed).
    Passwd {
        username: String,
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Subcommand)]
enum ResourceCmd {
    /// Register an MCP server by its canonical URL.
    Add(ResourceAdd),
    /// List registered MCP servers.
    List,
    /// Remove an MCP server and every grant for it.
    Remove { uri: String },
    /// Issue (or replace) the credentials the MCP server uses at /introspect; printed once.
    Introspection { uri: String },
}

#[derive(Args)]
struct ResourceAdd {
    /// The MCP server's URL, as its protected-resource metadata names it.
    uri: String,
    #[arg(long)]
    name: String,
    /// A scope as NAME=DESCRIPTION (repeatable). The description is shown on the consent page.
    #[arg(long = "scope", value_name = "NAME=DESCRIPTION")]
    scopes: Vec<String>,
    /// Scopes granted when a client asks for none (repeatable; default: every scope).
    #[arg(long = "default-scope", value_name = "NAME")]
    default_scopes: Vec<String>,
    /// Access-token lifetime for this server: seconds (`600`) or a duration (`10m`), as in the
    /// config file (default: access_token_lifetime).
    #[arg(long, value_parser = parse_duration)]
    token_lifetime: Option<u64>,
    /// Also issue credentials for /introspect (printed once).
    #[arg(long)]
    introspection: bool,
    /// Only people in this group may use the server (repeatable; default: everyone).
    #[arg(long = "allowed-group", value_name = "GROUP")]
    allowed_groups: Vec<String>,
}

#[derive(Subcommand)]
enum AuditCmd {
    /// Most recent events first.
    List {
        /// Only this event (login, login_failed, login_locked, consent_granted, consent_denied,
        /// client_registered, client_deleted, metadata_document_failed, refresh_reuse_detected,
        /// code_replay_detected, grant_revoked, key_rotated, password_changed).
        #[arg(long)]
        event: Option<String>,
        /// Only events by this actor (a username, `cli`, `cleanup`).
        #[arg(long)]
        actor: Option<String>,
        #[arg(long)]
        client: Option<String>,
        /// Only events newer than this (e.g. 90m, 24h, 7d).
        #[arg(long)]
        since: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
}

#[derive(Subcommand)]
enum GrantCmd {
    /// List live grants (with --all, revoked ones too).
    List {
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        client: Option<String>,
        #[arg(long)]
        all: bool,
    },
    /// Revoke a grant: its refresh tokens die at once, its access tokens read inactive.
    Revoke { id: String },
}

#[derive(Subcommand)]
enum ClientCmd {
    /// Pre-register a client. A confidential client's secret is printed once.
    Add(ClientAdd),
    /// List clients; identical dynamic registrations are grouped (`--all` lists each).
    List {
        #[arg(long)]
        all: bool,
    },
    /// Remove a client and everything granted to it.
    Remove { client_id: String },
    /// Make an initial access token for `registration = "token"` (printed once).
    Token {
        #[arg(long, default_value = "cli")]
        label: String,
        /// Lifetime in seconds (default: no expiry).
        #[arg(long)]
        expires_in: Option<u64>,
    },
}

#[derive(Args)]
struct ClientAdd {
    #[arg(long)]
    name: String,
    /// Redirect URI (repeatable; required with the authorization_code grant).
    #[arg(long = "redirect-uri")]
    redirect_uris: Vec<String>,
    /// Client id (default: generated).
    #[arg(long)]
    client_id: Option<String>,
    /// Issue a client secret (client_secret_basic / client_secret_post).
    #[arg(long)]
    confidential: bool,
    /// A grant type (repeatable): authorization_code, refresh_token, client_credentials
    /// (default: authorization_code and refresh_token).
    #[arg(long = "grant", value_name = "GRANT_TYPE")]
    grant_types: Vec<String>,
    /// The client's public keys (a JWK set, JSON) for private_key_jwt, instead of a secret.
    #[arg(long, value_name = "FILE", conflicts_with = "jwks_uri")]
    jwks_file: Option<PathBuf>,
    /// Where the client publishes its public keys (https), for private_key_jwt.
    #[arg(long, value_name = "URL")]
    jwks_uri: Option<String>,
    /// client_credentials: an MCP server the client may get tokens for (repeatable).
    #[arg(long = "resource", value_name = "URI")]
    resources: Vec<String>,
    /// client_credentials: a scope the client may get (repeatable); each goes to the --resource
    /// servers that declare it.
    #[arg(long = "scope", value_name = "NAME")]
    scopes: Vec<String>,
}

#[derive(Subcommand)]
enum KeysCmd {
    /// List signing keys and their state.
    List,
    /// Add a new signing key: published now, signing after key_publish_delay.
    Rotate,
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Validate the configuration and print the effective values.
    Check,
}

#[derive(Debug)]
struct Failure(String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure(e.to_string())
    }
}

fn main() -> ExitCode {
    portcullis::users::password::release_hash_memory_promptly();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(msg)) => {
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// Whether a command changes what the server does (people, MCP servers, clients, keys, grants,
/// groups): those are audited with the operator's OS user as actor.
fn changes(command: &Command) -> bool {
    match command {
        Command::User(c) => !matches!(c, UserCmd::List),
        Command::Resource(c) => !matches!(c, ResourceCmd::List),
        Command::Client(c) => !matches!(c, ClientCmd::List { .. }),
        Command::Keys(c) => matches!(c, KeysCmd::Rotate),
        Command::Grant(c) => matches!(c, GrantCmd::Revoke { .. }),
        Command::Group(c) => !matches!(c, GroupCmd::List),
        Command::AdminToken(c) => !matches!(c, AdminTokenCmd::List),
        Command::Serve
        | Command::Migrate
        | Command::Audit(_)
        | Command::Config(_)
        | Command::Idp(_)
        | Command::Doctor { .. } => false,
    }
}

/// Records a CLI change: the words of the command (never a secret: those come on standard input
/// or are generated), by `cli:<OS user>`.
async fn audit_change(settings: &Settings) -> Result<(), Failure> {
    let who = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "unknown".into());
    let actor = format!("cli:{who}");
    let words: Vec<String> = std::env::args().skip(1).collect();
    let db = create_or_open(settings).await?;
    let event = store::audit::Event {
        event: "cli_change",
        actor: Some(&actor),
        details: serde_json::json!({ "command": words.join(" ") }),
        ..Default::default()
    };
    store::audit::record(&db, &event, store::now()).await?;
    Ok(())
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let settings = Config::load(cli.config.as_deref())?.validate()?;
    let change = changes(&cli.command);
    let result = dispatch(&settings, cli.command).await;
    if result.is_ok() && change {
        audit_change(&settings).await?;
    }
    result
}

async fn dispatch(settings: &Settings, command: Command) -> Result<(), Failure> {
    let settings = settings.clone();
    match command {
        Command::Serve => serve(settings).await,
        Command::Config(ConfigCmd::Check) => {
            admin::validate_declarations(&settings)?;
            print!("{}", settings.redacted_toml());
            print_in_database(&settings).await;
            if let Some(warning) = settings.keys_in_clear_warning() {
                eprintln!("warning: {warning}");
            }
            eprintln!("configuration is valid");
            Ok(())
        }
        Command::Migrate => {
            let db = create_or_open(&settings).await?;
            let url = portcullis::config::redact_url(settings.database.url.expose());
            eprintln!("database migrated ({}): {url}", db.engine());
            Ok(())
        }
        Command::User(cmd) => said(&settings, user(&open(&settings).await?, cmd).await),
        Command::Resource(cmd) => said(&settings, resource(&open(&settings).await?, &settings.issuer, cmd).await),
        Command::Client(cmd) => said(&settings, client(&open(&settings).await?, cmd).await),
        Command::Keys(cmd) => said(&settings, keys_cmd(&settings, &open(&settings).await?, cmd).await),
        Command::Grant(cmd) => said(&settings, grant(&open(&settings).await?, cmd).await),
        Command::Audit(cmd) => said(&settings, audit(&open(&settings).await?, cmd).await),
        Command::Group(cmd) => said(&settings, group(&open(&settings).await?, cmd).await),
        Command::AdminToken(cmd) => said(&settings, admin_token(&open(&settings).await?, cmd).await),
        Command::Doctor { urls, token_check, json } => doctor(&settings, urls, token_check, json).await,
        Command::Idp(IdpCmd::List) => {
            idp_list(&settings);
            Ok(())
        }
    }
}

async fn doctor(settings: &Settings, urls: Vec<String>, token_check: bool, json: bool) -> Result<(), Failure> {
    let db = open(settings).await?;
    let ks = key_settings(settings);
    let now = store::now();
    let statuses = keys::status(&db, &ks, now).await?;
    let signing = statuses.iter().find(|(_, s)| *s == keys::KeyState::Active).map(|(row, _)| row.kid.clone());
    // Each server with its scope catalogue (a token for it carries every scope, so that a server
    // checking scopes accepts it).
    let registered = store::resources::list(&db).await?;
    let uris: Vec<String> = if urls.is_empty() { registered.iter().map(|r| r.row.uri.clone()).collect() } else { urls };
    let scopes_of = |uri: &str| {
        let canonical = portcullis::oauth::resource::ResourceUri::parse(uri).map(|u| u.as_str().to_string());
        registered
            .iter()
            .find(|r| Ok(&r.row.uri) == canonical.as_ref())
            .map(|r| r.scopes.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    };
    let ring = if token_check { Some(keys::KeyRing::open(db.clone(), ks).await?) } else { None };
    let mut servers = Vec::new();
    for uri in uris {
        let tokens = match &ring {
            Some(ring) => {
                let key = ring.signing_key().await?;
                let scope = scopes_of(&uri);
                let mint = |aud: &str| {
                    portcullis::tokens::jwt::mint_access_token(
                        &key,
                        &portcullis::tokens::jwt::AccessTokenClaims {
                            issuer: &settings.issuer,
                            subject: "portcullis-doctor",
                            audience: aud,
                            client_id: "portcullis-doctor",
                            scope: &scope,
                            issued_at: now,
                            expires_at: now + 60,
                            jti: &portcullis::tokens::secrets::random_string(12),
                            auth_time: None,
                        },
                    )
                };
                Some((mint(&uri)?, mint("https://another-server.invalid/mcp")?))
            }
            None => None,
        };
        servers.push(portcullis::doctor::Server { uri, tokens });
    }
    let subject = portcullis::doctor::Subject { issuer: &settings.issuer, signing_kid: signing.as_deref(), servers };
    let mut report = portcullis::doctor::examine(&subject).await;
    report.checks.extend(portcullis::doctor::settings_checks(settings));
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "checks": report.checks })).unwrap_or_default()
        );
    } else {
        for c in &report.checks {
            let status = match c.status {
                portcullis::doctor::Status::Pass => "PASS",
                portcullis::doctor::Status::Warn => "WARN",
                portcullis::doctor::Status::Fail => "FAIL",
            };
            let detail = if c.detail.is_empty() { String::new() } else { format!(": {}", c.detail) };
            println!("{status}  {}{detail}", c.check);
            if !c.hint.is_empty() {
                println!("      fix: {}", c.hint);
            }
        }
    }
    if report.failed() {
        return Err(Failure("some checks failed (see above)".into()));
    }
    Ok(())
}

async fn admin_token(db: &Db, cmd: AdminTokenCmd) -> Result<(), Failure> {
    match cmd {
        AdminTokenCmd::Create { name, expires_in } => {
            let token = admin::create_admin_token(db, &name, expires_in).await?;
            println!("created admin token {name}; send it as `Authorization: Bearer` to /admin/api (shown once):");
            println!("{token}");
        }
        AdminTokenCmd::List => {
            println!("{:<24} {:<20} {:<20} {:<20} STATE", "NAME", "CREATED", "EXPIRES", "LAST USED");
            let now = store::now();
            for t in store::admin_tokens::list(db).await? {
                let state = match (t.revoked_at, t.expires_at) {
                    (Some(_), _) => "revoked",
                    (None, Some(e)) if e <= now => "expired",
                    _ => "live",
                };
                let expires = t.expires_at.map(datetime).unwrap_or_else(|| "never".into());
                let used = t.last_used_at.map(datetime).unwrap_or_else(|| "never".into());
                println!("{:<24} {:<20} {:<20} {:<20} {state}", t.name, datetime(t.created_at), expires, used);
            }
        }
        AdminTokenCmd::Revoke { name } => {
            admin::revoke_admin_token(db, &name).await?;
            println!("revoked admin token {name}");
        }
    }
    Ok(())
}

async fn group(db: &Db, cmd: GroupCmd) -> Result<(), Failure> {
    match cmd {
        GroupCmd::Add { group, usernames } => {
            admin::group_add(db, &group, &usernames).await?;
            println!("added {} to group {group}", usernames.join(", "));
        }
        GroupCmd::Remove { group, usernames } => {
            admin::group_remove(db, &group, &usernames).await?;
            println!("removed {} from group {group}", usernames.join(", "));
        }
        GroupCmd::List => {
            println!("{:<32} {:<24} SOURCE", "GROUP", "USERNAME");
            for m in store::groups::list(db).await? {
                println!("{:<32} {:<24} {}", printable(&m.name), m.username, printable(&m.source));
            }
        }
    }
    Ok(())
}

fn idp_list(settings: &Settings) {
    if settings.identity_providers.is_empty() {
        println!("no identity providers configured ([[identity_providers]] in the config file)");
    }
    for p in &settings.identity_providers {
        let issuer = if p.issuer.is_empty() { p.github_url.as_str() } else { p.issuer.as_str() };
        println!("{}  {:?}  {:?}  {issuer}", p.id, p.kind, p.name);
        println!("    redirect URI:              {}/login/{}/callback", settings.issuer, p.id);
        println!("    back-channel logout URI:   {}/login/{}/backchannel-logout", settings.issuer, p.id);
        println!("    create people: {}   link by email: {}", p.create_people, p.link_by_email);
    }
    println!("password login: {}", if settings.password_login { "on" } else { "off" });
}

fn init_logging(settings: &Settings) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&settings.log.level));
    // Colours only for a person at a terminal, never into a log file or a collector.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match settings.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Human => builder.init(),
    }
}

/// Opens the server's database for a CLI command: a SQLite file that does not exist is refused
/// (only `serve` and `migrate` create one), so a command run from another directory cannot
/// silently write to a second database the server never reads. Says which database it used.
async fn open(settings: &Settings) -> Result<Db, Failure> {
    let url = settings.database.url.expose();
    if let Some(path) = sqlite_file(url)
        && !path.exists()
    {
        return Err(Failure(format!(
            "no database at {}: start the server once (`portcullis serve`) or run `portcullis migrate` there, \
             or point --config or PORTCULLIS_DATABASE_URL at the server's database",
            path.display()
        )));
    }
    create_or_open(settings).await
}

/// What the database holds besides the file (MCP servers added with the CLI or the API), as TOML
/// comments after the configuration; nothing when there is no database yet or it is unreachable.
async fn print_in_database(settings: &Settings) {
    if sqlite_file(settings.database.url.expose()).is_some_and(|p| !p.exists()) {
        return;
    }
    // Connect only: a check migrates nothing.
    let connect = Db::connect_with(settings.database.url.expose(), settings.database.limits);
    let Ok(Ok(db)) = tokio::time::timeout(std::time::Duration::from_secs(3), connect).await else {
        return;
    };
    let Ok(resources) = store::resources::list(&db).await else { return };
    println!("\n# In effect from the database ({}):", portcullis::config::redact_url(settings.database.url.expose()));
    if resources.is_empty() {
        println!("#   no MCP servers registered");
    }
    for r in resources {
        let scopes: Vec<&str> = r.scopes.iter().map(|s| s.name.as_str()).collect();
        println!("#   MCP server {}  ({}; scopes: {})", r.row.uri, r.row.name, scopes.join(" "));
    }
}

/// After a command that used the database: which one (on standard error, so output stays clean).
fn said(settings: &Settings, result: Result<(), Failure>) -> Result<(), Failure> {
    if result.is_ok() {
        eprintln!("database: {}", portcullis::config::redact_url(settings.database.url.expose()));
    }
    result
}

/// The file of a SQLite URL (none for Postgres or an in-memory database).
fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty() && path != ":memory:").then(|| std::path::PathBuf::from(path))
}

async fn create_or_open(settings: &Settings) -> Result<Db, Failure> {
    let url = settings.database.url.expose();
    let db = Db::connect_with(url, settings.database.limits)
        .await
        .map_err(|e| Failure(format!("cannot open database {}: {e}", portcullis::config::redact_url(url))))?;
    db.migrate().await?;
    Ok(db)
}

async fn serve(settings: Settings) -> Result<(), Failure> {
    init_logging(&settings);
    let bind = settings.bind;
    let url = portcullis::config::redact_url(settings.database.url.expose());
    // Bind first: a taken port fails before anything is created or printed.
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .map_err(|e| Failure(format!("cannot listen on {bind} (the `bind` setting, or PORTCULLIS_BIND): {e}")))?;
    let (state, started) =
        AppState::start(settings).await.map_err(|e| Failure(format!("cannot start with database {url}: {e}")))?;
    if let Some(password) = started.admin_password {
        print_first_start(&state, &password);
    }
    tracing::info!(issuer = %state.settings.issuer, %bind, database = state.db.engine(), "portcullis is serving");
    let jobs = portcullis::jobs::spawn(state.clone());
    let app = portcullis::app(state.clone());
    match &state.settings.tls {
        Some(files) => {
            let config = portcullis::tls::load_config(&files.cert, &files.key).map_err(Failure)?;
            let listener = portcullis::tls::TlsListener::new(listener, config)?;
            tracing::info!("serving HTTPS with the configured certificate");
            let serve = state.settings.serve;
            portcullis::serve::run(listener, app, serve, portcullis::serve::tls_peer, shutdown_signal()).await;
        }
        None => {
            let serve = state.settings.serve;
            portcullis::serve::run(listener, app, serve, portcullis::serve::tcp_peer, shutdown_signal()).await;
        }
    }
    jobs.abort();
    state.db.close().await;
    tracing::info!("stopped");
    Ok(())
}

fn print_first_start(state: &AppState, password: &str) {
    let issuer = &state.settings.issuer;
    let (me, hint) = command_name();
    println!("\nFirst start: created the user `admin` with password\n\n    {password}\n\nIt is shown only this once.");
    println!("Next steps{hint}:");
    if state.settings.resources.is_empty() {
        println!("  1. Register an MCP server (a resource) and its scopes; it prints what the server must serve:");
        println!("       {me} resource add https://mcp.example.com/mcp --name \"Example MCP\" \\");
        println!("         --scope \"mcp:tools=Use the server's tools\"");
    } else {
        println!("  1. The MCP servers of the config file are registered: `{me} resource list`.");
    }
    println!("  2. Point each MCP server's protected-resource metadata at this issuer:");
    println!("       \"authorization_servers\": [\"{issuer}\"]   (README: \"Connect your MCP server\")");
    println!("  3. Add people: {me} user add alice --password-stdin");
    println!("Discovery: {issuer}/.well-known/oauth-authorization-server\n");
}

/// How to run this binary again from here: `portcullis` when installed, else its path (a
/// `cargo run` build under target/), with a hint to install it.
fn command_name() -> (String, String) {
    let exe = std::env::current_exe().ok();
    let built = exe.as_ref().filter(|p| p.components().any(|c| c.as_os_str() == "target"));
    match built {
        Some(path) => {
            let shown = std::env::current_dir()
                .ok()
                .and_then(|cwd| path.strip_prefix(cwd).ok().map(|p| format!("./{}", p.display())))
                .unwrap_or_else(|| path.display().to_string());
            (shown, " (or `cargo install --path .` to put `portcullis` on your PATH)".into())
        }
        None => ("portcullis".into(), String::new()),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down: finishing requests in flight");
}

/// `900`, `90s`, `15m`, `12h`, `30d`: the config file's durations, on the command line too.
fn parse_duration(s: &str) -> Result<u64, String> {
    portcullis::config::Seconds::parse(s).map(|d| d.0)
}

fn read_password(from_stdin: bool) -> Result<(String, bool), Failure> {
    if !from_stdin {
        return Ok((portcullis::tokens::secrets::random_string(15), true));
    }
    // At a terminal: ask, without echo, twice; otherwise read a pipe to its end.
    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        let ask = |prompt: &str| {
            rpassword::prompt_password(prompt).map_err(|e| Failure(format!("reading the password: {e}")))
        };
        let first = ask("Password: ")?;
        if first.is_empty() {
            return Err(Failure("no password given".into()));
        }
        if ask("Password (again): ")? != first {
            return Err(Failure("the two passwords differ; nothing was changed".into()));
        }
        return Ok((first, false));
    }
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .map_err(|e| Failure(format!("reading the password from standard input: {e}")))?;
    let password = s.strip_suffix('\n').map(|p| p.strip_suffix('\r').unwrap_or(p)).unwrap_or(&s).to_string();
    if password.is_empty() {
        return Err(Failure("no password on standard input".into()));
    }
    Ok((password, false))
}

async fn user(db: &Db, cmd: UserCmd) -> Result<(), Failure> {
    let hasher = Hasher::default();
    match cmd {
        UserCmd::Add { username, password_stdin, name, email, groups, admin: is_admin } => {
            let groups = admin::parse_groups(&groups)?;
            let (password, generated) = read_password(password_stdin)?;
            let profile = admin::Profile { display_name: name.as_deref(), email: email.as_deref(), groups, is_admin };
            admin::add_person(db, &hasher, &username, &password, &profile).await?;
            println!("added user {username}{}", if is_admin { " (admin)" } else { "" });
            if generated {
                println!("password (shown once): {password}");
            }
        }
        UserCmd::List => {
            println!("{:<24} {:<9} CREATED", "USERNAME", "STATUS");
            for u in store::users::list(db).await? {
                let status = if u.disabled { "disabled" } else { "active" };
                println!("{:<24} {:<9} {}", u.username, status, date(u.created_at));
            }
        }
        UserCmd::Disable { username } => {
            admin::set_disabled(db, &username, true).await?;
            println!("disabled user {username}");
        }
        UserCmd::Enable { username } => {
            admin::set_disabled(db, &username, false).await?;
            println!("enabled user {username}");
        }
        UserCmd::Passwd { username, password_stdin } => {
            let (password, generated) = read_password(password_stdin)?;
            admin::set_password(db, &hasher, &username, &password).await?;
            println!("password changed for {username}");
            if generated {
                println!("password (shown once): {password}");
            }
        }
    }
    Ok(())
}

/// What the MCP server must serve (RFC 9728), filled in, and how it points clients there.
fn print_resource_metadata(issuer: &str, r: &store::resources::Resource) {
    let uri = portcullis::oauth::resource::ResourceUri::parse(&r.row.uri).expect("stored canonical");
    let scopes: Vec<&str> = r.scopes.iter().map(|s| s.name.as_str()).collect();
    let doc = serde_json::json!({
        "resource": r.row.uri,
        "authorization_servers": [issuer],
        "scopes_supported": scopes,
        "bearer_methods_supported": ["header"],
    });
    let url = uri.metadata_url();
    println!();
    println!("The MCP server must serve this at {url}:");
    println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    println!();
    println!("and answer requests without a valid token with:");
    println!("  401 Unauthorized");
    println!("  WWW-Authenticate: Bearer resource_metadata=\"{url}\"");
    println!("It checks tokens against {issuer}/jwks.json (iss {issuer}, aud {}), or at /introspect.", r.row.uri);
}

async fn resource(db: &Db, settings_issuer: &str, cmd: ResourceCmd) -> Result<(), Failure> {
    match cmd {
        ResourceCmd::Add(a) => {
            let mut scopes = Vec::new();
            for s in &a.scopes {
                let (name, description) = admin::parse_scope_arg(s)?;
                scopes.push((name, description));
            }
            for d in &a.default_scopes {
                if !scopes.iter().any(|(n, _)| n == d) {
                    return Err(Failure(format!("--default-scope {d:?} is not one of the --scope names")));
                }
            }
            let all_default = a.default_scopes.is_empty();
            let spec = ResourceSpec {
                uri: a.uri,
                name: a.name,
                scopes: scopes
                    .into_iter()
                    .map(|(n, d)| {
                        let def = all_default || a.default_scopes.contains(&n);
                        (n, d, def)
                    })
                    .collect(),
                token_lifetime: a.token_lifetime,
                allowed_groups: a.allowed_groups,
                ..Default::default()
            };
            if a.introspection {
                // Validate before writing so a bad resource leaves no half-registered state.
                admin::validate_resource(&spec)?;
            }
            let r = admin::add_resource(db, &spec).await?;
            println!("registered resource {} ({})", r.row.uri, r.row.name);
            print_resource_metadata(settings_issuer, &r);
            if a.introspection {
                let (id, secret) = admin::issue_introspection_credentials(db, &r.row.uri).await?;
                print_introspection(&id, &secret);
            }
        }
        ResourceCmd::List => {
            for r in store::resources::list(db).await? {
                let lifetime = r.row.token_lifetime.map(|s| format!("{s}s")).unwrap_or_else(|| "default".into());
                println!("{}  {}  (token lifetime {lifetime})", r.row.uri, r.row.name);
                for s in r.scopes {
                    let default = if s.is_default { " [default]" } else { "" };
                    println!("    {}{default}: {}", s.name, s.description);
                }
            }
        }
        ResourceCmd::Remove { uri } => {
            admin::remove_resource(db, &uri).await?;
            println!("removed resource {uri}");
        }
        ResourceCmd::Introspection { uri } => {
            let (id, secret) = admin::issue_introspection_credentials(db, &uri).await?;
            print_introspection(&id, &secret);
        }
    }
    Ok(())
}

async fn audit(db: &Db, cmd: AuditCmd) -> Result<(), Failure> {
    let AuditCmd::List { event, actor, client, since, limit } = cmd;
    let since = match since {
        Some(s) => Some(store::now() - portcullis::config::Seconds::parse(&s).map_err(Failure)?.as_i64()),
        None => None,
    };
    if !(1..=10_000).contains(&limit) {
        return Err(Failure("--limit must be between 1 and 10000".into()));
    }
    let filter = store::audit::Filter {
        event: event.as_deref(),
        actor: actor.as_deref(),
        client_id: client.as_deref(),
        since,
        before: None,
        limit,
    };
    println!("{:<25} {:<26} {:<16} {:<24} {:<15} DETAILS", "TIME", "EVENT", "ACTOR", "CLIENT", "IP");
    for e in store::audit::search(db, &filter).await? {
        println!(
            "{:<25} {:<26} {:<16} {:<24} {:<15} {}",
            datetime(e.at),
            printable(&e.event),
            printable(&e.actor.unwrap_or_default()),
            printable(&e.client_id.unwrap_or_default()),
            printable(&e.ip.unwrap_or_default()),
            printable(&e.details)
        );
    }
    Ok(())
}

/// Text an attacker chose (a username typed at the login form, a client id) made safe for a
/// terminal: control characters (escape sequences included) are shown escaped, never sent.
fn printable(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect()
}

fn printable_scope(scope: &portcullis::oauth::scope::ScopeSet) -> String {
    if scope.is_empty() { "no scope".into() } else { scope.to_string() }
}

/// A JWK set from a file, for `client add --jwks-file`.
fn read_jwks(path: &std::path::Path) -> Result<serde_json::Value, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure(format!("cannot read --jwks-file {}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| Failure(format!("--jwks-file {} is not JSON: {e}", path.display())))
}

fn print_introspection(id: &str, secret: &str) {
    println!("introspection credentials (HTTP Basic at /introspect; the secret is shown once):");
    println!("  client_id:     {id}");
    println!("  client_secret: {secret}");
}

async fn grant(db: &Db, cmd: GrantCmd) -> Result<(), Failure> {
    match cmd {
        GrantCmd::List { user, client, all } => {
            let list = store::grants::list(db, user.as_deref(), client.as_deref(), all).await?;
            println!("{:<38} {:<16} {:<28} {:<32} {:<11} SCOPE", "ID", "USER", "CLIENT", "RESOURCE", "LAST USED");
            for g in list {
                let last = g.last_used_at.map(date).unwrap_or_else(|| "never".into());
                let client = g.client_name.unwrap_or_else(|| g.client_id.to_string());
                let revoked = if g.revoked_at.is_some() { " (revoked)" } else { "" };
                println!(
                    "{:<38} {:<16} {:<28} {:<32} {:<11} {}{revoked}",
                    g.id, g.username, client, g.resource_uri, last, g.scope
                );
            }
        }
        GrantCmd::Revoke { id } => {
            admin::revoke_grant(db, &id).await?;
            println!("revoked grant {id}");
        }
    }
    Ok(())
}

async fn client(db: &Db, cmd: ClientCmd) -> Result<(), Failure> {
    match cmd {
        ClientCmd::Add(a) => {
            let keys = match (&a.jwks_file, a.jwks_uri) {
                (Some(path), _) => Some(admin::ClientKeys::Jwks(read_jwks(path)?)),
                (None, Some(uri)) => Some(admin::ClientKeys::JwksUri(uri)),
                (None, None) => None,
            };
            let resources = admin::reach_from_flags(&a.resources, &a.scopes, admin::registered_catalogues(db).await?)?;
            let spec = ClientSpec {
                client_id: a.client_id,
                name: a.name,
                redirect_uris: a.redirect_uris,
                confidential: a.confidential,
                secret: None,
                grant_types: a.grant_types,
                keys,
                resources,
                dpop_bound_access_tokens: false,
            };
            let added = admin::add_client(db, &spec).await?;
            println!("client_id: {}", added.client.client_id);
            if let Some(secret) = added.secret {
                println!("client_secret (shown once): {secret}");
            }
            for r in &added.reach {
                println!("may get tokens for {} with scope: {}", r.resource_uri, printable_scope(&r.scope));
            }
        }
        ClientCmd::List { all } => {
            let reach = store::machine_clients::all(db).await?;
            println!("{:<44} {:<18} {:<12} {:<12} NAME", "CLIENT_ID", "ORIGIN", "CREATED", "LAST USED");
            for group in admin::group_clients(store::clients::list(db).await?, !all) {
                let c = &group.newest;
                let last = c.last_used_at.map(date).unwrap_or_else(|| "never".into());
                let id = if group.count > 1 {
                    format!("{} (+{} alike)", c.client_id, group.count - 1)
                } else {
                    c.client_id.to_string()
                };
                let name = c.client_name.clone().unwrap_or_default();
                println!("{:<44} {:<18} {:<12} {:<12} {name}", id, c.kind.as_str(), date(c.created_at), last);
                // A machine client's reach, indented under it.
                for (_, r) in reach.iter().filter(|(id, _)| *id == c.client_id) {
                    println!("    client_credentials: {} ({})", r.resource_uri, printable_scope(&r.scope));
                }
            }
        }
        ClientCmd::Token { label, expires_in } => {
            let token = admin::issue_initial_access_token(db, &label, expires_in).await?;
            println!("initial access token (send as `Authorization: Bearer` to /register; shown once):");
            println!("  {token}");
        }
        ClientCmd::Remove { client_id } => {
            admin::remove_client(db, &client_id).await?;
            println!("removed client {client_id}");
        }
    }
    Ok(())
}

async fn keys_cmd(settings: &Settings, db: &Db, cmd: KeysCmd) -> Result<(), Failure> {
    let ks = key_settings(settings);
    match cmd {
        KeysCmd::List => {
            let now = store::now();
            let list = keys::status(db, &ks, now).await?;
            if list.is_empty() {
                println!("no signing keys yet: `portcullis serve` creates the first one");
            }
            for (row, state) in list {
                let state = match state {
                    keys::KeyState::Pending => {
                        format!("pending (signs from {})", datetime(row.activates_at))
                    }
                    keys::KeyState::Active => "active (signing)".into(),
                    keys::KeyState::Retiring { until } => {
                        format!("retiring (published until {})", datetime(until))
                    }
                    keys::KeyState::Expired => "expired (not published)".into(),
                };
                let enc =
                    if row.encrypted { "encrypted at rest" } else { "stored unencrypted (set key_encryption_secret)" };
                println!("{}  {}  {enc}  created {}  {state}", row.kid, row.alg, datetime(row.created_at));
            }
        }
        KeysCmd::Rotate => {
            let row = keys::rotate(db, &ks, store::now()).await?;
            store::audit::record(
                db,
                &store::audit::Event {
                    event: "key_rotated",
                    actor: Some("cli"),
                    details: serde_json::json!({ "kid": row.kid, "activates_at": row.activates_at }),
                    ..Default::default()
                },
                store::now(),
            )
            .await?;
            println!("added key {} ({}): published now, signs from {}", row.kid, row.alg, datetime(row.activates_at));
        }
    }
    Ok(())
}

fn date(t: i64) -> String {
    datetime(t).chars().take(10).collect()
}

fn datetime(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| d.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| t.to_string())
}
