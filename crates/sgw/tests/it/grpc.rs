//! The gRPC gateway in-process over a real Unix socket with the tonic
//! client: every RPC, streaming resume, limits, errors.

use crate::support;

use supervisor_gateway::pb;
use supervisor_gateway::pb::subscribe_events_response::Item as EventItem;
use supervisor_gateway::pb::tail_logs_response::Item as LogItem;
use support::*;
use tonic::Code;
use tonic_types::StatusExt;

fn meta(confirm: bool) -> Option<pb::CommandMeta> {
    Some(pb::CommandMeta {
        request_id: String::new(),
        requested_by: String::new(),
        reason: "grpc test".into(),
        confirm,
    })
}

fn reason(status: &tonic::Status) -> String {
    status
        .get_error_details()
        .error_info()
        .map(|i| i.reason.clone())
        .unwrap_or_default()
}

/// GetInfo reports the server, its limits, and this very process as the
/// caller (uid and pid from SO_PEERCRED).
#[tokio::test]
async fn get_info_reports_the_caller_identity() {
    let gw = gateway(vec![]).await;
    let mut client = gw.client().await;
    let info = client
        .control
        .get_info(pb::GetInfoRequest {})
        .await
        .expect("GetInfo")
        .into_inner();
    assert_eq!(info.protocol_version, "supervisor.gateway.v1");
    assert_eq!(info.target_id, "test");
    // Every command but ReloadConfig: this engine has no config file.
    let names: Vec<String> = info
        .supported_commands
        .iter()
        .map(|c| c.name.clone())
        .collect();
    assert_eq!(names.len(), 8, "{names:?}");
    assert!(names.iter().any(|n| n == "scale_child"), "{names:?}");
    assert!(!names.iter().any(|n| n == "reload_config"), "{names:?}");
    assert_eq!(info.limits.expect("limits").max_request_bytes, 64 * 1024);
    let caller = info.caller.expect("caller");
    assert_eq!(caller.uid, nix::unistd::getuid().as_raw());
    assert_eq!(caller.gid, nix::unistd::getgid().as_raw());
    assert_eq!(caller.pid, std::process::id());
    assert!(caller.connection_id > 0);
    gw.shutdown().await;
}

