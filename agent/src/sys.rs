//! The raw system and C library calls with no safe wrapper in our
//! dependencies.

#![allow(unsafe_code)]

#[cfg(all(target_os = "linux", target_env = "gnu"))]
use std::ffi::{OsStr, OsString};
use std::io;

/// `KEYCTL_JOIN_SESSION_KEYRING` from <linux/keyctl.h>.
const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;

/// Joins a new anonymous session keyring (`keyctl session -`), so that keys can
/// be linked into the user's persistent keyring. Returns the keyring's id.
#[cfg(target_os = "linux")]
pub(crate) fn join_session_keyring() -> io::Result<i64> {
    // SAFETY: keyctl(KEYCTL_JOIN_SESSION_KEYRING, name) with a null name creates
    // and joins an anonymous keyring; it reads no memory of ours.
    let id = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            KEYCTL_JOIN_SESSION_KEYRING,
            std::ptr::null::<libc::c_char>(),
        )
    };
    if id < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(id)
}

/// Control-message space for one `struct ucred`, plus room for a few file
/// descriptors a peer may push at us (they are closed at once).
const CONTROL_WORDS: usize = 16;

/// `recvmsg` on a connected Unix stream socket whose listener has SO_PASSCRED:
/// reads into `buf` without blocking and returns the byte count and the pid
/// of the process that wrote those bytes (`Some(0)` when the kernel cannot
/// name it, `None` when no credentials came with them). File descriptors a
/// peer sends along (SCM_RIGHTS) are closed, as a plain `read` would drop them.
///
/// rustix has a `recvmsg`, but it reads the credentials into a `Pid` that
/// must not be 0, and 0 is what the kernel reports for a writer in another
/// pid namespace.
#[cfg(target_os = "linux")]
pub(crate) fn recv_with_sender(
    fd: std::os::fd::BorrowedFd<'_>,
    buf: &mut [u8],
) -> io::Result<(usize, Option<u32>)> {
    use std::os::fd::AsRawFd;
    let mut control = [0u64; CONTROL_WORDS];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: `msg` points at `iov` (which points into `buf`) and `control`,
    // all live and exclusively ours for the call, with their true lengths.
    let n = unsafe {
        libc::recvmsg(
            fd.as_raw_fd(),
            &mut msg,
            libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let ucred_len = std::mem::size_of::<libc::ucred>();
    let mut sender = None;
    // SAFETY: the CMSG_* helpers walk the control buffer the kernel filled
    // in, within msg_controllen; each header is checked for its length before
    // its payload is read, and payloads are read unaligned.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            let header = std::ptr::read_unaligned(cmsg);
            let data = libc::CMSG_DATA(cmsg);
            let payload = (header.cmsg_len as usize).saturating_sub(libc::CMSG_LEN(0) as usize);
            if header.cmsg_level == libc::SOL_SOCKET {
                if header.cmsg_type == libc::SCM_CREDENTIALS && payload >= ucred_len {
                    let cred: libc::ucred = std::ptr::read_unaligned(data.cast());
                    sender = Some(u32::try_from(cred.pid).unwrap_or(0));
                } else if header.cmsg_type == libc::SCM_RIGHTS {
                    let count = payload / std::mem::size_of::<libc::c_int>();
                    for i in 0..count {
                        let fd: libc::c_int =
                            std::ptr::read_unaligned(data.cast::<libc::c_int>().add(i));
                        libc::close(fd);
                    }
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok((n as usize, sender))
}

/// CLOCK_BOOTTIME as seconds and nanoseconds, from the C library.
///
/// rustix has the call, but answers it from the vDSO it finds through the
/// auxiliary vector, which it checks as an ELF image; under valgrind (used
/// to lay out the agent's code, scripts/layout) that image is not mapped
/// and the check crashes. The C library's call has no such trouble.
pub(crate) fn boot_time() -> Option<(u64, u64)> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which `ts` is.
    if unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) } != 0 {
        return None;
    }
    Some((
        u64::try_from(ts.tv_sec).ok()?,
        u64::try_from(ts.tv_nsec).ok()?,
    ))
}

/// The kernel's clock tick rate (`getconf CLK_TCK`), for the same reason
/// from the C library.
pub(crate) fn clock_ticks_per_second() -> Option<u64> {
    // SAFETY: sysconf reads a constant.
    u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) })
        .ok()
        .filter(|&hz| hz > 0 && hz <= 1_000_000)
}

