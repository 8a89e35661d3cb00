//! The documents themselves (draft-ietf-oauth-client-id-metadata-document, MCP 2026-07-28):
//! which `client_id`s are document URLs, and validating a fetched document into the metadata we
//! store. Pure: fetching and caching are the parent module's.

use serde_json::{Map, Value};

use crate::oauth::client_metadata::{ClientMetadata, TokenEndpointAuthMethod};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CimdError(pub String);

fn err(msg: impl Into<String>) -> CimdError {
    CimdError(msg.into())
}

/// A Client Identifier URL: https, a host, a path other than `/`, no userinfo, fragment, query or
/// dot segments. Compared with the document's `client_id` by simple string comparison.
pub fn is_client_id_url(client_id: &str) -> bool {
    let Some(rest) = client_id.strip_prefix("https://") else { return false };
    let Ok(url) = url::Url::parse(client_id) else { return false };
    let path_start = rest.find('/').unwrap_or(rest.len());
    let raw_path = &rest[path_start..];
    url.host_str().is_some()
        && url.username().is_empty()
        && url.password().is_none()
        && !client_id.contains('#')
        && !client_id.contains('?')
        && raw_path.len() > 1
        && !raw_path.split('/').any(|seg| seg == "." || seg == "..")
}

/// The host shown as the client's verified identity.
pub fn host_of(client_id: &str) -> String {
    url::Url::parse(client_id).ok().and_then(|u| u.host_str().map(str::to_string)).unwrap_or_default()
}

/// A validated document: the metadata to store, with the auth method negotiated.
#[derive(Clone, Debug, PartialEq)]
pub struct Document {
    pub metadata: ClientMetadata,
    /// `private_key_jwt` was chosen but the document also allows `none` (ChatGPT's), so a client
    /// without an assertion is accepted too.
    pub also_none: bool,
}

/// Validates a document fetched from `client_id`, negotiating the token endpoint auth method:
/// `private_key_jwt` when the document offers it and has keys, else `none` when offered (or when
/// nothing is said). Secret-based methods are refused.
pub fn validate_document(client_id: &str, body: &[u8]) -> Result<Document, CimdError> {
    let doc: Value = serde_json::from_slice(body).map_err(|e| err(format!("the document is not valid JSON: {e}")))?;
    let obj = doc.as_object().ok_or_else(|| err("the document must be a JSON object"))?;
    match obj.get("client_id").and_then(Value::as_str) {
        Some(id) if id == client_id => {}
        Some(_) => return Err(err("the document's client_id does not match the URL it was fetched from")),
        None => return Err(err("the document has no client_id")),
    }
    for secret in ["client_secret", "client_secret_expires_at"] {
        if obj.contains_key(secret) {
            return Err(err(format!("a metadata document must not contain {secret}")));
        }
    }
    if let Some(keys) = obj.get("jwks").and_then(|j| j.get("keys")).and_then(Value::as_array)
        && keys.iter().any(|k| ["d", "p", "q", "dp", "dq", "qi", "k"].iter().any(|m| k.get(*m).is_some()))
    {
        return Err(err("the document's jwks contains private key material"));
    }
    match obj.get("redirect_uris").and_then(Value::as_array) {
        Some(list) if !list.is_empty() => {}
        _ => return Err(err("the document must list redirect_uris")),
    }
    let has_keys = obj.get("jwks").and_then(|j| j.get("keys")).and_then(Value::as_array).is_some_and(|k| !k.is_empty())
        || obj.get("jwks_uri").and_then(Value::as_str).is_some_and(|u| !u.is_empty());
    let (method, also_none) = negotiate(obj, has_keys)?;
    // Everything else is RFC 7591 client metadata: validate it the same way as a registration.
    let mut as_request: Map<String, Value> = obj.clone();
    as_request.insert("token_endpoint_auth_method".into(), "none".into());
    as_request.remove("token_endpoint_auth_methods_supported");
    let mut metadata = ClientMetadata::from_request(&Value::Object(as_request)).map_err(|e| err(e.description()))?;
    metadata.token_endpoint_auth_method = method;
    Ok(Document { metadata, also_none })
}

/// A short digest of what a person judged at consent: redirect URIs, name and keys. A document
/// whose fingerprint changed asks for consent again (CIMD §8.4).
pub fn fingerprint(m: &ClientMetadata) -> String {
    use sha2::{Digest, Sha256};
    let json = m.to_json();
    let part = |k: &str| json.get(k).cloned().unwrap_or(Value::Null);
    let material = serde_json::json!([part("redirect_uris"), part("client_name"), part("jwks"), part("jwks_uri")]);
    let digest = Sha256::digest(material.to_string().as_bytes());
    digest.iter().take(12).map(|b| format!("{b:02x}")).collect()
}

