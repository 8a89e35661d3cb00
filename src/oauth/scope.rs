//! OAuth scopes as a set (RFC 6749 §3.3).
//!
//! A set, because scope order and repetition carry no meaning and step-up
//! flows compare and union scopes all the time. Ordered, so the
//! space-separated form is deterministic in tokens, storage and responses.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub const OFFLINE_ACCESS: &str = "offline_access";

/// Bounds what a client can make us store or echo.
pub const MAX_LEN: usize = 2000;

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ScopeSet(BTreeSet<String>);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScopeError {
    #[error("scope token {0:?} contains a character not allowed in a scope")]
    InvalidCharacter(String),
    #[error("scope is longer than {MAX_LEN} bytes")]
    TooLong,
}

impl ScopeSet {
    /// Split on any run of spaces; leading/trailing spaces ignored (claude.ai
    /// sends "+offline_access" i.e. " offline_access"). Each token must be
    /// RFC 6749 §3.3 scope-token chars (%x21 / %x23-5B / %x5D-7E). Empty string
    /// → empty set. Cap total input at 2000 bytes.
    ///
    /// Only U+0020 separates tokens, as in the RFC; a tab is an invalid character.
    pub fn parse(s: &str) -> Result<Self, ScopeError> {
        if s.len() > MAX_LEN {
            return Err(ScopeError::TooLong);
        }
        Self::from_stored(s)
    }

    /// A set this server wrote itself (a grant, a code, a session): its characters are checked as
    /// in [`ScopeSet::parse`], its length is not. The length cap guards request input, and a set
    /// built here (a resource's defaults, a grant widened at consent) may be longer.
    pub fn from_stored(s: &str) -> Result<Self, ScopeError> {
        let mut set = BTreeSet::new();
        for token in s.split(' ').filter(|t| !t.is_empty()) {
            if !token.bytes().all(is_scope_char) {
                return Err(ScopeError::InvalidCharacter(token.to_owned()));
            }
            set.insert(token.to_owned());
        }
        Ok(Self(set))
    }

    /// From trusted input (our own database), so tokens are not re-validated;
    /// empty strings are skipped so the space-separated form stays parseable.
    #[allow(clippy::should_implement_trait)] // the inherent name is part of the agreed API; FromIterator is implemented too
    pub fn from_iter<I: IntoIterator<Item = S>, S: Into<String>>(i: I) -> Self {
        Self(i.into_iter().map(Into::into).filter(|s| !s.is_empty()).collect())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn contains(&self, s: &str) -> bool {
        self.0.contains(s)
    }

    pub fn is_subset(&self, other: &ScopeSet) -> bool {
        self.0.is_subset(&other.0)
    }

    pub fn union(&self, other: &ScopeSet) -> ScopeSet {
        Self(self.0.union(&other.0).cloned().collect())
    }

    pub fn difference(&self, other: &ScopeSet) -> ScopeSet {
        Self(self.0.difference(&other.0).cloned().collect())
    }

    pub fn without(&self, s: &str) -> ScopeSet {
        Self(self.0.iter().filter(|t| *t != s).cloned().collect())
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    pub fn to_space_separated(&self) -> String {
        self.iter().collect::<Vec<_>>().join(" ")
    }
}

/// RFC 6749 §3.3: `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`.
fn is_scope_char(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E)
}

impl<S: Into<String>> FromIterator<S> for ScopeSet {
    fn from_iter<I: IntoIterator<Item = S>>(i: I) -> Self {
        ScopeSet::from_iter(i)
    }
}

impl fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_space_separated())
    }
}

impl Serialize for ScopeSet {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_space_separated())
    }
}

impl<'de> Deserialize<'de> for ScopeSet {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Only our own stored form is deserialized (sessions); requests go through `parse`.
        let s = String::deserialize(deserializer)?;
        Self::from_stored(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(s: &str) -> ScopeSet {
        ScopeSet::parse(s).unwrap()
    }

    #[test]
    fn splits_on_runs_of_spaces_and_ignores_edges() {
        let s = set("  mcp:read   mcp:write offline_access ");
        assert_eq!(s.len(), 3);
        assert!(s.contains("mcp:read") && s.contains("mcp:write") && s.contains(OFFLINE_ACCESS));
        assert_eq!(s.to_space_separated(), "mcp:read mcp:write offline_access");
    }

    #[test]
    fn claude_ai_leading_space_offline_access() {
        // `scope=+offline_access` form-decodes to " offline_access".
        let s = set(" offline_access");
        assert_eq!(s.len(), 1);
        assert!(s.contains(OFFLINE_ACCESS));
    }

    #[test]
    fn empty_and_blank_are_the_empty_set() {
        assert!(set("").is_empty());
        assert!(set("   ").is_empty());
        assert_eq!(set(""), ScopeSet::default());
        assert_eq!(set("").to_space_separated(), "");
    }

    #[test]
    fn duplicates_collapse_and_output_is_sorted() {
        assert_eq!(set("b a b").to_space_separated(), "a b");
    }

    #[test]
    fn accepts_full_scope_token_alphabet() {
        let all: String = (0x21u8..=0x7E).filter(|b| *b != b'"' && *b != b'\\').map(char::from).collect();
        assert_eq!(set(&all).len(), 1);
    }

    #[test]
    fn refuses_invalid_characters_naming_the_token() {
        for (input, token) in [
            ("read wr\"ite", "wr\"ite"),
            ("a\\b", "a\\b"),
            ("read\twrite", "read\twrite"),
            ("read\nwrite", "read\nwrite"),
            ("caf\u{e9}", "caf\u{e9}"),
            ("x\u{7f}", "x\u{7f}"),
        ] {
            assert_eq!(ScopeSet::parse(input), Err(ScopeError::InvalidCharacter(token.into())), "{input:?}");
        }
        let msg = ScopeError::InvalidCharacter("a\nb".into()).to_string();
        assert!(!msg.contains('\n'), "{msg}");
    }

    #[test]
    fn caps_input_length() {
        let ok = "a".repeat(MAX_LEN);
        assert_eq!(set(&ok).len(), 1);
        assert_eq!(ScopeSet::parse(&"a ".repeat(MAX_LEN / 2 + 1)), Err(ScopeError::TooLong));
    }

    #[test]
    fn set_operations() {
        let granted = set("a b offline_access");
        let asked = set("a c");
        assert!(set("a").is_subset(&granted));
        assert!(!asked.is_subset(&granted));
        assert!(ScopeSet::default().is_subset(&granted));
        assert_eq!(granted.union(&asked), set("a b c offline_access"));
        assert_eq!(asked.difference(&granted), set("c"));
        assert_eq!(granted.without(OFFLINE_ACCESS), set("a b"));
        assert_eq!(granted.without("zzz"), granted);
        assert_eq!(granted.iter().collect::<Vec<_>>(), ["a", "b", "offline_access"]);
    }

    #[test]
    fn from_iter_trusts_input_but_skips_empty() {
        let s = ScopeSet::from_iter(["b", "a", "", "a"]);
        assert_eq!(s.to_space_separated(), "a b");
        let collected: ScopeSet = vec![String::from("x")].into_iter().collect();
        assert_eq!(collected, set("x"));
    }

    #[test]
    fn display_and_serde_use_space_separated_string() {
        let s = set("offline_access mcp");
        assert_eq!(s.to_string(), "mcp offline_access");
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, r#""mcp offline_access""#);
        assert_eq!(serde_json::from_str::<ScopeSet>(r#"" mcp  offline_access""#).unwrap(), s);
        assert!(serde_json::from_str::<ScopeSet>(r#""a\tb""#).is_err());
    }
}
