//! Readiness and liveness with real processes: sd_notify (`ready =
//! "notify"`, `STATUS=`, the watchdog, foreign senders), tcp/http/exec
//! probes gating RUNNING or restarting a child, and a bad probe in a
//! config file. Children are told when to act through FIFOs, so every
//! wait is on an event or a pipe, never a sleep.

use crate::cli_support::{sgw, stderr};
use crate::support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use supervisor_gateway::control::ControlPlane;
use supervisor_gateway::model::{
    Check, ChildSpec, ChildState, EventKind, Failure, HttpTarget, Probe, QuarantineReason, Ready,
    TcpTarget, Unhealthy,
};
use support::*;

/// A Python child (`python3 -c`), with the test settings of [`sh`].
fn python(child: &str, script: &str) -> ChildSpec {
    let mut spec = sh(child, "");
    spec.command = vec!["python3".into(), "-c".into(), script.into()];
    spec
}

/// The sd_notify sender any program may carry: one datagram to
/// `$NOTIFY_SOCKET`, as `sd_notify(3)` sends it.
const NOTIFY_PY: &str = r#"
import os, socket, sys, time
def notify(message):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.sendto(message.encode(), os.environ["NOTIFY_SOCKET"])
    s.close()
"#;

fn fast_probe(check: Check) -> Probe {
    let mut probe = Probe::new(check);
    probe.interval = Duration::from_millis(50);
    probe.timeout = Duration::from_millis(500);
    probe
}

/// A FIFO in a fresh directory.
fn fifo(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    path
}

/// Writes a line to a FIFO once the child opens it, on a thread (opening
/// blocks until the reader does), bounded by [`PATIENCE`].
async fn poke(path: &Path) {
    let path = path.to_owned();
    let (done, wait) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = done.send(std::fs::write(path, "go\n"));
    });
    tokio::time::timeout(PATIENCE, wait)
        .await
        .expect("the child opened its FIFO")
        .expect("writer thread")
        .expect("write to the FIFO");
}

/// Reads what the child writes to a FIFO (until it closes it).
async fn read_fifo(path: &Path) -> String {
    let path = path.to_owned();
    let (done, wait) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = done.send(std::fs::read_to_string(path));
    });
    tokio::time::timeout(PATIENCE, wait)
        .await
        .expect("the child wrote its FIFO")
        .expect("reader thread")
        .expect("read the FIFO")
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn unhealthy(kind: &EventKind) -> Option<&Unhealthy> {
    match kind {
        EventKind::ChildUnhealthy { cause, .. } => Some(cause),
        _ => None,
    }
}

