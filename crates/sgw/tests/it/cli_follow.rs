//! `sgw events --follow` across server restarts: the follower reconnects by
//! itself, tells a new server from the old one, and never prints a
//! sequence twice.

use crate::cli_support;

use std::path::Path;

use cli_support::*;
use serde_json::Value;

fn parse(line: &str) -> Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

fn is_event(line: &str, event_type: &str) -> bool {
    parse(line)["event"]["event_type"] == event_type
}

fn last_event_sequence(socket: &Path) -> u64 {
    state_json(socket.to_str().expect("utf-8"))["last_event_sequence"]
        .as_u64()
        .expect("last_event_sequence")
}

fn pause_alpha(socket: &Path) {
    let output = sgw(&[
        "pause",
        "alpha",
        "--socket",
        socket.to_str().expect("utf-8"),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
}

/// The printed sequences, one list per server (split at the
/// `server_restarted` lines), and the positions those lines report.
fn segments(lines: &[String]) -> (Vec<Vec<u64>>, Vec<u64>) {
    let mut segments = vec![Vec::new()];
    let mut reported = Vec::new();
    for line in lines {
        let value = parse(line);
        if let Some(restart) = value.get("server_restarted") {
            reported.push(restart["previous_position"].as_u64().expect("position"));
            segments.push(Vec::new());
        } else if let Some(sequence) = value["event"]["sequence"].as_u64() {
            segments.last_mut().expect("a segment").push(sequence);
        } else {
            panic!("unexpected line (a gap?): {line}");
        }
    }
    (segments, reported)
}

/// One follower, three servers on one socket path. A stops (SIGTERM): the
/// follower keeps retrying. B was started elsewhere and has a longer
/// journal than A when it is moved onto the path, so only comparing the
/// event at the last sequence received tells it is a new server. C starts
/// fresh on the path after B stops, with a journal shorter than the
/// follower's position. Each server's events are printed once each, from
/// its sequence 1, strictly increasing and without holes, separated by a
/// `server_restarted` line that names where the previous one ended.
#[test]
fn events_follow_survives_server_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("sgw.sock");
    let socket_arg = socket.to_str().expect("utf-8");

    let mut a = Server::start(TWO_CHILDREN, &socket);
    let mut follow = Running::spawn(&["events", "--follow", "--json", "--socket", socket_arg]);
    pause_alpha(&socket);
    follow.stdout.until("alpha paused on A", |l| {
        is_event(l, "EVENT_TYPE_CHILD_PAUSED")
    });
    assert!(a.stop().success());
    follow.stderr.until("the stream from A ending", |l| {
        l.contains("lost the event stream")
    });
    follow.stdout.drain();
    let (printed, _) = segments(&follow.stdout.seen);
    let a_last = *printed[0].last().expect("A's events");

    let b_socket = dir.path().join("b.sock");
    let mut b = Server::start(TWO_CHILDREN, &b_socket);
    while last_event_sequence(&b_socket) <= a_last {
        let output = sgw(&[
            "restart",
            "beta",
            "--socket",
            b_socket.to_str().expect("utf-8"),
        ]);
        assert!(output.status.success(), "{}", stderr(&output));
    }
    std::fs::rename(&b_socket, &socket).expect("move B onto the followed path");
    follow.stdout.until("B recognized as a new server", |l| {
        parse(l).get("server_restarted").is_some()
    });
    pause_alpha(&socket);
    follow.stdout.until("alpha paused on B", |l| {
        is_event(l, "EVENT_TYPE_CHILD_PAUSED")
    });
    assert!(b.stop().success());
    follow.stderr.until("the stream from B ending", |l| {
        l.contains("lost the event stream")
    });

    let c = Server::start(TWO_CHILDREN, &socket);
    follow.stdout.until("C recognized as a new server", |l| {
        parse(l).get("server_restarted").is_some()
    });
    pause_alpha(&socket);
    follow.stdout.until("alpha paused on C", |l| {
        is_event(l, "EVENT_TYPE_CHILD_PAUSED")
    });
    let c_history = json_lines(&sgw(&["events", "--json", "--socket", socket_arg]));

    let (printed, reported) = segments(&follow.stdout.seen);
    assert_eq!(printed.len(), 3, "{:#?}", follow.stdout.seen);
    for (server, sequences) in printed.iter().enumerate() {
        assert_eq!(
            sequences.first(),
            Some(&1),
            "server {server}: {sequences:?}"
        );
        assert!(
            sequences.windows(2).all(|w| w[1] == w[0] + 1),
            "server {server} not strictly increasing without holes: {sequences:?}"
        );
    }
    assert_eq!(printed[0].last(), Some(&a_last));
    assert_eq!(reported, [a_last, *printed[1].last().expect("B's events")]);
    // What the follower printed from C is C's journal, up to that point.
    let c_sequences: Vec<u64> = c_history
        .iter()
        .filter_map(|e| e["event"]["sequence"].as_u64())
        .take(printed[2].len())
        .collect();
    assert_eq!(printed[2], c_sequences);
    drop(follow);
    drop(c);
}
