//! Hostile local clients against a real gateway: slow handshakes, stream
//! hoarding, expensive reads, oversize input echoed back, refusal floods
//! with an unread stderr. Each test asserts on behaviour (cut off, still
//! served, bounded), never on wall-clock figures.

use crate::support;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use supervisor_gateway::gateway::Limits;
use supervisor_gateway::journal::{Item, Start};
use supervisor_gateway::pb;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

/// Reads until the server closes the connection; `false` if it stays open
/// for the whole of [`PATIENCE`].
async fn closed_by_server(stream: &mut tokio::net::UnixStream) -> bool {
    let mut buf = [0u8; 1024];
    let closed = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(PATIENCE, closed).await.is_ok()
}

/// A client that stops inside the HTTP/2 preface, and one that sends a
/// HEADERS frame without ever ending its header block, are cut after the
/// handshake deadline; clients that behave are served meanwhile, and their
/// slots are not needed by the slow ones any more.
#[tokio::test]
async fn half_handshakes_and_half_header_blocks_are_cut() {
    let mut limits = Limits::with_max_connections(4);
    limits.handshake_timeout = Duration::from_millis(300);
    let gw = gateway_with(vec![], limits).await;
    let mut half_preface = tokio::net::UnixStream::connect(&gw.path)
        .await
        .expect("connect");
    half_preface
        .write_all(b"PRI * HTTP/2.0\r\n")
        .await
        .expect("write");
    let mut half_block = tokio::net::UnixStream::connect(&gw.path)
        .await
        .expect("connect");
    let settings = [0, 0, 0, 0x4, 0, 0, 0, 0, 0];
    // HEADERS on stream 1 without END_HEADERS: the block stays open.
    let headers = [0, 0, 1, 0x1, 0, 0, 0, 0, 1, 0x82];
    let start = [
        &b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"[..],
        &settings[..],
        &headers[..],
    ]
    .concat();
    half_block.write_all(&start).await.expect("write");
    let mut client = gw.client().await.control;
    client
        .get_info(pb::GetInfoRequest {})
        .await
        .expect("served while others stall");
    assert!(
        closed_by_server(&mut half_preface).await,
        "half preface kept"
    );
    assert!(
        closed_by_server(&mut half_block).await,
        "half header block kept"
    );
    client
        .get_info(pb::GetInfoRequest {})
        .await
        .expect("an idle but complete connection is not cut");
    gw.shutdown().await;
}

