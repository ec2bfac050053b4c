//! The legacy `dashboard-ipc.v1` adapter over real sockets with real
//! children: golden transcripts per method and error, framing and closing
//! rules, pipelining, pushes, protocol detection beside gRPC, slow
//! subscribers, and relay registration.

use crate::support;
use crate::support::golden;

use std::path::Path;
use std::time::Duration;

use golden::Transcript;
use serde_json::{Value, json};
use supervisor_gateway::control::ControlPlane;
use supervisor_gateway::gateway::Limits;
use supervisor_gateway::model::{Event, EventKind};
use supervisor_gateway::pb;
use supervisor_gateway::transport::legacy::LegacyOptions;
use support::legacy::*;
use support::*;
use tonic_types::StatusExt;

/// `hello` answers the protocol version and the registration payload, with
/// command timeouts derived from the children's stop timeouts.
/// Transcript: `tests/golden/legacy/hello.txt`.
#[tokio::test]
async fn golden_hello() {
    let gw = gateway(vec![sh("a", "exec sleep 1000"), sh("b", "exec sleep 1000")]).await;
    let mut client = LegacyClient::connect(&gw.path).await;
    let mut transcript = Transcript::load("hello").var("SOCKET", gw.path.display().to_string());
    transcript.play_to_end(&mut client).await;
    transcript.finish();
    gw.shutdown().await;
}

/// `state`: the root and the children in declaration order, parent and
/// dependency edges, runtime records, recent events with journal
/// sequences, and the counters. Transcript: `tests/golden/legacy/state.txt`.
#[tokio::test]
async fn golden_state() {
    let mut web = sh("web", "exec sleep 1000");
    web.depends_on = vec![id("db")];
    web.tags = vec!["http".into()];
    web.criticality = supervisor_gateway::model::Criticality::Critical;
    let gw = gateway(vec![sh("db", "exec sleep 1000"), web]).await;
    running(&gw, "web", 1).await;
    let mut client = LegacyClient::connect(&gw.path).await;
    let mut transcript = Transcript::load("state");
    let request = transcript.next_request();
    let mut response = client.call(request.clone()).await;
    // Positive, and different from run to run: "<positive>" in the golden.
    response_generation(&response);
    let state = &mut response["result"]["state"];
    // The events are checked against the journal, then left out of the golden.
    let events = state["recent_events"].take();
    let journal = gw.supervisor.events().tail(100);
    let sequences: Vec<u64> = journal.iter().map(|r| r.sequence).collect();
    let pushed: Vec<u64> = events
        .as_array()
        .expect("recent_events")
        .iter()
        .map(|e| e["sequence"].as_u64().expect("sequence"))
        .collect();
    assert_eq!(pushed, sequences);
    assert_eq!(events[0]["target_id"], "test");
    assert!(
        state["config_version"]
            .as_str()
            .expect("version")
            .starts_with("fnv1a64:")
    );
    state["config_version"] = json!("<hash>");
    state["state_generation"] = json!("<positive>");
    transcript.check(&request, response);
    transcript.finish();
    gw.shutdown().await;
}

fn response_generation(response: &Value) -> Value {
    let generation = &response["result"]["state"]["state_generation"];
    assert!(generation.as_u64().is_some_and(|g| g > 0), "{generation}");
    generation.clone()
}

/// Subscriptions need `session_established`; the answer names the stream.
/// Transcript: `tests/golden/legacy/subscriptions_and_protocol_errors.txt`.
#[tokio::test]
async fn golden_subscriptions_and_protocol_errors() {
    let gw = gateway(vec![]).await;
    let mut client = LegacyClient::connect(&gw.path).await;
    let mut transcript = Transcript::load("subscriptions_and_protocol_errors");
    transcript.play_to_end(&mut client).await;
    transcript.finish();
    client.send_raw(b"{\"method\": \"hello\"}\n").await;
    let missing_id = client.recv().await;
    assert_eq!(missing_id["request_id"], "invalid-request");
    assert_eq!(missing_id["error"]["code"], "invalid_json");
    assert_eq!(missing_id["error"]["stage"], "protocol_parse");
    gw.shutdown().await;
}

/// Every command, their validation errors and the supervisor's refusals,
/// each with the gRPC code as `reason`.
/// Transcript: `tests/golden/legacy/commands.txt`.
#[tokio::test]
async fn golden_commands() {
    let gw = gateway(vec![
        sh("web", "exec sleep 1000"),
        sh("db", "exec sleep 1000"),
    ])
    .await;
    running(&gw, "web", 1).await;
    running(&gw, "db", 1).await;
    let mut client = LegacyClient::connect(&gw.path).await;
    let web = Some("/web");
    let mut transcript = Transcript::load("commands");
    transcript.play_until(&mut client, "grpc").await;
    let mut bad_id = command_params("pause_child", Some("/Web!"), false);
    bad_id["command_id"] = json!("c-pause_child");
    let response = client.call(command("v", "pause_child", bad_id)).await;
    assert_eq!(response["error"]["code"], "validation_failed");

    // The same failures through gRPC carry the same code as ErrorInfo.reason.
    let mut grpc = gw.client().await.control;
    let unknown = grpc
        .restart_child(pb::RestartChildRequest {
            child_id: "nope".into(),
            meta: Some(pb::CommandMeta {
                reason: "x".into(),
                ..Default::default()
            }),
        })
        .await
        .expect_err("unknown child");
    let unconfirmed = grpc
        .remove_child(pb::RemoveChildRequest {
            child_id: "web".into(),
            meta: None,
        })
        .await
        .expect_err("unconfirmed");
    let reasons: Vec<String> = [unknown, unconfirmed]
        .iter()
        .map(|s| {
            s.get_error_details()
                .error_info()
                .expect("info")
                .reason
                .clone()
        })
        .collect();
    assert_eq!(reasons, ["child_not_found", "confirmation_required"]);

    transcript.play_to_end(&mut client).await;
    transcript.finish();
    let mut after = command_params("pause_child", web, false);
    after["command_id"] = json!("c-pause_child");
    let refused = client.call(command("late", "pause_child", after)).await;
    assert_eq!(
        refused["result"]["result"]["error"]["reason"],
        "shutting_down"
    );
    assert_eq!(refused["result"]["result"]["error"]["retryable"], true);
    gw.shutdown().await;
}

