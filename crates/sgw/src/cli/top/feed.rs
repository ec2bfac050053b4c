//! The data feed: tasks that talk to the server and hand what they learn
//! to the main loop as [`Feed`] messages, so the loop never awaits the
//! network and the screen stays responsive while the server is away.
//!
//! One task owns the connection: it follows `SubscribeEvents` and, when
//! the stream breaks, reconnects with backoff (as `sgw events --follow`
//! does), resuming after the last sequence of the journal it followed.
//! Every (re)connection hands the main loop a [`Client`], which it uses
//! for snapshots, commands and the log tail.

use std::time::Duration;

use tokio::sync::mpsc;

use super::input::Command;
use crate::cli::client::events::{ATTEMPT_TIMEOUT, BACKOFF_INITIAL, BACKOFF_MAX, reconnect_once};
use crate::cli::client::{CliError, Conn};
use crate::client::Client;
use crate::pb;
use crate::pb::subscribe_events_response::Item as EventItem;
use crate::pb::tail_logs_response::Item as LogItem;

/// Bound on a snapshot or a command, so a hung server shows as an error
/// rather than a frozen status line.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// What the tasks report to the main loop.
#[derive(Debug)]
pub enum Feed {
    /// A (new) connection: snapshots, commands and the log tail use it.
    Connected(Client),
    /// The connection is lost; the feed keeps retrying.
    Disconnected(String),
    /// A snapshot answered.
    State(Result<pb::GetStateResponse, String>),
    Event(pb::Event),
    /// Events that will never arrive (evicted, or this client lagged).
    EventsMissed(pb::Gap),
    /// The server does not hold the journal we followed (it restarted
    /// without keeping it): what we showed belongs to another journal.
    JournalChanged,
    /// A line of the tail numbered `tail` (older tails' lines are dropped).
    Log {
        tail: u64,
        line: pb::LogLine,
    },
    /// What a command did, for the status line (and the record it left).
    Command {
        summary: String,
        record: Option<Box<pb::ChildRecord>>,
    },
}

/// Where the follower is in the server's journal.
#[derive(Debug, Clone, Default)]
pub struct Position {
    /// Every event up to here was received or reported missing.
    pub after: u64,
    /// The journal `after` belongs to.
    pub journal_id: String,
}

/// Follows the event stream forever, reconnecting as needed; returns when
/// the main loop is gone. `client` is the connection the caller already
/// made (its failure to connect was reported with exit code 3).
pub async fn follow_events(
    conn: Conn,
    client: Client,
    mut position: Position,
    tx: mpsc::Sender<Feed>,
) {
    let mut next = Some(client);
    let mut delay = BACKOFF_INITIAL;
    loop {
        let mut client = match next.take() {
            Some(client) => client,
            None => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(BACKOFF_MAX);
                match reconnect(&conn).await {
                    Ok(client) => client,
                    Err(problem) => {
                        if tx.send(Feed::Disconnected(problem)).await.is_err() {
                            return;
                        }
                        continue;
                    }
                }
            }
        };
        if tx.send(Feed::Connected(client.clone())).await.is_err() {
            return;
        }
        let lost = pump(&mut client, &mut position, &tx, &mut delay).await;
        match lost {
            Some(problem) => {
                if tx.send(Feed::Disconnected(problem)).await.is_err() {
                    return;
                }
            }
            None => return,
        }
    }
}

/// One connection attempt, as `sgw events --follow` makes it.
async fn reconnect(conn: &Conn) -> Result<Client, String> {
    match reconnect_once(conn).await {
        Some(Ok(client)) => Ok(client),
        Some(Err(error)) => Err(error.to_string()),
        None => Err(format!("no answer within {ATTEMPT_TIMEOUT:?}")),
    }
}

