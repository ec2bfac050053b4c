//! Security as one guard around the control port. [`Guarded`] wraps any
//! [`ControlPlane`] and is what transports call: each of its operations
//! knows its [`MethodClass`], and applies, once and in this order, may this
//! caller connect (socket owner, `allowed_uids/gids`), may it use this class,
//! is it within its rate; for commands also the AddChild allowlist,
//! idempotency and the audit before and after. Transports only extract the
//! [`Caller`] (from peer credentials) and map [`ControlError`]s, which
//! include the guard's [`Denial`]s. Size limits sit on the codecs,
//! connection admission at accept (`transport::admission`).

mod audit;
mod guard;
mod idempotency;

use std::num::NonZeroU32;
use std::sync::Arc;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

pub use crate::config::{
    AddChildConfig, AuditConfig, AuditFailure, IdempotencyConfig, Principals, RateLimitConfig,
    SecurityConfig,
};
pub use audit::{Audit, AuditRecord, denials_path};
pub use guard::{ChangeTarget, Guarded, Operation};

pub use crate::control::Denial;
use crate::control::{Command, CommandReport, CommandRequest, ControlError, ControlPlane};
use crate::model::CommandKind;
use crate::transport::peer::Caller;
use idempotency::{Claim, Idempotency};

/// Operations grouped by what they can do; see [`Operation::class`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MethodClass {
    /// Info, state, child, subscriptions, health, reflection.
    Read,
    /// Restart, pause, resume, quarantine, add; the audit log.
    Write,
    /// Remove, shutdown.
    Destructive,
}

impl MethodClass {
    pub fn of_command(kind: CommandKind) -> Self {
        match kind {
            CommandKind::RemoveChild | CommandKind::ShutdownTree => MethodClass::Destructive,
            // Destructive only when the plan removes children, which the
            // guard knows once the plan is made (`Guarded::apply_change`).
            CommandKind::ReloadConfig | CommandKind::ScaleChild => MethodClass::Write,
            CommandKind::RestartChild
            | CommandKind::PauseChild
            | CommandKind::ResumeChild
            | CommandKind::QuarantineChild
            | CommandKind::AddChild => MethodClass::Write,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MethodClass::Read => "read",
            MethodClass::Write => "write",
            MethodClass::Destructive => "destructive",
        }
    }
}

/// The policy and state behind [`Guarded`]: rules, limiter, idempotency
/// memory, audit trail. Cheap to share (`Arc`).
pub struct Security {
    config: SecurityConfig,
    owner_uid: u32,
    limiter: DefaultKeyedRateLimiter<u32>,
    exempt: Vec<u32>,
    idempotency: Idempotency,
    audit: Audit,
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Security")
            .field("owner_uid", &self.owner_uid)
            .field("audit", &self.audit)
            .finish()
    }
}

impl Default for Security {
    fn default() -> Self {
        Self::new(SecurityConfig::default())
    }
}

fn names(principals: &Principals, owner: u32) -> String {
    let mut parts = vec![format!("uid {owner} (the daemon)"), "root".to_owned()];
    parts.extend(principals.uids.iter().map(|u| format!("uid {u}")));
    parts.extend(principals.gids.iter().map(|g| format!("gid {g}")));
    parts.join(", ")
}

