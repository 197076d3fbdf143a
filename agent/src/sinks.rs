//! Sink files: what a profile's sinks hold, the checks a path passes before
//! a token is written there, the atomic write, and each sink's last outcome.
//! (The tasks that keep them fresh are `ops::sinks`.)

use jwtagent::config::{Sink, SinkFormat};
use jwtagent::secret::Secret;
use std::collections::{HashMap, HashSet};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The sinks' shared state: the outcome of each one's last write, and
/// the wake-up of the task that runs the writers.
pub(crate) struct Sinks {
    outcomes: Mutex<HashMap<PathBuf, Outcome>>,
    /// Something changed (a sink, a profile, the lock): the writers are
    /// brought in line with it.
    pub changed: tokio::sync::Notify,
    /// Profiles whose writers start again (a sign-in, a sign-out).
    restart: Mutex<HashSet<String>>,
    /// The writer of each profile with sinks; `None` once the agent stops.
    pub writers: tokio::sync::Mutex<Option<HashMap<String, Writer>>>,
    /// Held while a file is written or deleted: a writer that was stopped
    /// writes nothing once it is released.
    pub write: Mutex<()>,
}

/// One profile's writer: the profile it writes for, and its task.
pub(crate) struct Writer {
    pub profile: jwtagent::config::Profile,
    pub alive: std::sync::Arc<std::sync::atomic::AtomicBool>,
    pub task: tokio::task::JoinHandle<()>,
}

impl Writer {
    /// Stops it: no write starts after this returns. The profile it wrote for.
    pub(crate) async fn stop(self) -> jwtagent::config::Profile {
        self.alive.store(false, std::sync::atomic::Ordering::SeqCst);
        self.task.abort();
        let _ = self.task.await;
        self.profile
    }
}

impl Default for Sinks {
    fn default() -> Sinks {
        Sinks {
            outcomes: Default::default(),
            changed: Default::default(),
            restart: Default::default(),
            writers: tokio::sync::Mutex::new(Some(HashMap::new())),
            write: Default::default(),
        }
    }
}

/// How a sink's last write went.
#[derive(Debug, Clone, Default)]
pub(crate) struct Outcome {
    pub written_at: Option<u64>,
    pub error: Option<String>,
}

impl Sinks {
    /// The writers are brought in line with the config and the lock.
    pub(crate) fn changed(&self) {
        self.changed.notify_one();
    }

    /// Profile `name`'s writers start again (its sign-in changed).
    pub(crate) fn restart(&self, name: &str) {
        self.restart
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string());
        self.changed();
    }

    /// The profiles whose writers start again, taken.
    pub(crate) fn take_restarts(&self) -> HashSet<String> {
        std::mem::take(&mut *self.restart.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub(crate) fn outcome(&self, path: &Path) -> Outcome {
        let outcomes = self.outcomes.lock().unwrap_or_else(|p| p.into_inner());
        outcomes.get(path).cloned().unwrap_or_default()
    }

    pub(crate) fn set_outcome(&self, path: &Path, outcome: Outcome) {
        let mut outcomes = self.outcomes.lock().unwrap_or_else(|p| p.into_inner());
        outcomes.insert(path.to_path_buf(), outcome);
    }

    pub(crate) fn forget_outcome(&self, path: &Path) {
        let mut outcomes = self.outcomes.lock().unwrap_or_else(|p| p.into_inner());
        outcomes.remove(path);
    }
}

/// Why a sink's path cannot hold a token.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SinkError {
    #[error("{dir}: {why}")]
    Dir { dir: PathBuf, why: String },
    #[error("{path}: {why}")]
    File { path: PathBuf, why: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The directory must exist, be the user's, and be writable by nobody else
/// (who could otherwise swap the file for a link, or read it before the
/// rename); the file, when it exists, must be a regular file of the user's
/// (not a symbolic link).
pub(crate) fn check(path: &Path) -> Result<(), SinkError> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    let dir_err = |why: String| SinkError::Dir {
        dir: dir.to_path_buf(),
        why,
    };
    let meta = std::fs::metadata(dir).map_err(|e| {
        dir_err(format!(
            "cannot use the directory ({e}); create it first (mkdir -m 700)"
        ))
    })?;
    let uid = rustix::process::geteuid().as_raw();
    if !meta.is_dir() {
        return Err(dir_err("is not a directory".into()));
    }
    if meta.uid() != uid {
        return Err(dir_err(format!(
            "is owned by uid {}, not by you (uid {uid}): choose a directory of yours",
            meta.uid()
        )));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(dir_err(format!(
            "has mode {mode:04o}: other users can write in it, and could take the token or put a link in its place; run `chmod go-w {}` or choose another directory",
            dir.display()
        )));
    }
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(SinkError::File {
            path: path.to_path_buf(),
            why: format!("cannot inspect it: {e}"),
        }),
        Ok(meta) => {
            let why = if meta.file_type().is_symlink() {
                Some("is a symbolic link: the token is not written through one (remove it, or name the file it points to)".to_string())
            } else if !meta.is_file() {
                Some("is not a regular file".into())
            } else if meta.uid() != uid {
                Some(format!("is owned by uid {}, not by you", meta.uid()))
            } else {
                None
            };
            match why {
                Some(why) => Err(SinkError::File {
                    path: path.to_path_buf(),
                    why,
                }),
                None => Ok(()),
            }
        }
    }
}