/// A line that is not a request is answered `invalid_json` with request id
/// "invalid-request", and the connection keeps serving.
#[tokio::test]
async fn malformed_json_keeps_the_connection_open() {
    let gw = gateway(vec![]).await;
    let mut client = LegacyClient::connect(&gw.path).await;
    for bad in [
        "{not json",
        "[1, 2]",
        "",
        "{\"request_id\": \"x\", \"method\": \"hello\", \"params\": []}",
    ] {
        client.send_raw(format!("{bad}\n").as_bytes()).await;
        let response = client.recv().await;
        assert_eq!(response["request_id"], "invalid-request", "{bad:?}");
        assert_eq!(response["ok"], false);
        assert_eq!(response["error"]["code"], "invalid_json");
        assert_eq!(response["error"]["stage"], "protocol_parse");
        assert!(response.get("result").is_none());
    }
    let hello = client
        .call(json!({"request_id": "still-open", "method": "hello"}))
        .await;
    assert_eq!(hello["ok"], true);
    gw.shutdown().await;
}

/// A frame over the line limit (by default `max_request_bytes`, 64 KiB) is
/// answered `frame_too_large` (stage `ipc_read`) and
/// the connection closes; the gateway keeps serving others.
#[tokio::test]
async fn oversize_frame_closes_after_the_error_line() {
    let gw = gateway(vec![]).await;
    let stream = tokio::net::UnixStream::connect(&gw.path)
        .await
        .expect("connect");
    let (read, mut write) = stream.into_split();
    // Written from another task: the gateway stops reading half-way.
    let writer = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let _ = write.write_all(&vec![b'x'; 2 * 1024 * 1024]).await;
        write
    });
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(read));
    let line = tokio::time::timeout(PATIENCE, lines.next_line())
        .await
        .expect("in time")
        .expect("read")
        .expect("an error line");
    let response: Value = serde_json::from_str(&line).expect("json");
    assert_eq!(
        response,
        error(
            "invalid-request",
            "frame_too_large",
            "ipc_read",
            "frame exceeds the maximum of 65536 bytes"
        )
    );
    let after = tokio::time::timeout(PATIENCE, lines.next_line())
        .await
        .expect("closed in time");
    assert!(matches!(after, Ok(None) | Err(_)), "{after:?}");
    drop(writer.await);
    let mut other = LegacyClient::connect(&gw.path).await;
    assert_eq!(
        other
            .call(json!({"request_id": "h", "method": "hello"}))
            .await["ok"],
        true
    );
    gw.shutdown().await;
}

/// Bytes that are not UTF-8 are answered `invalid_utf8` and close the
/// connection; the request pipelined behind them is never executed.
#[tokio::test]
async fn invalid_utf8_closes_and_executes_nothing_after_it() {
    let gw = gateway(vec![sh("web", "exec sleep 1000")]).await;
    // RUNNING first, so that "still running" below means "never paused".
    wait_event(
        &mut subscribe(&gw.supervisor),
        "web running",
        is(|k| matches!(k, EventKind::ChildRunning { .. }), "web"),
    )
    .await;
    let pause = command(
        "p",
        "pause_child",
        command_params("pause_child", Some("/web"), false),
    );
    let mut bytes = b"\xff\xfe garbage\n".to_vec();
    bytes.extend_from_slice(format!("{pause}\n").as_bytes());
    let mut client = LegacyClient::connect(&gw.path).await;
    client.send_raw(&bytes).await;
    let response = client.recv().await;
    assert_eq!(
        response,
        error(
            "invalid-request",
            "invalid_utf8",
            "ipc_read",
            "frame is not valid UTF-8 (invalid byte at offset 0)"
        )
    );
    assert_eq!(
        client.recv_line().await,
        None,
        "closed after the error line"
    );
    let record = gw.supervisor.child(&id("web")).await.expect("web");
    assert_eq!(
        record.state.as_str(),
        "running",
        "the pause after the bad line never ran"
    );
    gw.shutdown().await;
}

/// EOF in the middle of a line closes the connection without executing the
/// partial request: no command event reaches the journal.
#[tokio::test]
async fn eof_mid_line_executes_nothing() {
    let gw = gateway(vec![sh("web", "exec sleep 1000")]).await;
    let mut client = LegacyClient::connect(&gw.path).await;
    let pause = command(
        "p",
        "pause_child",
        command_params("pause_child", Some("/web"), false),
    );
    client.send_raw(pause.to_string().as_bytes()).await;
    client.finish_writing().await;
    assert_eq!(client.recv_line().await, None, "closed without an answer");
    let commands = gw
        .supervisor
        .events()
        .tail(usize::MAX)
        .iter()
        .filter(|r| matches!(r.body.kind, EventKind::CommandAccepted { .. }))
        .count();
    assert_eq!(commands, 0);
    gw.shutdown().await;
}

