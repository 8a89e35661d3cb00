//! How apps and permissions are put into words for people, the same on the consent page and on
//! the connected-apps page: one description per scope, who vouches for an app, and an app's
//! self-chosen name made safe to show.

use crate::clients::RegisteredClient;
use crate::oauth::scope::OFFLINE_ACCESS;
use crate::store::clients::ClientKind;
use crate::store::resources::Resource;

/// The longest app name shown, in characters: a self-chosen name must not take over a page.
pub const NAME_MAX_CHARS: usize = 40;

/// One scope in words: the OAuth and OpenID scopes Portcullis itself grants, else the MCP
/// server's description from its catalogue, else the scope's own name.
pub fn scope(resource: &Resource, name: &str) -> String {
    match name {
        OFFLINE_ACCESS => "Stay connected: keep access while you are not using the app".to_string(),
        "openid" => "Confirm who you are".to_string(),
        "profile" => "See your name and username".to_string(),
        "email" => "See your email address".to_string(),
        _ => resource
            .scopes
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.description.trim())
            .filter(|d| !d.is_empty())
            .unwrap_or(name)
            .to_string(),
    }
}

/// Who vouches for an app's identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Vouched {
    /// Pre-registered by the operator, who also chose its name.
    Administrator,
    /// Identified by a metadata document at this host. Only the host (the web address the
    /// document was fetched from) is verified; the name and logo in it are the app's own.
    Host(String),
    /// It registered itself: nothing about it is checked.
    Nobody,
}

impl Vouched {
    pub fn of(client: &RegisteredClient) -> Vouched {
        match client.row.kind {
            ClientKind::Static => Vouched::Administrator,
            ClientKind::MetadataDocument => Vouched::Host(
                url::Url::parse(client.client_id().as_str())
                    .ok()
                    .and_then(|u| u.host_str().map(str::to_string))
                    .unwrap_or_default(),
            ),
            ClientKind::Dynamic => Vouched::Nobody,
        }
    }

    /// Its name was chosen by someone this server trusts (the operator).
    pub fn name_is_checked(&self) -> bool {
        matches!(self, Vouched::Administrator)
    }

    /// One line saying what was checked, and by whom.
    pub fn line(&self) -> String {
        match self {
            Vouched::Administrator => "Registered by your administrator".into(),
            Vouched::Host(host) => format!("Web address verified: {host}. Its name and logo are its own."),
            Vouched::Nobody => "Unverified: it registered itself and chose its own name".into(),
        }
    }

    /// The short label: a badge for the unverified, the host for a metadata document.
    pub fn label(&self) -> String {
        match self {
            Vouched::Administrator => "Registered by your administrator".into(),
            Vouched::Host(host) => format!("Verified web address: {host}"),
            Vouched::Nobody => "Unverified".into(),
        }
    }
}

/// An app's name as pages show it: one line, without characters that reorder or hide text,
/// at most [`NAME_MAX_CHARS`] characters (longer ones end in "…").
pub fn short_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| if c.is_whitespace() { ' ' } else { c })
        .filter(|c| !is_invisible(*c))
        .collect::<String>()
        .split(' ')
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if cleaned.chars().count() <= NAME_MAX_CHARS {
        return cleaned;
    }
    let cut: String = cleaned.chars().take(NAME_MAX_CHARS - 1).collect();
    format!("{}…", cut.trim_end())
}

/// Control characters, bidirectional overrides and isolates, zero-width characters: they let a
/// name look like another one (`U+202E` turns "moc.elgoog" into "google.com").
fn is_invisible(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

/// A date as people read it, in UTC: "5 Dec 2026".
pub fn date(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .map(|d| {
            let month = &format!("{:?}", d.month())[..3];
            format!("{} {month} {}", d.day(), d.year())
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_one_short_line_without_tricks() {
        assert_eq!(short_name("Claude Code"), "Claude Code");
        assert_eq!(short_name("  Claude\n\tCode  "), "Claude Code");
        assert_eq!(short_name("evil\u{202E}moc.elgoog"), "evilmoc.elgoog");
        assert_eq!(short_name("a\u{200B}b"), "ab");
        let long = "x".repeat(100);
        let short = short_name(&long);
        assert_eq!(short.chars().count(), NAME_MAX_CHARS);
        assert!(short.ends_with('…'));
        assert_eq!(short_name(&"é".repeat(NAME_MAX_CHARS)), "é".repeat(NAME_MAX_CHARS), "counted in characters");
    }

    #[test]
    fn dates_read_as_people_write_them() {
        assert_eq!(date(1_796_428_800), "5 Dec 2026");
        assert_eq!(date(0), "1 Jan 1970");
    }

    #[test]
    fn vouching_says_what_was_checked() {
        assert!(Vouched::Host("claude.ai".into()).line().contains("Web address verified: claude.ai"));
        assert!(!Vouched::Host("claude.ai".into()).name_is_checked());
        assert!(Vouched::Administrator.name_is_checked());
        assert!(Vouched::Nobody.line().starts_with("Unverified"));
    }
}