/// What `sink`'s file holds for `token`.
pub(crate) fn contents(
    format: SinkFormat,
    token: &Secret,
    token_type: &str,
    expires_at: Option<u64>,
) -> zeroize::Zeroizing<Vec<u8>> {
    match format {
        SinkFormat::Token => zeroize::Zeroizing::new(token.expose().to_vec()),
        SinkFormat::Json => {
            #[derive(serde::Serialize)]
            struct Json<'a> {
                access_token: &'a str,
                token_type: &'a str,
                #[serde(skip_serializing_if = "Option::is_none")]
                expires_at: Option<u64>,
            }
            // Served tokens are visible ASCII.
            let token = std::str::from_utf8(token.expose()).unwrap_or_default();
            let json = Json {
                access_token: token,
                token_type,
                expires_at,
            };
            let mut text = serde_json::to_vec(&json).unwrap_or_default();
            text.push(b'\n');
            zeroize::Zeroizing::new(text)
        }
    }
}

/// Writes `contents` to `sink`'s file: checked, then a temp file (0600) in
/// its directory, fsync'd and renamed over it, so that no reader ever sees
/// it half-written.
pub(crate) fn write(sink: &Sink, contents: &[u8]) -> Result<(), SinkError> {
    check(&sink.path)?;
    crate::config_io::write_atomic_at(&sink.path, contents, "sink:before-rename").map_err(|e| {
        SinkError::Write {
            path: sink.path.clone(),
            source: e.source,
        }
    })
}

/// Deletes `path` if it is a regular file of the user's (never what a link
/// points to); whether it did.
pub(crate) fn remove(path: &Path) -> bool {
    let uid = rustix::process::geteuid().as_raw();
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_file() && meta.uid() == uid => match std::fs::remove_file(path) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot delete a sink file");
                false
            }
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn dir(mode: u32) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(mode)).unwrap();
        d
    }

    fn sink(path: PathBuf) -> Sink {
        Sink {
            path,
            format: SinkFormat::Token,
            keep: false,
        }
    }

    #[test]
    fn a_token_is_written_0600_and_replaced_whole() {
        let d = dir(0o755);
        let s = sink(d.path().join("token"));
        write(&s, b"first").unwrap();
        write(&s, b"second").unwrap();
        assert_eq!(std::fs::read(&s.path).unwrap(), b"second");
        let mode = std::fs::metadata(&s.path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // No temp file left beside it.
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
        assert!(remove(&s.path));
        assert!(!s.path.exists());
    }

    #[test]
    fn unsafe_places_are_refused_and_nothing_is_written() {
        let open = dir(0o777);
        let e = write(&sink(open.path().join("t")), b"x").unwrap_err();
        assert!(e.to_string().contains("other users can write"), "{e}");
        assert!(!open.path().join("t").exists());

        let d = dir(0o700);
        let target = d.path().join("elsewhere");
        std::fs::write(&target, b"keep").unwrap();
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = write(&sink(link.clone()), b"x").unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
        // Removal does not follow it either.
        assert!(!remove(&link));
        assert!(target.exists());

        let e = write(&sink(d.path().join("missing/t")), b"x").unwrap_err();
        assert!(e.to_string().contains("create it first"), "{e}");
        std::fs::create_dir(d.path().join("sub")).unwrap();
        let e = write(&sink(d.path().join("sub")), b"x").unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        // A name the file system cannot look up is not taken for a free one.
        let e = write(&sink(d.path().join("n".repeat(300))), b"x").unwrap_err();
        assert!(e.to_string().contains("cannot inspect it"), "{e}");
    }

    #[tokio::test]
    async fn outcomes_are_kept_per_file_and_restarts_taken_once() {
        let sinks = Sinks::default();
        let (a, b) = (Path::new("/run/a"), Path::new("/run/b"));
        assert!(sinks.outcome(a).written_at.is_none());
        let written = Outcome {
            written_at: Some(42),
            error: None,
        };
        sinks.set_outcome(a, written);
        sinks.set_outcome(
            b,
            Outcome {
                written_at: None,
                error: Some("full".into()),
            },
        );
        assert_eq!(sinks.outcome(a).written_at, Some(42));
        assert_eq!(sinks.outcome(b).error.as_deref(), Some("full"));
        sinks.forget_outcome(a);
        assert!(sinks.outcome(a).written_at.is_none());
        assert_eq!(sinks.outcome(b).error.as_deref(), Some("full"));

        // A restart wakes the writers' task, and is taken once.
        let woken = || {
            let notified = sinks.changed.notified();
            tokio::time::timeout(std::time::Duration::from_secs(5), notified)
        };
        sinks.restart("api");
        woken().await.expect("woken by the restart");
        sinks.restart("ci");
        assert_eq!(
            sinks.take_restarts(),
            HashSet::from(["api".to_string(), "ci".to_string()])
        );
        assert!(sinks.take_restarts().is_empty());
        sinks.changed();
        woken().await.expect("woken by a change");
    }

    #[test]
    fn json_holds_the_token_its_type_and_expiry() {
        let text = contents(
            SinkFormat::Json,
            &Secret::new(b"tok".to_vec()),
            "Bearer",
            Some(42),
        );
        let v: serde_json::Value = serde_json::from_slice(&text).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"access_token": "tok", "token_type": "Bearer", "expires_at": 42})
        );
        let raw = contents(
            SinkFormat::Token,
            &Secret::new(b"tok".to_vec()),
            "Bearer",
            None,
        );
        assert_eq!(&raw[..], b"tok");
    }
}
