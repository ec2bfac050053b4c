//! Config reload and instance groups, on real processes: the engine with a
//! config source the test rewrites, and the real `sgw serve` driven by
//! `sgw reload`, `sgw scale` and SIGHUP.

use std::sync::{Arc, Mutex};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use supervisor_gateway::control::{
    Command, ConfigSource, ControlError, ControlPlane, Reloaded, TreeChange,
};
use supervisor_gateway::engine::{ChildSet, EngineConfig, Supervisor};
use supervisor_gateway::journal::Subscription;
use supervisor_gateway::model::{ChildId, ChildSpec, ChildState, Event, EventKind};

use crate::cli_support::{
    Running, Server, assert_exit, json_lines, sgw, state_json, stderr, stdout,
};
use crate::support::{self, id, is, sh, subscribe, wait_event};

/// A configuration the test replaces between reloads.
#[derive(Debug)]
struct Source(Mutex<Result<Vec<ChildSpec>, String>>);

impl Source {
    fn set(&self, specs: Vec<ChildSpec>) {
        *self.0.lock().expect("lock") = Ok(specs);
    }
}

impl ConfigSource for Source {
    fn load(&self) -> Result<Reloaded, String> {
        let specs = self.0.lock().expect("lock").clone()?;
        let children = ChildSet::new(specs).map_err(|e| e.to_string())?;
        Ok(Reloaded {
            children,
            not_applied: vec!["gateway.max_connections: takes effect when sgw restarts".into()],
        })
    }
}

fn start(specs: Vec<ChildSpec>) -> (Supervisor, Arc<Source>) {
    let source = Arc::new(Source(Mutex::new(Ok(specs.clone()))));
    let config = EngineConfig {
        config_source: Some(source.clone()),
        ..support::test_engine()
    };
    (support::start_with(config, specs), source)
}

/// Starts the engine on `specs` and waits until every child (each
/// instance of a group) has been reported running, in whatever order.
async fn started(specs: Vec<ChildSpec>) -> (Supervisor, Arc<Source>, Subscription<Event>) {
    let mut pending: Vec<ChildId> = ChildSet::new(specs.clone())
        .expect("valid tree")
        .specs()
        .iter()
        .map(|s| s.id.clone())
        .collect();
    let (sup, source) = start(specs);
    let mut events = subscribe(&sup);
    while !pending.is_empty() {
        let record = wait_event(&mut events, "every child running", |e| {
            matches!(e.kind, EventKind::ChildRunning { .. })
        })
        .await;
        pending.retain(|id| record.body.child_id.as_ref() != Some(id));
    }
    (sup, source, events)
}

async fn pid(sup: &Supervisor, child: &str) -> Option<u32> {
    sup.child(&id(child)).await.expect("child").pid
}

async fn apply(sup: &Supervisor, change: TreeChange) -> Result<String, ControlError> {
    support::run(sup, Command::Reload(Box::new(change)))
        .await
        .map(|report| report.outcome)
}

fn sleeper(child: &str) -> ChildSpec {
    sh(child, "exec sleep 60")
}

