//! The only writer of a legacy connection, and its write deadline.
//!
//! Responses and pushes reach the writer as whole lines through the
//! connection's bounded outbox; whatever is queued is written as one batch.
//! The socket's buffers and the outbox are bounded, so a client that stops
//! reading stops the writer, then everyone queueing for it: without a
//! deadline such a client would hold its connection, its `max_connections`
//! slot and its reader forever. A batch that cannot be written within
//! `write_timeout` therefore ends the connection, treated as the slowest
//! possible consumer: its subscriptions are dropped with a final
//! `events_dropped` / `logs_dropped` push naming what it will not get (if
//! the socket takes it without waiting: a client that does not read has no
//! room left, which is why this is not waited for), then it is closed.

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::mpsc;

use super::Adapter;
use super::protocol::{ErrorCode, line};
use super::push::dropped;
use crate::control::ControlPlane;
use crate::journal::{Gap, GapReason};

/// A batch grows to about this size before it is written: enough to write
/// a pipelined burst in one syscall, small enough to bound the copy.
const BATCH_BYTES: usize = 64 * 1024;

/// A journal a connection can subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    Events,
    Logs,
}

impl Feed {
    pub(super) fn dropped_code(self) -> ErrorCode {
        match self {
            Feed::Events => ErrorCode::EventsDropped,
            Feed::Logs => ErrorCode::LogsDropped,
        }
    }

    pub(super) fn records(self) -> &'static str {
        match self {
            Feed::Events => "events",
            Feed::Logs => "log lines",
        }
    }
}

/// What the writer is handed, in the order it goes out.
#[derive(Debug)]
pub enum Outgoing {
    /// A response, or a push that accounts for no journal record.
    Line(Bytes),
    /// A push that accounts for `feed`'s records before `next`: a record
    /// (`next` is its sequence + 1) or a dropped range (its last + 1).
    Push { line: Bytes, feed: Feed, next: u64 },
    /// A subscription to `feed` starts at sequence `next`. Carries no bytes;
    /// it tells the writer where the client's view of the feed begins.
    Subscribed { feed: Feed, next: u64 },
}

/// Per feed, the first sequence the client has not been sent whole
/// (`None`: not subscribed). What a stalled client is told it lost.
#[derive(Debug, Default)]
struct Delivered {
    events: Option<u64>,
    logs: Option<u64>,
}

impl Delivered {
    fn advance(&mut self, feed: Feed, next: u64) {
        match feed {
            Feed::Events => self.events = Some(next),
            Feed::Logs => self.logs = Some(next),
        }
    }
}

/// Queued lines copied into one buffer, with the feed accounting of each
/// push at the offset where its line ends.
#[derive(Debug, Default)]
struct Batch {
    bytes: BytesMut,
    marks: Vec<(usize, Feed, u64)>,
}

impl Batch {
    fn add(&mut self, outgoing: Outgoing, delivered: &mut Delivered) {
        match outgoing {
            Outgoing::Line(line) => self.bytes.extend_from_slice(&line),
            Outgoing::Push { line, feed, next } => {
                self.bytes.extend_from_slice(&line);
                self.marks.push((self.bytes.len(), feed, next));
            }
            // Every push of the feed comes after this in the same order.
            Outgoing::Subscribed { feed, next } => delivered.advance(feed, next),
        }
    }

    /// Applies the marks of the lines within the first `written` bytes.
    fn written(&mut self, written: usize, delivered: &mut Delivered) {
        for &(end, feed, next) in &self.marks {
            if end <= written {
                delivered.advance(feed, next);
            }
        }
        self.marks.clear();
    }
}

/// Why the writer stopped before the outbox closed.
#[derive(Debug, thiserror::Error)]
enum WriteError {
    #[error("the client went away: {0}")]
    Gone(std::io::Error),
    #[error("a write waited {0:?} for the client to read")]
    Stalled(std::time::Duration),
}

