//! The security pipeline both protocols call, in this order: may this peer
//! connect (socket owner, `allowed_uids/gids`), may it call this class of
//! method, is it within its rate, and, for commands: AddChild allowlist,
//! idempotency, audit before and after. Peer credentials come from the
//! kernel (see `transport::peer`); size limits sit on the codecs.

mod audit;
mod config;
mod idempotency;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

pub use audit::{Audit, AuditRecord, denials_path};
pub use config::{
    AddChildConfig, AuditConfig, AuditFailure, IdempotencyConfig, Principals, RateLimitConfig,
    SecurityConfig,
};

use crate::control::{Command, CommandReport, CommandRequest, ControlError, ControlPlane};
use crate::model::CommandKind;
use crate::transport::peer::PeerIdentity;
use idempotency::{Claim, Idempotency};

const CONTROL_SERVICE: &str = "supervisor.gateway.v1.ControlService";
const JOURNAL_SERVICE: &str = "supervisor.gateway.v1.JournalService";

/// Methods grouped by what they can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MethodClass {
    /// Info, state, child, subscriptions, health, reflection.
    Read,
    /// Restart, pause, resume, quarantine, add.
    Write,
    /// Remove, shutdown.
    Destructive,
}

impl MethodClass {
    pub fn of_command(kind: CommandKind) -> Self {
        match kind {
            CommandKind::RemoveChild | CommandKind::ShutdownTree => MethodClass::Destructive,
            CommandKind::RestartChild
            | CommandKind::PauseChild
            | CommandKind::ResumeChild
            | CommandKind::QuarantineChild
            | CommandKind::AddChild => MethodClass::Write,
        }
    }

    /// The class of a gRPC method path such as
    /// `/supervisor.gateway.v1.ControlService/RestartChild`, or `None` for a
    /// path no service here declares. Command RPCs take the class of their
    /// [`CommandKind`], so a new command cannot slip in as a read; the
    /// caller denies `None` (fail closed).
    pub fn of_grpc_path(path: &str) -> Option<Self> {
        let (service, method) = path.strip_prefix('/')?.split_once('/')?;
        let read = |known: &[&str]| known.contains(&method).then_some(MethodClass::Read);
        match service {
            // The audit trail names other callers and their programs: it is
            // for those who may command, not for every reader.
            CONTROL_SERVICE if method == "GetAuditLog" => Some(MethodClass::Write),
            CONTROL_SERVICE => read(&["GetInfo", "GetState", "GetChild"]).or_else(|| {
                CommandKind::ALL
                    .into_iter()
                    .find(|kind| kind.rpc_name() == method)
                    .map(Self::of_command)
            }),
            JOURNAL_SERVICE => read(&["SubscribeEvents", "TailLogs"]),
            "grpc.health.v1.Health" => read(&["Check", "Watch", "List"]),
            "grpc.reflection.v1.ServerReflection" | "grpc.reflection.v1alpha.ServerReflection" => {
                read(&["ServerReflectionInfo"])
            }
            _ => None,
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

/// Why the pipeline refused a call. Mapped once to gRPC status
/// (`transport::grpc::status`) and once to legacy codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    #[error("uid {uid} may not connect: only {allowed} may")]
    PeerNotAllowed { uid: u32, allowed: String },
    #[error("{who} may not call {class} methods: they need {needs}")]
    NotAuthorized {
        who: String,
        class: &'static str,
        needs: String,
    },
    #[error("rate limit for uid {uid} exceeded: retry in {} ms", retry_after.as_millis())]
    RateLimited { uid: u32, retry_after: Duration },
    #[error("request id {request_id:?} was already used for a different command")]
    RequestIdConflict { request_id: String },
    #[error(
        "the audit record could not be written ({reason}); write and destructive commands are refused"
    )]
    AuditUnavailable { reason: String },
    #[error(
        "AddChild may only start programs listed in [security.add_child] allowed_commands; {program} is not"
    )]
    CommandNotAllowed { program: String },
    /// A method without an authorization class: refused rather than
    /// guessed, so a new RPC is closed until someone classifies it.
    #[error("{method} has no authorization class and is refused")]
    Unclassified { method: String },
    /// Streams hold memory for as long as they are open; each uid gets a
    /// bounded number.
    #[error("uid {uid} has {max} streams open already; close one first")]
    TooManyStreams { uid: u32, max: usize },
}

impl Denial {
    /// The snake_case code both protocols report.
    pub fn code(&self) -> &'static str {
        match self {
            Denial::PeerNotAllowed { .. } => "peer_not_allowed",
            Denial::NotAuthorized { .. } => "permission_denied",
            Denial::RateLimited { .. } => "rate_limited",
            Denial::RequestIdConflict { .. } => "request_id_conflict",
            Denial::AuditUnavailable { .. } => "audit_unavailable",
            Denial::CommandNotAllowed { .. } => "command_not_allowed",
            Denial::Unclassified { .. } => "method_unclassified",
            Denial::TooManyStreams { .. } => "too_many_streams",
        }
    }

    /// When the same call may succeed: the one source both protocols use
    /// (gRPC `RetryInfo`, legacy `retryable`).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Denial::RateLimited { retry_after, .. } => Some(*retry_after),
            Denial::AuditUnavailable { .. } => Some(crate::control::DEFAULT_RETRY_AFTER),
            Denial::PeerNotAllowed { .. }
            | Denial::NotAuthorized { .. }
            | Denial::RequestIdConflict { .. }
            | Denial::CommandNotAllowed { .. }
            | Denial::Unclassified { .. }
            | Denial::TooManyStreams { .. } => None,
        }
    }

    pub fn is_retryable(&self) -> bool {
        self.retry_after().is_some()
    }
}