/// Reads the event stream until it breaks (`Some(why)`) or the main loop
/// is gone (`None`).
async fn pump(
    client: &mut Client,
    position: &mut Position,
    tx: &mpsc::Sender<Feed>,
    delay: &mut Duration,
) -> Option<String> {
    let request = pb::SubscribeEventsRequest {
        after_sequence: position.after,
        include_backlog: true,
        child_ids: Vec::new(),
        event_types: Vec::new(),
        journal_id: position.journal_id.clone(),
    };
    let mut stream = match client.journal.subscribe_events(request).await {
        Ok(response) => response.into_inner(),
        Err(status) => return Some(CliError::from(status).to_string()),
    };
    loop {
        let item = match stream.message().await {
            Ok(Some(response)) => response.item,
            Ok(None) => return Some("the server ended the event stream".to_owned()),
            Err(status) => return Some(CliError::from(status).to_string()),
        };
        *delay = BACKOFF_INITIAL;
        let feed = match item {
            Some(EventItem::Event(event)) if event.sequence > position.after => {
                position.after = event.sequence;
                Feed::Event(event)
            }
            Some(EventItem::Gap(gap)) if gap.last_missing > position.after => {
                position.after = gap.last_missing;
                Feed::EventsMissed(gap)
            }
            Some(EventItem::Start(start)) => {
                position.journal_id = start.journal_id;
                continue;
            }
            Some(EventItem::Reset(_)) => {
                // The server replays its journal from its oldest event.
                position.after = 0;
                Feed::JournalChanged
            }
            _ => continue,
        };
        if tx.send(feed).await.is_err() {
            return None;
        }
    }
}

/// One snapshot, reported as [`Feed::State`].
pub async fn fetch_state(mut client: Client, tx: mpsc::Sender<Feed>) {
    let call = client.control.get_state(pb::GetStateRequest {});
    let result = match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(Ok(response)) => Ok(response.into_inner()),
        Ok(Err(status)) => Err(CliError::from(status).to_string()),
        Err(_) => Err(format!("GetState: no answer within {CALL_TIMEOUT:?}")),
    };
    let _ = tx.send(Feed::State(result)).await;
}

/// Follows one child's output: its last lines, then new ones. Ends with
/// the stream (a lost connection is reported by the event follower, which
/// owns reconnecting; the main loop then starts a new tail).
pub async fn tail_logs(mut client: Client, child_id: String, tail: u64, tx: mpsc::Sender<Feed>) {
    let request = pb::TailLogsRequest {
        child_ids: vec![child_id],
        lines: u32::try_from(super::app::LOG_LINES_KEPT).unwrap_or(u32::MAX),
        follow: true,
        after_sequence: 0,
        journal_id: String::new(),
    };
    let Ok(response) = client.journal.tail_logs(request).await else {
        return;
    };
    let mut stream = response.into_inner();
    while let Ok(Some(response)) = stream.message().await {
        if let Some(LogItem::Line(line)) = response.item
            && tx.send(Feed::Log { tail, line }).await.is_err()
        {
            return;
        }
    }
}

/// The `CommandMeta` of a key press: the journal and the audit trail say
/// it came from this dashboard, and as whom. The user name is looked up
/// once: a lookup can block (NSS), and the dashboard has one thread.
fn command_meta() -> Option<pb::CommandMeta> {
    static WHO: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let who = WHO.get_or_init(|| {
        let uid = nix::unistd::geteuid();
        match nix::unistd::User::from_uid(uid).ok().flatten() {
            Some(user) => format!("sgw top (uid:{uid}({}))", user.name),
            None => format!("sgw top (uid:{uid})"),
        }
    });
    Some(pb::CommandMeta {
        request_id: String::new(),
        requested_by: who.clone(),
        reason: "sgw top".to_owned(),
        confirm: false,
    })
}

/// Sends one command for `child_id`, reported as [`Feed::Command`].
pub async fn send_command(
    mut client: Client,
    command: Command,
    child_id: String,
    tx: mpsc::Sender<Feed>,
) {
    let meta = command_meta();
    let id = child_id.clone();
    let call = async {
        let result = match command {
            Command::Restart => {
                let request = pb::RestartChildRequest { child_id, meta };
                client
                    .control
                    .restart_child(request)
                    .await?
                    .into_inner()
                    .result
            }
            Command::Pause => {
                let request = pb::PauseChildRequest { child_id, meta };
                client
                    .control
                    .pause_child(request)
                    .await?
                    .into_inner()
                    .result
            }
            Command::Resume => {
                let request = pb::ResumeChildRequest { child_id, meta };
                client
                    .control
                    .resume_child(request)
                    .await?
                    .into_inner()
                    .result
            }
        };
        Ok::<_, tonic::Status>(result.unwrap_or_default())
    };
    let verb = command.verb();
    let feed = match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(Ok(result)) => Feed::Command {
            summary: format!("{verb} {id}: {}", result.outcome),
            record: result.child.map(Box::new),
        },
        Ok(Err(status)) => Feed::Command {
            summary: format!("{verb} {id} failed: {}", CliError::from(status)),
            record: None,
        },
        Err(_) => Feed::Command {
            summary: format!("{verb} {id}: no answer within {CALL_TIMEOUT:?}"),
            record: None,
        },
    };
    let _ = tx.send(feed).await;
}
