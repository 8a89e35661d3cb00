//! Groups and the access policy built on them: an MCP server may be limited to some groups, and
//! each of its scopes too. People get groups from their identity provider (replaced at each
//! sign-in through it) or from the operator (`portcullis group`).

use std::collections::BTreeSet;
use std::fmt;

use crate::oauth::scope::ScopeSet;

/// The longest group name kept (Entra ID sends object ids, Okta and GitHub names; both fit).
pub const MAX_NAME: usize = 256;
/// The most groups kept for one person from one provider: beyond this, an IdP is misconfigured
/// (Entra ID itself switches to an overage claim past 200).
pub const MAX_PER_PERSON: usize = 1000;

/// A set of group names: sorted, without duplicates; empty means "no restriction" where it is a
/// policy. Stored as a JSON array.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Groups(BTreeSet<String>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct GroupError(String);

/// Checks one group name: not empty, at most [`MAX_NAME`] bytes, no control characters.
pub fn check_name(name: &str) -> Result<(), GroupError> {
    if name.trim().is_empty() {
        return Err(GroupError("a group name cannot be empty".into()));
    }
    if name.len() > MAX_NAME {
        return Err(GroupError(format!("group name longer than {MAX_NAME} bytes")));
    }
    if name.chars().any(char::is_control) {
        return Err(GroupError(format!("group name {name:?} contains control characters")));
    }
    Ok(())
}

impl Groups {
    /// Parses names the operator wrote (config, CLI): every name must be acceptable.
    pub fn parse<I, S>(names: I) -> Result<Groups, GroupError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut set = BTreeSet::new();
        for n in names {
            check_name(n.as_ref())?;
            set.insert(n.as_ref().to_string());
        }
        Ok(Groups(set))
    }

    /// Keeps the acceptable names an identity provider sent and drops the rest (one bad value
    /// should not lock a person out), up to [`MAX_PER_PERSON`].
    pub fn lenient<I, S>(names: I) -> Groups
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Groups(
            names
                .into_iter()
                .filter(|n| check_name(n.as_ref()).is_ok())
                .map(|n| n.as_ref().to_string())
                .take(MAX_PER_PERSON)
                .collect(),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.0.contains(name)
    }

    /// As a policy: does a person with `groups` pass? (No restriction, or one group in common.)
    pub fn admits(&self, groups: &Groups) -> bool {
        self.is_empty() || self.0.intersection(&groups.0).next().is_some()
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.0).expect("strings serialize")
    }

    /// Reads the stored JSON array; a value that does not parse is an error (a corrupt row).
    pub fn from_json(s: &str) -> Result<Groups, GroupError> {
        let names: Vec<String> = serde_json::from_str(s).map_err(|e| GroupError(format!("stored groups: {e}")))?;
        Groups::parse(names)
    }
}

impl fmt::Display for Groups {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.iter().collect();
        f.write_str(&names.join(", "))
    }
}

impl FromIterator<String> for Groups {
    fn from_iter<T: IntoIterator<Item = String>>(iter: T) -> Self {
        Groups::lenient(iter)
    }
}

/// What an MCP server's group policy lets one person have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Allowed in, with the requested scopes this person may have (the rest removed).
    Allowed(ScopeSet),
    /// Not in any of the server's allowed groups.
    Denied,
}

/// The policy of one MCP server: who may use it, and per scope who may have it.
pub struct Policy<'a> {
    pub allowed_groups: &'a Groups,
    /// Catalogue scopes with their groups; scopes not listed here (`openid`, `offline_access`)
    /// follow the server's own rule.
    pub scopes: Vec<(&'a str, &'a Groups)>,
}

impl Policy<'_> {
    /// Whether the policy restricts anyone (if not, nobody's groups need reading).
    pub fn restricts(&self) -> bool {
        !self.allowed_groups.is_empty() || self.scopes.iter().any(|(_, g)| !g.is_empty())
    }

    pub fn decide(&self, person: &Groups, requested: &ScopeSet) -> Access {
        if !self.allowed_groups.admits(person) {
            return Access::Denied;
        }
        let kept = requested.iter().filter(|name| match self.scopes.iter().find(|(s, _)| s == name) {
            Some((_, groups)) => groups.admits(person),
            None => true,
        });
        Access::Allowed(ScopeSet::from_iter(kept))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_policy_admits_everyone_and_a_list_needs_one_in_common() {
        let none = Groups::default();
        let eng = Groups::parse(["eng"]).unwrap();
        let person = Groups::parse(["staff", "eng"]).unwrap();
        assert!(none.admits(&Groups::default()));
        assert!(eng.admits(&person));
        assert!(!eng.admits(&Groups::parse(["staff"]).unwrap()));
        assert!(!eng.admits(&Groups::default()));
    }

    #[test]
    fn scopes_a_person_may_not_have_are_removed() {
        let everyone = Groups::default();
        let admins = Groups::parse(["admins"]).unwrap();
        let policy = Policy { allowed_groups: &everyone, scopes: vec![("read", &everyone), ("write", &admins)] };
        let asked = ScopeSet::parse("read write offline_access").unwrap();
        let staff = Groups::parse(["staff"]).unwrap();
        assert_eq!(policy.decide(&staff, &asked), Access::Allowed(ScopeSet::parse("read offline_access").unwrap()));
        assert_eq!(policy.decide(&admins, &asked), Access::Allowed(asked.clone()));
        let eng = Groups::parse(["eng"]).unwrap();
        let closed = Policy { allowed_groups: &eng, scopes: vec![] };
        assert!(closed.restricts());
        assert_eq!(closed.decide(&staff, &asked), Access::Denied);
    }

    #[test]
    fn names_are_checked_strictly_from_operators_and_leniently_from_providers() {
        assert!(Groups::parse([""]).is_err());
        assert!(Groups::parse(["a\u{1b}[31m"]).is_err());
        assert!(Groups::parse(["x".repeat(MAX_NAME + 1)]).is_err());
        let kept = Groups::lenient(["ok", "", "bad\n", "Team A"]);
        assert_eq!(kept.iter().collect::<Vec<_>>(), ["Team A", "ok"]);
        assert_eq!(Groups::from_json(&kept.to_json()).unwrap(), kept);
        assert!(Groups::from_json("not json").is_err());
    }
}
