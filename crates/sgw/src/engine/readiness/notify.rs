//! The child's end of the sd_notify protocol: a Unix datagram socket at a
//! path given to the child as `NOTIFY_SOCKET`, read with the sender's
//! credentials (`SO_PASSCRED`), so that only the child's own processes are
//! listened to, exactly as systemd's `NotifyAccess=all` does.

use std::fs;
use std::io::{self, IoSliceMut};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg, setsockopt, sockopt};
use tokio::io::Interest;
use tokio::net::UnixDatagram;

use crate::model::ChildSpec;

/// systemd reads at most this much of one datagram (`NOTIFY_BUFFER_MAX`).
const MAX_DATAGRAM: usize = 4096;

/// The longest path a `sockaddr_un` holds (108 bytes with the NUL).
const MAX_SOCKET_PATH: usize = 107;

/// One child run's notify socket; its file and directory go with it.
#[derive(Debug)]
pub(super) struct NotifySocket {
    socket: UnixDatagram,
    path: PathBuf,
    dir: PathBuf,
}

/// One datagram as received.
#[derive(Debug)]
pub(super) struct Datagram {
    /// The sender, as the kernel says (`None`: no credentials came).
    pub pid: Option<u32>,
    pub text: String,
    /// Longer than systemd accepts: ignored as systemd ignores it.
    pub oversized: bool,
    /// Descriptors that came with it, closed when it is dropped: after
    /// the sender was checked (`BARRIER=1` waits for the close, so the
    /// sender is still alive to be found in the child's unit).
    fds: Vec<RawFd>,
}

impl Drop for Datagram {
    fn drop(&mut self) {
        for fd in self.fds.drain(..) {
            let _ = nix::unistd::close(fd);
        }
    }
}

impl NotifySocket {
    /// Binds a fresh socket in a private directory (0700): under the state
    /// directory when there is one and the path fits a socket address, else
    /// under the temporary directory. A child that runs as another user
    /// gets the directory and socket chowned to it, and always the
    /// temporary one: the state directory's own parents are 0700 root, so
    /// that user could not reach a socket below them.
    pub fn bind(spec: &ChildSpec, state_dir: Option<&Path>) -> io::Result<Self> {
        let dir = match state_dir
            .filter(|_| spec.user.is_none())
            .map(|state| state.join("notify").join(spec.id.as_str()))
            .filter(|dir| fits(dir))
        {
            Some(dir) => {
                let parent = dir.parent().unwrap_or(&dir);
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(parent)?;
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&dir)?;
                fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
                dir
            }
            None => private_temp_dir()?,
        };
        // A spawn that fails from here on must not leave its directory
        // behind: a crash loop would leave one per attempt.
        let mut cleanup = RemoveOnFailure(Some(dir.clone()));
        let path = dir.join("notify.sock");
        if !fits(&dir) {
            return Err(io::Error::other(format!(
                "{} is too long for a socket address; set TMPDIR (or the state \
                 directory) to a shorter path",
                path.display()
            )));
        }
        // A socket left by a run that was cut short: the directory is ours.
        let _ = fs::remove_file(&path);
        let socket = std::os::unix::net::UnixDatagram::bind(&path)?;
        setsockopt(&socket, sockopt::PassCred, &true).map_err(io::Error::from)?;
        socket.set_nonblocking(true)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600))?;
        give_to_user(spec, &dir)?;
        give_to_user(spec, &path)?;
        let socket = UnixDatagram::from_std(socket)?;
        cleanup.0 = None;
        Ok(Self { socket, path, dir })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The next datagram. Cancel-safe: a datagram is either returned or
    /// left in the socket.
    pub async fn recv(&self) -> io::Result<Datagram> {
        loop {
            self.socket.readable().await?;
            match self
                .socket
                .try_io(Interest::READABLE, || receive(self.socket.as_raw_fd()))
            {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
                result => return result,
            }
        }
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
        let _ = fs::remove_dir(&self.dir);
    }
}

/// Removes a notify directory whose socket could not be set up.
struct RemoveOnFailure(Option<PathBuf>);

impl Drop for RemoveOnFailure {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            let _ = fs::remove_dir_all(dir);
        }
    }
}

/// Whether `dir/notify.sock` fits a socket address.
fn fits(dir: &Path) -> bool {
    dir.as_os_str().len() + "/notify.sock".len() <= MAX_SOCKET_PATH
}

fn private_temp_dir() -> io::Result<PathBuf> {
    let base = std::env::temp_dir();
    let mut last = None;
    for _ in 0..8 {
        let dir = base.join(format!(
            "sgw-notify-{}-{:08x}",
            std::process::id(),
            fastrand::u32(..)
        ));
        match fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => last = Some(error),
            Err(error) => return Err(error),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no free temporary directory name")))
}

/// Chowns `path` to the child's `user` (and `group`), so that a child
/// that drops to them can still reach its socket.
fn give_to_user(spec: &ChildSpec, path: &Path) -> io::Result<()> {
    use nix::unistd::{Gid, Group, Uid, User, chown};
    if spec.user.is_none() && spec.group.is_none() {
        return Ok(());
    }
    let user = spec
        .user
        .as_deref()
        .and_then(|name| match name.parse::<u32>() {
            Ok(uid) => Some(Uid::from_raw(uid)),
            Err(_) => User::from_name(name).ok().flatten().map(|u| u.uid),
        });
    let group = spec
        .group
        .as_deref()
        .and_then(|name| match name.parse::<u32>() {
            Ok(gid) => Some(Gid::from_raw(gid)),
            Err(_) => Group::from_name(name).ok().flatten().map(|g| g.gid),
        });
    // An unknown user or group fails the spawn itself, with its own error.
    chown(path, user, group).map_err(io::Error::from)
}

/// One `recvmsg`: the text, the sender's pid, and any descriptors
/// (`BARRIER=1` sends one and waits for it to be closed: closing it says
/// everything up to it was read).
fn receive(fd: RawFd) -> io::Result<Datagram> {
    let mut buffer = [0u8; MAX_DATAGRAM + 1];
    let mut space = nix::cmsg_space!(nix::libc::ucred, [RawFd; 253]);
    let mut fds = Vec::new();
    let (bytes, pid, oversized) = {
        let mut iov = [IoSliceMut::new(&mut buffer)];
        let message = recvmsg::<()>(fd, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)
            .map_err(io::Error::from)?;
        let mut pid = None;
        if let Ok(cmsgs) = message.cmsgs() {
            for cmsg in cmsgs {
                match cmsg {
                    ControlMessageOwned::ScmCredentials(credentials) => {
                        pid = u32::try_from(credentials.pid()).ok();
                    }
                    ControlMessageOwned::ScmRights(received) => fds.extend(received),
                    _ => {}
                }
            }
        }
        let oversized = message.bytes > MAX_DATAGRAM || message.flags.contains(MsgFlags::MSG_TRUNC);
        (message.bytes.min(MAX_DATAGRAM), pid, oversized)
    };
    Ok(Datagram {
        pid,
        text: String::from_utf8_lossy(&buffer[..bytes]).into_owned(),
        oversized,
        fds,
    })
}
