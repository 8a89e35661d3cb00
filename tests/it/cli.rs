//! The real `portcullis` binary: every subcommand exits 0 on success and, on bad input, non-zero
//! with one clear `error: ...` line and nothing written. Each run gets a clean environment (only
//! the `PORTCULLIS_*` variables a test sets) and an empty working directory, so no
//! `portcullis.toml` is picked up.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{
    Binary, Engine, OAuthParams, PASSWORD, ServeOutput, TestDb, approve_consent, browser, db_tests, free_port, hidden,
    jwt_parts, location, pkce, query_of, sign_in, spawn_binary,
};

db_tests!(
    migrate_succeeds_and_is_idempotent,
    user_add_then_list,
    duplicate_user_add_fails_and_writes_nothing,
    short_password_is_refused,
    user_disable_shows_in_list,
    user_commands_on_unknown_user_fail,
    resource_add_stores_the_canonical_uri,
    resource_add_refuses_bad_uris_and_writes_nothing,
    resource_add_accepts_loopback_http,
    resource_scope_without_equals_is_refused,
    client_add_confidential_prints_secret_once,
    client_remove_unknown_fails,
    keys_list_before_serve_has_no_keys,
    keys_rotate_adds_a_published_key,
    serve_bootstraps_admin_once_and_serves,
    serve_on_a_busy_port_fails_clearly,
    served_binary_issues_tokens_signed_by_a_published_key,
    database_url_variable_is_honoured,
    user_add_refuses_an_invalid_username,
    client_add_public_prints_no_secret,
    client_add_refuses_a_bad_redirect_uri,
    resource_remove_unknown_fails,
    client_add_machine_clients_with_keys_or_a_secret,
    client_add_refuses_bad_machine_clients_and_writes_nothing,
);

// ---- migrate ----

async fn migrate_succeeds_and_is_idempotent(engine: Engine) {
    let cli = Cli::new(engine).await;
    cli.run(&["migrate"]).success();
    cli.run(&["migrate"]).success();
}

// ---- users ----

async fn user_add_then_list(engine: Engine) {
    let cli = Cli::new(engine).await;
    let out = cli.run_stdin(&["user", "add", "alice", "--password-stdin"], "correct horse battery\n").success();
    assert!(out.stdout.contains("alice"), "{out:?}");
    assert!(!out.stdout.contains("correct horse battery"), "the password is echoed: {out:?}");
    let list = cli.run(&["user", "list"]).success();
    assert_eq!(user_status(&list.stdout, "alice").as_deref(), Some("active"), "{}", list.stdout);
}

async fn duplicate_user_add_fails_and_writes_nothing(engine: Engine) {
    let cli = Cli::new(engine).await;
    cli.run_stdin(&["user", "add", "alice", "--password-stdin"], "correct horse battery\n").success();
    let before = cli.run(&["user", "list"]).success().stdout;

    let out = cli.run_stdin(&["user", "add", "alice", "--password-stdin"], "another long password\n").failure();
    let line = out.one_error_line();
    assert!(line.contains("alice") && line.contains("already exists"), "{line}");
    assert_eq!(cli.run(&["user", "list"]).success().stdout, before);
}

async fn short_password_is_refused(engine: Engine) {
    let cli = Cli::new(engine).await;
    let out = cli.run_stdin(&["user", "add", "bob", "--password-stdin"], "short\n").failure();
    assert!(out.one_error_line().contains("password"), "{out:?}");
    let out = cli.run_stdin(&["user", "add", "bob", "--password-stdin"], "").failure();
    assert!(out.one_error_line().contains("password"), "{out:?}");
    assert_eq!(user_status(&cli.run(&["user", "list"]).success().stdout, "bob"), None);
}

async fn user_disable_shows_in_list(engine: Engine) {
    let cli = Cli::new(engine).await;
    cli.run_stdin(&["user", "add", "alice", "--password-stdin"], "correct horse battery\n").success();
    cli.run_stdin(&["user", "add", "bob", "--password-stdin"], "correct horse battery\n").success();
    cli.run(&["user", "disable", "alice"]).success();
    let list = cli.run(&["user", "list"]).success().stdout;
    assert_eq!(user_status(&list, "alice").as_deref(), Some("disabled"), "{list}");
    assert_eq!(user_status(&list, "bob").as_deref(), Some("active"), "{list}");
}

async fn user_commands_on_unknown_user_fail(engine: Engine) {
    let cli = Cli::new(engine).await;
    let out = cli.run_stdin(&["user", "passwd", "nobody", "--password-stdin"], "correct horse battery\n").failure();
    let line = out.one_error_line();
    assert!(line.contains("nobody") && line.contains("does not exist"), "{line}");
    let out = cli.run(&["user", "disable", "nobody"]).failure();
    assert!(out.one_error_line().contains("nobody"), "{out:?}");
    assert_eq!(user_status(&cli.run(&["user", "list"]).success().stdout, "nobody"), None);
}

