//! Containment with real processes, in both modes: every descendant of a
//! child (setsid, double-forked, SIGTERM-ignoring) is reached by its stops,
//! usage is measured over all of them, limits need their controller.
//!
//! cgroup mode needs a writable cgroup v2 hierarchy (root, or a delegated
//! subtree); where the host has none, the cgroup cases print why and
//! check the fallback instead. CI runs as root, where they run.

use crate::support;

use std::time::Duration;

use supervisor_gateway::control::{Command, ControlPlane};
use supervisor_gateway::engine::{EngineConfig, Supervisor};
use supervisor_gateway::journal::{Item, Start};
use supervisor_gateway::model::{
    ChildSpec, ContainmentKind, ContainmentPreference, EventKind, RestartPolicy, SpawnStage,
};
use support::*;

fn engine(preference: ContainmentPreference) -> EngineConfig {
    EngineConfig {
        containment: preference,
        ..EngineConfig::default()
    }
}

/// The modes this host can run: subreaper always, cgroup where usable.
async fn modes() -> Vec<ContainmentPreference> {
    let mut modes = vec![ContainmentPreference::Subreaper];
    if cgroup_usable().await {
        modes.push(ContainmentPreference::Cgroup);
    } else {
        eprintln!("cgroup v2 is not writable here: cgroup-mode cases skipped");
    }
    modes
}

/// Whether `auto` picks cgroups on this host, by asking the engine.
async fn cgroup_usable() -> bool {
    let sup = start_with(engine(ContainmentPreference::Auto), vec![]);
    sup.info().containment.kind == ContainmentKind::Cgroup
}

/// Reads `n` log lines (pids, markers) from the start of the journal.
async fn lines(sup: &Supervisor, n: usize) -> Vec<String> {
    let mut logs = sup.logs().subscribe(Start::Oldest);
    let mut lines = Vec::new();
    while lines.len() < n {
        match tokio::time::timeout(PATIENCE, logs.next()).await {
            Ok(Some(Item::Record(line))) => lines.push(line.body.text.clone()),
            Ok(Some(Item::Gap { .. })) => {}
            other => panic!("expected {n} lines, got {lines:?} then {other:?}"),
        }
    }
    lines
}

/// A script in a file, so the shell quoting stays readable.
fn script_child(dir: &std::path::Path, child: &str, script: &str) -> ChildSpec {
    let path = dir.join(format!("{child}.sh"));
    std::fs::write(&path, script).expect("write script");
    let mut spec = ChildSpec::new(
        id(child),
        vec!["/bin/sh".into(), path.to_string_lossy().into_owned()],
    );
    spec.backoff.initial = Duration::from_millis(10);
    spec.stop_timeout = Duration::from_millis(300);
    spec
}

/// Descendants that left the process group (setsid), were orphaned at
/// once (double fork) and ignore SIGTERM all die with a stop.
#[tokio::test]
async fn stop_reaches_descendants_that_left_the_group() {
    for mode in modes().await {
        let dir = tempfile::tempdir().expect("tempdir");
        let spec = script_child(
            dir.path(),
            "escapes",
            "trap '' TERM\nsetsid sleep 300 &\necho $!\n( sleep 301 & echo $! )\nwait\n",
        );
        let sup = start_with(engine(mode), vec![spec]);
        let pids: Vec<u32> = lines(&sup, 2)
            .await
            .iter()
            .map(|l| l.parse().expect("a pid"))
            .collect();
        let mut events = subscribe(&sup);
        run(&sup, Command::Pause(id("escapes")))
            .await
            .expect("pause");
        let seen = events_until(
            &mut events,
            "pause",
            is(|k| matches!(k, EventKind::ChildPaused), "escapes"),
        )
        .await;
        assert!(
            seen.iter()
                .any(|r| matches!(r.body.kind, EventKind::StopEscalated { .. })),
            "{mode:?}: SIGTERM-ignoring members need the escalation"
        );
        for pid in pids {
            assert!(wait_gone(pid).await, "{mode:?}: descendant {pid} survived");
        }
        sup.shutdown("test", "done").await.expect("shutdown");
    }
}