impl Security {
    pub fn new(config: SecurityConfig) -> Self {
        let owner_uid = nix::unistd::geteuid().as_raw();
        let per_second = NonZeroU32::new(config.rate_limit.per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(config.rate_limit.burst).unwrap_or(NonZeroU32::MIN);
        let exempt = config
            .rate_limit
            .exempt_uids
            .clone()
            .unwrap_or_else(|| vec![owner_uid, 0]);
        Self {
            limiter: RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst)),
            exempt,
            idempotency: Idempotency::new(config.idempotency.ttl, config.idempotency.max_entries),
            audit: Audit::new(config.audit.clone()),
            owner_uid,
            config,
        }
    }

    pub fn audit(&self) -> &Audit {
        &self.audit
    }

    fn is_owner(&self, peer: &Caller) -> bool {
        peer.uid == self.owner_uid || peer.uid == 0
    }

    /// The daemon's effective uid: with root, the owner of the socket.
    pub fn owner_uid(&self) -> u32 {
        self.owner_uid
    }

    /// Control point 1-2: may this peer use the socket at all?
    pub fn admit(&self, peer: &Caller) -> Result<(), Denial> {
        self.admit_ids(peer.uid, peer.gid)
    }

    /// [`admit`](Self::admit) from the kernel's credentials alone, as the
    /// accept loop has them.
    pub fn admit_ids(&self, uid: u32, gid: u32) -> Result<(), Denial> {
        if uid == self.owner_uid
            || uid == 0
            || self.config.allowed_uids.contains(&uid)
            || self.config.allowed_gids.contains(&gid)
        {
            return Ok(());
        }
        Err(Denial::PeerNotAllowed {
            uid,
            allowed: names(
                &Principals {
                    uids: self.config.allowed_uids.clone(),
                    gids: self.config.allowed_gids.clone(),
                },
                self.owner_uid,
            ),
        })
    }

    /// Control point 3: may this peer call this class of method?
    pub fn authorize(&self, peer: &Caller, class: MethodClass) -> Result<(), Denial> {
        let rule = match class {
            MethodClass::Read => &self.config.read,
            MethodClass::Write => &self.config.write,
            MethodClass::Destructive => &self.config.destructive,
        };
        let allowed = self.is_owner(peer)
            || (class == MethodClass::Read && rule.is_empty())
            || rule.contains(peer.uid, peer.gid);
        if allowed {
            return Ok(());
        }
        Err(Denial::NotAuthorized {
            who: peer.describe(),
            class: class.as_str(),
            needs: names(rule, self.owner_uid),
        })
    }

    /// Control point 6: the caller's uid is within its rate.
    pub fn rate_limit(&self, peer: &Caller) -> Result<(), Denial> {
        if self.exempt.contains(&peer.uid) {
            return Ok(());
        }
        self.limiter
            .check_key(&peer.uid)
            .map_err(|not_until| Denial::RateLimited {
                uid: peer.uid,
                retry_after: not_until.wait_time_from(DefaultClock::default().now()),
            })
    }

    /// Every call, before it reaches the control plane: admission,
    /// authorization, rate. Denials are audited (aggregated). `method`
    /// names the call in the audit record; it is only built for a denial,
    /// so the allowed path does not allocate.
    pub(crate) async fn check_call(
        &self,
        peer: &Caller,
        method: impl FnOnce() -> String,
        class: MethodClass,
    ) -> Result<(), Denial> {
        let result = self
            .admit(peer)
            .and_then(|()| self.authorize(peer, class))
            .and_then(|()| self.rate_limit(peer));
        if let Err(denial) = &result {
            self.audit_denial(peer, &method(), denial).await;
        }
        result
    }

    /// Denials go to their own trail, one record per uid and code per
    /// interval plus a count, so a denied client cannot flood the disk or
    /// rotate the command records away.
    async fn audit_denial(&self, peer: &Caller, method: &str, denial: &Denial) {
        let record = AuditRecord::new(peer, method, "deny", denial.code());
        self.audit.deny(record).await;
    }

    /// Control point 9: AddChild may only start allowlisted programs.
    fn check_add_child(&self, command: &Command) -> Result<(), Denial> {
        let Command::Add(spec) = command else {
            return Ok(());
        };
        let program = spec.command.first().cloned().unwrap_or_default();
        if self
            .config
            .add_child
            .allowed_commands
            .iter()
            .any(|allowed| allowed.as_os_str() == program.as_str())
        {
            Ok(())
        } else {
            Err(Denial::CommandNotAllowed { program })
        }
    }

    /// Runs a command with the allowlist, idempotency (control point 8) and
    /// audit (7) around it. The command runs in its own task, so a caller
    /// that disconnects cannot leave it half-done or half-recorded.
    pub(super) async fn run_command<C: ControlPlane>(
        self: &Arc<Self>,
        control: &Arc<C>,
        peer: &Arc<Caller>,
        method: &str,
        request: CommandRequest,
    ) -> Result<(CommandReport, bool), ControlError> {
        let base = |decision, outcome: &str| {
            let mut record = AuditRecord::new(peer, method, decision, outcome);
            let meta = request.meta();
            record.request_id = meta.request_id.clone();
            record.requested_by = meta.requested_by.clone();
            record.reason = meta.reason.clone();
            record
        };
        if let Err(denial) = self.check_add_child(request.command()) {
            let _ = self.audit.write(base("deny", denial.code())).await;
            return Err(denial.into());
        }
        let ticket = if request.meta().request_id.is_empty() {
            None
        } else {
            match self.idempotency.claim(peer.uid, &request).await {
                Claim::Fresh(ticket) => Some(ticket),
                Claim::Replay(outcome) => {
                    let outcome = *outcome;
                    let code = outcome.as_ref().map_or_else(ControlError::code, |_| "ok");
                    let _ = self.audit.write(base("replay", code)).await;
                    return outcome.map(|report| (report, true));
                }
                Claim::Conflict => {
                    let denial = Denial::RequestIdConflict {
                        request_id: request.meta().request_id.clone(),
                    };
                    let _ = self.audit.write(base("deny", denial.code())).await;
                    return Err(denial.into());
                }
            }
        };
        if let Err(error) = self.audit.write(base("allow", "pending")).await
            && self.audit.fails_closed()
        {
            tracing::error!(%error, "audit unavailable: refusing a command");
            let denial = Denial::AuditUnavailable {
                reason: error.to_string(),
            };
            // Not executed: the unfinished ticket is forgotten, so a retry
            // with the same id may run once the audit works again.
            return Err(denial.into());
        }
        let pipeline = Arc::clone(self);
        let control = Arc::clone(control);
        let result_record = base("allow", "");
        let task = tokio::spawn(async move {
            let outcome = control.execute(request).await;
            let mut record = result_record;
            record.outcome = outcome
                .as_ref()
                .map_or_else(|e| e.code().to_owned(), |_| "ok".to_owned());
            let written = pipeline.audit.write(record).await;
            if let Some(ticket) = ticket {
                pipeline.idempotency.finish(ticket, &outcome);
            }
            (outcome, written)
        });
        let (outcome, written) = task.await.map_err(|error| ControlError::Internal {
            message: format!("the command task failed: {error}"),
        })?;
        if let Err(error) = written {
            tracing::error!(%error, "audit write failed after a command");
        }
        outcome.map(|report| (report, false))
    }
}
