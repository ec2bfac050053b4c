//! Containment: every process a child starts, however it forks, belongs to
//! the child until the child's stop has reached it.
//!
//! Two modes, chosen at start (`[supervisor] containment`, `auto` by
//! default):
//! - **cgroup**: one cgroup v2 per child under sgw's own subtree. A stop
//!   signals every member, waits for the cgroup to empty and ends with
//!   `cgroup.kill`; limits (`memory_max`, `cpu_max`, `cpu_weight`,
//!   `pids_max`) and usage come from the cgroup's files.
//! - **subreaper**: where cgroups are not writable. sgw is a child
//!   subreaper; a child's members are its process group, its descendants,
//!   and every process started after it that carries its `SGW_UNIT`
//!   environment marker (an orphan that `setsid`s away keeps the marker).
//!   A process that leaves the group *and* clears its environment *and*
//!   loses its parent escapes: only cgroups close that door.
//!
//! In both modes the state directory records the instance (its marker and
//! subtree), so the next start kills what a crash left behind.

mod cgroup;
mod procfs;
mod reaper;
mod spawner;
mod state;

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

pub use reaper::{adopt_orphans, reap_adopted};
pub use spawner::disown;
pub use state::StateError;

use crate::model::{
    ChildId, ChildRecord, ChildSpec, ContainmentInfo, ContainmentKind, ContainmentPreference,
    Event, EventKind, LeftoverProcess, ResourceUsage, SpawnError, SpawnStage,
};
use cgroup::{Cgroup, Subtree};
use spawner::Spawner;
use state::{Record, StateDir};

/// The environment variable every child (and, by inheritance, every
/// descendant) carries: `<instance>/<child id>`.
pub const MARKER: &str = "SGW_UNIT";

/// How long leftovers of a previous instance get to die at start.
const LEFTOVER_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a usage reading is reused (GetState on a tree of hundreds of
/// children reads many small files; a dashboard polling it needs no more).
const USAGE_TTL: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum ContainmentError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("containment = \"cgroup\", but cgroup v2 is not usable here: {0}")]
    CgroupUnavailable(String),
    #[error("cannot record this instance in the state_dir: {0}")]
    Record(io::Error),
    #[error("cannot start the spawner thread: {0}")]
    Spawner(io::Error),
}

/// The containment of one supervisor's children.
#[derive(Debug)]
pub struct Containment {
    info: ContainmentInfo,
    subtree: Option<Subtree>,
    instance: String,
    spawner: Spawner,
    state: Option<StateDir>,
    leftovers: Mutex<Vec<Event>>,
    usage: Mutex<UsageCache>,
}

#[derive(Debug, Default)]
struct UsageCache {
    taken: Option<Instant>,
    /// Per child, the generation read and its usage.
    readings: Readings,
}

type Readings = HashMap<ChildId, (u64, ResourceUsage)>;

/// The reading for `record`'s current run, if `readings` has one.
fn reading_of(readings: &Readings, record: &ChildRecord) -> Option<ResourceUsage> {
    readings
        .get(&record.id)
        .filter(|(generation, _)| *generation == record.generation)
        .map(|(_, usage)| *usage)
}

