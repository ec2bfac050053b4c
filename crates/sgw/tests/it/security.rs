//! The security pipeline on both protocols with real other-uid clients:
//! CI runs as root, so this test binary re-runs itself as uid 65534
//! (`nobody`) to play the unprivileged caller. Also rate limits,
//! idempotency, audit that fails closed, and the AddChild allowlist.

use crate::support;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use supervisor_gateway::gateway::Limits;
use supervisor_gateway::pb;
use supervisor_gateway::security::{AuditFailure, SecurityConfig};
use supervisor_gateway::transport::legacy::LegacyOptions;
use support::*;
use tonic::Code;
use tonic_types::StatusExt;

const NOBODY: u32 = 65534;

fn reason(status: &tonic::Status) -> String {
    status
        .get_error_details()
        .error_info()
        .map(|i| i.reason.clone())
        .unwrap_or_default()
}

fn meta(request_id: &str) -> Option<pb::CommandMeta> {
    Some(pb::CommandMeta {
        request_id: request_id.into(),
        requested_by: String::new(),
        reason: "security test".into(),
        confirm: true,
    })
}

async fn secured(security: SecurityConfig) -> TestGateway {
    let gw = gateway_secured(
        vec![sh("web", "exec sleep 1000")],
        test_engine(),
        Limits::default(),
        |path| LegacyOptions::new(path.display().to_string()),
        security,
        0o666,
    )
    .await;
    // Generation 1 is the baseline the tests compare against.
    gw.wait_running("web").await;
    gw
}

/// One legacy request/response on a fresh connection.
fn legacy_call(socket: &Path, request: &Value) -> Value {
    let mut stream = std::os::unix::net::UnixStream::connect(socket).expect("connect");
    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    let mut line = serde_json::to_vec(request).expect("json");
    line.push(b'\n');
    // A connection refused at accept may be gone before the write: no reply.
    if stream.write_all(&line).is_err() {
        return Value::Null;
    }
    let mut reply = String::new();
    let _ = BufReader::new(stream).read_line(&mut reply);
    serde_json::from_str(&reply).unwrap_or(Value::Null)
}

fn legacy_command(method: &str, child: &str, command_id: &str) -> Value {
    json!({"request_id": command_id, "method": format!("command.{method}"), "params": {
        "command_id": command_id, "target_id": "test", "command": method,
        "target": {"child_path": format!("/{child}"), "child_manifest": null},
        "reason": "security test", "requested_by": "security test", "confirmed": true,
        "requested_at_unix_nanos": 0}})
}

/// Not a test: the body the other-uid process runs. It calls the gateway on
/// `SGW_AS_UID_SOCKET` over both protocols and prints one JSON line per call.
#[test]
#[ignore = "helper, run by other tests as another uid"]
fn other_uid_client() {
    let Ok(socket) = std::env::var("SGW_AS_UID_SOCKET") else {
        return;
    };
    let socket = Path::new(&socket);
    if let Ok(count) = std::env::var("SGW_AS_UID_HOLD") {
        return hold_connections(socket, count.parse().expect("count"));
    }
    if std::env::var("SGW_AS_UID_ALL_RPCS").is_ok() {
        return call_every_rpc(socket);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let code = |result: Result<(), tonic::Status>| match result {
            Ok(()) => "OK".to_owned(),
            Err(status) => format!("{:?}:{}", status.code(), reason(&status)),
        };
        match supervisor_gateway::client::connect(socket).await {
            Ok(mut c) => {
                let info = c.control.get_info(pb::GetInfoRequest {}).await.map(|_| ());
                println!("{}", json!({"grpc": "GetInfo", "code": code(info)}));
                let state = c
                    .control
                    .get_state(pb::GetStateRequest {})
                    .await
                    .map(|_| ());
                println!("{}", json!({"grpc": "GetState", "code": code(state)}));
                let restart = c
                    .control
                    .restart_child(pb::RestartChildRequest {
                        child_id: "web".into(),
                        meta: meta(""),
                    })
                    .await
                    .map(|_| ());
                println!("{}", json!({"grpc": "RestartChild", "code": code(restart)}));
                let remove = c
                    .control
                    .remove_child(pb::RemoveChildRequest {
                        child_id: "web".into(),
                        meta: meta(""),
                    })
                    .await
                    .map(|_| ());
                println!("{}", json!({"grpc": "RemoveChild", "code": code(remove)}));
            }
            Err(error) => println!("{}", json!({"grpc": "connect", "code": error.to_string()})),
        }
    });
    let state = legacy_call(socket, &json!({"request_id": "s", "method": "state"}));
    println!(
        "{}",
        json!({"legacy": "state", "ok": state["ok"], "code": state["error"]["code"]})
    );
    for (method, id) in [("restart_child", "l-1"), ("remove_child", "l-2")] {
        let reply = legacy_call(socket, &legacy_command(method, "web", id));
        println!(
            "{}",
            json!({"legacy": method, "ok": reply["ok"], "code": reply["error"]["code"]})
        );
    }
}

