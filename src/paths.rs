//! Where the agent's socket lives, and the checks that make its directory safe.
//!
//! The socket path is predictable (like gpg-agent's) so that commands can find or
//! start the agent without `JWTAGENT_SOCK`; the directory checks are what keeps a
//! predictable path from being a foothold for another user.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Environment variable holding the socket path.
pub const SOCK_ENV: &str = "JWTAGENT_SOCK";
/// Environment variable holding the agent's pid, as printed by `jwtagent env`.
pub const PID_ENV: &str = "JWTAGENT_PID";
/// Set to `1` to forbid commands from starting an agent.
pub const NO_AUTOSTART_ENV: &str = "JWTAGENT_NO_AUTOSTART";
/// Overrides the keyring service name (`jwtagent`), so that independent agents
/// (say, one per `JWTAGENT_CONFIG`) keep apart secrets of profiles with the
/// same name.
pub const KEYRING_SERVICE_ENV: &str = "JWTAGENT_KEYRING_SERVICE";

/// An XDG base directory (the XDG Base Directory Specification): `var`
/// when it holds an absolute path (a relative one is ignored), else
/// `$HOME/fallback`. `None` without an absolute `HOME`: the home directory
/// is never looked up in the user database, which would load the name
/// service's modules into the statically linked CLI.
pub fn xdg_dir(var: &str, fallback: &str) -> Option<PathBuf> {
    let absolute = |name: &str| {
        std::env::var_os(name)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    absolute(var).or_else(|| Some(absolute("HOME")?.join(fallback)))
}

/// `$XDG_STATE_HOME/jwtagent` (`~/.local/state/jwtagent`): the agent's log and
/// the audit log.
pub fn state_dir() -> Option<PathBuf> {
    Some(xdg_dir("XDG_STATE_HOME", ".local/state")?.join("jwtagent"))
}

/// Where a detached agent logs by default: `$XDG_STATE_HOME/jwtagent/agent.log`.
/// Never holds a secret or a token.
pub fn default_log_file() -> Option<PathBuf> {
    state_dir().map(|d| d.join("agent.log"))
}

/// The audit log: `$XDG_STATE_HOME/jwtagent/audit.log`.
pub fn audit_log() -> Option<PathBuf> {
    state_dir().map(|d| d.join("audit.log"))
}

/// The encrypted file store (`--store file`):
/// `$XDG_DATA_HOME/jwtagent/secrets.sealed` (`~/.local/share/jwtagent/`).
pub fn store_file() -> Option<PathBuf> {
    Some(
        xdg_dir("XDG_DATA_HOME", ".local/share")?
            .join("jwtagent")
            .join("secrets.sealed"),
    )
}

/// The agent's secret store when `--store` names none (before the config's
/// `store`).
pub const STORE_ENV: &str = "JWTAGENT_STORE";

/// How the socket path was chosen. Only the default path may be autostarted by
/// commands other than `env` and `agent`: an explicit path that does not answer is
/// an error the user should see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketSource {
    /// `--socket PATH` on the command line.
    Flag,
    /// `JWTAGENT_SOCK` in the environment.
    Env,
    /// `$XDG_RUNTIME_DIR/jwtagent/agent.sock` or `/tmp/jwtagent-$UID/agent.sock`.
    Default,
}

/// A resolved socket path and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketPath {
    pub path: PathBuf,
    pub source: SocketSource,
}

impl SocketPath {
    /// Resolves the socket path from the process environment: `flag`, else
    /// `JWTAGENT_SOCK`, else the default.
    pub fn resolve(flag: Option<&Path>) -> SocketPath {
        Self::resolve_with(
            flag,
            std::env::var_os(SOCK_ENV),
            std::env::var_os("XDG_RUNTIME_DIR"),
        )
    }

    /// [`SocketPath::resolve`] with the environment passed in (for tests).
    pub fn resolve_with(
        flag: Option<&Path>,
        sock_env: Option<OsString>,
        runtime_dir: Option<OsString>,
    ) -> SocketPath {
        if let Some(path) = flag {
            return SocketPath {
                path: path.to_path_buf(),
                source: SocketSource::Flag,
            };
        }
        let default = default_socket_path(runtime_dir);
        if let Some(path) = sock_env.filter(|p| !p.is_empty()) {
            // `eval "$(jwtagent env)"` sets JWTAGENT_SOCK to the default path:
            // that is no choice of the user's, and agents start there as usual.
            let path = PathBuf::from(path);
            let source = if path == default {
                SocketSource::Default
            } else {
                SocketSource::Env
            };
            return SocketPath { path, source };
        }
        SocketPath {
            path: default,
            source: SocketSource::Default,
        }
    }
}

