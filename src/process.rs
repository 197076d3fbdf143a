//! Other processes' state, from /proc/PID/stat (Linux): whether one still runs
//! and when it started. Shared by the agent (peer checks), the CLI (`stop`) and
//! the tests.

/// What `read` makes of the fields of /proc/PID/stat from the third (the
/// state) on. The command name before them may hold spaces and
/// parentheses: they start after its closing parenthesis.
fn with_stat<T>(pid: u32, read: impl FnOnce(std::str::SplitWhitespace) -> Option<T>) -> Option<T> {
    use std::io::Read;
    let mut file = std::fs::File::open(format!("/proc/{pid}/stat")).ok()?;
    // One read: procfs hands over the whole line (a few hundred bytes) to a
    // buffer that can hold it, so neither a size query first nor a read to
    // find the end, as read_to_string makes (this runs per connection).
    let mut buf = [0u8; 4096];
    let n = file.read(&mut buf).ok()?;
    let stat = std::str::from_utf8(buf.get(..n).filter(|_| n < buf.len())?).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    read(rest.split_whitespace())
}

/// Whether `pid` names a live process. One that has exited but is not reaped
/// yet (a zombie, waiting for a slow parent or for init) has finished.
pub fn is_running(pid: u32) -> bool {
    let exists = rustix::process::Pid::from_raw(pid as i32)
        .is_some_and(|pid| rustix::process::test_kill_process(pid).is_ok());
    exists && with_stat(pid, |mut fields| fields.next().map(|s| s != "Z")).unwrap_or(true)
}

/// The parent of `pid` (field 4 of /proc/PID/stat).
pub fn parent(pid: u32) -> Option<u32> {
    with_stat(pid, |mut fields| fields.nth(1)?.parse().ok())
}

/// When `pid` started, in clock ticks since boot (field 22 of /proc/PID/stat).
pub fn start_ticks(pid: u32) -> Option<u64> {
    with_stat(pid, |mut fields| fields.nth(19)?.parse().ok())
}

/// The parent of `pid` and when it started, from one read (for a caller of
/// the agent, whose start checks its pid and whose parent is audited).
pub fn parent_and_start(pid: u32) -> Option<(u32, u64)> {
    with_stat(pid, |mut fields| {
        let parent = fields.nth(1)?.parse().ok()?;
        Some((parent, fields.nth(17)?.parse().ok()?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_runs_until_it_exits_and_started_after_its_parent() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        assert!(is_running(pid));
        assert_eq!(parent(pid), Some(std::process::id()));
        let parent = start_ticks(std::process::id()).unwrap();
        let started = start_ticks(pid).unwrap();
        assert!(started >= parent, "{started} < {parent}");
        assert_eq!(parent_and_start(pid), Some((std::process::id(), started)));
        child.kill().unwrap();
        // Killed but not reaped: a zombie, which no longer runs.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while is_running(pid) {
            assert!(std::time::Instant::now() < deadline, "the child still runs");
            std::thread::yield_now();
        }
        let state = with_stat(pid, |mut fields| fields.next().map(str::to_string));
        assert_eq!(state.as_deref(), Some("Z"));
        child.wait().unwrap();
        assert_eq!(start_ticks(pid), None);
    }

    #[test]
    fn a_reaped_child_does_not_run() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!is_running(pid));
    }
}
