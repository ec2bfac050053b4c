//! Pushes: one task per subscription reads its journal cursor and queues
//! `event` / `log` lines on the connection's outbox.
//!
//! The outbox is bounded, so a client that reads slowly makes the pump wait,
//! and while it waits its cursor falls behind the journal. Nothing else
//! buffers: once the cursor is more than the journal's capacity behind, the
//! journal reports the lost range as a gap, which is pushed as an `error`
//! line (`events_dropped` / `logs_dropped`, with the range), and the stream
//! continues with the oldest record still retained. A client that stops
//! reading altogether is closed by the writer's deadline (`writer`).

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::Adapter;
use super::dispatch::Subscribe;
use super::protocol::{Dropped, ErrorCode, ErrorObject, Push, Stage, line};
use super::records::{event_record, log_record};
use super::writer::{Feed, Outgoing};
use crate::control::ControlPlane;
use crate::journal::{Gap, GapReason, Item, LogSubscription, Subscription};
use crate::model::{CommandKind, Event, EventKind};

/// The pump tasks of one connection; at most one per journal. Dropping it
/// stops them.
#[derive(Debug, Default)]
pub struct Pushes {
    events: Option<JoinHandle<()>>,
    logs: Option<JoinHandle<()>>,
}

fn running(task: &Option<JoinHandle<()>>) -> bool {
    task.as_ref().is_some_and(|task| !task.is_finished())
}

impl Pushes {
    /// Whether a subscription is still delivering.
    pub fn active(&self) -> bool {
        running(&self.events) || running(&self.logs)
    }

    /// Starts pushing from an accepted subscription. Subscribing again to
    /// a journal already being pushed keeps the running pump (a client
    /// that repeats itself should not get every record twice).
    pub fn start<C: ControlPlane>(
        &mut self,
        adapter: &Arc<Adapter<C>>,
        subscribe: Subscribe,
        outbox: &mpsc::Sender<Outgoing>,
    ) {
        let adapter = Arc::clone(adapter);
        let outbox = outbox.clone();
        match subscribe {
            Subscribe::Events(cursor) if !running(&self.events) => {
                self.events = Some(tokio::spawn(
                    pump_events(adapter, cursor, outbox).in_current_span(),
                ));
            }
            Subscribe::Logs(cursor) if !running(&self.logs) => {
                self.logs = Some(tokio::spawn(
                    pump_logs(adapter, cursor, outbox).in_current_span(),
                ));
            }
            Subscribe::Events(_) | Subscribe::Logs(_) => {}
        }
    }

    /// Waits until every pump has delivered all there is (the journals
    /// closed) or lost its client.
    pub async fn finish(mut self) {
        for task in [self.events.take(), self.logs.take()].into_iter().flatten() {
            let _ = task.await;
        }
    }
}

impl Drop for Pushes {
    fn drop(&mut self) {
        for task in [&self.events, &self.logs].into_iter().flatten() {
            task.abort();
        }
    }
}

/// Events after which the tree's configuration may differ.
fn changes_config(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::ChildAdded
            | EventKind::CommandCompleted {
                command: CommandKind::AddChild | CommandKind::RemoveChild,
                ..
            }
    )
}

/// Where the pump's line leaves the client's view of the feed: after a
/// record, or after a reported range.
fn next_after<T>(item: &Item<T>) -> u64 {
    match item {
        Item::Record(record) => record.sequence + 1,
        Item::Gap(gap) => gap.last_missing + 1,
    }
}

async fn pump_events<C: ControlPlane>(
    adapter: Arc<Adapter<C>>,
    mut cursor: Subscription<Event>,
    outbox: mpsc::Sender<Outgoing>,
) {
    let target_id = adapter.target_id().to_owned();
    let feed = Feed::Events;
    let start = Outgoing::Subscribed {
        feed,
        next: cursor.position(),
    };
    if outbox.send(start).await.is_err() {
        return;
    }
    let mut version = adapter.config_version().await;
    while let Some(item) = cursor.next().await {
        let next = next_after(&item);
        let push = match item {
            Item::Record(record) => {
                if changes_config(&record.body.kind) {
                    version = adapter.config_version().await;
                }
                Push::Event {
                    target_id: target_id.clone(),
                    event: event_record(&target_id, &version, &record),
                }
            }
            Item::Gap(gap) => lagged(&target_id, feed, gap),
        };
        let line = line(&push);
        if outbox
            .send(Outgoing::Push { line, feed, next })
            .await
            .is_err()
        {
            return;
        }
    }
    let _ = outbox
        .send(Outgoing::Line(line(&closed(&target_id, "events"))))
        .await;
}

async fn pump_logs<C: ControlPlane>(
    adapter: Arc<Adapter<C>>,
    mut cursor: LogSubscription,
    outbox: mpsc::Sender<Outgoing>,
) {
    let target_id = adapter.target_id().to_owned();
    let feed = Feed::Logs;
    let start = Outgoing::Subscribed {
        feed,
        next: cursor.position(),
    };
    if outbox.send(start).await.is_err() {
        return;
    }
    while let Some(item) = cursor.next().await {
        let next = next_after(&item);
        let push = match item {
            Item::Record(record) => Push::Log {
                target_id: target_id.clone(),
                log: log_record(&target_id, &record),
            },
            Item::Gap(gap) => lagged(&target_id, feed, gap),
        };
        let line = line(&push);
        if outbox
            .send(Outgoing::Push { line, feed, next })
            .await
            .is_err()
        {
            return;
        }
    }
    let _ = outbox
        .send(Outgoing::Line(line(&closed(&target_id, "logs"))))
        .await;
}

/// The push for a range the journal reported lost to this subscriber.
fn lagged(target_id: &str, feed: Feed, gap: Gap) -> Push {
    let why = match gap.reason {
        GapReason::Lagged => "this connection read too slowly",
        GapReason::Evicted => "they are no longer retained",
        GapReason::Lost => "the server was killed before it stored them",
    };
    dropped(target_id, feed.dropped_code(), feed.records(), gap, why)
}

/// An `events_dropped` / `logs_dropped` error push for `gap`, saying why.
pub fn dropped(target_id: &str, code: ErrorCode, what: &str, gap: Gap, why: &str) -> Push {
    Push::Error {
        target_id: target_id.to_owned(),
        error: ErrorObject::protocol(
            code,
            Stage::Subscription,
            target_id,
            format!(
                "{} {what} dropped (sequences {} to {}): {why}",
                gap.len(),
                gap.first_missing,
                gap.last_missing
            ),
        ),
        dropped: Some(Dropped {
            first_missing: gap.first_missing,
            last_missing: gap.last_missing,
            count: gap.len(),
            reason: gap.reason.as_str(),
        }),
    }
}

/// The last push of a subscription: the journal closed because the
/// supervisor shut down.
fn closed(target_id: &str, what: &str) -> Push {
    let mut error = ErrorObject::protocol(
        ErrorCode::ShuttingDown,
        Stage::Subscription,
        target_id,
        format!("the supervisor is shutting down: no more {what} will be pushed"),
    );
    error.retryable = true;
    Push::Error {
        target_id: target_id.to_owned(),
        error,
        dropped: None,
    }
}
