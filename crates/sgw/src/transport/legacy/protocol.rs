//! The `dashboard-ipc.v1` wire types: requests, the response envelope, the
//! error object, and the pushes. Field names are the contract
//! (`legacy-protocol.md`); the dashboard state lives in `state`.

use crate::security::Operation;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use super::records::{EventRecord, LogRecord};
use super::registration::Registration;
use super::state::DashboardState;
use crate::model::CommandKind;

pub const PROTOCOL_VERSION: &str = "dashboard-ipc.v1";

/// The `request_id` of a response to a line that was not a request.
pub const INVALID_REQUEST_ID: &str = "invalid-request";

/// A request line. Unknown top-level fields are ignored (older clients add
/// their own); a missing `request_id` or `method`, or `params` that is not
/// an object, makes the line `invalid_json`.
#[derive(Debug, Deserialize)]
pub struct Request {
    pub request_id: String,
    pub method: String,
    #[serde(default)]
    pub params: Option<Map<String, Value>>,
}

impl Request {
    /// Parses a request line. A line whose envelope is a request but whose
    /// `params` do not decode still yields the request, with the reason in
    /// place of its params: serde_json refuses numbers beyond `f64` (a
    /// 5,000-digit `requested_at_unix_nanos`), and such a request deserves
    /// its own id and `invalid_command_params`, not an anonymous
    /// `invalid_json`. `Err` is a line that is no request at all.
    pub fn parse(text: &str) -> Result<Parsed, serde_json::Error> {
        match serde_json::from_str::<Request>(text) {
            Ok(request) => Ok(Parsed {
                request_id: request.request_id,
                method: request.method,
                params: Ok(request.params.unwrap_or_default()),
            }),
            Err(error) => match serde_json::from_str::<Envelope>(text) {
                Ok(envelope) => Ok(Parsed {
                    request_id: envelope.request_id,
                    method: envelope.method,
                    params: Err(error),
                }),
                Err(_) => Err(error),
            },
        }
    }
}

/// A request line, parsed: its params, or why they did not decode.
#[derive(Debug)]
pub struct Parsed {
    pub request_id: String,
    pub method: String,
    pub params: Result<Map<String, Value>, serde_json::Error>,
}

/// A request whose params are checked to be an object and otherwise
/// skipped (skipping a number does not convert it, so it cannot overflow).
#[derive(Deserialize)]
struct Envelope {
    request_id: String,
    method: String,
    #[serde(default)]
    #[allow(dead_code, reason = "only its shape is checked")]
    params: Option<AnyObject>,
}

/// Any JSON object, contents unread.
struct AnyObject;

impl<'de> Deserialize<'de> for AnyObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Skip;
        impl<'de> serde::de::Visitor<'de> for Skip {
            type Value = AnyObject;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<AnyObject, A::Error> {
                use serde::de::IgnoredAny;
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(AnyObject)
            }
        }
        deserializer.deserialize_map(Skip)
    }
}

/// The methods, by their wire names. Aliases are deliberately not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Hello,
    State,
    EventsSubscribe,
    LogsTail,
    Command(CommandKind),
}

impl Method {
    /// What the method asks of the control port (and so its class).
    pub fn operation(self) -> Operation {
        match self {
            Method::Hello => Operation::Info,
            Method::State => Operation::State,
            Method::EventsSubscribe => Operation::Events,
            Method::LogsTail => Operation::Logs,
            Method::Command(kind) => Operation::Command(kind),
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "hello" => Some(Method::Hello),
            "state" => Some(Method::State),
            "events.subscribe" => Some(Method::EventsSubscribe),
            "logs.tail" => Some(Method::LogsTail),
            other => other
                .strip_prefix("command.")
                .and_then(|command| command.parse().ok())
                .map(Method::Command),
        }
    }
}

/// The `params` of every `command.*` request (ControlCommandRequest).
#[derive(Debug, Deserialize)]
pub struct CommandParams {
    pub command_id: String,
    pub target_id: String,
    #[serde(deserialize_with = "command_kind")]
    pub command: CommandKind,
    #[serde(default)]
    pub target: CommandTarget,
    pub reason: String,
    pub requested_by: String,
    #[serde(default)]
    pub confirmed: bool,
    /// Informational only; accepted so that it is type-checked.
    #[serde(default)]
    pub requested_at_unix_nanos: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
pub struct CommandTarget {
    #[serde(default)]
    pub child_path: Option<String>,
    #[serde(default)]
    pub child_manifest: Option<String>,
}

fn command_kind<'de, D: Deserializer<'de>>(deserializer: D) -> Result<CommandKind, D::Error> {
    let name = String::deserialize(deserializer)?;
    name.parse()
        .ok()
        .filter(|kind: &CommandKind| kind.is_legacy())
        .ok_or_else(|| {
            let known: Vec<&str> = CommandKind::ALL
                .into_iter()
                .filter(|kind| kind.is_legacy())
                .map(CommandKind::as_str)
                .collect();
            serde::de::Error::custom(format!(
                "unknown command {name:?}: expected one of {}",
                known.join(", ")
            ))
        })
}

/// The `params` of `events.subscribe` and `logs.tail`.
#[derive(Debug, Deserialize)]
pub struct SubscribeParams {
    #[serde(default)]
    pub session_established: bool,
    /// Extension: resume after this journal sequence (e.g. the last one
    /// seen in `state.recent_events`) instead of starting with new records.
    #[serde(default)]
    pub after_sequence: Option<u64>,
    /// Extension: the journal `after_sequence` belongs to (from `hello` or
    /// a previous subscription result). Another journal's position, or one
    /// past the head, gets a `reset` and a full replay.
    #[serde(default)]
    pub journal_id: Option<String>,
}

/// Error `code`s. `events_dropped`, `logs_dropped` and `shutting_down` only
/// appear in pushes; `unauthenticated` when the kernel gave no credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    FrameTooLarge,
    InvalidUtf8,
    InvalidJson,
    UnsupportedMethod,
    SessionRequired,
    InvalidCommandParams,
    ValidationFailed,
    CommandFailed,
    Unauthenticated,
    EventsDropped,
    LogsDropped,
    ShuttingDown,
    PeerNotAllowed,
    PermissionDenied,
    RateLimited,
    RequestIdConflict,
    AuditUnavailable,
    CommandNotAllowed,
}

