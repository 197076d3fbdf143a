//! The audit log: one JSON line per token request, per refusal and per change
//! to the agent (add, remove, keygen, lock, unlock, login, logout, stop), with who
//! asked (pid, uid, executable), for what, and what came of it. Never a token:
//! only its fingerprint.
//!
//! `$XDG_STATE_HOME/jwtagent/audit.log`, mode 0600; past its size cap it is
//! rotated to `audit.log.1` (one old file kept). Written off the request path,
//! by a thread of its own: a record is in the file within a few milliseconds
//! of its answer, and everything queued is written before the agent exits.

use crate::peer::Peer;
use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError};

/// Size at which the log is rotated.
pub(crate) const MAX_BYTES: u64 = 10 * 1024 * 1024;

/// One audit record.
#[derive(Debug, Serialize)]
pub(crate) struct Record<'a> {
    /// RFC 3339, UTC.
    pub time: jwtagent::time::Rfc3339,
    pub pid: Option<u32>,
    pub uid: u32,
    #[serde(serialize_with = "lossy")]
    pub exe: Option<&'a Path>,
    /// The caller's parents, nearest first: for the CLI, the process that
    /// ran it (git, a shell, ...), read by the agent from /proc.
    #[serde(skip_serializing_if = "<[_]>::is_empty", serialize_with = "paths")]
    pub parents: &'a [std::path::PathBuf],
    pub op: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<&'a str>,
    /// `ok`, or the error code (`denied`, `locked`, `idp_error`, ...).
    pub outcome: &'a str,
    /// First 8 hex digits of the SHA-256 of the token served.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<&'a str>,
    /// The input profile (of a derived profile) whose policy refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<&'a str>,
}

impl<'a> Record<'a> {
    pub(crate) fn new(
        peer: &'a Peer,
        op: &'a str,
        profile: Option<&'a str>,
        outcome: &'a str,
    ) -> Self {
        Record {
            time: jwtagent::time::Rfc3339(jwtagent::time::unix_now()),
            pid: peer.pid,
            uid: peer.uid,
            exe: peer.exe.as_ref().map(|e| &*e.path),
            parents: peer.parents(),
            op,
            profile,
            outcome,
            fingerprint: None,
            input: None,
        }
    }
}

/// A path as text, lossy where it is not UTF-8 (as `Path::display`), and
/// without a string made for it where it is.
fn lossy<S: serde::Serializer>(path: &Option<&Path>, s: S) -> Result<S::Ok, S::Error> {
    match path {
        Some(path) => s.serialize_str(&path.to_string_lossy()),
        None => s.serialize_none(),
    }
}

/// Paths as text (lossy where they are not UTF-8, as `exe` is written),
/// without a string made for each.
fn paths<S: serde::Serializer>(paths: &&[std::path::PathBuf], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(paths.iter().map(|p| p.to_string_lossy()))
}

/// Records queued for the writer at most; a request that finds the queue full
/// waits for room (the log stays complete, memory stays bounded).
const QUEUE: usize = 4096;
/// Bytes gathered into one write at most.
const BATCH: usize = 64 * 1024;
/// After a write, the writer rests this long before it looks again, so that
/// under load the records of many requests make one write, and a request
/// queues its record without waking anyone (a wake-up per request cost more
/// than the rest of a cached token's request path).
const GATHER: std::time::Duration = std::time::Duration::from_millis(5);
/// How long after the last record the writer keeps waking on its own.
const AWAKE: std::time::Duration = std::time::Duration::from_secs(1);

enum Message {
    Line(Vec<u8>),
    /// Answered once every line queued before it is written.
    Flush(SyncSender<()>),
}

