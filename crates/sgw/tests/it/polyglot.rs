//! Third-party clients against the gateway's socket with no proto files
//! and no authority override: grpcurl 1.8.6 (v1alpha reflection only, sends
//! the socket path as `:authority`) and Python grpcio with a plain
//! `unix:` channel (sends a percent-encoded path). Both fail against a bare
//! tonic UDS server; the regression tests keep proving why the gateway
//! repairs `:authority`. Tools come from `scripts/install-test-tools`.

use crate::support;

use std::path::Path;
use std::process::{Command, Output};

use prost::Message;
use supervisor_gateway::pb;
use support::*;

fn grpcurl(socket: &Path, args: &[&str]) -> Output {
    let mut command = Command::new(tool("grpcurl"));
    command.args(["-plaintext", "-unix"]);
    // Flags (and their values) go before the address, the method after.
    let mut iter = args.iter().peekable();
    let mut before = Vec::new();
    let mut after = Vec::new();
    while let Some(arg) = iter.next() {
        if arg.starts_with('-') {
            before.push(*arg);
            if matches!(*arg, "-d" | "-max-time")
                && let Some(value) = iter.next()
            {
                before.push(*value);
            }
        } else {
            after.push(*arg);
        }
    }
    command.args(before).arg(socket).args(after);
    command.output().expect("run grpcurl")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// grpcurl prints an error's details decoded (reflection serves
/// `google/rpc/error_details.proto`), not "ErrorInfo is not recognized".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_decodes_error_details() {
    let gw = gateway(vec![]).await;
    let path = gw.path.clone();
    let output = tokio::task::spawn_blocking(move || {
        grpcurl(
            &path,
            &[
                "-d",
                r#"{"child_id": "nobody"}"#,
                "supervisor.gateway.v1.ControlService/GetChild",
            ],
        )
    })
    .await
    .expect("join");
    let all = format!("{}{}", text(&output.stdout), text(&output.stderr));
    assert!(!output.status.success(), "{all}");
    assert!(all.contains("NotFound"), "{all}");
    assert!(!all.contains("not recognized"), "{all}");
    assert!(
        all.contains("child_not_found"),
        "ErrorInfo reason decoded: {all}"
    );
    gw.shutdown().await;
}

/// grpcurl lists and describes the services through v1alpha reflection,
/// calls a unary RPC and reads a bounded SubscribeEvents, with no protos.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_lists_describes_and_calls_without_protos() {
    let gw = gateway(vec![sh("svc", "echo hello; exec sleep 1000")]).await;
    let path = gw.path.clone();
    let (list, describe, info, events, logs) = tokio::task::spawn_blocking(move || {
        (
            grpcurl(&path, &["list"]),
            grpcurl(
                &path,
                &[
                    "describe",
                    "supervisor.gateway.v1.ControlService.RestartChild",
                ],
            ),
            grpcurl(&path, &["supervisor.gateway.v1.ControlService/GetInfo"]),
            grpcurl(
                &path,
                &[
                    "-max-time",
                    "2",
                    "-d",
                    r#"{"include_backlog": true}"#,
                    "supervisor.gateway.v1.JournalService/SubscribeEvents",
                ],
            ),
            grpcurl(
                &path,
                &[
                    "-d",
                    r#"{"lines": 10, "child_ids": ["svc"]}"#,
                    "supervisor.gateway.v1.JournalService/TailLogs",
                ],
            ),
        )
    })
    .await
    .expect("grpcurl runs");
    assert!(list.status.success(), "list failed: {}", text(&list.stderr));
    let listed = text(&list.stdout);
    for service in [
        "supervisor.gateway.v1.ControlService",
        "supervisor.gateway.v1.JournalService",
        "grpc.health.v1.Health",
    ] {
        assert!(
            listed.contains(service),
            "{service} missing from:\n{listed}"
        );
    }
    assert!(describe.status.success(), "{}", text(&describe.stderr));
    assert!(
        text(&describe.stdout).contains("Stop then start the child"),
        "comments are served"
    );
    assert!(info.status.success(), "{}", text(&info.stderr));
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).expect("GetInfo JSON");
    assert_eq!(info["targetId"], "test");
    assert!(info["caller"]["pid"].as_u64().is_some_and(|pid| pid > 0));
    // The stream is bounded by -max-time; what it printed before is what counts.
    let events = text(&events.stdout);
    assert!(
        events.contains(r#""sequence": "1""#),
        "no backlog in:\n{events}"
    );
    assert!(events.contains("EVENT_TYPE_CHILD_ADDED"), "{events}");
    assert!(logs.status.success(), "{}", text(&logs.stderr));
    gw.shutdown().await;
}