impl<C: ControlPlane> Adapter<C> {
    /// Writes lines until every sender is gone (then shuts the write half
    /// down), the client goes away, or it stops reading. Returning drops
    /// the outbox's receiver, which is how the reader and the pumps learn
    /// that the connection is over.
    pub(super) async fn write_lines(
        &self,
        mut write: OwnedWriteHalf,
        mut outbox: mpsc::Receiver<Outgoing>,
    ) {
        let mut delivered = Delivered::default();
        let mut batch = Batch::default();
        let error = loop {
            let Some(first) = outbox.recv().await else {
                let _ = write.shutdown().await;
                return;
            };
            batch.add(first, &mut delivered);
            while batch.bytes.len() < BATCH_BYTES {
                match outbox.try_recv() {
                    Ok(next) => batch.add(next, &mut delivered),
                    Err(_) => break,
                }
            }
            let all = batch.bytes.split().freeze();
            let mut rest = all.clone();
            let deadline = self.write_timeout();
            match tokio::time::timeout(deadline, write.write_all_buf(&mut rest)).await {
                Ok(Ok(())) => batch.written(all.len(), &mut delivered),
                Ok(Err(error)) => break WriteError::Gone(error),
                Err(_) => {
                    // `write_all_buf` advanced `rest` past what was written.
                    let written = all.len() - rest.len();
                    batch.written(written, &mut delivered);
                    let last = self.farewell(&all, written, &delivered);
                    write_now(&write, &last);
                    break WriteError::Stalled(deadline);
                }
            }
        };
        match error {
            WriteError::Gone(_) => tracing::debug!(%error, "legacy client went away"),
            WriteError::Stalled(_) => tracing::info!(
                %error,
                events_from = delivered.events,
                logs_from = delivered.logs,
                "legacy client stopped reading: subscriptions dropped, connection closed"
            ),
        }
    }

    /// The bytes to try before closing on a stalled client: the rest of the
    /// line it was in the middle of (so the stream stays line-aligned),
    /// then one `*_dropped` push per subscribed feed with records it was
    /// not sent.
    fn farewell(&self, all: &Bytes, written: usize, delivered: &Delivered) -> BytesMut {
        let mut out = BytesMut::from(rest_of_line(all, written));
        let feeds = [
            (
                Feed::Events,
                delivered.events,
                self.control().events().last_sequence(),
            ),
            (
                Feed::Logs,
                delivered.logs,
                self.control().logs().last_sequence(),
            ),
        ];
        for (feed, first, last) in feeds {
            let Some(first) = first.filter(|&first| first <= last) else {
                continue;
            };
            let gap = Gap {
                first_missing: first,
                last_missing: last,
                reason: GapReason::Lagged,
            };
            let why = format!(
                "this connection read nothing for {:?} and is closed",
                self.write_timeout()
            );
            let push = dropped(
                self.target_id(),
                feed.dropped_code(),
                feed.records(),
                gap,
                &why,
            );
            out.extend_from_slice(&line(&push));
        }
        out
    }
}

/// The unsent end of the line `written` stops in, through its newline;
/// empty if the first `written` bytes end on a line boundary.
fn rest_of_line(all: &[u8], written: usize) -> &[u8] {
    if written == 0 || all.get(written - 1) == Some(&b'\n') {
        return &[];
    }
    let unsent = all.get(written..).unwrap_or_default();
    let end = unsent.iter().position(|&b| b == b'\n').map_or(0, |i| i + 1);
    &unsent[..end]
}

/// Writes what the socket takes without waiting.
fn write_now(write: &OwnedWriteHalf, bytes: &[u8]) {
    let mut rest = bytes;
    while !rest.is_empty() {
        match write.try_write(rest) {
            Ok(0) | Err(_) => return,
            Ok(n) => rest = &rest[n..],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A write cut short in the middle of a line leaves the stream
    /// line-aligned only if exactly the rest of that line goes next.
    #[test]
    fn the_rest_of_a_cut_line_is_exactly_up_to_its_newline() {
        let all = b"{\"a\":1}\n{\"b\":2}\n";
        assert_eq!(rest_of_line(all, 0), b"");
        assert_eq!(rest_of_line(all, 8), b"", "cut on a boundary");
        assert_eq!(rest_of_line(all, 3), b"\":1}\n");
        assert_eq!(rest_of_line(all, 10), b"b\":2}\n");
        assert_eq!(rest_of_line(all, all.len()), b"");
    }

    /// Only the pushes whose whole line went out count as delivered; a
    /// subscription start counts at once (it carries no bytes).
    #[test]
    fn delivery_advances_only_past_whole_lines() {
        let mut delivered = Delivered::default();
        let mut batch = Batch::default();
        batch.add(
            Outgoing::Subscribed {
                feed: Feed::Events,
                next: 5,
            },
            &mut delivered,
        );
        assert_eq!(delivered.events, Some(5));
        for sequence in 5..8 {
            let line = Bytes::from(format!("event {sequence}\n"));
            let push = Outgoing::Push {
                line,
                feed: Feed::Events,
                next: sequence + 1,
            };
            batch.add(push, &mut delivered);
        }
        // Each line is 8 bytes: the first went out whole, the second half.
        batch.written(12, &mut delivered);
        assert_eq!(delivered.events, Some(6));
        assert_eq!(delivered.logs, None);
    }
}
