//! The `[metrics]` endpoint of a real `sgw serve`, on TCP and on a Unix
//! socket: scraped with plain HTTP/1.1 requests, checked against what the
//! gateway says over gRPC and against a real crash, and validated by
//! `promtool check metrics` (installed by `scripts/install-test-tools`).
//! promtool reads the Prometheus text format (0.0.4) only, so it checks
//! the scrape a client asking for `text/plain` gets: the same metrics
//! from the same encoder, without OpenMetrics' `# UNIT`/`# EOF` lines.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use supervisor_gateway::pb;

use crate::cli_support::{self, Server};
use crate::support::{PATIENCE, tool};

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A steady child, and one that exits 3 on its first run only (a marker
/// file remembers), so that exactly one crash and one restart happen.
fn config(dir: &Path, listen: &str) -> String {
    let marker = dir.join("crashed");
    format!(
        r#"
[gateway]
target_id = "metrics-test"

[metrics]
listen = "{listen}"

[[child]]
id = "steady"
command = ["/bin/sh", "-c", "exec sleep 1000"]
ready_after = "200ms"
stop_timeout = "2s"

[[child]]
id = "crasher"
command = ["/bin/sh", "-c", "if [ -e '{marker}' ]; then exec sleep 1000; fi; : > '{marker}'; exit 3"]
ready_after = "200ms"
backoff = {{ initial = "50ms" }}
stop_timeout = "2s"
"#,
        marker = marker.display()
    )
}

/// Where the endpoint listens, as `sgw serve` printed it.
enum Endpoint {
    Tcp(String),
    Unix(std::path::PathBuf),
}

/// An HTTP response: the status line, the headers (lower-cased names), the body.
type Response = (String, Vec<(String, String)>, String);

impl Endpoint {
    fn from_line(line: &str) -> Endpoint {
        let url = line.strip_prefix("sgw: metrics on ").expect("metrics line");
        if let Some(path) = url.strip_prefix("unix:") {
            Endpoint::Unix(path.into())
        } else {
            let address = url
                .strip_prefix("http://")
                .and_then(|rest| rest.strip_suffix("/metrics"))
                .unwrap_or_else(|| panic!("not an http URL of /metrics: {line}"));
            Endpoint::Tcp(address.to_owned())
        }
    }

    /// One `GET path` with `Connection: close` (and `accept`, if any):
    /// the status line, the headers (lower-cased names) and the body.
    fn get(&self, path: &str, accept: Option<&str>) -> Response {
        self.try_get(path, accept)
            .unwrap_or_else(|| panic!("GET {path}: connection closed unanswered"))
    }

    /// [`Self::get`], or `None` if the connection closed (or failed)
    /// before a response head arrived.
    fn try_get(&self, path: &str, accept: Option<&str>) -> Option<Response> {
        let accept = accept.map_or(String::new(), |a| format!("Accept: {a}\r\n"));
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{accept}Connection: close\r\n\r\n");
        let mut raw = Vec::new();
        let mut exchange = |stream: &mut dyn ReadWrite| -> std::io::Result<()> {
            stream.write_all(request.as_bytes())?;
            stream.read_to_end(&mut raw).map(drop)
        };
        let done = match self {
            Endpoint::Tcp(address) => std::net::TcpStream::connect(address).and_then(|mut s| {
                s.set_read_timeout(Some(PATIENCE))?;
                exchange(&mut s)
            }),
            Endpoint::Unix(path) => {
                std::os::unix::net::UnixStream::connect(path).and_then(|mut s| {
                    s.set_read_timeout(Some(PATIENCE))?;
                    exchange(&mut s)
                })
            }
        };
        done.ok()?;
        let raw = String::from_utf8(raw).expect("utf-8 response");
        let (head, body) = raw.split_once("\r\n\r\n")?;
        let mut lines = head.split("\r\n");
        let status = lines.next()?.to_owned();
        let headers = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
            .collect();
        Some((status, headers, body.to_owned()))
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// The value of the sample written exactly as `series` (name and labels).
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {series} in:\n{text}"))
        .split(' ')
        .next()
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("sample {series} is not a number"))
}

/// `promtool check metrics` on `text`: it must find no problem at all
/// (it exits 0 with lint warnings, so its output must be empty too).
fn promtool_check(text: &str) {
    let promtool = tool("promtool");
    let mut child = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", promtool.display()));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("feed promtool");
    let output = child.wait_with_output().expect("promtool output");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && said.trim().is_empty(),
        "promtool check metrics: {}\n{said}\nscrape:\n{text}",
        output.status
    );
}