const PYTHON_CALL: &str = r#"
import os, sys, grpc
channel = grpc.insecure_channel("unix://" + sys.argv[1])
call = channel.unary_unary(sys.argv[2])
try:
    reply = call(b"", timeout=10)
    print("ok", os.getpid(), reply.hex())
except grpc.RpcError as error:
    print("error", error.code().name, error.details())
    sys.exit(1)
"#;

fn python(socket: &Path, method: &str) -> Output {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    assert!(python.exists(), "run scripts/install-test-tools first");
    Command::new(python)
        .args(["-c", PYTHON_CALL])
        .arg(socket)
        .arg(method)
        .output()
        .expect("run python")
}

/// Python grpcio with default options (`unix://` channel, percent-encoded
/// path as `:authority`) calls GetInfo; the gateway sees its pid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_grpcio_plain_channel_works() {
    let gw = gateway(vec![]).await;
    let path = gw.path.clone();
    let out = tokio::task::spawn_blocking(move || {
        python(&path, "/supervisor.gateway.v1.ControlService/GetInfo")
    })
    .await
    .expect("python runs");
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "python failed: {stdout} {}",
        text(&out.stderr)
    );
    let mut words = stdout.split_whitespace().skip(1);
    let pid: u32 = words.next().and_then(|p| p.parse().ok()).expect("pid");
    let bytes: Vec<u8> = words
        .next()
        .map(|hex| {
            (0..hex.len())
                .step_by(2)
                .filter_map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
                .collect()
        })
        .expect("payload");
    let info = pb::GetInfoResponse::decode(bytes.as_slice()).expect("GetInfoResponse");
    assert_eq!(info.caller.expect("caller").pid, pid);
    gw.shutdown().await;
}

/// Regression: the same clients against a bare tonic server on a Unix
/// socket fail (h2 rejects the path as a malformed authority). If this ever
/// starts passing, the rewrite layer may no longer be needed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_tonic_rejects_what_the_gateway_accepts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bare.sock");
    let listener = tokio::net::UnixListener::bind(&path).expect("bind");
    let (_reporter, health) = tonic_health::server::health_reporter();
    let stop = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(health)
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::UnixListenerStream::new(listener),
                stop.clone().cancelled_owned(),
            ),
    );
    let bare = path.clone();
    let (py, curl) = tokio::task::spawn_blocking(move || {
        (
            python(&bare, "/grpc.health.v1.Health/Check"),
            grpcurl(&bare, &["-d", "{}", "grpc.health.v1.Health/Check"]),
        )
    })
    .await
    .expect("clients run");
    assert!(
        !py.status.success(),
        "grpcio unexpectedly works against bare tonic: {}",
        text(&py.stdout)
    );
    assert!(
        !curl.status.success(),
        "grpcurl unexpectedly works against bare tonic: {}",
        text(&curl.stdout)
    );
    stop.cancel();
    let _ = server.await;

    let gw = gateway(vec![]).await;
    let ours = gw.path.clone();
    let (py, curl) = tokio::task::spawn_blocking(move || {
        (
            python(&ours, "/grpc.health.v1.Health/Check"),
            grpcurl(&ours, &["-d", "{}", "grpc.health.v1.Health/Check"]),
        )
    })
    .await
    .expect("clients run");
    assert!(
        py.status.success(),
        "grpcio against the gateway: {}",
        text(&py.stdout)
    );
    assert!(
        curl.status.success(),
        "grpcurl against the gateway: {}",
        text(&curl.stderr)
    );
    assert!(text(&curl.stdout).contains("SERVING"));
    gw.shutdown().await;
}