/// The audit log, written by a thread of its own: a request queues its record
/// (serialized) and goes on; the writer appends what has queued up in one
/// write, keeps the file's size in memory and rotates at the cap.
pub(crate) struct Audit {
    queue: Option<SyncSender<Message>>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl Audit {
    /// An audit log at `path`; `None` disables it.
    pub(crate) fn new(path: Option<PathBuf>) -> Audit {
        Self::with_cap(path, MAX_BYTES)
    }

    fn with_cap(path: Option<PathBuf>, max_bytes: u64) -> Audit {
        let Some(path) = path else {
            return Audit {
                queue: None,
                writer: None,
            };
        };
        let (queue, lines) = std::sync::mpsc::sync_channel(QUEUE);
        let writer = std::thread::Builder::new()
            .name("audit".into())
            .spawn(move || Writer::new(path, max_bytes).run(lines));
        match writer {
            Ok(writer) => Audit {
                queue: Some(queue),
                writer: Some(writer),
            },
            Err(e) => {
                tracing::error!(error = %e, "cannot start the audit log's writer: no audit log");
                Audit {
                    queue: None,
                    writer: None,
                }
            }
        }
    }

    /// Queues `record`. Failures to write are logged, never fatal: the request
    /// itself is answered either way.
    pub(crate) fn record(&self, record: &Record<'_>) {
        let Some(queue) = &self.queue else { return };
        // A record is some 300 bytes: written into room for it, not grown
        // from serde_json's 128.
        let mut line = Vec::with_capacity(512);
        if serde_json::to_writer(&mut line, record).is_err() {
            return;
        }
        line.push(b'\n');
        let _ = queue.send(Message::Line(line));
    }

    /// Returns once every record queued so far is written (or failed to be).
    pub(crate) fn flush(&self) {
        let Some(queue) = &self.queue else { return };
        let (done, written) = std::sync::mpsc::sync_channel(1);
        if queue.send(Message::Flush(done)).is_ok() {
            let _ = written.recv();
        }
    }
}

impl Drop for Audit {
    /// Whatever is queued is written before the agent goes.
    fn drop(&mut self) {
        drop(self.queue.take());
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// The writer thread's side: the open file and its size.
struct Writer {
    path: PathBuf,
    max_bytes: u64,
    file: Option<(File, u64)>,
    buf: Vec<u8>,
}

impl Writer {
    fn new(path: PathBuf, max_bytes: u64) -> Writer {
        Writer {
            path,
            max_bytes,
            file: None,
            buf: Vec::with_capacity(BATCH),
        }
    }

    /// Takes what has queued up, writes it, answers the flushes among it;
    /// ends when the queue's sender is gone and the queue is empty.
    ///
    /// While records keep coming it wakes on its own, every [`GATHER`], and
    /// looks: a request that queues a record then wakes no one (a wake-up
    /// is a system call on the request's path, and a thread that takes the
    /// CPU from the client waiting for its answer). Only after [`AWAKE`]
    /// without a record does it wait for the next one, so that an idle
    /// agent does not wake at all.
    fn run(mut self, lines: Receiver<Message>) {
        let mut flushed = Vec::new();
        let mut quiet = std::time::Duration::ZERO;
        loop {
            let first = match lines.try_recv() {
                Ok(message) => message,
                Err(TryRecvError::Disconnected) => return,
                Err(TryRecvError::Empty) if quiet < AWAKE => {
                    std::thread::sleep(GATHER);
                    quiet += GATHER;
                    continue;
                }
                Err(TryRecvError::Empty) => match lines.recv() {
                    Ok(message) => message,
                    Err(_) => return,
                },
            };
            quiet = std::time::Duration::ZERO;
            let mut next = Some(first);
            let mut full = false;
            while let Some(message) = next.take() {
                match message {
                    Message::Line(line) => self.add(&line),
                    Message::Flush(done) => flushed.push(done),
                }
                full = self.buf.len() >= BATCH;
                if !full {
                    next = lines.try_recv().ok();
                }
            }
            self.write_out();
            for done in flushed.drain(..) {
                let _ = done.send(());
            }
            // A full batch means more may be waiting: no rest then.
            if !full {
                std::thread::sleep(GATHER);
            }
        }
    }

    /// Adds one line to the batch, writing the batch out and rotating first
    /// when the line would take the file past its cap.
    fn add(&mut self, line: &[u8]) {
        if let Err(e) = self.open() {
            self.failed(&e);
        }
        let size = self.file.as_ref().map_or(0, |(_, size)| *size);
        if size + (self.buf.len() + line.len()) as u64 > self.max_bytes {
            self.write_out();
            let mut rotated = self.path.as_os_str().to_owned();
            rotated.push(".1");
            match std::fs::rename(&self.path, rotated) {
                Ok(()) => self.file = None,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => self.file = None,
                Err(e) => self.failed(&e),
            }
        }
        self.buf.extend_from_slice(line);
    }

    /// Opens the file, if it is not open, and learns its size.
    fn open(&mut self) -> std::io::Result<()> {
        if self.file.is_none() {
            let file = open(&self.path)?;
            let size = file.metadata()?.len();
            self.file = Some((file, size));
        }
        Ok(())
    }

    fn write_out(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        if let Err(e) = self.append() {
            self.failed(&e);
        }
        self.buf.clear();
    }

    fn append(&mut self) -> std::io::Result<()> {
        self.open()?;
        if let Some((file, size)) = self.file.as_mut() {
            file.write_all(&self.buf)?;
            *size += self.buf.len() as u64;
        }
        Ok(())
    }

    fn failed(&mut self, e: &std::io::Error) {
        tracing::warn!(path = %self.path.display(), error = %e, "cannot write the audit log");
        self.file = None;
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn records_are_json_lines_in_a_0600_file_and_rotate_at_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/audit.log");
        let audit = Audit::with_cap(Some(path.clone()), 400);
        let peer = Peer {
            uid: 1000,
            pid: Some(42),
            exe: Some("/usr/bin/curl".into()),
            ..Peer::default()
        };
        for _ in 0..5 {
            let mut r = Record::new(&peer, "token", Some("api"), "ok");
            r.fingerprint = Some("ba7816bf");
            audit.record(&r);
        }
        audit.flush();
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
            let time = v["time"].as_str().expect("the time is a string");
            assert!(
                time.len() == 20 && time.as_bytes()[10] == b'T' && time.ends_with('Z'),
                "RFC 3339 UTC: {time}"
            );
        }
    }

    fn record_of(peer: &Peer) -> Record<'_> {
        Record::new(peer, "token", Some("api"), "ok")
    }

    #[test]
    fn everything_queued_is_written_before_the_log_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let audit = Audit::new(Some(path.clone()));
        let peer = Peer::default();
        for _ in 0..10_000 {
            audit.record(&record_of(&peer));
        }
        drop(audit);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 10_000);
    }

    #[test]
    fn the_size_of_a_log_left_by_an_earlier_agent_counts_toward_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        std::fs::write(&path, vec![b'x'; 390]).unwrap();
        let audit = Audit::with_cap(Some(path.clone()), 400);
        let peer = Peer::default();
        audit.record(&record_of(&peer));
        audit.flush();
        let rotated = std::fs::read(dir.path().join("audit.log.1")).expect("rotated");
        assert_eq!(rotated, vec![b'x'; 390]);
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 1);
    }
}