fn short_idle(path: &Path) -> LegacyOptions {
    LegacyOptions {
        idle_timeout: Duration::from_millis(200),
        ..LegacyOptions::new(path.display().to_string())
    }
}

/// A connection with no complete frame within the idle timeout is closed;
/// one with an active subscription is not idle.
#[tokio::test]
async fn idle_connections_close_but_subscribers_stay() {
    let gw = gateway_full(vec![], test_engine(), Limits::default(), short_idle).await;
    let mut idle = LegacyClient::connect(&gw.path).await;
    let mut subscriber = LegacyClient::connect(&gw.path).await;
    let started = tokio::time::Instant::now();
    assert_eq!(
        idle.call(json!({"request_id": "1", "method": "hello"}))
            .await["ok"],
        true
    );
    let subscribed = subscriber
        .call(json!({"request_id": "s", "method": "events.subscribe",
                     "params": {"session_established": true}}))
        .await;
    assert_eq!(subscribed["ok"], true);
    assert_eq!(
        idle.recv_line().await,
        None,
        "the idle connection is closed"
    );
    assert!(started.elapsed() >= Duration::from_millis(200));
    // Well past the idle timeout, the subscriber still gets pushes.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let sequence = gw
        .supervisor
        .events()
        .publish(Event::tree(EventKind::BackoffReset));
    let push = subscriber.recv().await;
    assert_eq!(
        (push["type"].clone(), push["event"]["sequence"].clone()),
        (json!("event"), json!(sequence))
    );
    drop(subscriber);
    gw.shutdown().await;
}

/// 1,000 requests written at once on one connection are answered in
/// request order.
#[tokio::test]
async fn thousand_pipelined_requests_answered_in_order() {
    let gw = gateway(vec![sh("web", "exec sleep 1000")]).await;
    let mut batch = String::new();
    for i in 0..1000 {
        let request_id = format!("r-{i}");
        let request = match i % 4 {
            0 => json!({"request_id": request_id, "method": "hello"}),
            1 => json!({"request_id": request_id, "method": "state"}),
            2 => json!({"request_id": request_id, "method": "nope"}),
            _ => command(
                &request_id,
                "pause_child",
                command_params("pause_child", Some("/web"), false),
            ),
        };
        batch.push_str(&request.to_string());
        batch.push('\n');
    }
    let stream = tokio::net::UnixStream::connect(&gw.path)
        .await
        .expect("connect");
    let (read, mut write) = stream.into_split();
    // Written from another task: answers flow back while requests are
    // still being written, and neither side may wait for the other.
    let writer = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        write.write_all(batch.as_bytes()).await.expect("write");
        write
    });
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(read));
    for i in 0..1000 {
        let line = tokio::time::timeout(PATIENCE, lines.next_line())
            .await
            .expect("in time")
            .expect("read")
            .expect("a response");
        let response: Value = serde_json::from_str(&line).expect("json");
        assert_eq!(response["request_id"], format!("r-{i}"));
        assert_eq!(response["ok"], i % 4 != 2, "{response}");
    }
    drop(writer.await);
    gw.shutdown().await;
}

/// A restart through gRPC reaches a legacy subscriber as event pushes with
/// the same sequences (and types) a gRPC SubscribeEvents stream carries.
#[tokio::test]
async fn event_pushes_match_the_grpc_stream() {
    use supervisor_gateway::pb::subscribe_events_response::Item;
    let gw = gateway(vec![sh("web", "exec sleep 1000")]).await;
    running(&gw, "web", 1).await;
    let mut legacy = LegacyClient::connect(&gw.path).await;
    assert_eq!(
        legacy.call(subscription("sub", "events.subscribe")).await["ok"],
        true
    );
    let mut grpc = gw.client().await;
    let mut stream = grpc
        .journal
        .subscribe_events(pb::SubscribeEventsRequest::default())
        .await
        .expect("subscribe")
        .into_inner();
    grpc.control
        .restart_child(pb::RestartChildRequest {
            child_id: "web".into(),
            meta: Some(pb::CommandMeta {
                reason: "parity".into(),
                ..Default::default()
            }),
        })
        .await
        .expect("restart");
    // Both collect from the command's acceptance to its completion.
    let mut from_grpc = Vec::new();
    loop {
        let message = tokio::time::timeout(PATIENCE, stream.message())
            .await
            .expect("in time")
            .expect("ok")
            .expect("open");
        let event = match message.item {
            Some(Item::Event(event)) => event,
            Some(Item::Start(_)) => continue,
            other => panic!("unexpected {other:?}"),
        };
        let name = pb::EventType::try_from(event.event_type)
            .expect("known type")
            .as_str_name()
            .trim_start_matches("EVENT_TYPE_")
            .to_ascii_lowercase();
        let done = name == "command_completed";
        if name == "command_accepted" || !from_grpc.is_empty() {
            from_grpc.push((event.sequence, name));
        }
        if done {
            break;
        }
    }
    let mut from_legacy = Vec::new();
    loop {
        let push = legacy.recv().await;
        assert_eq!(push["type"], "event", "{push}");
        let event = &push["event"];
        let name = event["event_type"].as_str().expect("type").to_owned();
        let done = name == "command_completed";
        if name == "command_accepted" || !from_legacy.is_empty() {
            from_legacy.push((event["sequence"].as_u64().expect("sequence"), name));
        }
        if done {
            assert_eq!(event["target_path"], "/web");
            assert_eq!(event["payload"]["command"], "restart_child");
            assert_eq!(event["correlation_id"], event["payload"]["command_id"]);
            break;
        }
    }
    assert_eq!(from_legacy, from_grpc);
    assert!(from_legacy.len() >= 4, "{from_legacy:?}");
    drop(stream);
    drop(legacy);
    gw.shutdown().await;
}

