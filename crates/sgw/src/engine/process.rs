//! One spawned process: its own process group, a parent-death signal, its
//! output captured, and a stop that escalates to SIGKILL for the whole group.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use super::capture::capture;
use crate::journal::LogJournal;
use crate::model::{ChildSpec, Exit, LogStream, Rlimit, SpawnError, SpawnStage, StopSignal};

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
    /// Spawns the child's command. A failure says which step failed and on
    /// what path: `chdir` (the `cwd`) or `exec` (the program).
    ///
    /// fork + exec takes about a millisecond of the calling thread and
    /// blocks it until the exec is done; it runs on the blocking pool, so a
    /// crash storm of children never stalls the runtime workers that serve
    /// the control plane.
    pub async fn spawn(
        spec: &ChildSpec,
        generation: u64,
        logs: &LogJournal,
    ) -> Result<Process, SpawnError> {
        let Some((program, args)) = spec.command.split_first() else {
            return Err(SpawnError {
                stage: SpawnStage::Exec,
                path: PathBuf::new(),
                message: "empty command".to_owned(),
            });
        };
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
        die_with_parent(&mut command);
        // Limits, then the user: chdir happens as the child's own user.
        set_limits(&mut command, spec);
        take_credentials(&mut command, spec)?;
        if let Some(cwd) = &spec.cwd {
            change_dir(&mut command, cwd)?;
        }
        let spawned = tokio::task::spawn_blocking(move || command.spawn())
            .await
            .unwrap_or_else(|join| Err(io::Error::other(join)));
        let mut child =
            spawned.map_err(|error| spawn_error(&error, program, spec.cwd.as_deref()))?;
        let pid = child.id().ok_or_else(|| SpawnError {
            stage: SpawnStage::Exec,
            path: PathBuf::from(program),
            message: "the process exited before its pid was read".to_owned(),
        })?;
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
        let exit = self.reap().await;
        self.signal_group(Signal::SIGKILL);
        exit
    }

    /// Waits for the leader's exit status, leaving the rest of the group
    /// alone. Cancel-safe.
    async fn reap(&mut self) -> Exit {
        let exit = match self.child.wait().await {
            Ok(status) => Exit::from_status(status),
            // Only possible if the process was reaped behind our back.
            Err(_) => Exit::Code(-1),
        };
        self.reaped = true;
        exit
    }

    /// Sends `signal` to the whole group and gives the whole group
    /// `timeout` to exit: a worker that needs its grace gets it even when
    /// its parent (the group leader) exits at once. Whatever is left at the
    /// deadline is SIGKILLed.
    pub async fn stop(&mut self, signal: StopSignal, timeout: Duration) -> Stopped {
        let deadline = tokio::time::Instant::now() + timeout;
        self.signal_group(signal.0);
        let Ok(exit) = tokio::time::timeout_at(deadline, self.reap()).await else {
            self.signal_group(Signal::SIGKILL);
            return Stopped {
                exit: self.reap().await,
                escalated: true,
            };
        };
        let emptied = tokio::time::timeout_at(deadline, self.group_emptied())
            .await
            .is_ok();
        if !emptied {
            self.signal_group(Signal::SIGKILL);
        }
        Stopped {
            exit,
            escalated: !emptied,
        }
    }

    /// Resolves once no live process is left in the group. The kernel
    /// offers no event for that (cgroups do), so this polls `/proc`, only
    /// during a stop's grace period. Zombies count as gone: an orphan that
    /// exited is waiting for whoever adopted it, not for us.
    async fn group_emptied(&self) {
        const POLL: Duration = Duration::from_millis(10);
        while group_has_live_members(self.pid) {
            tokio::time::sleep(POLL).await;
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

/// Whether any process but a zombie has process group `pgid`. The cheap
/// `kill(-pgid, 0)` settles the common case (group gone); only a group
/// that still has members (maybe only zombies) costs a `/proc/*/stat` scan
/// (fields 3 and 5, after the parenthesized name).
fn group_has_live_members(pgid: u32) -> bool {
    let has_members = i32::try_from(pgid).is_ok_and(|g| killpg(Pid::from_raw(g), None).is_ok());
    if !has_members {
        return false;
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return true;
    };
    entries.flatten().any(|entry| {
        let is_pid = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()));
        if !is_pid {
            return false;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            return false;
        };
        let Some(after_name) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            return false;
        };
        let mut fields = after_name.split_whitespace();
        let state = fields.next();
        let group = fields.nth(1).and_then(|g| g.parse::<u32>().ok());
        group == Some(pgid) && state != Some("Z")
    })
}

