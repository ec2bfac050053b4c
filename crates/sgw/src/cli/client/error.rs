//! Why a client command failed, what the person can do about it, and the
//! exit code it ends with (the contract's: 1 the call failed, 2 usage or
//! config error, 3 cannot connect).

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::json;
use tonic::{Code, Status};
use tonic_types::StatusExt;

use crate::cli::{EXIT_FAILED, EXIT_UNREACHABLE, EXIT_USAGE};
use crate::transport::grpc::status::code_name;

/// Everything a client command can end with other than success.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad flags or a bad input file: nothing was sent.
    #[error("{0}")]
    Usage(String),
    /// The socket could not be reached.
    #[error("{}", unreachable_message(path, error))]
    Connect { path: PathBuf, error: io::Error },
    /// The server answered with an error status.
    #[error("{}", status_line(.0))]
    Call(Box<Status>),
    /// Writing to stdout failed (a closed pipe ends the command quietly).
    #[error("cannot write the output: {0}")]
    Output(io::Error),
}

impl From<Status> for CliError {
    fn from(status: Status) -> Self {
        CliError::Call(Box::new(status))
    }
}

impl CliError {
    /// Prints the error on stderr (as one JSON object with `--json`) and
    /// returns the exit code.
    pub fn report(&self, json: bool) -> ExitCode {
        let code = match self {
            CliError::Output(error) if error.kind() == io::ErrorKind::BrokenPipe => {
                return ExitCode::SUCCESS;
            }
            CliError::Usage(_) => EXIT_USAGE,
            CliError::Connect { .. } => EXIT_UNREACHABLE,
            CliError::Call(_) | CliError::Output(_) => EXIT_FAILED,
        };
        if json {
            eprintln!("{}", self.to_json());
        } else {
            eprintln!("{}", self.human());
        }
        ExitCode::from(code)
    }

    /// The text a person reads: the first line is the `CODE: message
    /// [reason]` of the contract; later lines say what to do.
    fn human(&self) -> String {
        match self {
            CliError::Call(status) => {
                let mut text = status_line(status);
                for hint in hints(status) {
                    text.push_str("\n  ");
                    text.push_str(&hint);
                }
                text
            }
            CliError::Usage(message) => format!("error: {message}"),
            other => format!("error: {other}"),
        }
    }

    fn to_json(&self) -> serde_json::Value {
        match self {
            CliError::Call(status) => {
                let info = status.get_details_error_info();
                let metadata: BTreeMap<String, String> = info
                    .as_ref()
                    .map(|i| i.metadata.clone().into_iter().collect())
                    .unwrap_or_default();
                json!({"error": {
                    "code": code_name(status.code()),
                    "message": status.message(),
                    "reason": info.as_ref().map(|i| i.reason.as_str()).unwrap_or_default(),
                    "domain": info.as_ref().map(|i| i.domain.as_str()).unwrap_or_default(),
                    "metadata": metadata,
                    "retry_after": status.get_details_retry_info()
                        .and_then(|r| r.retry_delay)
                        .map(|d| format!("{}s", d.as_secs_f64())),
                }})
            }
            CliError::Usage(message) => json!({"error": {"code": "USAGE", "message": message}}),
            CliError::Connect { .. } => {
                json!({"error": {"code": "UNREACHABLE", "message": self.to_string()}})
            }
            CliError::Output(error) => {
                json!({"error": {"code": "OUTPUT", "message": error.to_string()}})
            }
        }
    }
}

/// `NOT_FOUND: no child named "x" (known children: a, b) [child_not_found]`.
pub fn status_line(status: &Status) -> String {
    let mut line = format!("{}: {}", code_name(status.code()), status.message());
    if let Some(info) = status.get_details_error_info() {
        line.push_str(&format!(" [{}]", info.reason));
    }
    line
}

