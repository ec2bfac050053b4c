//! Shared helpers for the integration tests: specs for real `/bin/sh`
//! children, and awaiting journal facts instead of sleeping.

#![allow(dead_code)]

pub mod fake;
pub mod golden;
pub mod legacy;

use std::sync::Arc;
use std::time::Duration;

use supervisor_gateway::engine::{ChildSet, EngineConfig, Supervisor};
use supervisor_gateway::journal::{Item, Record, Start, Subscription};
use supervisor_gateway::model::{ChildId, ChildSpec, Event, EventKind};

/// Upper bound for any single wait in a test: generous for a loaded CI
/// machine, small enough that a hang fails fast.
pub const PATIENCE: Duration = Duration::from_secs(20);

pub fn id(s: &str) -> ChildId {
    ChildId::new(s).expect("valid test id")
}

/// A `/bin/sh -c script` child with fast, deterministic test settings.
pub fn sh(child: &str, script: &str) -> ChildSpec {
    let mut spec = ChildSpec::new(
        id(child),
        vec!["/bin/sh".into(), "-c".into(), script.into()],
    );
    spec.backoff.initial = Duration::from_millis(10);
    spec.backoff.max = Duration::from_secs(1);
    spec.backoff.jitter = 0.0;
    spec.stop_timeout = Duration::from_secs(5);
    spec
}

/// Test command metadata: confirmed, no request id.
pub fn meta() -> supervisor_gateway::control::CommandMeta {
    supervisor_gateway::control::CommandMeta {
        request_id: String::new(),
        requested_by: "test".into(),
        reason: "engine test".into(),
        confirm: true,
    }
}

/// Runs a command on the engine directly, with [`meta`].
pub async fn run(
    sup: &Supervisor,
    command: supervisor_gateway::control::Command,
) -> Result<supervisor_gateway::control::CommandReport, supervisor_gateway::control::ControlError> {
    use supervisor_gateway::control::ControlPlane;
    let request = supervisor_gateway::control::CommandRequest::new(command, meta());
    sup.execute(request.expect("valid request")).await
}

pub fn start(specs: Vec<ChildSpec>) -> Supervisor {
    start_with(EngineConfig::default(), specs)
}

pub fn start_with(config: EngineConfig, specs: Vec<ChildSpec>) -> Supervisor {
    Supervisor::start(config, ChildSet::new(specs).expect("valid test tree"))
        .expect("supervisor starts")
}