/// `$XDG_RUNTIME_DIR/jwtagent/agent.sock`, or `/tmp/jwtagent-$UID/agent.sock` when
/// XDG_RUNTIME_DIR is unset or not absolute (the XDG spec says to ignore a
/// relative one).
pub fn default_socket_path(runtime_dir: Option<OsString>) -> PathBuf {
    match runtime_dir.map(PathBuf::from).filter(|p| p.is_absolute()) {
        Some(dir) => dir.join("jwtagent").join("agent.sock"),
        None => PathBuf::from(format!(
            "/tmp/jwtagent-{}",
            rustix::process::geteuid().as_raw()
        ))
        .join("agent.sock"),
    }
}

/// Why a socket directory is not safe to use.
#[derive(Debug, thiserror::Error)]
pub enum DirError {
    #[error("socket path {path} has no parent directory")]
    NoParent { path: PathBuf },
    #[error(
        "cannot create socket directory {path}: {source}; create its parent or choose another --socket"
    )]
    Create { path: PathBuf, source: io::Error },
    #[error("cannot inspect socket directory {path}: {source}")]
    Inspect { path: PathBuf, source: io::Error },
    #[error(
        "socket directory {path} is a symbolic link; refusing to use it (remove it, or choose another --socket)"
    )]
    Symlink { path: PathBuf },
    #[error("socket directory {path} is not a directory")]
    NotADirectory { path: PathBuf },
    #[error(
        "socket directory {path} is owned by uid {owner}, not by you (uid {uid}); refusing to use it (remove it, or choose another --socket)"
    )]
    WrongOwner { path: PathBuf, owner: u32, uid: u32 },
    #[error(
        "socket directory {path} has mode {mode:04o}, open to group or others; run `chmod 700 {path}` or choose another --socket"
    )]
    TooOpen { path: PathBuf, mode: u32 },
    /// The directory that holds the socket directory lets another user swap
    /// the socket directory for one of their own.
    #[error(
        "{path}, which holds the socket directory, can be changed by other users (owner uid {owner}, mode {mode:04o}), so another user could put their own agent there; make it private (`chmod 700 {path}`, or `chmod +t` if it is shared like /tmp), or choose another --socket"
    )]
    UnsafeParent {
        path: PathBuf,
        owner: u32,
        mode: u32,
    },
}

/// Makes sure the directory that will hold `socket` exists, is a real directory
/// (not a symlink), is owned by the effective uid and is not accessible to group
/// or others. Creates it with mode 0700 when missing (its parent must exist).
pub fn ensure_socket_dir(socket: &Path) -> Result<PathBuf, DirError> {
    let dir = match socket.parent() {
        Some(p) if p.as_os_str().is_empty() => PathBuf::from("."),
        Some(p) => p.to_path_buf(),
        None => {
            return Err(DirError::NoParent {
                path: socket.to_path_buf(),
            });
        }
    };
    match fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(source) => return Err(DirError::Create { path: dir, source }),
    }
    check_socket_dir(&dir)?;
    Ok(dir)
}

/// The checks of [`ensure_socket_dir`] on an existing directory.
pub fn check_socket_dir(dir: &Path) -> Result<(), DirError> {
    let meta = fs::symlink_metadata(dir).map_err(|source| DirError::Inspect {
        path: dir.to_path_buf(),
        source,
    })?;
    if meta.file_type().is_symlink() {
        return Err(DirError::Symlink {
            path: dir.to_path_buf(),
        });
    }
    if !meta.is_dir() {
        return Err(DirError::NotADirectory {
            path: dir.to_path_buf(),
        });
    }
    let uid = rustix::process::geteuid().as_raw();
    if meta.uid() != uid {
        return Err(DirError::WrongOwner {
            path: dir.to_path_buf(),
            owner: meta.uid(),
            uid,
        });
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(DirError::TooOpen {
            path: dir.to_path_buf(),
            mode,
        });
    }
    check_parent_dir(dir)
}

