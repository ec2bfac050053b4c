//! `sgw serve`.

use std::path::PathBuf;
use std::process::ExitCode;

use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;

use super::{EXIT_FAILED, EXIT_USAGE, LogFormat};
use crate::config::Config;
use crate::control::ControlPlane;
use crate::engine::Supervisor;
use crate::journal::{Item, Start};

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

pub fn run(config: Option<PathBuf>, _socket: Option<PathBuf>, log_format: LogFormat) -> ExitCode {
    init_tracing(log_format);
    let config = match config {
        Some(path) => Config::load(&path),
        None => Config::demo(),
    };
    let config = match config {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    runtime.block_on(async move {
        let supervisor = Supervisor::start(config.engine_config(), config.children.clone());
        let mut events = supervisor.events().subscribe(Start::Oldest);
        let printer = tokio::spawn(async move {
            while let Some(item) = events.next().await {
                if let Item::Record(record) = item {
                    println!(
                        "{:>6} {:?} {:?}",
                        record.sequence, record.body.child_id, record.body.kind
                    );
                }
            }
        });
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            eprintln!("error: cannot install signal handlers");
            return ExitCode::from(EXIT_FAILED);
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        let _ = supervisor
            .shutdown("signal", "sgw serve received a termination signal")
            .await;
        let _ = printer.await;
        ExitCode::SUCCESS
    })
}
