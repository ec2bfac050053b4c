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
        Ok(Self {
            uid,
            gid: cred.gid(),
            pid: cred.pid().and_then(|pid| u32::try_from(pid).ok()),
            user_name,
            connection_id: NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed),
        })
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

/// What tonic attaches to every request of a connection. `None` when the
/// kernel gave no credentials; such requests are refused UNAUTHENTICATED.
#[derive(Debug, Clone, Default)]
pub struct ConnectionInfo {
    pub peer: Option<Arc<PeerIdentity>>,
}