/// Marks an error of the `chdir` the child makes before `exec`. std hands
/// the raw OS code a `pre_exec` step fails with back to `spawn` unchanged
/// (it is how exec errors come back too), so a step tags its errno to say
/// which step failed; real errno values are far below the tag.
const CHDIR_TAG: i32 = 0x0001_0000;
const SETUID_TAG: i32 = 0x0002_0000;
const LIMITS_TAG: i32 = 0x0003_0000;
const TAG_MASK: i32 = 0x7fff_0000;

/// Changes to `cwd` in the child, before `exec`, with its errors tagged as
/// `chdir` errors (std's `current_dir` reports them exactly like a missing
/// program).
#[allow(unsafe_code)]
fn change_dir(command: &mut Command, cwd: &Path) -> Result<(), SpawnError> {
    let path = CString::new(cwd.as_os_str().as_bytes()).map_err(|_| SpawnError {
        stage: SpawnStage::Chdir,
        path: cwd.to_owned(),
        message: "the path contains a NUL byte".to_owned(),
    })?;
    // SAFETY: the closure runs in the forked child before exec. It makes
    // one async-signal-safe system call (chdir) on a string allocated
    // before the fork, and does not allocate, even on its error path.
    unsafe {
        command.pre_exec(move || {
            nix::unistd::chdir(path.as_c_str())
                .map_err(|errno| io::Error::from_raw_os_error(CHDIR_TAG | errno as i32))
        });
    }
    Ok(())
}

/// Sets the child's `umask` and `rlimits` (soft = hard) before `exec`,
/// errors tagged as `setrlimit`.
#[allow(unsafe_code)]
fn set_limits(command: &mut Command, spec: &ChildSpec) {
    use nix::sys::resource::{Resource, setrlimit};
    if spec.umask.is_none() && spec.rlimits.is_empty() {
        return;
    }
    let umask = spec
        .umask
        .map(|m| nix::sys::stat::Mode::from_bits_truncate(m.bits() as nix::libc::mode_t));
    let limits: Vec<(Resource, u64)> = spec
        .rlimits
        .iter()
        .map(|(limit, value)| {
            let resource = match limit {
                Rlimit::Nofile => Resource::RLIMIT_NOFILE,
                Rlimit::Nproc => Resource::RLIMIT_NPROC,
                Rlimit::Core => Resource::RLIMIT_CORE,
                Rlimit::As => Resource::RLIMIT_AS,
                Rlimit::Fsize => Resource::RLIMIT_FSIZE,
                Rlimit::Memlock => Resource::RLIMIT_MEMLOCK,
                Rlimit::Stack => Resource::RLIMIT_STACK,
                Rlimit::Cpu => Resource::RLIMIT_CPU,
            };
            (resource, *value)
        })
        .collect();
    // SAFETY: the closure runs in the forked child before exec. It makes
    // only async-signal-safe system calls (umask, setrlimit) on values
    // computed before the fork, and does not allocate.
    unsafe {
        command.pre_exec(move || {
            if let Some(mask) = umask {
                nix::sys::stat::umask(mask);
            }
            for &(resource, value) in &limits {
                setrlimit(resource, value, value)
                    .map_err(|errno| io::Error::from_raw_os_error(LIMITS_TAG | errno as i32))?;
            }
            Ok(())
        });
    }
}