/// `ready = "notify"` with the real `systemd-notify` (or Python where it
/// is missing): the child stays STARTING until it says READY=1, and its
/// dependent is spawned only after it is RUNNING.
#[tokio::test]
async fn notify_child_is_starting_until_ready_and_gates_its_dependent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let go = fifo(dir.path(), "go");
    let ready = if which("systemd-notify") {
        "systemd-notify --ready --status=serving"
    } else {
        // The sender must still be the child's when sgw reads the
        // datagram: Python becomes the child and stays.
        "exec python3 -c 'import os,socket,time; socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b\"READY=1\\nSTATUS=serving\", os.environ[\"NOTIFY_SOCKET\"]); time.sleep(1000)'"
    };
    let mut db = sh(
        "db",
        &format!("read line < {}; {ready}; exec sleep 1000", go.display()),
    );
    db.ready = Some(Ready::Notify);
    let mut web = sh("web", "exec sleep 1000");
    web.depends_on = vec![id("db")];
    let sup = start(vec![db, web]);
    let mut events = subscribe(&sup);
    wait_event(
        &mut events,
        "db spawned",
        is(|k| matches!(k, EventKind::ChildStarting { .. }), "db"),
    )
    .await;
    let record = sup.child(&id("db")).await.expect("db");
    assert_eq!(record.state, ChildState::Starting);
    assert_eq!(
        sup.child(&id("web")).await.expect("web").state,
        ChildState::Starting
    );
    poke(&go).await;
    let seen = events_until(
        &mut events,
        "web spawned",
        is(|k| matches!(k, EventKind::ChildStarting { .. }), "web"),
    )
    .await;
    assert!(
        seen.iter()
            .any(|r| is(|k| matches!(k, EventKind::ChildRunning { .. }), "db")(&r.body)),
        "db became RUNNING before web was spawned"
    );
    let record = sup.child(&id("db")).await.expect("db");
    assert_eq!(record.state, ChildState::Running);
    assert_eq!(record.status_text, "serving");
    sup.shutdown("test", "done").await.expect("shutdown");
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// `STATUS=` shows in GetState's record and in `sgw state`'s table.
#[tokio::test]
async fn status_text_shows_in_get_state_and_sgw_state() {
    let mut spec = python(
        "api",
        &format!(
            "{NOTIFY_PY}\nnotify('STATUS=warming up 3/3')\nnotify('READY=1')\ntime.sleep(1000)"
        ),
    );
    spec.ready = Some(Ready::Notify);
    let gw = gateway(vec![spec]).await;
    gw.wait_running("api").await;
    let mut client = gw.client().await;
    let state = client
        .control
        .get_state(supervisor_gateway::pb::GetStateRequest {})
        .await
        .expect("GetState")
        .into_inner();
    assert_eq!(state.children[0].status_text, "warming up 3/3");
    let socket = gw.path.clone();
    let output = tokio::task::spawn_blocking(move || {
        crate::cli_support::sgw_command(&["state"])
            .env("SGW_SOCKET", socket)
            .output()
            .expect("run sgw state")
    })
    .await
    .expect("sgw state");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("api") && l.ends_with("warming up 3/3")),
        "{text}"
    );
    gw.shutdown().await;
}

/// A child with `watchdog` gets `WATCHDOG_USEC`; once it stops pinging it
/// is stopped with a watchdog event and restarted by its policy.
#[tokio::test]
async fn a_silent_watchdog_restarts_the_child() {
    let mut spec = python(
        "dog",
        &format!(
            "{NOTIFY_PY}\nif os.environ.get('WATCHDOG_USEC') != '300000': sys.exit(3)\n\
             for _ in range(3):\n    notify('WATCHDOG=1')\n    time.sleep(0.05)\n\
             time.sleep(1000)"
        ),
    );
    spec.watchdog = Some(Duration::from_millis(300));
    let sup = start(vec![spec]);
    let mut events = subscribe(&sup);
    let seen = events_until(
        &mut events,
        "the watchdog timeout",
        is(|k| unhealthy(k).is_some(), "dog"),
    )
    .await;
    assert!(
        !seen
            .iter()
            .any(|r| matches!(r.body.kind, EventKind::ChildExited { .. })),
        "the child ran until the watchdog ended it: {seen:?}"
    );
    assert_eq!(
        unhealthy(&seen.last().expect("event").body.kind),
        Some(&Unhealthy::Watchdog {
            timeout: Duration::from_millis(300)
        })
    );
    wait_event(
        &mut events,
        "the restart",
        is(
            |k| matches!(k, EventKind::ChildStarting { generation: 2, .. }),
            "dog",
        ),
    )
    .await;
    let record = sup.child(&id("dog")).await.expect("dog");
    assert!(
        matches!(
            record.last_failure,
            Some(Failure::Unhealthy(Unhealthy::Watchdog { .. }))
        ),
        "{record:?}"
    );
    sup.shutdown("test", "done").await.expect("shutdown");
}

