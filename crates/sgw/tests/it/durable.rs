//! The journal across restarts (issue 11): sequences continue under the
//! same journal id when the journal is kept in a state directory, and a
//! resume position from another journal, or past the head, is answered
//! with an explicit reset on both protocols, never with silence.

use std::path::Path;

use serde_json::json;
use supervisor_gateway::engine::EngineConfig;
use supervisor_gateway::pb;
use supervisor_gateway::pb::subscribe_events_response::Item;

use crate::support::legacy::{LegacyClient, subscription};
use crate::support::*;

fn kept_in(dir: &Path) -> EngineConfig {
    EngineConfig {
        state_dir: Some(dir.to_owned()),
        ..test_engine()
    }
}

async fn started(state: &Path) -> TestGateway {
    let gw = GatewayBuilder::new(vec![sh("web", "exec sleep 1000")])
        .engine(kept_in(state))
        .start()
        .await;
    gw.wait_running("web").await;
    gw
}

async fn journal_id(gw: &TestGateway) -> (String, u64) {
    let mut client = gw.client().await;
    let info = client
        .control
        .get_info(pb::GetInfoRequest {})
        .await
        .expect("GetInfo")
        .into_inner();
    let state = client
        .control
        .get_state(pb::GetStateRequest {})
        .await
        .expect("GetState")
        .into_inner();
    assert_eq!(
        state.journal_id, info.journal_id,
        "GetState names the journal too"
    );
    (info.journal_id, state.last_event_sequence)
}

/// Reads a stream until `until` matches an event, returning every item.
async fn read_until(
    stream: &mut tonic::Streaming<pb::SubscribeEventsResponse>,
    until: impl Fn(&pb::Event) -> bool,
) -> Vec<Item> {
    let mut items = Vec::new();
    loop {
        let item = tokio::time::timeout(PATIENCE, stream.message())
            .await
            .expect("an item in time")
            .expect("stream ok")
            .expect("stream open")
            .item
            .expect("item");
        let done = matches!(&item, Item::Event(e) if until(e));
        items.push(item);
        if done {
            return items;
        }
    }
}

/// A clean restart on the same state directory: same journal id, the
/// sequence continues, and a client resuming with its last sequence gets
/// exactly what came after it (no duplicate, no hole, no reset).
#[tokio::test]
async fn resume_across_a_clean_restart_has_no_duplicate_and_no_hole() {
    let state = tempfile::tempdir().expect("tempdir");
    let first = started(state.path()).await;
    let (id, last) = journal_id(&first).await;
    assert_eq!(id.len(), 32, "{id}");
    first.shutdown().await;

    let second = started(state.path()).await;
    let (again, now) = journal_id(&second).await;
    assert_eq!(again, id, "the journal id is kept with the journal");
    assert!(now > last, "sequences continue: {now} after {last}");
    let mut client = second.client().await;
    let mut stream = client
        .journal
        .subscribe_events(pb::SubscribeEventsRequest {
            after_sequence: last,
            journal_id: id.clone(),
            ..Default::default()
        })
        .await
        .expect("subscribe")
        .into_inner();
    let items = read_until(&mut stream, |e| e.sequence == now).await;
    let Item::Start(start) = &items[0] else {
        panic!("the first message is the stream start: {items:?}");
    };
    assert_eq!(start.journal_id, id);
    let mut expected = last + 1;
    for item in &items[1..] {
        match item {
            Item::Event(e) => {
                assert_eq!(e.sequence, expected, "no duplicate, no hole: {items:?}");
                expected += 1;
            }
            other => panic!("nothing but events after a clean restart: {other:?}"),
        }
    }
    second.shutdown().await;
}

