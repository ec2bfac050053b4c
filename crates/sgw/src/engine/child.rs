//! The task that owns one child: its process, its phase and its restart
//! history. Commands for the child arrive on a channel and are handled one
//! at a time, so commands on one child are serialized by construction and
//! there is never more than one process per child: the only code that
//! spawns runs in this task, and only after the previous process was reaped.

use std::future::pending;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::sleep_until;

use super::Context;
use super::dependencies::DependencyWait;
use super::intent::{Change, Hold};
use super::pacing::Pacer;
use super::policy::{Decision, RestartTracker};
use super::process::Process;
use super::readiness::{self, Signal, Watch};
use crate::control::ControlError;
use crate::model::{
    ChildRecord, ChildSpec, ChildState, Event, EventKind, Exit, Failure, QuarantineReason,
};

/// What a command asks of the owner task.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Op {
    Restart,
    Pause,
    Resume,
    Quarantine,
    /// Stop and end the task; the child is forgotten.
    Remove,
    /// Stop and end the task; part of a tree shutdown.
    Shutdown,
    /// Take a new spec (a reload); `restart`: the running process must be
    /// replaced for it, else the change applies as it is.
    Update {
        spec: Arc<ChildSpec>,
        changed: Vec<String>,
        restart: bool,
    },
}

/// The detail of a child that does not start by itself.
const AUTOSTART_OFF: &str = "autostart = false: waiting for resume or restart";
const HELD_PAUSED: &str = "paused (before sgw restarted): waiting for resume";
const HELD_QUARANTINED: &str = "quarantined (before sgw restarted): waiting for resume";
/// The detail of a child that said `RELOADING=1`.
const RELOADING: &str = "reloading (RELOADING=1): not ready until READY=1";

pub(super) type Reply = Result<(String, ChildRecord), ControlError>;

#[derive(Debug)]
pub(super) struct Envelope {
    pub op: Op,
    pub reply: oneshot::Sender<Reply>,
}

/// The child's phase. Each variant holds exactly what that phase needs:
/// only `Up` has a process.
#[derive(Debug)]
enum Phase {
    /// STARTING (or BLOCKED after `start_timeout`) until every dependency
    /// is RUNNING.
    WaitingForDependencies(DependencyWait),
    Up {
        process: Process,
        ready: bool,
        /// Its readiness, liveness and sd_notify state (boxed: the other
        /// phases are small).
        watch: Box<Watch>,
    },
    Backoff {
        until: Instant,
        until_wall: SystemTime,
    },
    Stopped,
    Paused,
    Quarantined,
}

/// Something the current phase was waiting for happened.
#[derive(Debug)]
enum Wake {
    /// The record of a dependency changed (or it went away).
    DependenciesChanged,
    /// `start_timeout` passed while waiting for dependencies.
    StartTimedOut,
    Exited(Exit),
    Ready,
    /// The run's readiness or health changed (see `readiness`).
    Readiness(Signal),
    BackoffReset,
    BackoffElapsed,
}

pub(super) struct ChildTask {
    spec: Arc<ChildSpec>,
    ctx: Arc<Context>,
    record: watch::Sender<ChildRecord>,
    inbox: mpsc::Receiver<Envelope>,
    phase: Phase,
    /// Set while a stop is in progress, so the record says STOPPING.
    stopping: bool,
    generation: u64,
    restart_count: u64,
    last_exit: Option<Exit>,
    last_failure: Option<Failure>,
    tracker: RestartTracker,
    detail: String,
    since: SystemTime,
    /// Where a restart of sgw found this child (taken by `run`).
    hold: Option<Hold>,
}