// ---- resources ----

async fn resource_add_stores_the_canonical_uri(engine: Engine) {
    let cli = Cli::new(engine).await;
    cli.run(&["resource", "add", "https://MCP.Example.com:443/", "--name", "X", "--scope", "mcp:tools=Use tools"])
        .success();
    let list = cli.run(&["resource", "list"]).success().stdout;
    let uris = resource_uris(&list);
    assert_eq!(uris, ["https://mcp.example.com"], "{list}");
    assert!(list.contains("mcp:tools") && list.contains("Use tools"), "{list}");

    // The same server spelled differently is the same resource.
    let out = cli.run(&["resource", "add", "https://mcp.example.com", "--name", "Y", "--scope", "a=b"]).failure();
    assert!(out.one_error_line().contains("already registered"), "{out:?}");
}

async fn resource_add_refuses_bad_uris_and_writes_nothing(engine: Engine) {
    let cli = Cli::new(engine).await;
    cli.run(&["resource", "add", "https://mcp.example.com/mcp", "--name", "Kept", "--scope", "mcp:tools=Use tools"])
        .success();
    let before = cli.run(&["resource", "list"]).success().stdout;
    for (uri, says) in [
        ("/mcp", "absolute"),
        ("mcp.example.com/mcp", "absolute"),
        ("https://mcp.example.com/mcp#frag", "fragment"),
        ("http://example.com/mcp", "https"),
        ("https://mcp.example.com/mcp?x=1", "query"),
    ] {
        let out = cli.run(&["resource", "add", uri, "--name", "Bad", "--scope", "mcp:tools=Use tools"]).failure();
        let line = out.one_error_line();
        assert!(line.contains(uri) && line.contains(says), "{uri}: {line}");
    }
    assert_eq!(cli.run(&["resource", "list"]).success().stdout, before);
}

async fn resource_add_accepts_loopback_http(engine: Engine) {
    let cli = Cli::new(engine).await;
    cli.run(&["resource", "add", "http://localhost:3000/mcp", "--name", "Local", "--scope", "mcp:tools=Use tools"])
        .success();
    let list = cli.run(&["resource", "list"]).success().stdout;
    assert_eq!(resource_uris(&list), ["http://localhost:3000/mcp"], "{list}");
}

async fn resource_scope_without_equals_is_refused(engine: Engine) {
    let cli = Cli::new(engine).await;
    let out =
        cli.run(&["resource", "add", "https://mcp.example.com/mcp", "--name", "X", "--scope", "mcp:tools"]).failure();
    let line = out.one_error_line();
    assert!(line.contains("mcp:tools") && line.contains("NAME=DESCRIPTION"), "{line}");
    assert_eq!(resource_uris(&cli.run(&["resource", "list"]).success().stdout), Vec::<String>::new());
}

// ---- clients ----

