//! Process hardening done once at agent start, before any secret is loaded.
//!
//! Non-dumpable means no core file and no ptrace attach from other processes of
//! the same user (short of root), which is what keeps a token in memory from
//! ending up on disk or in a debugger.

use rustix::process::{
    DumpableBehavior, Resource, Rlimit, getrlimit, set_dumpable_behavior, setrlimit,
};
use std::io;

/// Makes the process non-dumpable (`PR_SET_DUMPABLE` 0) and sets `RLIMIT_CORE` to 0.
pub(crate) fn make_non_dumpable() -> io::Result<()> {
    set_dumpable_behavior(DumpableBehavior::NotDumpable)?;
    setrlimit(
        Resource::Core,
        Rlimit {
            current: Some(0),
            maximum: Some(0),
        },
    )?;
    Ok(())
}

/// Raises the soft open-file limit towards the hard one, so the connection cap,
/// not the default 1024 descriptors, is what bounds concurrent clients.
pub(crate) fn raise_nofile_limit(want: u64) {
    let limit = getrlimit(Resource::Nofile);
    let hard = limit.maximum.unwrap_or(u64::MAX);
    let target = want.min(hard);
    if limit.current.is_some_and(|soft| soft >= target) {
        return;
    }
    if let Err(e) = setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(target),
            maximum: limit.maximum,
        },
    ) {
        tracing::debug!(error = %e, "could not raise the open-file limit");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_is_not_dumpable_and_has_no_core_limit_after_hardening() {
        make_non_dumpable().unwrap();
        assert_eq!(
            rustix::process::dumpable_behavior().unwrap(),
            DumpableBehavior::NotDumpable
        );
        let core = getrlimit(Resource::Core);
        assert_eq!(core.current, Some(0));
        assert_eq!(core.maximum, Some(0));
    }
}