/// Waits for the next event matching `pred`, failing the test after
/// [`PATIENCE`]. Gaps are not expected in these tests and fail them.
pub async fn wait_event(
    sub: &mut Subscription<Event>,
    what: &str,
    pred: impl Fn(&Event) -> bool,
) -> Arc<Record<Event>> {
    let found = tokio::time::timeout(PATIENCE, async {
        loop {
            match sub.next().await {
                Some(Item::Record(record)) if pred(&record.body) => return record,
                Some(Item::Record(_)) => {}
                Some(Item::Gap(gap)) => panic!("unexpected gap {gap:?} while waiting for {what}"),
                None => panic!("journal closed while waiting for {what}"),
            }
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Every event until (and including) the first one matching `pred`.
pub async fn events_until(
    sub: &mut Subscription<Event>,
    what: &str,
    pred: impl Fn(&Event) -> bool,
) -> Vec<Arc<Record<Event>>> {
    let mut seen = Vec::new();
    loop {
        let record = wait_event(sub, what, |_| true).await;
        let done = pred(&record.body);
        seen.push(record);
        if done {
            return seen;
        }
    }
}

pub fn is(kind: fn(&EventKind) -> bool, child: &str) -> impl Fn(&Event) -> bool {
    let child = id(child);
    move |e: &Event| e.child_id.as_ref() == Some(&child) && kind(&e.kind)
}

pub fn subscribe(sup: &Supervisor) -> Subscription<Event> {
    use supervisor_gateway::control::ControlPlane;
    sup.events().subscribe(Start::Oldest)
}

/// Whether a process is gone (or a zombie nobody will run again).
pub fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
    }
}

/// Waits until `pid` is gone. There is no event for the death of a process
/// we do not own (a grandchild), so this polls /proc with a deadline.
pub async fn wait_gone(pid: u32) -> bool {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while tokio::time::Instant::now() < deadline {
        if process_gone(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

/// A gateway served in-process on a private temporary socket.
pub struct TestGateway {
    pub path: std::path::PathBuf,
    pub supervisor: Supervisor,
    pub stop: tokio_util::sync::CancellationToken,
    pub server: tokio::task::JoinHandle<Result<(), supervisor_gateway::gateway::ServeError>>,
    _guard: supervisor_gateway::transport::socket::SocketGuard,
    _dir: tempfile::TempDir,
}

pub async fn gateway(specs: Vec<ChildSpec>) -> TestGateway {
    gateway_with(specs, supervisor_gateway::gateway::Limits::default()).await
}

pub async fn gateway_with(
    specs: Vec<ChildSpec>,
    limits: supervisor_gateway::gateway::Limits,
) -> TestGateway {
    gateway_full(specs, test_engine(), limits, |path| {
        supervisor_gateway::transport::legacy::LegacyOptions::new(path.display().to_string())
    })
    .await
}

/// The engine settings every test gateway uses unless told otherwise.
pub fn test_engine() -> EngineConfig {
    EngineConfig {
        target_id: "test".into(),
        ..EngineConfig::default()
    }
}

/// The security settings every test gateway uses unless told otherwise:
/// the defaults, plus `/bin/sh` allowed for AddChild.
pub fn test_security() -> supervisor_gateway::security::SecurityConfig {
    let mut security = supervisor_gateway::security::SecurityConfig::default();
    security.add_child.allowed_commands = vec!["/bin/sh".into()];
    security
}

/// A gateway with explicit engine and legacy settings; `legacy` gets the
/// main socket's path (for `ipc_path`, or to place a dedicated socket
/// beside it).
pub async fn gateway_full(
    specs: Vec<ChildSpec>,
    engine: EngineConfig,
    limits: supervisor_gateway::gateway::Limits,
    legacy: impl FnOnce(&std::path::Path) -> supervisor_gateway::transport::legacy::LegacyOptions + '_,
) -> TestGateway {
    gateway_secured(specs, engine, limits, legacy, test_security(), 0o600).await
}

/// A gateway with explicit security settings and socket mode. Its
/// directory is world-traversable (0755) so tests can connect as other
/// uids; the socket mode decides who may.
pub async fn gateway_secured(
    specs: Vec<ChildSpec>,
    engine: EngineConfig,
    limits: supervisor_gateway::gateway::Limits,
    legacy: impl FnOnce(&std::path::Path) -> supervisor_gateway::transport::legacy::LegacyOptions + '_,
    security: supervisor_gateway::security::SecurityConfig,
    socket_mode: u32,
) -> TestGateway {
    GatewayBuilder::new(specs)
        .engine(engine)
        .limits(limits)
        .legacy(legacy)
        .security(security)
        .socket_mode(socket_mode)
        .start()
        .await
}

type LegacyFor<'a> =
    Box<dyn FnOnce(&std::path::Path) -> supervisor_gateway::transport::legacy::LegacyOptions + 'a>;

/// Every way a test gateway can differ from the default one.
pub struct GatewayBuilder<'a> {
    specs: Vec<ChildSpec>,
    engine: EngineConfig,
    limits: supervisor_gateway::gateway::Limits,
    legacy: LegacyFor<'a>,
    security: supervisor_gateway::security::SecurityConfig,
    socket_mode: u32,
}

impl<'a> GatewayBuilder<'a> {
    pub fn new(specs: Vec<ChildSpec>) -> Self {
        Self {
            specs,
            engine: test_engine(),
            limits: supervisor_gateway::gateway::Limits::default(),
            legacy: Box::new(|path| {
                supervisor_gateway::transport::legacy::LegacyOptions::new(
                    path.display().to_string(),
                )
            }),
            security: test_security(),
            socket_mode: 0o600,
        }
    }

    pub fn engine(mut self, engine: EngineConfig) -> Self {
        self.engine = engine;
        self
    }

    pub fn limits(mut self, limits: supervisor_gateway::gateway::Limits) -> Self {
        self.limits = limits;
        self
    }

    /// `legacy` gets the main socket's path (for `ipc_path`, or to place a
    /// dedicated socket beside it).
    pub fn legacy(
        mut self,
        legacy: impl FnOnce(&std::path::Path) -> supervisor_gateway::transport::legacy::LegacyOptions
        + 'a,
    ) -> Self {
        self.legacy = Box::new(legacy);
        self
    }

    pub fn security(mut self, security: supervisor_gateway::security::SecurityConfig) -> Self {
        self.security = security;
        self
    }

    pub fn socket_mode(mut self, mode: u32) -> Self {
        self.socket_mode = mode;
        self
    }

    /// Starts the engine with the specs and serves it.
    pub async fn start(self) -> TestGateway {
        let supervisor = start_with(self.engine.clone(), self.specs.clone());
        let served = self.serve(Arc::new(supervisor.clone()));
        TestGateway {
            path: served.path,
            supervisor,
            stop: served.stop,
            server: served.server,
            _guard: served._guard,
            _dir: served._dir,
        }
    }

    /// Serves any control plane (the engine's specs are not used).
    pub fn serve<C: supervisor_gateway::control::ControlPlane>(self, control: Arc<C>) -> Served {
        use std::os::unix::fs::PermissionsExt;
        use supervisor_gateway::transport::socket::{
            BindMode, BindOptions, BoundSocket, SocketMode,
        };
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let path = dir.path().join("sgw.sock");
        let bound = BoundSocket::bind(&BindOptions {
            path: path.clone(),
            mode: format!("{:04o}", self.socket_mode)
                .parse::<SocketMode>()
                .expect("mode"),
            bind: BindMode::CreateNew,
            setting: "--socket",
        })
        .expect("bind test socket");
        let (listener, guard) = bound.into_tokio().expect("listener");
        let legacy = (self.legacy)(&path);
        let stop = tokio_util::sync::CancellationToken::new();
        let options = supervisor_gateway::gateway::GatewayOptions {
            limits: self.limits,
            legacy,
            security: Arc::new(supervisor_gateway::security::Security::new(self.security)),
            metrics: None,
        };
        let server = tokio::spawn(supervisor_gateway::gateway::serve_with(
            control,
            listener,
            options,
            stop.clone(),
        ));
        Served {
            path,
            stop,
            server,
            _guard: guard,
            _dir: dir,
        }
    }
}

/// A gateway over some control plane, on a socket in its own directory.
pub struct Served {
    pub path: std::path::PathBuf,
    pub stop: tokio_util::sync::CancellationToken,
    pub server: tokio::task::JoinHandle<Result<(), supervisor_gateway::gateway::ServeError>>,
    _guard: supervisor_gateway::transport::socket::SocketGuard,
    _dir: tempfile::TempDir,
}

impl Served {
    pub async fn client(&self) -> supervisor_gateway::client::Client {
        supervisor_gateway::client::connect(&self.path)
            .await
            .expect("connect to the test gateway")
    }

    /// Stops the server; fails the test if draining hangs.
    pub async fn shutdown(self) {
        self.stop.cancel();
        tokio::time::timeout(PATIENCE, self.server)
            .await
            .expect("server drained")
            .expect("server task")
            .expect("server result");
    }
}

impl TestGateway {
    /// The child's current generation, read in-process once its first
    /// spawn has happened (spawns are asynchronous, so a freshly started
    /// tree may still be at generation 0).
    pub async fn supervisor_child_generation(&self, child: &str) -> u64 {
        use supervisor_gateway::control::ControlPlane;
        let mut events = subscribe(&self.supervisor);
        loop {
            let generation = self
                .supervisor
                .child(&id(child))
                .await
                .expect("child exists")
                .generation;
            if generation > 0 {
                return generation;
            }
            let target = id(child);
            wait_event(&mut events, "the first spawn", |e| {
                e.child_id.as_ref() == Some(&target)
            })
            .await;
        }
    }

    /// Waits until the child is RUNNING (its spawn is asynchronous). Reads
    /// its record, not the journal's history: a journal kept across
    /// restarts holds the previous run's events too.
    pub async fn wait_running(&self, child: &str) {
        use supervisor_gateway::control::ControlPlane;
        use supervisor_gateway::model::ChildState;
        let mut events = self.supervisor.events().subscribe(Start::Live);
        let record = self
            .supervisor
            .child(&id(child))
            .await
            .expect("child exists");
        if record.state == ChildState::Running {
            return;
        }
        wait_event(
            &mut events,
            "the child to run",
            is(|k| matches!(k, EventKind::ChildRunning { .. }), child),
        )
        .await;
    }

    /// Publishes one synthetic event straight into the journal (for
    /// eviction tests that need many records fast).
    pub fn publish_synthetic_event(&self) {
        use supervisor_gateway::control::ControlPlane;
        self.supervisor
            .events()
            .publish(Event::tree(EventKind::BackoffReset));
    }

    pub async fn client(&self) -> supervisor_gateway::client::Client {
        supervisor_gateway::client::connect(&self.path)
            .await
            .expect("connect to the test gateway")
    }

    /// Stops children and the server; fails the test if draining hangs.
    pub async fn shutdown(self) {
        self.stop.cancel();
        if !self.supervisor.is_shutting_down() {
            let _ = self.supervisor.shutdown("test", "teardown").await;
        }
        tokio::time::timeout(PATIENCE, self.server)
            .await
            .expect("server drained")
            .expect("server task")
            .expect("server result");
    }
}

/// The directory holding the third-party test clients (`scripts/install-test-tools`).
pub fn tool(name: &str) -> std::path::PathBuf {
    // The workspace root, where scripts/install-test-tools puts them.
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../.tools/bin")
        .join(name);
    assert!(
        path.exists(),
        "{} is missing: run scripts/install-test-tools (scripts/test does)",
        path.display()
    );
    path
}