async fn client_add_confidential_prints_secret_once(engine: Engine) {
    let cli = Cli::new(engine).await;
    let out = cli
        .run(&["client", "add", "--name", "X", "--redirect-uri", "https://app.example/cb", "--confidential"])
        .success();
    let client_id = value_after(&out.stdout, "client_id:").unwrap_or_else(|| panic!("no client_id in {out:?}"));
    let secret =
        out.stdout.lines().find(|l| l.starts_with("client_secret")).and_then(|l| l.rsplit(' ').next()).expect("secret");
    assert!(secret.len() >= 32 && secret.chars().all(is_unreserved), "{secret}");
    assert!(client_id.chars().all(is_unreserved) && !client_id.starts_with("https"), "{client_id}");

    let list = cli.run(&["client", "list"]).success().stdout;
    let row = list.lines().find(|l| l.starts_with(&client_id)).unwrap_or_else(|| panic!("{client_id} not in {list}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[1], "static", "{row}");
    assert_eq!(cols.last(), Some(&"X"), "{row}");
    assert!(!list.contains(secret), "the secret is shown again by `client list`");
}

async fn client_remove_unknown_fails(engine: Engine) {
    let cli = Cli::new(engine).await;
    let out = cli.run(&["client", "remove", "no-such-client"]).failure();
    let line = out.one_error_line();
    assert!(line.contains("no-such-client") && line.contains("does not exist"), "{line}");
}

// ---- keys ----

async fn keys_list_before_serve_has_no_keys(engine: Engine) {
    let cli = Cli::new(engine).await;
    let out = cli.run(&["keys", "list"]).success();
    assert!(out.stdout.contains("no signing keys"), "{out:?}");
    assert!(!out.stdout.contains("ES256"), "{out:?}");
}

async fn keys_rotate_adds_a_published_key(engine: Engine) {
    let cli = Cli::new(engine).await;
    let out = cli.run(&["keys", "rotate"]).success();
    assert!(out.stdout.contains("added key"), "{out:?}");
    let list = cli.run(&["keys", "list"]).success().stdout;
    let keys: Vec<&str> = list.lines().filter(|l| l.contains("ES256")).collect();
    assert_eq!(keys.len(), 1, "{list}");
    assert!(keys[0].contains("pending") || keys[0].contains("active"), "{list}");
}

// ---- serve ----

async fn serve_bootstraps_admin_once_and_serves(engine: Engine) {
    let cli = Cli::new(engine).await;

    let mut first = cli.serve();
    let base = first.base.clone();
    first.wait_ready().await;
    let http = browser();
    let res = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let jwks: Value = http.get(format!("{base}/jwks.json")).send().await.unwrap().json().await.unwrap();
    let keys = jwks["keys"].as_array().expect("keys");
    assert!(!keys.is_empty() && keys[0]["kid"].is_string(), "{jwks}");
    let metadata: Value =
        http.get(format!("{base}/.well-known/oauth-authorization-server")).send().await.unwrap().json().await.unwrap();
    assert_eq!(metadata["issuer"], base.as_str());

    let stdout = first.stop();
    let password = admin_password(&stdout).unwrap_or_else(|| panic!("no admin password in:\n{stdout}"));
    assert_eq!(stdout.matches(password.as_str()).count(), 1, "{stdout}");

    // A second start on the same database neither creates nor prints a password, and the first
    // one signs in.
    let mut second = cli.serve();
    second.wait_ready().await;
    let page = http.get(format!("{}/login", second.base)).send().await.unwrap().text().await.unwrap();
    let res = http
        .post(format!("{}/login", second.base))
        .form(&[
            ("username", "admin"),
            ("password", password.as_str()),
            ("csrf_token", &hidden(&page, "csrf_token")),
            ("next", ""),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "the printed admin password does not sign in");
    let stdout = second.stop();
    assert!(admin_password(&stdout).is_none(), "second start printed a password:\n{stdout}");
    let users = cli.run(&["user", "list"]).success().stdout;
    assert_eq!(user_status(&users, "admin").as_deref(), Some("active"), "{users}");
    let keys = cli.run(&["keys", "list"]).success().stdout;
    assert_eq!(keys.lines().filter(|l| l.contains("active (signing)")).count(), 1, "{keys}");
}

async fn serve_on_a_busy_port_fails_clearly(engine: Engine) {
    let cli = Cli::new(engine).await;
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let bind = busy.local_addr().unwrap().to_string();
    let out = run_in(
        cli.dir.path(),
        &["serve"],
        &[("PORTCULLIS_DATABASE_URL", &cli.db.url), ("PORTCULLIS_BIND", &bind)],
        None,
    )
    .failure();
    let line = out.one_error_line();
    assert!(line.contains("cannot listen") && line.contains(&bind) && line.contains("PORTCULLIS_BIND"), "{line}");
    // Bound first: nothing was set up or printed before the failure.
    assert!(!out.stdout.contains("password"), "{out:?}");
    let db = cli.db.connect().await;
    assert_eq!(portcullis::store::users::count(&db).await.unwrap(), 0, "no admin was created");
}

async fn served_binary_issues_tokens_signed_by_a_published_key(engine: Engine) {
    let cli = Cli::new(engine).await;
    cli.prepare_alice_and_resource();
    let mut server = cli.serve();
    server.wait_ready().await;
    let (status, tokens) = first_token(&server.base).await;
    assert_eq!(status, 200, "{tokens}");
    let (header, claims) = jwt_parts(tokens["access_token"].as_str().expect("access_token"));
    assert_eq!(claims["aud"], "https://mcp.example.com/mcp");
    let jwks: Value = browser().get(format!("{}/jwks.json", server.base)).send().await.unwrap().json().await.unwrap();
    let kids: Vec<&Value> = jwks["keys"].as_array().unwrap().iter().map(|k| &k["kid"]).collect();
    assert!(kids.contains(&&header["kid"]), "{} not in {jwks}", header["kid"]);
}

/// An operator who runs `keys rotate` before the first `serve` (e.g. to check the command) must
/// still get a server that can sign tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_before_first_serve_still_signs() {
    let cli = Cli::new(Engine::Sqlite).await;
    cli.prepare_alice_and_resource();
    cli.run(&["keys", "rotate"]).success();
    let mut server = cli.serve();
    server.wait_ready().await;
    let (status, tokens) = first_token(&server.base).await;
    assert_eq!(status, 200, "{tokens}");
}

async fn database_url_variable_is_honoured(engine: Engine) {
    let cli = Cli::new(engine).await;
    let url = cli.db.url.clone();
    run_in(
        cli.dir.path(),
        &["user", "add", "carol", "--password-stdin"],
        &[("DATABASE_URL", &url)],
        Some("correct horse battery\n"),
    )
    .success();
    let list = cli.run(&["user", "list"]).success().stdout;
    assert_eq!(user_status(&list, "carol").as_deref(), Some("active"), "{list}");
    // PORTCULLIS_DATABASE_URL wins over DATABASE_URL.
    let out = run_in(
        cli.dir.path(),
        &["user", "list"],
        &[("DATABASE_URL", "postgres://postgres@127.0.0.1:1/nope"), ("PORTCULLIS_DATABASE_URL", &url)],
        None,
    )
    .success();
    assert!(out.stdout.contains("carol"), "{out:?}");
}

async fn user_add_refuses_an_invalid_username(engine: Engine) {
    let cli = Cli::new(engine).await;
    for name in ["bad name", "", "x/y", "é"] {
        let out = cli.run_stdin(&["user", "add", name, "--password-stdin"], "correct horse battery\n").failure();
        assert!(out.one_error_line().contains("username"), "{name:?}: {out:?}");
    }
    assert_eq!(cli.run(&["user", "list"]).success().stdout.lines().count(), 1, "only the header");
}

async fn client_add_public_prints_no_secret(engine: Engine) {
    let cli = Cli::new(engine).await;
    let out = cli
        .run(&["client", "add", "--name", "Pub", "--redirect-uri", "http://127.0.0.1/cb", "--client-id", "my-app"])
        .success();
    assert_eq!(value_after(&out.stdout, "client_id:").as_deref(), Some("my-app"), "{out:?}");
    assert!(!out.stdout.contains("secret"), "{out:?}");
    let out = cli
        .run(&["client", "add", "--name", "Again", "--redirect-uri", "http://127.0.0.1/cb", "--client-id", "my-app"])
        .failure();
    assert!(out.one_error_line().contains("already exists"), "{out:?}");
}

async fn client_add_refuses_a_bad_redirect_uri(engine: Engine) {
    let cli = Cli::new(engine).await;
    for uri in ["javascript:alert(1)", "http://app.example/cb", "https://app.example/cb#x"] {
        let out = cli.run(&["client", "add", "--name", "X", "--redirect-uri", uri]).failure();
        assert!(out.one_error_line().contains("redirect URI"), "{uri}: {out:?}");
    }
    let out = cli
        .run(&[
            "client",
            "add",
            "--name",
            "X",
            "--redirect-uri",
            "https://a.example/cb",
            "--client-id",
            "https://a.example/id",
        ])
        .failure();
    assert!(out.one_error_line().contains("client id"), "{out:?}");
    assert_eq!(cli.run(&["client", "list"]).success().stdout.lines().count(), 1, "only the header");
}

async fn resource_remove_unknown_fails(engine: Engine) {
    let cli = Cli::new(engine).await;
    let out = cli.run(&["resource", "remove", "https://nowhere.example/mcp"]).failure();
    let line = out.one_error_line();
    assert!(line.contains("https://nowhere.example/mcp") && line.contains("does not exist"), "{line}");
}

/// The public half of a fresh P-256 key, as a JWK set.
fn public_jwks() -> Value {
    let pair = josekit::jwk::alg::ec::EcKeyPair::generate(josekit::jwk::alg::ec::EcCurve::P256).unwrap();
    json!({ "keys": [serde_json::from_str::<Value>(&pair.to_jwk_public_key().to_string()).unwrap()] })
}

async fn client_add_machine_clients_with_keys_or_a_secret(engine: Engine) {
    let cli = Cli::new(engine).await;
    cli.prepare_alice_and_resource();
    cli.run(&["resource", "add", "https://other.example.com/mcp", "--name", "Other", "--scope", "o:read=Read"])
        .success();
    std::fs::write(cli.dir.path().join("keys.json"), public_jwks().to_string()).unwrap();
    let out = cli
        .run(&[
            "client",
            "add",
            "--name",
            "Report bot",
            "--client-id",
            "report-bot",
            "--grant",
            "client_credentials",
            "--jwks-file",
            "keys.json",
            "--resource",
            "https://mcp.example.com/mcp",
            "--scope",
            "mcp:tools",
        ])
        .success();
    assert_eq!(value_after(&out.stdout, "client_id:").as_deref(), Some("report-bot"), "{out:?}");
    assert!(!out.stdout.contains("secret"), "keys, no secret: {out:?}");
    assert!(out.stdout.contains("may get tokens for https://mcp.example.com/mcp with scope: mcp:tools"), "{out:?}");

    // A secret instead of keys, two MCP servers: each --scope goes to the server that has it.
    let out = cli
        .run(&[
            "client",
            "add",
            "--name",
            "Sync",
            "--client-id",
            "sync",
            "--grant",
            "client_credentials",
            "--confidential",
            "--resource",
            "https://mcp.example.com/mcp",
            "--resource",
            "https://other.example.com/mcp",
            "--scope",
            "mcp:tools",
            "--scope",
            "o:read",
        ])
        .success();
    let secret = value_after(&out.stdout, "client_secret (shown once):").unwrap_or_else(|| panic!("{out:?}"));
    let list = cli.run(&["client", "list"]).success().stdout;
    for line in [
        "    client_credentials: https://mcp.example.com/mcp (mcp:tools)",
        "    client_credentials: https://other.example.com/mcp (o:read)",
    ] {
        assert!(list.lines().any(|l| l == line), "{line:?} not in\n{list}");
    }

    // The served binary issues it a token for the server it names.
    let mut server = cli.serve();
    server.wait_ready().await;
    let res = browser()
        .post(format!("{}/token", server.base))
        .basic_auth("sync", Some(&secret))
        .form(&[("grant_type", "client_credentials"), ("resource", "https://other.example.com/mcp")])
        .send()
        .await
        .unwrap();
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    let (_, claims) = jwt_parts(body["access_token"].as_str().unwrap());
    assert_eq!((claims["sub"].as_str(), claims["aud"].as_str()), (Some("sync"), Some("https://other.example.com/mcp")));
    assert_eq!(body["scope"], "o:read");
}

async fn client_add_refuses_bad_machine_clients_and_writes_nothing(engine: Engine) {
    let cli = Cli::new(engine).await;
    cli.prepare_alice_and_resource();
    let dir = cli.dir.path();
    std::fs::write(dir.join("keys.json"), public_jwks().to_string()).unwrap();
    let pair = josekit::jwk::alg::ec::EcKeyPair::generate(josekit::jwk::alg::ec::EcCurve::P256).unwrap();
    std::fs::write(dir.join("private.json"), format!("{{\"keys\": [{}]}}", pair.to_jwk_private_key())).unwrap();
    std::fs::write(dir.join("broken.json"), "{\"keys\": [").unwrap();
    let before = cli.run(&["client", "list"]).success().stdout;
    let machine = ["client", "add", "--name", "M", "--grant", "client_credentials"];
    let mcp = ["--resource", "https://mcp.example.com/mcp", "--scope", "mcp:tools"];
    let cases: Vec<(Vec<&str>, &str)> = vec![
        ([&machine[..], &mcp[..]].concat(), "must authenticate"),
        ([&machine[..], &["--confidential", "--resource", "https://mcp.example.com/mcp"]].concat(), "--scope"),
        (
            [
                &machine[..],
                &[
                    "--confidential",
                    "--resource",
                    "https://mcp.example.com/mcp",
                    "--scope",
                    "mcp:tools",
                    "--scope",
                    "mcp:delete",
                ],
            ]
            .concat(),
            "\"mcp:delete\"",
        ),
        (
            [
                &machine[..],
                &["--confidential", "--resource", "https://unknown.example.com/mcp", "--scope", "mcp:tools"],
            ]
            .concat(),
            "not registered",
        ),
        ([&machine[..], &["--confidential"]].concat(), "at least one MCP server"),
        ([&machine[..], &["--jwks-file", "private.json"], &mcp[..]].concat(), "private key material"),
        ([&machine[..], &["--jwks-file", "missing.json"], &mcp[..]].concat(), "cannot read --jwks-file"),
        ([&machine[..], &["--jwks-file", "broken.json"], &mcp[..]].concat(), "not JSON"),
        ([&machine[..], &["--jwks-uri", "http://keys.example/jwks.json"], &mcp[..]].concat(), "jwks_uri"),
        ([&machine[..], &["--confidential", "--jwks-file", "keys.json"], &mcp[..]].concat(), "not both"),
        (
            [&machine[..], &["--confidential", "--client-id", "0190b7a2-1c1e-7c3e-8f00-000000000001"], &mcp[..]]
                .concat(),
            "UUID",
        ),
        (
            [&machine[..], &["--confidential", "--redirect-uri", "https://app.example/cb"], &mcp[..]].concat(),
            "authorization_code",
        ),
        ([&machine[..], &["--confidential", "--grant", "refresh_token"], &mcp[..]].concat(), "refresh_token"),
        (vec!["client", "add", "--name", "M", "--grant", "password", "--confidential"], "unknown grant type"),
        (
            vec![
                "client",
                "add",
                "--name",
                "M",
                "--redirect-uri",
                "https://app.example/cb",
                "--confidential",
                "--resource",
                "https://mcp.example.com/mcp",
                "--scope",
                "mcp:tools",
            ],
            "client_credentials",
        ),
        (vec!["client", "add", "--name", "M", "--confidential"], "redirect URI"),
        (
            vec!["client", "add", "--name", "M", "--scope", "mcp:tools", "--redirect-uri", "https://app.example/cb"],
            "--resource",
        ),
    ];
    for (args, says) in &cases {
        let out = cli.run(args).failure();
        let line = out.one_error_line();
        assert!(line.contains(says), "{args:?}: expected {says:?} in {line}");
    }
    assert_eq!(cli.run(&["client", "list"]).success().stdout, before, "nothing written");
}

// ---- no database needed ----

#[test]
fn config_check_redacts_the_database_password() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_in(
        dir.path(),
        &["config", "check"],
        &[("PORTCULLIS_DATABASE_URL", "postgres://u:hunter2@127.0.0.1:1/x")],
        None,
    )
    .success();
    assert!(!out.stdout.contains("hunter2") && !out.stderr.contains("hunter2"), "{out:?}");
    let db_line = out.stdout.lines().find(|l| l.starts_with("database_url")).unwrap_or_else(|| panic!("{out:?}"));
    assert!(db_line.contains("127.0.0.1:1/x") && db_line.contains("redacted"), "{db_line}");
    assert!(out.stdout.contains("issuer = \"http://127.0.0.1:8080\""), "{out:?}");
}

#[test]
fn commands_refuse_a_missing_database_instead_of_creating_one() {
    let dir = tempfile::tempdir().unwrap();
    let out =
        run_in(dir.path(), &["resource", "add", "https://mcp.example.com/mcp", "--name", "X"], &[], None).failure();
    let e = out.one_error_line();
    assert!(e.contains("no database at") && e.contains("portcullis migrate"), "{e}");
    assert!(!dir.path().join("data").join("portcullis.db").exists(), "nothing was created");
    run_in(dir.path(), &["migrate"], &[], None).success();
    let out = run_in(dir.path(), &["user", "list"], &[], None).success();
    assert!(out.stderr.contains("database: sqlite://data/portcullis.db"), "every command says which database: {out:?}");
}

#[test]
fn config_check_redacts_the_key_encryption_secret() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_in(
        dir.path(),
        &["config", "check"],
        &[("PORTCULLIS_KEY_ENCRYPTION_SECRET", "a-very-long-secret-value")],
        None,
    )
    .success();
    assert!(!out.stdout.contains("a-very-long-secret-value"), "{out:?}");
}

