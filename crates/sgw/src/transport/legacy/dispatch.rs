//! One request line in, one response line out: parse, route by method,
//! call the control plane, map the result.
//!
//! Commands become the same `Command` + `CommandMeta` gRPC builds and run
//! through the same `ControlPlane::execute`, so a command has the same
//! outcome, the same journal events and the same error (as `reason`) on
//! both protocols.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::Adapter;
use super::error::to_legacy_error;
use super::protocol::{
    CommandParams, CommandResult, CommandTarget, ErrorCode, ErrorObject, INVALID_REQUEST_ID,
    Method, PROTOCOL_VERSION, Parsed, Reply, Request, ResetReply, Response, Stage, SubscribeParams,
    line,
};
use super::records::unix_nanos;
use super::state::{runtime_record, runtime_state};
use crate::control::{
    Command, CommandMeta, CommandReport, CommandRequest, ControlError, ControlPlane,
};
use crate::journal::{self, LogSubscription, Start, Subscription};
use crate::model::{ChildId, ChildSpec, CommandKind, Event, SpecError};
use crate::transport::peer::Caller;

/// A subscription accepted by a request; the connection starts pushing
/// from it once the response is queued, so the response comes first.
#[derive(Debug)]
pub enum Subscribe {
    Events(Subscription<Event>),
    Logs(LogSubscription),
}

/// The answer to one request line.
#[derive(Debug)]
pub struct Handled {
    pub response: Bytes,
    pub subscribe: Option<Subscribe>,
}

impl Handled {
    fn reply(response: Response) -> Self {
        Self {
            response: line(&response),
            subscribe: None,
        }
    }
}

fn invalid(field: &str, message: String) -> ControlError {
    ControlError::InvalidArgument {
        field: field.to_owned(),
        message,
    }
}

impl<C: ControlPlane> Adapter<C> {
    fn protocol_error(&self, code: ErrorCode, stage: Stage, message: String) -> ErrorObject {
        ErrorObject::protocol(code, stage, self.target_id(), message)
    }

    pub(super) async fn handle(&self, text: &str, peer: Option<&Arc<Caller>>) -> Handled {
        let request = match Request::parse(text) {
            Ok(request) => request,
            Err(error) => {
                let error = self.protocol_error(
                    ErrorCode::InvalidJson,
                    Stage::ProtocolParse,
                    format!("not a request object: {error}"),
                );
                return Handled::reply(Response::error(INVALID_REQUEST_ID.to_owned(), error));
            }
        };
        let Parsed {
            request_id,
            method,
            params,
        } = request;
        let Some(peer) = peer else {
            let error = self.protocol_error(
                ErrorCode::Unauthenticated,
                Stage::IpcConnect,
                "the kernel reported no peer credentials for this connection".to_owned(),
            );
            return Handled::reply(Response::error(request_id, error));
        };
        let method_name = method;
        let Some(method) = Method::parse(&method_name) else {
            let error = self.protocol_error(
                ErrorCode::UnsupportedMethod,
                Stage::ProtocolParse,
                format!("unsupported method {method_name:?}"),
            );
            return Handled::reply(Response::error(request_id, error));
        };
        // Subscriptions and commands pass the guard where they reach the
        // control port; hello and state are checked here.
        let via = || format!("legacy:{method_name}");
        if matches!(method, Method::Hello | Method::State)
            && let Err(error) = self.guard().check(peer, method.operation(), via).await
        {
            let error = to_legacy_error(&error, self.target_id());
            return Handled::reply(Response::error(request_id, error));
        }
        let target_id = self.target_id().to_owned();
        let (result, subscribe) = match method {
            Method::Hello => (
                Ok(Reply::Hello {
                    protocol_version: PROTOCOL_VERSION,
                    registration: self.registration().await,
                    journal_id: self.journal_id().to_owned(),
                }),
                None,
            ),
            Method::State => (
                Ok(Reply::State {
                    target_id,
                    journal_id: self.journal_id().to_owned(),
                    state: Box::new(self.dashboard_state().await),
                }),
                None,
            ),
            Method::EventsSubscribe | Method::LogsTail => {
                match self.subscribe(peer, &method_name, method, params).await {
                    Ok((reply, subscribe)) => (Ok(reply), Some(subscribe)),
                    Err(error) => (Err(error), None),
                }
            }
            Method::Command(kind) => (self.command(peer, kind, params).await, None),
        };
        let response = match result {
            Ok(reply) => Response::ok(request_id, reply),
            Err(error) => Response::error(request_id, error),
        };
        Handled {
            response: line(&response),
            subscribe,
        }
    }

