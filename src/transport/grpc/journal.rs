//! `JournalService`: subscriptions to the event and log journals. Each
//! stream reads the shared ring through its own cursor; dropping the stream
//! (a client that goes away) drops the cursor, and no task is left behind.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::Stream;
use tonic::{Request, Response, Status};

use super::{Shared, conv, peer};
use crate::control::{ControlError, ControlPlane, EventFilter, LogFilter};
use crate::journal::{Item, Start};
use crate::pb;
use crate::pb::journal_service_server::JournalService;

type Inner<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// The stream `SubscribeEvents` answers with.
pub struct EventStream(Inner<pb::SubscribeEventsResponse>);

/// The stream `TailLogs` answers with.
pub struct LogStream(Inner<pb::TailLogsResponse>);

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

#[tonic::async_trait]
impl<C: ControlPlane> JournalService for JournalApi<C> {
    type SubscribeEventsStream = EventStream;
    type TailLogsStream = LogStream;

    async fn subscribe_events(
        &self,
        request: Request<pb::SubscribeEventsRequest>,
    ) -> Result<Response<EventStream>, Status> {
        peer(&request)?;
        let body = request.into_inner();
        let filter = EventFilter {
            child_ids: conv::child_ids("child_ids", &body.child_ids)
                .map_err(|e| self.shared.status(&e))?,
            event_types: conv::event_types(&body.event_types)
                .map_err(|e| self.shared.status(&e))?,
        };
        let subscription = self
            .shared
            .control
            .events()
            .subscribe(start(body.after_sequence, body.include_backlog));
        let target = self.shared.control.info().target_id;
        let stream = futures_util::stream::unfold(Some((subscription, filter)), move |state| {
            let target = target.clone();
            async move {
                let (mut subscription, filter) = state?;
                loop {
                    let item = match subscription.next().await {
                        None => return Some((Err(closed(&target)), None)),
                        Some(Item::Gap(gap)) => {
                            pb::subscribe_events_response::Item::Gap(conv::gap(&gap))
                        }
                        Some(Item::Record(record)) if filter.matches(&record.body) => {
                            pb::subscribe_events_response::Item::Event(conv::event(&record))
                        }
                        Some(Item::Record(_)) => continue,
                    };
                    let response = pb::SubscribeEventsResponse { item: Some(item) };
                    return Some((Ok(response), Some((subscription, filter))));
                }
            }
        });
        Ok(Response::new(EventStream(Box::pin(stream))))
    }

    async fn tail_logs(
        &self,
        request: Request<pb::TailLogsRequest>,
    ) -> Result<Response<LogStream>, Status> {
        peer(&request)?;
        let body = request.into_inner();
        let filter = LogFilter {
            child_ids: conv::child_ids("child_ids", &body.child_ids)
                .map_err(|e| self.shared.status(&e))?,
        };
        let logs = self.shared.control.logs();
        let from = if body.after_sequence > 0 {
            Start::After(body.after_sequence)
        } else {
            let lines = usize::try_from(body.lines).unwrap_or(usize::MAX);
            logs.start_for_last(lines, |line| filter.matches(line))
        };
        // Without follow, the stream ends at what was published when the
        // request arrived.
        let end = (!body.follow).then(|| logs.last_sequence());
        let subscription = logs.subscribe(from);
        let target = self.shared.control.info().target_id;
        let stream = futures_util::stream::unfold(Some((subscription, filter)), move |state| {
            let target = target.clone();
            async move {
                let (mut subscription, filter) = state?;
                loop {
                    let next = match end {
                        // Not following: what is retained up to `end`, then
                        // a normal end of stream.
                        Some(end) => match subscription.try_next() {
                            Some(Item::Record(record)) if record.sequence > end => return None,
                            None => return None,
                            some => some,
                        },
                        None => subscription.next().await,
                    };
                    let item = match next {
                        None => return Some((Err(closed(&target)), None)),
                        Some(Item::Gap(gap)) => pb::tail_logs_response::Item::Gap(conv::gap(&gap)),
                        Some(Item::Record(record)) if filter.matches(&record.body) => {
                            pb::tail_logs_response::Item::Line(conv::log_line(&record))
                        }
                        Some(Item::Record(_)) => continue,
                    };
                    return Some((
                        Ok(pb::TailLogsResponse { item: Some(item) }),
                        Some((subscription, filter)),
                    ));
                }
            }
        });
        Ok(Response::new(LogStream(Box::pin(stream))))
    }
}
