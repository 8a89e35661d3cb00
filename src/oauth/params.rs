//! Request parameters as OAuth reads them (OAuth 2.1 §3.1, §3.2): form or query encoding, empty
//! values treated as omitted, unknown parameters ignored, repeated parameters refused except
//! `resource` (RFC 8707 allows several).

use std::collections::BTreeMap;

use super::OAuthError;

const MAX_PARAMS: usize = 64;
const MAX_VALUE_LEN: usize = 8 * 1024;
/// Every parameter name OAuth, OIDC and their extensions define is far shorter.
const MAX_NAME_LEN: usize = 64;

/// The parameter names an error message may repeat. Any other name is the sender's own text,
/// and error descriptions end up on this server's error page: a name like "Your account is
/// locked, call ..." must not be shown there as if this server said it.
const KNOWN_NAMES: &[&str] = &[
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
    "resource",
    "nonce",
    "prompt",
    "max_age",
    "login_hint",
    "domain_hint",
    "request",
    "request_uri",
    "response_mode",
    "display",
    "ui_locales",
    "id_token_hint",
    "acr_values",
    "claims",
    "grant_type",
    "code",
    "code_verifier",
    "refresh_token",
    "client_secret",
    "client_assertion",
    "client_assertion_type",
    "token",
    "token_type_hint",
    "assertion",
    "subject_token",
    "subject_token_type",
    "actor_token",
    "actor_token_type",
    "requested_token_type",
    "audience",
];

/// "parameter NAME" for a name OAuth defines, else words that repeat nothing of it.
fn named(name: &str) -> String {
    match KNOWN_NAMES.contains(&name) {
        true => format!("parameter {name}"),
        false => "a parameter this server does not use".to_string(),
    }
}

#[derive(Clone, Debug, Default)]
pub struct Params {
    map: BTreeMap<String, String>,
    resources: Vec<String>,
}

impl Params {
    pub fn parse(raw: &str) -> Result<Params, OAuthError> {
        let mut p = Params::default();
        for (n, (k, v)) in url::form_urlencoded::parse(raw.as_bytes()).enumerate() {
            if n >= MAX_PARAMS {
                return Err(OAuthError::invalid_request("too many parameters"));
            }
            if k.len() > MAX_NAME_LEN {
                return Err(OAuthError::invalid_request(format!(
                    "a parameter name is longer than {MAX_NAME_LEN} bytes"
                )));
            }
            if v.len() > MAX_VALUE_LEN {
                return Err(OAuthError::invalid_request(format!("{} is too long", named(&k))));
            }
            if v.is_empty() {
                continue;
            }
            if k == "resource" {
                p.resources.push(v.into_owned());
                continue;
            }
            if p.map.insert(k.to_string(), v.into_owned()).is_some() {
                return Err(OAuthError::invalid_request(format!("{} is repeated", named(&k))));
            }
        }
        Ok(p)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.map.get(key).map(String::as_str)
    }

    pub fn require(&self, key: &str) -> Result<&str, OAuthError> {
        self.get(key).ok_or_else(|| OAuthError::invalid_request(format!("missing parameter {key}")))
    }

    pub fn resources(&self) -> &[String] {
        &self.resources
    }

    /// The raw pairs, for re-serialising an authorization request (e.g. after login).
    pub fn to_query(&self) -> String {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in &self.map {
            s.append_pair(k, v);
        }
        for r in &self.resources {
            s.append_pair("resource", r);
        }
        s.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_values_are_omitted_and_repeats_refused() {
        let p = Params::parse("a=1&b=&c=%20x+y").unwrap();
        assert_eq!(p.get("a"), Some("1"));
        assert_eq!(p.get("b"), None);
        assert_eq!(p.get("c"), Some(" x y"));
        assert!(Params::parse("a=1&a=2").is_err());
        assert!(Params::parse("a=1&a=").is_ok(), "an empty repeat counts as omitted");
    }

    #[test]
    fn resource_may_repeat() {
        let p = Params::parse("resource=https%3A%2F%2Fa&resource=https%3A%2F%2Fb").unwrap();
        assert_eq!(p.resources(), &["https://a".to_string(), "https://b".to_string()]);
        let again = Params::parse(&p.to_query()).unwrap();
        assert_eq!(again.resources(), p.resources());
    }

    #[test]
    fn limits() {
        let many: Vec<String> = (0..100).map(|i| format!("k{i}=v")).collect();
        assert!(Params::parse(&many.join("&")).is_err());
        assert!(Params::parse(&format!("a={}", "x".repeat(9000))).is_err());
        let long_name = format!("{}=v", "n".repeat(65));
        assert_eq!(Params::parse(&long_name).unwrap_err().description, "a parameter name is longer than 64 bytes");
        assert!(Params::parse(&format!("{}=v", "n".repeat(64))).is_ok());
    }

    #[test]
    fn only_known_names_are_repeated_in_errors() {
        assert_eq!(Params::parse("state=a&state=b").unwrap_err().description, "parameter state is repeated");
        let e = Params::parse("Call+us+now=1&Call+us+now=2").unwrap_err();
        assert_eq!(e.description, "a parameter this server does not use is repeated");
        let e = Params::parse(&format!("Visit+evil={}", "x".repeat(9000))).unwrap_err();
        assert!(!e.description.contains("evil"), "{}", e.description);
    }
}
