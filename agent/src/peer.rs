//! Who is on the other end of a connection: uid and pid from SO_PEERCRED, and
//! the executable, resolved with a guard against pid reuse.
//!
//! The pid SO_PEERCRED reports may belong to another process by the time we
//! look (the peer exited, the pid was reused). The executable is trusted only
//! if the process holding the pid (held by a pidfd opened before the reads)
//! started before the connection was accepted and has not exited once its
//! `/proc/PID/exe` is read: a pid cannot pass to another process while the
//! one holding it lives.

use jwtagent::process::start_ticks;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The executable a process runs, as the agent can tell it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Exe {
    /// Its path, as the process's own mount namespace names it.
    pub path: PathBuf,
    /// Device and inode of the file itself (`/proc/PID/exe` opens the file
    /// the process runs, whatever a mount over its path shows).
    pub file: (u64, u64),
    /// Whether the process is in the agent's own mount and user namespaces
    /// (where a path means what it means to the agent).
    pub own_namespaces: bool,
    /// When the process running it started (boot ticks): with `file`, the
    /// process image the answer is for.
    pub started: u64,
    /// The process's parent when it was resolved (read with `started`): where
    /// its [`Peer::parents`] start.
    pub parent: Option<u32>,
}

#[cfg(test)]
impl From<PathBuf> for Exe {
    /// For tests: an executable known by its path only.
    fn from(path: PathBuf) -> Exe {
        let file = std::fs::metadata(&path).map_or((0, 0), |m| (m.dev(), m.ino()));
        Exe {
            path,
            file,
            own_namespaces: true,
            started: 0,
            parent: None,
        }
    }
}

#[cfg(test)]
impl From<&str> for Exe {
    fn from(path: &str) -> Exe {
        PathBuf::from(path).into()
    }
}

/// The peer of one connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Peer {
    pub uid: u32,
    /// The process that connected (SO_PEERCRED).
    pub pid: Option<u32>,
    /// Its executable; `None` when it could not be resolved safely.
    pub exe: Option<Exe>,
    /// Every process that wrote to the connection so far (SCM_CREDENTIALS),
    /// with its executable: the connecting process may have handed the socket
    /// to another (fork, exec, fd passing).
    pub writers: Vec<(u32, Option<Exe>)>,
    /// More processes wrote to the connection than are tracked.
    pub too_many_writers: bool,
    /// The executables of the process's parents, nearest first: read from
    /// /proc once, when first wanted (an audit record, a confirmation).
    pub parents: std::sync::OnceLock<Vec<PathBuf>>,
}

/// The executables of OpenSSH that connect to a forwarded Unix socket: the
/// client for `ssh -R REMOTE:LOCAL`, the server (or, since OpenSSH 9.8, its
/// per-session process) for `ssh -L LOCAL:REMOTE`.
const OPENSSH: &[&str] = &["ssh", "sshd", "sshd-session"];

impl Peer {
    /// The agent itself, for the records of what it does on its own (a
    /// lifetime running out, locking when idle).
    pub(crate) fn agent() -> Peer {
        Peer {
            uid: rustix::process::geteuid().as_raw(),
            pid: Some(std::process::id()),
            // Whatever started the agent is not the one acting.
            parents: Vec::new().into(),
            ..Peer::default()
        }
    }

    /// Whether the connection comes through OpenSSH forwarding: the process
    /// that connected, or one that wrote to it, is `ssh` or `sshd`.
    pub(crate) fn forwarded(&self) -> bool {
        let openssh = |exe: &Option<Exe>| {
            exe.as_ref()
                .and_then(|e| e.path.file_name())
                .and_then(|n| n.to_str())
                .is_some_and(|n| OPENSSH.contains(&n))
        };
        openssh(&self.exe) || self.writers.iter().any(|(_, exe)| openssh(exe))
    }

    /// The executables of the process's parents, nearest first (at most
    /// four, up to init): for a `jwtagent` CLI, the process that ran it
    /// first (git, then its shell, ...).
    pub(crate) fn parents(&self) -> &[PathBuf] {
        self.parents.get_or_init(|| {
            // The parent read when the executable was resolved, if it was.
            let parent = match &self.exe {
                Some(Exe {
                    parent: Some(parent),
                    ..
                }) => Some(*parent),
                _ => self.pid.and_then(jwtagent::process::parent),
            };
            ancestors(parent, 4)
        })
    }

    /// The executable for a message: control characters in its path
    /// escaped, so that a path cannot forge a line.
    pub(crate) fn exe_display(&self) -> String {
        exe_display(self.exe.as_ref())
    }
}