/// Takes the child's `user` and `group` before `exec` (supplementary
/// groups cleared to the one group), errors tagged as `setuid`. Names are
/// resolved here, in the supervisor: the user database is not something a
/// forked child may read.
#[allow(unsafe_code)]
fn take_credentials(command: &mut Command, spec: &ChildSpec) -> Result<(), SpawnError> {
    use nix::unistd::{Gid, Group, Uid, User, setgid, setgroups, setuid};
    if spec.user.is_none() && spec.group.is_none() {
        return Ok(());
    }
    let program = spec.command.first().cloned().unwrap_or_default();
    let failed = |message: String| SpawnError {
        stage: SpawnStage::Setuid,
        path: PathBuf::from(&program),
        message,
    };
    let user = match &spec.user {
        None => None,
        Some(name) => Some(match name.parse::<u32>() {
            Ok(uid) => User::from_uid(Uid::from_raw(uid))
                .ok()
                .flatten()
                .map_or((Uid::from_raw(uid), None), |u| (u.uid, Some(u.gid))),
            Err(_) => User::from_name(name)
                .ok()
                .flatten()
                .map(|u| (u.uid, Some(u.gid)))
                .ok_or_else(|| failed(format!("no such user {name:?}")))?,
        }),
    };
    let gid = match &spec.group {
        Some(name) => Some(match name.parse::<u32>() {
            Ok(gid) => Gid::from_raw(gid),
            Err(_) => Group::from_name(name)
                .ok()
                .flatten()
                .map(|g| g.gid)
                .ok_or_else(|| failed(format!("no such group {name:?}")))?,
        }),
        None => user.and_then(|(_, primary)| primary),
    };
    let uid = user.map(|(uid, _)| uid);
    // SAFETY: the closure runs in the forked child before exec. It makes
    // only async-signal-safe system calls (setgroups, setgid, setuid) on
    // ids resolved before the fork; the one-element group list is built
    // outside the closure, so nothing allocates.
    let groups: Vec<Gid> = gid.into_iter().collect();
    unsafe {
        command.pre_exec(move || {
            let tag =
                |errno: nix::errno::Errno| io::Error::from_raw_os_error(SETUID_TAG | errno as i32);
            if let Some(gid) = gid {
                setgroups(&groups).map_err(tag)?;
                setgid(gid).map_err(tag)?;
            }
            if let Some(uid) = uid {
                setuid(uid).map_err(tag)?;
            }
            Ok(())
        });
    }
    Ok(())
}

/// What a failed `spawn` means: a tagged error is the step's, anything else
/// is exec's (or the fork's, which std does not tell apart).
fn spawn_error(error: &io::Error, program: &str, cwd: Option<&Path>) -> SpawnError {
    let describe = |code: i32| nix::errno::Errno::from_raw(code).desc().to_owned();
    match error.raw_os_error() {
        Some(raw) if raw & TAG_MASK == SETUID_TAG => SpawnError {
            stage: SpawnStage::Setuid,
            path: PathBuf::from(program),
            message: describe(raw & !TAG_MASK),
        },
        Some(raw) if raw & TAG_MASK == LIMITS_TAG => SpawnError {
            stage: SpawnStage::Limits,
            path: PathBuf::from(program),
            message: describe(raw & !TAG_MASK),
        },
        Some(raw) if raw & TAG_MASK == CHDIR_TAG => SpawnError {
            stage: SpawnStage::Chdir,
            path: cwd.map(Path::to_owned).unwrap_or_default(),
            message: describe(raw & !TAG_MASK),
        },
        Some(code) => SpawnError {
            stage: SpawnStage::Exec,
            path: PathBuf::from(program),
            message: describe(code),
        },
        None => SpawnError {
            stage: SpawnStage::Exec,
            path: PathBuf::from(program),
            message: error.to_string(),
        },
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