fn negotiate(obj: &Map<String, Value>, has_keys: bool) -> Result<(TokenEndpointAuthMethod, bool), CimdError> {
    let preferred = obj.get("token_endpoint_auth_method").and_then(Value::as_str);
    let offered: Vec<&str> = match obj.get("token_endpoint_auth_methods_supported") {
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
        Some(_) => return Err(err("token_endpoint_auth_methods_supported must be an array of strings")),
        None => preferred.map(|p| vec![p]).unwrap_or_else(|| vec!["none"]),
    };
    if let Some(p) = preferred
        && p.starts_with("client_secret")
    {
        return Err(err(format!("a metadata document cannot use {p}: there is no secret to share")));
    }
    if offered.contains(&"private_key_jwt") && has_keys {
        return Ok((TokenEndpointAuthMethod::PrivateKeyJwt, offered.contains(&"none")));
    }
    if offered.contains(&"none") {
        return Ok((TokenEndpointAuthMethod::None, false));
    }
    if offered.contains(&"private_key_jwt") {
        return Err(err("private_key_jwt needs jwks or jwks_uri in the document"));
    }
    Err(err(format!(
        "none of the document's auth methods ({}) is supported; use none or private_key_jwt",
        offered.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const CLAUDE_CODE: &str = "https://claude.ai/oauth/claude-code-client-metadata";

    #[test]
    fn client_id_urls() {
        assert!(is_client_id_url(CLAUDE_CODE));
        assert!(is_client_id_url("https://chatgpt.com/oauth/abc/client.json"));
        assert!(is_client_id_url("https://example.com:8443/c"));
        for bad in [
            "http://example.com/c",
            "https://example.com",
            "https://example.com/",
            "https://user@example.com/c",
            "https://example.com/c#x",
            "https://example.com/c?x=1",
            "https://example.com/a/../c",
            "https://example.com/./c",
            "abc123",
        ] {
            assert!(!is_client_id_url(bad), "{bad}");
        }
    }

    fn doc(extra: Value) -> Vec<u8> {
        let mut d = json!({ "client_id": CLAUDE_CODE, "client_name": "Claude Code",
            "redirect_uris": ["http://localhost/callback", "http://127.0.0.1/callback"] });
        d.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        serde_json::to_vec(&d).unwrap()
    }

    #[test]
    fn claude_code_document() {
        let m = validate_document(CLAUDE_CODE, &doc(json!({}))).unwrap().metadata;
        assert_eq!(m.token_endpoint_auth_method, TokenEndpointAuthMethod::None, "omitted means none");
        assert!(m.redirect_uris[0].matches("http://localhost:58135/callback"));
    }

    #[test]
    fn chatgpt_prefers_private_key_jwt() {
        let d = validate_document(
            CLAUDE_CODE,
            &doc(json!({ "token_endpoint_auth_method": "private_key_jwt",
                "token_endpoint_auth_methods_supported": ["none", "private_key_jwt"],
                "jwks_uri": "https://chatgpt.com/oauth/jwks.json" })),
        )
        .unwrap();
        assert_eq!(d.metadata.token_endpoint_auth_method, TokenEndpointAuthMethod::PrivateKeyJwt);
        assert!(d.also_none);
        let changed = validate_document(CLAUDE_CODE, &doc(json!({ "client_name": "Other" }))).unwrap();
        assert_ne!(fingerprint(&d.metadata), fingerprint(&changed.metadata));
        // Without keys it falls back to none.
        let m = validate_document(
            CLAUDE_CODE,
            &doc(json!({ "token_endpoint_auth_method": "private_key_jwt", "token_endpoint_auth_methods_supported": ["none", "private_key_jwt"] })),
        )
        .unwrap();
        assert_eq!(m.metadata.token_endpoint_auth_method, TokenEndpointAuthMethod::None);
    }

    #[test]
    fn hostile_documents() {
        let cases = [
            (br#"<html>"#.to_vec(), "JSON"),
            (b"[1]".to_vec(), "object"),
            (
                serde_json::to_vec(
                    &json!({ "client_id": "https://evil.example/c", "redirect_uris": ["https://a.example/cb"] }),
                )
                .unwrap(),
                "match",
            ),
            (doc(json!({ "token_endpoint_auth_method": "client_secret_post" })), "secret"),
            (doc(json!({ "client_secret": "x" })), "client_secret"),
            (doc(json!({ "redirect_uris": [] })), "redirect_uris"),
            (doc(json!({ "jwks": { "keys": [{ "kty": "EC", "d": "x" }] } })), "private key"),
            (doc(json!({ "token_endpoint_auth_methods_supported": ["tls_client_auth"] })), "supported"),
            (doc(json!({ "redirect_uris": ["javascript:alert(1)"] })), "javascript"),
        ];
        for (body, needle) in cases {
            let e = validate_document(CLAUDE_CODE, &body).unwrap_err();
            assert!(e.0.to_lowercase().contains(&needle.to_lowercase()), "{needle}: {e}");
        }
    }
}
