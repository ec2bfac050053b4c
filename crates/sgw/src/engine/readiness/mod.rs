//! Readiness and liveness of one run of a child: what its `ready`,
//! `health` and `watchdog` keys ask for. The child task owns one [`Watch`]
//! per run and awaits [`Watch::next`] beside the process's exit; each
//! [`Signal`] is something the task acts on (the record, the state, a
//! stop). Everything here is per run: a restart starts from scratch.

mod exec;
mod http;
mod notify;
mod probe;
mod tcp;

use std::collections::VecDeque;
use std::future::pending;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::{Instant, sleep_until};

use super::Context;
use super::containment::Membership;
use super::process::Process;
use crate::model::{
    ChildSpec, HEALTH_THRESHOLD, Probe, READY_THRESHOLD, Ready, SpawnError, SpawnStage, Unhealthy,
};
use notify::{Datagram, NotifySocket};

/// What happened that the child task acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Signal {
    /// The readiness condition holds now (`READY=1`, or the probe's
    /// threshold of successes); RUNNING once `ready_after` has passed too.
    Ready,
    /// `RELOADING=1`: not ready until the next `READY=1`.
    Reloading,
    /// `STOPPING=1`: the child is shutting down on its own.
    Stopping,
    /// `STATUS=` changed (see [`Watch::status_text`]).
    Status,
    /// The run is not healthy any more: end it.
    Unhealthy(Unhealthy),
}

/// A probe's schedule and its current streak.
#[derive(Debug)]
struct Prober {
    probe: Probe,
    threshold: u32,
    due: Instant,
    /// Consecutive results of the kind that counts (successes for
    /// readiness, failures for liveness).
    streak: u32,
    /// The last failure, for the event.
    last_error: String,
}

impl Prober {
    /// Runs the probe once and schedules the next run.
    async fn check(&mut self, spec: &ChildSpec, ctx: &Context) -> Result<(), String> {
        let result = probe::run(
            &self.probe.check,
            self.probe.timeout,
            spec,
            &ctx.containment,
        )
        .await;
        self.due = Instant::now() + self.probe.interval;
        result
    }

    fn new(probe: &Probe, default_threshold: u32, due: Instant) -> Self {
        Self {
            threshold: probe.threshold(default_threshold),
            probe: probe.clone(),
            due,
            streak: 0,
            last_error: String::new(),
        }
    }
}

/// The readiness and liveness state of one run.
pub(super) struct Watch {
    spec: Arc<ChildSpec>,
    ctx: Arc<Context>,
    notify: Option<NotifySocket>,
    /// Who may speak on the notify socket (set once the process exists).
    membership: Option<Membership>,
    ready_probe: Option<Prober>,
    health_probe: Option<Prober>,
    /// The readiness condition holds (always, without `ready`).
    satisfied: bool,
    /// When a child that is not ready fails (`ready_timeout`).
    ready_deadline: Option<Instant>,
    watchdog: Option<Duration>,
    watchdog_deadline: Option<Instant>,
    status_text: String,
    /// Signals decided but not yet handed out (one datagram may say
    /// several things).
    queued: VecDeque<Signal>,
    /// Datagrams dropped because their sender was not the child's.
    foreign: u64,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch")
            .field("notify", &self.notify)
            .field("satisfied", &self.satisfied)
            .field("status_text", &self.status_text)
            .finish_non_exhaustive()
    }
}

impl Watch {
    /// What the next run needs before it is spawned: its notify socket,
    /// when it speaks sd_notify.
    pub fn prepare(spec: &Arc<ChildSpec>, ctx: &Arc<Context>) -> Result<Self, SpawnError> {
        let notify = if spec.uses_notify() {
            let socket =
                NotifySocket::bind(spec, ctx.containment.state_dir()).map_err(|error| {
                    SpawnError {
                        stage: SpawnStage::Notify,
                        path: ctx
                            .containment
                            .state_dir()
                            .map_or_else(std::env::temp_dir, |dir| dir.join("notify")),
                        message: error.to_string(),
                    }
                })?;
            Some(socket)
        } else {
            None
        };
        Ok(Self {
            spec: Arc::clone(spec),
            ctx: Arc::clone(ctx),
            notify,
            membership: None,
            ready_probe: None,
            health_probe: None,
            satisfied: spec.ready.is_none(),
            ready_deadline: None,
            watchdog: spec.watchdog,
            watchdog_deadline: None,
            status_text: String::new(),
            queued: VecDeque::new(),
            foreign: 0,
        })
    }

