//! The legacy `dashboard-ipc.v1` adapter: newline-delimited JSON over the
//! same Unix socket as gRPC (told apart by the listener from the first byte
//! a client sends), or over a dedicated socket.
//!
//! It is a second face of the same gateway, not a second gateway: requests
//! go to the same [`ControlPlane`], pushes read the same journals (so the
//! sequences are the gRPC ones), and each connection carries the peer
//! identity the listener read from the kernel.
//!
//! - `codec`: bounded line framing.
//! - `protocol`: the wire types. `error`: `ControlError` → error object.
//! - `dispatch`: one request → one response. `state`, `records`: the shapes.
//! - `connection`: reader and pushes of one connection (`push`); `writer`:
//!   its only writer, with the write deadline.
//! - `registration`: the payload `hello` answers with and the relay
//!   heartbeat (`gateway::relay`) sends, and where the registration stands.

mod codec;
mod connection;
mod dispatch;
mod error;
mod protocol;
mod push;
mod records;
mod registration;
mod state;
mod writer;

use crate::security::Guarded;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UnixListener;
use tokio::sync::watch;

pub use codec::{FrameError, LineCodec};
pub use error::to_legacy_error;
pub use protocol::{ErrorCode, ErrorObject, PROTOCOL_VERSION, Request, Stage, line};
pub use registration::{Registration, Status as RegistrationStatus, SupportedCommand};

use crate::control::{ControlPlane, TargetInfo};
use crate::transport::peer::Caller;
use crate::transport::socket::{BindOptions, BoundSocket, SocketError, SocketGuard};

/// A socket that serves the adapter alone (`legacy = "/path.sock"`). The
/// socket file is removed when this is dropped, i.e. after the gateway
/// stopped serving it.
#[derive(Debug)]
pub struct DedicatedSocket {
    pub listener: UnixListener,
    pub path: PathBuf,
    guard: SocketGuard,
}

impl DedicatedSocket {
    /// Binds with the same rules as the main socket (mode, stale-socket
    /// probe, own-inode cleanup). Must run inside a tokio runtime.
    pub fn bind(options: &BindOptions) -> Result<Self, SocketError> {
        let (listener, guard) = BoundSocket::bind(options)?.into_tokio()?;
        Ok(Self {
            listener,
            path: options.path.clone(),
            guard,
        })
    }

    /// The listener, and the guard that unlinks the socket file on drop.
    pub fn into_parts(self) -> (UnixListener, SocketGuard) {
        (self.listener, self.guard)
    }
}

/// How the adapter is offered.
#[derive(Debug)]
pub struct LegacyOptions {
    /// Serve legacy clients detected on the main socket.
    pub same_socket: bool,
    /// Also serve the adapter alone on this socket.
    pub dedicated: Option<DedicatedSocket>,
    /// A longer request line is answered `frame_too_large` and closes the
    /// connection.
    pub max_frame_bytes: usize,
    /// A connection without a complete request for this long (and without
    /// an active subscription) is closed.
    pub idle_timeout: Duration,
    /// A client that leaves a write waiting this long is not reading: its
    /// subscriptions are dropped (with a `*_dropped` push, if it fits) and
    /// the connection is closed.
    pub write_timeout: Duration,
    /// The socket legacy clients are told to use (`hello`, registration).
    pub ipc_path: String,
    /// The relay to register with, if any (the gateway runs the heartbeat;
    /// `state` says "connecting" until it reports, "direct" without one).
    pub relay: Option<Relay>,
    /// How long a relay keeps our registration.
    pub lease: Duration,
}

/// Where and how often the relay heartbeat registers this gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relay {
    pub socket: PathBuf,
    pub interval: Duration,
}

impl LegacyOptions {
    /// No legacy service at all: non-HTTP/2 connections are closed.
    pub fn off() -> Self {
        Self {
            same_socket: false,
            ..Self::new("")
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.same_socket || self.dedicated.is_some()
    }
}

/// The adapter over one control plane, shared by all its connections.
pub struct Adapter<C> {
    /// The control port behind the security guard: every request goes
    /// through it.
    guard: Guarded<C>,
    /// Static for the life of the control plane: read once, not per
    /// `hello`, `state` or subscription.
    target: TargetInfo,
    max_frame_bytes: usize,
    idle_timeout: Duration,
    write_timeout: Duration,
    ipc_path: String,
    lease: Duration,
    registration: watch::Sender<RegistrationStatus>,
}

impl<C> std::fmt::Debug for Adapter<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Adapter")
            .field("target_id", &self.target.target_id)
            .field("ipc_path", &self.ipc_path)
            .finish_non_exhaustive()
    }
}

impl<C: ControlPlane> Adapter<C> {
    pub fn new(guard: Guarded<C>, options: &LegacyOptions) -> Arc<Self> {
        let status = if options.relay.is_some() {
            RegistrationStatus::Connecting
        } else {
            RegistrationStatus::Direct
        };
        Arc::new(Self {
            target: guard.target(),
            guard,
            max_frame_bytes: options.max_frame_bytes,
            idle_timeout: options.idle_timeout,
            write_timeout: options.write_timeout,
            ipc_path: options.ipc_path.clone(),
            lease: options.lease,
            registration: watch::Sender::new(status),
        })
    }

    /// Answers one request line as a connection would and returns the
    /// response line, for callers that bring their own framing (the
    /// benches). A subscription the request opens is dropped at once.
    pub async fn respond(&self, line: &str, peer: Option<&Arc<Caller>>) -> bytes::Bytes {
        self.handle(line, peer).await.response
    }

    fn guard(&self) -> &Guarded<C> {
        &self.guard
    }

    /// The control plane itself, for the adapter's own work (the relay
    /// registration, a dropped subscriber's last range), never on a
    /// caller's behalf.
    fn control(&self) -> &C {
        self.guard.unguarded()
    }

    pub fn target_id(&self) -> &str {
        &self.target.target_id
    }

    fn journal_id(&self) -> &str {
        &self.target.journal_id
    }

    fn max_frame_bytes(&self) -> usize {
        self.max_frame_bytes
    }

    fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    fn write_timeout(&self) -> Duration {
        self.write_timeout
    }

    /// How long the relay keeps a registration: the longest an ack is
    /// worth waiting for.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// Where the relay registration stands, as the heartbeat found it.
    pub fn set_registration(&self, status: RegistrationStatus) {
        self.registration.send_replace(status);
    }

    /// The payload `hello` answers with and the heartbeat sends.
    pub async fn registration(&self) -> Registration {
        let snapshot = self.control().state().await;
        registration::registration(
            &self.target,
            &snapshot.children,
            &self.ipc_path,
            self.lease.as_secs(),
        )
    }

    async fn config_version(&self) -> String {
        records::config_version(&self.control().state().await.children)
    }

    /// How many recent journal records `state` includes.
    const RECENT: usize = 100;

    async fn dashboard_state(&self) -> state::DashboardState {
        let snapshot = self.control().state().await;
        let events = self.control().events().tail(Self::RECENT);
        let logs = self.control().logs().tail(Self::RECENT);
        let lease = self.lease;
        state::dashboard_state(&state::Inputs {
            target: &self.target,
            snapshot: &snapshot,
            events: &events,
            logs: &logs,
            registration: self.registration.borrow().describe(lease),
            config_version: records::config_version(&snapshot.children),
        })
    }
}