/// `logs.tail` pushes captured output lines with journal sequences,
/// interleaved with answers to later requests on the same connection.
#[tokio::test]
async fn log_pushes_interleave_with_responses() {
    let gw = gateway(vec![sh("printer", "echo \"started\"; exec sleep 1000")]).await;
    running(&gw, "printer", 1).await;
    let mut client = LegacyClient::connect(&gw.path).await;
    assert_eq!(
        client.call(subscription("tail", "logs.tail")).await["ok"],
        true
    );
    // The restart makes the child print again, while the command is answered.
    let restart = command(
        "r",
        "restart_child",
        command_params("restart_child", Some("/printer"), false),
    );
    client.send(&restart).await;
    let (mut response, mut log) = (None, None);
    while response.is_none() || log.is_none() {
        let line = client.recv().await;
        if line["type"] == "log" {
            // The first generation's line may still arrive after the
            // subscription: wait for the restarted process's own line.
            if line["log"]["fields"]["generation"] == "2" {
                log = Some(line);
            }
        } else {
            assert_eq!(line["request_id"], "r", "{line}");
            response = Some(line);
        }
    }
    let (response, log) = (response.unwrap_or_default(), log.unwrap_or_default());
    assert_eq!(response["result"]["result"]["status"], "completed");
    let record = gw
        .supervisor
        .logs()
        .tail(10)
        .into_iter()
        .find(|r| r.body.generation == 2)
        .expect("the second generation's line");
    let log = &log["log"];
    assert_eq!(log["sequence"], record.sequence);
    assert_eq!(log["message"], "started");
    assert_eq!(log["severity"], "info");
    assert_eq!(
        log["fields"],
        json!({"child_id": "printer", "stream": "stdout", "generation": "2"})
    );
    drop(client);
    gw.shutdown().await;
}

/// A gRPC client and a legacy client on the same socket at the same time,
/// each served in its own protocol.
#[tokio::test]
async fn grpc_and_legacy_share_the_socket() {
    let gw = gateway(vec![sh("web", "exec sleep 1000")]).await;
    let mut legacy = LegacyClient::connect(&gw.path).await;
    let mut grpc = gw.client().await.control;
    let hello = legacy
        .call(json!({"request_id": "1", "method": "hello"}))
        .await;
    assert_eq!(hello["result"]["protocol_version"], "dashboard-ipc.v1");
    let info = grpc
        .get_info(pb::GetInfoRequest {})
        .await
        .expect("GetInfo")
        .into_inner();
    assert_eq!(info.target_id, "test");
    let paused = legacy
        .call(command(
            "2",
            "pause_child",
            command_params("pause_child", Some("/web"), false),
        ))
        .await;
    assert_eq!(paused["result"]["result"]["status"], "completed");
    let web = grpc
        .get_child(pb::GetChildRequest {
            child_id: "web".into(),
        })
        .await
        .expect("GetChild")
        .into_inner()
        .child
        .expect("record");
    assert_eq!(web.state, pb::ChildState::Paused as i32);
    let state = legacy
        .call(json!({"request_id": "3", "method": "state"}))
        .await;
    assert_eq!(
        state["result"]["state"]["runtime_state"][0]["lifecycle_state"],
        "paused"
    );
    drop(legacy);
    gw.shutdown().await;
}

/// `legacy = "off"`: a non-HTTP/2 client is closed without an answer while
/// gRPC keeps working. A dedicated socket serves the adapter alone and is
/// announced as `ipc_path`; its file goes away with the gateway.
#[tokio::test]
async fn legacy_off_and_dedicated_socket() {
    let off = gateway_full(vec![], test_engine(), Limits::default(), |_| {
        LegacyOptions::off()
    })
    .await;
    let mut refused = LegacyClient::connect(&off.path).await;
    refused
        .send(&json!({"request_id": "1", "method": "hello"}))
        .await;
    assert_eq!(refused.recv_line().await, None);
    let mut grpc = off.client().await.control;
    grpc.get_info(pb::GetInfoRequest {})
        .await
        .expect("gRPC still served");
    off.shutdown().await;

    let dedicated_path = std::sync::Arc::new(std::sync::Mutex::new(None));
    let remembered = std::sync::Arc::clone(&dedicated_path);
    let gw = gateway_full(vec![], test_engine(), Limits::default(), move |main| {
        use supervisor_gateway::config::Config;
        let path = main.with_file_name("legacy.sock");
        *remembered.lock().expect("lock") = Some(path.clone());
        let config = Config::parse(
            &format!(
                "[gateway]\nlegacy = \"{}\"\nbind = \"create_new\"\n",
                path.display()
            ),
            "<test>",
        )
        .expect("config");
        LegacyOptions::from_config(&config, &main.display().to_string()).expect("bind dedicated")
    })
    .await;
    let path = dedicated_path.lock().expect("lock").clone().expect("path");
    let mut client = LegacyClient::connect(&path).await;
    let hello = client
        .call(json!({"request_id": "1", "method": "hello"}))
        .await;
    assert_eq!(
        hello["result"]["registration"]["ipc_path"],
        path.display().to_string()
    );
    // The main socket still detects legacy clients too.
    let mut main = LegacyClient::connect(&gw.path).await;
    assert_eq!(
        main.call(json!({"request_id": "2", "method": "hello"}))
            .await["ok"],
        true
    );
    drop((client, main));
    gw.shutdown().await;
    assert!(
        !path.exists(),
        "the dedicated socket is removed on shutdown"
    );
}