/// A position from another journal (an ephemeral server restarted: new id)
/// or past the head is answered with a reset and a full replay, on gRPC
/// and on the legacy protocol alike.
#[tokio::test]
async fn foreign_or_future_positions_are_reset_on_both_protocols() {
    let gw = gateway(vec![sh("web", "exec sleep 1000")]).await;
    gw.wait_running("web").await;
    let (id, last) = journal_id(&gw).await;
    let mut client = gw.client().await;
    for (claimed, after, reason) in [
        (
            "0123456789abcdef0123456789abcdef",
            1,
            pb::JournalResetReason::JournalChanged,
        ),
        ("", last + 50, pb::JournalResetReason::AfterHead),
        (id.as_str(), last + 50, pb::JournalResetReason::AfterHead),
    ] {
        let mut stream = client
            .journal
            .subscribe_events(pb::SubscribeEventsRequest {
                after_sequence: after,
                journal_id: claimed.to_owned(),
                ..Default::default()
            })
            .await
            .expect("subscribe")
            .into_inner();
        let items = read_until(&mut stream, |e| e.sequence == 1).await;
        assert!(
            matches!(&items[0], Item::Start(s) if s.journal_id == id),
            "{items:?}"
        );
        let Item::Reset(reset) = &items[1] else {
            panic!("a reset before anything else: {items:?}");
        };
        assert_eq!(reset.reason, reason as i32, "{reset:?}");
        assert_eq!(reset.requested_after, after);
        assert_eq!(reset.requested_journal_id, claimed);
        // Then the replay from the oldest retained event.
        assert!(
            matches!(&items[2], Item::Event(e) if e.sequence == 1),
            "{items:?}"
        );
    }

    let mut legacy = LegacyClient::connect(&gw.path).await;
    let hello = legacy
        .call(json!({"request_id": "h", "method": "hello"}))
        .await;
    assert_eq!(hello["result"]["journal_id"], id.as_str(), "{hello}");
    let state = legacy
        .call(json!({"request_id": "st", "method": "state"}))
        .await;
    assert_eq!(state["result"]["journal_id"], id.as_str(), "legacy state");
    let mut request = subscription("s", "events.subscribe");
    request["params"]["after_sequence"] = json!(3);
    request["params"]["journal_id"] = json!("someone-else");
    let reply = legacy.call(request).await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["result"]["journal_id"], id.as_str(), "{reply}");
    assert_eq!(
        reply["result"]["reset"]["reason"], "journal_changed",
        "{reply}"
    );
    let first = legacy.recv().await;
    assert_eq!(first["event"]["sequence"], 1, "a full replay: {first}");

    let mut honoured = subscription("t", "events.subscribe");
    honoured["params"]["after_sequence"] = json!(last);
    honoured["params"]["journal_id"] = json!(id);
    let mut other = LegacyClient::connect(&gw.path).await;
    let reply = other.call(honoured).await;
    assert!(reply["result"].get("reset").is_none(), "{reply}");
    assert_eq!(reply["result"]["last_sequence"], last, "{reply}");
    gw.shutdown().await;
}

/// Without a state directory every start is a new journal.
#[tokio::test]
async fn an_ephemeral_journal_gets_a_new_id_at_every_start() {
    let first = gateway(vec![]).await;
    let (a, _) = journal_id(&first).await;
    first.shutdown().await;
    let second = gateway(vec![]).await;
    let (b, _) = journal_id(&second).await;
    assert_ne!(a, b);
    second.shutdown().await;
}

/// A journal file that is not a database does not keep the supervisor
/// down: it is set aside (kept, not deleted) and a new journal starts.
#[tokio::test]
async fn a_damaged_journal_is_set_aside_and_a_new_one_starts() {
    let state = tempfile::tempdir().expect("tempdir");
    let garbage = damage(state.path(), "journal.sqlite3");
    let gw = started(state.path()).await;
    let (id, last) = journal_id(&gw).await;
    assert_eq!(id.len(), 32, "{id}");
    assert!(last > 0, "the new journal records");
    assert_set_aside(state.path(), "journal.sqlite3", &garbage);
    gw.shutdown().await;
}

/// The runtime state likewise: a damaged runtime.sqlite3 does not keep
/// sgw from starting (from the config alone) and is kept aside.
#[tokio::test]
async fn a_damaged_runtime_state_is_set_aside_and_the_config_starts() {
    let state = tempfile::tempdir().expect("tempdir");
    let garbage = damage(state.path(), "runtime.sqlite3");
    let gw = started(state.path()).await;
    assert_set_aside(state.path(), "runtime.sqlite3", &garbage);
    gw.shutdown().await;
}

/// Writes something that is not a database where `name` is kept.
fn damage(state: &Path, name: &str) -> Vec<u8> {
    let garbage = b"this is not a database, but it was somebody's journal".repeat(100);
    std::fs::write(state.join(name), &garbage).expect("garbage");
    garbage
}