impl ChildTask {
    pub fn new(
        spec: Arc<ChildSpec>,
        ctx: Arc<Context>,
        inbox: mpsc::Receiver<Envelope>,
        hold: Option<Hold>,
    ) -> (Self, watch::Receiver<ChildRecord>) {
        let now = SystemTime::now();
        // What `run` is about to do, so that a dependent looking before this
        // task ran does not take a child about to start for a stopped one.
        let (state, detail) = match hold {
            Some(Hold::Paused) => (ChildState::Paused, HELD_PAUSED.to_owned()),
            Some(Hold::Quarantined) => (ChildState::Quarantined, HELD_QUARANTINED.to_owned()),
            None if spec.autostart => (ChildState::Starting, String::new()),
            None => (ChildState::Stopped, AUTOSTART_OFF.to_owned()),
        };
        let initial = ChildRecord {
            id: spec.id.clone(),
            state,
            pid: None,
            generation: 0,
            restart_count: 0,
            last_exit: None,
            last_failure: None,
            waiting_for: Vec::new(),
            backoff_until: None,
            budget: RestartTracker::default().status(&spec.restart_budget, Instant::now()),
            since: now,
            detail: detail.clone(),
            usage: None,
            status_text: String::new(),
            spec: Arc::clone(&spec),
        };
        let (record, receiver) = watch::channel(initial);
        let task = Self {
            spec,
            ctx,
            record,
            inbox,
            phase: Phase::Stopped,
            stopping: false,
            generation: 0,
            restart_count: 0,
            last_exit: None,
            last_failure: None,
            tracker: RestartTracker::default(),
            detail,
            since: now,
            hold,
        };
        (task, receiver)
    }

    pub async fn run(mut self) {
        self.emit(EventKind::ChildAdded);
        match self.hold.take() {
            Some(Hold::Paused) => {
                self.detail = HELD_PAUSED.to_owned();
                self.set_phase(Phase::Paused);
            }
            Some(Hold::Quarantined) => {
                self.detail = HELD_QUARANTINED.to_owned();
                self.set_phase(Phase::Quarantined);
            }
            None if self.spec.autostart => self.start().await,
            None => {
                self.detail = AUTOSTART_OFF.to_owned();
                self.set_phase(Phase::Stopped);
            }
        }
        loop {
            tokio::select! {
                biased;
                envelope = self.inbox.recv() => {
                    let Some(Envelope { op, reply }) = envelope else {
                        // The engine is gone: take the process down with us.
                        self.stop_process().await;
                        return;
                    };
                    let ends = matches!(op, Op::Remove | Op::Shutdown);
                    let result = self.handle(op).await;
                    let _ = reply.send(result.map(|outcome| (outcome, self.record.borrow().clone())));
                    if ends {
                        return;
                    }
                }
                wake = next_wake(&mut self.phase, &self.spec, self.tracker.attempts(), &self.ctx.pacer) => {
                    self.on_wake(wake).await;
                }
            }
        }
    }