/// A subscriber that does not read while thousands of events are published
/// gets an `events_dropped` error push naming the lost range instead of
/// unbounded buffering, and the stream continues right after the range.
#[tokio::test]
async fn slow_subscriber_gets_events_dropped_and_continues() {
    let engine = supervisor_gateway::engine::EngineConfig {
        events_capacity: 16,
        ..test_engine()
    };
    let gw = gateway_full(vec![], engine, Limits::default(), |path| {
        LegacyOptions::new(path.display().to_string())
    })
    .await;
    let mut client = LegacyClient::connect(&gw.path).await;
    assert_eq!(
        client.call(subscription("s", "events.subscribe")).await["ok"],
        true
    );
    let journal = gw.supervisor.events();
    let first = journal.last_sequence() + 1;
    for _ in 0..20_000 {
        journal.publish(Event::tree(EventKind::BackoffReset));
    }
    let last = journal.publish(Event::tree(EventKind::ShutdownStarted));
    // Every sequence from `first` to `last` is either pushed or reported.
    let (mut expected, mut gaps) = (first, 0);
    while expected <= last {
        let push = client.recv().await;
        match push["type"].as_str() {
            Some("event") => {
                assert_eq!(push["event"]["sequence"], expected, "no silent hole");
                expected += 1;
            }
            Some("error") => {
                assert_eq!(push["error"]["code"], "events_dropped");
                assert_eq!(push["error"]["stage"], "subscription");
                let dropped = &push["dropped"];
                assert_eq!(dropped["first_missing"], expected);
                let last_missing = dropped["last_missing"].as_u64().expect("range");
                assert_eq!(dropped["count"], last_missing - expected + 1);
                assert_eq!(dropped["reason"], "lagged");
                assert!(
                    push["error"]["message"]
                        .as_str()
                        .expect("message")
                        .contains(&format!("sequences {expected} to {last_missing}"))
                );
                expected = last_missing + 1;
                gaps += 1;
            }
            other => panic!("unexpected line {other:?}: {push}"),
        }
    }
    assert!(gaps >= 1, "20,000 unread events cannot all fit the buffers");
    // Caught up: the next event is pushed as usual.
    let next = journal.publish(Event::tree(EventKind::BackoffReset));
    assert_eq!(client.recv().await["event"]["sequence"], next);
    drop(client);
    gw.shutdown().await;
}

async fn registration_state(path: &Path) -> (Value, Value) {
    let mut client = LegacyClient::connect(path).await;
    let state = client
        .call(json!({"request_id": "s", "method": "state"}))
        .await;
    let target = &state["result"]["state"]["target"];
    (
        target["registration_state"].clone(),
        target["connection_state"].clone(),
    )
}

/// The registration payload is upserted to the relay once per interval,
/// and `state` reports the registration as live.
#[tokio::test]
async fn registration_upserts_repeat_at_the_interval() {
    let relay = Relay::bind();
    let interval = Duration::from_millis(100);
    let gw = gateway_full(
        vec![sh("web", "exec sleep 1000")],
        test_engine(),
        Limits::default(),
        |main| relay.options(main, interval),
    )
    .await;
    let mut arrivals = Vec::new();
    for _ in 0..3 {
        let (payload, at) = relay.upsert(ack(true, false)).await;
        assert_eq!(payload["target_id"], "test");
        assert_eq!(payload["display_name"], "sgw");
        assert_eq!(payload["ipc_path"], gw.path.display().to_string());
        assert_eq!(payload["lease_seconds"], 5);
        assert_eq!(
            payload["supported_commands"].as_array().map(Vec::len),
            Some(7)
        );
        arrivals.push(at);
    }
    for pair in arrivals.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= interval / 2,
            "upserts {gap:?} apart, interval {interval:?}"
        );
    }
    assert_eq!(
        registration_state(&gw.path).await,
        (json!("active"), json!("registered"))
    );
    gw.shutdown().await;
}

/// A retryable rejection is retried on the next tick; a non-retryable one
/// stops the heartbeat for good, and `state` says so. Serving is unaffected.
#[tokio::test]
async fn non_retryable_rejection_stops_the_heartbeat() {
    let relay = Relay::bind();
    let interval = Duration::from_millis(200);
    let gw = gateway_full(vec![], test_engine(), Limits::default(), |main| {
        relay.options(main, interval)
    })
    .await;
    relay.upsert(ack(true, false)).await;
    relay.upsert(ack(false, true)).await;
    relay.upsert(ack(false, false)).await;
    // Five intervals without an upsert: the heartbeat has stopped.
    let more = tokio::time::timeout(interval * 5, relay.listener.accept()).await;
    assert!(more.is_err(), "an upsert after a non-retryable rejection");
    assert_eq!(
        registration_state(&gw.path).await,
        (json!("rejected"), json!("unavailable"))
    );
    gw.shutdown().await;
}

