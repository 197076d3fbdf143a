//! Claiming the socket path: one agent per socket, stale sockets reclaimed, the
//! socket file created 0600 from the start.
//!
//! A lock file beside the socket (`agent.sock.lock`, flock'd for the agent's whole
//! life) decides who owns the path, so two agents started at the same instant
//! cannot both decide an old socket is stale and bind over each other. The kernel
//! drops the lock when the agent dies, even on `kill -9`.

use jwtagent::paths::{self, DirError};
use rustix::fs::{Mode, fchmod};
use rustix::net::{
    AddressFamily, SocketAddrUnix, SocketFlags, SocketType, bind, listen, socket_with,
};
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

/// Pending connections the kernel queues while the agent is busy.
const BACKLOG: i32 = 1024;

#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error(transparent)]
    Dir(#[from] DirError),
    #[error("{}", already_running(.path, *.pid))]
    AlreadyRunning { path: PathBuf, pid: Option<u32> },
    #[error("cannot open lock file {path}: {source}")]
    Lock { path: PathBuf, source: io::Error },
    #[error(
        "{path} exists and is not a socket; refusing to replace it (remove it yourself, or choose another --socket)"
    )]
    NotASocket { path: PathBuf },
    #[error("cannot remove stale socket {path}: {source}")]
    RemoveStale { path: PathBuf, source: io::Error },
    #[error(
        "socket path {path} is too long for a Unix socket ({len} bytes, at most 107); choose a shorter --socket"
    )]
    PathTooLong { path: PathBuf, len: usize },
    #[error("cannot listen on {path}: {source}")]
    Bind { path: PathBuf, source: io::Error },
}

fn already_running(path: &Path, pid: Option<u32>) -> String {
    match pid {
        Some(pid) => format!(
            "an agent is already running on {} (pid {pid}); use it, or stop it with `jwtagent stop`",
            path.display()
        ),
        None => format!(
            "an agent is already running on {}; use it, or stop it with `jwtagent stop`",
            path.display()
        ),
    }
}

/// The claimed socket: the listener, the lock that makes it ours, and what is
/// needed to remove the socket file on exit (and only ours).
#[derive(Debug)]
pub(crate) struct ClaimedSocket {
    pub path: PathBuf,
    pub listener: UnixListener,
    /// Device and inode of the socket file we created.
    identity: (u64, u64),
    /// Held (flock'd) for as long as the agent runs; `None` for a socket
    /// inherited from systemd, which owns its path.
    _lock: Option<File>,
}

impl ClaimedSocket {
    /// A listening socket passed by systemd (socket activation). Its file is
    /// systemd's: the agent never removes it.
    pub(crate) fn inherited(listener: UnixListener) -> Result<ClaimedSocket, BindError> {
        let path = listener
            .local_addr()
            .ok()
            .and_then(|a| a.as_pathname().map(Path::to_path_buf))
            .ok_or_else(|| BindError::Bind {
                path: PathBuf::from("(inherited socket)"),
                source: io::Error::other(
                    "the socket passed by systemd is not a Unix socket with a path",
                ),
            })?;
        listener
            .set_nonblocking(true)
            .map_err(|source| BindError::Bind {
                path: path.clone(),
                source,
            })?;
        Ok(ClaimedSocket {
            path,
            listener,
            identity: (0, 0),
            _lock: None,
        })
    }

    /// Whether the socket came from systemd.
    pub(crate) fn is_inherited(&self) -> bool {
        self._lock.is_none()
    }

    /// Removes the socket file if it is still the one this agent created.
    pub(crate) fn remove_socket_file(&self) {
        if self.is_inherited() {
            return;
        }
        match fs::symlink_metadata(&self.path) {
            Ok(meta) if (meta.dev(), meta.ino()) == self.identity => {
                if let Err(e) = fs::remove_file(&self.path) {
                    tracing::warn!(path = %self.path.display(), error = %e, "could not remove socket file");
                }
            }
            _ => {}
        }
    }
}