#[test]
fn malformed_config_value_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for (var, key) in [
        ("PORTCULLIS_ACCESS_TOKEN_LIFETIME", "access_token_lifetime"),
        ("PORTCULLIS_BIND", "bind"),
        ("PORTCULLIS_ISSUER", "issuer"),
        ("PORTCULLIS_DATABASE_URL", "database_url"),
    ] {
        let out = run_in(dir.path(), &["config", "check"], &[(var, "abc")], None).failure();
        let line = out.one_error_line().to_ascii_lowercase();
        assert!(line.contains(key), "{var}: {out:?}");
    }
}

#[test]
fn missing_config_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_in(dir.path(), &["--config", "nope.toml", "config", "check"], &[], None).failure();
    assert!(out.one_error_line().contains("nope.toml"), "{out:?}");
}

#[test]
fn unreachable_database_fails_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_in(
        dir.path(),
        &["user", "list"],
        &[("PORTCULLIS_DATABASE_URL", "postgres://postgres@127.0.0.1:1/nope")],
        None,
    )
    .failure();
    let line = out.one_error_line();
    assert!(line.contains("cannot open database") && line.contains("127.0.0.1:1"), "{line}");

    let out = run_in(
        dir.path(),
        &["serve"],
        &[
            ("PORTCULLIS_DATABASE_URL", "postgres://postgres:hunter2@127.0.0.1:1/nope"),
            ("PORTCULLIS_BIND", "127.0.0.1:0"),
        ],
        None,
    )
    .failure();
    let line = out.one_error_line();
    assert!(line.contains("database"), "{line}");
    assert!(!out.stderr.contains("hunter2") && !out.stdout.contains("hunter2"), "{out:?}");
}