/// The other-uid helper's second part: opens `count` connections, each
/// sending the legacy protocol's first byte, says which the server closed
/// at once (`{"held": N, "refused": M}`), then keeps the held ones open
/// until its stdin closes.
fn hold_connections(socket: &Path, count: usize) {
    use std::io::Read;
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..count {
        let mut stream = std::os::unix::net::UnixStream::connect(socket).expect("connect");
        let _ = stream.write_all(b"{");
        // A refused connection is closed without being read: EOF at once.
        // A held one waits for the rest of its request line.
        stream
            .set_read_timeout(Some(Duration::from_millis(300)))
            .expect("timeout");
        let mut byte = [0u8; 1];
        match stream.read(&mut byte) {
            Ok(0) => refused += 1,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => refused += 1,
            _ => held.push(stream),
        }
    }
    println!("{}", json!({"held": held.len(), "refused": refused}));
    let mut rest = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut rest);
}

/// The other-uid helper's third part: calls every method of every service
/// the gateway declares (read from the descriptor sets it serves) with an
/// empty message, and prints `{"method": PATH, "code": CODE}` for each.
fn call_every_rpc(socket: &Path) {
    use prost::Message;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let channel = supervisor_gateway::client::channel(socket)
            .await
            .expect("channel");
        let sets = [
            pb::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
        ];
        for set in sets {
            let set = prost_types::FileDescriptorSet::decode(set).expect("descriptor set");
            for file in &set.file {
                for service in &file.service {
                    for method in &service.method {
                        let path =
                            format!("/{}.{}/{}", file.package(), service.name(), method.name());
                        let mut grpc = tonic::client::Grpc::new(channel.clone());
                        grpc.ready().await.expect("ready");
                        let codec = tonic_prost::ProstCodec::<(), ()>::default();
                        let route = http::uri::PathAndQuery::try_from(path.as_str()).expect("path");
                        let request = tonic::Request::new(());
                        let code = if method.server_streaming() {
                            grpc.server_streaming(request, route, codec)
                                .await
                                .map(|_| ())
                        } else {
                            grpc.unary(request, route, codec).await.map(|_| ())
                        };
                        let code = match code {
                            Ok(()) => "OK".to_owned(),
                            Err(status) => format!("{:?}:{}", status.code(), reason(&status)),
                        };
                        println!("{}", json!({"method": path, "code": code}));
                    }
                }
            }
        }
    });
}

/// A world-readable copy of this test executable (the build directory may
/// sit under a private home), made once.
fn helper_executable() -> &'static Path {
    static HELPER: std::sync::OnceLock<(tempfile::TempDir, std::path::PathBuf)> =
        std::sync::OnceLock::new();
    &HELPER
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("tempdir");
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
                .expect("chmod");
            let exe = dir.path().join("security-helper");
            std::fs::copy(std::env::current_exe().expect("exe"), &exe).expect("copy");
            std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).expect("chmod");
            (dir, exe)
        })
        .1
}

