//! cgroup v2: finding the hierarchy, making sgw's subtree, and one cgroup
//! per child with its limits, members, usage and kill switch.
//!
//! Everything here is plain file I/O on cgroupfs (small files, no blocking
//! beyond a syscall), so it runs inline on the calling task.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::procfs;
use crate::model::{CgroupLimits, ResourceUsage};

/// The controllers children's limits may use.
const WANTED_CONTROLLERS: [&str; 3] = ["cpu", "memory", "pids"];

/// sgw's own subtree of the cgroup v2 hierarchy: every child's cgroup is
/// made under it.
#[derive(Debug)]
pub struct Subtree {
    pub path: PathBuf,
    /// Controllers enabled for the children's cgroups.
    pub controllers: Vec<String>,
    /// Why the other wanted controllers are not available (for errors).
    pub missing: String,
}

/// Where the cgroup v2 hierarchy is mounted and which cgroup this process
/// is in, or why there is none.
pub fn locate() -> Result<(PathBuf, PathBuf), String> {
    let mounts = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
    // mountinfo: ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS ... - FSTYPE SOURCE SUPER
    let mount = mounts
        .lines()
        .find_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            (after.split_whitespace().next() == Some("cgroup2"))
                .then(|| before.split_whitespace().nth(4).map(PathBuf::from))?
        })
        .ok_or("no cgroup2 filesystem is mounted")?;
    let own = fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
    let relative = own
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .ok_or("this process has no cgroup v2 membership")?;
    Ok((mount.clone(), mount.join(relative.trim_start_matches('/'))))
}

impl Subtree {
    /// Makes `name` under this process's own cgroup and enables what it can
    /// of the cpu, memory and pids controllers for the children's cgroups.
    /// Fails (with the reason) where the hierarchy is not writable: not
    /// root and no delegated subtree, or a read-only cgroupfs.
    pub fn create(name: &str) -> Result<Self, String> {
        let (mount, own) = locate()?;
        let path = own.join(name);
        match fs::create_dir(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(format!(
                    "cannot create {}: {e} (sgw needs root or a delegated cgroup, e.g. systemd's Delegate=yes)",
                    path.display()
                ));
            }
        }
        // cgroup.kill (Linux 5.14) is what makes a stop final.
        if !path.join("cgroup.kill").exists() {
            let _ = fs::remove_dir(&path);
            return Err(format!(
                "{} has no cgroup.kill: the kernel is older than 5.14",
                mount.display()
            ));
        }
        let (controllers, missing) = enable_controllers(&own, &path);
        Ok(Self {
            path,
            controllers,
            missing,
        })
    }

    /// A subtree that exists already (a previous instance's, from the
    /// state file), for killing what it holds.
    pub fn existing(path: &Path) -> Option<Self> {
        path.join("cgroup.procs").exists().then(|| Self {
            path: path.to_owned(),
            controllers: Vec::new(),
            missing: String::new(),
        })
    }

    /// The child's cgroup, made (or reused, empty) with its limits set.
    pub fn child(&self, id: &str, limits: &CgroupLimits) -> Result<Cgroup, String> {
        let needed = limits.controllers();
        if let Some(controller) = needed
            .iter()
            .find(|c| !self.controllers.iter().any(|have| have == *c))
        {
            return Err(format!(
                "the {controller} controller is not available to {}{}",
                self.path.display(),
                if self.missing.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", self.missing)
                }
            ));
        }
        let cgroup = Cgroup {
            path: self.path.join(id),
        };
        match fs::create_dir(&cgroup.path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("cannot create {}: {e}", cgroup.path.display())),
        }
        cgroup.apply(limits)?;
        Ok(cgroup)
    }

    /// Kills everything under the subtree and waits (up to `timeout`) for
    /// it to empty. Returns whether it emptied.
    pub fn kill_all(&self, timeout: Duration) -> bool {
        let root = Cgroup {
            path: self.path.clone(),
        };
        root.kill();
        let deadline = std::time::Instant::now() + timeout;
        while root.populated() {
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }

    /// Removes the subtree and every cgroup under it (they must be empty).
    pub fn remove(&self) {
        remove_tree(&self.path);
    }
}

/// Enables the wanted controllers from the mount's root down to `subtree`
/// (each level's `cgroup.subtree_control`), as far as each level allows.
fn enable_controllers(own: &Path, subtree: &Path) -> (Vec<String>, String) {
    let available = fs::read_to_string(own.join("cgroup.controllers")).unwrap_or_default();
    let mut enabled = Vec::new();
    let mut reasons = Vec::new();
    for controller in WANTED_CONTROLLERS {
        if !available.split_whitespace().any(|c| c == controller) {
            reasons.push(format!(
                "{controller}: not in {}/cgroup.controllers (bound to a cgroup v1 hierarchy, or not delegated)",
                own.display()
            ));
            continue;
        }
        let enable = |dir: &Path| {
            fs::OpenOptions::new()
                .write(true)
                .open(dir.join("cgroup.subtree_control"))
                .and_then(|mut f| f.write_all(format!("+{controller}").as_bytes()))
        };
        // The own cgroup may hold processes (ours): the kernel then refuses
        // domain controllers below it unless it is the root.
        match enable(own).and_then(|()| enable(subtree)) {
            Ok(()) => enabled.push(controller.to_owned()),
            Err(e) => reasons.push(format!(
                "{controller}: cannot enable below {}: {e}",
                own.display()
            )),
        }
    }
    (enabled, reasons.join("; "))
}