#[test]
fn config_file_in_the_working_directory_is_used_and_redacted() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("portcullis.toml"), CONFIG_WITH_CLIENT).unwrap();
    let out = run_in(dir.path(), &["config", "check"], &[], None).success();
    assert!(out.stdout.contains("issuer = \"https://auth.example.com\""), "{out:?}");
    assert!(out.stdout.contains("static-one"), "{out:?}");
    assert!(!out.stdout.contains("supersecret"), "{out:?}");
    // The environment overrides the file.
    let out =
        run_in(dir.path(), &["config", "check"], &[("PORTCULLIS_ISSUER", "https://other.example.com")], None).success();
    assert!(out.stdout.contains("issuer = \"https://other.example.com\""), "{out:?}");
}

/// `config check` prints "the effective config"; an operator should be able to save and reuse it.
#[test]
fn config_check_output_is_a_loadable_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.toml"), CONFIG_WITH_RESOURCE).unwrap();
    let first = run_in(dir.path(), &["--config", "in.toml", "config", "check"], &[], None).success();
    std::fs::write(dir.path().join("out.toml"), &first.stdout).unwrap();
    let second = run_in(dir.path(), &["--config", "out.toml", "config", "check"], &[], None).success();
    assert_eq!(second.stdout, first.stdout);
}

