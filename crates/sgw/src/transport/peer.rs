//! Who is on the other end of a connection, as the kernel says
//! (SO_PEERCRED), read once when the connection is accepted.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::net::UnixStream;

pub use crate::control::Caller;
use crate::control::process_start_time;

static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(1);

/// Reads the caller behind an accepted connection: SO_PEERCRED, the user
/// name, and the process's executable and start time from `/proc`.
pub fn identify(stream: &UnixStream) -> io::Result<Caller> {
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
    Ok(Caller {
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

/// What tonic attaches to every request of a connection. `None` when the
/// kernel gave no credentials; such requests are refused UNAUTHENTICATED.
#[derive(Debug, Clone, Default)]
pub struct ConnectionInfo {
    pub peer: Option<Arc<Caller>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection's identity names this very process, its executable and
    /// start time; the PID-reuse check recognizes it as still the same.
    #[tokio::test]
    async fn identity_of_a_socket_pair_is_this_process() {
        let (a, _b) = UnixStream::pair().expect("pair");
        let peer = identify(&a).expect("credentials");
        assert_eq!(peer.pid, Some(std::process::id()));
        assert_eq!(peer.uid, nix::unistd::geteuid().as_raw());
        assert!(peer.executable.is_some());
        assert!(peer.start_time.is_some());
        assert_eq!(peer.still_same_process(), Some(true));
        let recycled = Caller {
            start_time: peer.start_time.map(|t| t + 1),
            ..peer.clone()
        };
        assert_eq!(recycled.still_same_process(), Some(false));
        assert!(peer.describe().starts_with(&format!("uid:{}", peer.uid)));
    }
}