/// Runs [`other_uid_client`] as uid/gid 65534 and returns its JSON lines.
fn run_as_nobody(socket: &Path) -> Vec<Value> {
    let exe = helper_executable();
    let run = || {
        Command::new(exe)
            .args([
                "--ignored",
                "--exact",
                "security::other_uid_client",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("SGW_AS_UID_SOCKET", socket)
            .current_dir("/")
            .uid(NOBODY)
            .gid(NOBODY)
            .output()
    };
    // A thread that forked while the copy was open for writing holds it
    // until its exec: ETXTBSY is transient (as Go's os/exec notes too).
    let mut attempts = 0;
    let output = loop {
        match run() {
            Err(error) if error.raw_os_error() == Some(26) && attempts < 50 => {
                attempts += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            other => break other.expect("run as nobody"),
        }
    };
    String::from_utf8_lossy(&output.stdout)
        .lines()
        // libtest may print "test other_uid_client ... " before the first line.
        .filter_map(|line| {
            line.find('{')
                .and_then(|start| serde_json::from_str(&line[start..]).ok())
        })
        .collect()
}

fn find<'a>(lines: &'a [Value], key: &str, name: &str) -> &'a Value {
    lines
        .iter()
        .find(|l| l[key] == name)
        .unwrap_or_else(|| panic!("no {key}={name} in {lines:?}"))
}

fn audit_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// uid 65534, allowed to connect: reads succeed, write and destructive
/// calls are denied on both protocols, and the audit file names uid 65534.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_uid_reads_but_cannot_command() {
    let dir = tempfile::tempdir().expect("tempdir");
    let audit = dir.path().join("audit.log");
    let mut security = test_security();
    security.allowed_uids = vec![NOBODY];
    security.audit.path = Some(audit.clone());
    let gw = secured(security).await;
    let path = gw.path.clone();
    let lines = tokio::task::spawn_blocking(move || run_as_nobody(&path))
        .await
        .expect("join");
    assert_eq!(find(&lines, "grpc", "GetInfo")["code"], "OK");
    assert_eq!(find(&lines, "grpc", "GetState")["code"], "OK");
    assert_eq!(
        find(&lines, "grpc", "RestartChild")["code"],
        "PermissionDenied:permission_denied"
    );
    assert_eq!(
        find(&lines, "grpc", "RemoveChild")["code"],
        "PermissionDenied:permission_denied"
    );
    assert_eq!(find(&lines, "legacy", "state")["ok"], true);
    assert_eq!(
        find(&lines, "legacy", "restart_child")["code"],
        "permission_denied"
    );
    assert_eq!(
        find(&lines, "legacy", "remove_child")["code"],
        "permission_denied"
    );
    let record = gw.supervisor_child_generation("web").await;
    assert_eq!(record, 1, "nothing restarted");
    gw.shutdown().await;
    // Denials have their own trail; the four calls, of one uid and code,
    // are the first record plus one counting the other three.
    let audited = audit_lines(&supervisor_gateway::security::denials_path(&audit));
    let denials: Vec<_> = audited.iter().filter(|r| r["decision"] == "deny").collect();
    let counts: Vec<_> = denials.iter().map(|r| r["count"].as_u64()).collect();
    assert_eq!(counts, [Some(1), Some(3)], "{audited:?}");
    assert!(
        denials
            .iter()
            .all(|r| r["uid"] == NOBODY && r["outcome"] == "permission_denied")
    );
    assert!(
        denials
            .iter()
            .any(|r| r["method"] == "legacy:command.remove_child")
    );
    assert!(
        denials
            .iter()
            .any(|r| r["method"] == "grpc:/supervisor.gateway.v1.ControlService/RestartChild")
    );
    assert!(
        denials
            .iter()
            .all(|r| r["pid"].as_u64().is_some() && r["executable"].is_string())
    );
}

