//! `sgw top` end to end: the real binary in a real terminal (a detached
//! tmux session, 160x45) against a real `sgw serve`, driven with
//! `send-keys` and read with `capture-pane`. What the screen shows is
//! checked against the daemon's own answer (`sgw state --json`).
//!
//! A screen has no event to await: each wait polls `capture-pane` until
//! the expected text appears or [`PATIENCE`] runs out. Each test uses its
//! own tmux server (on a socket in its temporary directory), so tests run
//! in parallel; the server is killed when the test ends, however it ends.
//! tmux must be installed (`scripts/install-test-tools` does it as root):
//! without it these tests fail and say so.

use crate::cli_support;

use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use cli_support::*;
use serde_json::Value;

/// How often the screen is read while waiting for it.
const POLL: Duration = Duration::from_millis(25);
/// What the shell around `sgw top` prints when it ends.
const EXITED: &str = "sgw top exited";

/// A tmux server of its own running `sgw top` in one pane; killed when
/// dropped.
struct Tmux {
    /// The server's socket.
    server: String,
}

impl Tmux {
    /// Starts `sgw top` against `socket`. The pane is kept when the
    /// program exits (`remain-on-exit`), so what the shell around it
    /// printed last can be read.
    fn top(socket: &Path) -> Tmux {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        // A tmux server of its own, its socket (`-S`, like a unique `-L`
        // name) in the test's directory, so it goes with it.
        let server = socket
            .with_file_name(format!(
                "tmux-{}.sock",
                NEXT.fetch_add(1, Ordering::Relaxed)
            ))
            .to_str()
            .expect("utf-8 path")
            .to_owned();
        // The shell around it reports how it ended and whether the
        // terminal settings it found (cooked mode) were given back.
        let program = format!(
            "before=$(stty -g); env -u RUST_LOG -u SGW_STATE_DIR SGW_SOCKET='{}' '{SGW}' top; \
             code=$?; if [ \"$(stty -g)\" = \"$before\" ]; then tty=restored; else tty=changed; fi; \
             echo \"{EXITED} $code, terminal $tty\"",
            socket.to_str().expect("utf-8 socket path")
        );
        let tmux = Tmux { server };
        let output = tmux.run(&[
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            "top",
            "-x",
            "160",
            "-y",
            "45",
            &program,
            ";",
            "set-window-option",
            "-t",
            "top",
            "remain-on-exit",
            "on",
        ]);
        assert!(
            output.status.success(),
            "tmux new-session failed: {}",
            stderr(&output)
        );
        tmux
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-S")
            .arg(&self.server)
            .args(args)
            .env_remove("TMUX")
            .output()
            .unwrap_or_else(|error| {
                panic!(
                    "cannot run tmux ({error}): these tests drive `sgw top` in tmux; \
                     install it (`apt-get install tmux`, or scripts/install-test-tools as root)"
                )
            })
    }

    /// The visible screen, one line per row.
    fn screen(&self) -> String {
        let output = self.run(&["capture-pane", "-p", "-t", "top"]);
        assert!(output.status.success(), "capture-pane: {}", stderr(&output));
        stdout(&output)
    }

    /// The screen and the lines scrolled above it: what the shell printed
    /// after the program ended may have scrolled off.
    fn transcript(&self) -> String {
        let output = self.run(&["capture-pane", "-p", "-S", "-", "-t", "top"]);
        assert!(output.status.success(), "capture-pane: {}", stderr(&output));
        stdout(&output)
    }

    /// Polls the screen until `pred` holds; returns that screen.
    fn until(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        self.poll(what, Self::screen, pred)
    }

    fn poll(&self, what: &str, read: fn(&Self) -> String, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let screen = read(self);
            if pred(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; the screen:\n{screen}"
            );
            std::thread::sleep(POLL);
        }
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "top"];
        args.extend(keys);
        let output = self.run(&args);
        assert!(output.status.success(), "send-keys: {}", stderr(&output));
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

/// The cells of `id`'s row in the children table (ID, STATE, PID, GEN,
/// UPTIME, RESTARTS, CPU, MEM, then the detail's words), without borders
/// and the selection mark.
fn row(screen: &str, id: &str) -> Option<Vec<String>> {
    const STATES: [&str; 8] = [
        "starting",
        "running",
        "backoff",
        "stopping",
        "stopped",
        "paused",
        "quarantined",
        "blocked",
    ];
    screen.lines().find_map(|line| {
        let cells: Vec<String> = line
            .split_whitespace()
            .map(|cell| cell.trim_matches(|c| c == '│' || c == '>'))
            .filter(|cell| !cell.is_empty())
            .map(str::to_owned)
            .collect();
        (cells.len() >= 8 && cells[0] == id && STATES.contains(&cells[1].as_str())).then_some(cells)
    })
}

fn shows(screen: &str, id: &str, state: &str) -> bool {
    row(screen, id).is_some_and(|cells| cells[1] == state)
}

