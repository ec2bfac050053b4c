//! The daemon under faults, black-box: what a `kill -9` of sgw leaves is
//! killed (and reported) by the next start on the same state directory,
//! and every orphan the daemon adopts is reaped, also as PID 1.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::cli_support::{Lines, PATIENCE, json_lines, sgw, sgw_command};
use crate::support::process_gone;

/// A `sgw serve` with its stdout read by lines; stopped when dropped.
struct Daemon {
    /// The spawned process: sgw, or the prefix (e.g. `unshare`).
    pid: u32,
    /// The sgw process itself: `pid`, or the process a prefix such as
    /// `unshare --fork` started (signals to it are not forwarded).
    sgw_pid: u32,
    /// The spawned process's exit, sent by the thread that waits for it.
    exited: Receiver<ExitStatus>,
    gone: bool,
    socket: PathBuf,
}

impl Daemon {
    /// Starts `[prefix...] sgw serve --config CONFIG --socket SOCKET` and
    /// waits for its readiness line.
    fn start(prefix: &[&str], config: &Path, socket: &Path) -> Daemon {
        let mut args = vec![
            "serve",
            "--config",
            config.to_str().expect("utf-8"),
            "--socket",
            socket.to_str().expect("utf-8"),
        ];
        let mut command = if prefix.is_empty() {
            sgw_command(&args)
        } else {
            let mut full: Vec<&str> = prefix[1..].to_vec();
            full.push(crate::cli_support::SGW);
            full.append(&mut args);
            let mut command = std::process::Command::new(prefix[0]);
            command.args(full).env_remove("SGW_STATE_DIR");
            command
        };
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sgw serve");
        let mut stdout = Lines::new(child.stdout.take().expect("stdout"));
        stdout.until("readiness", |l| l.starts_with("sgw: serving target"));
        let pid = child.id();
        let sgw_pid = if prefix.is_empty() {
            pid
        } else {
            let (live, _) = children_of(pid);
            assert_eq!(live.len(), 1, "{prefix:?} forks one sgw: {live:?}");
            live[0]
        };
        let (tx, exited) = channel();
        std::thread::spawn(move || {
            if let Ok(status) = child.wait() {
                let _ = tx.send(status);
            }
        });
        Daemon {
            pid,
            sgw_pid,
            exited,
            gone: false,
            socket: socket.to_owned(),
        }
    }

    fn events(&self) -> Vec<serde_json::Value> {
        let output = sgw(&[
            "events",
            "--json",
            "--socket",
            self.socket.to_str().expect("utf-8"),
        ]);
        assert!(output.status.success(), "{output:?}");
        json_lines(&output)
    }

    /// Whether the spawned process exits within `within`.
    fn exits(&mut self, within: Duration) -> bool {
        self.gone = self.gone || self.exited.recv_timeout(within).is_ok();
        self.gone
    }

    fn sigkill(&mut self) {
        let _ = kill(Pid::from_raw(self.pid as i32), Signal::SIGKILL);
        assert!(self.exits(PATIENCE), "SIGKILL ends sgw");
    }

    /// SIGTERM to sgw, then SIGKILL if it has not exited within
    /// [`PATIENCE`]; true if SIGTERM was enough.
    fn terminate(&mut self) -> bool {
        if self.gone {
            return true;
        }
        let _ = kill(Pid::from_raw(self.sgw_pid as i32), Signal::SIGTERM);
        if self.exits(PATIENCE) {
            return true;
        }
        let _ = kill(Pid::from_raw(self.sgw_pid as i32), Signal::SIGKILL);
        let _ = kill(Pid::from_raw(self.pid as i32), Signal::SIGKILL);
        self.exits(PATIENCE);
        false
    }

