//! The supervisor engine: one task per child (see `child.rs`), a registry of
//! them, and the [`ControlPlane`] implementation the transports call.

mod capture;
mod change;
mod child;
pub mod containment;
mod dependencies;
mod intent;
mod pacing;
mod policy;
mod process;
mod readiness;
mod topology;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::SystemTime;

use tokio::sync::{Mutex, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use capture::MAX_LINE_BYTES;
pub use policy::backoff_delay;
pub use topology::{ChildSet, SetError, SetWarning};

use crate::control::{
    Command, CommandMeta, CommandReport, CommandRequest, ConfigSource, ControlError, ControlPlane,
    StateSnapshot, TargetInfo, TreeChange,
};
use crate::journal::store::{self, EventStore, StoreConfig, StoreError, SyncPolicy};
use crate::journal::{EventJournal, LogJournal};
use crate::model::{
    ChildId, ChildRecord, ChildSpec, CommandKind, ContainmentPreference, Event, EventKind,
    SpecError,
};
use child::{ChildTask, Envelope, Op};
use containment::Containment;
pub use containment::ContainmentError;
pub use intent::IntentError;
use intent::{Change, Hold, IntentStore};
use pacing::Pacer;
pub use pacing::RestartRate;

/// What the engine needs besides its children.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub target_id: String,
    pub display_name: String,
    pub events_capacity: usize,
    pub logs_capacity: usize,
    /// Captured output: each child's in-memory tail, log file (in
    /// `state_dir/logs`) and rate limit, unless its spec says otherwise.
    pub logs: crate::model::LogPolicy,
    /// cgroup v2, subreaper, or whichever the host allows.
    pub containment: ContainmentPreference,
    /// Where the record of what this instance started is kept, so the
    /// next start finds what a crash left behind. `None`: nothing is
    /// recorded (leftovers of a crash are not found).
    pub state_dir: Option<PathBuf>,
    /// Make this process a child subreaper and reap every orphan it
    /// adopts (also as PID 1). Process-wide, so it is the process owner's
    /// call: the `sgw` binary turns it on; an embedding application that
    /// forks other children of its own must reap them itself too.
    pub adopt_orphans: bool,
    /// Automatic restarts per second across every child; `None`:
    /// unlimited (each child's backoff alone decides).
    pub restart_rate: Option<RestartRate>,
    /// How the event journal is kept in `state_dir` (without one, it is
    /// memory-only and gets a new id at every start).
    pub journal: JournalSettings,
    /// Drop what operators changed at runtime before the last stop
    /// (`sgw serve --reset-state`): start from the config alone.
    pub reset_state: bool,
    /// Where a reload reads the configuration again; `None`: reloads are
    /// not supported.
    pub config_source: Option<Arc<dyn ConfigSource>>,
}

/// The event journal on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalSettings {
    pub sync: SyncPolicy,
    pub retain_bytes: u64,
    pub retain_age: std::time::Duration,
}

impl Default for JournalSettings {
    fn default() -> Self {
        Self {
            sync: SyncPolicy::Normal,
            retain_bytes: 256 << 20,
            retain_age: std::time::Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// Why the supervisor could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Containment(#[from] ContainmentError),
    #[error(transparent)]
    Journal(#[from] StoreError),
    #[error("runtime state {path}: {source}")]
    Intent {
        path: PathBuf,
        #[source]
        source: intent::IntentError,
    },
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            target_id: "sgw".to_owned(),
            display_name: "sgw".to_owned(),
            events_capacity: 65_536,
            logs_capacity: 65_536,
            logs: crate::model::LogPolicy::default(),
            containment: ContainmentPreference::Auto,
            state_dir: None,
            adopt_orphans: false,
            restart_rate: Some(RestartRate::default()),
            journal: JournalSettings::default(),
            reset_state: false,
            config_source: None,
        }
    }
}

struct ChildHandle {
    inbox: mpsc::Sender<Envelope>,
    record: watch::Receiver<ChildRecord>,
    task: JoinHandle<()>,
}

#[derive(Default)]
struct Registry {
    /// Declaration order: config order, then added children.
    order: Vec<ChildId>,
    children: HashMap<ChildId, ChildHandle>,
    /// Children whose removal is under way: nothing new may depend on them.
    removing: HashSet<ChildId>,
    /// The configuration last applied (at start or by a reload): what a
    /// reload compares the file with, and the templates a scale uses.
    config: ChildSet,
}

impl Registry {
    fn known(&self) -> Vec<ChildId> {
        self.order.clone()
    }

