//! `sgw serve`: the engine, the gateway on its socket, and a bounded,
//! ordered shutdown.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;

use super::{EXIT_FAILED, EXIT_USAGE, LogFormat};
use crate::config::{Config, ConfigFile, StateDir};
use crate::control::{Command, CommandMeta, CommandRequest, ConfigSource, ControlPlane};
use crate::engine::{EngineConfig, StartError, Supervisor};
use crate::gateway::{self, GatewayOptions, Limits};
use crate::metrics::{self, Metrics, MetricsListener};
use crate::security::Security;
use crate::transport::legacy::LegacyOptions;

/// Logs go through a dedicated writer thread: a worker never blocks on
/// stderr, even when it is a pipe nobody reads. When that thread falls
/// behind, lines are dropped (and counted by tracing-appender) rather than
/// stalling the control plane. The guard flushes what is queued on exit.
fn init_tracing(format: LogFormat) -> WorkerGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = tracing_appender::non_blocking(std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    guard
}

/// What `serve`'s flags (and their environment variables) override.
#[derive(Debug, Default)]
pub struct Flags {
    /// `--socket` / `$SGW_SOCKET`.
    pub socket: Option<PathBuf>,
    /// `--state-dir` / `$SGW_STATE_DIR`.
    pub state_dir: Option<PathBuf>,
    /// `--ephemeral`: no state directory at all.
    pub ephemeral: bool,
    /// `--reset-state`: runtime changes from before are forgotten.
    pub reset_state: bool,
}

