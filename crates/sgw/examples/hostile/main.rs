//! Hostile local clients against one or more `sgw` binaries, measured in
//! one run: typically the binary before the hardening fixes and after.
//!
//! ```sh
//! cargo build --release --bin sgw --example hostile
//! ./target/release/examples/hostile --sgw /tmp/before/sgw --label before --sgw target/release/sgw --label after
//! ```
//!
//! Scenario by scenario, each binary in turn (so drift on a shared machine
//! hits them alike), every scenario starts its own `sgw serve --config`
//! (only `[gateway] socket`, `max_connections`, `socket_mode` and one
//! `[[child]]` running `sleep 600`, keys every version accepts), ready once
//! it printed its `try:` line:
//!
//! 1. HPACK cost: HEADERS frames made of `00 80 80` (an empty literal
//!    name and value, both Huffman-flagged), 16,380 and 114,000 bytes, from
//!    2 attackers reconnecting for every frame: the server's CPU per KiB
//!    (attackers alone), and a legit client's GetInfo p50/p99 meanwhile.
//! 2. Half handshakes: `max_connections` connections that send half the
//!    preface and wait; time until a legit connect + GetInfo succeeds.
//! 3. Admission: uid 65534 (not allowed to connect) reconnecting in a tight
//!    loop (this executable re-run with `--attack admission`); the legit
//!    client's success rate and p99.
//! 4. Log flood: stderr is a pipe nobody reads; 20,000 connections refused
//!    over `max_connections`; does the server still answer afterwards?
//!
//! Runs as root (it needs to switch to uid 65534). Prints one markdown
//! table; BENCHMARKS.md quotes it.

mod attack;
mod scenarios;
mod server;

use std::path::PathBuf;
use std::time::Duration;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// One measurement of one binary: its cell, and the figure the ratio
/// column compares (if any).
#[derive(Debug)]
pub struct Row {
    name: String,
    cell: String,
    value: Option<f64>,
}

impl Row {
    fn new(name: impl Into<String>, cell: String, value: Option<f64>) -> Self {
        Self {
            name: name.into(),
            cell,
            value,
        }
    }
}

pub fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 1e-3 {
        format!("{:.1} µs", s * 1e6)
    } else if s < 1.0 {
        format!("{:.2} ms", s * 1e3)
    } else {
        format!("{s:.2} s")
    }
}

fn fmt_ratio(r: f64) -> String {
    if r >= 100.0 {
        format!("{r:.0}×")
    } else if r >= 10.0 {
        format!("{r:.1}×")
    } else {
        format!("{r:.2}×")
    }
}

struct Target {
    binary: PathBuf,
    label: String,
}

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--attack") {
        return match args.get(1).map(String::as_str) {
            Some("admission") => attack::admission_attacker(&args[2..]),
            _ => Err("--attack admission SOCKET MILLIS".into()),
        };
    }
    let mut targets: Vec<Target> = Vec::new();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--sgw" => {
                let path = rest.next().ok_or("--sgw needs a path")?;
                let binary = std::fs::canonicalize(path).map_err(|e| format!("{path}: {e}"))?;
                targets.push(Target {
                    binary,
                    label: path.clone(),
                });
            }
            "--label" => {
                let label = rest.next().ok_or("--label needs a name")?;
                targets
                    .last_mut()
                    .ok_or("--label follows the --sgw it names")?
                    .label = label.clone();
            }
            other => {
                return Err(format!(
                    "unknown argument {other:?}; usage: hostile --sgw PATH [--label NAME] ..."
                )
                .into());
            }
        }
    }
    if targets.is_empty() {
        return Err("usage: hostile --sgw PATH [--label NAME] [--sgw PATH [--label NAME]]".into());
    }
    if !nix::unistd::Uid::effective().is_root() {
        return Err("run as root: the admission scenario switches to uid 65534".into());
    }
    // Copied before any thread exists, so no fork inherits it open.
    let (_exe_dir, exe) = attack::world_executable()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut columns: Vec<Vec<Row>> = targets.iter().map(|_| Vec::new()).collect();
    for scenario in 0..4 {
        for (target, rows) in targets.iter().zip(&mut columns) {
            let binary = &target.binary;
            eprintln!("hostile: scenario {} on {}", scenario + 1, target.label);
            runtime.block_on(async {
                match scenario {
                    0 => scenarios::hpack(binary, rows).await,
                    1 => scenarios::half_handshakes(binary, rows).await,
                    2 => scenarios::admission(binary, &exe, rows).await,
                    _ => scenarios::log_flood(binary, rows).await,
                }
            })?;
        }
    }
    print_table(&targets, &columns);
    Ok(())
}

fn print_table(targets: &[Target], columns: &[Vec<Row>]) {
    let pair = targets.len() == 2;
    let mut header = String::from("| measurement |");
    let mut rule = String::from("|---|");
    for target in targets {
        header.push_str(&format!(" `{}` |", target.label));
        rule.push_str("---|");
    }
    if pair {
        header.push_str(&format!(
            " `{}` ÷ `{}` |",
            targets[0].label, targets[1].label
        ));
        rule.push_str("---|");
    }
    println!("{header}\n{rule}");
    for (i, row) in columns[0].iter().enumerate() {
        let mut line = format!("| {} |", row.name);
        for column in columns {
            line.push_str(&format!(
                " {} |",
                column.get(i).map_or("", |r| r.cell.as_str())
            ));
        }
        if pair {
            let ratio = match (
                columns[0].get(i).and_then(|r| r.value),
                columns[1].get(i).and_then(|r| r.value),
            ) {
                (Some(a), Some(b)) if b > 0.0 => fmt_ratio(a / b),
                _ => "–".to_owned(),
            };
            line.push_str(&format!(" {ratio} |"));
        }
        println!("{line}");
    }
}