impl Containment {
    /// Chooses the mode, locks the state directory and kills what the
    /// previous instance left running (reported by [`take_leftovers`]).
    /// Must be called inside a tokio runtime.
    ///
    /// [`take_leftovers`]: Containment::take_leftovers
    pub fn establish(
        preference: ContainmentPreference,
        state_dir: Option<&Path>,
        target_id: &str,
    ) -> Result<Self, ContainmentError> {
        let (state, previous) = match state_dir {
            Some(dir) => {
                let (state, previous) = StateDir::open(dir)?;
                (Some(state), previous)
            }
            None => (None, None),
        };
        let leftovers = previous.map(|p| kill_leftovers(&p)).unwrap_or_default();
        let instance = format!("{:016x}", fastrand::u64(..));
        let name = format!("sgw-{}-{}", cgroup_safe(target_id), &instance[..8]);
        let (info, subtree) = match preference {
            ContainmentPreference::Subreaper => (
                ContainmentInfo {
                    kind: ContainmentKind::Subreaper,
                    detail: "chosen by [supervisor] containment".to_owned(),
                    controllers: Vec::new(),
                },
                None,
            ),
            ContainmentPreference::Auto | ContainmentPreference::Cgroup => {
                match Subtree::create(&name) {
                    Ok(subtree) => (
                        ContainmentInfo {
                            kind: ContainmentKind::Cgroup,
                            detail: subtree.path.display().to_string(),
                            controllers: subtree.controllers.clone(),
                        },
                        Some(subtree),
                    ),
                    Err(reason) if preference == ContainmentPreference::Cgroup => {
                        return Err(ContainmentError::CgroupUnavailable(reason));
                    }
                    Err(reason) => (
                        ContainmentInfo {
                            kind: ContainmentKind::Subreaper,
                            detail: format!("cgroup v2 not usable: {reason}"),
                            controllers: Vec::new(),
                        },
                        None,
                    ),
                }
            }
        };
        let spawner = Spawner::start().map_err(ContainmentError::Spawner)?;
        if let Some(state) = &state {
            let me = std::process::id();
            let record = Record {
                instance: instance.clone(),
                pid: me,
                start_ticks: procfs::stat(me).map_or(0, |s| s.start_ticks),
                mode: info.kind.as_str().to_owned(),
                subtree: subtree.as_ref().map(|s| s.path.clone()),
            };
            state.write(&record).map_err(ContainmentError::Record)?;
        }
        Ok(Self {
            info,
            subtree,
            instance,
            spawner,
            state,
            leftovers: Mutex::new(leftovers),
            usage: Mutex::new(UsageCache::default()),
        })
    }

    pub fn info(&self) -> &ContainmentInfo {
        &self.info
    }

    /// The locked state directory, if there is one: private places for
    /// this instance's own files (the children's notify sockets).
    pub fn state_dir(&self) -> Option<&Path> {
        self.state.as_ref().map(|state| state.dir.as_path())
    }