/// When the main process exits on its own, what it left behind (even in
/// another session) is killed before the run counts as over.
#[tokio::test]
async fn exit_of_the_main_process_takes_its_leftovers() {
    for mode in modes().await {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut spec = script_child(
            dir.path(),
            "leaver",
            "setsid sleep 300 &\necho $!\nsleep 0.05\nexit 3\n",
        );
        spec.restart = RestartPolicy::Never;
        let sup = start_with(engine(mode), vec![spec]);
        let mut events = subscribe(&sup);
        let pid: u32 = lines(&sup, 1).await[0].parse().expect("pid");
        events_until(
            &mut events,
            "exit",
            is(|k| matches!(k, EventKind::ChildExited { .. }), "leaver"),
        )
        .await;
        assert!(wait_gone(pid).await, "{mode:?}: leftover {pid} survived");
        sup.shutdown("test", "done").await.expect("shutdown");
    }
}

/// Usage counts every member: the shell and its two sleeps.
#[tokio::test]
async fn usage_covers_every_member() {
    for mode in modes().await {
        let sup = start_with(
            engine(mode),
            vec![sh("busy", "sleep 300 & sleep 301 & echo ready; wait")],
        );
        assert_eq!(lines(&sup, 1).await, ["ready"]);
        let record = sup.child(&id("busy")).await.expect("record");
        let usage = record.usage.expect("a running child is measured");
        assert_eq!(usage.processes, 3, "{mode:?}: {usage:?}");
        assert!(usage.memory_bytes > 0, "{mode:?}: {usage:?}");
        let state = sup.state().await;
        assert_eq!(state.children[0].usage, Some(usage), "cached reading");
        run(&sup, Command::Pause(id("busy"))).await.expect("pause");
        let paused = sup.child(&id("busy")).await.expect("record");
        assert_eq!(paused.usage, None, "no process, no usage");
        sup.shutdown("test", "done").await.expect("shutdown");
    }
}

/// A limit is enforced or the child does not start: where its controller
/// is delegated, `pids_max` caps the forks; elsewhere the spawn fails in
/// stage `cgroup`, naming the controller.
#[tokio::test]
async fn limits_are_enforced_or_refused() {
    for mode in modes().await {
        let mut spec = sh(
            "forker",
            "for i in 1 2 3 4 5 6 7 8 9 10; do sleep 300 & done; echo forked; wait",
        );
        spec.pids_max = Some(4);
        spec.restart = RestartPolicy::Never;
        let sup = start_with(engine(mode), vec![spec]);
        let info = sup.info().containment;
        let mut events = subscribe(&sup);
        if info.controllers.iter().any(|c| c == "pids") {
            assert_eq!(lines(&sup, 1).await, ["forked"]);
            let usage = sup
                .child(&id("forker"))
                .await
                .expect("record")
                .usage
                .expect("measured");
            assert!(
                usage.processes <= 4,
                "{mode:?}: pids.max ignored: {usage:?}"
            );
        } else {
            let seen = events_until(
                &mut events,
                "spawn failure",
                is(|k| matches!(k, EventKind::SpawnFailed { .. }), "forker"),
            )
            .await;
            let Some(EventKind::SpawnFailed { error, .. }) = seen.last().map(|r| &r.body.kind)
            else {
                panic!("no spawn failure");
            };
            assert_eq!(error.stage, SpawnStage::Cgroup, "{mode:?}: {error}");
            assert!(
                error.message.contains("pids"),
                "{mode:?}: the message names the controller: {error}"
            );
        }
        sup.shutdown("test", "done").await.expect("shutdown");
    }
}

/// GetInfo says which mode is in force and why.
#[tokio::test]
async fn info_names_the_mode() {
    let sup = start_with(engine(ContainmentPreference::Subreaper), vec![]);
    let info = sup.info().containment;
    assert_eq!(info.kind, ContainmentKind::Subreaper);
    assert!(info.detail.contains("[supervisor] containment"), "{info:?}");
    let auto = start_with(engine(ContainmentPreference::Auto), vec![]);
    let info = auto.info().containment;
    match info.kind {
        ContainmentKind::Cgroup => {
            let path = std::path::Path::new(&info.detail);
            assert!(path.join("cgroup.procs").exists(), "{info:?}");
            auto.shutdown("test", "done").await.expect("shutdown");
            assert!(!path.exists(), "a clean shutdown removes the subtree");
        }
        ContainmentKind::Subreaper => {
            assert!(info.detail.starts_with("cgroup v2 not usable"), "{info:?}");
        }
    }
}
