//! Reaping what the supervisor adopts. As a child subreaper (and as PID 1
//! in a container) sgw becomes the parent of every orphaned descendant of
//! its children; each one that exits stays a zombie until sgw waits for
//! it. Children sgw forked itself are left to their owners (tokio reaps
//! them and reports their status).

use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;
use tokio::signal::unix::{SignalKind, signal};

use super::{procfs, spawner};

/// Makes this process the reaper of its descendants' orphans and starts
/// the task that reaps them. Process-wide: only the process owner (the
/// `sgw` binary, or an embedding application that wants it) turns it on.
pub fn adopt_orphans() -> std::io::Result<()> {
    nix::sys::prctl::set_child_subreaper(true).map_err(std::io::Error::from)?;
    let mut children = signal(SignalKind::child())?;
    tokio::spawn(async move {
        reap_adopted();
        while children.recv().await.is_some() {
            reap_adopted();
        }
    });
    Ok(())
}

/// Waits for every exited child that no owner tracks. Signals coalesce,
/// so each SIGCHLD sweeps all of them.
pub fn reap_adopted() -> usize {
    spawner::with_owned(|owned| {
        procfs::own_children()
            .into_iter()
            .filter(|pid| !owned.contains(pid))
            .filter_map(|pid| i32::try_from(pid).ok())
            .filter(|&pid| {
                // WNOHANG: a live orphan stays; only a zombie is reaped.
                matches!(
                    waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)),
                    Ok(status) if status != nix::sys::wait::WaitStatus::StillAlive
                )
            })
            .count()
    })
}