/// The C allocator's setting for a process that lives long and now and
/// then builds a large answer (`list` and `status` of thousands of
/// profiles, the config file rewritten by `add`): a block of 128 KiB or
/// more is mapped on its own and unmapped when freed. glibc starts there
/// but raises the threshold to the size of the first such block freed, so
/// that every later answer's megabytes came from the heap, between what
/// stays allocated, and stayed in the agent's resident memory (measured at
/// 10,000 profiles: 35 MiB with every token, 49 MiB after three each of
/// `list`, `status` and `add`; 36 MiB with this). Setting it keeps it.
#[cfg(target_env = "gnu")]
pub(crate) fn keep_large_blocks_apart() {
    // SAFETY: mallopt sets a parameter of the allocator, under its lock.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

/// Other C libraries decide this for themselves.
#[cfg(not(target_env = "gnu"))]
pub(crate) fn keep_large_blocks_apart() {}

/// The glibc tunable the daemon runs with: a per-thread cache of one freed
/// block of each size, not seven. Cached blocks stay allocated as far as
/// `malloc_trim` can tell, scattered over the pages a burst of connections
/// used, and pin them in the agent's resident memory (herds of 1,000
/// connections: 0.5-0.8 MiB kept with seven, 0.3-0.5 MiB with one). With
/// none, every larger request merges the small free blocks first and 64
/// connections get 10 % fewer answers a second (docs/performance.md).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TUNABLE: &str = "glibc.malloc.tcache_count=1";
/// Set for the daemon run again with [`TUNABLE`]: the user's own
/// `GLIBC_TUNABLES` (empty for none), put back for what the agent starts.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TUNED_FROM: &str = "JWTAGENT_TUNED_FROM";

/// What the daemon does about glibc's tunables as it starts.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[derive(Debug, PartialEq)]
enum Tuning {
    /// Run again with these tunables, noting the user's own.
    Again { tunables: OsString, from: OsString },
    /// Run again already: the user's own (none if `None`) go back.
    Restore(Option<OsString>),
    /// The user set the cache's size themselves.
    Leave,
}

/// The daemon's [`Tuning`], from `GLIBC_TUNABLES` and [`TUNED_FROM`].
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tuning(tunables: Option<&OsStr>, tuned_from: Option<&OsStr>) -> Tuning {
    if let Some(from) = tuned_from {
        return Tuning::Restore(Some(from).filter(|f| !f.is_empty()).map(OsStr::to_owned));
    }
    let own = tunables.unwrap_or_default();
    let sets_cache = own
        .to_string_lossy()
        .split(':')
        .any(|t| t.split('=').next() == Some("glibc.malloc.tcache_count"));
    if sets_cache {
        return Tuning::Leave;
    }
    let mut tunables = own.to_owned();
    if !tunables.is_empty() {
        tunables.push(":");
    }
    tunables.push(TUNABLE);
    Tuning::Again {
        tunables,
        from: own.to_owned(),
    }
}

/// Runs the daemon again with [`TUNABLE`] (glibc reads its tunables only
/// from the environment, as the program starts; `mallopt` has no switch
/// for the cache), then, in the process run again, puts the user's
/// `GLIBC_TUNABLES` back for the programs the agent starts. The same pid
/// and descriptors (a socket from systemd, the pipe to `jwtagent agent`)
/// carry over. Does nothing once the process has a second thread (it
/// changes the environment), or when `GLIBC_TUNABLES` sets the cache
/// itself; an exec that fails leaves the agent running as it is.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn tune_allocator() {
    use std::os::unix::process::CommandExt;
    let single = std::fs::read_dir("/proc/self/task").is_ok_and(|tasks| tasks.count() == 1);
    if !single {
        return;
    }
    let tunables = std::env::var_os("GLIBC_TUNABLES");
    match tuning(tunables.as_deref(), std::env::var_os(TUNED_FROM).as_deref()) {
        Tuning::Again { tunables, from } => {
            let mut args = std::env::args_os();
            let argv0 = args.next().unwrap_or_default();
            // Returns only if it failed.
            let _ = std::process::Command::new("/proc/self/exe")
                .arg0(argv0)
                .args(args)
                .env("GLIBC_TUNABLES", tunables)
                .env(TUNED_FROM, from)
                .exec();
        }
        // SAFETY: the process has one thread (checked above): nothing can
        // read the environment while it changes.
        Tuning::Restore(own) => unsafe {
            match own {
                Some(own) => std::env::set_var("GLIBC_TUNABLES", own),
                None => std::env::remove_var("GLIBC_TUNABLES"),
            }
            std::env::remove_var(TUNED_FROM);
        },
        Tuning::Leave => {}
    }
}

