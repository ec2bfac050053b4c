//! Readiness and liveness: how a child says it is ready (`ready`), how sgw
//! checks that it stays healthy (`health`), and how a run that stopped
//! being healthy is described. Nothing here does I/O.

use std::fmt;
use std::time::Duration;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::spec::{optional_duration, optional_duration_text};

/// How a child says it is ready: `ready = "notify"` (the sd_notify
/// protocol, as systemd's `Type=notify`) or a probe table.
#[derive(Debug, Clone, PartialEq)]
pub enum Ready {
    Notify,
    Probe(Probe),
}

/// A check sgw runs every `interval`: `threshold` consecutive results
/// (successes for readiness, failures for liveness) decide.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    pub check: Check,
    pub interval: Duration,
    pub timeout: Duration,
    /// Unset: 1 for readiness, 3 for liveness (see [`Probe::threshold`]).
    pub threshold: Option<u32>,
}

/// Consecutive successes a readiness probe needs by default.
pub const READY_THRESHOLD: u32 = 1;
/// Consecutive failures a liveness probe needs by default: one lost
/// packet must not restart a service.
pub const HEALTH_THRESHOLD: u32 = 3;
const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

impl Probe {
    pub fn new(check: Check) -> Self {
        Self {
            check,
            interval: DEFAULT_INTERVAL,
            timeout: DEFAULT_TIMEOUT,
            threshold: None,
        }
    }

    pub fn threshold(&self, default: u32) -> u32 {
        self.threshold.unwrap_or(default)
    }
}

/// What a probe does.
#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    /// Runs the program; success is exit 0 within the timeout.
    Exec(Vec<String>),
    /// Success is a TCP connection accepted within the timeout.
    Tcp(TcpTarget),
    /// Success is a 2xx or 3xx answer to a GET within the timeout.
    Http(HttpTarget),
}

impl fmt::Display for Check {
    /// `exec check.sh --quick`, `tcp 127.0.0.1:8080`, `http http://…/healthz`:
    /// how events name the probe.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Check::Exec(command) => write!(f, "exec {}", command.join(" ")),
            Check::Tcp(target) => write!(f, "tcp {target}"),
            Check::Http(target) => write!(f, "http {target}"),
        }
    }
}

/// `HOST:PORT`, the host a name or an address (`[::1]:80` for IPv6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TcpTarget {
    pub host: String,
    pub port: u16,
}

impl TryFrom<String> for TcpTarget {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        let invalid = || {
            format!(
                "invalid tcp address {:?}: expected HOST:PORT such as \"127.0.0.1:8080\"",
                super::echo(&text)
            )
        };
        let (host, port) = text.rsplit_once(':').ok_or_else(invalid)?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let port = port.parse::<u16>().map_err(|_| invalid())?;
        if host.is_empty() || port == 0 || host.contains(char::is_whitespace) {
            return Err(invalid());
        }
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }
}

impl From<TcpTarget> for String {
    fn from(target: TcpTarget) -> String {
        target.to_string()
    }
}

impl fmt::Display for TcpTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// An `http://` URL (sgw speaks no TLS to its children).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HttpTarget {
    pub uri: http::Uri,
}

impl HttpTarget {
    /// Where to connect: the URL's host and port (80 by default).
    pub fn address(&self) -> TcpTarget {
        TcpTarget {
            host: self.uri.host().unwrap_or_default().to_owned(),
            port: self.uri.port_u16().unwrap_or(80),
        }
    }
}

impl TryFrom<String> for HttpTarget {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        let invalid = |why: &str| {
            format!(
                "invalid http probe URL {:?}: {why}; e.g. \"http://127.0.0.1:8080/healthz\"",
                super::echo(&text)
            )
        };
        let uri: http::Uri = text.parse().map_err(|_| invalid("not a URL"))?;
        if uri.scheme_str() != Some("http") {
            return Err(invalid("only http:// is supported"));
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(invalid("it names no host"));
        }
        Ok(Self { uri })
    }
}

impl From<HttpTarget> for String {
    fn from(target: HttpTarget) -> String {
        target.uri.to_string()
    }
}

impl fmt::Display for HttpTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.uri.fmt(f)
    }
}

/// A probe as the config writes it: one of `exec`, `tcp`, `http`, and the
/// optional timing keys.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct ProbeTable {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exec: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tcp: Option<TcpTarget>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    http: Option<HttpTarget>,
    #[serde(
        default,
        deserialize_with = "optional_duration",
        serialize_with = "optional_duration_text"
    )]
    interval: Option<Duration>,
    #[serde(
        default,
        deserialize_with = "optional_duration",
        serialize_with = "optional_duration_text"
    )]
    timeout: Option<Duration>,
    #[serde(default)]
    threshold: Option<u32>,
}

impl<'de> Deserialize<'de> for Probe {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let table = ProbeTable::deserialize(deserializer)?;
        let check = match (table.exec, table.tcp, table.http) {
            (Some(command), None, None) => Check::Exec(command),
            (None, Some(target), None) => Check::Tcp(target),
            (None, None, Some(target)) => Check::Http(target),
            _ => {
                return Err(de::Error::custom(
                    "a probe needs exactly one of exec = [...], tcp = \"HOST:PORT\" or http = \"http://...\"",
                ));
            }
        };
        Ok(Self {
            check,
            interval: table.interval.unwrap_or(DEFAULT_INTERVAL),
            timeout: table.timeout.unwrap_or(DEFAULT_TIMEOUT),
            threshold: table.threshold,
        })
    }
}

