use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer};

/// A child's id: `[a-z0-9][a-z0-9_-]{0,62}`. Validated on construction so
/// every `ChildId` in the program is a valid one; cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChildId(Arc<str>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid child id {id:?}: ids are 1-63 characters of a-z, 0-9, '_' and '-', starting with a letter or digit"
)]
pub struct InvalidChildId {
    pub id: String,
}

impl ChildId {
    pub fn new(id: &str) -> Result<Self, InvalidChildId> {
        let bytes = id.as_bytes();
        let valid = matches!(bytes.first(), Some(b) if b.is_ascii_lowercase() || b.is_ascii_digit())
            && bytes.len() <= 63
            && bytes
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_' || *b == b'-');
        if valid {
            Ok(Self(Arc::from(id)))
        } else {
            Err(InvalidChildId { id: id.to_owned() })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ChildId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ChildId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl std::str::FromStr for ChildId {
    type Err = InvalidChildId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl<'de> Deserialize<'de> for ChildId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        ChildId::new(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_rejects_per_grammar() {
        for ok in ["a", "0", "web", "db-1", "a_b", &"x".repeat(63)] {
            assert!(ChildId::new(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "_a", "A", "web.1", "a b", &"x".repeat(64), "é"] {
            assert!(ChildId::new(bad).is_err(), "{bad}");
        }
    }
}
