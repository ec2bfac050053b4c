//! One `sgw serve` under test: a generated config using only keys every
//! version accepts, readiness from its `try:` line, killed when dropped.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::Error;

/// What differs between the scenarios' servers.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub max_connections: usize,
    /// Socket mode 0666 in a 0755 directory, so another uid can connect.
    pub world: bool,
    /// stderr is a pipe that nobody reads (otherwise /dev/null).
    pub unread_stderr: bool,
}

#[derive(Debug)]
pub struct Server {
    child: Child,
    pub socket: PathBuf,
    /// Held open and never read: once the pipe buffer is full, every write
    /// to it blocks.
    stderr: Option<ChildStderr>,
    _dir: tempfile::TempDir,
}

impl Server {
    pub fn start(binary: &Path, options: Options) -> Result<Self, Error> {
        let dir = tempfile::tempdir()?;
        if options.world {
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        }
        let socket = dir.path().join("sgw.sock");
        let mut config = format!(
            "[gateway]\nsocket = {:?}\nmax_connections = {}\n",
            socket.display().to_string(),
            options.max_connections
        );
        if options.world {
            config.push_str("socket_mode = \"0666\"\n");
        }
        config.push_str(
            "\n[[child]]\nid = \"sleeper\"\ncommand = [\"/bin/sh\", \"-c\", \"sleep 600\"]\n",
        );
        let config_path = dir.path().join("sgw.toml");
        std::fs::write(&config_path, config)?;
        let mut child = Command::new(binary)
            .args(["serve", "--config"])
            .arg(&config_path)
            // Its own state directory (a version without one ignores it).
            .env("SGW_STATE_DIR", dir.path().join("state"))
            // Both versions log at their default level (info).
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(if options.unread_stderr {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let stderr = child.stderr.take();
        let mut server = Server {
            child,
            socket,
            stderr,
            _dir: dir,
        };
        // Readiness: the `try:` line. The thread keeps draining stdout after
        // it, so a later line never meets a closed pipe.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.starts_with("try:") {
                    let _ = tx.send(());
                }
            }
        });
        let started = Instant::now();
        loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(()) => return Ok(server),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(format!("{} exited before it was ready", binary.display()).into());
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            if let Some(status) = server.child.try_wait()? {
                return Err(
                    format!("{} exited ({status}) before it was ready", binary.display()).into(),
                );
            }
            if started.elapsed() > Duration::from_secs(10) {
                return Err(format!("{} not ready within 10 s", binary.display()).into());
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Closing the unread pipe first turns a write blocked on it into
        // EPIPE, so even a wedged server can take its SIGTERM path.
        drop(self.stderr.take());
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// User + system CPU time of a process, all its threads (`/proc/PID/stat`,
/// in USER_HZ = 100 ticks per second), as in `examples/load/measure.rs`.
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    Duration::from_millis((ticks(11).unwrap_or(0) + ticks(12).unwrap_or(0)) * 10)
}

/// Waits (at most `limit`) until the server burns less than 10 % of a core
/// over 200 ms, so work queued by one phase is not charged to the next.
pub async fn quiesce(pid: u32, limit: Duration) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let before = cpu_time(pid);
        tokio::time::sleep(Duration::from_millis(200)).await;
        if cpu_time(pid).saturating_sub(before) <= Duration::from_millis(20) {
            return;
        }
    }
}