/// What a command through the pipeline can end with.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    Denied(Denial),
    Failed(ControlError),
}

/// The pipeline. Cheap to share (`Arc`).
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

    fn is_owner(&self, peer: &PeerIdentity) -> bool {
        peer.uid == self.owner_uid || peer.uid == 0
    }

    /// The daemon's effective uid: with root, the owner of the socket.
    pub fn owner_uid(&self) -> u32 {
        self.owner_uid
    }

    /// Control point 1-2: may this peer use the socket at all?
    pub fn admit(&self, peer: &PeerIdentity) -> Result<(), Denial> {
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
    pub fn authorize(&self, peer: &PeerIdentity, class: MethodClass) -> Result<(), Denial> {
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
    pub fn rate_limit(&self, peer: &PeerIdentity) -> Result<(), Denial> {
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

    /// Every call, before any handler: admission, authorization, rate.
    /// Denials are audited.
    /// `method` names the call in the audit record; it is only built for a
    /// denial, so the allowed path does not allocate.
    pub async fn check_call(
        &self,
        peer: &PeerIdentity,
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

    /// Refuses (and audits) a call to a method without a class.
    pub async fn deny_unclassified(&self, peer: &PeerIdentity, method: String) -> Denial {
        let denial = Denial::Unclassified {
            method: method.clone(),
        };
        self.audit_denial(peer, &method, &denial).await;
        denial
    }

    /// Denials go to their own trail, one record per uid and code per
    /// interval plus a count, so a denied client cannot flood the disk or
    /// rotate the command records away.
    async fn audit_denial(&self, peer: &PeerIdentity, method: &str, denial: &Denial) {
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
    pub async fn run_command<C: ControlPlane>(
        self: &Arc<Self>,
        control: &Arc<C>,
        peer: &Arc<PeerIdentity>,
        method: &str,
        request: CommandRequest,
    ) -> Result<(CommandReport, bool), Refusal> {
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
            return Err(Refusal::Denied(denial));
        }
        let ticket = if request.meta().request_id.is_empty() {
            None
        } else {
            match self.idempotency.claim(peer.uid, &request).await {
                Claim::Fresh(ticket) => Some(ticket),
                Claim::Replay(outcome) => {
                    let code = outcome.as_ref().map_or_else(ControlError::code, |_| "ok");
                    let _ = self.audit.write(base("replay", code)).await;
                    return outcome
                        .map(|report| (report, true))
                        .map_err(Refusal::Failed);
                }
                Claim::Conflict => {
                    let denial = Denial::RequestIdConflict {
                        request_id: request.meta().request_id.clone(),
                    };
                    let _ = self.audit.write(base("deny", denial.code())).await;
                    return Err(Refusal::Denied(denial));
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
            return Err(Refusal::Denied(denial));
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
        let (outcome, written) = task.await.map_err(|error| {
            Refusal::Failed(ControlError::Internal {
                message: format!("the command task failed: {error}"),
            })
        })?;
        if let Err(error) = written {
            tracing::error!(%error, "audit write failed after a command");
        }
        outcome
            .map(|report| (report, false))
            .map_err(Refusal::Failed)
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    /// Every method of every service the gateway serves (read from the
    /// descriptor sets it serves) has an explicit class, so none can fall
    /// through to a default; a path no service declares has none.
    #[test]
    fn every_served_rpc_has_a_class() {
        let sets = [
            crate::pb::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
        ];
        let mut methods = 0;
        for set in sets {
            let set = prost_types::FileDescriptorSet::decode(set).expect("descriptor set");
            for file in &set.file {
                for service in &file.service {
                    for method in &service.method {
                        let path =
                            format!("/{}.{}/{}", file.package(), service.name(), method.name());
                        assert!(
                            MethodClass::of_grpc_path(&path).is_some(),
                            "{path} has no class"
                        );
                        methods += 1;
                    }
                }
            }
        }
        assert!(methods >= 17, "only {methods} methods found");
        let control = |m: &str| MethodClass::of_grpc_path(&format!("/{CONTROL_SERVICE}/{m}"));
        assert_eq!(control("RemoveChild"), Some(MethodClass::Destructive));
        assert_eq!(control("ShutdownTree"), Some(MethodClass::Destructive));
        assert_eq!(control("RestartChild"), Some(MethodClass::Write));
        assert_eq!(control("GetState"), Some(MethodClass::Read));
        for unknown in [
            "/supervisor.gateway.v1.ControlService/DeleteEverything",
            "/evil.Service/GetInfo",
            "/GetInfo",
            "",
            "no-slash",
        ] {
            assert_eq!(MethodClass::of_grpc_path(unknown), None, "{unknown}");
        }
    }
}
