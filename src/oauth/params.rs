//! Request parameters as OAuth reads them (OAuth 2.1 §3.1, §3.2): form or query encoding, empty
//! values treated as omitted, unknown parameters ignored, repeated parameters refused except
//! `resource` (RFC 8707 allows several).

use std::collections::BTreeMap;

use super::OAuthError;

const MAX_PARAMS: usize = 64;
const MAX_VALUE_LEN: usize = 8 * 1024;

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
            if v.len() > MAX_VALUE_LEN {
                return Err(OAuthError::invalid_request(format!("parameter {k} is too long")));
            }
            if v.is_empty() {
                continue;
            }
            if k == "resource" {
                p.resources.push(v.into_owned());
                continue;
            }
            if p.map.insert(k.to_string(), v.into_owned()).is_some() {
                return Err(OAuthError::invalid_request(format!("parameter {k} is repeated")));
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
    }
}