/// Classification happens per connection: a client that sends nothing is
/// closed after the classification timeout, and while it is pending the
/// accept loop keeps serving others.
#[tokio::test]
async fn silent_connection_is_closed_without_blocking_others() {
    const CLASSIFY_TIMEOUT: Duration = Duration::from_millis(300);
    let limits = Limits {
        first_byte_timeout: CLASSIFY_TIMEOUT,
        ..Limits::default()
    };
    let gw = gateway_with(vec![], limits).await;
    let started = tokio::time::Instant::now();
    let mut silent = LegacyClient::connect(&gw.path).await;
    let mut other = LegacyClient::connect(&gw.path).await;
    assert_eq!(
        other
            .call(json!({"request_id": "1", "method": "hello"}))
            .await["ok"],
        true
    );
    assert!(
        started.elapsed() < CLASSIFY_TIMEOUT,
        "served while the other was pending"
    );
    assert_eq!(silent.recv_line().await, None);
    assert!(started.elapsed() >= CLASSIFY_TIMEOUT);
    drop(other);
    gw.shutdown().await;
}

/// Legacy connections count against `max_connections` like gRPC ones.
#[tokio::test]
async fn legacy_connections_share_the_connection_limit() {
    let gw = gateway_with(vec![], Limits::with_max_connections(2)).await;
    let mut first = LegacyClient::connect(&gw.path).await;
    let mut second = LegacyClient::connect(&gw.path).await;
    for client in [&mut first, &mut second] {
        assert_eq!(
            client
                .call(json!({"request_id": "1", "method": "hello"}))
                .await["ok"],
            true
        );
    }
    let mut third = LegacyClient::connect(&gw.path).await;
    third
        .send(&json!({"request_id": "3", "method": "hello"}))
        .await;
    assert_eq!(third.recv_line().await, None, "over the limit: closed");
    drop(first);
    // The freed slot is usable again (the close is noticed asynchronously).
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let mut again = LegacyClient::connect(&gw.path).await;
        again
            .send(&json!({"request_id": "4", "method": "hello"}))
            .await;
        if again.recv_line().await.is_some() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slot was never freed"
        );
    }
    drop(second);
    gw.shutdown().await;
}

/// On shutdown a subscriber receives the shutdown's events, then a final
/// `shutting_down` error push, then the connection closes and the gateway
/// finishes draining.
#[tokio::test]
async fn subscribers_see_the_shutdown_then_close() {
    let gw = gateway(vec![sh("web", "exec sleep 1000")]).await;
    let mut client = LegacyClient::connect(&gw.path).await;
    assert_eq!(
        client.call(subscription("s", "events.subscribe")).await["ok"],
        true
    );
    gw.shutdown().await;
    let mut types = Vec::new();
    while let Some(line) = client.recv_line().await {
        let push: Value = serde_json::from_str(&line).expect("json");
        types.push(match push["type"].as_str() {
            Some("event") => push["event"]["event_type"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            _ => push["error"]["code"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        });
    }
    assert!(
        types.contains(&"shutdown_completed".to_owned()),
        "{types:?}"
    );
    assert_eq!(types.last().map(String::as_str), Some("shutting_down"));
}

/// Legacy options with a short write deadline, so stalled clients are
/// noticed quickly.
fn short_write(path: &Path) -> LegacyOptions {
    LegacyOptions {
        write_timeout: Duration::from_millis(200),
        ..LegacyOptions::new(path.display().to_string())
    }
}

/// A client that pipelines requests and never reads its responses is
/// closed once a write has waited `write_timeout` (its own writes then
/// fail), instead of holding the connection and its reader forever; a
/// second client is served before and after. The responses that were
/// queued before the close are the first ones, in order.
#[tokio::test]
async fn pipelining_client_that_never_reads_is_closed() {
    let gw = gateway_full(vec![], test_engine(), Limits::default(), short_write).await;
    let stream = tokio::net::UnixStream::connect(&gw.path)
        .await
        .expect("connect");
    let (read, mut write) = stream.into_split();
    // 8 MiB of requests: far more than the socket buffers and the outbox
    // hold, so the gateway must stop reading and writing to this client.
    let mut requests = String::new();
    for i in 0..8 * 1024 {
        let request = json!({"request_id": format!("r-{i}"), "method": "hello",
                             "params": {"pad": "x".repeat(900)}});
        requests.push_str(&format!("{request}\n"));
    }
    let started = tokio::time::Instant::now();
    let writer = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let written = write.write_all(requests.as_bytes()).await;
        (write, written)
    });
    let mut other = LegacyClient::connect(&gw.path).await;
    assert_eq!(
        other
            .call(json!({"request_id": "o-1", "method": "hello"}))
            .await["ok"],
        true
    );
    let (write, written) = tokio::time::timeout(PATIENCE, writer)
        .await
        .expect("the stalled connection is closed in time")
        .expect("writer task");
    assert!(written.is_err(), "the gateway read 8 MiB nobody reads back");
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(
        other
            .call(json!({"request_id": "o-2", "method": "state"}))
            .await["ok"],
        true,
        "the other client is still served"
    );
    let lines = read_to_end(read.reunite(write).expect("same stream")).await;
    let whole: Vec<&String> = lines.iter().filter(|l| l.ends_with('\n')).collect();
    assert!(
        !whole.is_empty(),
        "some responses were sent before the stall"
    );
    assert!(
        lines.len() - whole.len() <= 1,
        "only the last line may be cut"
    );
    for (i, line) in whole.iter().enumerate() {
        let response: Value = serde_json::from_str(line).expect("a whole JSON line");
        assert_eq!(response["request_id"], format!("r-{i}"), "in request order");
    }
    gw.shutdown().await;
}

