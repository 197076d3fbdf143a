//! The audit log: one JSON line per token request and per refusal, with who
//! asked (pid, uid, executable), for what, and what came of it. Never a token:
//! only its fingerprint.
//!
//! `$XDG_STATE_HOME/jwtagent/audit.log`, mode 0600; past its size cap it is
//! rotated to `audit.log.1` (one old file kept).

use crate::peer::Peer;
use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Size at which the log is rotated.
pub const MAX_BYTES: u64 = 10 * 1024 * 1024;

/// One audit record.
#[derive(Debug, Serialize)]
pub struct Record<'a> {
    /// RFC 3339, UTC.
    pub time: String,
    pub pid: Option<u32>,
    pub uid: u32,
    pub exe: Option<String>,
    pub op: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<&'a str>,
    /// `ok`, or the error code (`denied`, `locked`, `idp_error`, ...).
    pub outcome: &'a str,
    /// First 8 hex digits of the SHA-256 of the token served.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

impl<'a> Record<'a> {
    pub fn new(peer: &Peer, op: &'a str, profile: Option<&'a str>, outcome: &'a str) -> Self {
        Record {
            time: jwtagent::time::rfc3339(jwtagent::time::unix_now()),
            pid: peer.pid,
            uid: peer.uid,
            exe: peer.exe.as_ref().map(|p| p.display().to_string()),
            op,
            profile,
            outcome,
            fingerprint: None,
        }
    }
}

pub struct Audit {
    path: Option<PathBuf>,
    file: Mutex<Option<File>>,
    max_bytes: u64,
}

impl Audit {
    /// An audit log at `path`; `None` disables it.
    pub fn new(path: Option<PathBuf>) -> Audit {
        Audit {
            path,
            file: Mutex::new(None),
            max_bytes: MAX_BYTES,
        }
    }

    #[cfg(test)]
    fn with_cap(path: PathBuf, max_bytes: u64) -> Audit {
        Audit {
            path: Some(path),
            file: Mutex::new(None),
            max_bytes,
        }
    }

    /// Appends `record`. Failures are logged, never fatal: the request itself
    /// has been answered by then.
    pub fn record(&self, record: &Record<'_>) {
        let Some(path) = &self.path else { return };
        let mut line = match serde_json::to_vec(record) {
            Ok(line) => line,
            Err(_) => return,
        };
        line.push(b'\n');
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = append(path, &mut file, &line, self.max_bytes) {
            tracing::warn!(path = %path.display(), error = %e, "cannot write the audit log");
            *file = None;
        }
    }
}

fn open(path: &Path) -> std::io::Result<File> {
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
}

fn append(path: &Path, file: &mut Option<File>, line: &[u8], max: u64) -> std::io::Result<()> {
    if file.is_none() {
        *file = Some(open(path)?);
    }
    if let Some(f) = file.as_ref()
        && f.metadata()?.len() + line.len() as u64 > max
    {
        let mut rotated = path.as_os_str().to_owned();
        rotated.push(".1");
        std::fs::rename(path, rotated)?;
        *file = Some(open(path)?);
    }
    match file.as_mut() {
        Some(f) => f.write_all(line),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn records_are_json_lines_in_a_0600_file_and_rotate_at_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/audit.log");
        let audit = Audit::with_cap(path.clone(), 400);
        let peer = Peer {
            uid: 1000,
            pid: Some(42),
            exe: Some("/usr/bin/curl".into()),
            ..Peer::default()
        };
        for _ in 0..5 {
            let mut r = Record::new(&peer, "token", Some("api"), "ok");
            r.fingerprint = Some("ba7816bf".into());
            audit.record(&r);
        }
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let rotated = dir.path().join("state/audit.log.1");
        assert!(rotated.exists(), "rotated past 400 bytes");
        let text =
            std::fs::read_to_string(&path).unwrap() + &std::fs::read_to_string(&rotated).unwrap();
        assert!(text.lines().count() <= 5);
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["exe"], "/usr/bin/curl");
            assert_eq!(v["fingerprint"], "ba7816bf");
            assert_eq!(v["outcome"], "ok");
        }
    }
}
