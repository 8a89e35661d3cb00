//! The CLI for company sign-in: local groups, admins, MCP servers limited to groups, and the
//! identity providers as configured (secrets redacted by `config check`).

use crate::cli::{Cli, run_in};
use crate::helpers::{Engine, PASSWORD, db_tests};

db_tests!(groups_are_managed_from_the_command_line, resources_can_be_limited_to_groups);

async fn groups_are_managed_from_the_command_line(engine: Engine) {
    let cli = Cli::new(engine).await;
    let out = cli
        .run_stdin(&["user", "add", "root2", "--password-stdin", "--admin", "--group", "ops"], &format!("{PASSWORD}\n"))
        .success();
    assert!(out.stdout.contains("(admin)"), "{out:?}");
    cli.run_stdin(&["user", "add", "bob", "--password-stdin"], &format!("{PASSWORD}\n")).success();
    cli.run(&["group", "add", "mcp-users", "bob", "root2"]).success();
    let list = cli.run(&["group", "list"]).success().stdout;
    for row in [("mcp-users", "bob"), ("mcp-users", "root2"), ("ops", "root2")] {
        assert!(
            list.lines().any(|l| l.starts_with(row.0) && l.contains(row.1) && l.contains("local")),
            "{row:?}:\n{list}"
        );
    }
    cli.run(&["group", "remove", "mcp-users", "bob"]).success();
    // CLI changes are audited, by the operator's OS user; listings are not.
    let audit = cli.run(&["audit", "list", "--event", "cli_change"]).success().stdout;
    assert!(audit.contains("cli:") && audit.contains("group remove mcp-users bob"), "{audit}");
    assert!(audit.contains("user add root2 --password-stdin --admin --group ops"), "{audit}");
    assert!(!audit.contains("group list"), "{audit}");
    assert!(
        !cli.run(&["group", "list"]).success().stdout.lines().any(|l| l.starts_with("mcp-users") && l.contains("bob"))
    );
    // Bad input: a clear error and nothing written.
    let e = cli.run(&["group", "add", "mcp-users", "bob", "nobody"]).failure().one_error_line();
    assert!(e.contains("nobody"), "{e}");
    assert!(
        !cli.run(&["group", "list"]).success().stdout.lines().any(|l| l.starts_with("mcp-users") && l.contains("bob"))
    );
    let e = cli.run(&["group", "remove", "mcp-users", "bob"]).failure().one_error_line();
    assert!(e.contains("not in"), "{e}");
    cli.run(&["group", "add", "bad\u{1b}[31m", "bob"]).failure().one_error_line();
    let e = cli
        .run_stdin(&["user", "add", "carol", "--password-stdin", "--group", ""], &format!("{PASSWORD}\n"))
        .failure()
        .one_error_line();
    assert!(e.contains("group"), "{e}");
    assert!(!cli.run(&["user", "list"]).success().stdout.contains("carol"), "a refused user add writes nothing");
}

async fn resources_can_be_limited_to_groups(engine: Engine) {
    let cli = Cli::new(engine).await;
    let uri = "https://finance.example.com/mcp";
    cli.run(&["resource", "add", uri, "--name", "Finance", "--scope", "read=Read", "--allowed-group", "finance"])
        .success();
    let db = cli.db.connect().await;
    let r = portcullis::store::resources::by_uri(&db, uri).await.unwrap().unwrap();
    assert_eq!(r.row.allowed_groups.iter().collect::<Vec<_>>(), ["finance"]);
    // `config check` shows what is in effect from the database too.
    let check = cli.run(&["config", "check"]).success().stdout;
    assert!(
        check.contains("# In effect from the database") && check.contains(&format!("# MCP server {uri}"))
            || check.contains(&format!("#   MCP server {uri}")),
        "{check}"
    );
    let e = cli
        .run(&["resource", "add", "https://x.example.com/mcp", "--name", "X", "--allowed-group", " "])
        .failure()
        .one_error_line();
    assert!(e.contains("group"), "{e}");
}

#[test]
fn identity_providers_are_listed_and_their_secrets_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("portcullis.toml");
    std::fs::write(
        &config,
        r#"
issuer = "https://auth.example.com"
[[identity_providers]]
id = "entra"
name = "Contoso"
issuer = "https://login.microsoftonline.com/{tenantid}/v2.0"
client_id = "abc"
client_secret = "very-secret-value"
allowed_tenants = ["72f988bf-86f1-41af-91ab-2d7cd011db47"]
"#,
    )
    .unwrap();
    let path = config.to_str().unwrap();
    let out = run_in(dir.path(), &["--config", path, "config", "check"], &[], None).success();
    assert!(!out.stdout.contains("very-secret-value"), "{out:?}");
    assert!(out.stdout.contains("[redacted]"), "{out:?}");
    let out = run_in(dir.path(), &["--config", path, "idp", "list"], &[], None).success();
    assert!(out.stdout.contains("https://auth.example.com/login/entra/callback"), "{out:?}");
    assert!(out.stdout.contains("password login: off"), "{out:?}");
    // The secret from the environment wins, and is redacted too.
    let out = run_in(
        dir.path(),
        &["--config", path, "config", "check"],
        &[("PORTCULLIS_IDP_ENTRA_CLIENT_SECRET", "from-the-environment")],
        None,
    )
    .success();
    assert!(!out.stdout.contains("from-the-environment"), "{out:?}");
}

#[test]
fn bad_identity_provider_entries_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("portcullis.toml");
    for (entry, expected) in [
        (
            "id = \"Bad Id\"\nname = \"X\"\nissuer = \"https://idp.example\"\nclient_id = \"c\"\nclient_secret = \"s\"",
            "id",
        ),
        ("id = \"x\"\nname = \"X\"\nissuer = \"https://idp.example\"\nclient_id = \"c\"", "client secret"),
        (
            "id = \"x\"\nname = \"X\"\nissuer = \"http://idp.example\"\nclient_id = \"c\"\nclient_secret = \"s\"",
            "https",
        ),
        (
            "id = \"x\"\nname = \"X\"\nkind = \"github\"\nissuer = \"https://github.com\"\nclient_id = \"c\"\nclient_secret = \"s\"",
            "GitHub",
        ),
    ] {
        std::fs::write(&config, format!("[[identity_providers]]\n{entry}\n")).unwrap();
        let out = run_in(dir.path(), &["--config", config.to_str().unwrap(), "config", "check"], &[], None).failure();
        let e = out.one_error_line();
        assert!(e.contains("identity_providers") && e.contains(expected), "{expected}: {e}");
    }
    std::fs::write(&config, "password_login = false\n").unwrap();
    let e = run_in(dir.path(), &["--config", config.to_str().unwrap(), "config", "check"], &[], None)
        .failure()
        .one_error_line();
    assert!(e.contains("password_login"), "{e}");
}
