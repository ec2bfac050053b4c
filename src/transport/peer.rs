//! Who is on the other end of a connection, as the kernel says
//! (SO_PEERCRED), read once when the connection is accepted.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::net::UnixStream;

static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(1);

/// A connection's peer. Handlers receive it in request extensions; clients
/// cannot influence it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    pub uid: u32,
    pub gid: u32,
    /// The peer's pid at connect time (absent for some socket pairs).
    pub pid: Option<u32>,
    /// The user name for `uid`, if the user database knows it.
    pub user_name: Option<String>,
    /// This server's id for the connection, for logs and audit.
    pub connection_id: u64,
    /// The peer's executable (`/proc/PID/exe`) at connect time.
    pub executable: Option<String>,
    /// The peer process's start time (clock ticks since boot, from
    /// `/proc/PID/stat`) at connect time: with the pid, it names one process
    /// even after the pid is recycled.
    pub start_time: Option<u64>,
}

impl PeerIdentity {
    /// Reads the peer credentials of an accepted connection.
    pub fn of(stream: &UnixStream) -> io::Result<Self> {
        let cred = stream.peer_cred()?;
        let uid = cred.uid();
        let user_name = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
            .map(|user| user.name);
        let pid = cred
            .pid()
            .and_then(|pid| u32::try_from(pid).ok())
            .filter(|pid| *pid > 0);
        Ok(Self {
            uid,
            gid: cred.gid(),
            pid,
            user_name,
            connection_id: NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed),
            executable: pid.and_then(|pid| {
                std::fs::read_link(format!("/proc/{pid}/exe"))
                    .ok()
                    .map(|path| path.display().to_string())
            }),
            start_time: pid.and_then(process_start_time),
        })
    }

    /// Whether the pid still names the process that connected (same start
    /// time), as SPIRE's agent checks: a recycled pid has another start
    /// time. `None` when it cannot be told (no pid, no /proc).
    pub fn still_same_process(&self) -> Option<bool> {
        let (pid, then) = (self.pid?, self.start_time?);
        Some(process_start_time(pid) == Some(then))
    }

    /// `uid:1000(alice)`: how a caller is named in the journal when it
    /// gave no `requested_by`.
    pub fn describe(&self) -> String {
        match &self.user_name {
            Some(name) => format!("uid:{}({name})", self.uid),
            None => format!("uid:{}", self.uid),
        }
    }
}

impl fmt::Display for PeerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} gid:{}", self.describe(), self.gid)?;
        if let Some(pid) = self.pid {
            write!(f, " pid:{pid}")?;
        }
        write!(f, " conn:{}", self.connection_id)
    }
}

/// Field 22 of `/proc/PID/stat` (after the parenthesized command name,
/// which may itself contain spaces and parentheses).
fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// What tonic attaches to every request of a connection. `None` when the
/// kernel gave no credentials; such requests are refused UNAUTHENTICATED.
#[derive(Debug, Clone, Default)]
pub struct ConnectionInfo {
    pub peer: Option<Arc<PeerIdentity>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection's identity names this very process, its executable and
    /// start time; the PID-reuse check recognizes it as still the same.
    #[tokio::test]
    async fn identity_of_a_socket_pair_is_this_process() {
        let (a, _b) = UnixStream::pair().expect("pair");
        let peer = PeerIdentity::of(&a).expect("credentials");
        assert_eq!(peer.pid, Some(std::process::id()));
        assert_eq!(peer.uid, nix::unistd::geteuid().as_raw());
        assert!(peer.executable.is_some());
        assert!(peer.start_time.is_some());
        assert_eq!(peer.still_same_process(), Some(true));
        let recycled = PeerIdentity {
            start_time: peer.start_time.map(|t| t + 1),
            ..peer.clone()
        };
        assert_eq!(recycled.still_same_process(), Some(false));
        assert!(peer.describe().starts_with(&format!("uid:{}", peer.uid)));
    }
}