/// An executable's path (or `unknown`) for a message, control characters
/// escaped.
pub(crate) fn exe_display(exe: Option<&Exe>) -> String {
    exe.map_or_else(
        || "unknown".into(),
        |e| jwtagent::text::escaped(&e.path.to_string_lossy()).into_owned(),
    )
}

/// The executables of a process's ancestors from its `parent` up, nearest first, at most
/// `max`, up to (not including) init: read from /proc, for prompts and
/// records only (a parent may exit, and its pid be reused, between reads).
/// One that cannot be read is `?`.
fn ancestors(mut parent: Option<u32>, max: usize) -> Vec<PathBuf> {
    let mut chain = Vec::new();
    while chain.len() < max {
        let Some(pid) = parent.filter(|&p| p > 1) else {
            break;
        };
        let (exe, next) = process_of(pid);
        chain.push(exe);
        parent = next;
    }
    chain
}

/// The executable and parent of process `pid`. The parents of callers (a
/// shell, git, sshd) outlive many requests, and reading /proc costs some
/// ten microseconds a process: what was read is kept for two seconds.
fn process_of(pid: u32) -> (PathBuf, Option<u32>) {
    static SEEN: std::sync::Mutex<Option<Seen>> = std::sync::Mutex::new(None);
    let now = std::time::Instant::now();
    if let Ok(mut seen) = SEEN.lock()
        && let Some(known) = seen.get_or_insert_default().fresh(pid, now)
    {
        return known;
    }
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_else(|_| "?".into());
    let parent = jwtagent::process::parent(pid);
    if let Ok(mut seen) = SEEN.lock() {
        seen.get_or_insert_default()
            .remember(pid, now, &exe, parent);
    }
    (exe, parent)
}

/// What was read of processes lately: pid → when, executable, parent.
#[derive(Default)]
struct Seen(std::collections::HashMap<u32, (std::time::Instant, PathBuf, Option<u32>)>);

impl Seen {
    const FRESH: std::time::Duration = std::time::Duration::from_secs(2);
    const MOST: usize = 256;

    /// What was read of `pid` less than [`Seen::FRESH`] before `now`.
    fn fresh(&self, pid: u32, now: std::time::Instant) -> Option<(PathBuf, Option<u32>)> {
        let (at, exe, parent) = self.0.get(&pid)?;
        (now.saturating_duration_since(*at) < Self::FRESH).then(|| (exe.clone(), *parent))
    }

    /// Keeps what was read of `pid` at `now`, unless [`Seen::MOST`]
    /// processes read lately are kept already (stale ones make room).
    fn remember(&mut self, pid: u32, now: std::time::Instant, exe: &Path, parent: Option<u32>) {
        if self.0.len() >= Self::MOST {
            self.0
                .retain(|_, (at, _, _)| now.saturating_duration_since(*at) < Self::FRESH);
        }
        if self.0.len() < Self::MOST {
            self.0.insert(pid, (now, exe.to_path_buf(), parent));
        }
    }
}

/// The time since boot, in clock ticks (the unit of /proc/PID/stat's start time).
#[cfg(target_os = "linux")]
pub(crate) fn boot_ticks_now() -> Option<u64> {
    let (secs, nanos) = crate::sys::boot_time()?;
    let hz = crate::sys::clock_ticks_per_second()?;
    secs.checked_mul(hz)?
        .checked_add(nanos * hz / 1_000_000_000)
}

#[cfg(not(target_os = "linux"))]
pub fn boot_ticks_now() -> Option<u64> {
    None
}

fn exited(pidfd: &rustix::fd::OwnedFd) -> bool {
    use rustix::event::{PollFd, PollFlags, poll};
    let mut fds = [PollFd::new(pidfd, PollFlags::IN)];
    // A pidfd becomes readable when its process exits.
    match poll(&mut fds, Some(&rustix::time::Timespec::default())) {
        Ok(n) => n > 0,
        Err(_) => true,
    }
}

/// The process behind a resolved executable, held (by a pidfd) for as long
/// as its connection lives.
#[derive(Debug)]
pub(crate) struct Holder(rustix::fd::OwnedFd);

impl Holder {
    /// Whether the process still runs: then its pid has not passed to
    /// another, and whatever that pid did since it was resolved, it did.
    pub(crate) fn alive(&self) -> bool {
        !exited(&self.0)
    }

    /// Waits until the process exits (at once if it cannot be watched).
    pub(crate) async fn exit(self) {
        if let Ok(fd) = crate::sys::watch_readable(self.0) {
            let _ = fd.readable().await;
        }
    }
}

