//! One legacy connection: a reader that answers requests one at a time (so
//! pipelined requests are answered in order), the push pumps, and a single
//! writer that owns the socket's write half (`writer`). Responses and
//! pushes reach the writer as whole lines through one bounded outbox, so
//! lines interleave but never tear.
//!
//! Closing rules: `frame_too_large` and `invalid_utf8` close after their
//! error line; EOF (even in the middle of a line, which executes nothing)
//! and the idle timeout close silently; a client that leaves a write
//! pending for `write_timeout` is closed by the writer, and the reader
//! stops with it (it may be waiting for a request that will never matter,
//! or for room in the outbox that will never come). A connection with an active
//! subscription is not idle: it is doing what it asked for, listening, and
//! a quiet tree must not disconnect its dashboards (a peer that goes away
//! is still noticed, by EOF or a failed write). On shutdown no further
//! request is read; subscriptions deliver until the journals close, then the
//! connection closes.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::net::UnixStream;
use tokio::net::unix::OwnedReadHalf;
use tokio::sync::mpsc;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

use super::Adapter;
use super::codec::{FrameError, LineCodec};
use super::protocol::{ErrorCode, ErrorObject, INVALID_REQUEST_ID, Response, Stage, line};
use super::push::Pushes;
use super::writer::Outgoing;
use crate::control::ControlPlane;
use crate::transport::peer::Caller;

/// Lines queued for the writer: responses and pushes of one connection.
const OUTBOX_LINES: usize = 64;
/// The read buffer's initial size; it grows up to the frame bound.
const READ_CHUNK: usize = 8 * 1024;

type Frames = FramedRead<OwnedReadHalf, LineCodec>;

/// Why the reader stops, and the line to send first, if any.
struct Closing(Option<Bytes>);

impl<C: ControlPlane> Adapter<C> {
    /// Serves one connection until the client leaves, breaks the framing,
    /// stays idle, or the gateway shuts down.
    pub async fn serve_connection(
        self: Arc<Self>,
        stream: UnixStream,
        peer: Option<Arc<Caller>>,
        shutdown: CancellationToken,
    ) {
        let (read, write) = stream.into_split();
        let (outbox, lines) = mpsc::channel(OUTBOX_LINES);
        let reader = Arc::clone(&self);
        tokio::join!(
            reader.read_requests(read, peer, outbox, shutdown),
            self.write_lines(write, lines)
        );
        tracing::debug!("legacy connection closed");
    }

    async fn read_requests(
        self: Arc<Self>,
        read: OwnedReadHalf,
        peer: Option<Arc<Caller>>,
        outbox: mpsc::Sender<Outgoing>,
        shutdown: CancellationToken,
    ) {
        let mut frames =
            FramedRead::with_capacity(read, LineCodec::new(self.max_frame_bytes()), READ_CHUNK);
        let mut pushes = Pushes::default();
        loop {
            let frame = tokio::select! {
                // The writer gave up on the client: nothing more can reach it.
                () = outbox.closed() => return,
                () = shutdown.cancelled() => None,
                frame = self.next_frame(&mut frames, pushes.active()) => Some(frame),
            };
            let text = match frame {
                None => {
                    pushes.finish().await;
                    return;
                }
                Some(Ok(text)) => text,
                Some(Err(Closing(last))) => {
                    if let Some(last) = last {
                        let _ = outbox.send(Outgoing::Line(last)).await;
                    }
                    return;
                }
            };
            let handled = self.handle(&text, peer.as_ref()).await;
            if outbox.send(Outgoing::Line(handled.response)).await.is_err() {
                return;
            }
            if let Some(subscribe) = handled.subscribe {
                pushes.start(&self, subscribe, &outbox);
            }
        }
    }

    /// The next complete frame, within the idle timeout unless a
    /// subscription is active.
    async fn next_frame(&self, frames: &mut Frames, subscribed: bool) -> Result<String, Closing> {
        let next = if subscribed {
            frames.next().await
        } else {
            match tokio::time::timeout(self.idle_timeout(), frames.next()).await {
                Ok(next) => next,
                Err(_) => {
                    tracing::debug!(idle_timeout = ?self.idle_timeout(), "idle legacy connection closed");
                    return Err(Closing(None));
                }
            }
        };
        let (code, error) = match next {
            Some(Ok(text)) => return Ok(text),
            None => return Err(Closing(None)),
            Some(Err(error @ (FrameError::Truncated { .. } | FrameError::Io(_)))) => {
                tracing::debug!(%error, "legacy connection ended");
                return Err(Closing(None));
            }
            Some(Err(error @ FrameError::TooLarge { .. })) => (ErrorCode::FrameTooLarge, error),
            Some(Err(error @ FrameError::InvalidUtf8 { .. })) => (ErrorCode::InvalidUtf8, error),
        };
        tracing::debug!(%error, "legacy connection closed after a framing error");
        let error =
            ErrorObject::protocol(code, Stage::IpcRead, self.target_id(), error.to_string());
        let response = Response::error(INVALID_REQUEST_ID.to_owned(), error);
        Err(Closing(Some(line(&response))))
    }
}