    /// The `leftover_killed` events of the start, once.
    pub fn take_leftovers(&self) -> Vec<Event> {
        std::mem::take(
            &mut *self
                .leftovers
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    fn marker(&self, id: &ChildId) -> String {
        format!("{}/{id}", self.instance)
    }

    /// Where the child's next process goes: its cgroup (made, limits set)
    /// or its process group and marker.
    pub fn place(&self, spec: &ChildSpec) -> Result<Placement, SpawnError> {
        let marker = self.marker(&spec.id);
        let program = spec.command.first().cloned().unwrap_or_default();
        let Some(subtree) = &self.subtree else {
            if let Some(controller) = spec.limits().controllers().first() {
                return Err(SpawnError {
                    stage: SpawnStage::Cgroup,
                    path: program.into(),
                    message: format!(
                        "{controller} limits need cgroup containment, which is off: {}",
                        self.info.detail
                    ),
                });
            }
            return Ok(Placement {
                marker,
                cgroup: None,
            });
        };
        let failed = |message: String, path: &Path| SpawnError {
            stage: SpawnStage::Cgroup,
            path: path.to_owned(),
            message,
        };
        let cgroup = subtree
            .child(spec.id.as_str(), &spec.limits())
            .map_err(|message| failed(message, &subtree.path))?;
        let procs = cgroup
            .procs_file()
            .map_err(|e| failed(e.to_string(), &cgroup.path))?;
        Ok(Placement {
            marker,
            cgroup: Some((cgroup, procs)),
        })
    }

    /// Forks `command` on the spawner thread.
    pub async fn spawn(&self, command: Command) -> io::Result<Child> {
        self.spawner.spawn(command).await
    }

    /// Fills each record's `usage` (records without a process get none).
    /// Readings are reused for up to a second.
    pub fn measure(&self, records: &mut [ChildRecord]) {
        let mut cache = self.usage.lock().unwrap_or_else(PoisonError::into_inner);
        let readings = if cache.taken.is_none_or(|t| t.elapsed() >= USAGE_TTL) {
            cache.readings.clear();
            cache.taken = Some(Instant::now());
            self.read_usage(records.iter())
        } else {
            // Only the runs started since the last reading are read now:
            // in a crash storm nearly every call sees a new generation,
            // and re-reading every child each time would put the whole
            // measurement on every call.
            let missing = records
                .iter()
                .filter(|r| r.pid.is_some() && reading_of(&cache.readings, r).is_none());
            self.read_usage(missing)
        };
        for record in records.iter_mut() {
            record.usage = record.pid.and_then(|_| {
                reading_of(&readings, record).or_else(|| reading_of(&cache.readings, record))
            });
        }
        // A run caught between fork and exec (not yet in its cgroup, or
        // mid-exec with no memory mapped) is shown as read but not kept:
        // the next call reads it again instead of serving zeros for a TTL.
        cache.readings.extend(
            readings
                .into_iter()
                .filter(|(_, (_, usage))| usage.processes > 0 && usage.memory_bytes > 0),
        );
    }

    fn read_usage<'a>(&self, records: impl Iterator<Item = &'a ChildRecord>) -> Readings {
        let live: Vec<&ChildRecord> = records.filter(|r| r.pid.is_some()).collect();
        if live.is_empty() {
            return HashMap::new();
        }
        let snapshot = if self.subtree.is_none() {
            procfs::snapshot()
        } else {
            Vec::new()
        };
        live.into_iter()
            .filter_map(|record| {
                let unit = self.unit_of(record.id.as_str(), record.pid?)?;
                let usage = match &unit {
                    Unit::Cgroup(cgroup) => cgroup.usage(),
                    Unit::Group(group) => group.usage(&snapshot),
                };
                Some((record.id.clone(), (record.generation, usage)))
            })
            .collect()
    }

    /// The unit of a running child, from its id and main pid.
    fn unit_of(&self, id: &str, leader: u32) -> Option<Unit> {
        match &self.subtree {
            Some(subtree) => Some(Unit::Cgroup(Cgroup {
                path: subtree.path.join(id),
            })),
            None => Some(Unit::Group(Group {
                leader,
                leader_start: procfs::stat(leader)?.start_ticks,
                marker: format!("{}/{id}", self.instance),
            })),
        }
    }

    /// Removes a removed child's cgroup.
    pub fn forget(&self, id: &ChildId) {
        if let Some(subtree) = &self.subtree {
            Cgroup {
                path: subtree.path.join(id.as_str()),
            }
            .remove();
        }
    }

    /// After a clean shutdown: the subtree goes, and the state record with
    /// it (nothing is left for the next start to find).
    pub fn close(&self) {
        if let Some(subtree) = &self.subtree {
            subtree.kill_all(LEFTOVER_TIMEOUT);
            subtree.remove();
        }
        if let Some(state) = &self.state {
            state.clear();
        }
    }
}

impl Drop for Containment {
    /// A supervisor dropped without a shutdown (an embedding application,
    /// a test) leaves no cgroup behind. Its processes were killed as their
    /// owners dropped; the kill here catches their descendants.
    fn drop(&mut self) {
        if let Some(subtree) = &self.subtree {
            subtree.kill_all(Duration::from_millis(500));
            subtree.remove();
        }
    }
}

/// What a child's next process is spawned into.
#[derive(Debug)]
pub struct Placement {
    pub marker: String,
    /// The cgroup and its `cgroup.procs`, opened for the forked child.
    pub cgroup: Option<(Cgroup, File)>,
}

impl Placement {
    /// The unit of the process spawned with this placement.
    pub fn unit(self, leader: u32) -> Unit {
        match self.cgroup {
            Some((cgroup, _)) => Unit::Cgroup(cgroup),
            None => Unit::Group(Group {
                leader,
                leader_start: procfs::stat(leader).map_or(0, |s| s.start_ticks),
                marker: self.marker,
            }),
        }
    }
}

/// Every process of one run of a child.
#[derive(Debug)]
pub enum Unit {
    Cgroup(Cgroup),
    Group(Group),
}

impl Unit {
    /// Sends `signal` to every member.
    pub fn signal(&self, signal: Signal) {
        match self {
            Unit::Cgroup(cgroup) => cgroup.signal(signal),
            Unit::Group(group) => group.signal(signal),
        }
    }