/// A uid outside allowed_uids cannot use the socket at all, on either
/// protocol, even for reads (and even with a world-writable socket mode):
/// its connections are closed at accept, before a byte is read, and the
/// refusal lands in the denial trail (aggregated), not the command trail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_uid_not_allowed_cannot_connect() {
    let dir = tempfile::tempdir().expect("tempdir");
    let audit = dir.path().join("audit.log");
    let mut security = test_security();
    security.audit.path = Some(audit.clone());
    let gw = secured(security).await;
    let path = gw.path.clone();
    let lines = tokio::task::spawn_blocking(move || run_as_nobody(&path))
        .await
        .expect("join");
    let grpc_ok = lines
        .iter()
        .filter(|l| l["grpc"].is_string() && l["code"] == "OK")
        .count();
    assert_eq!(grpc_ok, 0, "{lines:?}");
    for method in ["state", "restart_child", "remove_child"] {
        assert_eq!(
            find(&lines, "legacy", method)["ok"],
            Value::Null,
            "{method}: no reply"
        );
    }
    assert_eq!(gw.supervisor_child_generation("web").await, 1);
    gw.shutdown().await;
    let denials = audit_lines(&supervisor_gateway::security::denials_path(&audit));
    assert!(
        denials.iter().all(|r| r["uid"] == NOBODY
            && r["method"] == "connect"
            && r["outcome"] == "peer_not_allowed"),
        "{denials:?}"
    );
    let counted: u64 = denials
        .iter()
        .map(|r| r["count"].as_u64().unwrap_or(0))
        .sum();
    assert!(
        counted >= 4,
        "every refused connection counted: {denials:?}"
    );
    assert!(denials.len() <= 2, "aggregated: {denials:?}");
    assert!(audit_lines(&audit).is_empty(), "no command records");
}

/// One uid other than the owner's holds at most its share of the budget
/// and never the reserved slots: with 4 slots (2 per uid, 1 reserved) uid
/// 65534 keeps 2 and is refused the rest, and the owner still gets in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_uid_cannot_take_every_slot() {
    let mut security = test_security();
    security.allowed_uids = vec![NOBODY];
    let mut limits = Limits::with_max_connections(4);
    limits.shares.per_uid = 2;
    limits.shares.reserved = 1;
    let gw = gateway_secured(
        vec![],
        test_engine(),
        limits,
        |path| LegacyOptions::new(path.display().to_string()),
        security,
        0o666,
    )
    .await;
    let mut helper = Command::new(helper_executable())
        .args([
            "--ignored",
            "--exact",
            "security::other_uid_client",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("SGW_AS_UID_SOCKET", &gw.path)
        .env("SGW_AS_UID_HOLD", "4")
        .current_dir("/")
        .uid(NOBODY)
        .gid(NOBODY)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("helper");
    let mut stdout = BufReader::new(helper.stdout.take().expect("stdout"));
    let (report, mut stdout) = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        while !line.contains("\"held\"") {
            line.clear();
            assert_ne!(
                stdout.read_line(&mut line).expect("read"),
                0,
                "helper ended"
            );
        }
        let start = line.find('{').expect("json");
        let report = serde_json::from_str::<Value>(&line[start..]).expect("json");
        (report, stdout)
    })
    .await
    .expect("join");
    assert_eq!(report, json!({"held": 2, "refused": 2}));
    // The owner may use the rest, reserved slot included.
    let mut first = gw.client().await.control;
    let mut second = gw.client().await.control;
    first.get_info(pb::GetInfoRequest {}).await.expect("owner");
    second
        .get_info(pb::GetInfoRequest {})
        .await
        .expect("owner, reserved slot");
    drop(helper.stdin.take());
    // Read the helper's last words so it never writes to a closed pipe.
    tokio::task::spawn_blocking(move || {
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut rest);
        let _ = helper.wait();
    })
    .await
    .expect("join");
    gw.shutdown().await;
}

