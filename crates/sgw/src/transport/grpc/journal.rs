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
use crate::journal::{Gap, Item, Record, Start, Subscription};
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
    subscription: Subscription<T>,
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
        let subscription = events.subscribe(start(body.after_sequence, body.include_backlog));
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
        Ok(Response::new(EventStream(stream, slot)))
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
        let from = if body.after_sequence > 0 {
            Start::After(body.after_sequence)
        } else {
            let lines = usize::try_from(body.lines).unwrap_or(usize::MAX);
            logs.start_for_last(
                lines,
                self.shared.max_tail_bytes,
                |line| filter.matches(line),
                |line| line.text.len(),
            )
        };
        // Without follow, the stream ends at what was published when the
        // request arrived.
        let end = (!body.follow).then(|| logs.last_sequence());
        let stream = journal_stream(
            logs.subscribe(from),
            end,
            self.shared.target_id().into(),
            move |line| filter.matches(line),
            |record| pb::TailLogsResponse {
                item: Some(pb::tail_logs_response::Item::Line(conv::log_line(record))),
            },
            |gap| pb::TailLogsResponse {
                item: Some(pb::tail_logs_response::Item::Gap(conv::gap(gap))),
            },
        );
        Ok(Response::new(LogStream(stream, slot)))
    }
}