    /// Whether no live member is left (zombies do not count: they are
    /// waiting for whoever adopted them, not for us).
    pub fn is_empty(&self) -> bool {
        match self {
            Unit::Cgroup(cgroup) => !cgroup.populated(),
            Unit::Group(group) => group.members(&procfs::snapshot()).is_empty(),
        }
    }

    /// SIGKILLs every member.
    pub fn kill(&self) {
        match self {
            Unit::Cgroup(cgroup) => cgroup.kill(),
            Unit::Group(group) => group.signal(Signal::SIGKILL),
        }
    }

    /// Who belongs to the unit, as a value another task can keep and
    /// ask (the notify socket's reader checks every sender).
    pub fn membership(&self) -> Membership {
        match self {
            Unit::Cgroup(cgroup) => Membership::Cgroup(cgroup.clone()),
            Unit::Group(group) => Membership::Group(group.clone()),
        }
    }

    /// OOM kills so far (cgroup mode with the memory controller).
    pub fn oom_kills(&self) -> Option<u64> {
        match self {
            Unit::Cgroup(cgroup) => cgroup.oom_kills(),
            Unit::Group(_) => None,
        }
    }

    /// How often the stop path looks again: a cgroup read is two small
    /// files, a group check scans `/proc`.
    pub fn poll_interval(&self) -> Duration {
        match self {
            Unit::Cgroup(_) => Duration::from_millis(5),
            Unit::Group(_) => Duration::from_millis(20),
        }
    }
}

/// Who belongs to one run of a child, detached from its unit.
#[derive(Debug, Clone)]
pub enum Membership {
    Cgroup(Cgroup),
    Group(Group),
}

impl Membership {
    /// Whether `pid` is a live process of the run: in its cgroup, or (in
    /// subreaper mode) its leader, in its process group, carrying its
    /// marker or descended from a member.
    pub fn contains(&self, pid: u32) -> bool {
        match self {
            Membership::Cgroup(cgroup) => cgroup.pids().contains(&pid),
            Membership::Group(group) => {
                let Some(stat) = procfs::stat(pid) else {
                    return false;
                };
                if stat.is_zombie() || stat.start_ticks < group.leader_start {
                    return false;
                }
                pid == group.leader
                    || stat.pgid == group.leader
                    || group
                        .members(&procfs::snapshot())
                        .iter()
                        .any(|member| member.pid == pid)
            }
        }
    }
}

/// A child's processes in subreaper mode: its process group, its
/// descendants, and whatever carries its marker, all started no earlier
/// than its main process (which guards against pid reuse).
#[derive(Debug, Clone)]
pub struct Group {
    leader: u32,
    leader_start: u64,
    marker: String,
}

impl Group {
    fn members(&self, snapshot: &[procfs::Stat]) -> Vec<procfs::Stat> {
        let candidates: Vec<&procfs::Stat> = snapshot
            .iter()
            .filter(|s| !s.is_zombie() && s.start_ticks >= self.leader_start)
            .collect();
        let mut members: HashSet<u32> = candidates
            .iter()
            .filter(|s| s.pid == self.leader || s.pgid == self.leader)
            .map(|s| s.pid)
            .collect();
        for stat in &candidates {
            if !members.contains(&stat.pid)
                && procfs::environment_value(stat.pid, MARKER).as_deref() == Some(&self.marker)
            {
                members.insert(stat.pid);
            }
        }
        // Descendants of members, to a fixed point (a marker-less process
        // whose parent is a member).
        loop {
            let before = members.len();
            for stat in &candidates {
                if members.contains(&stat.ppid) {
                    members.insert(stat.pid);
                }
            }
            if members.len() == before {
                break;
            }
        }
        candidates
            .into_iter()
            .filter(|s| members.contains(&s.pid))
            .copied()
            .collect()
    }

