//! Helpers for the legacy adapter's tests: a line client, golden
//! comparison without the volatile fields, expected shapes, a test relay.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use supervisor_gateway::control::ControlPlane;
use supervisor_gateway::journal::Start;
use supervisor_gateway::model::EventKind;
use supervisor_gateway::transport::legacy::LegacyOptions;

use super::{PATIENCE, TestGateway, wait_event};

/// A `dashboard-ipc.v1` client: one JSON line out, one JSON line in.
pub struct LegacyClient {
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::net::unix::OwnedReadHalf>>,
    writer: tokio::net::unix::OwnedWriteHalf,
}

impl LegacyClient {
    pub async fn connect(path: &std::path::Path) -> Self {
        use tokio::io::AsyncBufReadExt;
        let stream = tokio::net::UnixStream::connect(path)
            .await
            .expect("connect to the legacy socket");
        let (read, writer) = stream.into_split();
        Self {
            lines: tokio::io::BufReader::new(read).lines(),
            writer,
        }
    }

    /// Writes raw bytes as they are (no newline added).
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        self.writer
            .write_all(bytes)
            .await
            .expect("write to gateway");
    }

    /// Writes one request line.
    pub async fn send(&mut self, request: &serde_json::Value) {
        let mut line = request.to_string();
        line.push('\n');
        self.send_raw(line.as_bytes()).await;
    }

    /// Closes the write half (EOF for the gateway).
    pub async fn finish_writing(&mut self) {
        use tokio::io::AsyncWriteExt;
        self.writer.shutdown().await.expect("shutdown write half");
    }

    /// The next line, or `None` once the gateway closed the connection
    /// (EOF or reset).
    pub async fn recv_line(&mut self) -> Option<String> {
        tokio::time::timeout(PATIENCE, self.lines.next_line())
            .await
            .expect("a line or a close in time")
            .ok()
            .flatten()
    }

    /// The next line as JSON; fails the test if the connection closed.
    pub async fn recv(&mut self) -> serde_json::Value {
        let line = self.recv_line().await.expect("a line before the close");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    }

    /// Sends a request and returns the next line.
    pub async fn call(&mut self, request: serde_json::Value) -> serde_json::Value {
        self.send(&request).await;
        self.recv().await
    }
}

/// Keys whose values change from run to run (clocks, process ids, and a
/// running child's resource usage, which also depends on the host's
/// cgroup delegation; its shape is checked by the adapter's unit tests;
/// the journal id is random per journal).
pub const VOLATILE: [&str; 7] = [
    "occurred_at_unix_nanos",
    "generated_at_unix_nanos",
    "updated_at_unix_nanos",
    "completed_at_unix_nanos",
    "pid",
    "usage",
    "journal_id",
];

/// Replaces volatile values with a marker, and the pid inside outcome
/// strings ("restarted (generation 2, pid 4242)") with `N`.
pub fn normalize(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(key, value)| {
                    if VOLATILE.contains(&key.as_str()) && !value.is_null() {
                        (key, json!("<volatile>"))
                    } else {
                        (key, normalize(value))
                    }
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(normalize).collect()),
        Value::String(text) => Value::String(scrub_pid(&text)),
        other => other,
    }
}

/// `"... pid 4242)"` → `"... pid N)"`.
pub fn scrub_pid(text: &str) -> String {
    match text.find("pid ") {
        Some(at) => {
            let digits = text[at + 4..]
                .chars()
                .take_while(char::is_ascii_digit)
                .count();
            if digits == 0 {
                return text.to_owned();
            }
            format!("{}pid N{}", &text[..at], &text[at + 4 + digits..])
        }
        None => text.to_owned(),
    }
}

/// Sends `request` and compares the answer with `expected`, structurally
/// and without the volatile fields.
pub async fn golden(client: &mut LegacyClient, request: Value, expected: Value) {
    let response = client.call(request.clone()).await;
    let (actual, expected) = (normalize(response), normalize(expected));
    assert_eq!(
        actual,
        expected,
        "\nrequest:  {request}\nactual:   {}\nexpected: {}",
        serde_json::to_string_pretty(&actual).unwrap_or_default(),
        serde_json::to_string_pretty(&expected).unwrap_or_default(),
    );
}

/// An `ok: false` answer with an error of the protocol itself.
pub fn error(request_id: &str, code: &str, stage: &str, message: &str) -> Value {
    json!({"request_id": request_id, "ok": false, "error": {
        "code": code, "stage": stage, "target_id": "test", "message": message, "retryable": false}})
}

/// ControlCommandRequest params as an older client sends them.
pub fn command_params(command: &str, child_path: Option<&str>, confirmed: bool) -> Value {
    json!({
        "command_id": format!("c-{command}"),
        "target_id": "test",
        "command": command,
        "target": {"child_path": child_path, "child_manifest": null},
        "reason": "legacy test",
        "requested_by": "tester",
        "confirmed": confirmed,
        "requested_at_unix_nanos": 1_764_150_000_000_000_000u64,
    })
}