fn remove_tree(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&entry.path());
            }
        }
    }
    let _ = fs::remove_dir(dir);
}

/// One child's cgroup.
#[derive(Debug, Clone)]
pub struct Cgroup {
    pub path: PathBuf,
}

impl Cgroup {
    fn apply(&self, limits: &CgroupLimits) -> Result<(), String> {
        let write = |file: &str, value: String| {
            fs::write(self.path.join(file), &value).map_err(|e| {
                format!(
                    "cannot write {value:?} to {}: {e}",
                    self.path.join(file).display()
                )
            })
        };
        // Every key is written, set or not, so a limit removed from the
        // spec does not linger from a previous run.
        let max = |v: Option<u64>| v.map_or_else(|| "max".to_owned(), |v| v.to_string());
        if self.path.join("memory.max").exists() {
            write("memory.max", max(limits.memory_max.map(|b| b.0)))?;
        }
        if self.path.join("cpu.max").exists() {
            write(
                "cpu.max",
                limits
                    .cpu_max
                    .map_or_else(|| "max".to_owned(), |c| c.cgroup_line()),
            )?;
            write("cpu.weight", limits.cpu_weight.unwrap_or(100).to_string())?;
        }
        if self.path.join("pids.max").exists() {
            write("pids.max", max(limits.pids_max))?;
        }
        Ok(())
    }

    /// `cgroup.procs`, opened before a fork so that the child can move
    /// itself in with one `write` before it execs.
    pub fn procs_file(&self) -> io::Result<fs::File> {
        fs::OpenOptions::new()
            .write(true)
            .open(self.path.join("cgroup.procs"))
    }

    /// The live members (zombies have left the cgroup already).
    pub fn pids(&self) -> Vec<u32> {
        fs::read_to_string(self.path.join("cgroup.procs"))
            .map(|text| text.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// Whether any live process is in the cgroup (`cgroup.events`). A
    /// cgroup that is gone is empty.
    pub fn populated(&self) -> bool {
        fs::read_to_string(self.path.join("cgroup.events"))
            .map(|text| text.lines().any(|l| l == "populated 1"))
            .unwrap_or(false)
    }

    /// Sends `signal` to every member. A process forking while this runs
    /// may be missed; a stop's escalation (`kill`) misses nothing.
    pub fn signal(&self, signal: Signal) {
        for pid in self.pids() {
            if let Ok(pid) = i32::try_from(pid) {
                let _ = kill(Pid::from_raw(pid), signal);
            }
        }
    }

    /// SIGKILLs every member, atomically with respect to forks
    /// (`cgroup.kill`).
    pub fn kill(&self) {
        if fs::write(self.path.join("cgroup.kill"), "1").is_err() {
            self.signal(Signal::SIGKILL);
        }
    }

    /// OOM kills in this cgroup so far, where the memory controller tells.
    pub fn oom_kills(&self) -> Option<u64> {
        let text = fs::read_to_string(self.path.join("memory.events")).ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .and_then(|n| n.trim().parse().ok())
    }

    pub fn usage(&self) -> ResourceUsage {
        let pids = self.pids();
        let cpu_time = fs::read_to_string(self.path.join("cpu.stat"))
            .ok()
            .and_then(|text| {
                text.lines()
                    .find_map(|l| l.strip_prefix("usage_usec "))
                    .and_then(|n| n.trim().parse::<u64>().ok())
            })
            .map(Duration::from_micros)
            .unwrap_or_default();
        let memory_bytes = fs::read_to_string(self.path.join("memory.current"))
            .ok()
            .and_then(|n| n.trim().parse::<u64>().ok())
            .unwrap_or_else(|| {
                let page = procfs::page_size();
                pids.iter()
                    .filter_map(|&pid| procfs::stat(pid))
                    .map(|s| s.rss_pages * page)
                    .sum()
            });
        ResourceUsage {
            cpu_time,
            memory_bytes,
            processes: u32::try_from(pids.len()).unwrap_or(u32::MAX),
            oom_kills: self.oom_kills(),
        }
    }

    /// Removes the (empty) cgroup.
    pub fn remove(&self) {
        let _ = fs::remove_dir(&self.path);
    }
}
