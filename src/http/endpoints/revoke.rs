//! `/revoke` (RFC 7009). Revoking a refresh token revokes its grant (every refresh token of it,
//! and its access tokens read inactive at introspection); an access token is revoked by `jti`.
//! Unknown tokens, and other clients' tokens, get the same empty 200.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::clients::auth as client_auth;
use crate::http::HttpState;
use crate::http::endpoints::form_params;
use crate::http::error::{ApiError, no_store};
use crate::store::{self, audit, grants, refresh, revocations};
use crate::tokens::{jwt, secrets};

pub async fn revoke(State(state): State<HttpState>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let params = form_params(&headers, &body)?;
    let client = client_auth::authenticate(
        &state,
        &state.routes.url(crate::http::routes::TOKEN),
        crate::http::authorization(&headers),
        &params,
    )
    .await?;
    let token = params.require("token")?;
    let now = store::now();
    // The hint only orders the look-ups (RFC 7009 §2.1); a wrong hint still finds the token.
    let access_first = params.get("token_type_hint") == Some("access_token");
    for kind in if access_first { ["access", "refresh"] } else { ["refresh", "access"] } {
        let done = match kind {
            "refresh" => match refresh::by_hash(&state.db, &secrets::hash(token)).await? {
                Some(row) if row.client_id == client.client_id() => {
                    grants::revoke(&state.db, row.grant_id, now).await?;
                    audit::record(
                        &state.db,
                        &audit::Event {
                            event: "grant_revoked",
                            user_id: Some(row.user_id),
                            client_id: Some(client.client_id()),
                            details: serde_json::json!({ "grant_id": row.grant_id, "by": "client" }),
                            ..Default::default()
                        },
                        now,
                    )
                    .await?;
                    true
                }
                Some(_) => true,
                None => false,
            },
            _ => match jwt::verify_access_token(&state.keys, token, &state.settings.issuer, now).await {
                Some(claims) if claims.client_id == client.client_id() => {
                    revocations::revoke_access_token(&state.db, &claims.jti, claims.exp).await?;
                    true
                }
                Some(_) => true,
                None => false,
            },
        };
        if done {
            break;
        }
    }
    Ok((StatusCode::OK, no_store()).into_response())
}