/// A machine client in the file (keys as a table): checked, printed, and loadable again.
#[test]
fn config_check_accepts_a_machine_client_and_prints_it_loadably() {
    let dir = tempfile::tempdir().unwrap();
    let config = CONFIG_WITH_MACHINE_CLIENT.replace("JWKS", &public_jwks().to_string());
    std::fs::write(dir.path().join("in.toml"), config).unwrap();
    let first = run_in(dir.path(), &["--config", "in.toml", "config", "check"], &[], None).success();
    assert!(first.stdout.contains("client_credentials"), "{first:?}");
    std::fs::write(dir.path().join("out.toml"), &first.stdout).unwrap();
    let second = run_in(dir.path(), &["--config", "out.toml", "config", "check"], &[], None).success();
    assert_eq!(second.stdout, first.stdout);
}

/// `config check` must refuse what `serve` would refuse at start-up.
#[test]
fn config_check_refuses_invalid_client_entries() {
    let dir = tempfile::tempdir().unwrap();
    let mut accepted = Vec::new();
    let machine =
        |from: &str, to: &str| CONFIG_WITH_MACHINE_CLIENT.replace("JWKS", &public_jwks().to_string()).replace(from, to);
    let bad_machine = [
        machine("scopes = [\"mcp:tools\"]", "scopes = [\"mcp:delete\"]"),
        machine("scopes = [\"mcp:tools\"]", "scopes = []"),
        machine("grant_types = [\"client_credentials\"]", "grant_types = [\"client_credentials\", \"implicit\"]"),
        machine("jwks = '", "redirect_uris = [\"https://app.example/cb\"]\njwks = '"),
        machine("jwks = '", "jwks_uri = \"https://keys.example/jwks.json\"\njwks = '"),
        machine("client_id = \"nightly-sync\"", "client_id = \"0190b7a2-1c1e-7c3e-8f00-000000000001\""),
    ];
    let entries =
        [BAD_CLIENT_REDIRECT, BAD_CLIENT_SECRET, BAD_RESOURCE_SCOPE].into_iter().map(str::to_string).chain(bad_machine);
    for (i, entry) in entries.enumerate() {
        let file = format!("bad{i}.toml");
        std::fs::write(dir.path().join(&file), &entry).unwrap();
        if run_in(dir.path(), &["--config", &file, "config", "check"], &[], None).code == Some(0) {
            accepted.push(entry.clone());
        }
    }
    assert!(accepted.is_empty(), "config check accepted:\n{}", accepted.join("\n"));
}

