//! `sgw events`: the retained history (or what follows `--after SEQ`), then
//! with `--follow` new events as they happen, across server restarts.
//!
//! Without `--follow` the command prints up to the newest sequence that
//! `GetState` reported when it started, then exits. `--child` filters on
//! this side, so every sequence passes through the client: the end is
//! always reached and a resume never replays what was filtered out.
//!
//! With `--follow`, a lost stream is retried with backoff (100 ms doubling
//! to 2 s, forever). On reconnect the follower asks whether this is the
//! server it was following: a journal shorter than our position, or a
//! different event at the last sequence we received (compared by sequence,
//! time, type and child), means a new server whose journal restarted at 1.
//! That is printed as a `server restarted` line and the new server's journal
//! is printed from its start. Otherwise it resumes after the last sequence
//! it handled; nothing is printed twice and a loss shows as a gap line.

use std::time::Duration;

use clap::Args;

use super::{CliError, Conn, human, json};
use crate::client::Client;
use crate::pb;
use crate::pb::subscribe_events_response::Item;

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Keep following new events; reconnect when the server goes away.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Only events after this sequence [default: from the oldest retained].
    #[arg(long, value_name = "SEQ")]
    pub after: Option<u64>,
    /// Only events about this child (repeatable); tree-wide events are left out.
    #[arg(long = "child", value_name = "ID")]
    pub children: Vec<String>,
    #[command(flatten)]
    pub conn: Conn,
}

const BACKOFF_INITIAL: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Bound on one reconnect attempt: a server that is draining may still hold
/// its listener without answering.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);

/// The identity of one journal entry, to recognize the same server.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    sequence: u64,
    time: Option<prost_types::Timestamp>,
    event_type: i32,
    child_id: String,
}

impl Seen {
    fn of(event: &pb::Event) -> Self {
        Self {
            sequence: event.sequence,
            time: event.time,
            event_type: event.event_type,
            child_id: event.child_id.clone(),
        }
    }
}

/// Where the follower is in the current server's journal.
#[derive(Debug)]
struct Follower<'a> {
    conn: &'a Conn,
    children: Vec<String>,
    /// Every sequence up to here was printed, filtered out, or shown as a gap.
    position: u64,
    /// The last event received from the current server.
    last_seen: Option<Seen>,
    /// The next reconnect delay; starts over once the stream delivers.
    delay: Duration,
}