    async fn handle(&mut self, op: Op) -> Result<String, ControlError> {
        match op {
            Op::Restart => {
                self.remember(None);
                self.stop_process().await;
                self.tracker.reset_all();
                self.restart_count += 1;
                self.detail.clear();
                self.start().await;
                self.spawn_outcome("restarted")
            }
            Op::Pause => {
                if matches!(self.phase, Phase::Paused) {
                    return Ok("already paused".to_owned());
                }
                self.stop_process().await;
                self.detail = "paused by command".to_owned();
                self.set_phase(Phase::Paused);
                self.emit(EventKind::ChildPaused);
                self.remember(Some(Hold::Paused));
                Ok("paused".to_owned())
            }
            Op::Resume => match self.phase {
                Phase::Paused | Phase::Quarantined | Phase::Stopped => {
                    self.remember(None);
                    self.tracker.reset_all();
                    self.detail.clear();
                    self.emit(EventKind::ChildResumed);
                    self.start().await;
                    self.spawn_outcome("resumed")
                }
                Phase::Backoff { .. } => Ok("already running (restart scheduled)".to_owned()),
                // A blocked child waits again, with a fresh start_timeout.
                Phase::WaitingForDependencies(ref wait) if wait.blocked => {
                    self.emit(EventKind::ChildResumed);
                    self.start().await;
                    self.spawn_outcome("resumed")
                }
                Phase::WaitingForDependencies(_) => {
                    Ok("already starting (waiting for dependencies)".to_owned())
                }
                Phase::Up { .. } => Ok("already running".to_owned()),
            },
            Op::Quarantine => {
                if matches!(self.phase, Phase::Quarantined) {
                    return Ok("already quarantined".to_owned());
                }
                self.stop_process().await;
                self.quarantine(QuarantineReason::Command);
                Ok("quarantined".to_owned())
            }
            Op::Remove => {
                self.stop_process().await;
                self.detail = "removed".to_owned();
                self.set_phase(Phase::Stopped);
                self.emit(EventKind::ChildRemoved);
                Ok("removed".to_owned())
            }
            Op::Shutdown => {
                self.stop_process().await;
                self.detail = "supervisor shut down".to_owned();
                self.set_phase(Phase::Stopped);
                Ok("stopped".to_owned())
            }
            Op::Update {
                spec,
                changed,
                restart,
            } => Ok(self.update(spec, changed, restart).await),
        }
    }

    /// Takes a new spec. A held child (paused, quarantined, stopped) stays
    /// held and keeps its hold across restarts of sgw under the new spec;
    /// a child that runs or is about to is restarted when the change needs
    /// a new process.
    async fn update(
        &mut self,
        spec: Arc<ChildSpec>,
        changed: Vec<String>,
        restart: bool,
    ) -> String {
        self.spec = spec;
        let hold = match self.phase {
            Phase::Paused => Some(Hold::Paused),
            Phase::Quarantined => Some(Hold::Quarantined),
            _ => None,
        };
        let active = matches!(
            self.phase,
            Phase::Up { .. } | Phase::Backoff { .. } | Phase::WaitingForDependencies(_)
        );
        let restarted = restart && active;
        self.emit(EventKind::ChildUpdated { changed, restarted });
        if hold.is_some() {
            self.remember(hold);
        }
        if restarted {
            self.stop_process().await;
            self.tracker.reset_all();
            self.restart_count += 1;
            self.detail.clear();
            self.start().await;
            return match self.spawn_outcome("updated and restarted") {
                Ok(outcome)
                | Err(ControlError::SpawnFailed {
                    message: outcome, ..
                }) => outcome,
                Err(error) => error.to_string(),
            };
        }
        self.touch();
        "updated".to_owned()
    }

    /// A start that failed to spawn is reported as a failed command, but
    /// the child's policy has already taken over (backoff or quarantine).
    fn spawn_outcome(&self, done: &str) -> Result<String, ControlError> {
        match &self.phase {
            Phase::Up { process, .. } => Ok(format!(
                "{done} (generation {}, pid {})",
                self.generation,
                process.pid()
            )),
            Phase::WaitingForDependencies(_) => Ok(format!("{done}; waiting for dependencies")),
            _ => Err(ControlError::SpawnFailed {
                id: self.spec.id.clone(),
                message: self.detail.clone(),
            }),
        }
    }

    async fn on_wake(&mut self, wake: Wake) {
        match wake {
            Wake::DependenciesChanged => {
                self.ctx.dependency_wakeups.fetch_add(1, Ordering::Relaxed);
                self.check_dependencies().await;
            }
            Wake::StartTimedOut => self.block().await,
            Wake::BackoffElapsed => {
                self.restart_count += 1;
                self.start().await;
            }
            Wake::Readiness(signal) => self.on_readiness(signal).await,
            Wake::Ready => {
                if let Phase::Up { process, ready, .. } = &mut self.phase {
                    *ready = true;
                    let pid = process.pid();
                    self.touch();
                    self.emit(EventKind::ChildRunning {
                        generation: self.generation,
                        pid,
                    });
                }
            }
            Wake::BackoffReset => {
                self.tracker.reset_backoff();
                self.emit(EventKind::BackoffReset);
            }
            Wake::Exited(exit) => {
                let Phase::Up { process, .. } = std::mem::replace(&mut self.phase, Phase::Stopped)
                else {
                    return;
                };
                self.exited(&process, exit);
                if !exit.is_success(&self.spec.success_codes) {
                    self.last_failure = Some(Failure::Exit(exit));
                }
                self.apply_policy(Failure::Exit(exit));
            }
        }
    }