    /// The children's current specs, in declaration order.
    fn specs(&self) -> Vec<Arc<ChildSpec>> {
        self.order
            .iter()
            .filter_map(|id| self.children.get(id))
            .map(|h| Arc::clone(&h.record.borrow().spec))
            .collect()
    }

    fn dependents_of(&self, id: &ChildId) -> Vec<ChildId> {
        self.order
            .iter()
            .filter(|other| {
                self.children
                    .get(*other)
                    .is_some_and(|h| h.record.borrow().spec.depends_on.contains(id))
            })
            .cloned()
            .collect()
    }
}

/// State shared by the engine handle and every child task.
pub(crate) struct Context {
    target: TargetInfo,
    events: EventJournal,
    logs: LogJournal,
    /// Capture's side of the log journal (settings, rate limits).
    output: capture::Output,
    registry: RwLock<Registry>,
    /// Bumped on every record change, reported in snapshots. Nothing
    /// waits on it: a waiting dependent watches its dependencies' records.
    state_generation: AtomicU64,
    /// How often a child waiting for dependencies was woken by a change of
    /// one of them (see [`Supervisor::dependency_wakeups`]).
    dependency_wakeups: AtomicU64,
    shutting_down: AtomicBool,
    /// Serializes tree-wide operations (add, remove, shutdown) against each
    /// other; child commands only take their child's queue.
    tree_lock: Mutex<()>,
    terminated: CancellationToken,
    next_command: AtomicU64,
    containment: Containment,
    pacer: Pacer,
    /// The event journal's writer, closed at a clean shutdown.
    store: Option<EventStore>,
    /// Runtime decisions kept across restarts (with a state directory).
    intent: Option<IntentStore>,
    config_source: Option<Arc<dyn ConfigSource>>,
}

impl Context {
    fn read(&self) -> RwLockReadGuard<'_, Registry> {
        self.registry.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Registry> {
        self.registry
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn state_changed(&self) {
        self.state_generation.fetch_add(1, Ordering::AcqRel);
    }
}

/// The engine. Cheap to clone; every clone drives the same children.
#[derive(Clone)]
pub struct Supervisor {
    ctx: Arc<Context>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("target_id", &self.ctx.target.target_id)
            .field("children", &self.ctx.read().order)
            .finish()
    }
}

impl Supervisor {
    /// Sets up containment (killing what a previous instance left behind,
    /// reported as `leftover_killed` events), then starts every child of
    /// `children`, each after its dependencies. Must be called inside a
    /// tokio runtime. Fails when the state directory is locked by another
    /// instance or cannot be written, or when `containment = "cgroup"` is
    /// asked for where cgroups are not usable.
    pub fn start(config: EngineConfig, children: ChildSet) -> Result<Self, StartError> {
        let containment = Containment::establish(
            config.containment,
            config.state_dir.as_deref(),
            &config.target_id,
        )?;
        if config.adopt_orphans {
            containment::adopt_orphans().map_err(ContainmentError::Spawner)?;
        }
        tracing::info!(containment = %containment.info(), "children are contained");
        let leftovers = containment.take_leftovers();
        let config_children = children.clone();
        let Restored {
            intent,
            children,
            mut holds,
            event: restored,
        } = restore_intent(config.state_dir.as_deref(), config.reset_state, children)?;
        let (journal_id, events, store, log_next) = match &config.state_dir {
            Some(dir) => {
                let opened = store::open(
                    &StoreConfig {
                        dir: dir.clone(),
                        sync: config.journal.sync,
                        retain_bytes: config.journal.retain_bytes,
                        retain_age: config.journal.retain_age,
                    },
                    config.events_capacity,
                )?;
                if let Some((first, last)) = opened.recovery.lost {
                    tracing::warn!(
                        first,
                        last,
                        "the previous run was killed: events it may have published after \
                         sequence {} were not stored and are reported as lost",
                        first - 1
                    );
                }
                (
                    opened.journal_id,
                    EventJournal::restore(config.events_capacity, opened.restore),
                    Some(opened.store),
                    opened.log_next,
                )
            }
            None => (
                store::new_journal_id(),
                EventJournal::new(config.events_capacity),
                None,
                1,
            ),
        };
        let logs = capture::open_journal(
            config.logs_capacity,
            &config.logs,
            config.state_dir.as_deref(),
            children.specs(),
            log_next,
        );
        let ctx = Arc::new(Context {
            target: TargetInfo {
                target_id: config.target_id,
                display_name: config.display_name,
                server_version: env!("CARGO_PKG_VERSION").to_owned(),
                // Without a file to read again there is no reload to offer.
                supported_commands: CommandKind::ALL
                    .into_iter()
                    .filter(|kind| {
                        *kind != CommandKind::ReloadConfig || config.config_source.is_some()
                    })
                    .collect(),
                containment: containment.info().clone(),
                journal_id,
            },
            events,
            logs: logs.clone(),
            output: capture::Output::new(logs, config.logs),
            registry: RwLock::new(Registry::default()),
            state_generation: AtomicU64::new(0),
            dependency_wakeups: AtomicU64::new(0),
            shutting_down: AtomicBool::new(false),
            tree_lock: Mutex::new(()),
            terminated: CancellationToken::new(),
            next_command: AtomicU64::new(1),
            containment,
            pacer: Pacer::new(config.restart_rate),
            store,
            intent,
            config_source: config.config_source,
        });
        for event in leftovers {
            if let EventKind::LeftoverKilled {
                processes,
                found_in,
            } = &event.kind
            {
                let list: Vec<String> = processes
                    .iter()
                    .map(|p| format!("{} ({})", p.pid, p.command))
                    .collect();
                tracing::warn!(
                    child = ?event.child_id.as_ref().map(ChildId::as_str),
                    found_in,
                    "killed what a previous instance left running: {}",
                    list.join(", ")
                );
            }
            ctx.events.publish(event);
        }
        if let Some(restored) = restored {
            tracing::info!(
                ?restored,
                "runtime changes from before the restart applied again"
            );
            ctx.events.publish(Event::tree(restored));
        }
        let supervisor = Self { ctx };
        let mut registry = supervisor.ctx.write();
        registry.config = config_children;
        for spec in children.into_specs() {
            let hold = holds.remove(&spec.id);
            supervisor.insert(&mut registry, spec, hold);
        }
        drop(registry);
        Ok(supervisor)
    }