pub fn run(config: Option<PathBuf>, flags: Flags, log_format: LogFormat) -> ExitCode {
    let _log_writer = init_tracing(log_format);
    // A file is kept for reloads; the built-in demo has no file to read
    // again, so it cannot be reloaded.
    let loaded = match config {
        Some(path) => ConfigFile::open(path)
            .map(|(config, file)| (config, Some(Arc::new(file) as Arc<dyn ConfigSource>))),
        None => Config::demo().map(|config| (config, None)),
    };
    let (config, source) = match loaded {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    raise_fd_limit();
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
    runtime.block_on(serve(config, source, flags))
}

/// SIGHUP: reload the configuration file, as `sgw reload --yes` would.
/// Whoever can signal sgw owns it, so removals need no further
/// confirmation. The plan and the outcome are logged (and journaled like
/// any reload); an invalid file changes nothing and says why.
async fn reload_on_signal(supervisor: &Supervisor) {
    let change = match supervisor.plan_reload().await {
        Ok(change) => change,
        Err(error) => {
            tracing::error!("SIGHUP: reload refused: {error}");
            return;
        }
    };
    for setting in &change.plan.not_applied {
        tracing::warn!("SIGHUP: not applied: {setting}");
    }
    let meta = CommandMeta {
        request_id: String::new(),
        requested_by: "SIGHUP".to_owned(),
        reason: "configuration reload on SIGHUP".to_owned(),
        confirm: true,
    };
    let request = match CommandRequest::new(Command::Reload(Box::new(change)), meta) {
        Ok(request) => request,
        Err(error) => {
            tracing::error!("SIGHUP: reload refused: {error}");
            return;
        }
    };
    match supervisor.execute(request).await {
        Ok(report) => tracing::info!("SIGHUP: configuration reloaded: {}", report.outcome),
        Err(error) => tracing::error!("SIGHUP: reload failed: {error}"),
    }
}

/// A server holding one descriptor per connection should not stop at the
/// default soft limit of 1024 when the hard limit allows more.
fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
    {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

async fn serve(config: Config, source: Option<Arc<dyn ConfigSource>>, flags: Flags) -> ExitCode {
    let socket = match config.socket_path(flags.socket) {
        Ok(socket) => socket,
        Err(error) => {
            eprintln!("error: cannot resolve the socket path: {error}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let state_dir = match config.state_dir(flags.state_dir.as_deref(), flags.ephemeral) {
        Ok(state_dir) => state_dir,
        Err(error) => {
            eprintln!("error: cannot resolve the state directory: {error}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match &state_dir {
        Some(dir) => tracing::debug!(state_dir = %dir.display(), "state directory"),
        // Asked for (--ephemeral, an empty --state-dir, state_dir = "").
        None if flags.ephemeral
            || flags.state_dir.is_some()
            || config.supervisor.state_dir != StateDir::Default => {}
        None => tracing::warn!(
            "no state directory: not root, and neither XDG_STATE_HOME nor HOME is an absolute \
             path; processes a crash leaves behind will not be found at the next start \
             (set --state-dir or [supervisor] state_dir)"
        ),
    }
    let (listener, guard, path) = match gateway::bind(&config.gateway, socket) {
        Ok(parts) => parts,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let legacy = match LegacyOptions::from_config(&config, &path) {
        Ok(legacy) => legacy,
        Err(error) => {
            eprintln!("error: legacy socket: {error}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    // Bound before any child starts, so a taken address changes nothing.
    let metrics_listener =
        match MetricsListener::bind(&config.metrics.listen, &config.gateway).await {
            Ok(listener) => listener,
            Err(error) => {
                eprintln!("error: metrics: {error}");
                return ExitCode::from(EXIT_FAILED);
            }
        };
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        eprintln!("error: cannot install signal handlers");
        return ExitCode::from(EXIT_FAILED);
    };

    let engine = EngineConfig {
        // The daemon owns its process: it reaps every orphan it adopts.
        adopt_orphans: true,
        reset_state: flags.reset_state,
        config_source: source,
        ..config.engine_config(state_dir)
    };
    // Exits from here on are counted, including a child's first.
    let metrics_since = std::time::SystemTime::now();
    let supervisor = match Supervisor::start(engine, config.children.clone()) {
        Ok(supervisor) => supervisor,
        Err(error) => {
            eprintln!("error: {error}");
            if matches!(error, StartError::Journal(_) | StartError::Intent { .. }) {
                eprintln!(
                    "hint: the state directory must be writable by this user; \
                     `--state-dir PATH` picks another, `--ephemeral` keeps nothing \
                     (no journal across restarts, no runtime changes kept)"
                );
            }
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let limits = Limits::from_config(&config.gateway);
    let stopping = CancellationToken::new();
    let mut options = GatewayOptions {
        limits,
        legacy,
        security: Arc::new(Security::new(config.security.clone())),
        metrics: None,
    };
    let metrics_url = metrics_listener.as_ref().map(MetricsListener::url);
    let metrics_task = metrics_listener.map(|listener| {
        let metrics = Arc::new(Metrics::new());
        options.metrics = Some(metrics.gateway());
        tokio::spawn(metrics::serve(
            metrics,
            Arc::new(supervisor.clone()),
            listener,
            metrics_since,
            stopping.clone(),
        ))
    });
    let mut server = tokio::spawn(gateway::serve_with(
        Arc::new(supervisor.clone()),
        listener,
        options,
        stopping.clone(),
    ));
    println!(
        "sgw: serving target {:?} on {path}",
        config.gateway.target_id
    );
    println!("try: grpcurl -plaintext -unix {path} list");
    if let Some(url) = metrics_url {
        println!("sgw: metrics on {url}");
    }

    let reloader = supervisor.clone();
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            reload_on_signal(&reloader).await;
        }
    });

    let mut server_result = None;
    let reason = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
        () = supervisor.terminated() => "ShutdownTree",
        result = &mut server => {
            server_result = Some(result);
            "the server stopped"
        }
    };
    tracing::info!(reason, "shutting down");
    // Health turns NOT_SERVING and no new connection is accepted; calls in
    // flight finish; streams end once the journal closes after the children
    // have stopped.
    stopping.cancel();
    if !supervisor.is_shutting_down() {
        let _ = supervisor
            .shutdown("sgw serve", &format!("received {reason}"))
            .await;
    }
    let drained = match server_result {
        Some(result) => Ok(result),
        None => tokio::time::timeout(config.gateway.drain_timeout, &mut server).await,
    };
    if let Some(task) = metrics_task {
        // Stopped with `stopping`; a scrape in progress is cut, not awaited.
        let _ = task.await;
    }
    drop(guard);
    match drained {
        Ok(Ok(Ok(()))) => ExitCode::SUCCESS,
        Ok(Ok(Err(error))) => {
            eprintln!("error: {error}");
            ExitCode::from(EXIT_FAILED)
        }
        Ok(Err(error)) => {
            eprintln!("error: the server task failed: {error}");
            ExitCode::from(EXIT_FAILED)
        }
        Err(_) => {
            tracing::warn!(drain_timeout = ?config.gateway.drain_timeout, "drain timed out; closing remaining connections");
            server.abort();
            ExitCode::SUCCESS
        }
    }
}