    /// The environment the child gets, as systemd sets it for
    /// `Type=notify` and `WatchdogSec=`. `WATCHDOG_PID` is not set: the
    /// pid is not known before the fork, and sd_notify's
    /// `sd_watchdog_enabled` treats an unset `WATCHDOG_PID` as "this
    /// process".
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = Vec::new();
        if let Some(socket) = &self.notify {
            env.push(("NOTIFY_SOCKET", socket.path().display().to_string()));
        }
        if let Some(watchdog) = self.watchdog {
            env.push(("WATCHDOG_USEC", watchdog.as_micros().to_string()));
        }
        env
    }

    /// The process exists: the clocks start (`ready_timeout`, the
    /// watchdog, the probes) and its processes may speak. Who belongs to
    /// the run is only needed to check notify senders, so it is only taken
    /// then (a spawn storm of plain children pays nothing).
    pub fn started(&mut self, process: &Process) {
        let now = Instant::now();
        if self.notify.is_some() {
            self.membership = Some(process.membership());
        }
        if self.spec.ready.is_some() {
            self.ready_deadline = Some(now + self.spec.ready_timeout);
        }
        if let Some(Ready::Probe(probe)) = &self.spec.ready {
            self.ready_probe = Some(Prober::new(probe, READY_THRESHOLD, now));
        }
        if let Some(probe) = &self.spec.health {
            self.health_probe = Some(Prober::new(probe, HEALTH_THRESHOLD, now + probe.interval));
        }
        self.watchdog_deadline = self.watchdog.map(|timeout| now + timeout);
    }

    /// Whether the readiness condition holds (`ready_after` aside).
    pub fn satisfied(&self) -> bool {
        self.satisfied
    }

    /// The last `STATUS=` of this run.
    pub fn status_text(&self) -> &str {
        &self.status_text
    }

    /// The next signal. `running`: the child is RUNNING, so its liveness
    /// probe runs. Cancel-safe: a probe cut short runs again at once.
    pub async fn next(&mut self, running: bool) -> Signal {
        loop {
            if let Some(signal) = self.queued.pop_front() {
                return signal;
            }
            let ready_due = self
                .ready_probe
                .as_ref()
                .filter(|_| !self.satisfied)
                .map(|p| p.due);
            let health_due = self
                .health_probe
                .as_ref()
                .filter(|_| running)
                .map(|p| p.due);
            let ready_deadline = self.ready_deadline.filter(|_| !self.satisfied);
            tokio::select! {
                received = datagram(self.notify.as_ref()) => self.on_datagram(received),
                () = at(ready_deadline) => return Signal::Unhealthy(self.not_ready()),
                () = at(self.watchdog_deadline) => {
                    self.watchdog_deadline = None;
                    return Signal::Unhealthy(Unhealthy::Watchdog {
                        timeout: self.watchdog.unwrap_or_default(),
                    });
                }
                () = at(ready_due) => {
                    if let Some(signal) = self.probe_ready().await {
                        return signal;
                    }
                }
                () = at(health_due) => {
                    if let Some(signal) = self.probe_health().await {
                        return signal;
                    }
                }
            }
        }
    }

    async fn probe_ready(&mut self) -> Option<Signal> {
        let prober = self.ready_probe.as_mut()?;
        match prober.check(&self.spec, &self.ctx).await {
            Ok(()) => {
                prober.streak += 1;
                if prober.streak >= prober.threshold {
                    self.satisfied = true;
                    return Some(Signal::Ready);
                }
            }
            Err(error) => {
                prober.streak = 0;
                prober.last_error = error;
            }
        }
        None
    }

    async fn probe_health(&mut self) -> Option<Signal> {
        let prober = self.health_probe.as_mut()?;
        match prober.check(&self.spec, &self.ctx).await {
            Ok(()) => prober.streak = 0,
            Err(error) => {
                prober.streak += 1;
                tracing::debug!(
                    child = %self.spec.id,
                    probe = %prober.probe.check,
                    failures = prober.streak,
                    %error,
                    "health probe failed"
                );
                if prober.streak >= prober.threshold {
                    let failures = prober.streak;
                    prober.streak = 0;
                    return Some(Signal::Unhealthy(Unhealthy::Probe {
                        probe: prober.probe.check.to_string(),
                        output: error,
                        failures,
                    }));
                }
            }
        }
        None
    }

    fn not_ready(&mut self) -> Unhealthy {
        self.ready_deadline = None;
        let (probe, output) = match (&self.spec.ready, &self.ready_probe) {
            (Some(Ready::Probe(probe)), Some(prober)) => (
                probe.check.to_string(),
                if prober.last_error.is_empty() {
                    "no successful probe".to_owned()
                } else {
                    prober.last_error.clone()
                },
            ),
            _ => {
                let mut seen = "no READY=1 came".to_owned();
                if self.foreign > 0 {
                    seen.push_str(&format!(
                        "; {} datagram{} from processes not the child's dropped",
                        self.foreign,
                        if self.foreign == 1 { "" } else { "s" }
                    ));
                }
                if !self.status_text.is_empty() {
                    seen.push_str(&format!("; last STATUS={}", self.status_text));
                }
                ("notify".to_owned(), seen)
            }
        };
        Unhealthy::NotReady {
            timeout: self.spec.ready_timeout,
            probe,
            output,
        }
    }

    /// Applies one datagram, if its sender is one of the child's
    /// processes, and queues what it means.
    fn on_datagram(&mut self, received: std::io::Result<Datagram>) {
        let datagram = match received {
            Ok(datagram) => datagram,
            Err(error) => {
                tracing::warn!(child = %self.spec.id, %error, "reading the notify socket failed");
                return;
            }
        };
        let member = datagram
            .pid
            .is_some_and(|pid| self.membership.as_ref().is_some_and(|m| m.contains(pid)));
        if !member {
            self.foreign += 1;
            // Powers of two: a flood does not flood the log too.
            if self.foreign.is_power_of_two() {
                tracing::warn!(
                    child = %self.spec.id,
                    sender = ?datagram.pid,
                    dropped = self.foreign,
                    "notify datagram from a process that is not the child's: dropped"
                );
            }
            return;
        }
        if datagram.oversized {
            tracing::warn!(child = %self.spec.id, "notify datagram over 4096 bytes: dropped");
            return;
        }
        for line in datagram.text.lines() {
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            self.apply(key, value);
        }
    }

    fn apply(&mut self, key: &str, value: &str) {
        let notify = self.spec.ready == Some(Ready::Notify);
        match (key, value) {
            ("READY", "1") if notify && !self.satisfied => {
                self.satisfied = true;
                self.ready_deadline = None;
                self.queued.push_back(Signal::Ready);
            }
            ("RELOADING", "1") if notify => {
                self.satisfied = false;
                self.ready_deadline = Some(Instant::now() + self.spec.ready_timeout);
                self.queued.push_back(Signal::Reloading);
            }
            ("STOPPING", "1") => self.queued.push_back(Signal::Stopping),
            ("STATUS", text) => {
                self.status_text = probe::bounded(text);
                self.queued.push_back(Signal::Status);
            }
            ("MAINPID", pid) => match pid.parse::<u32>() {
                Ok(pid) if self.membership.as_ref().is_some_and(|m| m.contains(pid)) => {
                    tracing::info!(child = %self.spec.id, main_pid = pid, "MAINPID accepted");
                }
                _ => tracing::warn!(
                    child = %self.spec.id,
                    main_pid = pid,
                    "MAINPID is not a process of the child: ignored"
                ),
            },
            ("WATCHDOG", "1") => {
                self.watchdog_deadline = self.watchdog.map(|t| Instant::now() + t);
            }
            ("WATCHDOG", "trigger") if self.watchdog.is_some() => {
                self.watchdog_deadline = Some(Instant::now());
            }
            ("WATCHDOG_USEC", usec) => {
                if let Ok(usec @ 1..) = usec.parse::<u64>() {
                    let timeout = Duration::from_micros(usec);
                    self.watchdog = Some(timeout);
                    self.watchdog_deadline = Some(Instant::now() + timeout);
                }
            }
            _ => {}
        }
    }
}

async fn datagram(socket: Option<&NotifySocket>) -> std::io::Result<Datagram> {
    match socket {
        Some(socket) => socket.recv().await,
        None => pending().await,
    }
}

/// Resolves at `deadline`; never without one.
pub(super) async fn at(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => sleep_until(deadline).await,
        None => pending().await,
    }
}
