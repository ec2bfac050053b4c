use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer};

/// Where the metrics endpoint listens. Off unless asked for: a scrape
/// port is one more thing reachable from the network, so it is never
/// opened by default.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum MetricsListen {
    #[default]
    Off,
    /// `"127.0.0.1:9464"`; port 0 takes a free port (printed at start).
    Tcp(SocketAddr),
    /// `"/run/sgw/metrics.sock"`: only who may open the file can scrape.
    Unix(PathBuf),
}

impl fmt::Display for MetricsListen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetricsListen::Off => f.write_str("off"),
            MetricsListen::Tcp(address) => address.fmt(f),
            MetricsListen::Unix(path) => path.display().fmt(f),
        }
    }
}

impl<'de> Deserialize<'de> for MetricsListen {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl std::str::FromStr for MetricsListen {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Ok(MetricsListen::Off);
        }
        if text.starts_with('/') {
            return Ok(MetricsListen::Unix(PathBuf::from(text)));
        }
        text.parse().map(MetricsListen::Tcp).map_err(|_| {
            format!(
                "invalid address {text:?}: expected an IP address and port like \"127.0.0.1:9464\" \
                 or \"[::1]:9464\", or an absolute Unix socket path"
            )
        })
    }
}

/// `[metrics]`: the OpenMetrics endpoint (`GET /metrics`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Absent or `""`: no endpoint.
    pub listen: MetricsListen,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn listen_takes_an_address_a_path_or_nothing() {
        let parse = |text: &str| Config::parse(text, "x.toml").map(|c| c.metrics.listen);
        assert_eq!(parse(""), Ok(MetricsListen::Off));
        assert_eq!(parse("[metrics]\nlisten = \"\"\n"), Ok(MetricsListen::Off));
        assert_eq!(
            parse("[metrics]\nlisten = \"127.0.0.1:9464\"\n"),
            Ok(MetricsListen::Tcp(([127, 0, 0, 1], 9464).into()))
        );
        assert_eq!(
            parse("[metrics]\nlisten = \"/run/sgw/metrics.sock\"\n"),
            Ok(MetricsListen::Unix("/run/sgw/metrics.sock".into()))
        );
    }

    /// A bad value is refused at its line, naming the key; so is an
    /// unknown key.
    #[test]
    fn bad_listen_values_name_the_key_and_line() {
        for (text, needle) in [
            (
                "[metrics]\nlisten = \"localhost:9464\"\n",
                "listen: invalid address \"localhost:9464\"",
            ),
            ("[metrics]\nlisten = \"metrics.sock\"\n", "absolute"),
            ("[metrics]\nlisten = 9464\n", "listen: invalid type"),
            ("[metrics]\nlisen = \"127.0.0.1:9464\"\n", "lisen"),
        ] {
            let error = Config::parse(text, "x.toml").expect_err(text);
            assert_eq!(error.position.map(|p| p.0), Some(2), "{error}");
            assert!(error.to_string().contains(needle), "{text}: {error}");
        }
    }
}