/// A burst beyond the limit is refused with RetryInfo; after the indicated
/// delay calls pass again. (The daemon's own uid is exempt by default, so
/// the test removes the exemption.)
#[tokio::test]
async fn rate_limit_refuses_with_retry_info_then_recovers() {
    let mut security = test_security();
    security.rate_limit.per_second = 5;
    security.rate_limit.burst = 3;
    security.rate_limit.exempt_uids = Some(vec![]);
    let gw = secured(security).await;
    let mut c = gw.client().await.control;
    for _ in 0..3 {
        c.get_info(pb::GetInfoRequest {})
            .await
            .expect("within burst");
    }
    let refused = c
        .get_info(pb::GetInfoRequest {})
        .await
        .expect_err("over the limit");
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert_eq!(reason(&refused), "rate_limited");
    let delay = refused
        .get_error_details()
        .retry_info()
        .and_then(|r| r.retry_delay)
        .expect("RetryInfo with a delay");
    assert!(
        delay > Duration::ZERO && delay <= Duration::from_secs(1),
        "{delay:?}"
    );
    // The delay is the behaviour under test: wait exactly what we were told.
    tokio::time::sleep(delay).await;
    c.get_info(pb::GetInfoRequest {})
        .await
        .expect("passes after the indicated delay");
    let legacy = tokio::task::spawn_blocking({
        let path = gw.path.clone();
        move || {
            (0..5)
                .map(|_| legacy_call(&path, &json!({"request_id": "h", "method": "hello"})))
                .collect::<Vec<_>>()
        }
    })
    .await
    .expect("join");
    let limited = legacy
        .iter()
        .find(|r| r["error"]["code"] == "rate_limited")
        .expect("legacy limited too");
    assert_eq!(limited["error"]["retryable"], true);
    gw.shutdown().await;
}

/// The same RestartChild request id twice restarts once (generation + 1
/// only) and answers the same command id, marked replayed; another payload
/// under that id is ALREADY_EXISTS.
#[tokio::test]
async fn request_ids_are_idempotent() {
    let gw = secured(test_security()).await;
    let mut c = gw.client().await.control;
    let first = c
        .restart_child(pb::RestartChildRequest {
            child_id: "web".into(),
            meta: meta("deploy-1"),
        })
        .await
        .expect("first")
        .into_inner()
        .result
        .expect("result");
    let second = c
        .restart_child(pb::RestartChildRequest {
            child_id: "web".into(),
            meta: meta("deploy-1"),
        })
        .await
        .expect("replay")
        .into_inner()
        .result
        .expect("result");
    assert!(!first.replayed);
    assert!(second.replayed);
    assert_eq!(first.command_id, second.command_id);
    assert_eq!(
        gw.supervisor_child_generation("web").await,
        2,
        "restarted exactly once"
    );
    let conflict = c
        .pause_child(pb::PauseChildRequest {
            child_id: "web".into(),
            meta: meta("deploy-1"),
        })
        .await
        .expect_err("different payload");
    assert_eq!(conflict.code(), Code::AlreadyExists);
    assert_eq!(reason(&conflict), "request_id_conflict");
    gw.shutdown().await;
}

/// With the audit file on /dev/full a restart is refused (UNAVAILABLE,
/// audit_unavailable) and nothing restarts; with on_failure = "continue"
/// it proceeds. Reads keep working either way.
#[tokio::test]
async fn audit_failure_fails_closed_unless_told_otherwise() {
    let mut security = test_security();
    security.audit.path = Some("/dev/full".into());
    let gw = secured(security.clone()).await;
    let mut c = gw.client().await.control;
    let refused = c
        .restart_child(pb::RestartChildRequest {
            child_id: "web".into(),
            meta: meta(""),
        })
        .await
        .expect_err("audit unavailable");
    assert_eq!(refused.code(), Code::Unavailable);
    assert_eq!(reason(&refused), "audit_unavailable");
    assert_eq!(
        gw.supervisor_child_generation("web").await,
        1,
        "nothing restarted"
    );
    c.get_state(pb::GetStateRequest {})
        .await
        .expect("reads still work");
    let legacy = tokio::task::spawn_blocking({
        let path = gw.path.clone();
        move || legacy_call(&path, &legacy_command("restart_child", "web", "l-9"))
    })
    .await
    .expect("join");
    assert_eq!(legacy["error"]["code"], "audit_unavailable");
    gw.shutdown().await;

    security.audit.on_failure = AuditFailure::Continue;
    let gw = secured(security).await;
    let mut c = gw.client().await.control;
    c.restart_child(pb::RestartChildRequest {
        child_id: "web".into(),
        meta: meta(""),
    })
    .await
    .expect("proceeds with on_failure = continue");
    assert_eq!(gw.supervisor_child_generation("web").await, 2);
    gw.shutdown().await;
}