// ---- helpers ----

/// A fresh database and an empty working directory to run the binary in.
pub(crate) struct Cli {
    pub(crate) db: TestDb,
    pub(crate) dir: tempfile::TempDir,
}

impl Cli {
    /// A migrated database (as `serve` or `migrate` leaves it: the other commands refuse a missing one).
    pub(crate) async fn new(engine: Engine) -> Cli {
        let db = TestDb::new(engine).await;
        db.connect().await;
        Cli { db, dir: tempfile::tempdir().expect("temp dir") }
    }

    pub(crate) fn run(&self, args: &[&str]) -> Output {
        run_in(self.dir.path(), args, &[("PORTCULLIS_DATABASE_URL", &self.db.url)], None)
    }

    pub(crate) fn run_stdin(&self, args: &[&str], stdin: &str) -> Output {
        run_in(self.dir.path(), args, &[("PORTCULLIS_DATABASE_URL", &self.db.url)], Some(stdin))
    }

    /// alice and https://mcp.example.com/mcp, through the CLI.
    fn prepare_alice_and_resource(&self) {
        self.run_stdin(&["user", "add", "alice", "--password-stdin"], &format!("{PASSWORD}\n")).success();
        self.run(&[
            "resource",
            "add",
            "https://mcp.example.com/mcp",
            "--name",
            "Example",
            "--scope",
            "mcp:tools=Use tools",
        ])
        .success();
    }

    /// `portcullis serve` on a free loopback port; killed when dropped.
    fn serve(&self) -> Binary {
        Binary::start(self.dir.path(), free_port(), &[("PORTCULLIS_DATABASE_URL", &self.db.url)], ServeOutput::Separate)
    }
}