    /// A clean stop; a hung daemon fails the test instead of hanging it.
    fn stop(&mut self) {
        assert!(
            self.terminate(),
            "sgw did not exit within {PATIENCE:?} of SIGTERM"
        );
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// Polls `condition` until it holds or [`PATIENCE`] passes. There is no
/// event for the death of a process we do not own.
fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn read_pid(path: &Path) -> u32 {
    eventually("the pid file", || {
        std::fs::read_to_string(path).is_ok_and(|t| t.ends_with('\n'))
    });
    std::fs::read_to_string(path)
        .expect("pid file")
        .trim()
        .parse()
        .expect("a pid")
}

/// kill -9 of sgw: the child's `setsid` helper survives it (as it would
/// under any supervisor without a cgroup); the next start on the same
/// state directory kills it before starting anything and says so.
#[test]
fn leftovers_of_a_killed_instance_are_killed_at_next_start() {
    for mode in ["subreaper", "auto"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let pid_file = dir.path().join("helper.pid");
        let config = dir.path().join("sgw.toml");
        std::fs::write(
            &config,
            format!(
                r#"
[supervisor]
containment = "{mode}"
state_dir = "{state}"

[[child]]
id = "web"
command = ["/bin/sh", "-c", "setsid sleep 300 & echo $! > {pid}.tmp; mv {pid}.tmp {pid}; wait"]
"#,
                state = dir.path().join("state").display(),
                pid = pid_file.display(),
            ),
        )
        .expect("config");
        let socket = dir.path().join("sgw.sock");
        let mut first = Daemon::start(&[], &config, &socket);
        let helper = read_pid(&pid_file);
        std::fs::remove_file(&pid_file).expect("rm pid file");
        first.sigkill();
        assert!(
            !process_gone(helper),
            "{mode}: the helper outlives a SIGKILLed sgw (the case under test)"
        );
        let mut second = Daemon::start(&[], &config, &socket);
        eventually("the leftover to die", || process_gone(helper));
        let leftovers: Vec<serde_json::Value> = second
            .events()
            .into_iter()
            .filter(|e| e["event"]["event_type"] == "EVENT_TYPE_LEFTOVER_KILLED")
            .collect();
        assert_eq!(leftovers.len(), 1, "{mode}: {leftovers:?}");
        let event = leftovers[0].to_string();
        assert!(event.contains(&helper.to_string()), "{mode}: {event}");
        assert!(event.contains("sleep 300"), "{mode}: {event}");
        // A clean stop leaves nothing for a third start to find (the
        // journal is kept: only the third run's own events count).
        let _ = read_pid(&pid_file);
        let second_last = second
            .events()
            .iter()
            .filter_map(|e| e["event"]["sequence"].as_u64())
            .max()
            .expect("events");
        second.stop();
        let third = Daemon::start(&[], &config, &socket);
        let third_events = third.events();
        assert!(
            third_events.iter().any(|e| e["event"]["sequence"]
                .as_u64()
                .is_some_and(|s| s > second_last)),
            "{mode}: the third run's events follow the second's"
        );
        assert!(
            !third_events.iter().any(|e| {
                e["event"]["event_type"] == "EVENT_TYPE_LEFTOVER_KILLED"
                    && e["event"]["sequence"]
                        .as_u64()
                        .is_some_and(|s| s > second_last)
            }),
            "{mode}: a clean shutdown leaves no leftovers"
        );
    }
}

/// The live processes and zombies whose parent is `parent`.
fn children_of(parent: u32) -> (Vec<u32>, usize) {
    let mut live = Vec::new();
    let mut zombies = 0;
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.get(1).and_then(|p| p.parse::<u32>().ok()) != Some(parent) {
            continue;
        }
        if fields[0] == "Z" {
            zombies += 1;
        } else if let Ok(pid) = entry.file_name().to_string_lossy().parse() {
            live.push(pid);
        }
    }
    (live, zombies)
}

/// A child that orphans 20 short-lived helpers: sgw adopts each one (child
/// subreaper, or PID 1 of a pid namespace) and reaps it when it exits, so
/// no zombie accumulates.
#[test]
fn adopted_orphans_are_reaped_also_as_pid_1() {
    let as_pid1 = std::process::Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "true"])
        .status()
        .is_ok_and(|s| s.success());
    let mut prefixes: Vec<&[&str]> = vec![&[]];
    if as_pid1 {
        prefixes.push(&["unshare", "--pid", "--fork", "--mount-proc"]);
    } else {
        eprintln!("unshare --pid is refused here (not root?): the PID 1 case is skipped");
    }
    for prefix in prefixes {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("sgw.toml");
        std::fs::write(
            &config,
            r#"
[supervisor]
state_dir = ""

[[child]]
id = "orphaner"
command = ["/bin/sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do (sleep 0.01 &); done; exec sleep 300"]
"#,
        )
        .expect("config");
        let socket = dir.path().join("sgw.sock");
        let daemon = Daemon::start(prefix, &config, &socket);
        let sgw_pid = daemon.sgw_pid;
        // Settled: the child has exec'd `sleep 300` (so every orphan was
        // made), it is the only process left under sgw, and no zombie is.
        // Without reaping, the twenty zombies would stay forever.
        eventually("the orphans to be reaped", || {
            let (live, zombies) = children_of(sgw_pid);
            let child_slept = live.len() == 1
                && std::fs::read(format!("/proc/{}/cmdline", live[0]))
                    .is_ok_and(|c| c.split(|b| *b == 0).take(2).eq([&b"sleep"[..], b"300"]));
            child_slept && zombies == 0
        });
        let mut daemon = daemon;
        daemon.stop();
    }
}