    /// Opens the journal cursor now, so nothing published after the
    /// response is missed.
    async fn subscribe(
        &self,
        peer: &Arc<Caller>,
        method_name: &str,
        method: Method,
        params: Result<Map<String, Value>, serde_json::Error>,
    ) -> Result<(Reply, Subscribe), ErrorObject> {
        let via = || format!("legacy:{method_name}");
        let denied = |error: ControlError| to_legacy_error(&error, self.target_id());
        let params: SubscribeParams = decode(params).map_err(|error| {
            self.protocol_error(
                ErrorCode::InvalidCommandParams,
                Stage::ProtocolParse,
                format!("invalid subscription params: {error}"),
            )
        })?;
        if !params.session_established {
            return Err(self.protocol_error(
                ErrorCode::SessionRequired,
                Stage::Subscription,
                "subscriptions require params.session_established = true".to_owned(),
            ));
        }
        let journal_id = self.journal_id().to_owned();
        let claimed = params.journal_id.unwrap_or_default();
        let from = |last: u64| match params.after_sequence {
            Some(after) => journal::resume(&journal_id, last, &claimed, after),
            None => (Start::Live, None),
        };
        let (subscription, subscribe, last, reset) = if method == Method::LogsTail {
            let logs = self.guard().logs(peer, via).await.map_err(denied)?;
            let last = logs.last_sequence();
            let (start, reset) = from(last);
            ("logs", Subscribe::Logs(logs.subscribe(start)), last, reset)
        } else {
            let events = self.guard().events(peer, via).await.map_err(denied)?;
            let last = events.last_sequence();
            let (start, reset) = from(last);
            (
                "events",
                Subscribe::Events(events.subscribe(start)),
                last,
                reset,
            )
        };
        let reply = Reply::Subscription {
            target_id: self.target_id().to_owned(),
            subscription,
            last_sequence: last,
            reset: reset.map(|reset| ResetReply {
                reason: reset.reason.as_str(),
                requested_journal_id: reset.requested_journal_id,
                requested_after: reset.requested_after,
            }),
            journal_id,
        };
        Ok((reply, subscribe))
    }

    async fn command(
        &self,
        peer: &Arc<Caller>,
        method: CommandKind,
        params: Result<Map<String, Value>, serde_json::Error>,
    ) -> Result<Reply, ErrorObject> {
        let params: CommandParams = decode(params).map_err(|error| {
            self.protocol_error(
                ErrorCode::InvalidCommandParams,
                Stage::ProtocolParse,
                format!("invalid command params: {error}"),
            )
        })?;
        let target_id = self.target_id();
        let command_id = params.command_id.clone();
        tracing::info!(
            method = %method,
            command_id = %command_id,
            requested_by = %params.requested_by,
            requested_at_unix_nanos = params.requested_at_unix_nanos,
            "legacy command"
        );
        let request = self.command_request(method, params);
        let via = format!("legacy:command.{method}");
        let outcome = self.guard().execute(peer, &via, method, request).await;
        let result = match outcome {
            Ok((report, _replayed)) => CommandResult {
                command_id,
                target_id: target_id.to_owned(),
                accepted: true,
                status: "completed",
                error: None,
                state_delta: Some(state_delta(&report)),
                completed_at_unix_nanos: unix_nanos(report.completed_at),
            },
            Err(error) => {
                let error = to_legacy_error(&error, target_id);
                if error.code != ErrorCode::CommandFailed {
                    return Err(error);
                }
                CommandResult {
                    command_id,
                    target_id: target_id.to_owned(),
                    accepted: false,
                    status: "failed",
                    error: Some(error),
                    state_delta: None,
                    completed_at_unix_nanos: unix_nanos(std::time::SystemTime::now()),
                }
            }
        };
        Ok(Reply::CommandResult {
            target_id: target_id.to_owned(),
            result,
        })
    }