#[derive(Debug)]
pub(crate) struct Output {
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Output {
    pub(crate) fn success(self) -> Output {
        assert_eq!(self.code, Some(0), "expected success: {self:?}");
        self
    }

    pub(crate) fn failure(self) -> Output {
        assert!(self.code.is_some_and(|c| c != 0), "expected a non-zero exit: {self:?}");
        self
    }

    /// The failure's message: exactly one `error: ...` line on stderr (logs aside).
    pub(crate) fn one_error_line(&self) -> String {
        let errors: Vec<&str> = self.stderr.lines().filter(|l| l.starts_with("error")).collect();
        assert_eq!(errors.len(), 1, "expected one error line: {self:?}");
        assert!(errors[0].starts_with("error: ") && errors[0].len() > "error: ".len(), "{self:?}");
        errors[0].to_string()
    }
}

/// Runs the binary to completion (killed after a minute, so a hang fails instead of blocking).
pub(crate) fn run_in(dir: &Path, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Output {
    let child = spawn_binary(dir, args, env, stdin);
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            panic!("portcullis {args:?} did not finish within a minute");
        })
        .expect("portcullis output");
    Output {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `user list` rows are `USERNAME STATUS CREATED`.
fn user_status(list: &str, username: &str) -> Option<String> {
    list.lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|c| c.first() == Some(&username))
        .map(|c| c[1].to_string())
}

/// `resource list` starts each resource's line with its URI (scopes are indented below).
fn resource_uris(list: &str) -> Vec<String> {
    list.lines()
        .filter(|l| !l.starts_with(' ') && !l.is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

fn value_after(text: &str, label: &str) -> Option<String> {
    text.lines().find_map(|l| l.strip_prefix(label)).map(|v| v.trim().to_string())
}

/// The password printed on first start, on the line after "First start".
fn admin_password(stdout: &str) -> Option<String> {
    let mut lines = stdout.lines().skip_while(|l| !l.contains("First start"));
    lines.next()?;
    lines.map(str::trim).find(|l| !l.is_empty()).map(str::to_string)
}

fn is_unreserved(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~".contains(c)
}

const CONFIG_WITH_CLIENT: &str = r#"
issuer = "https://auth.example.com"

[[clients]]
client_id = "static-one"
name = "Static"
redirect_uris = ["https://app.example/cb"]
client_secret = "0123456789abcdef0123456789abcdef-supersecret"
"#;

const CONFIG_WITH_RESOURCE: &str = r#"
issuer = "https://auth.example.com"

[[resources]]
uri = "https://mcp.example.com/mcp"
name = "Example"

[[resources.scopes]]
name = "mcp:tools"
description = "Use tools"
"#;

const CONFIG_WITH_MACHINE_CLIENT: &str = r#"
issuer = "https://auth.example.com"

[[resources]]
uri = "https://mcp.example.com/mcp"
name = "Example"

[[resources.scopes]]
name = "mcp:tools"
description = "Use tools"

[[clients]]
client_id = "nightly-sync"
name = "Nightly sync"
grant_types = ["client_credentials"]
jwks = 'JWKS'

[[clients.resources]]
uri = "https://mcp.example.com/mcp"
scopes = ["mcp:tools"]
"#;

const BAD_CLIENT_REDIRECT: &str = r#"
[[clients]]
client_id = "static-one"
name = "Static"
redirect_uris = ["javascript:alert(1)"]
"#;

const BAD_CLIENT_SECRET: &str = r#"
[[clients]]
client_id = "static-one"
name = "Static"
redirect_uris = ["https://app.example/cb"]
client_secret = "short"
"#;

const BAD_RESOURCE_SCOPE: &str = r#"
[[resources]]
uri = "https://mcp.example.com/mcp"
name = "Example"

[[resources.scopes]]
name = "offline_access"
description = ""
"#;

/// The whole browser flow against a served binary, for alice and a fresh public client: returns
/// the token endpoint's (status, body) for the code exchange.
async fn first_token(base: &str) -> (u16, Value) {
    let http = browser();
    let redirect = "http://127.0.0.1/cb";
    let res = http
        .post(format!("{base}/register"))
        .json(&json!({ "redirect_uris": [redirect], "token_endpoint_auth_method": "none" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let client: Value = res.json().await.unwrap();
    let client_id = client["client_id"].as_str().unwrap();

    let res = sign_in(&http, &format!("{base}/login"), "alice", PASSWORD).await;
    assert_eq!(res.status(), 200, "login");

    let (verifier, challenge) = pkce();
    let res = http
        .get(format!("{base}/authorize"))
        .query(&OAuthParams::authorize(client_id, redirect, &challenge).state("s"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "consent page");
    let page = res.text().await.unwrap();
    let res = approve_consent(&http, &format!("{base}/consent"), &page).await;
    let code = query_of(&location(&res)).get("code").cloned().unwrap_or_else(|| panic!("no code: {}", location(&res)));

    let res = http
        .post(format!("{base}/token"))
        .form(&OAuthParams::code(client_id, &code, &verifier).redirect_uri(redirect))
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}
