//! The `sgw` binary: `sgw serve` runs the supervisor and its gateway; the
//! other subcommands are clients of a running one.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = supervisor_gateway::cli::Cli::parse();
    supervisor_gateway::cli::run(cli)
}
