//! `portcullis doctor` against a running Portcullis and small MCP servers, one set up right and
//! some set up wrong, each failing the right check.

use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::cli::run_in;
use crate::helpers::*;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fault {
    None,
    WrongResource,
    OtherIssuer,
    No401,
}

/// An MCP server at `http://127.0.0.1:PORT/mcp` that trusts `issuer`, with one fault.
async fn mcp_server(issuer: &str, fault: Fault) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let uri = format!("{base}/mcp");
    let metadata_url = format!("{base}/.well-known/oauth-protected-resource/mcp");
    let doc = json!({
        "resource": if fault == Fault::WrongResource { format!("{base}/other") } else { uri.clone() },
        "authorization_servers": [if fault == Fault::OtherIssuer { "https://elsewhere.example".to_string() } else { issuer.to_string() }],
        "bearer_methods_supported": ["header"],
    });
    let me = Arc::new(uri.clone());
    let app = axum::Router::new()
        .route("/.well-known/oauth-protected-resource/mcp", get(move || async move { axum::Json(doc) }))
        .route(
            "/mcp",
            post(move |h: HeaderMap| {
                let me = me.clone();
                let metadata_url = metadata_url.clone();
                async move {
                    let token =
                        h.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
                    // (A real server verifies the signature too; the doctor's tokens are genuine.)
                    let aud_ok =
                        token.map(|t| jwt_parts(t).1["aud"] == json!(*me) || jwt_parts(t).1["aud"] == json!([*me]));
                    match (fault, aud_ok) {
                        (Fault::No401, _) | (_, Some(true)) => {
                            axum::Json(json!({ "jsonrpc": "2.0", "id": 1, "result": {} })).into_response()
                        }
                        _ => (
                            StatusCode::UNAUTHORIZED,
                            [("www-authenticate", format!("Bearer resource_metadata=\"{metadata_url}\""))],
                        )
                            .into_response(),
                    }
                }
            }),
        );
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (uri, server)
}

async fn doctor(app: &TestApp, args: &[&str]) -> (bool, Value) {
    let dir = tempfile::tempdir().unwrap();
    let mut all = vec!["doctor", "--json"];
    all.extend_from_slice(args);
    let out = run_in(
        dir.path(),
        &all,
        &[("PORTCULLIS_DATABASE_URL", &app.test_db.url), ("PORTCULLIS_ISSUER", &app.base)],
        None,
    );
    let report: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"));
    (out.code == Some(0), report)
}

fn status_of(report: &Value, check_suffix: &str) -> Vec<String> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["check"].as_str().unwrap().ends_with(check_suffix))
        .map(|c| c["status"].as_str().unwrap().to_string())
        .collect()
}

async fn the_doctor_passes_a_good_deployment_and_names_each_fault(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let (good, _g) = mcp_server(&app.base, Fault::None).await;
    app.add_resource(&good, &[("mcp:tools", "Use the tools", true)]).await;
    let (ok, report) = doctor(&app, &["--token-check"]).await;
    let fails: Vec<&Value> = report["checks"].as_array().unwrap().iter().filter(|c| c["status"] == "FAIL").collect();
    assert!(ok && fails.is_empty(), "{report:#}");
    for check in [
        "issuer answers",
        "metadata issuer",
        "JWKS holds the signing key",
        "metadata resource",
        "authorization_servers",
        "401 without a token",
        "accepts its token",
        "refuses another audience",
    ] {
        assert_eq!(status_of(&report, check), ["PASS"], "{check}: {report:#}");
    }
    for (fault, check) in [
        (Fault::WrongResource, "metadata resource"),
        (Fault::OtherIssuer, "authorization_servers"),
        (Fault::No401, "401 without a token"),
    ] {
        let (bad, _b) = mcp_server(&app.base, fault).await;
        let (ok, report) = doctor(&app, &[&bad]).await;
        assert!(!ok, "{fault:?} must fail the doctor");
        assert_eq!(status_of(&report, check), ["FAIL"], "{fault:?}: {report:#}");
        let hint = report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["check"].as_str().unwrap().ends_with(check))
            .unwrap();
        assert!(!hint["hint"].as_str().unwrap_or_default().is_empty(), "a FAIL says what to do: {hint}");
    }
    // A token for another audience accepted: the server does not check `aud`.
    let (lax, _l) = mcp_server(&app.base, Fault::No401).await;
    let (_, report) = doctor(&app, &["--token-check", &lax]).await;
    assert_eq!(status_of(&report, "refuses another audience"), ["FAIL"], "{report:#}");
}

db_tests!(the_doctor_passes_a_good_deployment_and_names_each_fault);