/// Only what changed is touched: the unchanged child keeps its process, a
/// changed command restarts, a policy-only change applies without a
/// restart, a deleted child is removed and a new one started.
#[tokio::test]
async fn a_reload_touches_only_what_changed() {
    let (sup, source, mut events) = started(vec![
        sleeper("keep"),
        sleeper("cmd"),
        sleeper("policy"),
        sleeper("gone"),
    ])
    .await;
    let before: Vec<Option<u32>> =
        futures_util::future::join_all(["keep", "cmd", "policy"].map(|c| pid(&sup, c))).await;

    let mut cmd = sh("cmd", "exec sleep 61");
    cmd.backoff = sleeper("cmd").backoff;
    let mut policy = sleeper("policy");
    policy.restart_budget.max = 9;
    source.set(vec![sleeper("keep"), cmd, policy, sleeper("new")]);

    let change = sup.plan_reload().await.expect("plan");
    let plan = &change.plan;
    assert_eq!(plan.add, [id("new")]);
    assert_eq!(plan.remove, [id("gone")]);
    assert_eq!(plan.unchanged, [id("keep")]);
    let updates: Vec<_> = plan
        .update
        .iter()
        .map(|u| (u.id.as_str(), u.changed.clone(), u.restart))
        .collect();
    assert_eq!(
        updates,
        [
            ("cmd", vec!["command".to_owned()], true),
            ("policy", vec!["restart_budget".to_owned()], false),
        ]
    );
    assert_eq!(plan.not_applied.len(), 1, "settings are reported");
    // A plan is only a plan.
    assert!(pid(&sup, "gone").await.is_some());
    assert!(sup.child(&id("new")).await.is_err());

    let outcome = apply(&sup, change).await.expect("applied");
    assert!(
        outcome.contains("added 1, updated 2 (1 restarted), removed 1"),
        "{outcome}"
    );
    wait_event(
        &mut events,
        "the plan",
        |e| matches!(&e.kind, EventKind::ChangePlanned { plan, .. } if plan.add == [id("new")]),
    )
    .await;
    wait_event(
        &mut events,
        "new running",
        is(|k| matches!(k, EventKind::ChildRunning { .. }), "new"),
    )
    .await;

    assert_eq!(
        pid(&sup, "keep").await,
        before[0],
        "unchanged: same process"
    );
    assert_eq!(
        pid(&sup, "policy").await,
        before[2],
        "policy change: same process"
    );
    assert_ne!(
        pid(&sup, "cmd").await,
        before[1],
        "changed command: new process"
    );
    let cmd = sup.child(&id("cmd")).await.expect("cmd");
    assert_eq!(cmd.spec.command[2], "exec sleep 61");
    assert_eq!(
        sup.child(&id("policy"))
            .await
            .expect("policy")
            .spec
            .restart_budget
            .max,
        9
    );
    assert!(
        matches!(
            sup.child(&id("gone")).await,
            Err(ControlError::NotFound { .. })
        ),
        "deleted child removed"
    );

    // The same file again: nothing to do.
    let again = sup.plan_reload().await.expect("plan");
    assert!(again.plan.is_empty(), "{:?}", again.plan);
    sup.shutdown("test", "done").await.expect("shutdown");
}

/// An invalid configuration changes nothing and says why; a plan whose
/// removal would strand a runtime-added dependent is refused.
#[tokio::test]
async fn an_invalid_reload_changes_nothing() {
    let (sup, source, _events) = started(vec![sleeper("db")]).await;
    let db = pid(&sup, "db").await;

    *source.0.lock().expect("lock") = Err("cfg.toml:3:1: unknown field `comand`".into());
    let error = sup.plan_reload().await.expect_err("invalid");
    assert!(
        matches!(&error, ControlError::InvalidConfig { message } if message.contains("cfg.toml:3:1")),
        "{error:?}"
    );

    let mut app = sleeper("app");
    app.depends_on = vec![id("db")];
    support::run(&sup, Command::Add(Box::new(app)))
        .await
        .expect("add app");
    source.set(vec![]);
    let error = sup.plan_reload().await.expect_err("app depends on db");
    assert!(
        matches!(&error, ControlError::HasDependents { id: gone, .. } if gone.as_str() == "db"),
        "{error:?}"
    );
    assert_eq!(pid(&sup, "db").await, db, "nothing changed");
    sup.shutdown("test", "done").await.expect("shutdown");
}