    /// Starts the child now, or once its dependencies are RUNNING.
    async fn start(&mut self) {
        let mut wait =
            DependencyWait::new(&self.ctx, &self.spec.depends_on, self.spec.start_timeout);
        if wait.evaluate().is_empty() {
            self.spawn().await;
            return;
        }
        let pending = wait.pending().iter().map(|p| p.id.clone()).collect();
        let unavailable = wait.newly_unavailable();
        self.detail = wait.describe(self.spec.start_timeout);
        self.set_phase(Phase::WaitingForDependencies(wait));
        self.emit(EventKind::WaitingForDependencies { pending });
        for dependency in unavailable {
            self.emit(EventKind::DependencyUnavailable { dependency });
        }
    }

    /// A dependency's record changed: spawn if they are all RUNNING now,
    /// else say what is still awaited and announce what cannot come up.
    async fn check_dependencies(&mut self) {
        let Phase::WaitingForDependencies(wait) = &mut self.phase else {
            return;
        };
        if wait.evaluate().is_empty() {
            self.spawn().await;
            return;
        }
        let unavailable = wait.newly_unavailable();
        let detail = wait.describe(self.spec.start_timeout);
        if detail != self.detail {
            self.detail = detail;
            self.touch();
        }
        for dependency in unavailable {
            self.emit(EventKind::DependencyUnavailable { dependency });
        }
    }

    /// `start_timeout` passed while waiting: BLOCKED, still waiting.
    async fn block(&mut self) {
        let Phase::WaitingForDependencies(wait) = &mut self.phase else {
            return;
        };
        if wait.evaluate().is_empty() {
            self.spawn().await;
            return;
        }
        wait.blocked = true;
        let waited = wait.started.elapsed();
        let pending = wait.pending().to_vec();
        self.detail = wait.describe(self.spec.start_timeout);
        self.since = SystemTime::now();
        self.touch();
        self.emit(EventKind::ChildBlocked { waited, pending });
    }

    /// What the readiness module reports about the running process.
    async fn on_readiness(&mut self, signal: Signal) {
        let Phase::Up { ready, .. } = &mut self.phase else {
            return;
        };
        match signal {
            // RUNNING follows once `ready_after` has passed too.
            Signal::Ready | Signal::Status => {
                if signal == Signal::Ready && self.detail == RELOADING {
                    self.detail.clear();
                }
                self.touch();
            }
            Signal::Reloading => {
                *ready = false;
                self.detail = RELOADING.to_owned();
                self.touch();
            }
            Signal::Stopping => {
                self.detail = "stopping (STOPPING=1)".to_owned();
                self.touch();
            }
            Signal::Unhealthy(cause) => {
                self.emit(EventKind::ChildUnhealthy {
                    generation: self.generation,
                    cause: cause.clone(),
                });
                self.stop_process().await;
                let failure = Failure::Unhealthy(cause);
                self.last_failure = Some(failure.clone());
                self.apply_policy(failure);
            }
        }
    }

