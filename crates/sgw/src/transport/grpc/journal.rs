//! `JournalService`: subscriptions to the event and log journals. Each
//! stream reads the shared ring through its own cursor; dropping the stream
//! (a client that goes away) drops the cursor, and no task is left behind.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::Stream;
use tonic::{Request, Response, Status};

use super::{Shared, conv, peer};
use crate::control::Denial;
use crate::control::{ControlError, ControlPlane, EventFilter, LogFilter};
use crate::journal::{self, Cursor, Gap, Item, Record, Reset, ResetReason, Start};
use crate::pb;
use crate::pb::journal_service_server::JournalService;
use crate::transport::admission::UidSlot;

/// How a call is named in the audit trail.
fn via(method: &'static str) -> impl FnOnce() -> String {
    move || format!("grpc:/supervisor.gateway.v1.JournalService/{method}")
}

type Inner<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// The stream `SubscribeEvents` answers with; it holds one of its uid's
/// stream slots until dropped.
pub struct EventStream(
    Inner<pb::SubscribeEventsResponse>,
    #[allow(dead_code)] UidSlot,
);

/// The stream `TailLogs` answers with; it holds one of its uid's stream
/// slots until dropped.
pub struct LogStream(Inner<pb::TailLogsResponse>, #[allow(dead_code)] UidSlot);

macro_rules! delegate_stream {
    ($name:ident, $item:ty) => {
        impl Stream for $name {
            type Item = Result<$item, Status>;
            fn poll_next(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
            ) -> Poll<Option<Self::Item>> {
                self.0.as_mut().poll_next(cx)
            }
        }
        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(stringify!($name))
            }
        }
    };
}
delegate_stream!(EventStream, pb::SubscribeEventsResponse);
delegate_stream!(LogStream, pb::TailLogsResponse);

/// The `JournalService` implementation over any control plane.
#[derive(Debug)]
pub struct JournalApi<C> {
    shared: Arc<Shared<C>>,
}

impl<C> JournalApi<C> {
    pub(super) fn new(shared: Arc<Shared<C>>) -> Self {
        Self { shared }
    }

    /// One of the caller's stream slots, or RESOURCE_EXHAUSTED.
    fn stream_slot(&self, uid: u32) -> Result<UidSlot, Status> {
        self.shared.streams.take(uid).ok_or_else(|| {
            let denial = Denial::TooManyStreams {
                uid,
                max: self.shared.streams.max(),
            };
            self.shared.status(&denial.into())
        })
    }
}

/// Where a subscription starts: `after_sequence` resumes; 0 means only new
/// records unless the backlog is asked for.
fn start(after_sequence: u64, include_backlog: bool) -> Start {
    match (after_sequence, include_backlog) {
        (0, false) => Start::Live,
        (0, true) => Start::Oldest,
        (after, _) => Start::After(after),
    }
}

/// Where a stream starts: a resume position checked against this journal
/// (see [`journal::resume`]), else `fallback`.
fn resume_or(
    journal_id: &str,
    last: u64,
    claimed: &str,
    after: u64,
    fallback: impl FnOnce() -> Start,
) -> (Start, Option<Reset>) {
    if after > 0 {
        journal::resume(journal_id, last, claimed, after)
    } else {
        (fallback(), None)
    }
}

fn stream_start(journal_id: &str, (oldest, last): (u64, u64)) -> pb::StreamStart {
    pb::StreamStart {
        journal_id: journal_id.to_owned(),
        oldest_sequence: oldest,
        last_sequence: last,
    }
}

fn journal_reset(reset: &Reset) -> pb::JournalReset {
    pb::JournalReset {
        reason: match reset.reason {
            ResetReason::JournalChanged => pb::JournalResetReason::JournalChanged,
            ResetReason::AfterHead => pb::JournalResetReason::AfterHead,
        } as i32,
        requested_journal_id: reset.requested_journal_id.clone(),
        requested_after: reset.requested_after,
    }
}

/// `stream` behind its first messages (the StreamStart, and a reset).
fn prefixed<R: Send + 'static>(first: Vec<R>, stream: Inner<R>) -> Inner<R> {
    use futures_util::StreamExt;
    Box::pin(futures_util::stream::iter(first.into_iter().map(Ok)).chain(stream))
}

/// The status a stream ends with when the journal closes: the supervisor
/// shut down, and a reconnecting client should resume elsewhere or later.
fn closed(target_id: &str) -> Status {
    super::status::to_status(&ControlError::ShuttingDown, target_id)
}