/// A `command.*` request. The default `command_id` from [`command_params`]
/// is made unique per request (`c-{method}-{request_id}`): command ids are
/// idempotency keys, and reusing one is a replay or a conflict.
pub fn command(request_id: &str, method: &str, mut params: Value) -> Value {
    if params["command_id"] == json!(format!("c-{method}")) {
        params["command_id"] = json!(command_id(method, request_id));
    }
    json!({"request_id": request_id, "method": format!("command.{method}"), "params": params})
}

/// The command id [`command`] gives a request that kept the default.
pub fn command_id(method: &str, request_id: &str) -> String {
    format!("c-{method}-{request_id}")
}

/// The legacy runtime view of a child the way `state` and command results
/// show it: `(runtime_state item, child_runtime_record)`.
pub fn child_view(id: &str, state: &str, generation: u64, restarts: u64) -> (Value, Value) {
    let alive = matches!(state, "running" | "starting" | "stopping");
    let runtime = json!({
        "child_path": format!("/{id}"),
        "lifecycle_state": state,
        "health": null,
        "readiness": if state == "running" { "ready" } else { "not_ready" },
        "generation": generation,
        "child_start_count": generation,
        "restart_count": restarts,
        "last_failure": if state == "quarantined" { json!("quarantined by command") } else { Value::Null },
        "last_policy_decision": if state == "quarantined" { json!("quarantined") } else { Value::Null },
        "shutdown_state": null,
    });
    let record = json!({
        "child_id": id,
        "child_path": format!("/{id}"),
        "generation": generation,
        "attempt": 0,
        "status": match state { "running" => "ready", "starting" => "running", _ => "stopped" },
        "operation": match state { "paused" | "quarantined" => state, _ => "active" },
        "managed_child_state": match state { "paused" | "quarantined" => state, _ => "running" },
        "liveness": if alive { "alive" } else { "not_running" },
        "restart_limit": {"window_millis": 60_000, "limit": 5, "used": 0, "remaining": 5,
                          "exhausted": false, "updated_at_unix_nanos": 0},
        "stop_state": if alive { Value::Null } else { json!("stopped") },
        "failure": if state == "quarantined" { json!("quarantined by command") } else { Value::Null },
        "generation_fence_phase": null,
        "pending_restart": false,
    });
    (runtime, record)
}

/// A completed command's answer; `child` is `(id, state, generation,
/// restarts)` of the record after it.
pub fn command_ok(
    request_id: &str,
    command: &str,
    outcome: &str,
    correlation: u64,
    child: Option<(&str, &str, u64, u64)>,
) -> Value {
    let (runtime, record) = child
        .map(|(id, state, generation, restarts)| child_view(id, state, generation, restarts))
        .unwrap_or((Value::Null, Value::Null));
    json!({"request_id": request_id, "ok": true, "result": {
        "type": "command_result", "target_id": "test", "result": {
            "command_id": command_id(command, request_id), "target_id": "test", "accepted": true,
            "status": "completed", "error": null,
            "state_delta": {"command": command, "outcome": outcome,
                            "correlation_id": format!("cmd-{correlation}"),
                            "runtime_state": runtime, "child_runtime_record": record},
            "completed_at_unix_nanos": 0}}})
}

/// A command the supervisor refused: `ok: true`, `accepted: false`.
pub fn command_failed(request_id: &str, command: &str, reason: &str, message: &str) -> Value {
    json!({"request_id": request_id, "ok": true, "result": {
        "type": "command_result", "target_id": "test", "result": {
            "command_id": command_id(command, request_id), "target_id": "test", "accepted": false,
            "status": "failed",
            "error": {"code": "command_failed", "stage": "command_dispatch", "target_id": "test",
                      "message": message, "retryable": false, "reason": reason},
            "state_delta": null, "completed_at_unix_nanos": 0}}})
}

/// A command refused before it reached the supervisor.
pub fn validation_failed(request_id: &str, message: &str, reason: &str) -> Value {
    let mut value = error(request_id, "validation_failed", "command_validate", message);
    value["error"]["reason"] = json!(reason);
    value
}

/// Waits until `child` has published ChildRunning for `generation`.
pub async fn running(gw: &TestGateway, child: &str, generation: u64) {
    let mut events = gw.supervisor.events().subscribe(Start::Oldest);
    wait_event(&mut events, "child running", |e| {
        e.child_id.as_ref().map(|c| c.as_str()) == Some(child)
            && matches!(e.kind, EventKind::ChildRunning { generation: g, .. } if g == generation)
    })
    .await;
}

/// A `events.subscribe` / `logs.tail` request with a session.
pub fn subscription(request_id: &str, method: &str) -> Value {
    json!({"request_id": request_id, "method": method, "params": {"session_established": true}})
}