/// The directory above the socket directory (`$XDG_RUNTIME_DIR`, `/tmp`) must
/// be owned by the user or root, and writable by others only with the sticky
/// bit: otherwise another user can rename the socket directory away and put
/// their own in its place between two checks.
pub fn check_parent_dir(dir: &Path) -> Result<(), DirError> {
    let parent = match dir.parent() {
        Some(p) if p.as_os_str().is_empty() => Path::new("."),
        Some(p) => p,
        None => return Ok(()),
    };
    let meta = fs::metadata(parent).map_err(|source| DirError::Inspect {
        path: parent.to_path_buf(),
        source,
    })?;
    let uid = rustix::process::geteuid().as_raw();
    let mode = meta.permissions().mode() & 0o7777;
    let owner_ok = meta.uid() == uid || meta.uid() == 0;
    let sticky_or_private = mode & 0o022 == 0 || mode & 0o1000 != 0;
    if owner_ok && sticky_or_private {
        return Ok(());
    }
    Err(DirError::UnsafeParent {
        path: parent.to_path_buf(),
        owner: meta.uid(),
        mode,
    })
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

    #[test]
    fn flag_wins_over_env_and_default() {
        let p = SocketPath::resolve_with(
            Some(Path::new("/a/s")),
            Some("/b/s".into()),
            Some("/run/user/1".into()),
        );
        assert_eq!(p.path, Path::new("/a/s"));
        assert_eq!(p.source, SocketSource::Flag);
    }

    #[test]
    fn env_wins_over_default_unless_empty() {
        let p = SocketPath::resolve_with(None, Some("/b/s".into()), None);
        assert_eq!(p.source, SocketSource::Env);
        let p = SocketPath::resolve_with(None, Some("".into()), Some("/run/user/1".into()));
        assert_eq!(p.source, SocketSource::Default);
    }

    #[test]
    fn default_uses_xdg_runtime_dir() {
        let p = SocketPath::resolve_with(None, None, Some("/run/user/1000".into()));
        assert_eq!(p.path, Path::new("/run/user/1000/jwtagent/agent.sock"));
    }

    #[test]
    fn default_falls_back_to_tmp_with_uid_when_runtime_dir_is_missing_or_relative() {
        let uid = rustix::process::geteuid().as_raw();
        let want = PathBuf::from(format!("/tmp/jwtagent-{uid}/agent.sock"));
        assert_eq!(default_socket_path(None), want);
        assert_eq!(default_socket_path(Some("relative".into())), want);
    }

    #[test]
    fn missing_dir_is_created_0700() {
        let tmp = private_tempdir();
        let dir = tmp.path().join("d");
        ensure_socket_dir(&dir.join("agent.sock")).unwrap();
        let mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }

    #[test]
    fn group_readable_dir_is_refused_with_its_mode() {
        let tmp = private_tempdir();
        let dir = tmp.path().join("d");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o750)).unwrap();
        let err = ensure_socket_dir(&dir.join("agent.sock")).unwrap_err();
        assert!(
            matches!(err, DirError::TooOpen { mode: 0o750, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("chmod 700"), "{err}");
    }

    #[test]
    fn parent_writable_by_others_without_sticky_bit_is_refused() {
        let tmp = private_tempdir();
        let parent = tmp.path().join("run");
        let dir = parent.join("jwtagent");
        fs::create_dir(&parent).unwrap();
        fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
        fs::set_permissions(&parent, fs::Permissions::from_mode(0o777)).unwrap();
        let err = check_socket_dir(&dir).unwrap_err();
        assert!(
            matches!(err, DirError::UnsafeParent { mode: 0o777, .. }),
            "{err}"
        );
        // Shared like /tmp (sticky): others cannot rename our directory away.
        fs::set_permissions(&parent, fs::Permissions::from_mode(0o1777)).unwrap();
        check_socket_dir(&dir).unwrap();
    }

    #[test]
    fn symlinked_dir_is_refused() {
        let tmp = private_tempdir();
        let real = tmp.path().join("real");
        fs::DirBuilder::new().mode(0o700).create(&real).unwrap();
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let err = ensure_socket_dir(&link.join("agent.sock")).unwrap_err();
        assert!(matches!(err, DirError::Symlink { .. }), "{err}");
    }
}