    async fn spawn(&mut self) {
        self.generation += 1;
        let mut watch = match Watch::prepare(&self.spec, &self.ctx) {
            Ok(watch) => Box::new(watch),
            Err(error) => return self.spawn_failed(error),
        };
        match Process::spawn(
            &self.spec,
            self.generation,
            &self.ctx.containment,
            &self.ctx.output,
            &watch.env(),
        )
        .await
        {
            Ok(process) => {
                let pid = process.pid();
                self.detail.clear();
                watch.started(&process);
                // With no readiness delay or condition the process counts
                // as RUNNING at once, so a command's answer already says so.
                let ready = self.spec.ready_after.is_zero() && watch.satisfied();
                self.set_phase(Phase::Up {
                    process,
                    ready,
                    watch,
                });
                self.emit(EventKind::ChildStarting {
                    generation: self.generation,
                    pid,
                });
                if ready {
                    self.emit(EventKind::ChildRunning {
                        generation: self.generation,
                        pid,
                    });
                }
            }
            Err(error) => self.spawn_failed(error),
        }
    }

    /// No exit is made up: the failure is recorded as what it is, and the
    /// policy backs off and eventually quarantines as for a failed run.
    fn spawn_failed(&mut self, error: crate::model::SpawnError) {
        self.detail = error.to_string();
        self.last_failure = Some(Failure::Spawn(error.clone()));
        self.touch();
        self.emit(EventKind::SpawnFailed {
            generation: self.generation,
            error: error.clone(),
        });
        self.apply_policy(Failure::Spawn(error));
    }

    /// What follows a run that ended on its own (`ended`: how).
    fn apply_policy(&mut self, ended: Failure) {
        match self
            .tracker
            .on_end(&self.spec, &ended, Instant::now(), fastrand::f64())
        {
            Decision::Restart { attempt, delay } => {
                let until = Instant::now() + delay;
                self.set_phase(Phase::Backoff {
                    until,
                    until_wall: SystemTime::now() + delay,
                });
                self.emit(EventKind::RestartScheduled { attempt, delay });
            }
            Decision::Stop => self.set_phase(Phase::Stopped),
            Decision::Quarantine { restarts, window } => {
                self.quarantine(QuarantineReason::BudgetExhausted {
                    restarts,
                    window,
                    after: ended,
                });
            }
        }
    }

    fn quarantine(&mut self, reason: QuarantineReason) {
        self.detail = reason.to_string();
        self.set_phase(Phase::Quarantined);
        self.emit(EventKind::ChildQuarantined { reason });
        self.remember(Some(Hold::Quarantined));
    }

    /// Records the hold an operator (or the budget) put the child in, so
    /// the next start of sgw keeps it.
    fn remember(&self, hold: Option<Hold>) {
        if let Some(intent) = &self.ctx.intent {
            intent.record(Change::Hold(Arc::clone(&self.spec), hold));
        }
    }

    /// Stops the process if there is one (stop signal, timeout, SIGKILL),
    /// or cancels a pending start. Leaves the phase `Stopped`.
    async fn stop_process(&mut self) {
        if !matches!(self.phase, Phase::Up { .. }) {
            self.set_phase(Phase::Stopped);
            return;
        }
        let (signal, timeout) = (self.spec.stop_signal, self.spec.stop_timeout);
        self.stopping = true;
        self.touch();
        self.emit(EventKind::ChildStopping {
            generation: self.generation,
            signal,
            timeout,
        });
        let Phase::Up { process, .. } = &mut self.phase else {
            return;
        };
        let stopped = process.stop(signal, timeout).await;
        let Phase::Up { process, .. } = std::mem::replace(&mut self.phase, Phase::Stopped) else {
            return;
        };
        self.stopping = false;
        if stopped.escalated {
            self.emit(EventKind::StopEscalated {
                generation: process.generation,
                pid: process.pid(),
            });
        }
        self.exited(&process, stopped.exit);
        self.set_phase(Phase::Stopped);
    }

    fn exited(&mut self, process: &Process, exit: Exit) {
        if let Some(oom_kills) = process.oom_kills() {
            self.emit(EventKind::OomKilled {
                generation: process.generation,
                oom_kills,
                memory_max: self.spec.memory_max,
            });
        }
        self.last_exit = Some(exit);
        self.emit(EventKind::ChildExited {
            generation: process.generation,
            pid: process.pid(),
            exit,
            uptime: process.started.elapsed(),
        });
    }