/// Every read and command RPC, with their error codes and ErrorInfo.
#[tokio::test]
async fn every_control_rpc_round_trips() {
    let gw = gateway(vec![
        sh("web", "exec sleep 1000"),
        sh("db", "exec sleep 1000"),
    ])
    .await;
    gw.wait_running("web").await;
    let mut c = gw.client().await.control;

    let state = c
        .get_state(pb::GetStateRequest {})
        .await
        .expect("GetState")
        .into_inner();
    let ids: Vec<_> = state.children.iter().map(|c| c.child_id.as_str()).collect();
    assert_eq!(ids, ["web", "db"]);
    assert!(state.last_event_sequence > 0);

    let web = c
        .get_child(pb::GetChildRequest {
            child_id: "web".into(),
        })
        .await
        .expect("GetChild")
        .into_inner();
    let web = web.child.expect("record");
    assert_eq!(web.state, pb::ChildState::Running as i32);
    assert!(web.pid.is_some());

    let missing = c
        .get_child(pb::GetChildRequest {
            child_id: "nope".into(),
        })
        .await
        .expect_err("unknown child");
    assert_eq!(missing.code(), Code::NotFound);
    assert_eq!(reason(&missing), "child_not_found");
    assert!(missing.message().contains("web"), "{}", missing.message());
    let bad = c
        .get_child(pb::GetChildRequest {
            child_id: "Bad Id".into(),
        })
        .await
        .expect_err("bad id");
    assert_eq!(bad.code(), Code::InvalidArgument);

    let restarted = c
        .restart_child(pb::RestartChildRequest {
            child_id: "web".into(),
            meta: meta(false),
        })
        .await
        .expect("RestartChild")
        .into_inner()
        .result
        .expect("result");
    assert_eq!(restarted.command, pb::CommandType::RestartChild as i32);
    assert_eq!(restarted.child.expect("record").generation, 2);
    assert!(restarted.command_id.starts_with("cmd-"));

    let paused = c
        .pause_child(pb::PauseChildRequest {
            child_id: "web".into(),
            meta: meta(false),
        })
        .await
        .expect("PauseChild")
        .into_inner()
        .result
        .expect("result");
    assert_eq!(
        paused.child.expect("record").state,
        pb::ChildState::Paused as i32
    );
    let again = c
        .pause_child(pb::PauseChildRequest {
            child_id: "web".into(),
            meta: meta(false),
        })
        .await
        .expect("PauseChild")
        .into_inner();
    assert_eq!(again.result.expect("result").outcome, "already paused");
    let resumed = c
        .resume_child(pb::ResumeChildRequest {
            child_id: "web".into(),
            meta: meta(false),
        })
        .await
        .expect("ResumeChild")
        .into_inner();
    assert_eq!(
        resumed.result.expect("r").child.expect("c").state,
        pb::ChildState::Running as i32
    );
    let quarantined = c
        .quarantine_child(pb::QuarantineChildRequest {
            child_id: "db".into(),
            meta: meta(false),
        })
        .await
        .expect("QuarantineChild")
        .into_inner();
    assert_eq!(
        quarantined.result.expect("r").child.expect("c").state,
        pb::ChildState::Quarantined as i32
    );

    let unconfirmed = c
        .remove_child(pb::RemoveChildRequest {
            child_id: "db".into(),
            meta: meta(false),
        })
        .await
        .expect_err("remove needs confirm");
    assert_eq!(unconfirmed.code(), Code::FailedPrecondition);
    assert_eq!(reason(&unconfirmed), "confirmation_required");
    let removed = c
        .remove_child(pb::RemoveChildRequest {
            child_id: "db".into(),
            meta: meta(true),
        })
        .await
        .expect("RemoveChild")
        .into_inner();
    assert_eq!(removed.result.expect("r").outcome, "removed");

    let spec = pb::ChildSpec {
        id: "extra".into(),
        command: vec!["/bin/sh".into(), "-c".into(), "exec sleep 1000".into()],
        tags: vec!["added".into()],
        ..Default::default()
    };
    let added = c
        .add_child(pb::AddChildRequest {
            spec: Some(spec.clone()),
            meta: meta(true),
        })
        .await
        .expect("AddChild")
        .into_inner()
        .result
        .expect("result");
    let record = added.child.expect("record");
    assert_eq!(record.child_id, "extra");
    assert_eq!(record.tags, ["added"]);
    let duplicate = c
        .add_child(pb::AddChildRequest {
            spec: Some(spec),
            meta: meta(true),
        })
        .await
        .expect_err("duplicate");
    assert_eq!(duplicate.code(), Code::AlreadyExists);
    let invalid = c
        .add_child(pb::AddChildRequest {
            spec: Some(pb::ChildSpec {
                id: "empty".into(),
                ..Default::default()
            }),
            meta: meta(true),
        })
        .await
        .expect_err("no command");
    assert_eq!(invalid.code(), Code::InvalidArgument);
    assert_eq!(reason(&invalid), "invalid_child_spec");

    let shutdown = c
        .shutdown_tree(pb::ShutdownTreeRequest { meta: meta(true) })
        .await
        .expect("ShutdownTree")
        .into_inner();
    assert!(shutdown.result.expect("r").outcome.starts_with("stopped"));
    let after = c
        .restart_child(pb::RestartChildRequest {
            child_id: "web".into(),
            meta: meta(false),
        })
        .await
        .expect_err("after shutdown");
    assert_eq!(after.code(), Code::Unavailable);
    assert!(after.get_error_details().retry_info().is_some());
    gw.shutdown().await;
}

/// The next event or gap; the stream's first message (its StreamStart)
/// is checked and skipped.
async fn next_event(stream: &mut tonic::Streaming<pb::SubscribeEventsResponse>) -> EventItem {
    loop {
        let item = tokio::time::timeout(PATIENCE, stream.message())
            .await
            .expect("an event in time")
            .expect("stream ok")
            .expect("stream open")
            .item
            .expect("item");
        match item {
            EventItem::Start(start) => assert_eq!(start.journal_id.len(), 32, "{start:?}"),
            other => return other,
        }
    }
}