/// A paused child whose spec changes stays paused (no process appears).
#[tokio::test]
async fn a_held_child_is_updated_but_stays_held() {
    let (sup, source, mut events) = started(vec![sleeper("held")]).await;
    support::run(&sup, Command::Pause(id("held")))
        .await
        .expect("pause");
    source.set(vec![sh("held", "exec sleep 62")]);
    let change = sup.plan_reload().await.expect("plan");
    assert!(change.plan.update[0].restart);
    apply(&sup, change).await.expect("applied");
    let event = wait_event(
        &mut events,
        "updated",
        is(|k| matches!(k, EventKind::ChildUpdated { .. }), "held"),
    )
    .await;
    assert!(
        matches!(
            &event.body.kind,
            EventKind::ChildUpdated {
                restarted: false,
                ..
            }
        ),
        "{:?}",
        event.body.kind
    );
    let record = sup.child(&id("held")).await.expect("held");
    assert_eq!(record.state, ChildState::Paused);
    assert_eq!(record.pid, None);
    assert_eq!(record.spec.command[2], "exec sleep 62");
    sup.shutdown("test", "done").await.expect("shutdown");
}

/// The command that applies `change`, a scale of group `w` to `instances`.
fn scale_w(instances: u32, change: TreeChange) -> Command {
    Command::Scale {
        group: id("w"),
        instances,
        change: Box::new(change),
    }
}

/// `instances = N` expands with `{instance}` substituted; a scale adds and
/// removes instances live; a reload keeps the runtime scale while the
/// file's `instances` is unchanged.
#[tokio::test]
async fn instances_expand_and_scale_live() {
    let mut worker = sh("w", "echo {instance}; exec sleep 60");
    worker.instances = Some(2);
    worker.env.insert("SLOT".into(), "slot-{instance}".into());
    let (sup, source, mut events) = started(vec![worker.clone()]).await;
    let w1 = sup.child(&id("w-1")).await.expect("w-1");
    assert_eq!(w1.spec.command[2], "echo 1; exec sleep 60");
    assert_eq!(w1.spec.env["SLOT"], "slot-1");

    let up = sup.plan_scale(&id("w"), 4).await.expect("plan");
    assert_eq!(up.plan.add, [id("w-2"), id("w-3")]);
    support::run(&sup, scale_w(4, up)).await.expect("scale up");
    wait_event(
        &mut events,
        "w-3",
        is(|k| matches!(k, EventKind::ChildRunning { .. }), "w-3"),
    )
    .await;
    assert_eq!(sup.state().await.children.len(), 4);

    // The file still says 2: the runtime scale is kept.
    source.set(vec![worker.clone()]);
    let kept = sup.plan_reload().await.expect("plan");
    assert!(kept.plan.is_empty(), "{:?}", kept.plan);

    let down = sup.plan_scale(&id("w"), 1).await.expect("plan");
    assert_eq!(down.plan.remove.len(), 3);
    let request = supervisor_gateway::control::CommandRequest::new(
        scale_w(1, down.clone()),
        supervisor_gateway::control::CommandMeta {
            confirm: false,
            ..support::meta()
        },
    );
    assert!(
        matches!(request, Err(ControlError::ConfirmationRequired { .. })),
        "removing instances needs confirm"
    );
    support::run(&sup, scale_w(1, down))
        .await
        .expect("scale down");
    let ids: Vec<String> = sup
        .state()
        .await
        .children
        .iter()
        .map(|c| c.id.to_string())
        .collect();
    assert_eq!(ids, ["w-0"]);
    assert!(matches!(
        sup.plan_scale(&id("nope"), 2).await,
        Err(ControlError::NotFound { .. })
    ));
    sup.shutdown("test", "done").await.expect("shutdown");
}

const FILE: &str = r#"
[[child]]
id = "keep"
command = ["/bin/sh", "-c", "exec sleep 60"]

[[child]]
id = "old"
command = ["/bin/sh", "-c", "exec sleep 60"]

[[child]]
id = "w"
instances = 2
command = ["/bin/sh", "-c", "echo instance-{instance}; exec sleep 60"]
"#;

fn sgw_at(server: &Server, args: &[&str]) -> std::process::Output {
    let mut all = args.to_vec();
    all.extend(["--socket", server.socket()]);
    sgw(&all)
}

/// Follows the journal from the start, as JSON lines.
fn follow(server: &Server) -> Running {
    Running::spawn(&["events", "--follow", "--json", "--socket", server.socket()])
}

