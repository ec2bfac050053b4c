//! `sgw events`: the retained history (or what follows `--after SEQ`), then
//! with `--follow` new events as they happen, across server restarts.
//!
//! Without `--follow` the command prints up to the newest sequence that
//! `GetState` reported when it started, then exits. `--child` filters on
//! this side, so every sequence passes through the client: the end is
//! always reached and a resume never replays what was filtered out.
//!
//! With `--follow`, a lost stream is retried with backoff (100 ms doubling
//! to 2 s, forever). Every request names the journal its position belongs
//! to (the `journal_id` of the stream's first message); a server that
//! answers with a `JournalReset` (its journal is not the one we followed:
//! it restarted without keeping one, or our position is past its head)
//! is printed as a `server restarted` line, and its journal is printed
//! from the oldest retained event. Otherwise it resumes after the last
//! sequence it handled; nothing is printed twice and a loss shows as a
//! gap line.

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

/// Reconnect backoff of every following client (`events --follow`, `top`).
pub(in crate::cli) const BACKOFF_INITIAL: Duration = Duration::from_millis(100);
pub(in crate::cli) const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Bound on one reconnect attempt: a server that is draining may still hold
/// its listener without answering.
pub(in crate::cli) const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);

/// One reconnect attempt: connected, and answering `GetInfo` (a server
/// that accepts but cannot answer is not back yet). `None`: no answer
/// within [`ATTEMPT_TIMEOUT`].
pub(in crate::cli) async fn reconnect_once(conn: &Conn) -> Option<Result<Client, CliError>> {
    let attempt = async {
        let mut client = conn.connect().await?;
        client.control.get_info(pb::GetInfoRequest {}).await?;
        Ok::<_, CliError>(client)
    };
    tokio::time::timeout(ATTEMPT_TIMEOUT, attempt).await.ok()
}

/// Where the follower is in the current server's journal.
#[derive(Debug)]
struct Follower<'a> {
    conn: &'a Conn,
    children: Vec<String>,
    /// Every sequence up to here was printed, filtered out, or shown as a gap.
    position: u64,
    /// The journal `position` belongs to (unknown for a bare `--after`).
    journal_id: String,
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

    /// The server did not honour our position: its journal is printed
    /// from the oldest retained event.
    fn restarted(&mut self, reset: &pb::JournalReset) -> Result<(), CliError> {
        let previous = self.position;
        self.position = 0;
        let reason = pb::JournalResetReason::try_from(reset.reason)
            .unwrap_or(pb::JournalResetReason::Unspecified);
        let why = match reason {
            pb::JournalResetReason::AfterHead => "it has no event after our position",
            _ => "its journal is not the one we followed",
        };
        self.conn.print(
            || {
                serde_json::json!({"server_restarted": {
                    "previous_position": previous,
                    "reason": reason.as_str_name(),
                }})
            },
            || {
                format!(
                    "-- server restarted: {why} (followed up to {previous}); printing its journal from the oldest retained event --"
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
            journal_id: self.journal_id.clone(),
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
                Some(Item::Start(start)) => self.journal_id = start.journal_id,
                Some(Item::Reset(reset)) => self.restarted(&reset)?,
                None => {}
            }
            if end.is_some_and(|end| self.position >= end) {
                return Ok(());
            }
        }
    }

    /// Connects again with backoff until the server answers (whether it is
    /// the same journal, the next stream's first messages say).
    async fn reconnect(&mut self) -> Result<Client, CliError> {
        let mut last_problem = String::new();
        loop {
            tokio::time::sleep(self.delay).await;
            self.delay = (self.delay * 2).min(BACKOFF_MAX);
            match reconnect_once(self.conn).await {
                Some(Ok(client)) => {
                    eprintln!("sgw: reconnected to {}", self.conn.path().display());
                    return Ok(client);
                }
                Some(Err(CliError::Output(error))) => return Err(CliError::Output(error)),
                outcome => {
                    // Say why it keeps failing, once per different reason.
                    let problem = match outcome {
                        Some(Err(error)) => error.to_string(),
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
            "sgw: note: --after {after} is past the newest event ({}); printing from the oldest retained event",
            state.last_event_sequence
        );
    }
    let end = (!args.follow).then_some(state.last_event_sequence);
    let mut follower = Follower {
        conn: &args.conn,
        children: args.children.clone(),
        position: args.after.unwrap_or(0),
        journal_id: String::new(),
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
