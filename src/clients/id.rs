//! A client identifier, as a request names it: a registered id, or the URL of a Client ID
//! Metadata Document. Which of the two is decided once, when the identifier is read.

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClientId {
    id: String,
    document: bool,
}

impl ClientId {
    pub fn parse(id: impl Into<String>) -> ClientId {
        let id = id.into();
        let document = super::cimd::is_client_id_url(&id);
        ClientId { id, document }
    }

    pub fn as_str(&self) -> &str {
        &self.id
    }

    /// The identifier is a metadata-document URL (the client is resolved by fetching it).
    pub fn is_metadata_document(&self) -> bool {
        self.document
    }
}

impl std::ops::Deref for ClientId {
    type Target = str;
    fn deref(&self) -> &str {
        &self.id
    }
}

impl AsRef<str> for ClientId {
    fn as_ref(&self) -> &str {
        &self.id
    }
}

impl From<&str> for ClientId {
    fn from(id: &str) -> ClientId {
        ClientId::parse(id)
    }
}

impl From<String> for ClientId {
    fn from(id: String) -> ClientId {
        ClientId::parse(id)
    }
}

impl PartialEq<str> for ClientId {
    fn eq(&self, other: &str) -> bool {
        self.id == other
    }
}

impl PartialEq<&str> for ClientId {
    fn eq(&self, other: &&str) -> bool {
        self.id == *other
    }
}

impl PartialEq<String> for ClientId {
    fn eq(&self, other: &String) -> bool {
        &self.id == other
    }
}

/// Stored (sessions) and sent as the plain identifier; read back through [`ClientId::parse`].
impl serde::Serialize for ClientId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.id)
    }
}

impl<'de> serde::Deserialize<'de> for ClientId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(ClientId::parse)
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_is_decided_at_parse_time() {
        assert!(ClientId::parse("https://app.example.com/client.json").is_metadata_document());
        assert!(!ClientId::parse("abc123").is_metadata_document());
        assert!(!ClientId::parse("https://app.example.com/").is_metadata_document());
        assert_eq!(ClientId::parse("abc123").as_str(), "abc123");
    }
}