/// Streams are bounded per uid: past `max_streams_per_uid` a new one is
/// RESOURCE_EXHAUSTED (`too_many_streams`); closing one makes room.
#[tokio::test]
async fn streams_per_uid_are_bounded() {
    let limits = Limits {
        max_streams_per_uid: 2,
        ..Limits::default()
    };
    let gw = gateway_with(vec![], limits).await;
    let mut journal = gw.client().await.journal;
    let subscribe = || pb::SubscribeEventsRequest::default();
    let first = journal.subscribe_events(subscribe()).await.expect("first");
    let second = journal.tail_logs(pb::TailLogsRequest {
        follow: true,
        ..Default::default()
    });
    let second = second.await.expect("second");
    let third = journal
        .subscribe_events(subscribe())
        .await
        .expect_err("third");
    assert_eq!(third.code(), Code::ResourceExhausted);
    assert!(third.message().contains("streams open"), "{third:?}");
    drop(first);
    // The slot is returned when the server drops the stream, which it does
    // once it notices the reset: retry until then, bounded.
    let again = tokio::time::timeout(PATIENCE, async {
        loop {
            match journal.subscribe_events(subscribe()).await {
                Ok(stream) => return stream,
                Err(status) => assert_eq!(status.code(), Code::ResourceExhausted),
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("a closed stream gives its slot back");
    drop((second, again));
    gw.shutdown().await;
}

/// `TailLogs(lines = 65536)` replays at most `max_tail_bytes` of text
/// (the newest lines that fit), however many lines it asks for.
#[tokio::test]
async fn tail_logs_backlog_is_bounded_in_bytes() {
    let limits = Limits {
        max_tail_bytes: 10_000,
        ..Limits::default()
    };
    let script = "i=0; while [ $i -lt 200 ]; do printf '%0999d\\n' $i; i=$((i+1)); done; echo done; sleep 60";
    let gw = gateway_with(vec![sh("chatty", script)], limits).await;
    let mut lines = {
        use supervisor_gateway::control::ControlPlane;
        gw.supervisor.logs().subscribe(Start::Oldest)
    };
    // Wait for the child's last line, read from the log journal itself.
    tokio::time::timeout(PATIENCE, async {
        while let Some(item) = lines.next().await {
            if matches!(item, Item::Record(r) if r.body.text == "done") {
                return;
            }
        }
        panic!("log journal closed");
    })
    .await
    .expect("child printed its lines");
    let mut journal = gw.client().await.journal;
    let mut stream = journal
        .tail_logs(pb::TailLogsRequest {
            lines: 65_536,
            ..Default::default()
        })
        .await
        .expect("tail")
        .into_inner();
    let mut texts = Vec::new();
    while let Some(item) = stream.message().await.expect("item") {
        if let Some(pb::tail_logs_response::Item::Line(line)) = item.item {
            texts.push(line.text);
        }
    }
    let bytes: usize = texts.iter().map(String::len).sum();
    assert!(bytes <= 10_000, "{bytes} bytes replayed");
    assert!(texts.len() >= 5, "only {} lines", texts.len());
    assert_eq!(
        texts.last().map(String::as_str),
        Some("done"),
        "newest kept"
    );
    gw.shutdown().await;
}

/// A 20 KB invalid child id is INVALID_ARGUMENT with a short message (not
/// the whole id echoed into `grpc-message`).
#[tokio::test]
async fn huge_invalid_ids_are_not_echoed_whole() {
    let gw = gateway(vec![]).await;
    let mut control = gw.client().await.control;
    let status = control
        .get_child(pb::GetChildRequest {
            child_id: "X".repeat(20_000),
        })
        .await
        .expect_err("invalid id");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().len() < 512, "{}", status.message().len());
    assert!(
        status.message().contains("20000 bytes"),
        "{}",
        status.message()
    );
    gw.shutdown().await;
}

/// Not a test: what the flood test's `sgw serve` reads as its config.
fn flood_config(dir: &std::path::Path) -> std::path::PathBuf {
    let socket = dir.join("sgw.sock");
    let config = dir.join("sgw.toml");
    let text = format!(
        "[gateway]\nsocket = {socket:?}\nmax_connections = 2\n\n[[child]]\nid = \"idle\"\ncommand = [\"/bin/sh\", \"-c\", \"sleep 600\"]\n"
    );
    std::fs::write(&config, text).expect("config");
    config
}

/// 3,000 refused connections while the server's stderr is a pipe nobody
/// reads: the server keeps answering (logging never blocks a worker), and
/// the refusals are summed up in a few lines instead of one each.
#[test]
fn refusal_floods_neither_stall_the_server_nor_flood_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = flood_config(dir.path());
    let socket = dir.path().join("sgw.sock");
    let mut server = Command::new(env!("CARGO_BIN_EXE_sgw"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("SGW_STATE_DIR", dir.path().join("state"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("RUST_LOG", "info")
        .spawn()
        .expect("sgw serve");
    let mut stdout = server.stdout.take().expect("stdout");
    // Ready once it has printed its socket line.
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while !String::from_utf8_lossy(&seen).contains("try:") {
        assert_eq!(
            stdout.read(&mut byte).expect("stdout"),
            1,
            "sgw exited early"
        );
        seen.push(byte[0]);
    }
    // Two held connections fill the budget (the owner may use all of it).
    let held: Vec<_> = (0..2)
        .map(|_| {
            let mut s = std::os::unix::net::UnixStream::connect(&socket).expect("connect");
            s.write_all(b"{").expect("legacy byte");
            s
        })
        .collect();
    let mut refused = 0;
    for _ in 0..3_000 {
        if let Ok(mut extra) = std::os::unix::net::UnixStream::connect(&socket) {
            extra.set_read_timeout(Some(PATIENCE)).expect("timeout");
            let mut buf = [0u8; 1];
            if matches!(extra.read(&mut buf), Ok(0) | Err(_)) {
                refused += 1;
            }
        }
    }
    assert!(refused > 2_900, "only {refused} refused");
    drop(held);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut client = tokio::time::timeout(PATIENCE, async {
            loop {
                // The freed slots come back as the server notices the closes.
                if let Ok(client) = supervisor_gateway::client::connect(&socket).await
                    && let Ok(info) = client.control.clone().get_info(pb::GetInfoRequest {}).await
                {
                    return (client, info);
                }
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the server still answers after the flood");
        assert_eq!(client.1.into_inner().target_id, "sgw");
        client
            .0
            .control
            .shutdown_tree(pb::ShutdownTreeRequest {
                meta: Some(pb::CommandMeta {
                    confirm: true,
                    ..Default::default()
                }),
            })
            .await
            .expect("shutdown");
    });
    // The channel's connection task lives on the runtime: close it, or the
    // server's drain waits for it.
    drop(runtime);
    let status = server.wait().expect("sgw exits");
    assert!(status.success(), "{status:?}");
    let mut stderr = String::new();
    server
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("stderr");
    let refusal_lines = stderr.lines().filter(|l| l.contains("refused")).count();
    assert!(refusal_lines >= 1, "refusals must be logged: {stderr}");
    assert!(
        refusal_lines < 100,
        "{refusal_lines} refusal lines for {refused} refusals"
    );
}