/// A relay for the tests: binds a socket beside the gateway's.
pub struct Relay {
    pub listener: tokio::net::UnixListener,
    pub path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Relay {
    pub fn bind() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("relay.sock");
        let listener = tokio::net::UnixListener::bind(&path).expect("bind relay");
        Self {
            listener,
            path,
            _dir: dir,
        }
    }

    pub fn options(&self, main: &Path, interval: Duration) -> LegacyOptions {
        self.options_with_lease(main, interval, 5)
    }

    pub fn options_with_lease(
        &self,
        main: &Path,
        interval: Duration,
        lease_seconds: u64,
    ) -> LegacyOptions {
        LegacyOptions {
            relay: Some(supervisor_gateway::transport::legacy::Relay {
                socket: self.path.clone(),
                interval,
            }),
            lease: Duration::from_secs(lease_seconds),
            ..LegacyOptions::new(main.display().to_string())
        }
    }

    /// Takes one upsert and answers `ack`; returns the payload and when it
    /// arrived.
    pub async fn upsert(&self, ack: Value) -> (Value, tokio::time::Instant) {
        let (payload, at, mut connection) =
            self.next_upsert(PATIENCE).await.expect("an upsert in time");
        connection.ack(&ack).await.expect("write ack");
        (payload, at)
    }

    /// The next upsert's payload, when it arrived, and its connection (for
    /// the ack); `None` if none arrives within `within`.
    pub async fn next_upsert(
        &self,
        within: Duration,
    ) -> Option<(Value, tokio::time::Instant, RelayConnection)> {
        use tokio::io::AsyncBufReadExt;
        let (stream, _) = tokio::time::timeout(within, self.listener.accept())
            .await
            .ok()?
            .expect("accept");
        let at = tokio::time::Instant::now();
        let (read, write) = stream.into_split();
        let mut lines = tokio::io::BufReader::new(read).lines();
        let line = lines
            .next_line()
            .await
            .expect("read payload")
            .expect("a payload line");
        let payload = serde_json::from_str(&line).expect("payload is JSON");
        Some((payload, at, RelayConnection { lines, write }))
    }
}

/// The relay's side of one upsert, after the payload was read. Dropping it
/// closes the connection without an ack.
pub struct RelayConnection {
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::net::unix::OwnedReadHalf>>,
    write: tokio::net::unix::OwnedWriteHalf,
}

impl RelayConnection {
    /// Writes the ack line; fails if the gateway no longer listens.
    pub async fn ack(&mut self, ack: &Value) -> std::io::Result<()> {
        use tokio::io::AsyncWriteExt;
        self.write.write_all(format!("{ack}\n").as_bytes()).await
    }

    /// Waits until the gateway closes the connection, which it does once
    /// it has read the ack and recorded the outcome. Fails the test if it
    /// sends anything more or does not close within [`PATIENCE`].
    pub async fn wait_closed(mut self) {
        let next = tokio::time::timeout(PATIENCE, self.lines.next_line())
            .await
            .expect("the gateway closes the upsert connection in time");
        assert!(matches!(next, Ok(None) | Err(_)), "unexpected {next:?}");
    }
}

/// Waits until the gateway has closed `stream`, without reading from it:
/// whatever the gateway sent stays queued for the test to inspect.
/// `false` if it is still open after [`PATIENCE`].
pub async fn closed_without_reading(stream: &tokio::net::UnixStream) -> bool {
    use tokio::io::Interest;
    let hangup = async {
        loop {
            let ready = stream
                .ready(Interest::READABLE)
                .await
                .expect("poll the socket");
            if ready.is_read_closed() {
                return;
            }
            // Queued data keeps the socket readable: forget that readiness
            // (nothing is read) so the next wait is for a new event, such
            // as the hangup. The hangup itself is never forgotten.
            let _ = stream.try_io(Interest::READABLE, || {
                Err::<(), _>(std::io::ErrorKind::WouldBlock.into())
            });
        }
    };
    tokio::time::timeout(PATIENCE, hangup).await.is_ok()
}

/// Every line queued on `stream` until the end of the connection (EOF or
/// reset); a last line without its newline is returned as it is.
pub async fn read_to_end(stream: tokio::net::UnixStream) -> Vec<String> {
    use tokio::io::AsyncReadExt;
    let mut bytes = Vec::new();
    let mut stream = stream;
    let read = tokio::time::timeout(PATIENCE, async {
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the connection did not end");
    String::from_utf8_lossy(&bytes)
        .split_inclusive('\n')
        .map(str::to_owned)
        .collect()
}

/// The relay's ack in the documented format.
pub fn ack(ok: bool, retryable: bool) -> Value {
    if ok {
        json!({"ok": true, "target_id": "test", "status": "registered", "error": null, "retryable": false})
    } else {
        json!({"ok": false, "target_id": "test", "status": "rejected",
               "error": {"code": "target_conflict", "message": "another target owns this id"},
               "retryable": retryable})
    }
}