/// A journal cursor as a response stream: records kept by `keep` and every
/// gap, converted by `record` / `gap`. With `end`, the stream stops after
/// that sequence instead of following; when the journal closes it ends
/// with the shutting-down status.
fn journal_stream<T, R>(
    subscription: impl Cursor<T> + 'static,
    end: Option<u64>,
    target: Arc<str>,
    keep: impl Fn(&T) -> bool + Send + 'static,
    record: impl Fn(&Record<T>) -> R + Send + 'static,
    gap: impl Fn(&Gap) -> R + Send + 'static,
) -> Inner<R>
where
    T: Send + Sync + 'static,
    R: Send + 'static,
{
    let convert = move |item: Item<T>| match item {
        Item::Gap(lost) => Some(gap(&lost)),
        Item::Record(kept) if keep(&kept.body) => Some(record(&kept)),
        Item::Record(_) => None,
    };
    Box::pin(futures_util::stream::unfold(
        Some((subscription, convert)),
        move |state| {
            let target = Arc::clone(&target);
            async move {
                let (mut subscription, convert) = state?;
                loop {
                    let next = match end {
                        Some(end) => match subscription.try_next() {
                            Some(Item::Record(record)) if record.sequence > end => return None,
                            None => return None,
                            some => some,
                        },
                        None => subscription.next().await,
                    };
                    let Some(item) = next else {
                        return Some((Err(closed(&target)), None));
                    };
                    if let Some(response) = convert(item) {
                        return Some((Ok(response), Some((subscription, convert))));
                    }
                }
            }
        },
    ))
}

#[tonic::async_trait]
impl<C: ControlPlane> JournalService for JournalApi<C> {
    type SubscribeEventsStream = EventStream;
    type TailLogsStream = LogStream;

    async fn subscribe_events(
        &self,
        request: Request<pb::SubscribeEventsRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let caller = peer(&request)?;
        let events = self
            .shared
            .guard
            .events(&caller, via("SubscribeEvents"))
            .await
            .map_err(|e| self.shared.status(&e))?;
        let slot = self.stream_slot(caller.uid)?;
        let body = request.into_inner();
        let filter = EventFilter {
            child_ids: conv::child_ids("child_ids", &body.child_ids)
                .map_err(|e| self.shared.status(&e))?,
            event_types: conv::event_types(&body.event_types)
                .map_err(|e| self.shared.status(&e))?,
        };
        let journal_id = &self.shared.info.journal_id;
        let bounds = events.bounds();
        let (from, reset) = resume_or(
            journal_id,
            bounds.1,
            &body.journal_id,
            body.after_sequence,
            || start(0, body.include_backlog),
        );
        let mut first = vec![pb::SubscribeEventsResponse {
            item: Some(pb::subscribe_events_response::Item::Start(stream_start(
                journal_id, bounds,
            ))),
        }];
        first.extend(reset.as_ref().map(|reset| pb::SubscribeEventsResponse {
            item: Some(pb::subscribe_events_response::Item::Reset(journal_reset(
                reset,
            ))),
        }));
        let subscription = events.subscribe(from);
        let stream = journal_stream(
            subscription,
            None,
            self.shared.target_id().into(),
            move |event| filter.matches(event),
            |record| pb::SubscribeEventsResponse {
                item: Some(pb::subscribe_events_response::Item::Event(conv::event(
                    record,
                ))),
            },
            |gap| pb::SubscribeEventsResponse {
                item: Some(pb::subscribe_events_response::Item::Gap(conv::gap(gap))),
            },
        );
        Ok(Response::new(EventStream(prefixed(first, stream), slot)))
    }

    async fn tail_logs(
        &self,
        request: Request<pb::TailLogsRequest>,
    ) -> Result<Response<LogStream>, Status> {
        let caller = peer(&request)?;
        let logs = self
            .shared
            .guard
            .logs(&caller, via("TailLogs"))
            .await
            .map_err(|e| self.shared.status(&e))?;
        let slot = self.stream_slot(caller.uid)?;
        let body = request.into_inner();
        let filter = LogFilter {
            child_ids: conv::child_ids("child_ids", &body.child_ids)
                .map_err(|e| self.shared.status(&e))?,
        };
        let journal_id = &self.shared.info.journal_id;
        let bounds = logs.bounds();
        let (from, reset) = resume_or(
            journal_id,
            bounds.1,
            &body.journal_id,
            body.after_sequence,
            || {
                let lines = usize::try_from(body.lines).unwrap_or(usize::MAX);
                logs.start_for_last(
                    lines,
                    self.shared.max_tail_bytes,
                    |line| filter.matches(line),
                    |line| line.text.len(),
                )
            },
        );
        let mut first = vec![pb::TailLogsResponse {
            item: Some(pb::tail_logs_response::Item::Start(stream_start(
                journal_id, bounds,
            ))),
        }];
        first.extend(reset.as_ref().map(|reset| pb::TailLogsResponse {
            item: Some(pb::tail_logs_response::Item::Reset(journal_reset(reset))),
        }));
        // Without follow, the stream ends at what was published when the
        // request arrived.
        let end = (!body.follow).then(|| logs.last_sequence());
        let stream = journal_stream(
            logs.subscribe_children(from, &filter.child_ids),
            end,
            self.shared.target_id().into(),
            // The subscription already yields only these children's lines.
            |_| true,
            |record| pb::TailLogsResponse {
                item: Some(pb::tail_logs_response::Item::Line(conv::log_line(record))),
            },
            |gap| pb::TailLogsResponse {
                item: Some(pb::tail_logs_response::Item::Gap(conv::gap(gap))),
            },
        );
        Ok(Response::new(LogStream(prefixed(first, stream), slot)))
    }
}
