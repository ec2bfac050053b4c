//! One spawned process: its containment unit (cgroup, or process group
//! and marker), a parent-death signal, its output captured, and a stop
//! that gives every member its grace and then kills whatever is left.

use std::ffi::CString;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tokio::process::{Child, Command};

use super::capture::Output;
use super::containment::{self, Containment, MARKER, Placement, Unit};
use crate::model::{ChildSpec, Exit, Rlimit, SpawnError, SpawnStage, StopSignal};

/// systemd's socket-activation variables: they describe the supervisor's
/// inherited listener, never a child's.
const SOCKET_ACTIVATION_VARS: [&str; 3] = ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"];

/// sd_notify's variables: when sgw itself runs under systemd they name
/// systemd's socket, which a child must never write to.
const NOTIFY_VARS: [&str; 3] = ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"];

/// Socket activation is ours, not the children's; so is the notify
/// protocol, unless the child has its own (set after this). Everything sgw
/// starts for a child (its process, its exec probes) goes through here.
pub(super) fn clear_inherited_env(command: &mut Command) {
    for name in SOCKET_ACTIVATION_VARS.iter().chain(&NOTIFY_VARS) {
        command.env_remove(name);
    }
}

/// How long the members left after the main process exited get to die
/// once SIGKILLed, before the run counts as over anyway.
const KILL_SETTLE: Duration = Duration::from_secs(1);

/// A live (or just exited, not yet cleaned up) process of a child.
#[derive(Debug)]
pub struct Process {
    child: Child,
    pid: u32,
    unit: Unit,
    pub generation: u64,
    pub started: Instant,
    /// OOM kills of the unit when the process was spawned.
    oom_baseline: Option<u64>,
    reaped: bool,
}

/// How a stop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped {
    pub exit: Exit,
    /// The stop timeout passed and the remaining members were SIGKILLed.
    pub escalated: bool,
}

