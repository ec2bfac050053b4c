/// The tree `sgw serve` runs without `--config`: `/bin/sh` only, so it works
/// on any host, and each child shows a different part of the supervisor.
pub const DEMO_CONFIG: &str = r#"
[gateway]
target_id = "demo"
display_name = "sgw demo tree"

# Prints a line every second and runs until stopped.
[[child]]
id = "ticker"
command = ["/bin/sh", "-c", "i=0; while true; do i=$((i+1)); echo \"tick $i\"; sleep 1; done"]
restart = "always"
tags = ["demo", "steady"]
criticality = "critical"

# Crashes every few seconds: watch the backoff and the restart budget.
[[child]]
id = "crasher"
command = ["/bin/sh", "-c", "echo 'starting up'; sleep 3; echo 'something went wrong' >&2; exit 3"]
restart = "on_failure"
backoff = { initial = "500ms", max = "8s", multiplier = 2.0, jitter = 0.2, reset_after = "30s" }
restart_budget = { max = 10, window = "2m" }
tags = ["demo", "flaky"]
criticality = "best_effort"

# Not started by default; depends on the ticker. Try `sgw resume worker`.
[[child]]
id = "worker"
command = ["/bin/sh", "-c", "echo \"worker $$ ready\"; while true; do sleep 5; echo 'worked'; done"]
depends_on = ["ticker"]
autostart = false
stop_signal = "SIGINT"
stop_timeout = "3s"
tags = ["demo"]
"#;