    /// Registers a child and starts its task. The caller holds the write
    /// lock, so the child is visible to dependents before it runs.
    fn insert(&self, registry: &mut Registry, spec: ChildSpec, hold: Option<Hold>) {
        let (inbox_tx, inbox_rx) = mpsc::channel(16);
        let id = spec.id.clone();
        let (task, record) = ChildTask::new(Arc::new(spec), Arc::clone(&self.ctx), inbox_rx, hold);
        let task = tokio::spawn(task.run());
        registry.order.push(id.clone());
        registry.children.insert(
            id,
            ChildHandle {
                inbox: inbox_tx,
                record,
                task,
            },
        );
    }

    fn not_found(&self, id: &ChildId) -> ControlError {
        ControlError::NotFound {
            id: id.to_string(),
            known: self.ctx.read().known(),
        }
    }

    /// Sends an operation to a child's task and waits for its answer.
    async fn ask(&self, id: &ChildId, op: Op) -> Result<(String, ChildRecord), ControlError> {
        // The registry guard must be gone before `not_found` reads it again:
        // a re-entrant read on std's RwLock deadlocks once a writer queues.
        let inbox = {
            let registry = self.ctx.read();
            match registry.children.get(id) {
                Some(handle) => handle.inbox.clone(),
                None => return Err(self.not_found_in(&registry, id)),
            }
        };
        let (reply, answer) = oneshot::channel();
        inbox
            .send(Envelope { op, reply })
            .await
            .map_err(|_| self.not_found(id))?;
        // An envelope can land in the inbox just after the child task
        // drained it on its way out (a racing Remove). It is dropped, and
        // `answer` fails, only once the last sender is gone: holding this
        // clone across the wait would keep it alive forever.
        drop(inbox);
        answer.await.map_err(|_| self.not_found(id))?
    }