/// Waits (on the event stream, backlog included) until both children
/// are RUNNING, the crasher in a generation after its crash.
async fn wait_both_running(client: &mut supervisor_gateway::client::Client) {
    let mut stream = client
        .journal
        .subscribe_events(pb::SubscribeEventsRequest {
            include_backlog: true,
            event_types: vec![pb::EventType::ChildRunning as i32],
            ..Default::default()
        })
        .await
        .expect("subscribe")
        .into_inner();
    let (mut steady, mut crasher) = (false, false);
    let wait = async {
        while !(steady && crasher) {
            let message = stream.message().await.expect("stream").expect("open");
            if let Some(pb::subscribe_events_response::Item::Event(event)) = message.item
                && let Some(pb::event::Detail::ChildRunning(running)) = event.detail
            {
                match event.child_id.as_str() {
                    "steady" => steady = true,
                    "crasher" if running.generation >= 2 => crasher = true,
                    _ => {}
                }
            }
        }
    };
    tokio::time::timeout(PATIENCE, wait)
        .await
        .expect("both children RUNNING, the crasher after its crash");
}

/// Starts `sgw serve` with `[metrics] listen = listen` and checks the
/// scrape against the gateway and the crash; returns the server, stopped.
async fn scrape_and_check(dir: &Path, listen: &str) -> Server {
    let socket = dir.join("sgw.sock");
    let mut server = Server::start(&config(dir, listen), &socket);
    let line = server
        .stdout
        .until("the metrics line", |l| l.starts_with("sgw: metrics on "));
    let endpoint = Endpoint::from_line(&line);
    let mut client = supervisor_gateway::client::connect(&socket)
        .await
        .expect("connect");
    wait_both_running(&mut client).await;
    let state = client
        .control
        .get_state(pb::GetStateRequest::default())
        .await
        .expect("GetState")
        .into_inner();
    let missing = client
        .control
        .get_child(pb::GetChildRequest {
            child_id: "nope".into(),
        })
        .await
        .expect_err("no such child");
    assert_eq!(missing.code(), tonic::Code::NotFound);

    let (status, headers, text) = endpoint.get("/metrics", None);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        headers.contains(&("content-type".to_owned(), CONTENT_TYPE.to_owned())),
        "{headers:?}"
    );
    for (child, state) in [("steady", "running"), ("crasher", "running")] {
        assert_eq!(
            sample(
                &text,
                &format!(r#"sgw_child_state{{child="{child}",state="{state}"}}"#)
            ),
            1.0
        );
    }
    assert_eq!(
        sample(&text, r#"sgw_child_state{child="crasher",state="backoff"}"#),
        0.0
    );
    assert_eq!(
        sample(&text, r#"sgw_child_restarts_total{child="crasher"}"#),
        1.0
    );
    assert_eq!(
        sample(&text, r#"sgw_child_restarts_total{child="steady"}"#),
        0.0
    );
    assert_eq!(
        sample(
            &text,
            r#"sgw_child_exits_total{child="crasher",code="3",signal=""}"#
        ),
        1.0
    );
    assert!(
        !text.contains(r#"sgw_child_exits_total{child="steady""#),
        "{text}"
    );
    assert!(sample(&text, r#"sgw_child_uptime_seconds{child="steady"}"#) >= 0.2);
    assert!(sample(&text, r#"sgw_child_memory_bytes{child="steady"}"#) > 0.0);
    assert!(
        sample(&text, "sgw_journal_last_event_sequence") >= state.last_event_sequence as f64,
        "journal head behind GetState's {}",
        state.last_event_sequence
    );
    assert_eq!(
        sample(
            &text,
            r#"sgw_rpc_requests_total{method="supervisor.gateway.v1.ControlService/GetChild",code="NOT_FOUND"}"#
        ),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            r#"sgw_rpc_requests_total{method="supervisor.gateway.v1.ControlService/GetState",code="OK"}"#
        ),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            r#"sgw_rpc_duration_seconds_count{method="supervisor.gateway.v1.ControlService/GetState"}"#
        ),
        1.0
    );
    // The subscription counted when its response started.
    assert_eq!(
        sample(
            &text,
            r#"sgw_rpc_requests_total{method="supervisor.gateway.v1.JournalService/SubscribeEvents",code="OK"}"#
        ),
        1.0
    );
    assert!(
        sample(&text, "sgw_gateway_connections_open") >= 1.0,
        "our client"
    );
    assert!(sample(&text, "sgw_gateway_connections_accepted_total") >= 1.0);
    assert!(text.ends_with("# EOF\n"), "{text}");

    let (status, headers, plain) = endpoint.get("/metrics", Some("text/plain; version=0.0.4"));
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        headers.contains(&("content-type".to_owned(), TEXT_CONTENT_TYPE.to_owned())),
        "{headers:?}"
    );
    assert_eq!(
        sample(
            &plain,
            r#"sgw_child_exits_total{child="crasher",code="3",signal=""}"#
        ),
        1.0
    );
    promtool_check(&plain);

    let (status, _, _) = endpoint.get("/other", None);
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    drop(client);
    // Off the runtime: it must stay free to close the client's connection,
    // or the server's drain waits for it.
    tokio::task::spawn_blocking(move || {
        assert!(server.stop().success());
        server
    })
    .await
    .expect("stopped")
}

/// Guards the TCP endpoint, port 0 included (the port bound is printed):
/// child state, a real crash in restarts and exits by code, RPCs by
/// method and code, the journal head, and promtool's verdict.
#[tokio::test]
async fn tcp_endpoint_reports_children_rpcs_and_journal() {
    let dir = tempfile::tempdir().expect("tempdir");
    scrape_and_check(dir.path(), "127.0.0.1:0").await;
}

/// Guards the Unix socket endpoint: the same scrape, and the socket file
/// is gone after the server stops.
#[tokio::test]
async fn unix_endpoint_reports_the_same_and_cleans_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("metrics.sock");
    let listen = path.to_str().expect("utf-8 path");
    let _stopped = scrape_and_check(dir.path(), listen).await;
    assert!(!path.exists(), "metrics socket removed at shutdown");
}

/// Guards the bound on scrapes at once: while `MAX_CONNECTIONS` clients
/// hold a connection and send nothing, one more is closed unanswered even
/// though it sends a whole request; once they go, scrapes are served.
#[test]
fn connections_past_the_cap_are_closed_unanswered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = Server::start(
        &config(dir.path(), "127.0.0.1:0"),
        &dir.path().join("sgw.sock"),
    );
    let line = server
        .stdout
        .until("the metrics line", |l| l.starts_with("sgw: metrics on "));
    let Endpoint::Tcp(address) = Endpoint::from_line(&line) else {
        panic!("a TCP endpoint: {line}");
    };
    // Accepted in connect order, so these take every slot (no scrape ran).
    let held: Vec<_> = (0..supervisor_gateway::metrics::MAX_CONNECTIONS)
        .map(|_| std::net::TcpStream::connect(&address).expect("connect"))
        .collect();
    let mut extra = std::net::TcpStream::connect(&address).expect("connect");
    extra.set_read_timeout(Some(PATIENCE)).expect("timeout");
    // The server may close before reading it: a failed write is fine too.
    let _ = extra.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let mut answer = Vec::new();
    // Closed, not left waiting: EOF, or a reset for the unread request.
    match extra.read_to_end(&mut answer) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the connection past the cap was not closed: {e}"),
    }
    assert!(
        answer.is_empty(),
        "answered past the cap: {}",
        String::from_utf8_lossy(&answer)
    );
    drop(held);
    // Nothing tells a client when the server has seen those connections
    // close and freed their slots: retry until a scrape is answered.
    let endpoint = Endpoint::Tcp(address);
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        match endpoint.try_get("/metrics", None) {
            Some((status, _, _)) => {
                assert_eq!(status, "HTTP/1.1 200 OK");
                break;
            }
            None if std::time::Instant::now() < deadline => std::thread::yield_now(),
            None => panic!("no scrape served after the held connections closed"),
        }
    }
    assert!(server.stop().success());
}

/// A `[metrics] listen` that is not an address is a config error naming
/// the file, line and key, for `check-config` and `serve` alike.
#[test]
fn bad_listen_is_a_config_error_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[metrics]\nlisten = \"localhost\"\n").expect("write");
    let file = file.to_str().expect("utf-8 path");
    let checked = cli_support::sgw(&["check-config", file]);
    assert_eq!(checked.status.code(), Some(2));
    let said = cli_support::stderr(&checked) + &cli_support::stdout(&checked);
    assert!(
        said.contains(&format!("{file}:2:")) && said.contains("listen: invalid address"),
        "{said}"
    );
    let socket = dir.path().join("sgw.sock");
    let served = cli_support::sgw(&[
        "serve",
        "--config",
        file,
        "--socket",
        socket.to_str().expect("utf-8"),
    ]);
    assert_eq!(served.status.code(), Some(2));
    assert!(cli_support::stderr(&served).contains("listen: invalid address"));
}

/// An address that cannot be bound (taken here) makes `sgw serve` fail
/// at start, naming the address, before any child runs.
#[test]
fn unbindable_listen_fails_serve_naming_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = taken.local_addr().expect("address").to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("sgw.toml");
    let marker = dir.path().join("started");
    std::fs::write(
        &file,
        format!(
            "[metrics]\nlisten = \"{address}\"\n\n[[child]]\nid = \"a\"\ncommand = [\"/bin/sh\", \"-c\", \": > '{}'; exec sleep 1000\"]\n",
            marker.display()
        ),
    )
    .expect("write");
    let socket = dir.path().join("sgw.sock");
    let state_dir = dir.path().join("state");
    let output = cli_support::sgw(&[
        "serve",
        "--config",
        file.to_str().expect("utf-8"),
        "--socket",
        socket.to_str().expect("utf-8"),
        "--state-dir",
        state_dir.to_str().expect("utf-8"),
    ]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on {address}")),
        "{stderr}"
    );
    assert!(!marker.exists(), "no child started");
    drop(taken);
}
