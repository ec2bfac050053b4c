//! Command-line interface. Exit codes are part of the contract: 0 ok, 1 the
//! call failed, 2 usage or config error, 3 cannot connect.

mod client;
mod serve;
mod top;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

use crate::config::{Config, ConfigError};

pub const EXIT_FAILED: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_UNREACHABLE: u8 = 3;

#[derive(Debug, Parser)]
#[command(
    name = "sgw",
    version,
    about = "Process supervisor with a gRPC control plane on a Unix socket"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Commands,
}

#[derive(Debug, Clone, Copy, Default, ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Commands {
    /// Run the supervisor and its gateway (the built-in demo tree without --config).
    Serve {
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        #[arg(long, value_name = "PATH", env = "SGW_SOCKET")]
        socket: Option<PathBuf>,
        /// Where this instance records what it started, so the next start
        /// kills what a crash left behind ("" for none) [default: the
        /// config's supervisor.state_dir, else $XDG_STATE_HOME/sgw/TARGET,
        /// /var/lib/sgw/TARGET for root, ~/.local/state/sgw/TARGET]
        #[arg(long, value_name = "PATH", env = "SGW_STATE_DIR")]
        state_dir: Option<PathBuf>,
        /// Record nothing: no state directory, whatever else says so
        /// (the leftovers of a crash are not found at the next start).
        #[arg(long)]
        ephemeral: bool,
        /// Start from the config alone: forget what operators changed at
        /// runtime before the last stop (pauses, quarantines, added and
        /// removed children). The journal is kept.
        #[arg(long)]
        reset_state: bool,
        /// Diagnostics format on stderr (filter with RUST_LOG).
        #[arg(long, value_enum, default_value_t)]
        log_format: LogFormat,
    },
    /// Validate a configuration file; errors (exit 2) and warnings (exit 0) name the file, line and key.
    CheckConfig { file: PathBuf },
    #[command(flatten)]
    Client(client::ClientCommand),
    /// A live dashboard: children, recent events and the selected child's
    /// log; keys restart, pause and resume (q quits).
    Top(top::TopArgs),
    /// Print a shell completion script (e.g. `sgw completions bash > /etc/bash_completion.d/sgw`).
    Completions { shell: clap_complete::Shell },
}

pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Commands::Serve {
            config,
            socket,
            state_dir,
            ephemeral,
            reset_state,
            log_format,
        } => serve::run(
            config,
            serve::Flags {
                socket,
                state_dir,
                ephemeral,
                reset_state,
            },
            log_format,
        ),
        Commands::CheckConfig { file } => {
            match Config::load(&file).and_then(|config| {
                // Resolved as `serve` would (from here), so the path shown
                // is the one a server started here binds and announces.
                let socket = config.socket_path(None).map_err(|error| ConfigError {
                    source: file.display().to_string(),
                    position: None,
                    message: format!("[gateway] socket: cannot resolve the path: {error}"),
                })?;
                Ok((config, socket))
            }) {
                Ok((config, socket)) => {
                    for warning in &config.warnings {
                        eprintln!("warning: {warning}");
                    }
                    println!(
                        "{}: ok ({} children, target {:?}, socket {})",
                        file.display(),
                        config.children.specs().len(),
                        config.gateway.target_id,
                        socket.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("error: {error}");
                    ExitCode::from(EXIT_USAGE)
                }
            }
        }
        Commands::Client(command) => client::run(command),
        Commands::Top(args) => top::run(args),
        Commands::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "sgw", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
    }
}
