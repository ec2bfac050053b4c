//! What capturing a child's output costs the supervisor, in CPU per MB:
//! a child pushes `--mb` MB of 64-byte lines through its stdout, and the
//! supervisor's own CPU time (getrusage, the child not included) is read
//! before and after, with the log files off, on, and with the rate limit
//! saturated (nearly every line dropped and counted).
//!
//! ```sh
//! cargo run --release --example capture_cost -- --mb 200
//! ```

use std::time::{Duration, Instant};

use nix::sys::resource::{UsageWho, getrusage};
use supervisor_gateway::control::ControlPlane;
use supervisor_gateway::engine::{ChildSet, EngineConfig, Supervisor};
use supervisor_gateway::journal::{Item, Start};
use supervisor_gateway::model::{ChildId, ChildSpec, LogPolicy, RestartPolicy};

fn cpu() -> Duration {
    let Ok(usage) = getrusage(UsageWho::RUSAGE_SELF) else {
        return Duration::ZERO;
    };
    let micros = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec().max(0) as u64)
            + Duration::from_micros(t.tv_usec().max(0) as u64)
    };
    micros(usage.user_time()) + micros(usage.system_time())
}

async fn run(label: &str, mb: u64, state_dir: Option<&std::path::Path>, policy: LogPolicy) {
    let id = ChildId::new("pusher").expect("id");
    // 63 characters and a newline: 64 bytes a line; then one last line.
    let script = format!(
        "yes 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx' | head -c {}; echo END",
        mb << 20
    );
    let mut spec = ChildSpec::new(id.clone(), vec!["/bin/sh".into(), "-c".into(), script]);
    spec.restart = RestartPolicy::Never;
    let config = EngineConfig {
        state_dir: state_dir.map(ToOwned::to_owned),
        logs: policy,
        logs_capacity: 1 << 20,
        ..EngineConfig::default()
    };
    // Every line counted: passed, or dropped and announced in a notice.
    let total = (mb << 20) / 64 + 1;
    let mut counted = 0u64;
    let started = Instant::now();
    let before = cpu();
    let supervisor = Supervisor::start(config, ChildSet::new(vec![spec]).expect("set"))
        .expect("supervisor starts");
    let mut lines = supervisor
        .logs()
        .subscribe_children(Start::Live, std::slice::from_ref(&id));
    loop {
        match tokio::time::timeout(Duration::from_secs(120), lines.next()).await {
            Ok(Some(Item::Record(record))) => {
                counted += record.body.suppressed.max(1);
                if record.body.text == "END" || counted >= total {
                    break;
                }
            }
            // Lines evicted before this reader got them were still
            // captured (only this child writes, so the range is its own).
            Ok(Some(Item::Gap(gap))) => counted += gap.len(),
            Ok(None) | Err(_) => {
                eprintln!("{label}: the output did not end");
                break;
            }
        }
    }
    supervisor.logs().sync().await;
    let used = cpu().saturating_sub(before);
    let wall = started.elapsed();
    println!(
        "{label:<34} {mb:>5} MB  cpu {:>8.1} ms  {:>7.2} ms/MB  wall {:>7.1} ms",
        used.as_secs_f64() * 1e3,
        used.as_secs_f64() * 1e3 / mb as f64,
        wall.as_secs_f64() * 1e3
    );
    let _ = supervisor.shutdown("capture_cost", "done").await;
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let mut mb = 100u64;
    while let Some(arg) = args.next() {
        if arg == "--mb" {
            mb = args.next().and_then(|v| v.parse().ok()).unwrap_or(mb);
        }
    }
    let unlimited = LogPolicy {
        rate_burst: 0,
        ..LogPolicy::default()
    };
    run("memory only, no rate limit", mb, None, unlimited).await;
    let dir = tempfile::tempdir().expect("tempdir");
    run(
        "log files on, no rate limit",
        mb,
        Some(dir.path()),
        unlimited,
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    run(
        "log files on, rate limit saturated",
        mb,
        Some(dir.path()),
        LogPolicy::default(),
    )
    .await;
}