impl Process {
    /// Spawns the child's command into its unit. A failure says which step
    /// failed and on what path: `cgroup`, `setrlimit`, `setuid`, `chdir`
    /// (the `cwd`) or `exec` (the program).
    ///
    /// The fork runs on the containment's spawner thread, so a crash storm
    /// of children never stalls the runtime workers serving the control
    /// plane. `extra_env` is sgw's own protocol with the child
    /// (`NOTIFY_SOCKET`, `WATCHDOG_USEC`), set over the spec's `env`.
    pub async fn spawn(
        spec: &ChildSpec,
        generation: u64,
        containment: &Containment,
        output: &Output,
        extra_env: &[(&str, String)],
    ) -> Result<Process, SpawnError> {
        let Some((program, args)) = spec.command.split_first() else {
            return Err(SpawnError {
                stage: SpawnStage::Exec,
                path: PathBuf::new(),
                message: "empty command".to_owned(),
            });
        };
        let placement = containment.place(spec)?;
        let mut command = Command::new(program);
        command
            .args(args)
            .envs(&spec.env)
            .env(MARKER, &placement.marker)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group, so a stop reaches everything it forked even
            // without a cgroup.
            .process_group(0)
            .kill_on_drop(true);
        clear_inherited_env(&mut command);
        command.envs(extra_env.iter().map(|(name, value)| (name, value)));
        die_with_parent(&mut command);
        // The cgroup first (joining it may need our privileges), then
        // limits, then the user: chdir happens as the child's own user.
        join_cgroup(&mut command, &placement);
        set_limits(&mut command, spec);
        take_credentials(&mut command, spec)?;
        if let Some(cwd) = &spec.cwd {
            change_dir(&mut command, cwd)?;
        }
        let spawned = containment.spawn(command).await;
        let mut child = spawned
            .map_err(|error| spawn_error(&error, program, spec.cwd.as_deref(), &placement))?;
        let pid = child.id().ok_or_else(|| SpawnError {
            stage: SpawnStage::Exec,
            path: PathBuf::from(program),
            message: "the process exited before its pid was read".to_owned(),
        })?;
        output.attach(spec, generation, child.stdout.take(), child.stderr.take());
        let unit = placement.unit(pid);
        let oom_baseline = unit.oom_kills();
        Ok(Process {
            child,
            pid,
            unit,
            generation,
            started: Instant::now(),
            oom_baseline,
            reaped: false,
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Who belongs to this run (see [`Unit::membership`]).
    pub fn membership(&self) -> containment::Membership {
        self.unit.membership()
    }

    /// OOM kills in the unit since the process was spawned (cgroup mode
    /// with the memory controller; `None` elsewhere or when there were
    /// none).
    pub fn oom_kills(&self) -> Option<u64> {
        let now = self.unit.oom_kills()?;
        let new = now.saturating_sub(self.oom_baseline.unwrap_or(0));
        (new > 0).then_some(now)
    }

    /// Waits for the process to exit on its own. Cancel-safe. Whatever it
    /// left behind in its unit is killed: no orphans.
    pub async fn wait(&mut self) -> Exit {
        let exit = self.reap().await;
        if !self.unit.is_empty() {
            self.unit.kill();
            let settle = tokio::time::Instant::now() + KILL_SETTLE;
            let _ = tokio::time::timeout_at(settle, self.emptied()).await;
        }
        exit
    }

    /// Waits for the main process's exit status, leaving the rest of the
    /// unit alone. Cancel-safe.
    async fn reap(&mut self) -> Exit {
        let exit = match self.child.wait().await {
            Ok(status) => Exit::from_status(status),
            // Only possible if the process was reaped behind our back.
            Err(_) => Exit::Code(-1),
        };
        if !self.reaped {
            self.reaped = true;
            containment::disown(self.pid);
        }
        exit
    }

    /// Sends `signal` to every member of the unit and gives all of them
    /// `timeout` to exit: a worker that needs its grace gets it even when
    /// its parent (the main process) exits at once. Whatever is left at the
    /// deadline is SIGKILLed (`cgroup.kill` in cgroup mode).
    pub async fn stop(&mut self, signal: StopSignal, timeout: Duration) -> Stopped {
        let deadline = tokio::time::Instant::now() + timeout;
        self.unit.signal(signal.0);
        let Ok(exit) = tokio::time::timeout_at(deadline, self.reap()).await else {
            self.unit.kill();
            let exit = self.reap().await;
            let settle = tokio::time::Instant::now() + KILL_SETTLE;
            let _ = tokio::time::timeout_at(settle, self.emptied()).await;
            return Stopped {
                exit,
                escalated: true,
            };
        };
        let emptied = tokio::time::timeout_at(deadline, self.emptied())
            .await
            .is_ok();
        if !emptied {
            self.unit.kill();
            let settle = tokio::time::Instant::now() + KILL_SETTLE;
            let _ = tokio::time::timeout_at(settle, self.emptied()).await;
        }
        Stopped {
            exit,
            escalated: !emptied,
        }
    }

    /// Resolves once no live member is left. Polls (cgroup.events or
    /// /proc), only while a stop or cleanup is under way.
    async fn emptied(&self) {
        let poll = self.unit.poll_interval();
        while !self.unit.is_empty() {
            tokio::time::sleep(poll).await;
        }
    }
}

impl Drop for Process {
    /// A process dropped without being waited for (its owner task was
    /// cancelled) takes its whole unit with it.
    fn drop(&mut self) {
        if !self.reaped {
            self.unit.kill();
        }
    }
}

/// Joins the child to its cgroup before anything else runs in it: one
/// `write("0")` to `cgroup.procs`, opened before the fork.
#[allow(unsafe_code)]
fn join_cgroup(command: &mut Command, placement: &Placement) {
    let Some((_, procs)) = &placement.cgroup else {
        return;
    };
    let fd = procs.as_raw_fd();
    // SAFETY: the closure runs in the forked child before exec. It makes
    // one async-signal-safe system call (write) on a descriptor opened
    // before the fork and kept open by `placement` until the spawn
    // returns; it does not allocate, even on its error path.
    unsafe {
        command.pre_exec(move || {
            let written = nix::libc::write(fd, b"0".as_ptr().cast(), 1);
            if written == 1 {
                Ok(())
            } else {
                Err(io::Error::from_raw_os_error(
                    CGROUP_TAG | nix::errno::Errno::last_raw(),
                ))
            }
        });
    }
}

/// Marks an error of the `chdir` the child makes before `exec`. std hands
/// the raw OS code a `pre_exec` step fails with back to `spawn` unchanged
/// (it is how exec errors come back too), so a step tags its errno to say
/// which step failed; real errno values are far below the tag.
const CHDIR_TAG: i32 = 0x0001_0000;
const SETUID_TAG: i32 = 0x0002_0000;
const LIMITS_TAG: i32 = 0x0003_0000;
const CGROUP_TAG: i32 = 0x0004_0000;
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
fn spawn_error(
    error: &io::Error,
    program: &str,
    cwd: Option<&Path>,
    placement: &Placement,
) -> SpawnError {
    let describe = |code: i32| nix::errno::Errno::from_raw(code).desc().to_owned();
    match error.raw_os_error() {
        Some(raw) if raw & TAG_MASK == CGROUP_TAG => SpawnError {
            stage: SpawnStage::Cgroup,
            path: placement
                .cgroup
                .as_ref()
                .map(|(cgroup, _)| cgroup.path.clone())
                .unwrap_or_default(),
            message: describe(raw & !TAG_MASK),
        },
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

/// Makes the child receive SIGKILL when the supervisor dies, so the main
/// processes never outlive a crashed supervisor (their descendants are
/// found by the next start, see `containment`). Linux delivers it when the
/// *forking thread* exits: the spawner thread lives as long as the
/// supervisor.
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
