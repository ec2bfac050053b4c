//! The accept loops: peer credentials and admission (see
//! [`admission`](super::admission)), protocol detection and the
//! `:authority` repair, all decided once per connection before any request
//! reaches a handler.
//!
//! Admission happens in the accept loop itself, from the kernel's
//! credentials (one `getsockopt`): a uid that may not connect, or that
//! holds its share already, is closed before a byte is read, so it never
//! reaches a decoder. Everything slower (user name, `/proc`) runs in the
//! connection's own task.
//!
//! On the main socket each accepted connection is classified in its own
//! task (the accept loop never waits on a client) by peeking, without
//! consuming, at the first byte the client sends: `P`, the start of the
//! HTTP/2 preface `PRI * HTTP/2.0`, goes to tonic; anything else to the
//! legacy adapter, if enabled. A client that sends nothing within
//! `first_byte_timeout` is closed (both protocols are client-first). Both protocols share one
//! `max_connections` budget, across the main and the dedicated socket.

use std::io;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use nix::sys::socket::{MsgFlags, recv};
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::transport::server::Connected;
use tracing::Instrument;

use super::admission::{Budget, RefusalLog, Refused, Shares, Slot};
use super::legacy::Adapter;
use super::peer::{Caller, ConnectionInfo};
use crate::control::ControlPlane;
use crate::security::{AuditRecord, Security};
use h2_authority::{AuthorityRewrite, Deadlines};

/// One accepted gRPC connection.
pub struct Connection {
    io: AuthorityRewrite<UnixStream>,
    info: ConnectionInfo,
    /// Held for the connection's lifetime: its slot under `max_connections`.
    _slot: Slot,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("info", &self.info)
            .finish()
    }
}

impl Connected for Connection {
    type ConnectInfo = ConnectionInfo;

    fn connect_info(&self) -> ConnectionInfo {
        self.info.clone()
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Limits applied at accept time.
#[derive(Debug, Clone, Copy)]
pub struct AcceptLimits {
    pub shares: Shares,
    /// From accept to the client's preface and first frame, and from a
    /// request's HEADERS frame to the end of its header block.
    pub handshake_timeout: Duration,
    /// How long a new connection on the main socket may stay silent before
    /// its protocol is known.
    pub first_byte_timeout: Duration,
}

/// Where the connections of one listener go.
#[derive(Debug, Clone)]
enum Route {
    /// The main socket: HTTP/2 to tonic (through this channel), the rest
    /// to the legacy adapter.
    Detect(mpsc::Sender<io::Result<Connection>>),
    /// A dedicated legacy socket.
    LegacyOnly,
}

/// What the accept loops and connection tasks share.
struct Shared<C> {
    budget: Arc<Budget>,
    limits: AcceptLimits,
    security: Arc<Security>,
    refusals: RefusalLog,
    legacy: Option<Arc<Adapter<C>>>,
    /// Whether non-HTTP/2 connections on the main socket go to `legacy`.
    detect_legacy: bool,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

/// Accepts on the gateway's sockets until `shutdown` is cancelled. Every
/// task it starts (accept loops, classification, legacy connections) is
/// tracked, so [`drain`](Acceptor::drain) can wait for them.
pub struct Acceptor<C> {
    shared: Arc<Shared<C>>,
}

impl<C> std::fmt::Debug for Acceptor<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acceptor")
            .field("limits", &self.shared.limits)
            .field("legacy", &self.shared.legacy.is_some())
            .field("tasks", &self.shared.tasks)
            .finish()
    }
}

impl<C: ControlPlane> Acceptor<C> {
    /// `legacy` serves the dedicated socket and, if `detect_legacy`, the
    /// non-HTTP/2 connections of the main one.
    pub fn new(
        limits: AcceptLimits,
        security: Arc<Security>,
        legacy: Option<Arc<Adapter<C>>>,
        detect_legacy: bool,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                budget: Budget::new(limits.shares, security.owner_uid()),
                limits,
                security,
                refusals: RefusalLog::default(),
                legacy,
                detect_legacy,
                tasks: TaskTracker::new(),
                shutdown,
            }),
        }
    }

    /// The connection budget, for metrics to read at scrape time.
    pub fn budget(&self) -> Arc<Budget> {
        Arc::clone(&self.shared.budget)
    }

    /// Tracks other tasks that must end before the gateway has drained.
    pub fn tasks(&self) -> &TaskTracker {
        &self.shared.tasks
    }

    /// Accepts on the main socket, yielding the HTTP/2 connections as the
    /// stream tonic serves. Connections beyond the limit are closed at once
    /// (and logged); the others are unaffected.
    pub fn incoming(&self, listener: UnixListener) -> ReceiverStream<io::Result<Connection>> {
        let (tx, rx) = mpsc::channel(64);
        let span = tracing::info_span!("accept", socket = "main");
        self.shared.tasks.spawn(
            Arc::clone(&self.shared)
                .accept_loop(listener, Route::Detect(tx))
                .instrument(span),
        );
        ReceiverStream::new(rx)
    }

    /// Accepts on a dedicated legacy socket. Without an adapter every
    /// connection is closed.
    pub fn serve_legacy(&self, listener: UnixListener) {
        let span = tracing::info_span!("accept", socket = "legacy");
        self.shared.tasks.spawn(
            Arc::clone(&self.shared)
                .accept_loop(listener, Route::LegacyOnly)
                .instrument(span),
        );
    }

    /// Waits for every tracked task; call after `shutdown` was cancelled.
    pub async fn drain(&self) {
        self.shared.tasks.close();
        self.shared.tasks.wait().await;
    }
}

