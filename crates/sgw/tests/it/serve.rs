//! Black-box tests of the `sgw serve` binary: readiness line, a second
//! server refused on a live socket, and the ordered shutdown on SIGTERM
//! and on ShutdownTree.

use crate::support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use supervisor_gateway::pb;
use support::*;

const CONFIG: &str = r#"
[gateway]
target_id = "served"
drain_timeout = "5s"

[[child]]
id = "steady"
command = ["/bin/sh", "-c", "sleep 1000 & echo $!; sleep 1000"]

[[child]]
id = "trapper"
command = ["/bin/sh", "-c", "trap '' TERM; exec sleep 1000"]
stop_timeout = "300ms"
"#;

struct Served {
    child: Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

/// Starts `sgw serve` and waits for its readiness line on stdout.
fn serve() -> Served {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("sgw.toml");
    std::fs::write(&config, CONFIG).expect("write config");
    let socket = dir.path().join("run/sgw.sock");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sgw"))
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .arg("--socket")
        .arg(&socket)
        // Its own state directory: parallel servers of one target must
        // not share (and lock) the default one.
        .env("SGW_STATE_DIR", dir.path().join("state"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn sgw serve");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let ready = lines.next().expect("a readiness line").expect("utf-8");
    assert!(
        ready.starts_with("sgw: serving target \"served\" on "),
        "{ready}"
    );
    assert!(ready.ends_with(&socket.display().to_string()), "{ready}");
    let hint = lines.next().expect("grpcurl hint").expect("utf-8");
    assert_eq!(
        hint,
        format!("try: grpcurl -plaintext -unix {} list", socket.display())
    );
    Served {
        child,
        socket,
        _dir: dir,
    }
}

/// Waits for the server process to exit, failing the test after PATIENCE.
async fn wait_exit(mut child: Child) -> std::process::ExitStatus {
    tokio::time::timeout(PATIENCE, tokio::task::spawn_blocking(move || child.wait()))
        .await
        .expect("sgw serve exits in time")
        .expect("join")
        .expect("wait")
}

async fn pids(socket: &Path) -> Vec<u32> {
    let mut client = supervisor_gateway::client::connect(socket)
        .await
        .expect("connect");
    let state = client
        .control
        .get_state(pb::GetStateRequest {})
        .await
        .expect("state")
        .into_inner();
    state.children.iter().filter_map(|c| c.pid).collect()
}

/// SIGTERM: exit 0, socket removed, children and grandchildren gone, and an
/// open event stream ends with a status after the shutdown events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_cleans_up() {
    let served = serve();
    let socket = served.socket.clone();
    let mode = std::fs::metadata(&socket)
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777);
    assert_eq!(mode.expect("socket exists"), 0o600);
    let mut client = supervisor_gateway::client::connect(&socket)
        .await
        .expect("connect");
    let info = client
        .control
        .get_info(pb::GetInfoRequest {})
        .await
        .expect("info")
        .into_inner();
    assert_eq!(info.target_id, "served");
    let mut stream = client
        .journal
        .subscribe_events(pb::SubscribeEventsRequest {
            include_backlog: true,
            ..Default::default()
        })
        .await
        .expect("subscribe")
        .into_inner();
    // Both children are up before we stop the server.
    let mut running = 0;
    while running < 2 {
        let message = tokio::time::timeout(PATIENCE, stream.message())
            .await
            .expect("events")
            .expect("ok")
            .expect("open");
        if let Some(pb::subscribe_events_response::Item::Event(e)) = message.item
            && e.event_type == pb::EventType::ChildRunning as i32
        {
            running += 1;
        }
    }
    let children = pids(&socket).await;
    assert_eq!(children.len(), 2);
    kill(Pid::from_raw(served.child.id() as i32), Signal::SIGTERM).expect("signal");
    let mut saw_shutdown = false;
    let end = loop {
        match tokio::time::timeout(PATIENCE, stream.message())
            .await
            .expect("stream ends in time")
        {
            Ok(Some(message)) => {
                if let Some(pb::subscribe_events_response::Item::Event(e)) = message.item {
                    saw_shutdown |= e.event_type == pb::EventType::ShutdownCompleted as i32;
                }
            }
            Ok(None) => break None,
            Err(status) => break Some(status),
        }
    };
    assert!(
        saw_shutdown,
        "the stream was flushed through ShutdownCompleted"
    );
    assert_eq!(
        end.map(|s| s.code()),
        Some(tonic::Code::Unavailable),
        "ended with a final status"
    );
    let status = wait_exit(served.child).await;
    assert!(status.success(), "exit status {status:?}");
    assert!(!socket.exists(), "socket left behind");
    for pid in children {
        assert!(process_gone(pid), "child {pid} survived");
    }
}

/// A second server on a live socket refuses to start (exit 1) and leaves
/// the first one serving; ShutdownTree makes the first exit 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_socket_is_refused_and_shutdown_tree_exits() {
    let served = serve();
    let second = Command::new(env!("CARGO_BIN_EXE_sgw"))
        .args(["serve", "--ephemeral", "--socket"])
        .arg(&served.socket)
        .output()
        .expect("second serve");
    assert_eq!(second.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains("already serving") || stderr.contains("live"),
        "{stderr}"
    );
    let mut client = supervisor_gateway::client::connect(&served.socket)
        .await
        .expect("first still serves");
    let result = client
        .control
        .shutdown_tree(pb::ShutdownTreeRequest {
            meta: Some(pb::CommandMeta {
                confirm: true,
                reason: "test".into(),
                ..Default::default()
            }),
        })
        .await
        .expect("ShutdownTree")
        .into_inner();
    assert!(
        result
            .result
            .expect("result")
            .outcome
            .starts_with("stopped 2")
    );
    let socket = served.socket.clone();
    let status = wait_exit(served.child).await;
    assert!(status.success(), "{status:?}");
    assert!(!socket.exists());
}

