//! One spawned process: its own process group, a parent-death signal, its
//! output captured, and a stop that escalates to SIGKILL for the whole group.

use std::io;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use super::capture::capture;
use crate::journal::LogJournal;
use crate::model::{ChildSpec, Exit, LogStream, StopSignal};

/// systemd's socket-activation variables: they describe the supervisor's
/// inherited listener, never a child's.
const SOCKET_ACTIVATION_VARS: [&str; 3] = ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"];

/// A live (or just exited, not yet cleaned up) process of a child.
#[derive(Debug)]
pub struct Process {
    child: Child,
    pid: u32,
    pub generation: u64,
    pub started: Instant,
    reaped: bool,
}

/// How a stop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped {
    pub exit: Exit,
    /// The stop timeout passed and the group was SIGKILLed.
    pub escalated: bool,
}

impl Process {
    pub fn spawn(spec: &ChildSpec, generation: u64, logs: &LogJournal) -> io::Result<Process> {
        let (program, args) = spec
            .command
            .split_first()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
        let mut command = Command::new(program);
        command
            .args(args)
            .envs(&spec.env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group, so a stop reaches everything it forked.
            .process_group(0)
            .kill_on_drop(true);
        // Socket activation is ours, not the children's.
        for name in SOCKET_ACTIVATION_VARS {
            command.env_remove(name);
        }
        if let Some(cwd) = &spec.cwd {
            command.current_dir(cwd);
        }
        die_with_parent(&mut command);
        let mut child = command.spawn()?;
        let pid = child
            .id()
            .ok_or_else(|| io::Error::other("process exited before its pid was read"))?;
        if let Some(stdout) = child.stdout.take() {
            let logs = logs.clone();
            tokio::spawn(capture(
                stdout,
                LogStream::Stdout,
                spec.id.clone(),
                generation,
                logs,
            ));
        }
        if let Some(stderr) = child.stderr.take() {
            let logs = logs.clone();
            tokio::spawn(capture(
                stderr,
                LogStream::Stderr,
                spec.id.clone(),
                generation,
                logs,
            ));
        }
        Ok(Process {
            child,
            pid,
            generation,
            started: Instant::now(),
            reaped: false,
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Waits for the process to exit on its own. Cancel-safe. Whatever the
    /// process left behind in its group is killed: no orphans.
    pub async fn wait(&mut self) -> Exit {
        let exit = match self.child.wait().await {
            Ok(status) => Exit::from_status(status),
            // Only possible if the process was reaped behind our back.
            Err(_) => Exit::Code(-1),
        };
        self.reaped = true;
        self.signal_group(Signal::SIGKILL);
        exit
    }

    /// Sends `signal` to the group, waits up to `timeout`, then SIGKILLs
    /// the group and waits for the exit.
    pub async fn stop(&mut self, signal: StopSignal, timeout: Duration) -> Stopped {
        self.signal_group(signal.0);
        if let Ok(exit) = tokio::time::timeout(timeout, self.wait()).await {
            return Stopped {
                exit,
                escalated: false,
            };
        }
        self.signal_group(Signal::SIGKILL);
        Stopped {
            exit: self.wait().await,
            escalated: true,
        }
    }

    fn signal_group(&self, signal: Signal) {
        let Ok(pgid) = i32::try_from(self.pid) else {
            return;
        };
        // ESRCH (group already empty) is the normal case after an exit.
        let _ = killpg(Pid::from_raw(pgid), signal);
    }
}

impl Drop for Process {
    /// A process dropped without being waited for (its owner task was
    /// cancelled) takes its whole group with it.
    fn drop(&mut self) {
        if !self.reaped {
            self.signal_group(Signal::SIGKILL);
        }
    }
}

/// Makes the child receive SIGKILL when the supervisor dies, so children
/// never outlive a crashed supervisor. (Linux delivers it when the spawning
/// thread exits; tokio's worker threads live as long as the runtime.)
#[allow(unsafe_code)]
fn die_with_parent(command: &mut Command) {
    let parent = nix::unistd::getpid();
    // SAFETY: the closure runs in the forked child before exec. It makes
    // only async-signal-safe system calls (prctl, getppid) and does not
    // allocate, even on its error path.
    unsafe {
        command.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(io::Error::from)?;
            // The supervisor may have died between fork and prctl.
            if nix::unistd::getppid() != parent {
                return Err(io::Error::from_raw_os_error(
                    nix::errno::Errno::ESRCH as i32,
                ));
            }
            Ok(())
        });
    }
}
