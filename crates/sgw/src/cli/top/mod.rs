//! `sgw top`: a live terminal dashboard over `GetState`, `SubscribeEvents`
//! and `TailLogs`, with keys that restart, pause and resume the selected
//! child.
//!
//! The main loop owns the [`App`] and the terminal and never awaits the
//! network: the feed's tasks ([`feed`]) report through one channel, keys
//! arrive through another ([`input`]). Events mark the snapshot stale; a
//! new `GetState` is fetched at most every [`REFRESH_MIN`] (and every
//! [`REFRESH_EVERY`] regardless, for uptime, CPU and memory), one at a
//! time. Raw mode is left on every way out: return, error, panic (the
//! panic hook `ratatui::try_init` installs), SIGTERM and SIGHUP.

mod app;
mod feed;
mod input;
mod render;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::Args;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use app::{App, EVENTS_KEPT, Link};
use feed::Feed;
use input::{Action, Input};

use super::client::{CliError, Conn};
use crate::client::Client;
use crate::pb;

/// At most one snapshot per this interval, however many events arrive.
const REFRESH_MIN: Duration = Duration::from_millis(250);
/// A snapshot at least this often, for the numbers no event announces.
const REFRESH_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Args)]
pub struct TopArgs {
    /// The gateway's socket [default: $SGW_SOCKET, else
    /// $XDG_RUNTIME_DIR/sgw/sgw.sock, else /tmp/sgw-$UID/sgw.sock]
    #[arg(long, value_name = "PATH", env = "SGW_SOCKET")]
    pub socket: Option<PathBuf>,
}

/// Runs the dashboard to its exit code: 3 when the server cannot be
/// reached at start, 1 when its first snapshot fails or the terminal
/// cannot be used, 0 on quit.
pub fn run(args: TopArgs) -> ExitCode {
    let conn = Conn {
        socket: args.socket,
        json: false,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return CliError::Output(error).report(false),
    };
    match runtime.block_on(start(conn)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => error.report(false),
    }
}

/// Leaves raw mode and the alternate screen when dropped, so an early
/// return or an unwinding panic cannot leave the terminal unusable.
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// Connects and takes the first snapshot before touching the terminal, so
/// "cannot connect" is a plain message with exit code 3.
async fn start(conn: Conn) -> Result<(), CliError> {
    let mut client = conn.connect().await?;
    let state = client
        .control
        .get_state(pb::GetStateRequest {})
        .await?
        .into_inner();
    let position = feed::Position {
        // The recent history fills the events pane; older is not shown.
        after: state
            .last_event_sequence
            .saturating_sub(u64::try_from(EVENTS_KEPT).unwrap_or(u64::MAX)),
        journal_id: state.journal_id.clone(),
    };
    let app = App::new(conn.path().display().to_string(), state);
    let (tx, feed_rx) = mpsc::channel(1024);
    let follower = tokio::spawn(feed::follow_events(
        conn.clone(),
        client.clone(),
        position,
        tx.clone(),
    ));
    let _restore = Restore;
    let terminal = ratatui::try_init().map_err(CliError::Output)?;
    let result = Dashboard {
        app,
        client: None,
        tx,
        tail: None,
        tail_number: 0,
        refresh: Refresh::default(),
    }
    .run(terminal, feed_rx)
    .await;
    follower.abort();
    result
}

/// When the next snapshot is due.
#[derive(Debug, Default)]
struct Refresh {
    /// Something changed since the last snapshot was asked for.
    stale: bool,
    in_flight: bool,
    last: Option<Instant>,
}

impl Refresh {
    /// The instant to fetch at, if one is wanted and allowed.
    fn due(&self) -> Option<Instant> {
        if !self.stale || self.in_flight {
            return None;
        }
        Some(
            self.last
                .map_or_else(Instant::now, |last| last + REFRESH_MIN),
        )
    }
}

struct Dashboard {
    app: App,
    /// The live connection (none while disconnected).
    client: Option<Client>,
    tx: mpsc::Sender<Feed>,
    /// The selected child's log tail.
    tail: Option<JoinHandle<()>>,
    /// Numbers the tails, so lines of a replaced one still queued are
    /// dropped.
    tail_number: u64,
    refresh: Refresh,
}

