//! Captured output that stays fair and survives: per-child byte bounds, the
//! rate limit and its notices, rotated log files, history after a restart.

use std::path::Path;
use std::time::Duration;

use crate::support::*;
use supervisor_gateway::control::ControlPlane;
use supervisor_gateway::engine::{EngineConfig, Supervisor};
use supervisor_gateway::journal::{Item, Start};
use supervisor_gateway::model::{Bytes, ChildSpec, EventKind, LogLine, RestartPolicy};
use supervisor_gateway::pb;
use supervisor_gateway::pb::tail_logs_response::Item as LogItem;

/// A child whose output is not rate limited, with its own memory bound.
fn unlimited(mut spec: ChildSpec, memory: u64) -> ChildSpec {
    spec.logs.rate_burst = Some(0);
    spec.logs.memory_bytes = Some(Bytes(memory));
    spec
}

fn with_state(dir: &Path) -> EngineConfig {
    EngineConfig {
        state_dir: Some(dir.to_owned()),
        ..test_engine()
    }
}

/// Reads `child`'s lines until `done` says so; gaps are tolerated (and
/// returned as `None`) since these children flood on purpose.
async fn read_until(
    sup: &Supervisor,
    child: &str,
    what: &str,
    mut done: impl FnMut(&LogLine) -> bool,
) -> Vec<Option<LogLine>> {
    let mut sub = sup.logs().subscribe_children(Start::After(0), &[id(child)]);
    let mut seen = Vec::new();
    tokio::time::timeout(PATIENCE, async {
        loop {
            match sub.next().await {
                Some(Item::Record(record)) => {
                    let stop = done(&record.body);
                    seen.push(Some(record.body.clone()));
                    if stop {
                        return;
                    }
                }
                Some(Item::Gap(_)) => seen.push(None),
                None => panic!("journal closed while waiting for {what}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
    seen
}

/// `TailLogs` without follow: the backlog's lines (a gap fails the test).
async fn tail_logs(gw: &TestGateway, child: &str, lines: u32) -> Vec<pb::LogLine> {
    let mut stream = gw
        .client()
        .await
        .journal
        .tail_logs(pb::TailLogsRequest {
            child_ids: vec![child.into()],
            lines,
            ..Default::default()
        })
        .await
        .expect("TailLogs")
        .into_inner();
    let mut out = Vec::new();
    while let Some(message) = tokio::time::timeout(PATIENCE, stream.message())
        .await
        .expect("in time")
        .expect("ok")
    {
        match message.item {
            Some(LogItem::Line(line)) => out.push(line),
            Some(LogItem::Gap(gap)) => panic!("a gap in {child}'s backlog: {gap:?}"),
            _ => {}
        }
    }
    out
}

/// `yes` with no rate limit cannot evict a quiet neighbour's lines: the
/// flooder only loses its own oldest output, and a reader of the quiet
/// child gets its last lines whole, with no gap for the flooder's losses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooder_cannot_evict_a_quiet_childs_tail() {
    let quiet = sh(
        "quiet",
        "i=1; while [ $i -le 50 ]; do printf 'quiet %03d %0100d\\n' $i 0; i=$((i+1)); done; exec sleep 1000",
    );
    let flood = unlimited(sh("flood", "exec yes flood"), 64 << 10);
    let gw = GatewayBuilder::new(vec![quiet, flood]).start().await;
    read_until(&gw.supervisor, "quiet", "the quiet child's lines", |l| {
        l.text.starts_with("quiet 050")
    })
    .await;
    // Let the flooder turn its own tail over many times.
    let before = gw.supervisor.logs().last_sequence();
    let mut flooded = gw
        .supervisor
        .logs()
        .subscribe_children(Start::Live, &[id("flood")]);
    tokio::time::timeout(PATIENCE, async {
        while let Some(item) = flooded.next().await {
            if matches!(item, Item::Record(r) if r.sequence > before + 100_000) {
                return;
            }
        }
    })
    .await
    .expect("the flooder floods");
    let flood_bytes = gw.supervisor.logs().retained_bytes(&id("flood"));
    assert!(flood_bytes <= 64 << 10, "flooder holds {flood_bytes} bytes");
    let lines = tail_logs(&gw, "quiet", 50).await;
    let texts: Vec<&str> = lines.iter().map(|l| &l.text[..9]).collect();
    let expected: Vec<String> = (1..=50).map(|i| format!("quiet {i:03}")).collect();
    assert_eq!(texts, expected);
    gw.shutdown().await;
}

/// Over its burst a child's lines are dropped and counted, the child is
/// never blocked (a million lines end in time), and the count comes as an
/// explicit record, on gRPC too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_counts_what_it_drops_and_never_blocks() {
    let mut spec = sh("yes", "yes | head -n 1000000");
    spec.restart = RestartPolicy::Never;
    spec.logs.rate_burst = Some(100);
    spec.logs.rate_interval = Some(Duration::from_secs(60));
    let gw = GatewayBuilder::new(vec![spec]).start().await;
    let mut events = subscribe(&gw.supervisor);
    wait_event(
        &mut events,
        "the child to exit",
        is(|k| matches!(k, EventKind::ChildExited { .. }), "yes"),
    )
    .await;
    let mut passed = 0u64;
    let mut suppressed = 0u64;
    read_until(&gw.supervisor, "yes", "a million lines", |line| {
        if line.suppressed > 0 {
            suppressed += line.suppressed;
            assert!(line.text.contains("lines suppressed"), "{}", line.text);
        } else {
            passed += 1;
        }
        passed + suppressed == 1_000_000
    })
    .await;
    assert_eq!(passed, 100);
    let lines = tail_logs(&gw, "yes", 1000).await;
    let notice = lines.last().expect("lines");
    assert!(notice.suppressed > 0, "{notice:?}");
    assert!(
        notice
            .text
            .starts_with(&format!("{} lines suppressed", notice.suppressed))
    );
    gw.shutdown().await;
}

/// When a suppression window ends while the child is quiet, the notice
/// comes then, before the child's next line.
#[tokio::test]
async fn the_notice_comes_when_the_window_ends() {
    let mut spec = sh("burst", "seq 1 1000; sleep 1; echo after; exec sleep 1000");
    spec.logs.rate_burst = Some(100);
    spec.logs.rate_interval = Some(Duration::from_millis(300));
    let sup = start(vec![spec]);
    let seen = read_until(&sup, "burst", "the line after the window", |line| {
        line.text == "after"
    })
    .await;
    let seen: Vec<LogLine> = seen.into_iter().map(|l| l.expect("no gap")).collect();
    assert_eq!(seen.len(), 102, "{:?}", &seen[99..]);
    assert_eq!(seen[99].text, "100");
    assert_eq!(seen[100].suppressed, 900, "{:?}", seen[100]);
    sup.shutdown("test", "done").await.expect("shutdown");
}

/// The log file rotates at `max_bytes` and keeps `backups` rotated files,
/// every one plain text lines with the time, sequence and stream.
#[tokio::test]
async fn rotation_keeps_bounded_backups_of_plain_lines() {
    let state = tempfile::tempdir().expect("tempdir");
    let mut spec = unlimited(
        sh(
            "rotor",
            "i=1; while [ $i -le 3000 ]; do printf 'line %05d %080d\\n' $i 0; i=$((i+1)); done; echo last",
        ),
        1 << 20,
    );
    spec.restart = RestartPolicy::Never;
    spec.logs.max_bytes = Some(Bytes(64 << 10));
    spec.logs.backups = Some(2);
    let sup = start_with(with_state(state.path()), vec![spec]);
    read_until(&sup, "rotor", "the last line", |l| l.text == "last").await;
    sup.logs().sync().await;
    let dir = state.path().join("logs");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("logs dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["rotor.log", "rotor.log.1", "rotor.log.2"]);
    for name in &names {
        let text = std::fs::read_to_string(dir.join(name)).expect("read");
        assert!(text.len() <= 64 << 10, "{name}: {} bytes", text.len());
        assert!(text.len() > 32 << 10 || name == "rotor.log", "{name}");
        for line in text.lines() {
            let fields: Vec<&str> = line.splitn(5, ' ').collect();
            assert_eq!(fields.len(), 5, "{line}");
            assert!(humantime::parse_rfc3339(fields[0]).is_ok(), "{line}");
            assert!(fields[1].parse::<u64>().is_ok(), "{line}");
            assert_eq!(fields[3], "stdout", "{line}");
        }
    }
    let newest = std::fs::read_to_string(dir.join("rotor.log")).expect("read");
    assert!(newest.ends_with(" stdout last\n"), "{newest}");
    sup.shutdown("test", "done").await.expect("shutdown");
}

/// Lines captured before a restart are served by `TailLogs` from the new
/// engine on the same state directory, and new lines continue the
/// sequence after them.
#[tokio::test]
async fn history_is_served_after_a_restart() {
    let state = tempfile::tempdir().expect("tempdir");
    let before = sh(
        "web",
        "i=1; while [ $i -le 20 ]; do echo before $i; i=$((i+1)); done; exec sleep 1000",
    );
    let gw = GatewayBuilder::new(vec![before])
        .engine(with_state(state.path()))
        .start()
        .await;
    read_until(&gw.supervisor, "web", "the lines", |l| {
        l.text == "before 20"
    })
    .await;
    let last_before = gw.supervisor.logs().last_sequence();
    // The shutdown itself waits for the files: nothing else syncs them.
    gw.shutdown().await;

    let after = sh("web", "echo after; exec sleep 1000");
    let gw = GatewayBuilder::new(vec![after])
        .engine(with_state(state.path()))
        .start()
        .await;
    let seen = read_until(&gw.supervisor, "web", "the new line", |l| l.text == "after").await;
    let texts: Vec<String> = seen.into_iter().map(|l| l.expect("no gap").text).collect();
    let mut expected: Vec<String> = (1..=20).map(|i| format!("before {i}")).collect();
    expected.push("after".to_owned());
    assert_eq!(texts, expected);
    let lines = tail_logs(&gw, "web", 100).await;
    assert_eq!(lines.len(), 21);
    assert_eq!(lines[19].text, "before 20");
    assert!(lines[19].sequence <= last_before);
    assert!(lines[20].sequence > last_before, "the sequence continues");
    gw.shutdown().await;
}

/// A 10 MB line without a newline is chunked, and the child keeps at most
/// its byte bound in memory, not the line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_line_stays_within_the_childs_bound() {
    let bound = 256 << 10;
    let spec = unlimited(
        sh(
            "wide",
            "head -c 10000000 /dev/zero | tr '\\0' x; echo; exec sleep 1000",
        ),
        bound,
    );
    let sup = start(vec![spec]);
    let seen = read_until(&sup, "wide", "the end of the line", |l| !l.truncated).await;
    assert!(seen.len() > 10, "{} chunks seen", seen.len());
    let held = sup.logs().retained_bytes(&id("wide"));
    assert!(held > 0 && held <= bound as usize, "{held} bytes held");
    sup.shutdown("test", "done").await.expect("shutdown");
}
