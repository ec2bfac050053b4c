//! The supervisor engine with real `/bin/sh` children: policy, stop
//! escalation, commands, dependencies, output capture.

use crate::support;

use std::time::Duration;

use supervisor_gateway::control::{
    Command, CommandMeta, CommandRequest, ControlError, ControlPlane,
};
use supervisor_gateway::engine::{EngineConfig, Supervisor};
use supervisor_gateway::journal::{Item, Start};
use supervisor_gateway::model::{
    ChildState, EventKind, Exit, Failure, LogLine, QuarantineReason, RestartPolicy,
};
use support::*;

async fn state_of(sup: &Supervisor, child: &str) -> ChildState {
    sup.child(&id(child)).await.expect("child exists").state
}

/// A child that exits 1 at once is restarted with exponentially growing
/// delays (read from the journal, not measured) and quarantined with a
/// reason once its budget is spent.
#[tokio::test]
async fn crash_loop_backs_off_then_quarantines() {
    let mut spec = sh("crash", "exit 1");
    spec.restart_budget.max = 4;
    spec.restart_budget.window = Duration::from_secs(60);
    let sup = start(vec![spec]);
    let mut events = subscribe(&sup);
    let seen = events_until(
        &mut events,
        "quarantine",
        is(|k| matches!(k, EventKind::ChildQuarantined { .. }), "crash"),
    )
    .await;
    let delays: Vec<u128> = seen
        .iter()
        .filter_map(|r| match &r.body.kind {
            EventKind::RestartScheduled { delay, .. } => Some(delay.as_millis()),
            _ => None,
        })
        .collect();
    assert_eq!(delays, [10, 20, 40, 80]);
    let exits = seen
        .iter()
        .filter(|r| {
            matches!(
                r.body.kind,
                EventKind::ChildExited {
                    exit: Exit::Code(1),
                    ..
                }
            )
        })
        .count();
    assert_eq!(exits, 5, "four restarts means five runs");
    match &seen.last().expect("quarantine event").body.kind {
        EventKind::ChildQuarantined { reason } => assert_eq!(
            *reason,
            QuarantineReason::BudgetExhausted {
                restarts: 4,
                window: Duration::from_secs(60),
                after: Failure::Exit(Exit::Code(1)),
            }
        ),
        other => panic!("unexpected {other:?}"),
    }
    let record = sup.child(&id("crash")).await.expect("record");
    assert_eq!(record.state, ChildState::Quarantined);
    assert_eq!(record.restart_count, 4);
    assert!(record.budget.exhausted());
    assert!(
        record.detail.contains("restart budget exhausted"),
        "{}",
        record.detail
    );
    // Restart lifts the quarantine and gives the budget back.
    let report = run(&sup, Command::Restart(id("crash")))
        .await
        .expect("restart");
    let child = report.child.expect("record after restart");
    assert_eq!(child.generation, 6);
    assert_eq!(child.budget.used, 0);
    sup.shutdown("test", "done").await.expect("shutdown");
}