/// AddChild with a program outside add_child.allowed_commands is refused
/// and audited; an empty allowlist refuses every AddChild.
#[tokio::test]
async fn add_child_outside_the_allowlist_is_refused_and_audited() {
    let dir = tempfile::tempdir().expect("tempdir");
    let audit = dir.path().join("audit.log");
    let mut security = test_security();
    security.audit.path = Some(audit.clone());
    let gw = secured(security).await;
    let mut c = gw.client().await.control;
    let spec = |program: &str| pb::ChildSpec {
        id: "extra".into(),
        command: vec![program.into(), "-c".into(), "exec sleep 1000".into()],
        ..Default::default()
    };
    let refused = c
        .add_child(pb::AddChildRequest {
            spec: Some(spec("/bin/bash")),
            meta: meta(""),
        })
        .await
        .expect_err("not allowlisted");
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert_eq!(reason(&refused), "command_not_allowed");
    c.add_child(pb::AddChildRequest {
        spec: Some(spec("/bin/sh")),
        meta: meta(""),
    })
    .await
    .expect("allowlisted");
    let records = audit_lines(&audit);
    assert!(
        records
            .iter()
            .any(|r| r["decision"] == "deny" && r["outcome"] == "command_not_allowed")
    );
    assert!(
        records
            .iter()
            .any(|r| r["decision"] == "allow" && r["outcome"] == "ok")
    );
    let log = c
        .get_audit_log(pb::GetAuditLogRequest { limit: 10 })
        .await
        .expect("audit log")
        .into_inner();
    assert!(
        log.records
            .iter()
            .any(|r| r.outcome == "command_not_allowed")
    );
    gw.shutdown().await;

    let gw = secured(SecurityConfig::default()).await;
    let mut c = gw.client().await.control;
    let refused = c
        .add_child(pb::AddChildRequest {
            spec: Some(spec("/bin/sh")),
            meta: meta(""),
        })
        .await
        .expect_err("empty allowlist");
    assert_eq!(reason(&refused), "command_not_allowed");
    gw.shutdown().await;
}

/// Every method of every service the gateway declares passes the guard:
/// a uid that may connect but holds no class gets PERMISSION_DENIED from
/// each one (none is served, none falls through as unclassified), before
/// its empty request is even validated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_is_guarded() {
    let mut security = test_security();
    security.allowed_uids = vec![NOBODY];
    security.read.uids = vec![12_345];
    let gw = secured(security).await;
    let path = gw.path.clone();
    let lines = tokio::task::spawn_blocking(move || {
        let output = Command::new(helper_executable())
            .args([
                "--ignored",
                "--exact",
                "security::other_uid_client",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("SGW_AS_UID_SOCKET", &path)
            .env("SGW_AS_UID_ALL_RPCS", "1")
            .current_dir("/")
            .uid(NOBODY)
            .gid(NOBODY)
            .output()
            .expect("helper");
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| {
                line.find('{')
                    .and_then(|start| serde_json::from_str::<Value>(&line[start..]).ok())
            })
            .collect::<Vec<_>>()
    })
    .await
    .expect("join");
    assert!(lines.len() >= 15, "every method called: {lines:?}");
    for line in &lines {
        assert_eq!(line["code"], "PermissionDenied:permission_denied", "{line}");
    }
    assert_eq!(gw.supervisor_child_generation("web").await, 1);
    gw.shutdown().await;
}