impl<C: ControlPlane> Shared<C> {
    async fn accept_loop(self: Arc<Self>, listener: UnixListener, route: Route) {
        let mut summary = tokio::time::interval(super::admission::REFUSAL_LOG_INTERVAL);
        summary.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let accepted = tokio::select! {
                () = self.shutdown.cancelled() => break,
                _ = summary.tick() => {
                    self.refusals.flush();
                    continue;
                }
                accepted = listener.accept() => accepted,
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of file descriptors and similar: back off instead
                    // of spinning; the listener itself stays usable.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            match self.admit(&stream) {
                Ok(slot) => {
                    self.tasks
                        .spawn(Arc::clone(&self).identify(stream, slot, route.clone()));
                }
                Err(refused) => self.refusals.note(refused),
            }
        }
        self.refusals.flush();
    }

    /// Admission from the kernel's credentials alone: may this uid connect,
    /// and is there a slot for it? A refused connection is dropped (closed)
    /// by the caller without reading from it.
    fn admit(&self, stream: &UnixStream) -> Result<Slot, Refused> {
        let Ok(cred) = stream.peer_cred() else {
            // Handlers answer UNAUTHENTICATED; it gets no reserved slot.
            return self.budget.take(None);
        };
        let (uid, gid) = (cred.uid(), cred.gid());
        if let Err(denial) = self.security.admit_ids(uid, gid) {
            let pid = cred.pid().and_then(|pid| u32::try_from(pid).ok());
            let record = AuditRecord::at_accept(uid, gid, pid, "deny", denial.code());
            self.security.audit().deny_detached(record);
            return Err(Refused::NotAllowed { uid });
        }
        self.budget.take(Some(uid))
    }

    /// Reads the peer's full identity (in the connection's task: the user
    /// name lookup may be slow) and routes the connection under its span.
    async fn identify(self: Arc<Self>, stream: UnixStream, slot: Slot, route: Route) {
        let peer = match crate::transport::peer::identify(&stream) {
            Ok(peer) => Some(Arc::new(peer)),
            Err(error) => {
                tracing::warn!(%error, "no peer credentials for a connection");
                None
            }
        };
        let span = tracing::info_span!(
            "connection",
            conn = peer.as_ref().map(|p| p.connection_id),
            uid = peer.as_ref().map(|p| p.uid),
            pid = peer.as_ref().and_then(|p| p.pid),
        );
        self.route(stream, peer, slot, route).instrument(span).await;
    }

    /// Routes one connection; the slot lives as long as the connection.
    async fn route(&self, stream: UnixStream, peer: Option<Arc<Caller>>, slot: Slot, route: Route) {
        let tx = match route {
            Route::Detect(tx) => tx,
            Route::LegacyOnly => return self.serve_legacy(stream, peer, slot).await,
        };
        let first = tokio::select! {
            () = self.shutdown.cancelled() => return,
            first = tokio::time::timeout(self.limits.first_byte_timeout, first_byte(&stream)) => first,
        };
        match first {
            Ok(Ok(Some(b'P'))) => {
                let connection = Connection {
                    io: AuthorityRewrite::with_deadlines(
                        stream,
                        Deadlines {
                            handshake: self.limits.handshake_timeout,
                            header_block: self.limits.handshake_timeout,
                        },
                    ),
                    info: ConnectionInfo { peer },
                    _slot: slot,
                };
                tokio::select! {
                    () = self.shutdown.cancelled() => {}
                    _ = tx.send(Ok(connection)) => {}
                }
            }
            Ok(Ok(Some(_))) if self.detect_legacy => {
                drop(tx);
                self.serve_legacy(stream, peer, slot).await;
            }
            Ok(Ok(Some(byte))) => {
                tracing::debug!(byte, "not HTTP/2 and legacy is off: connection closed");
            }
            Ok(Ok(None)) => tracing::debug!("connection closed before sending anything"),
            Ok(Err(error)) => tracing::debug!(%error, "connection failed before classification"),
            Err(_) => tracing::debug!(
                timeout = ?self.limits.first_byte_timeout,
                "connection sent nothing: closed"
            ),
        }
    }

    async fn serve_legacy(&self, stream: UnixStream, peer: Option<Arc<Caller>>, slot: Slot) {
        if let Some(adapter) = &self.legacy {
            Arc::clone(adapter)
                .serve_connection(stream, peer, self.shutdown.clone())
                .await;
        }
        drop(slot);
    }
}

/// The first byte the client sent, left in the socket for whoever reads
/// next; `None` if it closed without sending anything.
async fn first_byte(stream: &UnixStream) -> io::Result<Option<u8>> {
    let mut byte = [0u8; 1];
    loop {
        stream.readable().await?;
        let peeked = stream.try_io(Interest::READABLE, || {
            recv(stream.as_raw_fd(), &mut byte, MsgFlags::MSG_PEEK).map_err(io::Error::from)
        });
        match peeked {
            Ok(0) => return Ok(None),
            Ok(_) => return Ok(Some(byte[0])),
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) => {}
            Err(error) => return Err(error),
        }
    }
}