    /// Checks that a command can be attempted before it is journaled, so
    /// that unknown ids and refused requests leave no half-recorded command.
    fn admit(&self, command: &Command) -> Result<(), ControlError> {
        if self.ctx.shutting_down.load(Ordering::Acquire) {
            return Err(ControlError::ShuttingDown);
        }
        let registry = self.ctx.read();
        match command {
            Command::Add(spec) => {
                if registry.children.contains_key(&spec.id) {
                    return Err(ControlError::AlreadyExists {
                        id: spec.id.clone(),
                    });
                }
                if let Some(dep) = spec.depends_on.iter().find(|dep| {
                    !registry.children.contains_key(*dep) || registry.removing.contains(*dep)
                }) {
                    return Err(ControlError::InvalidSpec(SpecError::new(
                        "depends_on",
                        format!("unknown child {dep}"),
                    )));
                }
            }
            Command::Remove(id) => {
                if !registry.children.contains_key(id) {
                    return Err(self.not_found_in(&registry, id));
                }
                let dependents = registry.dependents_of(id);
                if !dependents.is_empty() {
                    return Err(ControlError::HasDependents {
                        id: id.clone(),
                        dependents,
                    });
                }
            }
            // Checked against the tree when applied, under the tree lock.
            Command::Shutdown | Command::Reload(_) | Command::Scale { .. } => {}
            Command::Restart(id)
            | Command::Pause(id)
            | Command::Resume(id)
            | Command::Quarantine(id) => {
                if !registry.children.contains_key(id) {
                    return Err(self.not_found_in(&registry, id));
                }
            }
        }
        Ok(())
    }

    fn not_found_in(&self, registry: &Registry, id: &ChildId) -> ControlError {
        ControlError::NotFound {
            id: id.to_string(),
            known: registry.known(),
        }
    }

    async fn dispatch(
        &self,
        command: Command,
    ) -> Result<(String, Option<ChildRecord>), ControlError> {
        match command {
            Command::Add(spec) => {
                let _tree = self.ctx.tree_lock.lock().await;
                // Re-check under the tree lock: another add may have won.
                self.admit(&Command::Add(spec.clone()))?;
                let id = spec.id.clone();
                if let Some(intent) = &self.ctx.intent {
                    intent.record(Change::Added(Arc::new((*spec).clone())));
                }
                let record = {
                    let mut registry = self.ctx.write();
                    self.insert(&mut registry, *spec, None);
                    registry.children.get(&id).map(|h| h.record.clone())
                };
                Ok(("added".to_owned(), record.map(|r| r.borrow().clone())))
            }
            Command::Remove(id) => {
                let _tree = self.ctx.tree_lock.lock().await;
                self.admit(&Command::Remove(id.clone()))?;
                self.remove_child(&id).await.map(|outcome| (outcome, None))
            }
            Command::Reload(change) => self
                .apply_change(CommandKind::ReloadConfig, *change)
                .await
                .map(|outcome| (outcome, None)),
            Command::Scale { change, .. } => self
                .apply_change(CommandKind::ScaleChild, *change)
                .await
                .map(|outcome| (outcome, None)),
            Command::Shutdown => self.shutdown_tree().await.map(|outcome| (outcome, None)),
            Command::Restart(id) => self.child_command(&id, Op::Restart).await,
            Command::Pause(id) => self.child_command(&id, Op::Pause).await,
            Command::Resume(id) => self.child_command(&id, Op::Resume).await,
            Command::Quarantine(id) => self.child_command(&id, Op::Quarantine).await,
        }
    }

    /// Stops and forgets a child; the caller holds the tree lock. The
    /// removal is recorded, so a restart of sgw does not bring the child
    /// back from the config.
    async fn remove_child(&self, id: &ChildId) -> Result<String, ControlError> {
        self.ctx.write().removing.insert(id.clone());
        let result = self.ask(id, Op::Remove).await;
        let handle = {
            let mut registry = self.ctx.write();
            registry.removing.remove(id);
            if result.is_ok() {
                registry.order.retain(|other| other != id);
                registry.children.remove(id)
            } else {
                None
            }
        };
        if let Some(handle) = handle {
            if let Some(intent) = &self.ctx.intent {
                let spec = Arc::clone(&handle.record.borrow().spec);
                intent.record(Change::Removed(spec));
            }
            let _ = handle.task.await;
            self.ctx.containment.forget(id);
            self.ctx.state_changed();
        }
        result.map(|(outcome, _)| outcome)
    }