impl Follower<'_> {
    fn wanted(&self, event: &pb::Event) -> bool {
        self.children.is_empty() || self.children.contains(&event.child_id)
    }

    fn event(&mut self, event: &pb::Event) -> Result<(), CliError> {
        if event.sequence <= self.position {
            return Ok(());
        }
        self.position = event.sequence;
        self.last_seen = Some(Seen::of(event));
        if !self.wanted(event) {
            return Ok(());
        }
        self.conn
            .print(|| json::event(event), || human::event(event))
    }

    fn gap(&mut self, gap: &pb::Gap) -> Result<(), CliError> {
        if gap.last_missing <= self.position {
            return Ok(());
        }
        let gap = pb::Gap {
            first_missing: gap.first_missing.max(self.position + 1),
            ..*gap
        };
        self.position = gap.last_missing;
        self.conn.print(
            || serde_json::json!({"gap": json::gap(&gap)}),
            || human::gap(&gap, "events"),
        )
    }

    /// A new server: its journal is printed from the start.
    fn restarted(&mut self) -> Result<(), CliError> {
        let previous = self.position;
        self.position = 0;
        self.last_seen = None;
        self.conn.print(
            || serde_json::json!({"server_restarted": {"previous_position": previous}}),
            || {
                format!(
                    "-- server restarted: its journal starts over at sequence 1 (the previous server was followed up to {previous}) --"
                )
            },
        )
    }

    /// Reads from `position` until `end` (or forever). Ends with `Ok` only
    /// when `end` is reached.
    async fn pump(&mut self, client: &mut Client, end: Option<u64>) -> Result<(), CliError> {
        if end.is_some_and(|end| self.position >= end) {
            return Ok(());
        }
        let request = pb::SubscribeEventsRequest {
            after_sequence: self.position,
            include_backlog: true,
            child_ids: Vec::new(),
            event_types: Vec::new(),
        };
        let mut stream = client.journal.subscribe_events(request).await?.into_inner();
        loop {
            let response = stream
                .message()
                .await?
                .ok_or_else(|| tonic::Status::unavailable("the server ended the event stream"))?;
            self.delay = BACKOFF_INITIAL;
            match response.item {
                Some(Item::Event(event)) => self.event(&event)?,
                Some(Item::Gap(gap)) => self.gap(&gap)?,
                None => {}
            }
            if end.is_some_and(|end| self.position >= end) {
                return Ok(());
            }
        }
    }

    /// Whether the server behind `client` is the one we were following.
    async fn same_server(&self, client: &mut Client) -> Result<bool, CliError> {
        let state = client
            .control
            .get_state(pb::GetStateRequest {})
            .await?
            .into_inner();
        if state.last_event_sequence < self.position {
            return Ok(false);
        }
        let Some(seen) = &self.last_seen else {
            return Ok(true);
        };
        let request = pb::SubscribeEventsRequest {
            after_sequence: seen.sequence.saturating_sub(1),
            include_backlog: true,
            child_ids: Vec::new(),
            event_types: Vec::new(),
        };
        let mut stream = client.journal.subscribe_events(request).await?.into_inner();
        match stream.message().await? {
            Some(pb::SubscribeEventsResponse {
                item: Some(Item::Event(event)),
            }) => Ok(Seen::of(&event) == *seen),
            // Evicted since: it cannot be told; the gap line shows the loss.
            Some(_) => Ok(true),
            None => Err(tonic::Status::unavailable("the server ended the event stream").into()),
        }
    }

    /// Connects again with backoff until the server answers, and decides
    /// whether it is the same one.
    async fn reconnect(&mut self) -> Result<Client, CliError> {
        let mut last_problem = String::new();
        loop {
            tokio::time::sleep(self.delay).await;
            self.delay = (self.delay * 2).min(BACKOFF_MAX);
            let attempt = async {
                let mut client = self.conn.connect().await?;
                let same = self.same_server(&mut client).await?;
                Ok::<_, CliError>((client, same))
            };
            match tokio::time::timeout(ATTEMPT_TIMEOUT, attempt).await {
                Ok(Ok((client, same))) => {
                    eprintln!("sgw: reconnected to {}", self.conn.path().display());
                    if !same {
                        self.restarted()?;
                    }
                    return Ok(client);
                }
                Ok(Err(CliError::Output(error))) => return Err(CliError::Output(error)),
                outcome => {
                    // Say why it keeps failing, once per different reason.
                    let problem = match outcome {
                        Ok(Err(error)) => error.to_string(),
                        _ => format!("no answer within {ATTEMPT_TIMEOUT:?}"),
                    };
                    if problem != last_problem {
                        eprintln!("sgw: still trying: {problem}");
                        last_problem = problem;
                    }
                }
            }
        }
    }
}

pub async fn events(args: EventsArgs) -> Result<(), CliError> {
    let mut client = args.conn.connect().await?;
    let state = client
        .control
        .get_state(pb::GetStateRequest {})
        .await?
        .into_inner();
    warn_unknown(&args.children, &state);
    if let Some(after) = args.after
        && after > state.last_event_sequence
    {
        eprintln!(
            "sgw: note: --after {after} is past the newest event ({}); a restarted server's journal starts over at 1",
            state.last_event_sequence
        );
    }
    let end = (!args.follow).then_some(state.last_event_sequence);
    let mut follower = Follower {
        conn: &args.conn,
        children: args.children.clone(),
        position: args.after.unwrap_or(0),
        last_seen: None,
        delay: BACKOFF_INITIAL,
    };
    loop {
        match follower.pump(&mut client, end).await {
            Ok(()) => return Ok(()),
            Err(CliError::Call(status)) if args.follow => {
                eprintln!(
                    "sgw: lost the event stream ({}); reconnecting to {}",
                    super::error::status_line(&status),
                    args.conn.path().display()
                );
                client = follower.reconnect().await?;
            }
            Err(error) => return Err(error),
        }
    }
}

/// A note on stderr for a `--child` that is not a current child (its
/// history may still be retained, so this is not an error).
pub fn warn_unknown(children: &[String], state: &pb::GetStateResponse) {
    let known: Vec<&str> = state.children.iter().map(|c| c.child_id.as_str()).collect();
    for child in children {
        if !known.contains(&child.as_str()) {
            eprintln!(
                "sgw: note: no current child named {child:?} (known children: {}); showing what is retained",
                known.join(", ")
            );
        }
    }
}