/// A subscriber that stops reading while events keep coming is dropped
/// and closed once a write has waited `write_timeout`, instead of pinning
/// its connection and push pump forever. What it was sent is the event
/// stream without a hole; if the final `events_dropped` push fit in the
/// socket, it names exactly the rest. The gateway keeps serving.
#[tokio::test]
async fn subscriber_that_never_reads_is_dropped_and_closed() {
    let gw = gateway_full(vec![], test_engine(), Limits::default(), short_write).await;
    let mut stream = tokio::net::UnixStream::connect(&gw.path)
        .await
        .expect("connect");
    {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
        let request = subscription("s", "events.subscribe");
        stream
            .write_all(format!("{request}\n").as_bytes())
            .await
            .expect("subscribe");
        // Read exactly the answer, byte by byte, so no push is consumed.
        let mut answer = Vec::new();
        let mut reader = tokio::io::BufReader::with_capacity(1, &mut stream);
        tokio::time::timeout(PATIENCE, reader.read_until(b'\n', &mut answer))
            .await
            .expect("answer in time")
            .expect("read answer");
        let answer: Value = serde_json::from_slice(&answer).expect("json");
        assert_eq!(answer["ok"], true, "{answer}");
    }
    let journal = gw.supervisor.events();
    let first = journal.last_sequence() + 1;
    // Several MiB of pushes: more than the socket and the outbox hold.
    for _ in 0..20_000 {
        journal.publish(Event::tree(EventKind::BackoffReset));
    }
    let last = journal.last_sequence();
    let started = tokio::time::Instant::now();
    assert!(
        closed_without_reading(&stream).await,
        "the gateway still holds a subscriber that reads nothing"
    );
    assert!(started.elapsed() >= Duration::from_millis(200));
    let lines = read_to_end(stream).await;
    let mut expected = first;
    for (i, line) in lines.iter().enumerate() {
        let Ok(push) = serde_json::from_str::<Value>(line) else {
            assert_eq!(i + 1, lines.len(), "only the last line may be cut: {line}");
            continue;
        };
        match push["type"].as_str() {
            Some("event") => {
                assert_eq!(push["event"]["sequence"], expected, "no silent hole");
                expected += 1;
            }
            Some("error") => {
                assert_eq!(i + 1, lines.len(), "the drop notice is the last line");
                assert_eq!(push["error"]["code"], "events_dropped");
                assert_eq!(push["dropped"]["first_missing"], expected);
                assert_eq!(push["dropped"]["last_missing"], last);
                expected = last + 1;
            }
            other => panic!("unexpected line {other:?}: {push}"),
        }
    }
    assert!(expected > first, "some events were pushed before the stall");
    let mut other = LegacyClient::connect(&gw.path).await;
    assert_eq!(
        other
            .call(json!({"request_id": "h", "method": "hello"}))
            .await["ok"],
        true
    );
    gw.shutdown().await;
}

/// Serves the adapter as `sgw serve` would configure it from `toml`.
async fn configured_gateway(toml: &str) -> TestGateway {
    let config = supervisor_gateway::config::Config::parse(toml, "test.toml").expect("config");
    gateway_full(vec![], test_engine(), Limits::default(), |path| {
        LegacyOptions::from_config(&config, &path.display().to_string()).expect("options")
    })
    .await
}

/// A `hello` line of exactly `size` bytes (newline excluded).
fn hello_of(size: usize) -> String {
    let head = r#"{"request_id":"big","method":"hello","params":{"pad":""#;
    let tail = r#""}}"#;
    format!("{head}{}{tail}", "x".repeat(size - head.len() - tail.len()))
}

/// Sends `line` on a new connection and returns the answer and whether the
/// connection closed after it.
async fn answer_to(gw: &TestGateway, line: &str) -> (Value, bool) {
    let mut client = LegacyClient::connect(&gw.path).await;
    client.send_raw(format!("{line}\n").as_bytes()).await;
    let answer = client.recv().await;
    if answer["ok"] == true {
        return (answer, false);
    }
    (answer, client.recv_line().await.is_none())
}

