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
use jwtagent::protocol::{write_text, write_text_or};
use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

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

impl Record<'_> {
    /// Writes the record as `serde_json::to_writer` writes its `Serialize`,
    /// byte for byte (a property test holds the two together), with the
    /// member names as they are and its text copied where it needs no
    /// escaping ([`jwtagent::protocol::write_text`]): the record is
    /// written on every request, under the queue's lock.
    pub(crate) fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        out.extend_from_slice(br#"{"time":"#);
        serde_json::to_writer(&mut *out, &self.time)?;
        out.extend_from_slice(br#","pid":"#);
        serde_json::to_writer(&mut *out, &self.pid)?;
        out.extend_from_slice(br#","uid":"#);
        serde_json::to_writer(&mut *out, &self.uid)?;
        out.extend_from_slice(br#","exe":"#);
        match self.exe {
            Some(exe) => path_text(out, exe)?,
            None => out.extend_from_slice(b"null"),
        }
        if !self.parents.is_empty() {
            out.extend_from_slice(br#","parents":["#);
            for (i, parent) in self.parents.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                path_text(out, parent)?;
            }
            out.push(b']');
        }
        out.extend_from_slice(br#","op":"#);
        write_text(out, self.op.as_bytes(), self.op)?;
        let optional = [
            (&br#","profile":"#[..], self.profile),
            (br#","outcome":"#, Some(self.outcome)),
            (br#","fingerprint":"#, self.fingerprint),
            (br#","input":"#, self.input),
        ];
        for (name, value) in optional {
            if let Some(value) = value {
                out.extend_from_slice(name);
                write_text(out, value.as_bytes(), value)?;
            }
        }
        out.push(b'}');
        Ok(())
    }
}

/// A path as [`lossy`] writes it.
fn path_text(out: &mut Vec<u8>, path: &Path) -> serde_json::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    write_text_or(out, path.as_os_str().as_bytes(), |out| {
        serde_json::to_writer(out, &path.to_string_lossy())
    })
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

/// Bytes of records waiting for the writer at most (some 3,000 records); a
/// request that finds no room waits for the writer to take them (the log
/// stays complete, memory stays bounded).
const QUEUED: usize = 1024 * 1024;
/// The room the writer's buffer starts with.
const BATCH: usize = 64 * 1024;
/// After a write, the writer rests this long before it looks again, or
/// until it is hurried (the queue half full, a flush, the close): under
/// load the records of many requests make one write, and a request queues
/// its record without waking anyone (a wake-up per request cost more than
/// the rest of a cached token's request path). Short, so that a record is
/// in the file by the time `jwtagent audit` reads it.
const GATHER: std::time::Duration = std::time::Duration::from_millis(5);
/// How long after the last record the writer keeps waking on its own: ten
/// rests. (A second, before: one request kept the writer waking 200 times.)
const AWAKE: std::time::Duration = std::time::Duration::from_millis(50);

/// The audit log, written by a thread of its own: a request serializes its
/// record into the queue (one buffer, under a lock held for that alone: no
/// allocation, copy or hand-off of its own per record) and goes on; the
/// writer takes the whole queue at once, appends it in large writes, keeps
/// the file's size in memory and rotates at the cap.
pub(crate) struct Audit {
    queue: Option<Arc<Queue>>,
    writer: Option<std::thread::JoinHandle<()>>,
}

/// Records serialized and not yet taken by the writer, and where the
/// writer is.
struct Queue {
    pending: Mutex<Pending>,
    /// The writer's rest, [`GATHER`] but in tests.
    rest: std::time::Duration,
    /// The writer took the queue (room for more), or wrote what it took.
    progress: Condvar,
    /// A record came while the writer waits for one (after [`AWAKE`]), or
    /// the log is closing.
    wake: Condvar,
}

#[derive(Default)]
struct Pending {
    /// JSON lines, each with its newline.
    lines: Vec<u8>,
    /// Records queued since the start, taken by the writer, and written (or
    /// failed to be).
    queued: u64,
    taken: u64,
    written: u64,
    /// The writer waits on `wake` (it has been [`AWAKE`] without a record).
    asleep: bool,
    /// The writer is asked to write what it has not taken without resting
    /// first: the queue is half full, a flush waits, or the log closes.
    hurry: bool,
    /// Requests waiting for room.
    waiting: usize,
    closed: bool,
}

impl Queue {
    fn pending(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Audit {
    /// An audit log at `path`; `None` disables it.
    pub(crate) fn new(path: Option<PathBuf>) -> Audit {
        Self::with_limits(path, MAX_BYTES, GATHER)
    }

    fn with_limits(path: Option<PathBuf>, max_bytes: u64, rest: std::time::Duration) -> Audit {
        let none = Audit {
            queue: None,
            writer: None,
        };
        let Some(path) = path else { return none };
        let queue = Arc::new(Queue {
            pending: Mutex::new(Pending::default()),
            rest,
            progress: Condvar::new(),
            wake: Condvar::new(),
        });
        let theirs = queue.clone();
        let writer = std::thread::Builder::new()
            .name("audit".into())
            .spawn(move || {
                // However the writer ends (a panic too), requests stop queueing
                // and no one waits on it.
                let _gone = Gone(theirs.clone());
                Writer::new(path, max_bytes).run(&theirs)
            });
        match writer {
            Ok(writer) => Audit {
                queue: Some(queue),
                writer: Some(writer),
            },
            Err(e) => {
                tracing::error!(error = %e, "cannot start the audit log's writer: no audit log");
                none
            }
        }
    }

    /// Queues `record`. Failures to write are logged, never fatal: the request
    /// itself is answered either way.
    pub(crate) fn record(&self, record: &Record<'_>) {
        let Some(queue) = &self.queue else { return };
        let mut pending = queue.pending();
        while pending.lines.len() >= QUEUED && !pending.closed {
            pending.waiting += 1;
            pending = queue
                .progress
                .wait(pending)
                .unwrap_or_else(|p| p.into_inner());
            pending.waiting -= 1;
        }
        // Closed: the writer is gone (the agent is stopping, or it failed).
        if pending.closed {
            return;
        }
        let before = pending.lines.len();
        if record.write_json(&mut pending.lines).is_err() {
            pending.lines.truncate(before);
            return;
        }
        pending.lines.push(b'\n');
        pending.queued += 1;
        if pending.asleep || (!pending.hurry && pending.lines.len() >= QUEUED / 2) {
            pending.hurry = true;
            queue.wake.notify_one();
        }
    }

    /// Returns once every record queued so far is written (or failed to be).
    pub(crate) fn flush(&self) {
        let Some(queue) = &self.queue else { return };
        let mut pending = queue.pending();
        let upto = pending.queued;
        // Not taken yet: the writer comes for them now, not after its rest.
        if pending.taken < upto {
            pending.hurry = true;
            queue.wake.notify_one();
        }
        while pending.written < upto && !pending.closed {
            pending = queue
                .progress
                .wait(pending)
                .unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// Marks the log closed when the writer thread ends, and wakes whoever
/// waits on it.
struct Gone(Arc<Queue>);

impl Drop for Gone {
    fn drop(&mut self) {
        self.0.pending().closed = true;
        self.0.progress.notify_all();
    }
}

impl Drop for Audit {
    /// Whatever is queued is written before the agent goes.
    fn drop(&mut self) {
        if let Some(queue) = self.queue.take() {
            queue.pending().closed = true;
            queue.wake.notify_one();
        }
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// The writer's rest between looks at the queue: [`GATHER`], or until it is
/// hurried.
fn rest(queue: &Queue) {
    let pending = queue.pending();
    let _rested = queue
        .wake
        .wait_timeout_while(pending, queue.rest, |p| !p.hurry && !p.closed)
        .unwrap_or_else(|p| p.into_inner());
}

/// The writer thread's side: the open file and its size.
struct Writer {
    path: PathBuf,
    max_bytes: u64,
    file: Option<(File, u64)>,
}

impl Writer {
    fn new(path: PathBuf, max_bytes: u64) -> Writer {
        Writer {
            path,
            max_bytes,
            file: None,
        }
    }

    /// Takes what has queued up, writes it, says so; ends once the log is
    /// closed and everything queued before is written.
    ///
    /// While records keep coming it wakes on its own, every [`GATHER`], and
    /// looks: a request that queues a record then wakes no one (a wake-up
    /// is a system call on the request's path, and a thread that takes the
    /// CPU from the client waiting for its answer), unless the queue is half
    /// full. Only after [`AWAKE`] without a record does it wait to be woken
    /// by the next one, so that an idle agent does not wake at all.
    fn run(mut self, queue: &Queue) {
        let mut taken = Vec::with_capacity(BATCH);
        let mut quiet = std::time::Duration::ZERO;
        loop {
            let (upto, closed, took) = {
                let mut pending = queue.pending();
                if pending.lines.is_empty() && !pending.closed && quiet >= AWAKE {
                    pending.asleep = true;
                    while pending.lines.is_empty() && !pending.closed {
                        pending = queue.wake.wait(pending).unwrap_or_else(|p| p.into_inner());
                    }
                    pending.asleep = false;
                }
                let took = !pending.lines.is_empty();
                if took {
                    std::mem::swap(&mut pending.lines, &mut taken);
                    pending.taken = pending.queued;
                }
                pending.hurry = false;
                (pending.queued, pending.closed, took)
            };
            if !took {
                if closed {
                    return;
                }
                // A burst has ended: what it grew the two buffers to goes
                // back (kept while records keep coming: growing them again
                // every few milliseconds cost more than the rest of the
                // record).
                if quiet.is_zero() {
                    if taken.capacity() > BATCH {
                        taken = Vec::with_capacity(BATCH);
                    }
                    let mut pending = queue.pending();
                    if pending.lines.is_empty() && pending.lines.capacity() > BATCH {
                        // Freed (and wiped, by the binary's allocator) once
                        // the lock is let go: a request waits for none of it.
                        let grown = std::mem::take(&mut pending.lines);
                        drop(pending);
                        drop(grown);
                    }
                }
                rest(queue);
                quiet += queue.rest;
                continue;
            }
            // Room for the requests waiting for it.
            queue.progress.notify_all();
            quiet = std::time::Duration::ZERO;
            self.write(&taken);
            taken.clear();
            queue.pending().written = upto;
            queue.progress.notify_all();
            if !closed {
                rest(queue);
            }
        }
    }

    /// Appends `lines` (whole JSON lines), rotating the file first wherever
    /// the next line would take it past its cap.
    fn write(&mut self, lines: &[u8]) {
        // To learn the file's size; a failure is reported by the append.
        let _ = self.open();
        let (mut start, mut end) = (0, 0);
        for line in lines.split_inclusive(|b| *b == b'\n') {
            let size = self.file.as_ref().map_or(0, |(_, size)| *size);
            let added = (end - start + line.len()) as u64;
            // A file with nothing in it yet is not rotated (a line longer
            // than the cap would rotate the last log away).
            if (size > 0 || end > start) && size.saturating_add(added) > self.max_bytes {
                self.append(&lines[start..end]);
                start = end;
                self.rotate();
            }
            end += line.len();
        }
        self.append(&lines[start..end]);
    }

    /// `audit.log` becomes `audit.log.1` (the one old file kept).
    fn rotate(&mut self) {
        let mut rotated = self.path.as_os_str().to_owned();
        rotated.push(".1");
        match std::fs::rename(&self.path, rotated) {
            Ok(()) => self.file = None,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => self.file = None,
            Err(e) => self.failed(&e),
        }
        let _ = self.open();
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

    fn append(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let written = self.open().and_then(|()| match self.file.as_mut() {
            Some((file, size)) => {
                file.write_all(bytes)?;
                *size += bytes.len() as u64;
                Ok(())
            }
            None => Ok(()),
        });
        if let Err(e) = written {
            self.failed(&e);
        }
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
        let audit = Audit::with_limits(Some(path.clone()), 400, GATHER);
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
    fn a_record_wakes_a_writer_asleep_after_a_quiet_spell() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let audit = Audit::new(Some(path.clone()));
        let queue = audit.queue.clone().unwrap();
        let deadline = std::time::Instant::now() + AWAKE * 10;
        let until = |what: &str, done: &dyn Fn() -> bool| {
            while !done() {
                assert!(std::time::Instant::now() < deadline, "{what}");
                std::thread::yield_now();
            }
        };
        until("the writer falls asleep", &|| queue.pending().asleep);
        audit.record(&record_of(&Peer::default()));
        // No flush (which wakes the writer too): the record alone does.
        until("the record is written", &|| {
            std::fs::read_to_string(&path).is_ok_and(|t| t.lines().count() == 1)
        });
    }

    /// Whatever happens in a test, the FIFO gets a reader before the log
    /// is dropped (which waits for its writer): a failure fails, not hangs.
    struct Drain(PathBuf);

    impl Drop for Drain {
        fn drop(&mut self) {
            let path = self.0.clone();
            std::thread::spawn(move || {
                if let Ok(mut fifo) = std::fs::File::open(path) {
                    let _ = std::io::copy(&mut fifo, &mut std::io::sink());
                }
            });
        }
    }

    /// A log at a FIFO with no reader yet: its writer blocks opening it, so
    /// the queue fills while requests go on. (Declare the drain after the
    /// log, so that it goes first.)
    fn blocked_log(path: &Path) -> (Audit, Drain) {
        let mode = rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR;
        rustix::fs::mkfifoat(rustix::fs::CWD, path, mode).unwrap();
        (
            Audit::new(Some(path.to_path_buf())),
            Drain(path.to_path_buf()),
        )
    }

    #[test]
    fn a_writer_that_ends_leaves_no_request_waiting_and_nothing_queued() {
        let dir = tempfile::tempdir().unwrap();
        let (audit, _drain) = blocked_log(&dir.path().join("audit.log"));
        let queue = audit.queue.clone().unwrap();
        let peer = Peer::default();
        let one = serde_json::to_vec(&record_of(&peer)).unwrap().len() + 1;
        // The writer fails (as a panic in it would end it).
        let ending = queue.clone();
        let _ = std::thread::spawn(move || {
            let _gone = Gone(ending);
            panic!("the writer fails");
        })
        .join();
        // More than the queue's room: none waits, none is kept.
        for _ in 0..2 * QUEUED / one {
            audit.record(&record_of(&peer));
        }
        assert!(queue.pending().lines.len() < one);
        audit.flush();
    }

    #[test]
    fn records_past_the_queue_s_room_wait_for_it_and_all_are_written() {
        use std::io::Read;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let (audit, _drain) = blocked_log(&path);
        let queue = audit.queue.clone().unwrap();
        let peer = Peer::default();
        let one = serde_json::to_vec(&record_of(&peer)).unwrap().len() + 1;
        let n = 3 * QUEUED / one;
        std::thread::scope(|s| {
            let requests = s.spawn(|| {
                for _ in 0..n {
                    audit.record(&record_of(&peer));
                }
            });
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while queue.pending().waiting == 0 {
                assert!(std::time::Instant::now() < deadline, "no request waited");
                assert!(
                    !requests.is_finished(),
                    "all queued without waiting for room"
                );
                std::thread::yield_now();
            }
            let queued = queue.pending().lines.len();
            assert!(
                queued + one > QUEUED && queued < QUEUED + one,
                "{queued} bytes queued"
            );
            // The reader comes: everything is written.
            let mut fifo = std::fs::File::open(&path).unwrap();
            let (mut text, mut chunk) = (Vec::new(), vec![0; 64 * 1024]);
            while text.iter().filter(|b| **b == b'\n').count() < n {
                let got = fifo.read(&mut chunk).unwrap();
                assert!(got > 0, "the writer closed the log early");
                text.extend_from_slice(&chunk[..got]);
            }
            requests.join().unwrap();
            let text = String::from_utf8(text).unwrap();
            assert_eq!(text.lines().count(), n);
            assert!(
                text.lines()
                    .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
            );
        });
    }

    #[test]
    fn what_a_burst_grew_the_queue_to_goes_back_when_it_ends() {
        let dir = tempfile::tempdir().unwrap();
        let audit = Audit::new(Some(dir.path().join("audit.log")));
        let queue = audit.queue.clone().unwrap();
        let peer = Peer::default();
        let deadline = std::time::Instant::now() + AWAKE * 10;
        // Bursts until one grew the queue past its usual room.
        while queue.pending().lines.capacity() <= BATCH {
            assert!(
                std::time::Instant::now() < deadline,
                "no burst grew the queue"
            );
            for _ in 0..1_000 {
                audit.record(&record_of(&peer));
            }
        }
        audit.flush();
        while queue.pending().lines.capacity() > BATCH {
            assert!(
                std::time::Instant::now() < deadline,
                "the queue kept its room"
            );
            std::thread::yield_now();
        }
    }

    /// `what` on a thread of its own, which must end before a deadline: a
    /// writer that is not hurried fails the test, and does not hang it.
    fn soon(what: &str, work: impl FnOnce() + Send + 'static) {
        let (done, ended) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            work();
            let _ = done.send(());
        });
        assert!(
            ended
                .recv_timeout(std::time::Duration::from_secs(60))
                .is_ok(),
            "{what}: the writer was not hurried"
        );
    }

    #[test]
    fn a_half_full_queue_a_flush_and_the_close_each_cut_the_writer_s_rest_short() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        // A rest no test outlives: only a hurry gets the writer going.
        let rest = std::time::Duration::from_secs(24 * 3600);
        let audit = Arc::new(Audit::with_limits(Some(path.clone()), MAX_BYTES, rest));
        let peer = Peer::default();
        let one = serde_json::to_vec(&record_of(&peer)).unwrap().len() + 1;
        let lines = |path: &Path| {
            std::fs::read(path).map_or(0, |text| text.iter().filter(|b| **b == b'\n').count())
        };
        // A first record and a flush: then the writer rests, and takes
        // nothing more until it is hurried.
        audit.record(&record_of(&peer));
        let flushed = audit.clone();
        soon("flush", move || flushed.flush());
        assert_eq!(lines(&path), 1);
        // Half the queue's room: written without a flush.
        let half = (QUEUED / 2).div_ceil(one);
        for _ in 0..half {
            audit.record(&record_of(&peer));
        }
        let watched = path.clone();
        soon("half full", move || {
            while lines(&watched) < 1 + half {
                std::thread::yield_now();
            }
        });
        // One more record: a flush writes it.
        audit.record(&record_of(&peer));
        let flushed = audit.clone();
        soon("flush", move || flushed.flush());
        assert_eq!(lines(&path), 1 + half + 1);
        // And one the close writes.
        audit.record(&record_of(&peer));
        let closing = Arc::into_inner(audit).unwrap();
        soon("close", move || drop(closing));
        assert_eq!(lines(&path), 1 + half + 2);
    }

    #[test]
    fn the_size_of_a_log_left_by_an_earlier_agent_counts_toward_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        std::fs::write(&path, vec![b'x'; 390]).unwrap();
        let audit = Audit::with_limits(Some(path.clone()), 400, GATHER);
        let peer = Peer::default();
        audit.record(&record_of(&peer));
        audit.flush();
        let rotated = std::fs::read(dir.path().join("audit.log.1")).expect("rotated");
        assert_eq!(rotated, vec![b'x'; 390]);
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 1);
    }
}