/// A subscriber that reconnects with `after_sequence` = the last sequence
/// it saw continues exactly after it: no duplicate, no hole.
#[tokio::test]
async fn event_stream_resumes_after_reconnect_without_duplicates() {
    let gw = gateway(vec![sh("svc", "exec sleep 1000")]).await;
    let mut first = gw.client().await;
    let mut stream = first
        .journal
        .subscribe_events(pb::SubscribeEventsRequest {
            include_backlog: true,
            ..Default::default()
        })
        .await
        .expect("subscribe")
        .into_inner();
    let mut last = 0;
    for _ in 0..3 {
        match next_event(&mut stream).await {
            EventItem::Event(e) => {
                assert_eq!(e.sequence, last + 1, "backlog starts at 1 and is gapless");
                last = e.sequence;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    drop(stream);
    drop(first);
    // Events happen while nobody listens.
    let mut c = gw.client().await;
    c.control
        .pause_child(pb::PauseChildRequest {
            child_id: "svc".into(),
            meta: meta(false),
        })
        .await
        .expect("pause");
    let mut resumed = c
        .journal
        .subscribe_events(pb::SubscribeEventsRequest {
            after_sequence: last,
            ..Default::default()
        })
        .await
        .expect("resubscribe")
        .into_inner();
    let mut saw_pause = false;
    while !saw_pause {
        match next_event(&mut resumed).await {
            EventItem::Event(e) => {
                assert_eq!(
                    e.sequence,
                    last + 1,
                    "no duplicate and no hole across the reconnect"
                );
                last = e.sequence;
                saw_pause = e.event_type == pb::EventType::ChildPaused as i32;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    gw.shutdown().await;
}

/// Filters by child and event type; resuming from evicted history gets an
/// in-band gap; an unknown event type is refused.
#[tokio::test]
async fn event_filters_and_gaps() {
    let gw = gateway(vec![sh("a", "exec sleep 1000"), sh("b", "exec sleep 1000")]).await;
    let mut c = gw.client().await;
    let mut only_b_pauses = c
        .journal
        .subscribe_events(pb::SubscribeEventsRequest {
            include_backlog: true,
            child_ids: vec!["b".into()],
            event_types: vec![pb::EventType::ChildPaused as i32],
            ..Default::default()
        })
        .await
        .expect("subscribe")
        .into_inner();
    for child in ["a", "b"] {
        c.control
            .pause_child(pb::PauseChildRequest {
                child_id: child.into(),
                meta: meta(false),
            })
            .await
            .expect("pause");
    }
    match next_event(&mut only_b_pauses).await {
        EventItem::Event(e) => {
            assert_eq!(
                (e.child_id.as_str(), e.event_type),
                ("b", pb::EventType::ChildPaused as i32)
            );
            assert!(matches!(e.detail, Some(pb::event::Detail::ChildPaused(_))));
        }
        other => panic!("unexpected {other:?}"),
    }
    let bad = c
        .journal
        .subscribe_events(pb::SubscribeEventsRequest {
            event_types: vec![999],
            ..Default::default()
        })
        .await
        .expect_err("unknown type");
    assert_eq!(bad.code(), Code::InvalidArgument);
    gw.shutdown().await;
}

/// Resuming from history the ring no longer holds: a gap record first.
#[tokio::test]
async fn evicted_history_is_an_in_band_gap() {
    let gw = gateway(vec![]).await;
    for _ in 0..70_000 {
        gw.publish_synthetic_event();
    }
    let mut c = gw.client().await;
    let mut stream = c
        .journal
        .subscribe_events(pb::SubscribeEventsRequest {
            after_sequence: 2,
            ..Default::default()
        })
        .await
        .expect("subscribe")
        .into_inner();
    match next_event(&mut stream).await {
        EventItem::Gap(gap) => {
            assert_eq!(gap.first_missing, 3);
            assert_eq!(gap.reason, pb::GapReason::Evicted as i32);
            match next_event(&mut stream).await {
                EventItem::Event(e) => assert_eq!(e.sequence, gap.last_missing + 1),
                other => panic!("one gap, then events: {other:?}"),
            }
        }
        other => panic!("expected a gap, got {other:?}"),
    }
    gw.shutdown().await;
}

/// TailLogs: the last N lines of one child, then the stream ends (no follow).
#[tokio::test]
async fn tail_logs_backlog_then_end() {
    let mut printer = sh(
        "printer",
        "for i in 1 2 3 4 5; do echo line $i; done; exec sleep 1000",
    );
    printer.restart = supervisor_gateway::model::RestartPolicy::Never;
    let gw = gateway(vec![printer, sh("other", "echo noise; exec sleep 1000")]).await;
    let mut events = subscribe(&gw.supervisor);
    let mut logs = supervisor_gateway::control::ControlPlane::logs(&gw.supervisor)
        .subscribe(supervisor_gateway::journal::Start::Oldest);
    // Wait until the five lines are captured.
    let mut seen = 0;
    while seen < 5 {
        if let Some(supervisor_gateway::journal::Item::Record(r)) =
            tokio::time::timeout(PATIENCE, logs.next())
                .await
                .expect("lines")
            && r.body.child_id.as_str() == "printer"
        {
            seen += 1;
        }
    }
    drop(wait_event(&mut events, "running", |_| true).await);
    let mut c = gw.client().await;
    let mut stream = c
        .journal
        .tail_logs(pb::TailLogsRequest {
            child_ids: vec!["printer".into()],
            lines: 2,
            follow: false,
            after_sequence: 0,
            journal_id: String::new(),
        })
        .await
        .expect("tail")
        .into_inner();
    let mut lines = Vec::new();
    while let Some(message) = tokio::time::timeout(PATIENCE, stream.message())
        .await
        .expect("in time")
        .expect("ok")
    {
        match message.item.expect("item") {
            LogItem::Line(line) => {
                assert_eq!(line.stream, pb::LogStream::Stdout as i32);
                lines.push(line.text);
            }
            LogItem::Start(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(lines, ["line 4", "line 5"]);
    gw.shutdown().await;
}

/// A request over max_request_bytes is RESOURCE_EXHAUSTED with an
/// ErrorInfo, and the same channel keeps working.
#[tokio::test]
async fn oversize_request_is_resource_exhausted_and_channel_survives() {
    let gw = gateway(vec![sh("svc", "exec sleep 1000")]).await;
    let mut c = gw.client().await.control;
    let huge = "x".repeat(100 * 1024);
    let error = c
        .get_child(pb::GetChildRequest { child_id: huge })
        .await
        .expect_err("too large");
    assert_eq!(error.code(), Code::ResourceExhausted, "{error:?}");
    assert_eq!(reason(&error), "message_too_large");
    let ok = c
        .get_child(pb::GetChildRequest {
            child_id: "svc".into(),
        })
        .await;
    assert!(ok.is_ok(), "the channel must survive: {ok:?}");
    gw.shutdown().await;
}

/// Connections beyond max_connections are closed at once; the server keeps
/// serving the others.
#[tokio::test]
async fn max_connections_closes_the_extra_connection() {
    use tokio::io::AsyncReadExt;
    let limits = supervisor_gateway::gateway::Limits::with_max_connections(2);
    let gw = gateway_with(vec![], limits).await;
    let mut one = gw.client().await.control;
    let mut two = gw.client().await.control;
    one.get_info(pb::GetInfoRequest {}).await.expect("first");
    two.get_info(pb::GetInfoRequest {}).await.expect("second");
    let mut third = tokio::net::UnixStream::connect(&gw.path)
        .await
        .expect("connect");
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(PATIENCE, third.read(&mut buf))
        .await
        .expect("closed in time");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "the extra connection was served: {read:?}"
    );
    one.get_info(pb::GetInfoRequest {})
        .await
        .expect("first still served");
    drop(two);
    gw.shutdown().await;
}

/// grpc.health.v1: SERVING for the services, NOT_SERVING once stopping.
#[tokio::test]
async fn health_reports_serving() {
    let gw = gateway(vec![]).await;
    let channel = supervisor_gateway::client::channel(&gw.path)
        .await
        .expect("channel");
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    for service in [
        "",
        "supervisor.gateway.v1.ControlService",
        "supervisor.gateway.v1.JournalService",
    ] {
        let response = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("check")
            .into_inner();
        assert_eq!(
            response.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
            "{service}"
        );
    }
    gw.stop.cancel();
    let mut watch = health
        .watch(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("watch")
        .into_inner();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let message = tokio::time::timeout_at(deadline, watch.message())
            .await
            .expect("status change");
        if let Ok(Some(m)) = message
            && m.status == tonic_health::pb::health_check_response::ServingStatus::NotServing as i32
        {
            break;
        }
    }
    // A Watch stream never ends by itself: close it, or the drain waits for it.
    drop(watch);
    drop(health);
    gw.shutdown().await;
}

/// AddChild takes the cgroup limits (ChildSpec fields 21-24) and GetChild
/// gives them back, normalized ("536870912" is "512M"); zero and empty
/// mean unset. A limit that does not parse is INVALID_ARGUMENT
/// (`invalid_child_spec`) naming its field, like every other spec field.
#[tokio::test]
async fn add_child_limits_round_trip_through_get_child() {
    let gw = gateway(vec![]).await;
    let mut c = gw.client().await.control;
    let spec = pb::ChildSpec {
        id: "limited".into(),
        command: vec!["/bin/sh".into(), "-c".into(), "exec sleep 1000".into()],
        // Never spawned: the round trip does not depend on the host's
        // cgroup delegation.
        autostart: Some(false),
        memory_max: "536870912".into(),
        cpu_max: "50%".into(),
        cpu_weight: 200,
        pids_max: 64,
        ..Default::default()
    };
    c.add_child(pb::AddChildRequest {
        spec: Some(spec),
        meta: meta(true),
    })
    .await
    .expect("AddChild");
    let record = c
        .get_child(pb::GetChildRequest {
            child_id: "limited".into(),
        })
        .await
        .expect("GetChild")
        .into_inner()
        .child
        .expect("record");
    let spec = record.spec.expect("spec");
    assert_eq!(
        (
            spec.memory_max.as_str(),
            spec.cpu_max.as_str(),
            spec.cpu_weight,
            spec.pids_max
        ),
        ("512M", "50%", 200, 64)
    );
    assert_eq!(record.usage, None, "never started: no usage");

    let unlimited = pb::ChildSpec {
        id: "unlimited".into(),
        command: vec!["/bin/sh".into(), "-c".into(), "exit 0".into()],
        autostart: Some(false),
        ..Default::default()
    };
    let added = c
        .add_child(pb::AddChildRequest {
            spec: Some(unlimited),
            meta: meta(true),
        })
        .await
        .expect("AddChild")
        .into_inner()
        .result
        .and_then(|r| r.child)
        .and_then(|r| r.spec)
        .expect("spec");
    assert_eq!(
        (
            added.memory_max.as_str(),
            added.cpu_max.as_str(),
            added.cpu_weight,
            added.pids_max
        ),
        ("", "", 0, 0)
    );

    for (field, bad) in [
        (
            "memory_max",
            pb::ChildSpec {
                memory_max: "lots".into(),
                ..Default::default()
            },
        ),
        (
            "memory_max",
            pb::ChildSpec {
                memory_max: "4K".into(),
                ..Default::default()
            },
        ),
        (
            "cpu_max",
            pb::ChildSpec {
                cpu_max: "half".into(),
                ..Default::default()
            },
        ),
        (
            "cpu_weight",
            pb::ChildSpec {
                cpu_weight: 10_001,
                ..Default::default()
            },
        ),
    ] {
        let spec = pb::ChildSpec {
            id: "bad".into(),
            command: vec!["/bin/sh".into(), "-c".into(), "exit 0".into()],
            autostart: Some(false),
            ..bad
        };
        let error = c
            .add_child(pb::AddChildRequest {
                spec: Some(spec),
                meta: meta(true),
            })
            .await
            .expect_err(field);
        assert_eq!(error.code(), Code::InvalidArgument, "{field}: {error:?}");
        assert_eq!(reason(&error), "invalid_child_spec", "{field}");
        assert!(
            error.message().contains(field),
            "{field}: {}",
            error.message()
        );
    }
    gw.shutdown().await;
}

/// GetInfo says how children are contained here; a running child's record
/// carries what its processes use (GetChild and GetState alike).
#[tokio::test]
async fn info_has_containment_and_running_children_have_usage() {
    // Exec'd directly: one exec, done when the spawn returns.
    let mut web = sh("web", "");
    web.command = vec!["/bin/sleep".into(), "1000".into()];
    let gw = gateway(vec![web]).await;
    support::legacy::running(&gw, "web", 1).await;
    let mut client = gw.client().await;
    let info = client
        .control
        .get_info(pb::GetInfoRequest {})
        .await
        .expect("GetInfo")
        .into_inner();
    let containment = info.containment.expect("containment");
    assert_ne!(
        containment.mode,
        pb::ContainmentMode::Unspecified as i32,
        "{containment:?}"
    );
    // Right after exec the new program may not have a page mapped yet (the
    // spawn returns at exec's point of no return): there is no event for
    // "has memory", so the reading is polled, with a deadline.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let usage = loop {
        let state = client
            .control
            .get_state(pb::GetStateRequest {})
            .await
            .expect("GetState")
            .into_inner();
        let usage = state.children[0].usage.expect("usage of a running child");
        assert!(usage.processes >= 1, "{usage:?}");
        if usage.memory_bytes > 0 || tokio::time::Instant::now() > deadline {
            break usage;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    assert!(usage.memory_bytes > 0, "{usage:?}");
    assert!(usage.cpu_time.is_some(), "{usage:?}");
    gw.shutdown().await;
}
