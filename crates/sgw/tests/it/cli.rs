//! The `sgw` client CLI end to end: the real binary against a real
//! `sgw serve` on a private socket, checking exit codes (0 ok, 1 the call
//! failed, 2 usage or config error, 3 cannot connect) and output, human and
//! `--json`.

use crate::cli_support;

use std::process::Output;

use cli_support::*;
use serde_json::Value;

/// A server with [`TWO_CHILDREN`] in its own directory; the server is
/// stopped before the directory goes.
struct Env {
    server: Server,
    dir: tempfile::TempDir,
}

impl Env {
    fn start() -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = Server::start(TWO_CHILDREN, &dir.path().join("sgw.sock"));
        Env { server, dir }
    }

    /// `sgw ARGS --socket <this server>`.
    fn sgw(&self, args: &[&str]) -> Output {
        let mut all = args.to_vec();
        all.extend(["--socket", self.server.socket()]);
        sgw(&all)
    }

    fn json(&self, args: &[&str]) -> Vec<Value> {
        let mut all = args.to_vec();
        all.push("--json");
        let output = self.sgw(&all);
        assert_exit(&output, 0);
        json_lines(&output)
    }

    fn file(&self, name: &str, text: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write file");
        path.display().to_string()
    }
}

fn uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// `info`, `state` and `child` exit 0 with aligned text by default and one
/// JSON object with the proto's field names under `--json`; `SGW_SOCKET`
/// is honoured when `--socket` is absent.
#[test]
fn read_commands_print_text_and_json() {
    let env = Env::start();

    let info = env.sgw(&["info"]);
    assert_exit(&info, 0);
    let text = stdout(&info);
    assert!(
        text.ends_with('\n') && !text.ends_with("\n\n"),
        "info ends with exactly one newline: {text:?}"
    );
    assert!(text.contains("target       cli-test (cli-test)"), "{text}");
    assert!(
        text.contains(&format!("you are      uid {}", uid())),
        "{text}"
    );
    // The containment in force: which one depends on the host.
    assert!(
        text.contains("containment  cgroup (") || text.contains("containment  subreaper ("),
        "{text}"
    );
    assert!(text.contains("remove_child (needs --yes)"), "{text}");
    let info = env.json(&["info"]);
    let journal = info[0]["journal_id"].as_str().expect("a journal id");
    assert_eq!(journal.len(), 32, "{journal}");
    assert!(text.contains(&format!("journal      {journal}")), "{text}");
    assert_eq!(info.len(), 1);
    assert_eq!(info[0]["target_id"], "cli-test");
    assert_eq!(info[0]["protocol_version"], "supervisor.gateway.v1");
    assert_eq!(info[0]["caller"]["uid"], uid());
    assert_eq!(info[0]["caller"]["pid"].as_u64().map(|p| p > 0), Some(true));
    let mode = info[0]["containment"]["mode"].as_str().expect("a mode");
    assert!(
        ["CONTAINMENT_MODE_CGROUP", "CONTAINMENT_MODE_SUBREAPER"].contains(&mode),
        "{mode}"
    );

    let state = sgw_command(&["state"])
        .env("SGW_SOCKET", env.server.socket())
        .output()
        .expect("run sgw state");
    assert_exit(&state, 0);
    let text = stdout(&state);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    let header = lines[0];
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        [
            "ID", "STATE", "PID", "CPU", "MEM", "GEN", "RESTARTS", "LAST", "EXIT", "DETAIL"
        ]
    );
    assert!(lines[1].starts_with("alpha ") && lines[2].starts_with("beta "));
    // Aligned: every row's state starts under STATE.
    let column = header.find("STATE").expect("STATE column");
    for row in &lines[1..] {
        let cell = &row[column..];
        assert!(
            cell.starts_with("starting") || cell.starts_with("running"),
            "{text}"
        );
    }
    let state = env.json(&["state"]);
    assert_eq!(state.len(), 1);
    let children = state[0]["children"].as_array().expect("children");
    assert_eq!(children[0]["child_id"], "alpha");
    assert_eq!(children[1]["child_id"], "beta");
    assert!(state[0]["last_event_sequence"].as_u64() > Some(0));

    let child = env.sgw(&["child", "alpha"]);
    assert_exit(&child, 0);
    let text = stdout(&child);
    assert!(text.starts_with("id           alpha\n"), "{text}");
    assert!(
        text.contains("command      /bin/sh -c 'echo alpha up; exec sleep 1000'"),
        "{text}"
    );
    let child = env.json(&["child", "alpha"]);
    assert_eq!(child[0]["child"]["child_id"], "alpha");
    assert_eq!(child[0]["child"]["spec"]["command"][0], "/bin/sh");
    assert_eq!(child[0]["child"]["spec"]["stop_timeout"], "2s");
}