impl Serialize for Probe {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut table = ProbeTable {
            exec: None,
            tcp: None,
            http: None,
            interval: Some(self.interval),
            timeout: Some(self.timeout),
            threshold: self.threshold,
        };
        match &self.check {
            Check::Exec(command) => table.exec = Some(command.clone()),
            Check::Tcp(target) => table.tcp = Some(target.clone()),
            Check::Http(target) => table.http = Some(target.clone()),
        }
        table.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Ready {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ReadyVisitor;
        impl<'de> Visitor<'de> for ReadyVisitor {
            type Value = Ready;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"notify\" or a probe table such as { tcp = \"127.0.0.1:8080\" }")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Ready, E> {
                match text {
                    "notify" => Ok(Ready::Notify),
                    other => Err(E::custom(format!(
                        "invalid ready {:?}: expected \"notify\" or a probe table such as {{ tcp = \"127.0.0.1:8080\" }}",
                        super::echo(other)
                    ))),
                }
            }
            fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<Ready, M::Error> {
                Probe::deserialize(de::value::MapAccessDeserializer::new(map)).map(Ready::Probe)
            }
        }
        deserializer.deserialize_any(ReadyVisitor)
    }
}

impl Serialize for Ready {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Ready::Notify => serializer.serialize_str("notify"),
            Ready::Probe(probe) => probe.serialize(serializer),
        }
    }
}

/// Why sgw ended a run that was still going: it stopped being healthy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Unhealthy {
    /// The `health` probe failed `failures` times in a row.
    Probe {
        probe: String,
        /// The last failure: the probe's output or the error.
        output: String,
        failures: u32,
    },
    /// No `WATCHDOG=1` arrived within `watchdog`.
    Watchdog { timeout: Duration },
    /// The child was not ready within `ready_timeout`.
    NotReady {
        timeout: Duration,
        /// `notify`, or the readiness probe.
        probe: String,
        /// What was last seen: the probe's last error, or that no
        /// `READY=1` came.
        output: String,
    },
}

impl fmt::Display for Unhealthy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unhealthy::Probe {
                probe,
                output,
                failures,
            } => write!(
                f,
                "health probe {probe} failed {failures} time{} in a row: {output}",
                if *failures == 1 { "" } else { "s" }
            ),
            Unhealthy::Watchdog { timeout } => write!(
                f,
                "watchdog timeout: no WATCHDOG=1 within {}",
                humantime::format_duration(*timeout)
            ),
            Unhealthy::NotReady {
                timeout,
                probe,
                output,
            } => write!(
                f,
                "not ready within ready_timeout {} ({probe}): {output}",
                humantime::format_duration(*timeout)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_targets_need_a_host_and_a_port() {
        let parsed = TcpTarget::try_from("[::1]:5432".to_owned()).expect("ipv6");
        assert_eq!((parsed.host.as_str(), parsed.port), ("::1", 5432));
        assert_eq!(parsed.to_string(), "[::1]:5432");
        for bad in ["nonsense", "host:", ":80", "host:99999", "host:0"] {
            assert!(TcpTarget::try_from(bad.to_owned()).is_err(), "{bad}");
        }
    }

    #[test]
    fn http_targets_are_plain_http_urls_with_a_host() {
        let target = HttpTarget::try_from("http://localhost/healthz".to_owned()).expect("url");
        assert_eq!(target.address().to_string(), "localhost:80");
        let error = HttpTarget::try_from("https://localhost/".to_owned()).expect_err("tls");
        assert!(error.contains("only http://"), "{error}");
        assert!(HttpTarget::try_from("/healthz".to_owned()).is_err());
    }

    /// `ready` is `"notify"` or one probe table; anything else says what
    /// it should be.
    #[test]
    fn ready_takes_notify_or_exactly_one_check() {
        let parse = |text: &str| toml::from_str::<ReadyKey>(text).map(|t| t.ready);
        assert_eq!(parse("ready = \"notify\"").expect("notify"), Ready::Notify);
        let probe = parse("ready = { tcp = \"127.0.0.1:80\", threshold = 2 }").expect("tcp");
        match probe {
            Ready::Probe(p) => {
                assert_eq!(p.threshold(READY_THRESHOLD), 2);
                assert_eq!(p.interval, DEFAULT_INTERVAL);
            }
            Ready::Notify => panic!("a probe"),
        }
        let error = parse("ready = \"sd_notify\"").expect_err("unknown");
        assert!(error.to_string().contains("expected \"notify\""), "{error}");
        let error = parse("ready = { tcp = \"a:1\", http = \"http://a/\" }").expect_err("two");
        assert!(error.to_string().contains("exactly one of"), "{error}");
        let error = parse("ready = { tcp = \"a:1\", intervall = \"1s\" }").expect_err("typo");
        assert!(error.to_string().contains("intervall"), "{error}");
    }

    #[derive(Deserialize)]
    struct ReadyKey {
        ready: Ready,
    }
}
