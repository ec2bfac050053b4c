//! Running one probe: the check of its kind, bounded by its timeout. A
//! failure carries what to show an operator (the program's output, the
//! connection error, the HTTP status and body).

use std::time::Duration;

use super::super::containment::Containment;
use super::{exec, http, tcp};
use crate::model::{Check, ChildSpec};

/// How much of a probe's output or answer an event carries.
pub(super) const MAX_OUTPUT: usize = 512;

/// Runs `check` once. `Err` is the failure, for people.
pub(super) async fn run(
    check: &Check,
    timeout: Duration,
    spec: &ChildSpec,
    containment: &Containment,
) -> Result<(), String> {
    let timed_out = || format!("timed out after {}", humantime::format_duration(timeout));
    match check {
        // The exec probe kills its own process on timeout.
        Check::Exec(command) => exec::run(command, timeout, spec, containment).await,
        Check::Tcp(target) => tokio::time::timeout(timeout, tcp::run(target))
            .await
            .unwrap_or_else(|_| Err(timed_out())),
        Check::Http(target) => tokio::time::timeout(timeout, http::run(target))
            .await
            .unwrap_or_else(|_| Err(timed_out())),
    }
}

/// `text` cut to [`MAX_OUTPUT`] bytes on a character boundary, trimmed.
pub(super) fn bounded(text: &str) -> String {
    let text = text.trim();
    if text.len() <= MAX_OUTPUT {
        return text.to_owned();
    }
    let mut end = MAX_OUTPUT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}