/// A child with a process shows what it uses: CPU and MEM cells in
/// `state` (`-` without a process), cpu time, memory, processes and OOM
/// kills in `child`, and a `usage` object under `--json`.
#[test]
fn state_and_child_show_resource_usage() {
    let env = Env::start();
    {
        // alpha has a process once its first line is captured.
        let mut follow = Running::spawn(&[
            "logs",
            "--follow",
            "--child",
            "alpha",
            "--socket",
            env.server.socket(),
        ]);
        follow
            .stdout
            .until("alpha's line", |l| l.ends_with("alpha[out] alpha up"));
    }
    assert_exit(&env.sgw(&["pause", "beta"]), 0);

    let text = stdout(&env.sgw(&["state"]));
    let lines: Vec<&str> = text.lines().collect();
    let header = lines[0];
    let (cpu, mem) = (
        header.find("CPU").expect("CPU column"),
        header.find("MEM").expect("MEM column"),
    );
    let cell = |row: &str, at: usize| {
        row[at..]
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    let alpha = lines
        .iter()
        .find(|l| l.starts_with("alpha "))
        .expect("alpha");
    let beta = lines.iter().find(|l| l.starts_with("beta ")).expect("beta");
    assert!(
        cell(alpha, cpu).ends_with('s') && cell(alpha, mem).ends_with(['K', 'M', 'G']),
        "{text}"
    );
    assert_eq!(
        (cell(beta, cpu), cell(beta, mem)),
        ("-".into(), "-".into()),
        "{text}"
    );

    let text = stdout(&env.sgw(&["child", "alpha"]));
    for row in ["cpu time", "memory", "processes", "oom kills"] {
        assert!(text.contains(&format!("\n{row} ")), "{row}: {text}");
    }
    let child = env.json(&["child", "alpha"]);
    let usage = &child[0]["child"]["usage"];
    assert!(usage["processes"].as_u64() >= Some(1), "{usage}");
    assert!(usage["memory_bytes"].as_u64() > Some(0), "{usage}");
    assert!(usage["cpu_time"].is_string(), "{usage}");
    let paused = env.json(&["child", "beta"]);
    assert!(paused[0]["child"]["usage"].is_null(), "{paused:?}");
}

/// pause, resume, quarantine and restart exit 0 and report the outcome and
/// the state after it; `--reason` (default "sgw cli") and `--request-id`
/// reach the journal's command events.
#[test]
fn commands_report_outcomes_and_carry_reason_and_request_id() {
    let env = Env::start();

    let pause = env.sgw(&["pause", "alpha"]);
    assert_exit(&pause, 0);
    let text = stdout(&pause);
    assert!(
        text.starts_with("alpha: paused; now paused [command "),
        "{text}"
    );
    let again = env.json(&["pause", "alpha"]);
    assert_eq!(again[0]["result"]["command"], "COMMAND_TYPE_PAUSE_CHILD");
    assert_eq!(again[0]["result"]["child"]["state"], "CHILD_STATE_PAUSED");

    let resume = env.json(&["resume", "alpha"]);
    assert_eq!(resume[0]["result"]["command"], "COMMAND_TYPE_RESUME_CHILD");
    assert_ne!(resume[0]["result"]["child"]["state"], "CHILD_STATE_PAUSED");

    let quarantine = env.sgw(&["quarantine", "beta"]);
    assert_exit(&quarantine, 0);
    assert!(stdout(&quarantine).contains("; now quarantined [command "));

    let restart = env.json(&[
        "restart",
        "beta",
        "--reason",
        "cli test",
        "--request-id",
        "req-42",
    ]);
    let result = &restart[0]["result"];
    assert_eq!(result["command"], "COMMAND_TYPE_RESTART_CHILD");
    assert_eq!(result["child"]["generation"], 2);
    assert!(
        result["command_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );

    let accepted: Vec<Value> = env
        .json(&["events", "--child", "beta"])
        .into_iter()
        .filter_map(|line| line["event"].get("command_accepted").cloned())
        .collect();
    assert_eq!(accepted.len(), 2, "{accepted:?}");
    assert_eq!(accepted[0]["command"], "COMMAND_TYPE_QUARANTINE_CHILD");
    assert_eq!(accepted[0]["reason"], "sgw cli");
    assert_eq!(accepted[1]["reason"], "cli test");
    assert_eq!(accepted[1]["request_id"], "req-42");
    assert!(
        accepted[1]["requested_by"]
            .as_str()
            .is_some_and(|by| by.starts_with(&format!("uid:{}", uid()))),
        "{accepted:?}"
    );
}

/// An unknown child is exit 1 with the gRPC code, the server's message
/// listing the known ids, and the ErrorInfo reason; with `--json` the same
/// facts come as one JSON object on stderr.
#[test]
fn unknown_child_is_exit_1_listing_known_children() {
    let env = Env::start();
    let expected =
        "NOT_FOUND: no child named \"nope\" (known children: alpha, beta) [child_not_found]\n";
    for args in [["child", "nope"], ["restart", "nope"], ["pause", "nope"]] {
        let output = env.sgw(&args);
        assert_exit(&output, 1);
        assert_eq!(stderr(&output), expected);
        assert_eq!(stdout(&output), "");
    }
    let output = env.sgw(&["resume", "nope", "--json"]);
    assert_exit(&output, 1);
    let error: Value = serde_json::from_str(stderr(&output).trim()).expect("one JSON object");
    assert_eq!(error["error"]["code"], "NOT_FOUND");
    assert_eq!(error["error"]["reason"], "child_not_found");
    assert_eq!(error["error"]["domain"], "cli-test");
    assert!(
        error["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("alpha, beta"))
    );
}

/// remove, add and shutdown without `--yes` are usage errors (exit 2)
/// decided before connecting: with no server they still exit 2, not 3,
/// and with one nothing changes.
#[test]
fn destructive_commands_without_yes_are_usage_errors_before_any_call() {
    let dir = tempfile::tempdir().expect("tempdir");
    let absent = dir.path().join("absent.sock");
    let absent = absent.to_str().expect("utf-8");
    let spec = dir.path().join("gamma.toml");
    std::fs::write(&spec, "[[child]]\nid = \"gamma\"\ncommand = [\"true\"]\n").expect("write");
    let spec = spec.to_str().expect("utf-8");
    for args in [vec!["remove", "alpha"], vec!["add", spec], vec!["shutdown"]] {
        let mut with_socket = args.clone();
        with_socket.extend(["--socket", absent]);
        let output = sgw(&with_socket);
        assert_exit(&output, 2);
        assert!(
            stderr(&output).contains("pass --yes to confirm"),
            "{}",
            stderr(&output)
        );
    }

    let env = Env::start();
    assert_exit(&env.sgw(&["remove", "alpha"]), 2);
    assert_exit(&env.sgw(&["add", spec]), 2);
    assert_exit(&env.sgw(&["shutdown"]), 2);
    let state = env.json(&["state"]);
    let ids: Vec<&Value> = state[0]["children"]
        .as_array()
        .expect("children")
        .iter()
        .map(|c| &c["child_id"])
        .collect();
    assert_eq!(ids, ["alpha", "beta"]);
}

/// `add FILE --yes` starts a child from a `[[child]]` table; a file with an
/// unknown key is exit 2 naming file, line and key (nothing sent);
/// `remove ID --yes` forgets the child.
#[test]
fn add_and_remove_with_yes() {
    let env = Env::start();
    let bad = env.file(
        "bad.toml",
        "[[child]]\nid = \"gamma\"\ncommand = [\"true\"]\nrestrat = \"always\"\n",
    );
    let output = env.sgw(&["add", &bad, "--yes"]);
    assert_exit(&output, 2);
    let text = stderr(&output);
    assert!(text.starts_with(&format!("error: {bad}:4:")), "{text}");
    assert!(text.contains("restrat"), "{text}");

    let good = env.file(
        "gamma.toml",
        "[[child]]\nid = \"gamma\"\ncommand = [\"/bin/sh\", \"-c\", \"exec sleep 1000\"]\nrestart = \"always\"\ntags = [\"added\"]\n",
    );
    let added = env.json(&["add", &good, "--yes", "--reason", "try gamma"]);
    let child = &added[0]["result"]["child"];
    assert_eq!(added[0]["result"]["command"], "COMMAND_TYPE_ADD_CHILD");
    assert_eq!(child["child_id"], "gamma");
    assert_eq!(child["spec"]["restart"], "RESTART_POLICY_ALWAYS");
    assert_eq!(child["tags"][0], "added");

    let again = env.sgw(&["add", &good, "--yes"]);
    assert_exit(&again, 1);
    assert!(
        stderr(&again).starts_with("ALREADY_EXISTS: ")
            && stderr(&again).contains("[child_already_exists]"),
        "{}",
        stderr(&again)
    );

    let removed = env.sgw(&["remove", "gamma", "--yes"]);
    assert_exit(&removed, 0);
    assert!(
        stdout(&removed).starts_with("gamma: "),
        "{}",
        stdout(&removed)
    );
    let gone = env.sgw(&["child", "gamma"]);
    assert_exit(&gone, 1);
    assert!(stderr(&gone).starts_with("NOT_FOUND: "));
}

/// With nothing at the socket path every client command exits 3 and says
/// what to do; a stale socket file (nobody listening) is exit 3 too.
#[test]
fn no_server_is_exit_3_with_advice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let absent = dir.path().join("sgw.sock");
    let absent = absent.to_str().expect("utf-8");
    let advice = format!(
        "error: no socket at {absent} — is `sgw serve` running? set --socket or SGW_SOCKET\n"
    );
    for args in [
        vec!["info"],
        vec!["state"],
        vec!["child", "alpha"],
        vec!["restart", "alpha"],
        vec!["events", "--follow"],
        vec!["logs"],
    ] {
        let mut with_socket = args.clone();
        with_socket.extend(["--socket", absent]);
        let output = sgw(&with_socket);
        assert_exit(&output, 3);
        assert_eq!(stderr(&output), advice, "{args:?}");
    }
    let output = sgw_command(&["info"])
        .env("SGW_SOCKET", absent)
        .output()
        .expect("run sgw");
    assert_exit(&output, 3);
    assert_eq!(stderr(&output), advice);

    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).expect("bind"));
    let output = sgw(&["state", "--socket", stale.to_str().expect("utf-8")]);
    assert_exit(&output, 3);
    assert!(
        stderr(&output).contains("nothing is listening"),
        "{}",
        stderr(&output)
    );
}

/// `check-config` on a bad file is exit 2 naming the file, line and key;
/// a good one is exit 0.
#[test]
fn check_config_names_file_line_and_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[[child]]\nid = \"a\"\ncommand = [\"true\"]\nrestart_budgit = { max = 1 }\n",
    )
    .expect("write");
    let output = sgw(&["check-config", bad.to_str().expect("utf-8")]);
    assert_exit(&output, 2);
    let text = stderr(&output);
    assert!(
        text.starts_with(&format!("error: {}:4:", bad.display())),
        "{text}"
    );
    assert!(text.contains("restart_budgit"), "{text}");

    let good = dir.path().join("good.toml");
    std::fs::write(&good, TWO_CHILDREN).expect("write");
    let output = sgw(&["check-config", good.to_str().expect("utf-8")]);
    assert_exit(&output, 0);
    assert!(stdout(&output).contains("ok (2 children"));
}