/// Other C libraries have no such cache, or no such switch.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn tune_allocator() {}

/// Hands the C allocator's free pages back to the system (`malloc_trim`):
/// glibc keeps what a burst of connections freed in its arenas, split by
/// what stays allocated, where it counts in the agent's resident memory
/// until another burst reuses it. Returns whether any was released.
#[cfg(target_env = "gnu")]
pub(crate) fn release_free_memory() -> bool {
    // SAFETY: malloc_trim takes a size and touches only the allocator's own
    // state, under its own locks.
    unsafe { libc::malloc_trim(0) == 1 }
}

/// Other C libraries return free memory themselves, or offer no call for it.
#[cfg(not(target_env = "gnu"))]
pub fn release_free_memory() -> bool {
    false
}

/// `fd` registered with tokio's reactor for readability (a pidfd, which
/// becomes readable when its process exits).
pub(crate) fn watch_readable(
    fd: std::os::fd::OwnedFd,
) -> io::Result<tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>> {
    // SAFETY: the AsyncFd takes ownership of the OwnedFd, so the descriptor
    // stays open, and refers to the same file description, until the
    // AsyncFd is dropped.
    unsafe { tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
        .map_err(|e| e.into_parts().1)
}

/// Empties `buf` and overwrites all of its allocation (the bytes it held
/// and its spare room) with zeros: what `Zeroize` does for a `Vec<u8>`
/// (volatile writes, which the optimizer keeps), a word at a time rather
/// than a byte at a time. For the buffers every request and its answer
/// pass through: a token's answer line is 128 writes, not 1,024 (the
/// byte-wise wipe was 4% of the agent's work for a cached token).
pub(crate) fn wipe(buf: &mut Vec<u8>) {
    use std::mem::MaybeUninit;
    buf.clear();
    let room = buf.spare_capacity_mut();
    // SAFETY: `MaybeUninit<u64>` has no invalid bit patterns, so the
    // aligned middle of the room may be viewed as words.
    let (head, words, tail) = unsafe { room.align_to_mut::<MaybeUninit<u64>>() };
    for byte in head.iter_mut().chain(tail) {
        // SAFETY: a valid pointer into `buf`'s allocation.
        unsafe { std::ptr::write_volatile(byte.as_mut_ptr(), 0) };
    }
    for word in words {
        // SAFETY: a valid pointer into `buf`'s allocation, aligned for u64
        // by `align_to_mut`.
        unsafe { std::ptr::write_volatile(word.as_mut_ptr(), 0) };
    }
    std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
}

#[cfg(test)]
mod wipe_tests {
    #[test]
    fn wipe_zeroes_the_whole_allocation_and_empties_the_buffer() {
        // Rooms that are whole words and rooms that are not; bytes written
        // past the buffer's length (a longer line before) wiped too.
        for room in [0, 1, 7, 8, 9, 63, 1024, 1037] {
            let mut buf = Vec::with_capacity(room);
            buf.resize(buf.capacity(), 0xa5u8);
            buf.truncate(buf.len() / 2);
            let capacity = buf.capacity();
            super::wipe(&mut buf);
            assert!(buf.is_empty());
            assert_eq!(buf.capacity(), capacity, "the room is kept");
            let left: Vec<u8> = buf
                .spare_capacity_mut()
                .iter()
                // SAFETY: `wipe` wrote every byte of the room.
                .map(|b| unsafe { b.assume_init() })
                .collect();
            assert_eq!(left.len(), capacity);
            assert!(left.iter().all(|b| *b == 0), "room {room}: {left:?}");
        }
    }
}

#[cfg(all(test, target_env = "gnu"))]
mod tests {
    use super::*;

    #[test]
    fn the_daemon_runs_again_with_the_cache_cut_and_puts_the_users_tunables_back() {
        let os = |s: &str| OsString::from(s);
        assert_eq!(
            tuning(None, None),
            Tuning::Again {
                tunables: os(TUNABLE),
                from: os("")
            }
        );
        assert_eq!(
            tuning(Some(OsStr::new("glibc.malloc.arena_max=2")), None),
            Tuning::Again {
                tunables: os("glibc.malloc.arena_max=2:glibc.malloc.tcache_count=1"),
                from: os("glibc.malloc.arena_max=2")
            }
        );
        // The user's own cache size stands.
        let own = "glibc.malloc.arena_max=2:glibc.malloc.tcache_count=3";
        assert_eq!(tuning(Some(OsStr::new(own)), None), Tuning::Leave);
        // A name that only starts alike is not it.
        assert!(matches!(
            tuning(Some(OsStr::new("glibc.malloc.tcache_count_x=1")), None),
            Tuning::Again { .. }
        ));
        // Run again: what the user had goes back, or nothing.
        let ran_again = Some(OsStr::new(own));
        assert_eq!(
            tuning(ran_again, Some(OsStr::new(""))),
            Tuning::Restore(None)
        );
        assert_eq!(
            tuning(ran_again, Some(OsStr::new("glibc.malloc.arena_max=2"))),
            Tuning::Restore(Some(os("glibc.malloc.arena_max=2")))
        );
    }

    /// Whether glibc mapped the block at `p` on its own: the size word
    /// before a block carries the flag (bit 1, `IS_MMAPPED`).
    fn mapped_apart(p: *const u8) -> bool {
        // SAFETY: glibc puts the block's size word right before it; `p`
        // is a live block of the C allocator.
        unsafe { p.cast::<usize>().sub(1).read() & 2 != 0 }
    }

    /// In a process of its own (this test run again, alone): in one shared
    /// with other tests, a block may come from room another test freed.
    #[test]
    fn a_large_block_stays_mapped_apart_after_one_was_freed() {
        const CHILD: &str = "JWTAGENT_TEST_ALLOCATOR_CHILD";
        if std::env::var_os(CHILD).is_none() {
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "--test-threads=1", "--nocapture"])
                .arg("sys::tests::a_large_block_stays_mapped_apart_after_one_was_freed")
                .env(CHILD, "1")
                .output()
                .unwrap();
            let said = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success() && said.contains("1 passed"), "{said}");
            return;
        }
        super::keep_large_blocks_apart();
        // glibc would raise its threshold to 4 MiB when this is freed...
        let first = vec![1u8; 4 << 20];
        assert!(mapped_apart(first.as_ptr()));
        drop(first);
        // ...and serve this one from its heap.
        let second = vec![1u8; 1 << 20];
        assert!(mapped_apart(second.as_ptr()));
        let small = vec![1u8; 1024];
        assert!(!mapped_apart(small.as_ptr()));
    }
}