/// The executable of `pid`, if that process started no later than
/// `accepted_at` (boot ticks) and is still the same process after reading it.
pub(crate) fn resolve_exe(pid: u32, accepted_at: u64) -> Option<Exe> {
    resolve(pid, accepted_at).map(|(exe, _)| exe)
}

/// The agent's own mount and user namespaces (their inodes).
fn own_namespaces() -> Option<(u64, u64)> {
    static OWN: std::sync::OnceLock<Option<(u64, u64)>> = std::sync::OnceLock::new();
    *OWN.get_or_init(|| namespaces(Path::new("/proc/self")))
}

/// The mount and user namespaces of the process at `proc` (`/proc/PID`).
fn namespaces(proc: &Path) -> Option<(u64, u64)> {
    let ino = |ns: &str| {
        std::fs::metadata(proc.join("ns").join(ns))
            .ok()
            .map(|m| m.ino())
    };
    Some((ino("mnt")?, ino("user")?))
}

/// What `/proc/PID` says of the executable `pid` runs now: its path, its
/// file, and whether it runs in the agent's namespaces.
fn image(pid: u32) -> Option<Exe> {
    let proc = PathBuf::from(format!("/proc/{pid}"));
    let path = std::fs::read_link(proc.join("exe")).ok()?;
    let file = std::fs::metadata(proc.join("exe")).ok()?;
    let own_namespaces = own_namespaces().is_some() && namespaces(&proc) == own_namespaces();
    Some(Exe {
        path,
        file: (file.dev(), file.ino()),
        own_namespaces,
        started: 0,
        parent: None,
    })
}

/// Whether process `pid` still runs `exe`'s file and is still the process
/// that started when `exe` says: no exec of another file since `exe` was
/// read, no other process on the pid.
pub(crate) fn still_runs(pid: u32, exe: &Exe) -> bool {
    image(pid).is_some_and(|now| now.file == exe.file && now.own_namespaces == exe.own_namespaces)
        && start_ticks(pid) == Some(exe.started)
}

