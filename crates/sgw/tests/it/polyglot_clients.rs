//! The example clients — `examples/python_client.py` (grpcio, stubs made
//! from `proto/` at run time), `examples/node_client.mjs` (@grpc/grpc-js and
//! @grpc/proto-loader) and `examples/rust_client.rs` — against a live
//! `sgw serve`, each with its language's default channel options. The
//! Python and Node tools come from `scripts/install-test-tools`.

use crate::cli_support;

use crate::rust_client;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cli_support::*;
use serde_json::Value;

/// The workspace root, where the installed test tools live.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// This crate, where the example clients live.
fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn serve() -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(TWO_CHILDREN, &dir.path().join("sgw.sock"));
    (dir, server)
}

fn lines(output: &Output, who: &str) -> Vec<Value> {
    assert!(
        output.status.success(),
        "{who} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        output.status,
        stdout(output),
        stderr(output)
    );
    json_lines(output)
}

/// What every example prints: info, state, pause + resume of `child`, a
/// NOT_FOUND (with `not_found_code` as the language names it), then
/// `events` events from sequence 1.
#[track_caller]
fn assert_transcript(lines: &[Value], child: &str, not_found_code: &str, events: usize) {
    let calls: Vec<&str> = lines.iter().filter_map(|l| l["call"].as_str()).collect();
    let mut expected = vec![
        "GetInfo",
        "GetState",
        "PauseChild",
        "ResumeChild",
        "GetChild",
    ];
    expected.extend(std::iter::repeat_n("SubscribeEvents", events));
    assert_eq!(calls, expected, "{lines:#?}");

    assert_eq!(lines[0]["target_id"], "cli-test");
    assert_eq!(lines[0]["protocol_version"], "supervisor.gateway.v1");
    assert_eq!(lines[0]["caller_uid"], nix::unistd::geteuid().as_raw());
    let ids: Vec<&Value> = lines[1]["children"]
        .as_array()
        .expect("children")
        .iter()
        .map(|c| &c["child_id"])
        .collect();
    assert_eq!(ids, ["alpha", "beta"]);
    assert_eq!(lines[2]["child_id"], child);
    assert_eq!(lines[2]["outcome"], "paused");
    assert_eq!(lines[2]["state"], "CHILD_STATE_PAUSED");
    assert_eq!(lines[3]["child_id"], child);
    assert!(
        lines[3]["outcome"]
            .as_str()
            .is_some_and(|o| o.starts_with("resumed")),
        "{:?}",
        lines[3]
    );
    assert_eq!(lines[4]["code"], not_found_code);
    assert!(
        lines[4]["message"]
            .as_str()
            .is_some_and(|m| m.contains("known children: alpha, beta"))
    );
    let sequences: Vec<u64> = lines[5..]
        .iter()
        .map(|l| l["sequence"].as_u64().expect("an event"))
        .collect();
    assert_eq!(sequences, (1..=events as u64).collect::<Vec<_>>());
}

/// The Python example (plain `grpc.insecure_channel("unix:" + path)`)
/// generates its stubs, makes every call and reads a bounded stream.
#[test]
fn python_example_against_a_live_server() {
    let (_dir, server) = serve();
    let python: PathBuf = repo().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/install-test-tools",
        python.display()
    );
    let output = Command::new(python)
        .arg(crate_dir().join("examples/python_client.py"))
        .args([
            "--socket",
            server.socket(),
            "--child",
            "beta",
            "--events",
            "4",
        ])
        .output()
        .expect("run python");
    assert_transcript(&lines(&output, "python"), "beta", "NOT_FOUND", 4);
}

/// The Node example (`new Client("unix:" + path, createInsecure())`) loads
/// the protos, makes every call and reads a bounded stream; with no
/// `--child` it uses the first child.
#[test]
fn node_example_against_a_live_server() {
    let (_dir, server) = serve();
    assert!(
        repo().join("node_modules/@grpc/grpc-js").exists(),
        "node_modules/@grpc/grpc-js is missing: run scripts/install-test-tools"
    );
    let output = Command::new("node")
        .current_dir(crate_dir())
        .arg("examples/node_client.mjs")
        .args(["--socket", server.socket(), "--events", "3"])
        .output()
        .expect("run node");
    assert_transcript(&lines(&output, "node"), "alpha", "NOT_FOUND", 3);
}

/// The Rust example through `supervisor_gateway::client`, including the
/// ErrorInfo reason it decodes with tonic-types. (Multi-threaded: the
/// channel's connection task must be able to close the dropped stream
/// while the test blocks in stopping the server.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_example_against_a_live_server() {
    let (_dir, server) = serve();
    let options = rust_client::Options::from_args(
        [
            "--socket",
            server.socket(),
            "--child",
            "alpha",
            "--events",
            "2",
        ]
        .into_iter()
        .map(String::from),
    )
    .expect("options");
    let mut out = Vec::new();
    rust_client::run(&options, &mut out)
        .await
        .expect("the example runs");
    let lines: Vec<Value> = String::from_utf8_lossy(&out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_transcript(&lines, "alpha", "NotFound", 2);
    assert_eq!(lines[4]["reason"], "child_not_found");
}
