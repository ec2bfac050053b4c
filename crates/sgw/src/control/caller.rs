//! Who is calling: the domain's view of a caller, as the kernel named it
//! when the connection was accepted. Transports build it (see
//! `transport::peer`); the security guard and the audit trail read it;
//! clients cannot influence it.

use std::fmt;

/// A caller, from the kernel's credentials of its connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
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

impl Caller {
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

impl fmt::Display for Caller {
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
pub fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}
