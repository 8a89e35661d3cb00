//! Smaller items of the round-two review (item 13): parameter names are length-limited and never
//! repeated on the error page unless OAuth defines them; `/metrics` answers only the holder of
//! `metrics_token` when one is set.

use portcullis::config::Secret;

use crate::helpers::{Engine, MCP, OAuthParams, TestApp, browser, count_rows, db_tests, pkce};

db_tests!(parameter_names_are_bounded_and_not_echoed, metrics_token_guards_metrics);

async fn parameter_names_are_bounded_and_not_echoed(engine: Engine) {
    let app = TestApp::spawn(engine).await.with_defaults().await;
    let client_id = app.public_client("https://app.example/cb").await;
    let base = OAuthParams::authorize(&client_id, "https://app.example/cb", &pkce().1).resource(MCP);
    let injected = "Your account is locked. Call +1 555 0100 to unlock it";
    for (query, needle) in [
        (base.clone().with(injected, "1").with(injected, "2"), "a parameter this server does not use is repeated"),
        (base.clone().with(&"n".repeat(65), "1"), "a parameter name is longer than 64 bytes"),
        (base.clone().with(injected, &"x".repeat(9000)), "a parameter this server does not use is too long"),
    ] {
        let res = browser().get(app.url("/authorize")).query(&query).send().await.unwrap();
        assert_eq!(res.status(), 400);
        let page = res.text().await.unwrap();
        assert!(page.to_lowercase().contains(needle), "{needle}: {page}");
        assert!(
            !page.contains("Call +1 555")
                && !page.contains("nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn"),
            "{page}"
        );
    }
    // A name OAuth defines is still named.
    let res = browser().get(app.url("/authorize")).query(&base.clone().state("a").state("b")).send().await.unwrap();
    assert!(res.text().await.unwrap().to_lowercase().contains("parameter state is repeated"));
    assert_eq!(count_rows(&app.db, "web_sessions").await, 0);
}

async fn metrics_token_guards_metrics(engine: Engine) {
    // Without a token (the default) the metrics stay open, as before.
    let open = TestApp::spawn(engine).await;
    assert_eq!(browser().get(open.url("/metrics")).send().await.unwrap().status(), 200);
    let token = "metrics-token-0123456789";
    let app = TestApp::spawn_with(engine, "", |c| c.metrics_token = Some(Secret::new(token))).await;
    for auth in [None, Some("Bearer wrong-token-0123456789".to_string()), Some(format!("Basic {token}"))] {
        let mut req = browser().get(app.url("/metrics"));
        if let Some(a) = &auth {
            req = req.header("Authorization", a);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 401, "{auth:?}");
        assert!(res.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer"));
        assert!(!res.text().await.unwrap().contains("portcullis_"), "{auth:?}: no counters");
    }
    let res = browser().get(app.url("/metrics")).bearer_auth(token).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("portcullis_"));
    // Health and readiness stay open for load balancers.
    assert_eq!(browser().get(app.url("/healthz")).send().await.unwrap().status(), 200);
}
