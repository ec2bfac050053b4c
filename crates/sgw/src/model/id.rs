use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

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

/// How much of a client's input an error message repeats.
const ECHO_CHARS: usize = 64;

/// Client input as an error message may repeat it: cut to `ECHO_CHARS` (64)
/// characters, saying how long it was. A status message travels in a
/// header (`grpc-message`); echoing a 20 KB id whole makes clients report
/// the header's size instead of the real mistake.
pub fn echo(input: &str) -> String {
    match input.char_indices().nth(ECHO_CHARS) {
        None => input.to_owned(),
        Some((cut, _)) => format!("{}... ({} bytes)", &input[..cut], input.len()),
    }
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
            Err(InvalidChildId { id: echo(id) })
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

impl Serialize for ChildId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
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

    /// A huge invalid id is not repeated whole in the error.
    #[test]
    fn errors_echo_a_bounded_prefix() {
        let huge = "X".repeat(20_000);
        let message = ChildId::new(&huge).expect_err("invalid").to_string();
        assert!(message.len() < 300, "{} bytes", message.len());
        assert!(message.contains("(20000 bytes)"), "{message}");
        assert_eq!(echo("short"), "short");
        assert_eq!(
            echo(&"é".repeat(70)).chars().filter(|c| *c == 'é').count(),
            64
        );
    }
}
