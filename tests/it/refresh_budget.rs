//! Refreshes per refresh-token family (README, "shared egress"): a hosted client's budget is
//! sized for all its people, so one connection refreshed in a loop (or a thief replaying inside
//! the grace window) is cut off at `rate_limit_per_refresh_family` a minute with `slow_down`,
//! nothing written, while the client's other connections go on.

use crate::helpers::{Engine, MCP, OAuthParams, TestApp, count_rows, db_tests};

db_tests!(one_family_is_limited_and_others_are_not);

const REDIRECT: &str = "https://app.example/cb";

async fn one_family_is_limited_and_others_are_not(engine: Engine) {
    let app = TestApp::spawn_with(engine, "", |c| c.rate_limit_per_refresh_family = 3).await.with_defaults().await;
    let client_id = app.public_client(REDIRECT).await;
    let grant = |code: crate::helpers::IssuedCode| {
        let app = &app;
        async move {
            let (status, body) = app.token(&code.redeem().resource(MCP)).await;
            assert_eq!(status, 200, "{body}");
            body["refresh_token"].as_str().expect("refresh token").to_string()
        }
    };
    let mut token =
        grant(app.code_for_client(&client_id, REDIRECT, &[("scope", "mcp:tools offline_access")]).await).await;
    for _ in 0..3 {
        let (status, body) = app.token(&OAuthParams::refresh(&client_id, &token)).await;
        assert_eq!(status, 200, "{body}");
        token = body["refresh_token"].as_str().unwrap().to_string();
    }
    let rows = count_rows(&app.db, "refresh_tokens").await;
    let res = app.http.post(app.url("/token")).form(&OAuthParams::refresh(&client_id, &token)).send().await.unwrap();
    assert_eq!(res.status(), 429);
    assert!(res.headers().get("retry-after").is_some());
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"], "slow_down", "{body}");
    assert_eq!(count_rows(&app.db, "refresh_tokens").await, rows, "nothing written");
    // The refused token was not rotated: it still works next minute; another family works now.
    let other = grant(app.code_for_client(&client_id, REDIRECT, &[("scope", "mcp:tools offline_access")]).await).await;
    let (status, body) = app.token(&OAuthParams::refresh(&client_id, &other)).await;
    assert_eq!(status, 200, "{body}");
}