/// A `READY=1` from a process that is not the child's is dropped: the
/// child, which only says `STATUS=` itself (after the foreign datagram),
/// fails `ready_timeout` with the drop counted and its status shown.
#[tokio::test]
async fn a_foreign_ready_is_ignored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path_out = fifo(dir.path(), "socket");
    let go = fifo(dir.path(), "go");
    let mut spec = python(
        "lonely",
        &format!(
            "{NOTIFY_PY}\nopen({:?}, 'w').write(os.environ['NOTIFY_SOCKET'])\n\
             open({:?}).read()\nnotify('STATUS=still waiting')\ntime.sleep(1000)",
            path_out.display().to_string(),
            go.display().to_string()
        ),
    );
    spec.ready = Some(Ready::Notify);
    spec.ready_timeout = Duration::from_secs(2);
    let sup = start(vec![spec]);
    let mut events = subscribe(&sup);
    let socket = read_fifo(&path_out).await;
    let sender = std::os::unix::net::UnixDatagram::unbound().expect("socket");
    sender.send_to(b"READY=1", &socket).expect("send READY=1");
    poke(&go).await;
    let seen = events_until(
        &mut events,
        "ready_timeout",
        is(|k| unhealthy(k).is_some(), "lonely"),
    )
    .await;
    assert!(
        !seen
            .iter()
            .any(|r| matches!(r.body.kind, EventKind::ChildRunning { .. })),
        "{seen:?}"
    );
    match unhealthy(&seen.last().expect("event").body.kind) {
        Some(Unhealthy::NotReady { probe, output, .. }) => {
            assert_eq!(probe, "notify");
            assert!(
                output.contains("1 datagram from processes not the child's dropped"),
                "{output}"
            );
            assert!(output.contains("last STATUS=still waiting"), "{output}");
        }
        other => panic!("{other:?}"),
    }
    sup.shutdown("test", "done").await.expect("shutdown");
}

/// A tcp readiness probe keeps a child STARTING until its port accepts
/// connections, which this child does only when told to.
#[tokio::test]
async fn a_tcp_probe_gates_readiness() {
    let dir = tempfile::tempdir().expect("tempdir");
    let go = fifo(dir.path(), "go");
    let port = free_port();
    let mut spec = python(
        "listener",
        &format!(
            "import socket, time\nopen({:?}).read()\n\
             s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
             s.bind(('127.0.0.1', {port})); s.listen()\ntime.sleep(1000)",
            go.display().to_string()
        ),
    );
    spec.ready = Some(Ready::Probe(fast_probe(Check::Tcp(
        TcpTarget::try_from(format!("127.0.0.1:{port}")).expect("address"),
    ))));
    let gw = gateway(vec![spec]).await;
    let mut events = subscribe(&gw.supervisor);
    wait_event(
        &mut events,
        "spawned",
        is(|k| matches!(k, EventKind::ChildStarting { .. }), "listener"),
    )
    .await;
    // A marker in the journal: RUNNING must come after it.
    gw.publish_synthetic_event();
    assert_eq!(
        gw.supervisor
            .child(&id("listener"))
            .await
            .expect("child")
            .state,
        ChildState::Starting
    );
    poke(&go).await;
    let seen = events_until(
        &mut events,
        "running",
        is(|k| matches!(k, EventKind::ChildRunning { .. }), "listener"),
    )
    .await;
    assert!(
        seen.iter()
            .any(|r| r.body.child_id.is_none() && r.body.kind == EventKind::BackoffReset),
        "RUNNING came before the port was opened: {seen:?}"
    );
    gw.shutdown().await;
}

