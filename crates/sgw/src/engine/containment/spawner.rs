//! The thread every child is forked from.
//!
//! fork + exec costs about a millisecond of the calling thread, so it must
//! not run on a runtime worker. It must not run on tokio's blocking pool
//! either: the parent-death signal (`PR_SET_PDEATHSIG`) fires when the
//! *thread* that forked the child exits, and pool threads exit after ten
//! idle seconds. This thread lives exactly as long as the supervisor.

use std::collections::HashSet;
use std::io;
use std::sync::{Mutex, PoisonError, mpsc};

use tokio::process::{Child, Command};
use tokio::sync::oneshot;

/// Direct children this process forked to supervise, until reaped. The
/// orphan reaper leaves them to their owners; one set for the whole
/// process, since every supervisor in it shares one reaper.
static OWNED: Mutex<Option<HashSet<u32>>> = Mutex::new(None);

/// Runs `f` with the set of owned pids, holding its lock: a fork and its
/// registration happen under it, so the reaper never sees an owned child
/// it does not know about.
pub fn with_owned<T>(f: impl FnOnce(&mut HashSet<u32>) -> T) -> T {
    let mut owned = OWNED.lock().unwrap_or_else(PoisonError::into_inner);
    f(owned.get_or_insert_with(HashSet::new))
}

/// Forgets a child once its owner has reaped it.
pub fn disown(pid: u32) {
    with_owned(|owned| owned.remove(&pid));
}

type Job = (Command, oneshot::Sender<io::Result<Child>>);

/// A handle to the spawner thread. Dropping the last one ends the thread
/// (and, by the parent-death signal, every child still running).
#[derive(Debug)]
pub struct Spawner {
    jobs: Mutex<mpsc::Sender<Job>>,
}

impl Spawner {
    /// Starts the thread, in the current tokio runtime's context (tokio's
    /// `Command::spawn` registers the child with the runtime's driver).
    pub fn start() -> io::Result<Self> {
        let runtime = tokio::runtime::Handle::current();
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("sgw-spawner".to_owned())
            .spawn(move || {
                let _context = runtime.enter();
                while let Ok((mut command, reply)) = queue.recv() {
                    let spawned = with_owned(|owned| {
                        let child = command.spawn()?;
                        if let Some(pid) = child.id() {
                            owned.insert(pid);
                        }
                        Ok(child)
                    });
                    let _ = reply.send(spawned);
                }
            })?;
        Ok(Self {
            jobs: Mutex::new(jobs),
        })
    }

    pub async fn spawn(&self, command: Command) -> io::Result<Child> {
        let (reply, answer) = oneshot::channel();
        let sent = self
            .jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .send((command, reply));
        if sent.is_err() {
            return Err(io::Error::other("the spawner thread is gone"));
        }
        answer
            .await
            .unwrap_or_else(|_| Err(io::Error::other("the spawner thread is gone")))
    }
}