/// `check-config` resolves a relative `[gateway] socket` against the
/// directory it runs in, as `serve` would, and shows the absolute path a
/// server started there binds and announces.
#[test]
fn check_config_shows_the_resolved_socket() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().canonicalize().expect("canonical tempdir");
    std::fs::write(
        root.join("sgw.toml"),
        "[gateway]\nsocket = \"ipc/sgw.sock\"\n",
    )
    .expect("write");
    let output = sgw_command(&["check-config", "sgw.toml"])
        .current_dir(&root)
        .output()
        .expect("run check-config");
    assert_exit(&output, 0);
    let text = stdout(&output);
    assert!(
        text.trim_end()
            .ends_with(&format!("socket {})", root.join("ipc/sgw.sock").display())),
        "{text}"
    );
}

/// `completions bash|zsh|fish` print a non-empty script naming the
/// subcommands; an unknown shell is a usage error.
#[test]
fn completions_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let output = sgw(&["completions", shell]);
        assert_exit(&output, 0);
        let script = stdout(&output);
        assert!(
            script.contains("quarantine") && script.contains("events"),
            "{shell}"
        );
    }
    assert_exit(&sgw(&["completions", "tcsh"]), 2);
    assert_exit(&sgw(&["frobnicate"]), 2);
}

/// `events` prints the retained history once, in strictly increasing
/// sequence order, and exits; `--after` starts later, `--child` filters.
/// `logs` prints the last N lines with time, child and stream.
#[test]
fn events_and_logs_print_history_and_exit() {
    let env = Env::start();
    {
        // Both children's first lines are captured before we look back.
        let mut follow = Running::spawn(&[
            "logs",
            "--follow",
            "--lines",
            "100",
            "--socket",
            env.server.socket(),
        ]);
        let (alpha, beta) = ("alpha[out] alpha up", "beta[err] beta up");
        let first = follow.stdout.until("a child's line", |l| {
            l.ends_with(alpha) || l.ends_with(beta)
        });
        let other = if first.ends_with(alpha) { beta } else { alpha };
        follow
            .stdout
            .until("the other child's line", |l| l.ends_with(other));
    }
    assert_exit(&env.sgw(&["pause", "alpha"]), 0);

    let events = env.json(&["events"]);
    let sequences: Vec<u64> = events
        .iter()
        .map(|e| e["event"]["sequence"].as_u64().expect("an event"))
        .collect();
    assert_eq!(sequences.first(), Some(&1));
    assert!(
        sequences.windows(2).all(|w| w[1] == w[0] + 1),
        "{sequences:?}"
    );
    let last = *sequences.last().expect("events");
    assert!(
        events
            .iter()
            .any(|e| e["event"]["event_type"] == "EVENT_TYPE_CHILD_PAUSED")
    );

    let later = env.json(&["events", "--after", "3"]);
    assert_eq!(later[0]["event"]["sequence"], 4);
    assert!(
        env.json(&["events", "--after", &last.to_string()])
            .is_empty()
    );
    let alpha = env.json(&["events", "--child", "alpha"]);
    assert!(!alpha.is_empty() && alpha.iter().all(|e| e["event"]["child_id"] == "alpha"));

    let text = env.sgw(&["events", "--child", "alpha"]);
    assert_exit(&text, 0);
    let first = stdout(&text).lines().next().unwrap_or_default().to_owned();
    // 2025-01-31T12:00:00.123Z      1 alpha        added
    assert_eq!(
        first.len(),
        "2025-01-31T12:00:00.123Z".len() + 26,
        "{first}"
    );
    assert!(first.ends_with(" alpha        added"), "{first}");

    let logs = env.sgw(&["logs", "--lines", "10"]);
    assert_exit(&logs, 0);
    let text = stdout(&logs);
    assert!(
        text.lines().any(|l| l.ends_with("Z alpha[out] alpha up")),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.ends_with("Z beta[err] beta up")),
        "{text}"
    );
    let beta = env.json(&["logs", "--child", "beta", "--lines", "1"]);
    assert_eq!(beta.len(), 1);
    assert_eq!(beta[0]["line"]["child_id"], "beta");
    assert_eq!(beta[0]["line"]["stream"], "LOG_STREAM_STDERR");
    assert_eq!(beta[0]["line"]["text"], "beta up");
}