/// `--socket ipc/sgw.sock` is resolved once against the directory `serve`
/// starts in: that absolute path is bound, printed, removed on exit, and
/// announced as `ipc_path` to the relay (which refuses relative paths) and
/// in the legacy `hello`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relative_socket_is_resolved_and_announced_absolute() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().canonicalize().expect("canonical tempdir");
    let relay_path = root.join("relay.sock");
    let relay = tokio::net::UnixListener::bind(&relay_path).expect("bind relay");
    let config = root.join("sgw.toml");
    std::fs::write(
        &config,
        format!(
            "[gateway]\ntarget_id = \"served\"\n[registration]\nrelay_socket = \"{}\"\n\
             lease_seconds = 5\nheartbeat_interval_seconds = 0.2\n",
            relay_path.display()
        ),
    )
    .expect("write config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sgw"))
        .args(["serve", "--config", "sgw.toml", "--socket", "ipc/sgw.sock"])
        .current_dir(&root)
        .env_remove("SGW_SOCKET")
        .env("SGW_STATE_DIR", root.join("state"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn sgw serve");
    let stdout = child.stdout.take().expect("stdout");
    let mut child = KillOnDrop(Some(child));
    let socket = root.join("ipc/sgw.sock");
    let mut lines = BufReader::new(stdout).lines();
    let ready = lines.next().expect("a readiness line").expect("utf-8");
    assert_eq!(
        ready,
        format!("sgw: serving target \"served\" on {}", socket.display())
    );
    let hint = lines.next().expect("grpcurl hint").expect("utf-8");
    assert_eq!(
        hint,
        format!("try: grpcurl -plaintext -unix {} list", socket.display())
    );

    let (upsert, _) = tokio::time::timeout(PATIENCE, relay.accept())
        .await
        .expect("an upsert in time")
        .expect("accept");
    let (read, mut write) = upsert.into_split();
    let payload = tokio::io::BufReader::new(read)
        .lines()
        .next_line()
        .await
        .expect("read")
        .expect("a payload line");
    let payload: serde_json::Value = serde_json::from_str(&payload).expect("json");
    assert_eq!(payload["ipc_path"], socket.display().to_string());
    write
        .write_all(b"{\"ok\":true,\"target_id\":\"served\",\"status\":\"registered\",\"error\":null,\"retryable\":false}\n")
        .await
        .expect("ack");

    let stream = tokio::net::UnixStream::connect(&socket)
        .await
        .expect("the absolute path is served");
    let (read, mut write) = stream.into_split();
    write
        .write_all(b"{\"request_id\":\"h\",\"method\":\"hello\"}\n")
        .await
        .expect("hello");
    let hello = tokio::time::timeout(
        PATIENCE,
        tokio::io::BufReader::new(read).lines().next_line(),
    )
    .await
    .expect("hello in time")
    .expect("read")
    .expect("a line");
    let hello: serde_json::Value = serde_json::from_str(&hello).expect("json");
    assert_eq!(
        hello["result"]["registration"]["ipc_path"],
        socket.display().to_string()
    );

    let child = child.0.take().expect("still running");
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).expect("signal");
    let status = wait_exit(child).await;
    assert!(status.success(), "{status:?}");
    assert!(!socket.exists(), "socket left behind");
}