/// An http liveness probe (behind a tcp readiness probe): 200 twice, then
/// 500 with a body. Two failures in a row end the run with an event naming the probe and the answer,
/// and the policy restarts the child.
#[tokio::test]
async fn an_http_health_probe_failure_restarts_the_child() {
    let port = free_port();
    let server = format!(
        "import http.server\nserved = [0]\n\
         class H(http.server.BaseHTTPRequestHandler):\n\
         \x20   def log_message(self, *a): pass\n\
         \x20   def do_GET(self):\n\
         \x20       served[0] += 1\n\
         \x20       ok = served[0] <= 2\n\
         \x20       body = b'fine' if ok else b'database unreachable'\n\
         \x20       self.send_response(200 if ok else 500)\n\
         \x20       self.send_header('Content-Length', str(len(body)))\n\
         \x20       self.end_headers(); self.wfile.write(body)\n\
         http.server.HTTPServer(('127.0.0.1', {port}), H).serve_forever()"
    );
    let mut spec = python("web", &server);
    let url = format!("http://127.0.0.1:{port}/healthz");
    let mut probe = fast_probe(Check::Http(HttpTarget::try_from(url.clone()).expect("url")));
    probe.threshold = Some(2);
    spec.health = Some(probe);
    // Liveness runs while RUNNING: RUNNING once the server listens.
    spec.ready = Some(Ready::Probe(fast_probe(Check::Tcp(
        TcpTarget::try_from(format!("127.0.0.1:{port}")).expect("address"),
    ))));
    let sup = start(vec![spec]);
    let mut events = subscribe(&sup);
    let seen = events_until(
        &mut events,
        "the restart",
        is(|k| matches!(k, EventKind::RestartScheduled { .. }), "web"),
    )
    .await;
    let cause = seen
        .iter()
        .find_map(|r| unhealthy(&r.body.kind))
        .expect("an unhealthy event before the restart");
    match cause {
        Unhealthy::Probe {
            probe,
            output,
            failures,
        } => {
            assert_eq!(probe, &format!("http {url}"));
            assert_eq!(*failures, 2);
            assert!(
                output.starts_with("HTTP 500") && output.contains("database unreachable"),
                "{output}"
            );
        }
        other => panic!("{other:?}"),
    }
    sup.shutdown("test", "done").await.expect("shutdown");
}

/// An exec liveness probe failing `threshold` times in a row restarts the
/// child; with a budget of one restart the second such run quarantines it,
/// like a crash loop.
#[tokio::test]
async fn an_exec_health_probe_failing_restarts_then_quarantines() {
    let mut spec = sh("worker", "exec sleep 1000");
    let mut probe = fast_probe(Check::Exec(vec![
        "/bin/sh".into(),
        "-c".into(),
        "echo queue stuck >&2; exit 1".into(),
    ]));
    probe.threshold = Some(3);
    spec.health = Some(probe);
    spec.restart_budget.max = 1;
    let sup = start(vec![spec]);
    let mut events = subscribe(&sup);
    let seen = events_until(
        &mut events,
        "quarantine",
        is(
            |k| matches!(k, EventKind::ChildQuarantined { .. }),
            "worker",
        ),
    )
    .await;
    let causes: Vec<&Unhealthy> = seen
        .iter()
        .filter_map(|r| unhealthy(&r.body.kind))
        .collect();
    assert_eq!(causes.len(), 2, "{seen:?}");
    for cause in causes {
        assert_eq!(
            cause,
            &Unhealthy::Probe {
                probe: "exec /bin/sh -c echo queue stuck >&2; exit 1".into(),
                output: "exit code 1: queue stuck".into(),
                failures: 3,
            }
        );
    }
    match &seen.last().expect("event").body.kind {
        EventKind::ChildQuarantined {
            reason: QuarantineReason::BudgetExhausted { after, .. },
        } => assert!(matches!(after, Failure::Unhealthy(Unhealthy::Probe { .. }))),
        other => panic!("{other:?}"),
    }
    sup.shutdown("test", "done").await.expect("shutdown");
}

/// A probe that does not parse is a config error naming the file, the line
/// and the key.
#[test]
fn a_bad_probe_is_a_config_error_naming_file_line_and_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[[child]]\nid = \"a\"\ncommand = [\"true\"]\nready = { tcp = \"nonsense\" }\n",
    )
    .expect("write");
    let output = sgw(&["check-config", bad.to_str().expect("utf-8")]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let text = stderr(&output);
    assert!(
        text.starts_with(&format!("error: {}:4:", bad.display())),
        "{text}"
    );
    assert!(text.contains("invalid tcp address \"nonsense\""), "{text}");

    let zero = dir.path().join("zero.toml");
    std::fs::write(
        &zero,
        "[[child]]\nid = \"a\"\ncommand = [\"true\"]\nhealth = { exec = [\"true\"], threshold = 0 }\n",
    )
    .expect("write");
    let text = stderr(&sgw(&["check-config", zero.to_str().expect("utf-8")]));
    assert!(
        text.starts_with(&format!("error: {}:4:", zero.display()))
            && text.contains("health.threshold"),
        "{text}"
    );
}
