//! The client subcommands: `info`, `state`, `child`, the commands, `events`
//! and `logs`, each a call (or stream) over the gateway's socket through
//! [`crate::client`].

mod command;
mod error;
pub(in crate::cli) mod events;
pub(in crate::cli) mod human;
mod json;
mod logs;
mod read;
mod spec_file;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

pub use error::CliError;

use crate::client::Client;
use crate::transport::socket::default_socket_path;

/// Where the server is and how to print.
#[derive(Debug, Clone, Args)]
pub struct Conn {
    /// The gateway's socket [default: $SGW_SOCKET, else
    /// $XDG_RUNTIME_DIR/sgw/sgw.sock, else /tmp/sgw-$UID/sgw.sock]
    #[arg(long, value_name = "PATH", env = "SGW_SOCKET")]
    pub socket: Option<PathBuf>,
    /// One JSON object per line on stdout (errors: one on stderr).
    #[arg(long)]
    pub json: bool,
}

/// What every command carries into the journal and the audit trail.
#[derive(Debug, Clone, Args)]
pub struct Meta {
    #[command(flatten)]
    pub conn: Conn,
    /// Why, for the journal and the audit trail.
    #[arg(long, value_name = "TEXT", default_value = "sgw cli")]
    pub reason: String,
    /// Client-chosen id: the same id with the same command is not run twice.
    #[arg(long, value_name = "ID")]
    pub request_id: Option<String>,
}

/// What `reload` and `scale` share: a plan first, removals confirmed.
#[derive(Debug, Clone, Args)]
pub struct ChangeArgs {
    /// Print the plan; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Confirm removals.
    #[arg(long)]
    pub yes: bool,
    #[command(flatten)]
    pub meta: Meta,
}

/// The subcommands that talk to a running `sgw serve`.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Server identity, limits, and who you are to it.
    Info {
        #[command(flatten)]
        conn: Conn,
    },
    /// Every child: state, pid, generation, restarts, last exit.
    State {
        #[command(flatten)]
        conn: Conn,
    },
    /// One child's record and spec.
    Child {
        /// The child's id.
        id: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Stop then start a child (lifts pause and quarantine).
    Restart {
        /// The child's id.
        id: String,
        #[command(flatten)]
        meta: Meta,
    },
    /// Stop a child and hold it until resume.
    Pause {
        /// The child's id.
        id: String,
        #[command(flatten)]
        meta: Meta,
    },
    /// Start a paused, quarantined or stopped child.
    Resume {
        /// The child's id.
        id: String,
        #[command(flatten)]
        meta: Meta,
    },
    /// Stop a child with no automatic restarts until restart or resume.
    Quarantine {
        /// The child's id.
        id: String,
        #[command(flatten)]
        meta: Meta,
    },
    /// Stop and forget a child (needs --yes).
    Remove {
        /// The child's id.
        id: String,
        /// Confirm: the child is stopped and forgotten.
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        meta: Meta,
    },
    /// Add and start a child from a TOML file with one [[child]] table (needs --yes).
    Add {
        /// TOML with one [[child]] table (or the child's keys at the top level).
        file: PathBuf,
        /// Confirm: the program in FILE will be started.
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        meta: Meta,
    },
    /// Stop every child and end the server (needs --yes).
    Shutdown {
        /// Confirm: every child is stopped and the server exits.
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        meta: Meta,
    },
    /// Read the server's config file again and apply what changed: add new
    /// children, remove deleted ones (needs --yes), restart only those whose
    /// spec changed. Settings outside [[child]] are reported, not applied.
    Reload {
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// Run N instances of an `instances = N` child (ID-0 ... ID-(N-1));
    /// removing instances needs --yes.
    Scale {
        /// The [[child]] id that has `instances`.
        id: String,
        /// How many instances.
        instances: u32,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// Journal events: the retained history, then (with --follow) new ones.
    Events(events::EventsArgs),
    /// Captured child output: the last N lines, then (with --follow) new ones.
    Logs(logs::LogsArgs),
}

impl ClientCommand {
    fn conn(&self) -> &Conn {
        match self {
            ClientCommand::Info { conn }
            | ClientCommand::State { conn }
            | ClientCommand::Child { conn, .. } => conn,
            ClientCommand::Restart { meta, .. }
            | ClientCommand::Pause { meta, .. }
            | ClientCommand::Resume { meta, .. }
            | ClientCommand::Quarantine { meta, .. }
            | ClientCommand::Remove { meta, .. }
            | ClientCommand::Add { meta, .. }
            | ClientCommand::Shutdown { meta, .. } => &meta.conn,
            ClientCommand::Reload { change } | ClientCommand::Scale { change, .. } => {
                &change.meta.conn
            }
            ClientCommand::Events(args) => &args.conn,
            ClientCommand::Logs(args) => &args.conn,
        }
    }
}

/// Runs one client subcommand to its exit code.
pub fn run(command: ClientCommand) -> ExitCode {
    let json = command.conn().json;
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            return CliError::Output(error).report(json);
        }
    };
    match runtime.block_on(dispatch(command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => error.report(json),
    }
}

async fn dispatch(command: ClientCommand) -> Result<(), CliError> {
    match command {
        ClientCommand::Info { conn } => read::info(&conn).await,
        ClientCommand::State { conn } => read::state(&conn).await,
        ClientCommand::Child { id, conn } => read::child(&conn, id).await,
        ClientCommand::Restart { id, meta } => command::restart(&meta, id).await,
        ClientCommand::Pause { id, meta } => command::pause(&meta, id).await,
        ClientCommand::Resume { id, meta } => command::resume(&meta, id).await,
        ClientCommand::Quarantine { id, meta } => command::quarantine(&meta, id).await,
        ClientCommand::Remove { id, yes, meta } => command::remove(&meta, id, yes).await,
        ClientCommand::Add { file, yes, meta } => command::add(&meta, &file, yes).await,
        ClientCommand::Shutdown { yes, meta } => command::shutdown(&meta, yes).await,
        ClientCommand::Reload { change } => command::reload(&change).await,
        ClientCommand::Scale {
            id,
            instances,
            change,
        } => command::scale(&change, id, instances).await,
        ClientCommand::Events(args) => events::events(args).await,
        ClientCommand::Logs(args) => logs::logs(args).await,
    }
}

impl Conn {
    /// `--socket`, else the contract's default.
    pub fn path(&self) -> PathBuf {
        self.socket.clone().unwrap_or_else(default_socket_path)
    }

    /// Connects, turning a failure into the "is `sgw serve` running?"
    /// message (exit 3).
    pub async fn connect(&self) -> Result<Client, CliError> {
        let path = self.path();
        crate::client::connect(&path)
            .await
            .map_err(|error| CliError::Connect {
                error: error::io_cause(&error).map_or_else(
                    || std::io::Error::other(error.to_string()),
                    |io| std::io::Error::new(io.kind(), io.to_string()),
                ),
                path,
            })
    }

    /// Prints one object (`--json`) or one block of text.
    pub fn print(
        &self,
        value: impl FnOnce() -> serde_json::Value,
        text: impl FnOnce() -> String,
    ) -> Result<(), CliError> {
        let mut line = if self.json {
            value().to_string()
        } else {
            text()
        };
        if !line.ends_with('\n') {
            line.push('\n');
        }
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(line.as_bytes())
            .and_then(|()| stdout.flush())
            .map_err(CliError::Output)
    }
}
