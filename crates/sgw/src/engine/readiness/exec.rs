//! The `exec` probe: a program that exits 0 within the timeout. It runs
//! with the child's `env` and `cwd`, in its own process group, which is
//! killed when the timeout passes; its output is kept (bounded) for the
//! event that reports a failure. It is forked by the containment's
//! spawner, like the children, so the orphan reaper leaves it to us.

use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

use super::super::containment::{self, Containment};
use super::probe::{MAX_OUTPUT, bounded};
use crate::model::{ChildSpec, Exit};

/// Hands the probe's pid back to the orphan reaper however the probe ends.
struct Owned(Option<u32>);

impl Drop for Owned {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            containment::disown(pid);
        }
    }
}

pub(super) async fn run(
    command: &[String],
    timeout: Duration,
    spec: &ChildSpec,
    containment: &Containment,
) -> Result<(), String> {
    let Some((program, args)) = command.split_first() else {
        return Err("empty command".to_owned());
    };
    let mut process = Command::new(program);
    process
        .args(args)
        .envs(&spec.env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    super::super::process::clear_inherited_env(&mut process);
    if let Some(cwd) = &spec.cwd {
        process.current_dir(cwd);
    }
    let mut child = containment
        .spawn(process)
        .await
        .map_err(|error| format!("cannot run {program}: {error}"))?;
    let _owned = Owned(child.id());
    let group = child.id().and_then(|pid| i32::try_from(pid).ok());
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let finished = async { tokio::join!(child.wait(), keep(stdout), keep(stderr)) };
    let Ok((status, out, err)) = tokio::time::timeout(timeout, finished).await else {
        if let Some(group) = group {
            let _ = killpg(Pid::from_raw(group), Signal::SIGKILL);
        }
        let _ = child.wait().await;
        return Err(format!(
            "timed out after {} (killed)",
            humantime::format_duration(timeout)
        ));
    };
    let status = status.map_err(|error| format!("waiting for {program}: {error}"))?;
    if status.success() {
        return Ok(());
    }
    let output = [out, err]
        .iter()
        .map(|bytes| String::from_utf8_lossy(bytes).trim().to_owned())
        .filter(|text| !text.is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    let exit = Exit::from_status(status);
    Err(bounded(&if output.is_empty() {
        exit.to_string()
    } else {
        format!("{exit}: {output}")
    }))
}

/// Reads the whole pipe (a probe blocked on a full pipe would time out)
/// and keeps the first [`MAX_OUTPUT`] bytes.
async fn keep(pipe: Option<impl AsyncRead + Unpin>) -> Vec<u8> {
    let Some(mut pipe) = pipe else {
        return Vec::new();
    };
    let mut kept = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        match pipe.read(&mut chunk).await {
            Ok(0) | Err(_) => return kept,
            Ok(n) => {
                let room = MAX_OUTPUT.saturating_sub(kept.len());
                kept.extend_from_slice(&chunk[..n.min(room)]);
            }
        }
    }
}