/// The C library's `pow`, in Rust (the libm crate, a port of musl's). The
/// agent's one caller of the C math library is tokio's scheduler (a moving
/// average, once per batch of tasks); with `pow` defined here the linker
/// (`--as-needed`) drops libm.so, whose load resolves every one of its
/// IFUNCs at each start and keeps about 0.55 MiB of it resident for the
/// agent's life (docs/performance.md).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[unsafe(no_mangle)]
pub(crate) extern "C" fn pow(x: f64, y: f64) -> f64 {
    libm::pow(x, y)
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod pow_tests {
    /// The agent's `pow` answers as the C library's does (C11 F.10.4.4):
    /// tokio's use, the exact cases and the special values.
    #[test]
    fn pow_answers_as_the_c_library_does() {
        assert_eq!(super::pow(2.0, 10.0), 1024.0);
        assert_eq!(super::pow(0.75, 3.0), 0.421875);
        let decay = super::pow(0.9, 16.0);
        assert!((decay - 0.185_302_018_885_184_1).abs() < 1e-15, "{decay}");
        assert_eq!(super::pow(f64::NAN, 0.0), 1.0);
        assert_eq!(super::pow(1.0, f64::NAN), 1.0);
        assert!(super::pow(-8.0, 1.0 / 3.0).is_nan());
        assert_eq!(super::pow(0.0, -1.0), f64::INFINITY);
        assert_eq!(super::pow(0.5, f64::INFINITY), 0.0);
    }
}