/// Claims `path` for this agent: checks (or creates) its directory, takes the
/// lock, reclaims a stale socket, and binds a new one with mode 0600.
pub(crate) fn claim(path: &Path) -> Result<ClaimedSocket, BindError> {
    paths::ensure_socket_dir(path)?;
    let lock = take_lock(path)?;
    reclaim_stale(path)?;
    let listener = bind_0600(path)?;
    let meta = fs::symlink_metadata(path).map_err(|source| BindError::Bind {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(ClaimedSocket {
        path: path.to_path_buf(),
        listener,
        identity: (meta.dev(), meta.ino()),
        _lock: Some(lock),
    })
}

fn lock_path(socket: &Path) -> PathBuf {
    let mut name = socket.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

fn take_lock(socket: &Path) -> Result<File, BindError> {
    let path = lock_path(socket);
    let lock_err = |source| BindError::Lock {
        path: path.clone(),
        source,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(&path)
        .map_err(lock_err)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut text = String::new();
            let pid = file
                .read_to_string(&mut text)
                .ok()
                .and_then(|_| text.trim().parse().ok());
            return Err(BindError::AlreadyRunning {
                path: socket.to_path_buf(),
                pid,
            });
        }
        Err(TryLockError::Error(e)) => return Err(lock_err(e)),
    }
    // Record our pid for the error message a second agent prints.
    file.set_len(0).map_err(lock_err)?;
    file.rewind().map_err(lock_err)?;
    writeln!(file, "{}", std::process::id()).map_err(lock_err)?;
    Ok(file)
}

/// Removes a socket file nobody answers on. Holding the lock, no other agent of
/// ours can be starting; the connect probe still guards against an agent that
/// listens without the lock (an older version, or one started by hand with
/// another lock directory), which must never be displaced.
fn reclaim_stale(path: &Path) -> Result<(), BindError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(BindError::Bind {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    if !meta.file_type().is_socket() {
        return Err(BindError::NotASocket {
            path: path.to_path_buf(),
        });
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(BindError::AlreadyRunning {
            path: path.to_path_buf(),
            pid: None,
        }),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            tracing::info!(path = %path.display(), "removing stale socket (connection refused)");
            fs::remove_file(path).map_err(|source| BindError::RemoveStale {
                path: path.to_path_buf(),
                source,
            })
        }
        Err(source) => Err(BindError::Bind {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Creates the socket with mode 0600 before it has a name: fchmod on the unbound
/// socket sets the mode `bind` gives the file, so there is no window in which the
/// file exists with a wider mode.
fn bind_0600(path: &Path) -> Result<UnixListener, BindError> {
    let bind_err = |source: io::Error| BindError::Bind {
        path: path.to_path_buf(),
        source,
    };
    let addr = SocketAddrUnix::new(path).map_err(|_| BindError::PathTooLong {
        path: path.to_path_buf(),
        len: path.as_os_str().len(),
    })?;
    let fd = socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )
    .map_err(|e| bind_err(e.into()))?;
    fchmod(&fd, Mode::from_raw_mode(0o600)).map_err(|e| bind_err(e.into()))?;
    bind(&fd, &addr).map_err(|e| bind_err(e.into()))?;
    listen(&fd, BACKLOG).map_err(|e| bind_err(e.into()))?;
    Ok(UnixListener::from(fd))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// tempfile's directories follow the umask (often 0755); the socket
    /// directory must be private.
    fn private_tempdir() -> tempfile::TempDir {
        tempfile::Builder::new()
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir()
            .unwrap()
    }
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn socket_is_created_with_mode_0600_even_under_a_permissive_umask() {
        let tmp = private_tempdir();
        let path = tmp.path().join("agent.sock");
        // With umask 0 a plain bind would create the file 0777.
        let old = rustix::process::umask(Mode::empty());
        let claimed = claim(&path);
        rustix::process::umask(old);
        let claimed = claimed.unwrap();
        let mode = fs::symlink_metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        drop(claimed);
    }

    #[test]
    fn second_claim_on_a_held_path_reports_the_running_pid() {
        let tmp = private_tempdir();
        let path = tmp.path().join("agent.sock");
        let _first = claim(&path).unwrap();
        match claim(&path) {
            Err(BindError::AlreadyRunning { pid, .. }) => {
                assert_eq!(pid, Some(std::process::id()))
            }
            other => panic!("expected AlreadyRunning, got {other:?}"),
        }
        assert!(path.exists(), "the live socket must stay");
    }

    #[test]
    fn stale_socket_file_is_reclaimed() {
        let tmp = private_tempdir();
        let path = tmp.path().join("agent.sock");
        // A socket file whose listener is gone: connecting is refused.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let claimed = claim(&path).unwrap();
        UnixStream::connect(&path).unwrap();
        drop(claimed);
    }

    #[test]
    fn live_socket_without_lock_is_never_displaced() {
        let tmp = private_tempdir();
        let path = tmp.path().join("agent.sock");
        let _other = std::os::unix::net::UnixListener::bind(&path).unwrap();
        assert!(matches!(
            claim(&path),
            Err(BindError::AlreadyRunning { pid: None, .. })
        ));
        UnixStream::connect(&path).unwrap();
    }

    #[test]
    fn regular_file_at_socket_path_is_not_removed() {
        let tmp = private_tempdir();
        let path = tmp.path().join("agent.sock");
        fs::write(&path, b"precious").unwrap();
        assert!(matches!(claim(&path), Err(BindError::NotASocket { .. })));
        assert_eq!(fs::read(&path).unwrap(), b"precious");
    }

    #[test]
    fn too_long_path_is_a_clear_error() {
        let tmp = private_tempdir();
        let path = tmp.path().join("s".repeat(120));
        assert!(matches!(claim(&path), Err(BindError::PathTooLong { .. })));
    }
}