/// Kills the server if the test fails before stopping it, so a failed
/// assertion does not leave an `sgw serve` running.
struct KillOnDrop(Option<Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Where an instance records what it started: `--state-dir` over
/// `$SGW_STATE_DIR` over `[supervisor] state_dir` over
/// `$XDG_STATE_HOME/sgw/TARGET`, and `--ephemeral` over all of them. Told
/// by the lock file the engine keeps in the directory it uses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_dir_comes_from_flag_then_env_then_config_and_ephemeral_wins() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().canonicalize().expect("canonical tempdir");
    struct Case {
        name: &'static str,
        /// `[supervisor] state_dir` is set (to `config`).
        in_config: bool,
        /// `SGW_STATE_DIR` is set (to `env`).
        in_env: bool,
        args: &'static [&'static str],
        /// Where the lock is.
        expected: Option<&'static str>,
    }
    let case = |name, in_config, in_env, args, expected| Case {
        name,
        in_config,
        in_env,
        args,
        expected,
    };
    let cases = [
        case("default", false, false, &[], Some("xdg/sgw/served")),
        case("config", true, false, &[], Some("config")),
        case("env", true, true, &[], Some("env")),
        case("flag", true, true, &["--state-dir", "flag"], Some("flag")),
        case("ephemeral", true, true, &["--ephemeral"], None),
    ];
    for Case {
        name,
        in_config,
        in_env,
        args,
        expected,
    } in cases
    {
        let case = root.join(name);
        std::fs::create_dir(&case).expect("case dir");
        let mut config = "[gateway]\ntarget_id = \"served\"\n".to_owned();
        if in_config {
            config.push_str(&format!(
                "[supervisor]\nstate_dir = \"{}\"\n",
                case.join("config").display()
            ));
        }
        std::fs::write(case.join("sgw.toml"), config).expect("write config");
        let mut command = Command::new(env!("CARGO_BIN_EXE_sgw"));
        command
            .args(["serve", "--config", "sgw.toml", "--socket", "sgw.sock"])
            .args(args)
            .current_dir(&case)
            .env_remove("SGW_SOCKET")
            .env_remove("SGW_STATE_DIR")
            .env("XDG_STATE_HOME", case.join("xdg"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if in_env {
            command.env("SGW_STATE_DIR", case.join("env"));
        }
        let mut child = command.spawn().expect("spawn sgw serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut child = KillOnDrop(Some(child));
        // Both lines are read: a pipe closed before the second would make
        // the server's print fail.
        let mut lines = BufReader::new(stdout).lines();
        let ready = lines.next().expect("a readiness line").expect("utf-8");
        assert!(ready.starts_with("sgw: serving target"), "{name}: {ready}");
        let hint = lines.next().expect("grpcurl hint").expect("utf-8");
        assert!(hint.starts_with("try: "), "{name}: {hint}");
        for candidate in ["xdg/sgw/served", "config", "env", "flag"] {
            assert_eq!(
                case.join(candidate).join("lock").exists(),
                expected == Some(candidate),
                "{name}: state dir {candidate}"
            );
        }
        let child = child.0.take().expect("still running");
        kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).expect("signal");
        let status = wait_exit(child).await;
        assert!(status.success(), "{name}: {status:?}");
    }
}