    /// Applies a reload's or scale's plan: adds (in start order), then
    /// updates (in parallel), then removals (dependents first). The plan is
    /// checked against the tree first, under the tree lock, so a tree that
    /// changed since it was made is refused rather than half-applied.
    async fn apply_change(
        &self,
        kind: CommandKind,
        change: TreeChange,
    ) -> Result<String, ControlError> {
        let _tree = self.ctx.tree_lock.lock().await;
        {
            let registry = self.ctx.read();
            let outdated = |why: String| Err(ControlError::PlanOutdated { why });
            if let Some(spec) = change
                .add
                .iter()
                .find(|s| registry.children.contains_key(&s.id))
            {
                return outdated(format!("{} exists now", spec.id));
            }
            if let Some(id) = change
                .plan
                .remove
                .iter()
                .chain(change.update.iter().map(|s| &s.id))
                .find(|id| !registry.children.contains_key(*id))
            {
                return outdated(format!("{id} is gone"));
            }
        }
        let TreeChange {
            plan,
            add,
            update,
            config,
        } = change;
        tracing::info!(command = %kind, plan = %plan.summary(), "applying a change of the tree");
        self.ctx
            .events
            .publish(Event::tree(EventKind::ChangePlanned {
                command: kind,
                plan: plan.clone(),
            }));
        {
            let mut registry = self.ctx.write();
            for spec in add {
                if let Some(intent) = &self.ctx.intent {
                    // A scale beyond the file's count is a runtime change to
                    // keep; a child the file declares needs no record (and
                    // an old removal of it no longer applies).
                    let declared = registry.config.specs().iter().any(|s| s.id == spec.id)
                        || config
                            .as_ref()
                            .is_some_and(|c| c.specs().iter().any(|s| s.id == spec.id));
                    intent.record(if declared {
                        Change::Forget(spec.id.to_string())
                    } else {
                        Change::Added(Arc::new(spec.clone()))
                    });
                }
                self.insert(&mut registry, spec, None);
            }
        }
        let updates = plan.update.iter().zip(update).map(|(step, spec)| {
            self.ask(
                &step.id,
                Op::Update {
                    spec: Arc::new(spec),
                    changed: step.changed.clone(),
                    restart: step.restart,
                },
            )
        });
        let mut failures = Vec::new();
        for result in futures_util::future::join_all(updates).await {
            if let Err(error) = result {
                failures.push(error.to_string());
            }
        }
        for id in &plan.remove {
            if let Err(error) = self.remove_child(id).await {
                failures.push(error.to_string());
            }
        }
        if let Some(config) = config {
            self.ctx.write().config = config;
        }
        self.ctx.state_changed();
        if failures.is_empty() {
            Ok(plan.summary())
        } else {
            Err(ControlError::Internal {
                message: format!("{} ({})", plan.summary(), failures.join("; ")),
            })
        }
    }

    /// A command carried out by the child's own task.
    async fn child_command(
        &self,
        id: &ChildId,
        op: Op,
    ) -> Result<(String, Option<ChildRecord>), ControlError> {
        self.ask(id, op)
            .await
            .map(|(outcome, record)| (outcome, Some(record)))
    }

    /// Stops every child, dependents before their dependencies: level by
    /// level (first the children nothing depends on, then those only they
    /// depended on, ...), all children of a level at once. A level takes as
    /// long as its slowest stop (at most its largest `stop_timeout`), so the
    /// whole tree stops within the sum of those over the levels, not the
    /// sum over every child.
    async fn shutdown_tree(&self) -> Result<String, ControlError> {
        let _tree = self.ctx.tree_lock.lock().await;
        self.ctx
            .events
            .publish(Event::tree(EventKind::ShutdownStarted));
        let levels = {
            let registry = self.ctx.read();
            let specs: Vec<ChildSpec> = registry
                .order
                .iter()
                .filter_map(|id| registry.children.get(id))
                .map(|h| (*h.record.borrow().spec).clone())
                .collect();
            topology::stop_levels(&specs)
        };
        let count: usize = levels.iter().map(Vec::len).sum();
        for level in levels {
            let stops = level.into_iter().map(|id| async move {
                let _ = self.ask(&id, Op::Shutdown).await;
                let handle = self.ctx.write().children.remove(&id);
                if let Some(handle) = handle {
                    let _ = handle.task.await;
                }
            });
            futures_util::future::join_all(stops).await;
        }
        self.ctx.write().order.clear();
        self.ctx.containment.close();
        self.ctx.state_changed();
        self.ctx
            .events
            .publish(Event::tree(EventKind::ShutdownCompleted));
        Ok(format!("stopped {count} children"))
    }