/// What the person can do next, from the status and its details.
fn hints(status: &Status) -> Vec<String> {
    let mut hints = Vec::new();
    if matches!(
        status.code(),
        Code::PermissionDenied | Code::Unauthenticated
    ) {
        hints.push(format!("you are {}", local_identity()));
        if let Some(info) = status.get_details_error_info() {
            let mut metadata: Vec<_> = info.metadata.into_iter().collect();
            metadata.sort();
            for (key, value) in metadata {
                hints.push(format!("{key}: {value}"));
            }
        }
        hints.push(
            "the server's [security] settings decide who may do what; ask its operator".to_owned(),
        );
    }
    if let Some(delay) = status
        .get_details_retry_info()
        .and_then(|info| info.retry_delay)
    {
        hints.push(format!("retry after {:.1}s", delay.as_secs_f64()));
    }
    if status.code() == Code::FailedPrecondition
        && status
            .get_details_error_info()
            .is_some_and(|info| info.reason == "confirmation_required")
    {
        hints.push("pass --yes to confirm".to_owned());
    }
    hints
}

/// `uid 1000 (alice), gid 1000`: the identity the server sees for us.
fn local_identity() -> String {
    let uid = nix::unistd::geteuid();
    let gid = nix::unistd::getegid();
    match nix::unistd::User::from_uid(uid).ok().flatten() {
        Some(user) => format!("uid {uid} ({}), gid {gid}", user.name),
        None => format!("uid {uid}, gid {gid}"),
    }
}

fn unreachable_message(path: &Path, error: &io::Error) -> String {
    let path_text = path.display();
    let advice = "is `sgw serve` running? set --socket or SGW_SOCKET";
    match error.kind() {
        io::ErrorKind::NotFound => format!("no socket at {path_text} — {advice}"),
        io::ErrorKind::ConnectionRefused => {
            format!("nothing is listening on {path_text} (a stale socket) — {advice}")
        }
        io::ErrorKind::PermissionDenied => {
            format!(
                "permission denied on {path_text}: {}; you are {} — run as the socket's owner or widen [gateway] socket_mode",
                socket_owner(path),
                local_identity()
            )
        }
        _ => format!("cannot connect to {path_text}: {error} — {advice}"),
    }
}

/// `owned by uid 0 with mode 0600`, or why that cannot be told.
fn socket_owner(path: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(path) {
        Ok(meta) => format!(
            "the socket is owned by uid {} gid {} with mode {:04o}",
            meta.uid(),
            meta.gid(),
            meta.mode() & 0o7777
        ),
        Err(error) => format!("cannot inspect the socket or its directory ({error})"),
    }
}

/// The `io::Error` at the bottom of a transport error, if any.
pub fn io_cause<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a io::Error> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(io) = error.downcast_ref::<io::Error>() {
            return Some(io);
        }
        current = error.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use tonic_types::ErrorDetails;

    #[test]
    fn status_line_has_code_message_and_reason() {
        let status = Status::with_error_details(
            Code::NotFound,
            "no child named \"x\" (known children: a, b)",
            ErrorDetails::with_error_info("child_not_found", "demo", HashMap::new()),
        );
        assert_eq!(
            status_line(&status),
            "NOT_FOUND: no child named \"x\" (known children: a, b) [child_not_found]"
        );
        assert_eq!(status_line(&Status::internal("boom")), "INTERNAL: boom");
    }

    #[test]
    fn unreachable_messages_say_what_to_do() {
        let path = Path::new("/nonexistent/sgw.sock");
        let missing = unreachable_message(path, &io::Error::from(io::ErrorKind::NotFound));
        assert_eq!(
            missing,
            "no socket at /nonexistent/sgw.sock — is `sgw serve` running? set --socket or SGW_SOCKET"
        );
        let denied = unreachable_message(path, &io::Error::from(io::ErrorKind::PermissionDenied));
        assert!(denied.contains("you are uid"), "{denied}");
    }

    #[test]
    fn permission_denied_names_the_caller_and_the_rule() {
        let status = Status::with_error_details(
            Code::PermissionDenied,
            "restart_child needs the write class",
            ErrorDetails::with_error_info(
                "permission_denied",
                "demo",
                HashMap::from([("required_class".to_owned(), "write".to_owned())]),
            ),
        );
        let text = CliError::from(status).human();
        assert!(text.starts_with("PERMISSION_DENIED: "), "{text}");
        assert!(text.contains("you are uid"), "{text}");
        assert!(text.contains("required_class: write"), "{text}");
    }
}
