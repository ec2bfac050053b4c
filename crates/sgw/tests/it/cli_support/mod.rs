//! Helpers for the black-box tests of the `sgw` binary: a real `sgw serve`
//! on a private socket (ready when it prints its `serving target` line),
//! runs of client subcommands, and line readers for long-running clients.
//! Nothing here sleeps to synchronize: every wait is on a line or an exit,
//! bounded by [`PATIENCE`].

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Upper bound for one wait: generous for a loaded CI machine, small enough
/// that a hang fails fast.
pub const PATIENCE: Duration = Duration::from_secs(20);

pub const SGW: &str = env!("CARGO_BIN_EXE_sgw");

/// Two steady `/bin/sh` children that print one line and wait.
pub const TWO_CHILDREN: &str = r#"
[gateway]
target_id = "cli-test"

[security.add_child]
allowed_commands = ["/bin/sh"]

[[child]]
id = "alpha"
command = ["/bin/sh", "-c", "echo alpha up; exec sleep 1000"]
stop_timeout = "2s"

[[child]]
id = "beta"
command = ["/bin/sh", "-c", "echo beta up >&2; exec sleep 1000"]
stop_timeout = "2s"
"#;

/// An `sgw` command with a clean environment (no inherited `SGW_SOCKET`
/// or `SGW_STATE_DIR`).
pub fn sgw_command(args: &[&str]) -> Command {
    let mut command = Command::new(SGW);
    command
        .args(args)
        .env_remove("SGW_SOCKET")
        .env_remove("SGW_STATE_DIR")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    command
}

/// Runs `sgw ARGS` to completion (bounded by [`PATIENCE`]).
pub fn sgw(args: &[&str]) -> Output {
    let child = sgw_command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sgw");
    let pid = child.id();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(PATIENCE) {
        Ok(output) => output.expect("sgw output"),
        Err(_) => {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            panic!("`sgw {}` did not finish in {PATIENCE:?}", args.join(" "));
        }
    }
}

/// Fails with both output streams unless `sgw` exited with `code`.
#[track_caller]
pub fn assert_exit(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        stdout(output),
        stderr(output)
    );
}

/// `sgw state --json` against `socket`: the one object it prints.
pub fn state_json(socket: &str) -> serde_json::Value {
    let output = sgw(&["state", "--json", "--socket", socket]);
    assert_exit(&output, 0);
    json_lines(&output).remove(0)
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Every stdout line of a `--json` run, parsed.
pub fn json_lines(output: &Output) -> Vec<serde_json::Value> {
    stdout(output)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

/// Lines of a pipe, read by a thread and handed over through a channel.
pub struct Lines {
    rx: Receiver<String>,
    pub seen: Vec<String>,
}

impl Lines {
    pub fn new(pipe: impl Read + Send + 'static) -> Self {
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            rx,
            seen: Vec::new(),
        }
    }

    /// Reads until a line matches `pred` (returned); every line read is
    /// kept in `seen`. Panics after [`PATIENCE`] or at end of stream.
    pub fn until(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "timed out waiting for {what}; read so far:\n{}",
                        self.seen.join("\n")
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!(
                        "stream ended before {what}; read so far:\n{}",
                        self.seen.join("\n")
                    )
                }
            }
        }
    }

    /// Whatever has arrived already, without waiting.
    pub fn drain(&mut self) {
        while let Ok(line) = self.rx.try_recv() {
            self.seen.push(line);
        }
    }
}

/// A spawned `sgw serve` on `socket`, stopped (SIGTERM, then SIGKILL if it
/// hangs) when dropped.
pub struct Server {
    pid: u32,
    exited: Receiver<ExitStatus>,
    status: Option<ExitStatus>,
    pub socket: PathBuf,
    pub stdout: Lines,
}

impl Server {
    /// Writes `config` next to `socket` and serves it; returns once the
    /// server has printed its readiness line (the socket is listening).
    pub fn start(config: &str, socket: &Path) -> Server {
        let dir = socket.parent().expect("socket has a directory");
        let name = socket.file_name().expect("socket name").to_string_lossy();
        let config_path = dir.join(format!("{name}.toml"));
        std::fs::write(&config_path, config).expect("write config");
        let stderr_path = dir.join(format!("{name}.stderr"));
        let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
        let socket_arg = socket.to_str().expect("utf-8 path");
        let mut child: Child = sgw_command(&[
            "serve",
            "--config",
            config_path.to_str().expect("utf-8 path"),
            "--socket",
            socket_arg,
        ])
        // Its own state directory beside the socket: parallel servers of
        // one target must not share (and lock) the default one.
        .env("SGW_STATE_DIR", dir.join(format!("{name}.state")))
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("spawn sgw serve");
        let pid = child.id();
        let pipe = child.stdout.take().expect("stdout pipe");
        let (tx, exited) = channel();
        std::thread::spawn(move || {
            if let Ok(status) = child.wait() {
                let _ = tx.send(status);
            }
        });
        let mut server = Server {
            pid,
            exited,
            status: None,
            socket: socket.to_path_buf(),
            stdout: Lines::new(pipe),
        };
        server.stdout.until("the `sgw: serving target` line", |l| {
            l.starts_with("sgw: serving target")
        });
        server
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn socket(&self) -> &str {
        self.socket.to_str().expect("utf-8 path")
    }

    /// Waits for the process to exit on its own.
    pub fn wait(&mut self) -> ExitStatus {
        if let Some(status) = self.status {
            return status;
        }
        let status = self
            .exited
            .recv_timeout(PATIENCE)
            .expect("sgw serve exited in time");
        self.status = Some(status);
        status
    }

    /// Whether the process has exited (without waiting).
    fn reaped(&mut self) -> bool {
        if self.status.is_none()
            && let Ok(status) = self.exited.try_recv()
        {
            self.status = Some(status);
        }
        self.status.is_some()
    }

    /// SIGTERM and wait: the server's graceful shutdown.
    pub fn stop(&mut self) -> ExitStatus {
        if !self.reaped() {
            let _ = kill(Pid::from_raw(self.pid as i32), Signal::SIGTERM);
        }
        self.wait()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.reaped() {
            return;
        }
        let _ = kill(Pid::from_raw(self.pid as i32), Signal::SIGTERM);
        if self.exited.recv_timeout(PATIENCE).is_err() {
            let _ = kill(Pid::from_raw(self.pid as i32), Signal::SIGKILL);
            let _ = self.exited.recv_timeout(PATIENCE);
        }
    }
}

/// A long-running client (`events --follow`) whose lines are read as they
/// come; killed when dropped.
pub struct Running {
    child: Child,
    pub stdout: Lines,
    pub stderr: Lines,
}

impl Running {
    pub fn spawn(args: &[&str]) -> Running {
        let mut child = sgw_command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sgw");
        let stdout = Lines::new(child.stdout.take().expect("stdout"));
        let stderr = Lines::new(child.stderr.take().expect("stderr"));
        Running {
            child,
            stdout,
            stderr,
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