impl Dashboard {
    async fn run(
        mut self,
        mut terminal: ratatui::DefaultTerminal,
        mut feed: mpsc::Receiver<Feed>,
    ) -> Result<(), CliError> {
        let mut keys = input::spawn_reader();
        let mut terminate = signal(SignalKind::terminate()).map_err(CliError::Output)?;
        let mut hangup = signal(SignalKind::hangup()).map_err(CliError::Output)?;
        let mut tick = tokio::time::interval(REFRESH_EVERY);
        loop {
            terminal
                .draw(|frame| render::draw(frame, &self.app, SystemTime::now()))
                .map_err(CliError::Output)?;
            let due = self.refresh.due().filter(|_| self.client.is_some());
            tokio::select! {
                input = keys.recv() => match input {
                    Some(Input::Key(key)) => match input::action(key) {
                        Some(Action::Quit) => break,
                        Some(action) => self.act(action),
                        None => {}
                    },
                    Some(Input::Resize) => {}
                    Some(Input::Closed(why)) => {
                        return Err(CliError::Output(std::io::Error::other(
                            format!("cannot read the terminal: {why}"),
                        )));
                    }
                    None => break,
                },
                Some(message) = feed.recv() => {
                    self.handle(message);
                    // A backlog arrives in bursts: draw once for all of it.
                    for _ in 0..256 {
                        match feed.try_recv() {
                            Ok(message) => self.handle(message),
                            Err(_) => break,
                        }
                    }
                }
                () = sleep_until(due) => self.fetch_state(),
                _ = tick.tick() => self.refresh.stale = true,
                _ = terminate.recv() => break,
                _ = hangup.recv() => break,
            }
        }
        if let Some(tail) = self.tail.take() {
            tail.abort();
        }
        Ok(())
    }

    fn act(&mut self, action: Action) {
        match action {
            Action::Quit => {}
            Action::Up => self.moved(-1),
            Action::Down => self.moved(1),
            Action::Send(command) => {
                let Some(id) = self.app.selected.clone() else {
                    self.app.status = "no child selected".to_owned();
                    return;
                };
                let Some(client) = self.client.clone() else {
                    self.app.status = format!("{} {id}: not connected", command.verb());
                    return;
                };
                self.app.status = format!("{} {id}: sent…", command.verb());
                tokio::spawn(feed::send_command(client, command, id, self.tx.clone()));
            }
        }
    }

    fn moved(&mut self, delta: isize) {
        if self.app.move_selection(delta) {
            self.restart_tail();
        }
    }

    fn handle(&mut self, message: Feed) {
        match message {
            Feed::Connected(client) => {
                self.app.link = Link::Connected;
                self.client = Some(client);
                self.refresh.stale = true;
                self.restart_tail();
            }
            Feed::Disconnected(why) => {
                self.app.link = Link::Disconnected(why);
                self.client = None;
                if let Some(tail) = self.tail.take() {
                    tail.abort();
                }
            }
            Feed::State(result) => {
                self.refresh.in_flight = false;
                match result {
                    Ok(state) => {
                        if self.app.apply_state(state) {
                            self.restart_tail();
                        }
                    }
                    // While disconnected, the header already says why.
                    Err(error) if self.app.link == Link::Connected => {
                        self.app.status = format!("GetState failed: {error}");
                    }
                    Err(_) => {}
                }
            }
            Feed::Event(event) => {
                self.app.push_event(event);
                self.refresh.stale = true;
            }
            Feed::EventsMissed(gap) => {
                self.app.status = format!(
                    "events {}..{} were not received",
                    gap.first_missing, gap.last_missing
                );
                self.refresh.stale = true;
            }
            Feed::JournalChanged => {
                self.app.events.clear();
                self.app.status =
                    "the server restarted without its journal; events shown from its start"
                        .to_owned();
                self.refresh.stale = true;
            }
            Feed::Log { tail, line } => {
                if tail == self.tail_number {
                    self.app.push_log(line);
                }
            }
            Feed::Command { summary, record } => {
                self.app.status = summary;
                if let Some(record) = record {
                    self.app.apply_record(*record);
                }
                self.refresh.stale = true;
            }
        }
    }

    fn fetch_state(&mut self) {
        let Some(client) = self.client.clone() else {
            return;
        };
        self.refresh.stale = false;
        self.refresh.in_flight = true;
        self.refresh.last = Some(Instant::now());
        tokio::spawn(feed::fetch_state(client, self.tx.clone()));
    }

    /// Follows the selected child's output from its last lines (a new
    /// selection, or a new connection).
    fn restart_tail(&mut self) {
        if let Some(tail) = self.tail.take() {
            tail.abort();
        }
        self.tail_number += 1;
        self.app.logs.clear();
        let (Some(client), Some(id)) = (self.client.clone(), self.app.selected.clone()) else {
            return;
        };
        self.tail = Some(tokio::spawn(feed::tail_logs(
            client,
            id,
            self.tail_number,
            self.tx.clone(),
        )));
    }
}

/// Waits until `due`, or forever when nothing is due.
async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}