    /// Journals and runs a command. Used by [`ControlPlane::execute`].
    async fn run_command(&self, request: CommandRequest) -> Result<CommandReport, ControlError> {
        let (command, meta) = request.into_parts();
        let kind = command.kind();
        self.admit(&command)?;
        if kind == CommandKind::ShutdownTree && self.ctx.shutting_down.swap(true, Ordering::AcqRel)
        {
            return Err(ControlError::ShuttingDown);
        }
        let child_id = command.child_id().cloned();
        let command_id = format!(
            "cmd-{}",
            self.ctx.next_command.fetch_add(1, Ordering::Relaxed)
        );
        self.publish_accepted(&child_id, &command_id, kind, &meta);
        let result = self.dispatch(command).await;
        let (outcome, error_code) = match &result {
            Ok((outcome, _)) => (outcome.clone(), None),
            Err(error) => (error.to_string(), Some(error.code().into())),
        };
        self.ctx.events.publish(Event {
            child_id,
            kind: EventKind::CommandCompleted {
                command_id: command_id.clone(),
                command: kind,
                outcome,
                error_code,
            },
        });
        if kind == CommandKind::ShutdownTree {
            self.ctx.events.close();
            self.ctx.logs.close();
            // Captured output queued for the log files reaches them before
            // the process exits.
            self.ctx.logs.sync().await;
            if let Some(store) = &self.ctx.store {
                // The log sequence goes on from here at the next start,
                // also for lines that never reached a file.
                store.close(self.ctx.logs.last_sequence() + 1).await;
            }
            if let Some(intent) = &self.ctx.intent {
                intent.close().await;
            }
            self.ctx.terminated.cancel();
        }
        result.map(|(outcome, child)| CommandReport {
            command_id,
            command: kind,
            outcome,
            child,
            completed_at: SystemTime::now(),
        })
    }

    fn publish_accepted(
        &self,
        child_id: &Option<ChildId>,
        command_id: &str,
        kind: CommandKind,
        meta: &CommandMeta,
    ) {
        self.ctx.events.publish(Event {
            child_id: child_id.clone(),
            kind: EventKind::CommandAccepted {
                command_id: command_id.to_owned(),
                command: kind,
                request_id: meta.request_id.clone(),
                requested_by: meta.requested_by.clone(),
                reason: meta.reason.clone(),
            },
        });
    }

    /// Shuts the tree down on behalf of the embedding process (a signal, a
    /// drop of the server). Journaled like a `ShutdownTree` command.
    pub async fn shutdown(
        &self,
        requested_by: &str,
        reason: &str,
    ) -> Result<CommandReport, ControlError> {
        let meta = CommandMeta {
            request_id: String::new(),
            requested_by: requested_by.to_owned(),
            reason: reason.to_owned(),
            confirm: true,
        };
        self.run_command(CommandRequest::new(Command::Shutdown, meta)?)
            .await
    }

    pub fn is_shutting_down(&self) -> bool {
        self.ctx.shutting_down.load(Ordering::Acquire)
    }

    /// How many times a child waiting for its dependencies has been woken
    /// by a change of one of them. Only a dependency's own record changes
    /// wake its dependents, so other children's activity leaves this
    /// unchanged (a diagnostic, and what the tests hold the engine to).
    pub fn dependency_wakeups(&self) -> u64 {
        self.ctx.dependency_wakeups.load(Ordering::Relaxed)
    }
}

impl ControlPlane for Supervisor {
    fn info(&self) -> TargetInfo {
        self.ctx.target.clone()
    }