/// `shutdown --yes` exits 0 with the outcome, and the server then exits 0.
#[test]
fn shutdown_with_yes_ends_the_server() {
    let mut env = Env::start();
    let output = env.sgw(&["shutdown", "--yes"]);
    assert_exit(&output, 0);
    assert!(
        stdout(&output).starts_with("shutdown_tree: "),
        "{}",
        stdout(&output)
    );
    assert!(env.server.wait().success());
    assert_exit(&env.sgw(&["info"]), 3);
}

/// A child whose program is missing (quarantined after one restart), and a
/// dependent of an `autostart = false` child with a short `start_timeout`.
const FAILING_TREE: &str = r#"
[gateway]
target_id = "cli-lifecycle"

[[child]]
id = "ghost"
command = ["/nonexistent/sgw-ghost", "--serve"]
backoff = { initial = "10ms", max = "50ms" }
restart_budget = { max = 1, window = "60s" }

[[child]]
id = "db"
command = ["/bin/sh", "-c", "exec sleep 1000"]
autostart = false
stop_timeout = "2s"

[[child]]
id = "web"
command = ["/bin/sh", "-c", "exec sleep 1000"]
depends_on = ["db"]
start_timeout = "200ms"
stop_timeout = "2s"
"#;

/// Guards issue 10 items 6 and 7 end to end (server, gRPC, CLI): `state`
/// and `child`, human and `--json`, show a spawn failure as `exec: PATH:
/// why` with no exit code (today: "exit code 127"), keep it in the
/// quarantine reason, and show a dependent of an `autostart = false` child
/// as `blocked`, naming the dependency and why (today: `starting` forever).
#[test]
fn state_and_child_show_spawn_failures_and_blocked_dependents() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(FAILING_TREE, &dir.path().join("sgw.sock"));
    let socket = server.socket();
    {
        let mut follow = Running::spawn(&["events", "--follow", "--socket", socket]);
        let quarantined = |l: &str| l.contains(" ghost ") && l.contains(" quarantined: ");
        let blocked = |l: &str| l.contains(" web ") && l.contains(" blocked after ");
        let first = follow
            .stdout
            .until("ghost quarantined or web blocked", |l| {
                quarantined(l) || blocked(l)
            });
        let second = if quarantined(&first) {
            follow.stdout.until("web blocked", blocked)
        } else {
            follow.stdout.until("ghost quarantined", quarantined)
        };
        let text = format!("{first}\n{second}");
        assert!(
            text.contains(
                "quarantined: restart budget exhausted (1 restarts within 1m) after: exec: /nonexistent/sgw-ghost: No such file or directory"
            ),
            "{text}"
        );
        // The event says how long it actually waited (at least 200ms).
        assert!(
            text.contains(": waiting for db: autostart = false"),
            "{text}"
        );
        assert!(
            follow.stdout.seen.iter().any(|l| l.contains(" web ")
                && l.ends_with(
                    "dependency db will not become running by itself: autostart = false"
                )),
            "{:?}",
            follow.stdout.seen
        );
    }

    let state = sgw(&["state", "--socket", socket]);
    assert_exit(&state, 0);
    let text = stdout(&state);
    let row = |id: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{id} ")))
            .unwrap_or_else(|| panic!("no row for {id}: {text}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert!(!text.contains("127"), "{text}");
    assert!(
        row("ghost").starts_with("ghost quarantined - - - 2 1 - restart budget exhausted"),
        "{text}"
    );
    assert!(
        row("ghost").ends_with("after: exec: /nonexistent/sgw-ghost: No such file or directory"),
        "{text}"
    );
    assert_eq!(
        row("web"),
        "web blocked - - - 0 0 - blocked after 200ms: waiting for db: autostart = false"
    );

    // `sgw child` rows with their alignment collapsed to one space.
    let rows = |child: &str| -> Vec<String> {
        let output = sgw(&["child", child, "--socket", socket]);
        assert_exit(&output, 0);
        stdout(&output)
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect()
    };
    let ghost = rows("ghost");
    assert!(ghost.contains(&"last exit -".to_owned()), "{ghost:?}");
    assert!(
        ghost.contains(
            &"last failure exec: /nonexistent/sgw-ghost: No such file or directory".to_owned()
        ),
        "{ghost:?}"
    );
    let ghost = json_lines(&sgw(&["child", "ghost", "--json", "--socket", socket]));
    let record = &ghost[0]["child"];
    assert_eq!(record["state"], "CHILD_STATE_QUARANTINED");
    assert_eq!(record["last_exit"], Value::Null);
    assert_eq!(record["last_failure"]["exit"], Value::Null);
    let spawn = &record["last_failure"]["spawn"];
    assert_eq!(spawn["stage"], "SPAWN_STAGE_EXEC");
    assert_eq!(spawn["path"], "/nonexistent/sgw-ghost");
    assert_eq!(spawn["message"], "No such file or directory");

    let web = json_lines(&sgw(&["child", "web", "--json", "--socket", socket]));
    let record = &web[0]["child"];
    assert_eq!(record["state"], "CHILD_STATE_BLOCKED");
    assert_eq!(
        record["waiting_for"],
        serde_json::json!([{"child_id": "db", "reason": "autostart = false", "can_become_ready": false}])
    );
    assert_eq!(record["spec"]["start_timeout"], "0.200s");
    let web = rows("web");
    for row in [
        "state blocked",
        "waiting for db: autostart = false",
        "start timeout 200ms",
    ] {
        assert!(web.contains(&row.to_owned()), "{row}: {web:?}");
    }
}

/// Guards issue 10 item 7's config checks: a dependency on an `autostart =
/// false` child is a warning naming file, line and key (exit 0, the file is
/// usable); a backoff `initial` under 1 ms is refused like any other error
/// (exit 2, file:line:key). Today the first passes silently and the second
/// (500us) is accepted.
#[test]
fn check_config_warns_on_autostart_dependency_and_refuses_sub_millisecond_backoff() {
    let dir = tempfile::tempdir().expect("tempdir");
    let warned = dir.path().join("warned.toml");
    std::fs::write(
        &warned,
        "[[child]]\nid = \"db\"\ncommand = [\"true\"]\nautostart = false\n\n[[child]]\nid = \"web\"\ncommand = [\"true\"]\ndepends_on = [\"db\"]\n",
    )
    .expect("write");
    let output = sgw(&["check-config", warned.to_str().expect("utf-8")]);
    assert_exit(&output, 0);
    let text = stderr(&output);
    assert!(
        text.starts_with(&format!(
            "warning: {}:9:1: [[child]] \"web\": depends_on: db has autostart = false",
            warned.display()
        )),
        "{text}"
    );
    assert!(stdout(&output).contains("ok (2 children"));

    let fast = dir.path().join("fast.toml");
    std::fs::write(
        &fast,
        "[[child]]\nid = \"a\"\ncommand = [\"true\"]\nrestart = \"always\"\nbackoff = { initial = \"500us\", max = \"1s\" }\n",
    )
    .expect("write");
    let output = sgw(&["check-config", fast.to_str().expect("utf-8")]);
    assert_exit(&output, 2);
    let text = stderr(&output);
    assert!(
        text.starts_with(&format!(
            "error: {}:5:1: [[child]] \"a\": backoff.initial: must be at least 1ms",
            fast.display()
        )),
        "{text}"
    );
}