/// A child ignoring SIGTERM is SIGKILLed after its stop timeout, and the
/// grandchildren it forked die with it.
#[tokio::test]
async fn stop_escalates_to_sigkill_and_takes_grandchildren() {
    let mut spec = sh(
        "stubborn",
        "trap '' TERM; sleep 1000 & echo $!; sleep 1000 & echo $!; wait",
    );
    spec.stop_timeout = Duration::from_millis(300);
    let sup = start(vec![spec]);
    let mut logs = sup.logs().subscribe(Start::Oldest);
    let mut grandchildren = Vec::new();
    while grandchildren.len() < 2 {
        match tokio::time::timeout(PATIENCE, logs.next())
            .await
            .expect("pids printed")
        {
            Some(Item::Record(line)) => {
                grandchildren.push(line.body.text.parse::<u32>().expect("a pid"))
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let leader = sup
        .child(&id("stubborn"))
        .await
        .expect("record")
        .pid
        .expect("running");
    let mut events = subscribe(&sup);
    let report = run(&sup, Command::Pause(id("stubborn")))
        .await
        .expect("pause");
    assert_eq!(report.outcome, "paused");
    assert_eq!(report.child.expect("record").state, ChildState::Paused);
    let seen = events_until(
        &mut events,
        "pause",
        is(|k| matches!(k, EventKind::ChildPaused), "stubborn"),
    )
    .await;
    assert!(
        seen.iter()
            .any(|r| matches!(r.body.kind, EventKind::StopEscalated { .. })),
        "no escalation event"
    );
    assert!(seen.iter().any(|r| matches!(
        r.body.kind,
        EventKind::ChildExited {
            exit: Exit::Signal(9),
            ..
        }
    )));
    assert!(wait_gone(leader).await, "leader {leader} survived");
    for pid in grandchildren {
        assert!(wait_gone(pid).await, "grandchild {pid} survived the stop");
    }
    sup.shutdown("test", "done").await.expect("shutdown");
}

/// A plain SIGTERM stop of `sh -c 'sleep & sleep'` leaves no orphans either.
#[tokio::test]
async fn stop_leaves_no_orphans() {
    let sup = start(vec![sh("pair", "sleep 1000 & echo $!; sleep 1000")]);
    let mut logs = sup.logs().subscribe(Start::Oldest);
    let grandchild = match tokio::time::timeout(PATIENCE, logs.next())
        .await
        .expect("pid")
    {
        Some(Item::Record(line)) => line.body.text.parse::<u32>().expect("pid"),
        other => panic!("unexpected {other:?}"),
    };
    run(&sup, Command::Quarantine(id("pair")))
        .await
        .expect("quarantine");
    assert!(
        wait_gone(grandchild).await,
        "grandchild {grandchild} orphaned"
    );
    assert_eq!(state_of(&sup, "pair").await, ChildState::Quarantined);
    sup.shutdown("test", "done").await.expect("shutdown");
}

/// Pause, resume and quarantine are idempotent and say so.
#[tokio::test]
async fn commands_are_idempotent_where_documented() {
    let sup = start(vec![sh("svc", "exec sleep 1000")]);
    let mut events = subscribe(&sup);
    wait_event(
        &mut events,
        "running",
        is(|k| matches!(k, EventKind::ChildRunning { .. }), "svc"),
    )
    .await;
    assert_eq!(
        run(&sup, Command::Resume(id("svc")))
            .await
            .expect("resume")
            .outcome,
        "already running"
    );
    assert_eq!(
        run(&sup, Command::Pause(id("svc")))
            .await
            .expect("pause")
            .outcome,
        "paused"
    );
    assert_eq!(
        run(&sup, Command::Pause(id("svc")))
            .await
            .expect("pause")
            .outcome,
        "already paused"
    );
    let resumed = run(&sup, Command::Resume(id("svc"))).await.expect("resume");
    assert!(
        resumed.outcome.starts_with("resumed"),
        "{}",
        resumed.outcome
    );
    assert_eq!(resumed.child.expect("record").generation, 2);
    assert_eq!(
        run(&sup, Command::Quarantine(id("svc")))
            .await
            .expect("q")
            .outcome,
        "quarantined"
    );
    assert_eq!(
        run(&sup, Command::Quarantine(id("svc")))
            .await
            .expect("q")
            .outcome,
        "already quarantined"
    );
    let resumed = run(&sup, Command::Resume(id("svc"))).await.expect("resume");
    assert_eq!(resumed.child.expect("record").state, ChildState::Running);
    sup.shutdown("test", "done").await.expect("shutdown");
}

/// Restart during backoff starts at once with a new generation; pause while
/// STARTING (not yet `ready_after` old) stops the process.
#[tokio::test]
async fn restart_during_backoff_and_pause_during_starting() {
    let mut flaky = sh("flaky", "exit 2");
    flaky.backoff.initial = Duration::from_secs(30);
    flaky.backoff.max = Duration::from_secs(30);
    let mut slow = sh("slow", "exec sleep 1000");
    slow.ready_after = Duration::from_secs(60);
    let sup = start(vec![flaky, slow]);
    let mut events = subscribe(&sup);
    wait_event(
        &mut events,
        "backoff",
        is(|k| matches!(k, EventKind::RestartScheduled { .. }), "flaky"),
    )
    .await;
    // "slow" is spawned (ChildStarting) before its pid is read below: the
    // record says STARTING already while the spawn is in flight.
    let mut slow_events = subscribe(&sup);
    wait_event(
        &mut slow_events,
        "slow spawned",
        is(|k| matches!(k, EventKind::ChildStarting { .. }), "slow"),
    )
    .await;
    let before = sup.child(&id("flaky")).await.expect("record");
    assert_eq!(before.state, ChildState::Backoff);
    assert!(before.backoff_until.is_some());
    let after = run(&sup, Command::Restart(id("flaky"))).await;
    // The restarted process exits 2 again, so the outcome may be either a
    // fresh generation or the spawn; both prove the backoff was cut short.
    let generation = match after {
        Ok(report) => report.child.expect("record").generation,
        Err(error) => panic!("restart during backoff failed: {error}"),
    };
    assert_eq!(generation, before.generation + 1);

    assert_eq!(state_of(&sup, "slow").await, ChildState::Starting);
    let pid = sup
        .child(&id("slow"))
        .await
        .expect("record")
        .pid
        .expect("spawned");
    let paused = run(&sup, Command::Pause(id("slow"))).await.expect("pause");
    assert_eq!(paused.child.expect("record").state, ChildState::Paused);
    assert!(wait_gone(pid).await);
    sup.shutdown("test", "done").await.expect("shutdown");
}

/// Remove queued behind a slow stop completes after it; the id is free
/// again; add refuses duplicates; unknown ids list the known ones.
#[tokio::test]
async fn remove_while_stopping_add_again_and_errors() {
    let mut spec = sh(
        "slowstop",
        "trap 'sleep 0.3; exit 0' TERM; while true; do sleep 0.05; done",
    );
    spec.stop_timeout = Duration::from_secs(5);
    let sup = start(vec![spec.clone()]);
    let mut events = subscribe(&sup);
    wait_event(
        &mut events,
        "running",
        is(|k| matches!(k, EventKind::ChildRunning { .. }), "slowstop"),
    )
    .await;
    let pid = sup
        .child(&id("slowstop"))
        .await
        .expect("record")
        .pid
        .expect("pid");
    let pausing = {
        let sup = sup.clone();
        tokio::spawn(async move { run(&sup, Command::Pause(id("slowstop"))).await })
    };
    wait_event(
        &mut events,
        "stopping",
        is(|k| matches!(k, EventKind::ChildStopping { .. }), "slowstop"),
    )
    .await;
    assert_eq!(state_of(&sup, "slowstop").await, ChildState::Stopping);
    let removed = run(&sup, Command::Remove(id("slowstop")))
        .await
        .expect("remove");
    assert_eq!(removed.outcome, "removed");
    assert_eq!(
        pausing.await.expect("join").expect("pause").outcome,
        "paused"
    );
    assert!(wait_gone(pid).await);
    match sup.child(&id("slowstop")).await {
        Err(ControlError::NotFound { known, .. }) => assert!(known.is_empty()),
        other => panic!("expected not found, got {other:?}"),
    }
    run(&sup, Command::Add(Box::new(spec.clone())))
        .await
        .expect("add again");
    match run(&sup, Command::Add(Box::new(spec))).await {
        Err(ControlError::AlreadyExists { id: dup }) => assert_eq!(dup.as_str(), "slowstop"),
        other => panic!("expected already exists, got {other:?}"),
    }
    match run(&sup, Command::Restart(id("nope"))).await {
        Err(error @ ControlError::NotFound { .. }) => {
            assert_eq!(error.code(), "child_not_found");
            assert!(error.to_string().contains("slowstop"), "{error}");
        }
        other => panic!("expected not found, got {other:?}"),
    }
    let unconfirmed = CommandMeta {
        confirm: false,
        ..meta()
    };
    assert!(matches!(
        CommandRequest::new(Command::Remove(id("slowstop")), unconfirmed),
        Err(ControlError::ConfirmationRequired { .. })
    ));
    sup.shutdown("test", "done").await.expect("shutdown");
}

/// Dependencies start first and stop last; a child with dependents cannot
/// be removed; an added child with an unknown dependency is refused.
#[tokio::test]
async fn dependencies_order_start_and_stop() {
    let mut web = sh("web", "exec sleep 1000");
    web.depends_on = vec![id("db")];
    let mut db = sh("db", "exec sleep 1000");
    db.ready_after = Duration::from_millis(200);
    let sup = start(vec![web, db]);
    let mut events = subscribe(&sup);
    let seen = events_until(
        &mut events,
        "web starting",
        is(|k| matches!(k, EventKind::ChildStarting { .. }), "web"),
    )
    .await;
    let db_running = seen.iter().position(|r| {
        matches!(r.body.kind, EventKind::ChildRunning { .. }) && r.body.child_id == Some(id("db"))
    });
    assert!(db_running.is_some(), "web started before db was running");
    assert!(matches!(
        run(&sup, Command::Remove(id("db"))).await,
        Err(ControlError::HasDependents { .. })
    ));
    let mut orphan = sh("orphan", "true");
    orphan.depends_on = vec![id("ghost")];
    assert!(matches!(
        run(&sup, Command::Add(Box::new(orphan))).await,
        Err(ControlError::InvalidSpec(_))
    ));
    let mut tail = sup.events().subscribe(Start::Live);
    sup.shutdown("test", "done").await.expect("shutdown");
    let mut stopped = Vec::new();
    while let Some(item) = tail.next().await {
        if let Item::Record(r) = item
            && let EventKind::ChildExited { .. } = r.body.kind
        {
            stopped.push(r.body.child_id.clone().expect("child").to_string());
        }
    }
    assert_eq!(stopped, ["web", "db"]);
    assert!(matches!(
        run(&sup, Command::Restart(id("web"))).await,
        Err(ControlError::ShuttingDown)
    ));
}

/// Never two live processes for one child, whatever the interleaving of
/// concurrent commands and exits: checked on the journal, where every spawn
/// and every exit is recorded in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_two_live_processes_under_concurrent_commands() {
    let mut spec = sh("busy", "sleep 0.0$(( $$ % 5 )); exit 1");
    spec.restart = RestartPolicy::Always;
    spec.backoff.initial = Duration::from_millis(1);
    spec.restart_budget.max = 10_000;
    spec.stop_timeout = Duration::from_millis(500);
    let sup = start(vec![spec]);
    let mut tasks = Vec::new();
    for i in 0..60u32 {
        let sup = sup.clone();
        tasks.push(tokio::spawn(async move {
            let command = match i % 4 {
                0 => Command::Restart(id("busy")),
                1 => Command::Pause(id("busy")),
                2 => Command::Resume(id("busy")),
                _ => Command::Quarantine(id("busy")),
            };
            run(&sup, command).await
        }));
    }
    for task in tasks {
        let result = task.await.expect("join");
        assert!(
            matches!(result, Ok(_) | Err(ControlError::SpawnFailed { .. })),
            "{result:?}"
        );
    }
    let mut events = subscribe(&sup);
    sup.shutdown("test", "done").await.expect("shutdown");
    let mut live: Vec<u64> = Vec::new();
    let mut last_generation = 0;
    let mut spawns = 0;
    while let Some(item) = events.next().await {
        let Item::Record(r) = item else {
            panic!("gap in a test journal")
        };
        match r.body.kind {
            EventKind::ChildStarting { generation, .. } => {
                assert!(
                    live.is_empty(),
                    "generation {generation} spawned while {live:?} alive"
                );
                assert!(generation > last_generation);
                last_generation = generation;
                live.push(generation);
                spawns += 1;
            }
            EventKind::ChildExited { generation, .. } => {
                assert_eq!(
                    live,
                    [generation],
                    "exit of a process that was not the live one"
                );
                live.clear();
            }
            _ => {}
        }
    }
    assert!(live.is_empty());
    assert!(
        spawns > 10,
        "only {spawns} spawns: the test did not exercise much"
    );
}

/// A child printing 100k lines as fast as it can: every line captured, in
/// order, none lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captures_100k_lines_in_order() {
    // Room for all of them, and no rate limit: this is about capture.
    let config = EngineConfig {
        logs_capacity: 200_000,
        logs: supervisor_gateway::model::LogPolicy {
            memory_bytes: 64 << 20,
            rate_burst: 0,
            ..Default::default()
        },
        ..EngineConfig::default()
    };
    let mut spec = sh("chatty", "seq 1 100000");
    spec.restart = RestartPolicy::Never;
    let sup = start_with(config, vec![spec]);
    let mut logs = sup.logs().subscribe(Start::Oldest);
    let mut expected = 1u32;
    while expected <= 100_000 {
        match tokio::time::timeout(PATIENCE, logs.next())
            .await
            .expect("lines keep coming")
        {
            Some(Item::Record(line)) => {
                assert_eq!(line.body.text, expected.to_string());
                assert!(!line.body.truncated);
                expected += 1;
            }
            other => panic!("unexpected {other:?} at line {expected}"),
        }
    }
    sup.shutdown("test", "done").await.expect("shutdown");
}

/// A 1 MiB line is split into 16 KiB chunks flagged `truncated` (except the
/// last), nothing lost; invalid UTF-8 is replaced, not dropped.
#[tokio::test]
async fn long_lines_are_split_and_bad_utf8_replaced() {
    let mut spec = sh(
        "wide",
        "head -c 1048576 /dev/zero | tr '\\0' x; echo; printf '\\377ok\\n' >&2",
    );
    spec.restart = RestartPolicy::Never;
    let sup = start(vec![spec]);
    let mut logs = sup.logs().subscribe(Start::Oldest);
    let mut chunks: Vec<LogLine> = Vec::new();
    let mut stderr = None;
    while stderr.is_none() || chunks.last().is_none_or(|c| c.truncated) {
        match tokio::time::timeout(PATIENCE, logs.next())
            .await
            .expect("output")
        {
            Some(Item::Record(line)) if line.body.stream.as_str() == "stderr" => {
                stderr = Some(line.body.text.clone())
            }
            Some(Item::Record(line)) => chunks.push(line.body.clone()),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(chunks.len(), 64);
    assert!(
        chunks[..63]
            .iter()
            .all(|c| c.truncated && c.text.len() == 16 * 1024)
    );
    assert!(!chunks[63].truncated);
    assert_eq!(chunks.iter().map(|c| c.text.len()).sum::<usize>(), 1 << 20);
    assert_eq!(stderr.as_deref(), Some("\u{FFFD}ok"));
    sup.shutdown("test", "done").await.expect("shutdown");
}

/// A program that does not exist: spawn failure is journaled, the command
/// reports it, and the policy eventually quarantines the child.
#[tokio::test]
async fn missing_program_is_reported_and_quarantined() {
    let mut spec = sh("ghost", "");
    spec.command = vec!["/nonexistent/program".into()];
    spec.restart_budget.max = 2;
    let sup = start(vec![spec]);
    let mut events = subscribe(&sup);
    let seen = events_until(
        &mut events,
        "quarantine",
        is(|k| matches!(k, EventKind::ChildQuarantined { .. }), "ghost"),
    )
    .await;
    assert!(seen.iter().any(|r| matches!(&r.body.kind, EventKind::SpawnFailed { error, .. } if error.message.contains("No such file"))));
    match run(&sup, Command::Restart(id("ghost"))).await {
        Err(error @ ControlError::SpawnFailed { .. }) => {
            assert!(error.to_string().contains("/nonexistent/program"))
        }
        other => panic!("expected spawn failure, got {other:?}"),
    }
    sup.shutdown("test", "done").await.expect("shutdown");
}

/// Commands are journaled with who asked and why, and the journal closes
/// after the shutdown's own completion record.
#[tokio::test]
async fn commands_are_journaled_with_requester() {
    let sup = start(vec![sh("j", "exec sleep 1000")]);
    let mut events = subscribe(&sup);
    run(&sup, Command::Pause(id("j"))).await.expect("pause");
    let accepted = wait_event(&mut events, "accepted", |e| {
        matches!(e.kind, EventKind::CommandAccepted { .. })
    })
    .await;
    match &accepted.body.kind {
        EventKind::CommandAccepted {
            requested_by,
            reason,
            command,
            ..
        } => {
            assert_eq!(
                (requested_by.as_str(), reason.as_str(), command.as_str()),
                ("test", "engine test", "pause_child")
            );
        }
        _ => unreachable!(),
    }
    sup.shutdown("test", "done").await.expect("shutdown");
    let mut last = None;
    while let Some(item) = events.next().await {
        last = Some(item);
    }
    match last {
        Some(Item::Record(r)) => assert!(matches!(r.body.kind, EventKind::CommandCompleted { .. })),
        other => panic!("unexpected end {other:?}"),
    }
    assert!(sup.is_shutting_down());
}

/// Commands racing Add/Remove of the same child never hang: a command that
/// passes admission and then finds its child gone reports `NOT_FOUND`
/// without re-entering the registry lock while an Add/Remove waits for it
/// (std's RwLock deadlocks on a re-entrant read once a writer queues).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn commands_racing_add_and_remove_never_deadlock() {
    let sup = start(vec![]);
    let mut spec = sh("flicker", "sleep 60");
    spec.autostart = false;
    let churn = {
        let sup = sup.clone();
        tokio::spawn(async move {
            for _ in 0..300 {
                run(&sup, Command::Add(Box::new(spec.clone())))
                    .await
                    .expect("add");
                run(&sup, Command::Remove(id("flicker")))
                    .await
                    .expect("remove");
            }
        })
    };
    let mut askers = Vec::new();
    for i in 0..3 {
        let sup = sup.clone();
        askers.push(tokio::spawn(async move {
            let (mut found, mut not_found) = (0u32, 0u32);
            for _ in 0..600 {
                let target = if i == 0 { "nobody" } else { "flicker" };
                match run(&sup, Command::Pause(id(target))).await {
                    Ok(_) => found += 1,
                    Err(ControlError::NotFound { .. }) => not_found += 1,
                    Err(other) => panic!("unexpected {other:?}"),
                }
            }
            (found, not_found)
        }));
    }
    let joined = tokio::time::timeout(PATIENCE, async {
        churn.await.expect("churn task");
        let mut not_found = 0;
        for asker in askers {
            not_found += asker.await.expect("asker").1;
        }
        not_found
    })
    .await
    .expect("commands and Add/Remove deadlocked");
    assert!(
        joined >= 600,
        "the unknown id must be reported as not found"
    );
}

/// The whole group gets the stop grace, not just its leader: a worker that
/// needs half a second after SIGTERM finishes cleanly although its parent
/// shell exits at once (it used to be SIGKILLed the moment the leader was
/// reaped).
#[tokio::test]
async fn stop_gives_the_whole_group_its_grace() {
    let dir = tempfile::tempdir().expect("tempdir");
    let marker = dir.path().join("clean-exit");
    let worker = format!(
        "trap 'sleep 0.5; echo clean > {}; exit 0' TERM; echo started; while :; do sleep 0.05; done",
        marker.display()
    );
    // The worker says "started" once its trap is set.
    let script = format!("sh -c \"{worker}\" & wait");
    let mut spec = sh("grace", &script);
    spec.stop_timeout = Duration::from_secs(10);
    let sup = start(vec![spec]);
    let mut logs = sup.logs().subscribe(Start::Oldest);
    match tokio::time::timeout(PATIENCE, logs.next()).await {
        Ok(Some(Item::Record(line))) => assert_eq!(line.body.text, "started"),
        other => panic!("worker did not start: {other:?}"),
    }
    let mut events = subscribe(&sup);
    run(&sup, Command::Pause(id("grace"))).await.expect("pause");
    let seen = events_until(
        &mut events,
        "pause",
        is(|k| matches!(k, EventKind::ChildPaused), "grace"),
    )
    .await;
    assert!(
        !seen
            .iter()
            .any(|r| matches!(r.body.kind, EventKind::StopEscalated { .. })),
        "the group emptied within its grace"
    );
    assert_eq!(
        std::fs::read_to_string(&marker).expect("the worker exited cleanly"),
        "clean\n"
    );
    sup.shutdown("test", "done").await.expect("shutdown");
}

/// Shutdown stops independent children at once: with four children that
/// ignore SIGTERM, every one is signalled before the first is SIGKILLed (a
/// serial shutdown would take four stop timeouts); dependents still stop
/// before what they depend on.
#[tokio::test]
async fn shutdown_stops_a_level_concurrently() {
    let mut specs: Vec<_> = (0..4)
        .map(|i| {
            let mut spec = sh(
                &format!("stubborn-{i}"),
                "trap '' TERM; echo ready; exec sleep 1000",
            );
            spec.stop_timeout = Duration::from_millis(300);
            spec
        })
        .collect();
    let mut db = sh("db", "exec sleep 1000");
    db.stop_timeout = Duration::from_millis(300);
    specs[0].depends_on = vec![id("db")];
    specs.push(db);
    let sup = start(specs);
    let mut events = subscribe(&sup);
    // Each has ignored SIGTERM once it says so.
    let mut logs = sup.logs().subscribe(Start::Oldest);
    let mut ready = 0;
    while ready < 4 {
        match tokio::time::timeout(PATIENCE, logs.next()).await {
            Ok(Some(Item::Record(line))) if line.body.text == "ready" => ready += 1,
            Ok(Some(Item::Record(_))) => {}
            other => panic!("not ready: {other:?}"),
        }
    }
    sup.shutdown("test", "done").await.expect("shutdown");
    let seen = events_until(&mut events, "shutdown", |e| {
        matches!(e.kind, EventKind::ShutdownCompleted)
    })
    .await;
    let position = |pred: &dyn Fn(&EventKind) -> bool, child: &str| {
        seen.iter()
            .position(|r| {
                r.body
                    .child_id
                    .as_ref()
                    .is_some_and(|c| c.as_str() == child)
                    && pred(&r.body.kind)
            })
            .unwrap_or_else(|| panic!("no such event for {child}"))
    };
    let stopping = |k: &EventKind| matches!(k, EventKind::ChildStopping { .. });
    let escalated = |k: &EventKind| matches!(k, EventKind::StopEscalated { .. });
    let last_signalled = (0..4)
        .map(|i| position(&stopping, &format!("stubborn-{i}")))
        .max()
        .expect("four");
    let first_killed = (0..4)
        .map(|i| position(&escalated, &format!("stubborn-{i}")))
        .min()
        .expect("four");
    assert!(
        last_signalled < first_killed,
        "the level was stopped one child at a time"
    );
    assert!(
        position(&stopping, "db") > position(&escalated, "stubborn-0"),
        "db stopped before its dependent"
    );
}