    async fn state(&self) -> StateSnapshot {
        let state_generation = self.ctx.state_generation.load(Ordering::Acquire);
        let mut children: Vec<ChildRecord> = {
            let registry = self.ctx.read();
            registry
                .order
                .iter()
                .filter_map(|id| registry.children.get(id))
                .map(|h| h.record.borrow().clone())
                .collect()
        };
        self.ctx.containment.measure(&mut children);
        StateSnapshot {
            children,
            state_generation,
            last_event_sequence: self.ctx.events.last_sequence(),
            last_log_sequence: self.ctx.logs.last_sequence(),
            dropped_events: self.ctx.events.evicted(),
            dropped_logs: self.ctx.logs.evicted(),
            journal_id: self.ctx.target.journal_id.clone(),
        }
    }

    async fn child(&self, id: &ChildId) -> Result<ChildRecord, ControlError> {
        let mut record = {
            let registry = self.ctx.read();
            registry
                .children
                .get(id)
                .map(|h| h.record.borrow().clone())
                .ok_or_else(|| self.not_found_in(&registry, id))?
        };
        self.ctx
            .containment
            .measure(std::slice::from_mut(&mut record));
        Ok(record)
    }

    async fn execute(&self, request: CommandRequest) -> Result<CommandReport, ControlError> {
        self.run_command(request).await
    }

    async fn plan_reload(&self) -> Result<TreeChange, ControlError> {
        let Some(source) = self.ctx.config_source.clone() else {
            return Err(ControlError::Unsupported {
                what: "reloading: sgw serve was started without --config, so there is no file to read again",
            });
        };
        // Reading and parsing the file is blocking work.
        let reloaded = tokio::task::spawn_blocking(move || source.load())
            .await
            .map_err(|error| ControlError::Internal {
                message: format!("reading the configuration: {error}"),
            })?
            .map_err(|message| ControlError::InvalidConfig { message })?;
        let registry = self.ctx.read();
        change::reload(
            &registry.specs(),
            &registry.config,
            reloaded.children,
            reloaded.not_applied,
        )
    }

    async fn plan_scale(
        &self,
        group: &ChildId,
        instances: u32,
    ) -> Result<TreeChange, ControlError> {
        let registry = self.ctx.read();
        change::scale(&registry.specs(), &registry.config, group, instances)
    }

    fn events(&self) -> &EventJournal {
        &self.ctx.events
    }

    fn logs(&self) -> &LogJournal {
        &self.ctx.logs
    }

    async fn terminated(&self) {
        self.ctx.terminated.cancelled().await;
    }
}

/// The tree to start and what decided it.
struct Restored {
    /// Where further runtime changes are recorded (with a state directory).
    intent: Option<IntentStore>,
    children: ChildSet,
    /// Children that start paused or quarantined.
    holds: HashMap<ChildId, Hold>,
    /// What was applied again, if anything.
    event: Option<EventKind>,
}

/// The config's children with what operators changed at runtime before
/// the last stop applied again (with a state directory). A set of changes
/// that no longer makes a valid tree with this config (a removed child
/// others now depend on) is not applied: the config alone starts.
fn restore_intent(
    state_dir: Option<&std::path::Path>,
    reset: bool,
    children: ChildSet,
) -> Result<Restored, StartError> {
    let unchanged = |intent, children| Restored {
        intent,
        children,
        holds: HashMap::new(),
        event: None,
    };
    let Some(dir) = state_dir else {
        return Ok(unchanged(None, children));
    };
    let (store, intent) = IntentStore::open(dir, reset).map_err(|source| StartError::Intent {
        path: dir.join(intent::FILE_NAME),
        source,
    })?;
    let config = children.clone();
    let applied = intent.apply(children.into_specs(), &store);
    let mut holds = HashMap::new();
    let specs: Vec<ChildSpec> = applied
        .children
        .into_iter()
        .map(|(spec, hold)| {
            if let Some(hold) = hold {
                holds.insert(spec.id.clone(), hold);
            }
            spec
        })
        .collect();
    match ChildSet::new(specs).map(|set| set.with_groups(config.groups().clone())) {
        Ok(children) => Ok(Restored {
            intent: Some(store),
            children,
            holds,
            event: applied.event,
        }),
        Err(error) => {
            tracing::warn!(
                %error,
                "runtime changes from before the restart do not fit this config: starting from the config alone"
            );
            Ok(unchanged(Some(store), config))
        }
    }
}