    /// The legacy rules first (they have no gRPC counterpart), then the
    /// checks every transport shares (`CommandRequest::new`).
    fn command_request(
        &self,
        method: CommandKind,
        params: CommandParams,
    ) -> Result<CommandRequest, ControlError> {
        if params.target_id != self.target_id() {
            return Err(invalid(
                "target_id",
                format!(
                    "command target_id {:?} does not match this gateway's {:?}",
                    params.target_id,
                    self.target_id()
                ),
            ));
        }
        if params.command != method {
            return Err(invalid(
                "command",
                format!(
                    "command {:?} does not match method \"command.{method}\"",
                    params.command.as_str()
                ),
            ));
        }
        if params.reason.trim().is_empty() {
            return Err(invalid(
                "reason",
                "command reason must not be empty".to_owned(),
            ));
        }
        if params.requested_by.trim().is_empty() {
            return Err(invalid(
                "requested_by",
                "command requested_by must not be empty".to_owned(),
            ));
        }
        let command = match method {
            CommandKind::RestartChild => Command::Restart(child_id(&params.target)?),
            CommandKind::PauseChild => Command::Pause(child_id(&params.target)?),
            CommandKind::ResumeChild => Command::Resume(child_id(&params.target)?),
            CommandKind::QuarantineChild => Command::Quarantine(child_id(&params.target)?),
            CommandKind::RemoveChild => Command::Remove(child_id(&params.target)?),
            CommandKind::AddChild => Command::Add(Box::new(manifest(&params.target)?)),
            CommandKind::ShutdownTree => Command::Shutdown,
            // Refused when the params were decoded (not `is_legacy`).
            CommandKind::ReloadConfig | CommandKind::ScaleChild => {
                return Err(invalid(
                    "command",
                    format!("{method} is only available over gRPC"),
                ));
            }
        };
        let meta = CommandMeta {
            request_id: params.command_id,
            requested_by: params.requested_by,
            reason: params.reason,
            confirm: params.confirmed,
        };
        CommandRequest::new(command, meta)
    }
}

/// A method's params from the parsed object, or why they did not decode.
fn decode<T: serde::de::DeserializeOwned>(
    params: Result<Map<String, Value>, serde_json::Error>,
) -> Result<T, serde_json::Error> {
    serde_json::from_value(Value::Object(params?))
}

/// The child a path names: its last non-empty `/` segment.
fn child_id(target: &CommandTarget) -> Result<ChildId, ControlError> {
    let Some(path) = &target.child_path else {
        return Err(invalid(
            "target.child_path",
            "child commands require target.child_path".to_owned(),
        ));
    };
    let Some(segment) = path.split('/').rfind(|segment| !segment.is_empty()) else {
        return Err(invalid(
            "target.child_path",
            format!("child_path {path:?} names no child"),
        ));
    };
    ChildId::new(segment).map_err(|error| {
        invalid(
            "target.child_path",
            format!("child_path {path:?} does not name a child: {error}"),
        )
    })
}

/// `add_child`'s manifest: one child with the fields of a config
/// `[[child]]` table, as a JSON object or as TOML. If `child_path` is given
/// too, it must name the same child.
fn manifest(target: &CommandTarget) -> Result<ChildSpec, ControlError> {
    let field = "target.child_manifest";
    let Some(text) = &target.child_manifest else {
        return Err(invalid(
            field,
            "add_child requires target.child_manifest".to_owned(),
        ));
    };
    let parsed = if text.trim_start().starts_with('{') {
        serde_json::from_str::<ChildSpec>(text).map_err(|e| e.to_string())
    } else {
        toml::from_str::<ChildSpec>(text).map_err(|e| e.message().trim().to_owned())
    };
    let spec =
        parsed.map_err(|message| ControlError::InvalidSpec(SpecError::new(field, message)))?;
    if target.child_path.is_some() {
        let named = child_id(target)?;
        if named != spec.id {
            return Err(invalid(
                "target.child_path",
                format!(
                    "child_path names {named} but the manifest declares {}",
                    spec.id
                ),
            ));
        }
    }
    Ok(spec)
}

/// What changed: the command, its outcome, the gateway's command id (the
/// journal's correlation id) and the child's record after it.
fn state_delta(report: &CommandReport) -> Value {
    json!({
        "command": report.command.as_str(),
        "outcome": report.outcome,
        "correlation_id": report.command_id,
        "runtime_state": report.child.as_ref().map(runtime_state),
        "child_runtime_record": report.child.as_ref().map(runtime_record),
    })
}
