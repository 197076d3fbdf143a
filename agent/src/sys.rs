//! The one raw system call with no safe wrapper in our dependencies.

#![allow(unsafe_code)]

use std::io;

/// `KEYCTL_JOIN_SESSION_KEYRING` from <linux/keyctl.h>.
const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;

/// Joins a new anonymous session keyring (`keyctl session -`), so that keys can
/// be linked into the user's persistent keyring. Returns the keyring's id.
#[cfg(target_os = "linux")]
pub fn join_session_keyring() -> io::Result<i64> {
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