/// The legacy line limit follows the configuration: unset, it is
/// `max_request_bytes` (not a fixed 1 MiB); `legacy_max_line_bytes` sets it
/// on its own. A longer line is answered `frame_too_large` (stage
/// `ipc_read`) and closes the connection; one at the limit is served.
/// Both keys are validated.
#[tokio::test]
async fn legacy_line_limit_follows_the_config() {
    let gw = configured_gateway("[gateway]\nmax_request_bytes = 4096\n").await;
    let (answer, _) = answer_to(&gw, &hello_of(4096)).await;
    assert_eq!(answer["ok"], true, "{answer}");
    let (answer, closed) = answer_to(&gw, &hello_of(4097)).await;
    assert_eq!(
        answer,
        error(
            "invalid-request",
            "frame_too_large",
            "ipc_read",
            "frame exceeds the maximum of 4096 bytes"
        )
    );
    assert!(closed, "closed after frame_too_large");
    gw.shutdown().await;

    let gw =
        configured_gateway("[gateway]\nmax_request_bytes = 4096\nlegacy_max_line_bytes = 8192\n")
            .await;
    let (answer, _) = answer_to(&gw, &hello_of(8192)).await;
    assert_eq!(answer["ok"], true, "{answer}");
    let (answer, closed) = answer_to(&gw, &hello_of(8193)).await;
    assert_eq!(answer["error"]["code"], "frame_too_large");
    assert!(closed, "closed after frame_too_large");
    gw.shutdown().await;

    for (toml, needle) in [
        (
            "[gateway]\nlegacy_max_line_bytes = 100\n",
            "legacy_max_line_bytes",
        ),
        ("[gateway]\nwrite_timeout = \"0s\"\n", "write_timeout"),
    ] {
        let error = supervisor_gateway::config::Config::parse(toml, "x.toml").expect_err(toml);
        assert!(error.to_string().contains(needle), "{error}");
    }
    let config = supervisor_gateway::config::Config::parse(
        "[gateway]\nwrite_timeout = \"250ms\"\n",
        "x.toml",
    )
    .expect("valid write_timeout");
    assert_eq!(config.gateway.write_timeout, Duration::from_millis(250));
}

/// A command whose `requested_at_unix_nanos` has 5,000 digits (beyond any
/// number serde_json converts) is answered for its own request id with
/// `invalid_command_params`, not `invalid_json`, and executes nothing; the
/// connection keeps serving.
#[tokio::test]
async fn huge_number_in_params_is_invalid_command_params() {
    let gw = gateway(vec![sh("web", "exec sleep 1000")]).await;
    let params = command_params("pause_child", Some("/web"), false).to_string();
    let huge = "9".repeat(5000);
    let params = params.replace("1764150000000000000", &huge);
    assert!(params.contains(&huge));
    let line =
        format!(r#"{{"request_id":"huge","method":"command.pause_child","params":{params}}}"#);
    let mut client = LegacyClient::connect(&gw.path).await;
    client.send_raw(format!("{line}\n").as_bytes()).await;
    let answer = client.recv().await;
    assert_eq!(answer["request_id"], "huge", "{answer}");
    assert_eq!(answer["ok"], false);
    assert_eq!(answer["error"]["code"], "invalid_command_params");
    assert_eq!(answer["error"]["stage"], "protocol_parse");
    let record = gw.supervisor.child(&id("web")).await.expect("web");
    assert_ne!(record.state.as_str(), "paused", "nothing was executed");
    assert_eq!(
        client
            .call(json!({"request_id": "after", "method": "hello"}))
            .await["ok"],
        true
    );
    gw.shutdown().await;
}

/// A relay busy for longer than a heartbeat interval (but less than the
/// lease) before it acks: the gateway waits for the ack instead of
/// dropping the connection after one interval, so the relay's ack is
/// delivered and the registration stays `registered` throughout; the
/// heartbeat then goes on. (The relay's delay is the scenario, not a
/// synchronization.)
#[tokio::test]
async fn slow_ack_within_the_lease_keeps_the_registration() {
    let relay = Relay::bind();
    let interval = Duration::from_millis(300);
    let gw = gateway_full(vec![], test_engine(), Limits::default(), |main| {
        relay.options_with_lease(main, interval, 3)
    })
    .await;
    relay.upsert(ack(true, false)).await;
    let (_, _, mut busy) = relay
        .next_upsert(PATIENCE)
        .await
        .expect("the second upsert");
    tokio::time::sleep(interval * 3).await;
    assert_eq!(
        registration_state(&gw.path).await,
        (json!("active"), json!("registered")),
        "still registered while the relay is busy"
    );
    busy.ack(&ack(true, false))
        .await
        .expect("the gateway still waits for the late ack");
    busy.wait_closed().await;
    assert_eq!(
        registration_state(&gw.path).await,
        (json!("active"), json!("registered"))
    );
    relay.upsert(ack(true, false)).await;
    gw.shutdown().await;
}

/// A relay that closes the connection without an ack (restarting,
/// overloaded) is retried with a backoff well before the next interval,
/// again and again, until it acks: the heartbeat never gives up on
/// transport errors, and the registration comes back.
#[tokio::test]
async fn relay_dropping_the_connection_is_retried_with_backoff() {
    let relay = Relay::bind();
    let interval = Duration::from_secs(4);
    let gw = gateway_full(vec![], test_engine(), Limits::default(), |main| {
        relay.options_with_lease(main, interval, 10)
    })
    .await;
    let (_, mut at, dropped) = relay.next_upsert(PATIENCE).await.expect("the first upsert");
    drop(dropped);
    for attempt in 1..=3 {
        let (_, next_at, dropped) = relay
            .next_upsert(interval / 2)
            .await
            .unwrap_or_else(|| panic!("retry {attempt} did not come before half an interval"));
        assert!(next_at > at);
        at = next_at;
        drop(dropped);
    }
    let (_, _, mut accepted) = relay
        .next_upsert(interval / 2)
        .await
        .expect("a retry after three failures");
    accepted.ack(&ack(true, false)).await.expect("ack");
    accepted.wait_closed().await;
    assert_eq!(
        registration_state(&gw.path).await,
        (json!("active"), json!("registered"))
    );
    gw.shutdown().await;
}
