//! The admin console: for administrators only, every section renders, changes need the CSRF
//! token and (destructive ones) a confirmation step, and are audited with the person.

use crate::helpers::*;

async fn the_console_is_for_admins_and_changes_are_confirmed_and_audited(engine: Engine) {
    let app = TestApp::spawn(engine).await.with_defaults().await;
    let profile = portcullis::admin::Profile { is_admin: true, ..Default::default() };
    portcullis::admin::add_person(&app.db, &app.state.hasher, "root", PASSWORD, &profile).await.unwrap();

    // Not signed in: to the login page, back to the console afterwards.
    let anon = browser();
    let res = anon.get(app.url("/admin")).send().await.unwrap();
    assert_eq!((res.status().as_u16(), location(&res)), (303, "/login?next=admin".to_string()));
    // Not an admin: 403.
    let alice = browser();
    app.login(&alice, "alice", PASSWORD).await;
    assert_eq!(alice.get(app.url("/admin/people")).send().await.unwrap().status(), 403);

    let root = browser();
    let page = root.get(app.url("/login?next=admin")).send().await.unwrap().text().await.unwrap();
    let res = post_login(&root, &app.url("/login"), &page, "root", PASSWORD).await;
    assert_eq!(location(&res), "/admin", "signing in from the console returns to it");
    for (path, text) in [
        ("/admin", "Deployment checks"),
        ("/admin/people", "Add a person"),
        ("/admin/resources", "Add an MCP server"),
        ("/admin/clients", "Dynamically registered"),
        ("/admin/grants", "Live grants"),
        ("/admin/audit?limit=1", "Older events"),
        ("/admin/keys", "Rotate the signing key"),
        ("/admin/settings", "secrets redacted"),
    ] {
        let res = root.get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        assert!(res.text().await.unwrap().contains(text), "{path} shows {text}");
    }
    // Add a person: the generated password is shown once.
    let people = root.get(app.url("/admin/people")).send().await.unwrap().text().await.unwrap();
    let csrf = hidden(&people, "csrf_token");
    let res = root
        .post(app.url("/admin/people"))
        .form(&[("csrf_token", csrf.as_str()), ("username", "bob"), ("groups", "eng, mcp-users")])
        .send()
        .await
        .unwrap();
    let body = res.text().await.unwrap();
    assert!(body.contains("Added bob; their password (shown once)"), "{body}");
    // Without the CSRF token: refused, nothing written.
    let res = root.post(app.url("/admin/people")).form(&[("username", "eve")]).send().await.unwrap();
    assert_eq!(res.status(), 403);
    assert!(portcullis::store::users::by_username(&app.db, "eve").await.unwrap().is_none());
    // Disable bob: through the confirmation page.
    let people = root.get(app.url("/admin/people")).send().await.unwrap().text().await.unwrap();
    let href = people.split("href=\"").find(|s| s.starts_with("/admin/confirm?do=%2Fpeople%2Fbob%2Fdisable")).unwrap();
    let confirm = root
        .get(app.url(&href.split('"').next().unwrap().replace("&amp;", "&").replace("&#38;", "&")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(confirm.contains("Are you sure?") && confirm.contains("Disable bob"), "{confirm}");
    let res = root
        .post(app.url("/admin/people/bob/disable"))
        .form(&[("csrf_token", hidden(&confirm, "csrf_token"))])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert!(portcullis::store::users::by_username(&app.db, "bob").await.unwrap().unwrap().disabled);
    let rows = portcullis::store::audit::list(&app.db, Some("person_disabled"), 5).await.unwrap();
    assert_eq!(rows[0].actor.as_deref(), Some("person:root"));
    // Pre-register a client: its secret is shown once.
    let clients = root.get(app.url("/admin/clients")).send().await.unwrap().text().await.unwrap();
    let res = root
        .post(app.url("/admin/clients"))
        .form(&[
            ("csrf_token", hidden(&clients, "csrf_token").as_str()),
            ("name", "Console agent"),
            ("client_id", "console-agent"),
            ("redirect_uris", "http://127.0.0.1/cb"),
            ("confidential", "yes"),
        ])
        .send()
        .await
        .unwrap();
    assert!(res.text().await.unwrap().contains("Added console-agent; its client_secret (shown once)"));
    // Set bob's local groups.
    let people = root.get(app.url("/admin/people")).send().await.unwrap().text().await.unwrap();
    let res = root
        .post(app.url("/admin/groups"))
        .form(&[
            ("csrf_token", hidden(&people, "csrf_token").as_str()),
            ("username", "bob"),
            ("groups", "eng, mcp-users, ops"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let bob = portcullis::store::users::by_username(&app.db, "bob").await.unwrap().unwrap();
    assert!(portcullis::store::groups::of_user(&app.db, bob.id).await.unwrap().contains("ops"));
    // Search, and a new password through the confirmation step.
    let found = root.get(app.url("/admin/people?q=MCP-users")).send().await.unwrap().text().await.unwrap();
    assert!(found.contains(">bob<") && !found.contains(">alice<"), "search by group: {found}");
    let res = root
        .post(app.url("/admin/people/bob/password"))
        .form(&[("csrf_token", hidden(&found, "csrf_token"))])
        .send()
        .await
        .unwrap();
    assert!(res.text().await.unwrap().contains("New password for bob (shown once)"));
    // A confirmation page only ever posts to the console.
    let res = root.get(app.url("/admin/confirm?do=https://evil.example/x&what=x")).send().await.unwrap();
    assert_eq!(res.status(), 400);
}

db_tests!(the_console_is_for_admins_and_changes_are_confirmed_and_audited);

async fn a_destructive_action_needs_a_recent_sign_in(engine: Engine) {
    let app = TestApp::spawn_with(engine, "", |c| c.admin_reauth_after = portcullis::config::Seconds(1))
        .await
        .with_defaults()
        .await;
    let profile = portcullis::admin::Profile { is_admin: true, ..Default::default() };
    portcullis::admin::add_person(&app.db, &app.state.hasher, "root", PASSWORD, &profile).await.unwrap();
    let root = browser();
    app.login(&root, "root", PASSWORD).await;
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    // Reading is fine; the confirmation step and the action itself ask to sign in again.
    assert_eq!(root.get(app.url("/admin/people")).send().await.unwrap().status(), 200);
    let confirm =
        root.get(app.url("/admin/confirm?do=%2Fpeople%2Falice%2Fdisable&what=Disable%20alice")).send().await.unwrap();
    assert_eq!((confirm.status().as_u16(), location(&confirm)), (303, "/login?next=admin".to_string()));
    let people = root.get(app.url("/admin/people")).send().await.unwrap().text().await.unwrap();
    let res = root
        .post(app.url("/admin/people/alice/disable"))
        .form(&[("csrf_token", hidden(&people, "csrf_token"))])
        .send()
        .await
        .unwrap();
    assert_eq!((res.status().as_u16(), location(&res)), (303, "/login?next=admin".to_string()));
    assert!(
        !portcullis::store::users::by_username(&app.db, "alice").await.unwrap().unwrap().disabled,
        "nothing changed"
    );
    // After signing in again, it works.
    app.login(&root, "root", PASSWORD).await;
    let people = root.get(app.url("/admin/people")).send().await.unwrap().text().await.unwrap();
    let res = root
        .post(app.url("/admin/people/alice/disable"))
        .form(&[("csrf_token", hidden(&people, "csrf_token"))])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert!(portcullis::store::users::by_username(&app.db, "alice").await.unwrap().unwrap().disabled);
}

db_tests!(a_destructive_action_needs_a_recent_sign_in);
