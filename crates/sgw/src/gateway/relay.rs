//! The relay heartbeat: every interval, upsert this gateway's registration
//! (the legacy `hello` payload) at a `dashboard-ipc.v1` relay and read its
//! ack; the adapter reports where it stands in legacy `state`. It is the
//! gateway's own task, not a transport: no caller is behind it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

use crate::control::ControlPlane;
use crate::transport::legacy::{
    Adapter, FrameError, LineCodec, Registration, RegistrationStatus as Status, line,
};

/// The relay's answer to one upsert.
#[derive(Debug, Deserialize)]
pub struct Ack {
    pub ok: bool,
    #[serde(default)]
    pub target_id: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub error: Option<AckError>,
    /// A rejection that does not say is treated as retryable: giving up
    /// for good needs the relay to say so.
    #[serde(default)]
    pub retryable: Option<bool>,
}

#[derive(Debug, Deserialize)]
pub struct AckError {
    pub code: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
enum UpsertError {
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    #[error("cannot send the payload: {0}")]
    Write(std::io::Error),
    #[error("cannot read the ack: {0}")]
    Read(#[from] FrameError),
    #[error("the relay closed the connection without an ack")]
    NoAck,
    #[error("malformed ack: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("no ack within {0:?}")]
    TimedOut(Duration),
}

/// An ack line longer than this is not an ack.
const MAX_ACK_BYTES: usize = 64 * 1024;

async fn upsert(relay: &Path, payload: &Registration) -> Result<Ack, UpsertError> {
    let mut stream = UnixStream::connect(relay)
        .await
        .map_err(UpsertError::Connect)?;
    stream
        .write_all(&line(payload))
        .await
        .map_err(UpsertError::Write)?;
    let mut acks = FramedRead::new(stream, LineCodec::new(MAX_ACK_BYTES));
    let text = acks.next().await.ok_or(UpsertError::NoAck)??;
    Ok(serde_json::from_str(&text)?)
}

/// The first retry after a transport failure; doubled per consecutive
/// failure, up to the heartbeat interval.
const RETRY_INITIAL: Duration = Duration::from_millis(100);

/// How long to wait after the `failures`-th transport failure in a row.
fn retry_after(failures: u32, interval: Duration) -> Duration {
    let factor = 1u32
        .checked_shl(failures.saturating_sub(1))
        .unwrap_or(u32::MAX);
    RETRY_INITIAL.saturating_mul(factor).min(interval)
}

/// Runs the heartbeat until shutdown or a non-retryable rejection.
pub async fn heartbeat<C: ControlPlane>(
    adapter: Arc<Adapter<C>>,
    relay: PathBuf,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let target_id = adapter.target_id().to_owned();
    let lease = adapter.lease();
    let mut last_ok = None;
    let mut failures = 0;
    loop {
        let started = tokio::time::Instant::now();
        let payload = adapter.registration().await;
        let attempt = tokio::select! {
            () = shutdown.cancelled() => return,
            attempt = tokio::time::timeout(lease, upsert(&relay, &payload)) => {
                attempt.unwrap_or(Err(UpsertError::TimedOut(lease)))
            }
        };
        // Attempts start an interval apart however long an ack took.
        let mut next = started + interval;
        let status = match attempt {
            Ok(ack) if ack.ok && ack.target_id.as_ref().is_none_or(|id| *id == target_id) => {
                tracing::debug!(relay = %relay.display(), status = ?ack.status, "registration renewed");
                failures = 0;
                let now = Instant::now();
                last_ok = Some(now);
                Status::Registered { at: now }
            }
            Ok(ack) if !ack.ok && ack.retryable == Some(false) => {
                let (code, message) = ack
                    .error
                    .map_or((String::new(), String::new()), |e| (e.code, e.message));
                tracing::warn!(
                    relay = %relay.display(), %code, %message,
                    "the relay rejected the registration; heartbeat stopped"
                );
                adapter.set_registration(Status::Rejected);
                return;
            }
            Ok(ack) => {
                tracing::info!(
                    relay = %relay.display(), ok = ack.ok, target_id = ?ack.target_id,
                    error = ?ack.error.map(|e| e.code),
                    "registration not accepted; retrying next interval"
                );
                failures = 0;
                Status::Retrying { last_ok }
            }
            Err(error) => {
                failures += 1;
                let wait = retry_after(failures, interval);
                tracing::info!(relay = %relay.display(), %error, ?wait, failures, "registration failed; retrying");
                next = tokio::time::Instant::now() + wait;
                Status::Retrying { last_ok }
            }
        };
        adapter.set_registration(status);
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep_until(next) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A relay that is down is retried quickly at first, then never more
    /// often than the interval, and the doubling cannot overflow.
    #[test]
    fn retries_back_off_from_100ms_up_to_the_interval() {
        let interval = Duration::from_secs(1);
        let waits: Vec<u128> = (1..=6)
            .map(|n| retry_after(n, interval).as_millis())
            .collect();
        assert_eq!(waits, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(retry_after(u32::MAX, interval), interval);
    }
}