/// Exactly one `NAME.damaged-*` file holds what `garbage` was.
#[track_caller]
fn assert_set_aside(state: &Path, name: &str, garbage: &[u8]) {
    let prefix = format!("{name}.damaged-");
    let aside: Vec<_> = std::fs::read_dir(state)
        .expect("state dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(
        std::fs::read(aside[0].path()).expect("set aside"),
        garbage,
        "kept as it was"
    );
}

fn runtime_tree() -> Vec<supervisor_gateway::model::ChildSpec> {
    let mut crasher = sh("crasher", "exit 1");
    crasher.restart = supervisor_gateway::model::RestartPolicy::Always;
    crasher.restart_budget.max = 1;
    vec![
        sh("paused", "exec sleep 1000"),
        sh("held", "exec sleep 1000"),
        sh("gone", "exec sleep 1000"),
        crasher,
    ]
}

async fn started_with(
    state: &Path,
    specs: Vec<supervisor_gateway::model::ChildSpec>,
    reset: bool,
) -> TestGateway {
    GatewayBuilder::new(specs)
        .engine(EngineConfig {
            reset_state: reset,
            ..kept_in(state)
        })
        .start()
        .await
}

async fn states(gw: &TestGateway) -> std::collections::BTreeMap<String, String> {
    use supervisor_gateway::control::ControlPlane;
    let snapshot = gw.supervisor.state().await;
    snapshot
        .children
        .iter()
        .map(|c| (c.id.to_string(), c.state.as_str().to_owned()))
        .collect()
}

/// Pause, quarantine (by command and by the restart budget), AddChild and
/// RemoveChild survive a restart of sgw on the same state directory, with
/// a `runtime_restored` event; a config change to a child overrides its
/// record; `reset_state` starts from the config alone.
#[tokio::test]
async fn runtime_decisions_survive_a_restart_unless_the_config_changed() {
    use supervisor_gateway::control::Command;
    use supervisor_gateway::model::EventKind;
    let state = tempfile::tempdir().expect("tempdir");
    let first = started_with(state.path(), runtime_tree(), false).await;
    let mut events = subscribe(&first.supervisor);
    wait_event(
        &mut events,
        "the crasher quarantined by its budget",
        is(
            |k| matches!(k, EventKind::ChildQuarantined { .. }),
            "crasher",
        ),
    )
    .await;
    first.wait_running("paused").await;
    for command in [
        Command::Pause(id("paused")),
        Command::Quarantine(id("held")),
        Command::Remove(id("gone")),
        Command::Add(Box::new(sh("added", "exec sleep 1000"))),
    ] {
        run(&first.supervisor, command).await.expect("command");
    }
    first.shutdown().await;

    let second = started_with(state.path(), runtime_tree(), false).await;
    second.wait_running("added").await;
    let mut events = subscribe(&second.supervisor);
    let restored = wait_event(&mut events, "runtime_restored", |e| {
        matches!(e.kind, EventKind::RuntimeRestored { .. })
    })
    .await;
    let EventKind::RuntimeRestored {
        paused,
        quarantined,
        added,
        removed,
        overridden,
    } = &restored.body.kind
    else {
        unreachable!()
    };
    assert_eq!(paused, &[id("paused")]);
    assert_eq!(quarantined.len(), 2, "{quarantined:?}");
    assert!(quarantined.contains(&id("held")) && quarantined.contains(&id("crasher")));
    assert_eq!(added, &[id("added")]);
    assert_eq!(removed, &[id("gone")]);
    assert!(overridden.is_empty(), "{overridden:?}");
    let now = states(&second).await;
    assert_eq!(
        now.get("paused").map(String::as_str),
        Some("paused"),
        "{now:?}"
    );
    assert_eq!(now.get("held").map(String::as_str), Some("quarantined"));
    assert_eq!(now.get("crasher").map(String::as_str), Some("quarantined"));
    assert_eq!(now.get("added").map(String::as_str), Some("running"));
    assert!(!now.contains_key("gone"), "{now:?}");
    let second_last = {
        use supervisor_gateway::control::ControlPlane;
        second.supervisor.events().last_sequence()
    };
    second.shutdown().await;

    // The operator edits "paused" in the config: the config wins.
    let mut edited = runtime_tree();
    edited[0] = sh("paused", "exec sleep 999");
    let third = started_with(state.path(), edited, false).await;
    third.wait_running("paused").await;
    let mut events = {
        use supervisor_gateway::control::ControlPlane;
        third
            .supervisor
            .events()
            .subscribe(supervisor_gateway::journal::Start::After(second_last))
    };
    let restored = wait_event(&mut events, "runtime_restored", |e| {
        matches!(e.kind, EventKind::RuntimeRestored { .. })
    })
    .await;
    assert!(
        matches!(&restored.body.kind, EventKind::RuntimeRestored { overridden, .. } if overridden == &[id("paused")]),
        "{:?}",
        restored.body
    );
    let third_last = {
        use supervisor_gateway::control::ControlPlane;
        third.supervisor.events().last_sequence()
    };
    third.shutdown().await;

    // --reset-state: the config alone, and no runtime_restored in this run.
    let fourth = started_with(state.path(), runtime_tree(), true).await;
    fourth.wait_running("gone").await;
    fourth.wait_running("held").await;
    let now = states(&fourth).await;
    assert!(!now.contains_key("added"), "{now:?}");
    let mut events = subscribe(&fourth.supervisor);
    let restored_now = std::iter::from_fn(|| events.try_next()).any(|item| {
        matches!(
            item,
            supervisor_gateway::journal::Item::Record(r)
                if r.sequence > third_last
                    && matches!(r.body.kind, EventKind::RuntimeRestored { .. })
        )
    });
    assert!(!restored_now, "nothing is restored after a reset");
    fourth.shutdown().await;
}