    fn signal(&self, signal: Signal) {
        if let Ok(pgid) = i32::try_from(self.leader) {
            let _ = killpg(Pid::from_raw(pgid), signal);
        }
        for member in self.members(&procfs::snapshot()) {
            if let Ok(pid) = i32::try_from(member.pid) {
                let _ = kill(Pid::from_raw(pid), signal);
            }
        }
    }

    fn usage(&self, snapshot: &[procfs::Stat]) -> ResourceUsage {
        let members = self.members(snapshot);
        let page = procfs::page_size();
        ResourceUsage {
            cpu_time: procfs::ticks_to_duration(members.iter().map(|m| m.cpu_ticks).sum()),
            memory_bytes: members.iter().map(|m| m.rss_pages * page).sum(),
            processes: u32::try_from(members.len()).unwrap_or(u32::MAX),
            oom_kills: None,
        }
    }
}

/// Kills what the instance `previous` left: everything in its cgroup
/// subtree, and every process started after it that carries its marker.
/// One `leftover_killed` event per child (by the id in the marker or the
/// cgroup's name).
fn kill_leftovers(previous: &Record) -> Vec<Event> {
    let mut found: HashMap<String, (Vec<LeftoverProcess>, String)> = HashMap::new();
    let mut killed = HashSet::new();
    if let Some(subtree) = previous.subtree.as_deref().and_then(Subtree::existing) {
        if let Ok(entries) = std::fs::read_dir(&subtree.path) {
            for entry in entries.flatten().filter(|e| e.path().is_dir()) {
                let cgroup = Cgroup { path: entry.path() };
                let id = entry.file_name().to_string_lossy().into_owned();
                for pid in cgroup.pids() {
                    killed.insert(pid);
                    let (processes, _) = found
                        .entry(id.clone())
                        .or_insert_with(|| (Vec::new(), cgroup.path.display().to_string()));
                    processes.push(LeftoverProcess {
                        pid,
                        command: procfs::command_line(pid),
                    });
                }
            }
        }
        subtree.kill_all(LEFTOVER_TIMEOUT);
        subtree.remove();
    }
    // A leftover may fork while it is being killed: look again until a
    // pass finds nothing new (bounded).
    let prefix = format!("{}/", previous.instance);
    for _ in 0..5 {
        let mut new = 0;
        for stat in procfs::snapshot() {
            if stat.start_ticks < previous.start_ticks
                || stat.is_zombie()
                || !killed.insert(stat.pid)
            {
                continue;
            }
            let Some(id) = procfs::environment_value(stat.pid, MARKER)
                .and_then(|value| value.strip_prefix(&prefix).map(str::to_owned))
            else {
                killed.remove(&stat.pid);
                continue;
            };
            let command = procfs::command_line(stat.pid);
            if let Ok(pid) = i32::try_from(stat.pid) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            new += 1;
            let (processes, _) = found
                .entry(id)
                .or_insert_with(|| (Vec::new(), format!("{MARKER}={prefix}*")));
            processes.push(LeftoverProcess {
                pid: stat.pid,
                command,
            });
        }
        if new == 0 {
            break;
        }
    }
    let mut events: Vec<Event> = found
        .into_iter()
        .filter(|(_, (processes, _))| !processes.is_empty())
        .map(|(id, (mut processes, found_in))| {
            processes.sort_by_key(|p| p.pid);
            let kind = EventKind::LeftoverKilled {
                processes,
                found_in,
            };
            match ChildId::new(&id) {
                Ok(id) => Event::child(&id, kind),
                Err(_) => Event::tree(kind),
            }
        })
        .collect();
    events.sort_by(|a, b| a.child_id.cmp(&b.child_id));
    events
}

/// A target id as part of a cgroup name: `[a-z0-9_-]`, others as `_`.
fn cgroup_safe(text: &str) -> String {
    text.chars()
        .take(32)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
