//! Other processes' state, from /proc/PID/stat (Linux): whether one still runs
//! and when it started. Shared by the agent (peer checks), the CLI (`stop`) and
//! the tests.

/// The fields of /proc/PID/stat from the third (the state) on. The command
/// name before them may hold spaces and parentheses: they start after its
/// closing parenthesis.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// Whether `pid` names a live process. One that has exited but is not reaped
/// yet (a zombie, waiting for a slow parent or for init) has finished.
pub fn is_running(pid: u32) -> bool {
    let exists = rustix::process::Pid::from_raw(pid as i32)
        .is_some_and(|pid| rustix::process::test_kill_process(pid).is_ok());
    exists && stat_fields(pid).is_none_or(|fields| fields.first().is_none_or(|s| s != "Z"))
}

/// When `pid` started, in clock ticks since boot (field 22 of /proc/PID/stat).
pub fn start_ticks(pid: u32) -> Option<u64> {
    stat_fields(pid)?.get(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_runs_and_has_a_start_time() {
        assert!(is_running(std::process::id()));
        assert!(start_ticks(std::process::id()).is_some());
    }

    #[test]
    fn a_reaped_child_does_not_run() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!is_running(pid));
    }
}