fn event_of(line: &str, kind: &str, child: &str) -> bool {
    serde_json::from_str::<Value>(line)
        .is_ok_and(|v| v["event"]["event_type"] == kind && v["event"]["child_id"] == child)
}

/// Reads the journal until each of `children` has been reported running.
fn running(journal: &mut Running, children: &[&str]) {
    let pending = std::cell::RefCell::new(children.to_vec());
    journal.stdout.until("children running", |line| {
        pending
            .borrow_mut()
            .retain(|child| !event_of(line, "EVENT_TYPE_CHILD_RUNNING", child));
        pending.borrow().is_empty()
    });
}

/// The real daemon: `--dry-run` prints the plan and changes nothing; a
/// removal needs `--yes`; an invalid file is refused with file:line:key;
/// SIGHUP reloads; `sgw scale` changes a group.
#[test]
fn sgw_reload_scale_and_sighup_on_the_real_daemon() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("sgw.sock");
    let server = Server::start(FILE, &socket);
    let config = dir.path().join("sgw.sock.toml");
    let mut journal = follow(&server);
    running(&mut journal, &["keep", "old", "w-0", "w-1"]);
    let state = |server: &Server| state_json(server.socket());
    let pid_of = |state: &Value, child: &str| -> Option<u64> {
        state["children"]
            .as_array()?
            .iter()
            .find(|c| c["child_id"] == child)?["pid"]
            .as_u64()
    };
    let before = state(&server);

    let edited =
        FILE.replace("id = \"old\"", "id = \"new\"") + "\n[gateway]\nmax_connections = 77\n";
    std::fs::write(&config, &edited).expect("rewrite config");

    let dry = sgw_at(&server, &["reload", "--dry-run"]);
    assert_exit(&dry, 0);
    let text = stdout(&dry);
    assert!(text.contains("add       new"), "{text}");
    assert!(text.contains("remove    old"), "{text}");
    assert!(text.contains("gateway.max_connections"), "{text}");
    assert!(text.contains("dry run: nothing changed"), "{text}");

    let refused = sgw_at(&server, &["reload"]);
    assert_exit(&refused, 2);
    assert!(stderr(&refused).contains("--yes"), "{}", stderr(&refused));
    assert!(pid_of(&state(&server), "old").is_some(), "nothing changed");

    std::fs::write(&config, edited.replace("command", "comand")).expect("break config");
    let invalid = sgw_at(&server, &["reload", "--yes"]);
    assert_exit(&invalid, 1);
    let message = stderr(&invalid);
    assert!(message.contains("sgw.sock.toml:"), "{message}");
    assert!(message.contains("comand"), "{message}");

    std::fs::write(&config, &edited).expect("fix config");
    let applied = sgw_at(&server, &["reload", "--yes", "--json"]);
    assert_exit(&applied, 0);
    let answer = json_lines(&applied).remove(0);
    assert_eq!(answer["plan"]["add"], serde_json::json!(["new"]));
    assert_eq!(answer["plan"]["remove"], serde_json::json!(["old"]));
    journal.stdout.until("new running", |l| {
        event_of(l, "EVENT_TYPE_CHILD_RUNNING", "new")
    });
    let after = state(&server);
    for child in ["keep", "w-0", "w-1"] {
        assert_eq!(
            pid_of(&after, child),
            pid_of(&before, child),
            "{child} untouched"
        );
    }
    assert_eq!(pid_of(&after, "old"), None);

    // SIGHUP: the file adds a child.
    std::fs::write(
        &config,
        edited.clone()
            + "\n[[child]]\nid = \"hup\"\ncommand = [\"/bin/sh\", \"-c\", \"exec sleep 60\"]\n",
    )
    .expect("rewrite config");
    kill(Pid::from_raw(server.pid() as i32), Signal::SIGHUP).expect("SIGHUP");
    journal.stdout.until("hup running", |l| {
        event_of(l, "EVENT_TYPE_CHILD_RUNNING", "hup")
    });

    // Scale the group up, then down (which needs --yes).
    let up = sgw_at(&server, &["scale", "w", "3"]);
    assert_exit(&up, 0);
    assert!(stdout(&up).contains("add       w-2"), "{}", stdout(&up));
    journal.stdout.until("w-2 running", |l| {
        event_of(l, "EVENT_TYPE_CHILD_RUNNING", "w-2")
    });
    // `{instance}` was filled in: the new instance says which it is.
    let mut logs = Running::spawn(&[
        "logs",
        "--child",
        "w-2",
        "--follow",
        "--socket",
        server.socket(),
    ]);
    logs.stdout
        .until("w-2's line", |l| l.contains("instance-2"));
    assert_exit(&sgw_at(&server, &["scale", "w", "1"]), 2);
    assert_exit(&sgw_at(&server, &["scale", "w", "1", "--yes"]), 0);
    let ids: Vec<String> = state(&server)["children"]
        .as_array()
        .expect("children")
        .iter()
        .map(|c| c["child_id"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(ids, ["keep", "w-0", "new", "hup"]);
    let plain = sgw_at(&server, &["scale", "keep", "2"]);
    assert_exit(&plain, 1);
    assert!(
        stderr(&plain).contains("not an instance group"),
        "{}",
        stderr(&plain)
    );
}

/// The guard classes a reload by its plan: a uid with the write class may
/// reload a file that only adds, but one that removes needs the
/// destructive class (and confirm), and is refused before anything runs.
#[tokio::test]
async fn a_reload_that_removes_needs_the_destructive_class() {
    use supervisor_gateway::control::{Caller, CommandMeta};
    use supervisor_gateway::security::{ChangeTarget, Guarded, Security};

    let (sup, source, _events) = started(vec![sleeper("a")]).await;
    let writer = 12_345;
    let mut security = support::test_security();
    security.allowed_uids = vec![writer];
    security.write.uids = vec![writer];
    let guard = Guarded::new(Arc::new(sup.clone()), Arc::new(Security::new(security)));
    let caller = Arc::new(Caller {
        uid: writer,
        gid: writer,
        pid: None,
        user_name: None,
        connection_id: 1,
        executable: None,
        start_time: None,
    });
    let meta = CommandMeta {
        confirm: true,
        ..support::meta()
    };
    let reload = |dry_run| {
        guard.change(
            &caller,
            "test:ReloadConfig",
            supervisor_gateway::model::CommandKind::ReloadConfig,
            Ok(ChangeTarget::Reload),
            meta.clone(),
            dry_run,
        )
    };

    source.set(vec![sleeper("b")]);
    let error = reload(false).await.expect_err("removes a: destructive");
    assert!(matches!(error, ControlError::Denied(_)), "{error:?}");
    assert!(sup.child(&id("a")).await.is_ok(), "nothing removed");
    assert!(sup.child(&id("b")).await.is_err(), "nothing added");
    // The dry run of the same plan is only a write.
    let (dry, report) = reload(true).await.expect("dry run");
    assert!(report.is_none());
    assert_eq!(dry.plan.remove, [id("a")]);

    source.set(vec![sleeper("a"), sleeper("b")]);
    let (_, report) = reload(false).await.expect("adding is a write");
    assert!(report.is_some());
    assert!(sup.child(&id("b")).await.is_ok());
    sup.shutdown("test", "done").await.expect("shutdown");
}

/// A server without a config file (the built-in demo, an embedding
/// application) does not offer reloads, and says so over gRPC.
#[tokio::test]
async fn without_a_config_file_a_reload_is_unimplemented() {
    let gw = support::gateway(vec![sleeper("a")]).await;
    let mut client = gw.client().await;
    let status = client
        .control
        .reload_config(supervisor_gateway::pb::ReloadConfigRequest {
            meta: None,
            dry_run: true,
        })
        .await
        .expect_err("no file to read");
    assert_eq!(status.code(), tonic::Code::Unimplemented, "{status:?}");
    assert!(status.message().contains("--config"), "{status:?}");
    gw.shutdown().await;
}