/// Without log files, the log sequence still goes on after a clean
/// restart (the store keeps where it was): a resumed TailLogs never sees a
/// number it already had for a different line.
#[tokio::test]
async fn log_sequences_continue_across_a_restart_without_log_files() {
    use supervisor_gateway::control::ControlPlane;
    use supervisor_gateway::journal::{Item, Start};
    use supervisor_gateway::model::LogPolicy;
    let state = tempfile::tempdir().expect("tempdir");
    let engine = || EngineConfig {
        logs: LogPolicy {
            file_max_bytes: 0,
            ..LogPolicy::default()
        },
        ..kept_in(state.path())
    };
    let first_line = |gw: &TestGateway| {
        let mut lines = gw.supervisor.logs().subscribe(Start::Oldest);
        async move {
            tokio::time::timeout(PATIENCE, async {
                loop {
                    if let Some(Item::Record(record)) = lines.next().await {
                        return record.sequence;
                    }
                }
            })
            .await
            .expect("a line in time")
        }
    };
    let first = GatewayBuilder::new(vec![sh("talker", "echo hello; exec sleep 1000")])
        .engine(engine())
        .start()
        .await;
    first_line(&first).await;
    let last = first.supervisor.logs().last_sequence();
    first.shutdown().await;
    assert!(
        !state.path().join("logs/talker.log").exists(),
        "no file was meant to be written"
    );
    let second = GatewayBuilder::new(vec![sh("talker", "echo hello; exec sleep 1000")])
        .engine(engine())
        .start()
        .await;
    let next = first_line(&second).await;
    assert!(next > last, "log sequence {next} after {last}");
    second.shutdown().await;
}

/// A state directory whose journal cannot be opened stops `sgw serve` with
/// the path and the cause, and says what to do about it.
#[test]
fn an_unusable_journal_names_its_path_and_the_way_out() {
    use crate::cli_support::{TWO_CHILDREN, sgw};
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    // A directory where the journal file should be: SQLite cannot open it.
    std::fs::create_dir_all(state.join("journal.sqlite3")).expect("blocker");
    let config = dir.path().join("sgw.toml");
    std::fs::write(&config, TWO_CHILDREN).expect("config");
    let output = sgw(&[
        "serve",
        "--config",
        config.to_str().expect("utf-8"),
        "--socket",
        dir.path().join("sgw.sock").to_str().expect("utf-8"),
        "--state-dir",
        state.to_str().expect("utf-8"),
    ]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("journal.sqlite3"), "{stderr}");
    assert!(stderr.contains("--ephemeral"), "{stderr}");
}