/// The daemon's record of `id`, from `sgw state --json`.
fn record(socket: &Path, id: &str) -> Value {
    state_json(socket.to_str().expect("utf-8"))["children"]
        .as_array()
        .expect("children")
        .iter()
        .find(|c| c["child_id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("no child {id} in sgw state"))
}

fn served() -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(TWO_CHILDREN, &dir.path().join("sgw.sock"));
    (dir, server)
}

/// Both children appear with their states, and the log pane follows the
/// selected child: alpha's line first, then (after `j`) only beta's.
#[test]
fn top_shows_children_and_the_selected_log() {
    let (_dir, server) = served();
    let tmux = Tmux::top(&server.socket);
    let screen = tmux.until("both children running and alpha's log line", |s| {
        shows(s, "alpha", "running") && shows(s, "beta", "running") && s.contains("alpha up")
    });
    let alpha = record(&server.socket, "alpha");
    let cells = row(&screen, "alpha").expect("alpha row");
    assert_eq!(cells[2], alpha["pid"].to_string(), "pid column:\n{screen}");
    assert!(screen.contains("log: alpha"), "{screen}");
    assert!(
        screen.contains("connected") && !screen.contains("disconnected"),
        "{screen}"
    );

    tmux.keys(&["j"]);
    let screen = tmux.until("beta's log line", |s| {
        s.contains("log: beta") && s.contains("beta up")
    });
    assert!(
        !screen.contains("alpha up"),
        "the tail follows the selection only:\n{screen}"
    );
}

/// `p` pauses the selected child (the row says so and the daemon agrees),
/// `r` restarts it with a new process (new pid and generation on screen
/// and in the daemon), and both commands are journaled as sent by
/// `sgw top`.
#[test]
fn top_pause_and_restart_act_on_the_selected_child() {
    let (_dir, server) = served();
    let tmux = Tmux::top(&server.socket);
    tmux.until("alpha running", |s| shows(s, "alpha", "running"));
    let before = record(&server.socket, "alpha");

    tmux.keys(&["p"]);
    let screen = tmux.until("alpha paused", |s| shows(s, "alpha", "paused"));
    assert_eq!(
        record(&server.socket, "alpha")["state"],
        "CHILD_STATE_PAUSED"
    );
    assert_eq!(
        record(&server.socket, "beta")["state"],
        "CHILD_STATE_RUNNING"
    );
    assert!(shows(&screen, "beta", "running"), "{screen}");
    tmux.until("the pause's outcome and its event", |s| {
        s.contains("status: pause alpha:") && s.contains("child_paused")
    });

    tmux.keys(&["r"]);
    let old_generation = before["generation"].as_u64().expect("generation");
    let screen = tmux.until("alpha restarted", |s| {
        row(s, "alpha").is_some_and(|cells| {
            cells[1] == "running" && cells[3] == (old_generation + 1).to_string()
        })
    });
    let after = record(&server.socket, "alpha");
    let cells = row(&screen, "alpha").expect("alpha row");
    assert_eq!(after["generation"], old_generation + 1);
    assert_ne!(after["pid"], before["pid"]);
    assert_eq!(cells[2], after["pid"].to_string(), "{screen}");
    tmux.until("the restart's outcome", |s| {
        s.contains("status: restart alpha:")
    });

    let events = sgw(&[
        "events",
        "--json",
        "--child",
        "alpha",
        "--socket",
        server.socket(),
    ]);
    let accepted: Vec<Value> = json_lines(&events)
        .into_iter()
        .filter(|e| e["event"]["event_type"] == "EVENT_TYPE_COMMAND_ACCEPTED")
        .map(|e| e["event"]["command_accepted"].clone())
        .collect();
    assert_eq!(accepted.len(), 2, "{accepted:?}");
    for command in &accepted {
        assert_eq!(command["reason"], "sgw top", "{command}");
        assert!(
            command["requested_by"]
                .as_str()
                .is_some_and(|by| by.starts_with("sgw top")),
            "{command}"
        );
    }
}

/// `q`, Esc and Ctrl-C each end the program with status 0 and leave the
/// terminal as it was (raw mode off).
#[test]
fn top_quits_on_q_esc_and_ctrl_c() {
    let (_dir, server) = served();
    for key in ["q", "Escape", "C-c"] {
        let tmux = Tmux::top(&server.socket);
        tmux.until("the table", |s| shows(s, "alpha", "running"));
        assert!(!tmux.transcript().contains(EXITED), "ended before {key}");
        tmux.keys(&[key]);
        let screen = tmux.poll("the program's end", Tmux::transcript, |s| {
            s.contains(EXITED)
        });
        assert!(
            screen.contains(&format!("{EXITED} 0, terminal restored")),
            "{key}:\n{screen}"
        );
    }
}

/// The server going away shows as "disconnected" (the program keeps
/// running); a server back on the socket is picked up again.
#[test]
fn top_reconnects_after_the_server_restarts() {
    let (dir, mut server) = served();
    let tmux = Tmux::top(&server.socket);
    tmux.until("alpha running", |s| shows(s, "alpha", "running"));
    let old_pid = record(&server.socket, "alpha")["pid"].to_string();
    server.stop();
    tmux.until("disconnected", |s| s.contains("disconnected"));
    assert!(!tmux.transcript().contains(EXITED), "sgw top must not exit");
    let socket = dir.path().join("sgw.sock");
    let _server = Server::start(TWO_CHILDREN, &socket);
    let screen = tmux.until("reconnected to the new server's alpha", |s| {
        !s.contains("disconnected")
            && row(s, "alpha").is_some_and(|cells| cells[1] == "running" && cells[2] != old_pid)
    });
    let cells = row(&screen, "alpha").expect("alpha row");
    assert_eq!(
        record(&socket, "alpha")["pid"].to_string(),
        cells[2],
        "{screen}"
    );
}

/// Without a server, `sgw top` says so and exits 3 before touching the
/// terminal, as every client command does.
#[test]
fn top_without_a_server_exits_3() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("none.sock");
    let output = sgw(&["top", "--socket", socket.to_str().expect("utf-8")]);
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("no socket at"),
        "{}",
        stderr(&output)
    );
}