/// Where in the pipeline an error arose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    IpcConnect,
    IpcRead,
    ProtocolParse,
    Subscription,
    CommandValidate,
    CommandDispatch,
}

/// The error object of responses, command results and error pushes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorObject {
    pub code: ErrorCode,
    pub stage: Stage,
    pub target_id: Option<String>,
    pub message: String,
    pub retryable: bool,
    /// Extension: the control plane's code for the failure, the same string
    /// gRPC puts in `ErrorInfo.reason` (`child_not_found`, ...). Absent for
    /// errors of the legacy protocol itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
}

impl ErrorObject {
    /// An error of the protocol layer, with no control-plane counterpart.
    pub fn protocol(code: ErrorCode, stage: Stage, target_id: &str, message: String) -> Self {
        Self {
            code,
            stage,
            target_id: Some(target_id.to_owned()),
            message,
            retryable: false,
            reason: None,
        }
    }
}

/// One response line. Exactly one of `result` and `error` is present.
#[derive(Debug, Serialize)]
pub struct Response {
    pub request_id: String,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Reply>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorObject>,
}

impl Response {
    pub fn ok(request_id: String, result: Reply) -> Self {
        Self {
            request_id,
            ok: true,
            result: Some(result),
            error: None,
        }
    }

    pub fn error(request_id: String, error: ErrorObject) -> Self {
        Self {
            request_id,
            ok: false,
            result: None,
            error: Some(error),
        }
    }
}

/// Why a subscription's `after_sequence` was not honoured.
#[derive(Debug, Serialize)]
pub struct ResetReply {
    pub reason: &'static str,
    pub requested_journal_id: String,
    pub requested_after: u64,
}

/// The `result` of a successful response, tagged by `type`.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Reply {
    Hello {
        protocol_version: &'static str,
        registration: Registration,
        /// Extension: the journal event and log sequences belong to.
        journal_id: String,
    },
    State {
        target_id: String,
        /// Extension: the journal `recent_events`' sequences belong to.
        journal_id: String,
        state: Box<DashboardState>,
    },
    Subscription {
        target_id: String,
        subscription: &'static str,
        /// Extension: the journal the pushed sequences belong to, and its
        /// newest sequence when the subscription started.
        journal_id: String,
        last_sequence: u64,
        /// Extension: set when `after_sequence` was not honoured (another
        /// journal, or past the head): every retained record follows.
        #[serde(skip_serializing_if = "Option::is_none")]
        reset: Option<ResetReply>,
    },
    CommandResult {
        target_id: String,
        result: CommandResult,
    },
}

/// What a command did. A command the supervisor refused is still a
/// successful response: `accepted: false`, `status: "failed"`, `error` set.
#[derive(Debug, Serialize)]
pub struct CommandResult {
    pub command_id: String,
    pub target_id: String,
    pub accepted: bool,
    pub status: &'static str,
    pub error: Option<ErrorObject>,
    pub state_delta: Option<Value>,
    pub completed_at_unix_nanos: u64,
}

/// An unsolicited line after a subscription, tagged by `type`.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Push {
    Event {
        target_id: String,
        event: EventRecord,
    },
    Log {
        target_id: String,
        log: LogRecord,
    },
    Error {
        target_id: String,
        error: ErrorObject,
        /// For `events_dropped` / `logs_dropped`: the sequences never sent.
        #[serde(skip_serializing_if = "Option::is_none")]
        dropped: Option<Dropped>,
    },
}

/// An inclusive range of journal sequences a subscriber will not receive.
#[derive(Debug, Serialize)]
pub struct Dropped {
    pub first_missing: u64,
    pub last_missing: u64,
    pub count: u64,
    /// `lagged` (read too slowly) or `evicted` (resumed too far back).
    pub reason: &'static str,
}

/// Serializes a response or push as one `\n`-terminated line. Our types
/// always serialize; should one ever fail, the client still gets a line.
pub fn line<T: Serialize>(value: &T) -> bytes::Bytes {
    match serde_json::to_vec(value) {
        Ok(mut bytes) => {
            bytes.push(b'\n');
            bytes.into()
        }
        Err(error) => {
            tracing::error!(%error, "a legacy response did not serialize");
            bytes::Bytes::from_static(
                b"{\"request_id\":\"invalid-request\",\"ok\":false,\"error\":{\"code\":\"internal\",\"stage\":\"ipc_write\",\"target_id\":null,\"message\":\"response did not serialize\",\"retryable\":true}}\n",
            )
        }
    }
}