    fn set_phase(&mut self, phase: Phase) {
        self.phase = phase;
        self.since = SystemTime::now();
        self.touch();
    }

    fn emit(&self, kind: EventKind) {
        self.ctx.events.publish(Event::child(&self.spec.id, kind));
    }

    /// Publishes the current record for readers and dependents.
    fn touch(&mut self) {
        let mut waiting_for = Vec::new();
        let (state, pid, backoff_until) = match &self.phase {
            _ if self.stopping => (ChildState::Stopping, self.pid(), None),
            Phase::WaitingForDependencies(wait) => {
                waiting_for = wait.pending().to_vec();
                let state = if wait.blocked {
                    ChildState::Blocked
                } else {
                    ChildState::Starting
                };
                (state, None, None)
            }
            Phase::Up { process, ready, .. } => (
                if *ready {
                    ChildState::Running
                } else {
                    ChildState::Starting
                },
                Some(process.pid()),
                None,
            ),
            Phase::Backoff { until_wall, .. } => (ChildState::Backoff, None, Some(*until_wall)),
            Phase::Stopped => (ChildState::Stopped, None, None),
            Phase::Paused => (ChildState::Paused, None, None),
            Phase::Quarantined => (ChildState::Quarantined, None, None),
        };
        let status_text = match &self.phase {
            Phase::Up { watch, .. } => watch.status_text().to_owned(),
            _ => String::new(),
        };
        let record = ChildRecord {
            id: self.spec.id.clone(),
            state,
            pid,
            generation: self.generation,
            restart_count: self.restart_count,
            last_exit: self.last_exit,
            last_failure: self.last_failure.clone(),
            waiting_for,
            backoff_until,
            budget: self
                .tracker
                .status(&self.spec.restart_budget, Instant::now()),
            since: self.since,
            detail: self.detail.clone(),
            usage: None,
            status_text,
            spec: Arc::clone(&self.spec),
        };
        self.record.send_replace(record);
        self.ctx.state_changed();
    }

    fn pid(&self) -> Option<u32> {
        match &self.phase {
            Phase::Up { process, .. } => Some(process.pid()),
            _ => None,
        }
    }
}

/// Waits for whatever the current phase is waiting for. Phases with nothing
/// to wait for never wake.
async fn next_wake(phase: &mut Phase, spec: &ChildSpec, attempts: u32, pacer: &Pacer) -> Wake {
    match phase {
        Phase::WaitingForDependencies(wait) => {
            let deadline = tokio::time::Instant::from_std(wait.deadline);
            let blocked = wait.blocked;
            tokio::select! {
                () = wait.changed() => Wake::DependenciesChanged,
                () = sleep_until(deadline), if !blocked => Wake::StartTimedOut,
            }
        }
        Phase::Up {
            process,
            ready,
            watch,
        } => {
            let started = tokio::time::Instant::from_std(process.started);
            // RUNNING needs both `ready_after` and the `ready` condition.
            let settle = (!*ready && watch.satisfied()).then_some(started + spec.ready_after);
            let reset = (*ready && attempts > 0).then_some(started + spec.backoff.reset_after);
            tokio::select! {
                exit = process.wait() => Wake::Exited(exit),
                () = readiness::at(settle) => Wake::Ready,
                () = readiness::at(reset) => Wake::BackoffReset,
                signal = watch.next(*ready) => Wake::Readiness(signal),
            }
        }
        Phase::Backoff { until, .. } => {
            sleep_until(tokio::time::Instant::from_std(*until)).await;
            pacer.ready().await;
            Wake::BackoffElapsed
        }
        Phase::Stopped | Phase::Paused | Phase::Quarantined => pending().await,
    }
}
