//! The socket settings as plain data: where the socket goes by default,
//! its mode bits and what to do with a leftover file. `transport::socket`
//! acts on them.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use nix::unistd::geteuid;
use serde::Deserialize;

/// A socket setting that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SocketSettingError {
    #[error("invalid socket mode {0:?}: use octal permission bits like \"0600\" (at most 0777)")]
    Mode(String),
    #[error("invalid bind mode {0:?}: use \"create_new\" or \"replace_stale\"")]
    BindMode(String),
}

/// What to do when the socket path already exists.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BindMode {
    /// For operators who want any leftover file to be looked at by a human.
    CreateNew,
    /// A crash leaves the socket file behind; restarting must not need manual cleanup.
    #[default]
    ReplaceStale,
}

impl FromStr for BindMode {
    type Err = SocketSettingError;
    fn from_str(s: &str) -> Result<Self, SocketSettingError> {
        match s {
            "create_new" => Ok(Self::CreateNew),
            "replace_stale" => Ok(Self::ReplaceStale),
            _ => Err(SocketSettingError::BindMode(s.to_owned())),
        }
    }
}

impl fmt::Display for BindMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::CreateNew => "create_new",
            Self::ReplaceStale => "replace_stale",
        })
    }
}

/// Permission bits of the socket file; only these gate who may connect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct SocketMode(u32);

impl SocketMode {
    pub fn bits(self) -> u32 {
        self.0
    }
}

impl Default for SocketMode {
    fn default() -> Self {
        Self(0o600)
    }
}

impl FromStr for SocketMode {
    type Err = SocketSettingError;
    fn from_str(s: &str) -> Result<Self, SocketSettingError> {
        let digits = s.strip_prefix("0o").unwrap_or(s);
        let ok = !digits.is_empty()
            && digits.len() <= 4
            && digits.bytes().all(|b| (b'0'..=b'7').contains(&b));
        match u32::from_str_radix(digits, 8) {
            Ok(bits) if ok && bits <= 0o777 => Ok(Self(bits)),
            _ => Err(SocketSettingError::Mode(s.to_owned())),
        }
    }
}

impl TryFrom<String> for SocketMode {
    type Error = SocketSettingError;
    fn try_from(s: String) -> Result<Self, SocketSettingError> {
        s.parse()
    }
}

impl fmt::Display for SocketMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

/// `$SGW_SOCKET`, else `$XDG_RUNTIME_DIR/sgw/sgw.sock`, else `/tmp/sgw-$UID/sgw.sock`.
pub fn default_socket_path() -> PathBuf {
    let var = |name| std::env::var_os(name).map(PathBuf::from);
    socket_path_from(
        var("SGW_SOCKET"),
        var("XDG_RUNTIME_DIR"),
        geteuid().as_raw(),
    )
}

fn socket_path_from(explicit: Option<PathBuf>, runtime: Option<PathBuf>, uid: u32) -> PathBuf {
    match (explicit, runtime) {
        (Some(p), _) if !p.as_os_str().is_empty() => p,
        (_, Some(r)) if r.is_absolute() => r.join("sgw").join("sgw.sock"),
        _ => PathBuf::from(format!("/tmp/sgw-{uid}/sgw.sock")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    /// Config values round-trip; special bits and non-octal input are rejected.
    #[test]
    fn parses_modes_and_bind_modes() {
        use serde::de::IntoDeserializer;
        type E = serde::de::value::Error;
        assert_eq!("0600".parse::<SocketMode>().unwrap().bits(), 0o600);
        assert_eq!("660".parse::<SocketMode>().unwrap().to_string(), "0660");
        assert_eq!(SocketMode::default().to_string(), "0600");
        for bad in [
            "", "0800", "4755", "01777", "rw", "+600", "0x1ff", "00000600", "-600",
        ] {
            assert!(bad.parse::<SocketMode>().is_err(), "{bad}");
        }
        assert_eq!(
            "create_new".parse::<BindMode>().unwrap(),
            BindMode::CreateNew
        );
        assert_eq!(BindMode::default().to_string(), "replace_stale");
        assert!("CreateNew".parse::<BindMode>().is_err());
        let de: serde::de::value::StrDeserializer<'_, E> = "create_new".into_deserializer();
        assert_eq!(BindMode::deserialize(de).unwrap(), BindMode::CreateNew);
        let de: serde::de::value::StrDeserializer<'_, E> = "0640".into_deserializer();
        assert_eq!(SocketMode::deserialize(de).unwrap().bits(), 0o640);
        let de: serde::de::value::StrDeserializer<'_, E> = "0999".into_deserializer();
        assert!(SocketMode::deserialize(de).is_err());
    }

    /// Clients find the socket without flags only if this precedence holds.
    #[test]
    fn default_path_precedence() {
        let p = |s: &str| Some(PathBuf::from(s));
        assert_eq!(
            socket_path_from(p("/x.sock"), p("/run/user/7"), 7),
            PathBuf::from("/x.sock")
        );
        assert_eq!(
            socket_path_from(None, p("/run/user/7"), 7),
            PathBuf::from("/run/user/7/sgw/sgw.sock")
        );
        assert_eq!(
            socket_path_from(p(""), p("relative"), 7),
            PathBuf::from("/tmp/sgw-7/sgw.sock")
        );
        assert_eq!(
            socket_path_from(None, None, 7),
            PathBuf::from("/tmp/sgw-7/sgw.sock")
        );
    }
}