/// [`resolve_exe`], with a hold on the process whose executable it is.
pub(crate) fn resolve(pid: u32, accepted_at: u64) -> Option<(Exe, Holder)> {
    let raw = rustix::process::Pid::from_raw(i32::try_from(pid).ok()?)?;
    let pidfd = rustix::process::pidfd_open(raw, rustix::process::PidfdFlags::empty()).ok()?;
    let (parent, started) = jwtagent::process::parent_and_start(pid)?;
    if started > accepted_at {
        // Started after the connection existed: a reused pid, not the peer.
        return None;
    }
    let mut exe = image(pid)?;
    exe.started = started;
    exe.parent = Some(parent);
    // Alive now, the process the pidfd holds has held the pid since it was
    // opened: both reads above were of it.
    if exited(&pidfd) {
        return None;
    }
    Some((exe, Holder(pidfd)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_read_is_kept_for_two_seconds_and_256_at_most() {
        let t0 = std::time::Instant::now();
        let secs = |s: f64| t0 + std::time::Duration::from_secs_f64(s);
        let mut seen = Seen::default();
        seen.remember(1000, t0, Path::new("/bin/sh"), Some(7));
        let known = Some((PathBuf::from("/bin/sh"), Some(7)));
        assert_eq!(seen.fresh(1000, t0), known);
        assert_eq!(seen.fresh(1000, secs(1.999)), known);
        assert_eq!(seen.fresh(1000, secs(2.0)), None);
        assert_eq!(seen.fresh(1001, t0), None);
        // Full of processes read lately: one more is not kept...
        for pid in 1001..1256 {
            seen.remember(pid, t0, Path::new("/bin/x"), None);
        }
        seen.remember(5000, secs(1.0), Path::new("/bin/y"), None);
        assert_eq!(seen.fresh(5000, secs(1.0)), None);
        assert_eq!(seen.fresh(1255, secs(1.0)), Some(("/bin/x".into(), None)));
        // ...until they are stale (two seconds old): then they make room.
        seen.remember(5000, secs(2.0), Path::new("/bin/y"), None);
        assert_eq!(seen.fresh(5000, secs(2.0)), Some(("/bin/y".into(), None)));
        assert_eq!(seen.0.len(), 1);
    }

    /// A process still runs what it was resolved to while its file, its
    /// namespaces and its start time are all unchanged, and not when any
    /// one of them differs.
    #[test]
    fn a_process_still_runs_its_image_only_while_all_of_it_is_unchanged() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        let exe = resolve_exe(pid, boot_ticks_now().unwrap()).expect("resolved");
        assert!(still_runs(pid, &exe));
        let (dev, ino) = exe.file;
        let other_file = Exe {
            file: (dev, ino ^ 1),
            ..exe.clone()
        };
        let other_namespaces = Exe {
            own_namespaces: !exe.own_namespaces,
            ..exe.clone()
        };
        let other_start = Exe {
            started: exe.started - 1,
            ..exe.clone()
        };
        for changed in [other_file, other_namespaces, other_start] {
            assert!(!still_runs(pid, &changed), "{changed:?}");
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!still_runs(pid, &exe));
    }

    #[test]
    fn the_clock_of_start_times_is_now() {
        let started = start_ticks(std::process::id()).unwrap();
        let now = boot_ticks_now().unwrap();
        assert!(
            now >= started,
            "now {now}, this process started at {started}"
        );
        let uptime: f64 = std::fs::read_to_string("/proc/uptime")
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let hz = crate::sys::clock_ticks_per_second().unwrap();
        assert!(
            now.abs_diff((uptime * hz as f64) as u64) <= 2 * hz,
            "{now} vs uptime {uptime}"
        );
    }

    #[test]
    fn ancestors_stop_at_their_most_and_before_init() {
        let me = std::fs::read_link("/proc/self/exe").unwrap();
        assert_eq!(ancestors(Some(std::process::id()), 1), vec![me]);
        assert_eq!(ancestors(Some(1), 4), Vec::<PathBuf>::new());
        assert_eq!(ancestors(None, 4), Vec::<PathBuf>::new());
    }

    /// What the agent does on its own is recorded as done by this process,
    /// and not by whatever started it.
    #[test]
    fn the_agent_as_a_peer_is_this_process_without_parents() {
        let agent = Peer::agent();
        assert_eq!(agent.uid, rustix::process::geteuid().as_raw());
        assert_eq!(agent.pid, Some(std::process::id()));
        assert_eq!(agent.parents(), &[] as &[PathBuf]);
        assert!(agent.exe.is_none() && agent.writers.is_empty());
        assert!(!agent.forwarded());
    }

    #[test]
    fn a_live_process_resolves_to_its_executable() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let now = boot_ticks_now().unwrap();
        let exe = resolve_exe(child.id(), now).expect("resolved");
        assert!(exe.path.ends_with("sleep"), "{}", exe.path.display());
        assert_eq!(exe.started, start_ticks(child.id()).unwrap());
        assert_eq!(exe.parent, Some(std::process::id()));
        // Its parents start at the parent read with it: this test.
        let me = std::fs::read_link("/proc/self/exe").unwrap();
        let peer = Peer {
            pid: Some(child.id()),
            exe: Some(exe.clone()),
            ..Peer::default()
        };
        assert_eq!(peer.parents().first(), Some(&me));
        // ... and not at what /proc says now: a peer whose parent was the
        // sleep has the sleep first.
        let peer = Peer {
            pid: Some(std::process::id()),
            exe: Some(Exe {
                parent: Some(child.id()),
                ..exe.clone()
            }),
            ..Peer::default()
        };
        assert_eq!(peer.parents().first(), Some(&exe.path));
        // Unresolved, they are read from the pid.
        let peer = Peer {
            pid: Some(child.id()),
            ..Peer::default()
        };
        assert_eq!(peer.parents().first(), Some(&me));
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn a_holder_knows_whether_its_process_still_runs() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let (exe, holder) = resolve(child.id(), boot_ticks_now().unwrap()).expect("resolved");
        assert!(exe.path.ends_with("sleep"), "{}", exe.path.display());
        assert!(holder.alive());
        child.kill().unwrap();
        // Reaped, so its pid is free for another process: the holder says so.
        child.wait().unwrap();
        assert!(!holder.alive());
    }

    #[test]
    fn a_process_started_after_the_connection_is_not_the_peer() {
        // The "connection" was accepted a tick before this process existed
        // (a child starts no earlier than now): the pid must have been reused.
        let accepted = boot_ticks_now().unwrap() - 1;
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        assert_eq!(resolve_exe(child.id(), accepted), None);
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn an_exited_process_is_not_resolved() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        // Exited but not yet reaped: the pid still names a zombie.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while jwtagent::process::is_running(pid) {
            assert!(std::time::Instant::now() < deadline, "`true` did not exit");
            std::thread::yield_now();
        }
        assert_eq!(resolve_exe(pid, boot_ticks_now().unwrap()), None);
        child.wait().unwrap();
        assert_eq!(resolve_exe(pid, boot_ticks_now().unwrap()), None);
    }
}