/// kill -9 during a write storm: the next start on the same state
/// directory keeps the journal id, and a client resuming after the last
/// event it saw gets what was stored after it, then an explicit `lost`
/// gap for what the killed run may have published without storing, then
/// the new run's events: no reused sequence, no reset, no silence.
#[test]
fn journal_survives_kill_9_with_an_explicit_lost_gap() {
    use supervisor_gateway::pb;
    use supervisor_gateway::pb::subscribe_events_response::Item;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("sgw.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[supervisor]
state_dir = "{state}"
restart_rate = {{ per_second = 0 }}

[[child]]
id = "storm"
command = ["/bin/sh", "-c", "exit 1"]
restart = "always"
backoff = {{ initial = "1ms", max = "1ms", jitter = 0.0 }}
restart_budget = {{ max = 1000000, window = "1s" }}
"#,
            state = dir.path().join("state").display(),
        ),
    )
    .expect("config");
    let socket = dir.path().join("sgw.sock");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let next = |stream: &mut tonic::Streaming<pb::SubscribeEventsResponse>| {
        runtime.block_on(async {
            tokio::time::timeout(PATIENCE, stream.message())
                .await
                .expect("an item in time")
                .expect("stream ok")
                .expect("stream open")
                .item
                .expect("item")
        })
    };

    let mut first = Daemon::start(&[], &config, &socket);
    // The journal id, and a stream of what `request` asks for.
    let subscribe = |request: pb::SubscribeEventsRequest| {
        runtime.block_on(async {
            let mut client = supervisor_gateway::client::connect(&socket)
                .await
                .expect("connect");
            let info = client
                .control
                .get_info(pb::GetInfoRequest {})
                .await
                .expect("GetInfo")
                .into_inner();
            let stream = client
                .journal
                .subscribe_events(request)
                .await
                .expect("subscribe")
                .into_inner();
            (info.journal_id, stream)
        })
    };
    let (id, mut stream) = subscribe(pb::SubscribeEventsRequest {
        include_backlog: true,
        ..Default::default()
    });
    let mut seen = 0;
    while seen < 300 {
        if let Item::Event(event) = next(&mut stream) {
            seen = event.sequence;
        }
    }
    first.sigkill();
    drop(stream);

    let second = Daemon::start(&[], &config, &socket);
    let (again, mut stream) = subscribe(pb::SubscribeEventsRequest {
        after_sequence: seen,
        journal_id: id.clone(),
        ..Default::default()
    });
    assert_eq!(again, id, "the journal id survives kill -9");
    assert!(matches!(next(&mut stream), Item::Start(s) if s.journal_id == id));
    // Every sequence after `seen` is delivered or covered by a gap, in
    // order, until the new run's first event (the one after the gap).
    let mut expected = seen + 1;
    let mut lost = None;
    loop {
        match next(&mut stream) {
            Item::Event(event) => {
                assert_eq!(event.sequence, expected, "no duplicate, no silent hole");
                expected += 1;
                if lost.is_some() {
                    break;
                }
            }
            Item::Gap(gap) => {
                assert_eq!(gap.first_missing, expected, "{gap:?}");
                assert_eq!(gap.reason, pb::GapReason::Lost as i32, "{gap:?}");
                assert!(lost.is_none(), "one lost range: {gap:?}");
                expected = gap.last_missing + 1;
                lost = Some(gap);
            }
            other => panic!("no reset for the same journal: {other:?}"),
        }
    }
    drop(second);
}
