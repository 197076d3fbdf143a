//! `jwtagent`: the CLI (see the library for what runs), a small client that
//! does not link the agent. Linked statically at a fixed address
//! (cli/build.rs), so that a short-lived process starts fast.
//!
//! For the same reason, on Linux with glibc, it starts at C's `main`,
//! without Rust's start-up code: that code finds the main thread's stack
//! guard with `pthread_getattr_np`, which reads and parses `/proc/self/maps`
//! (a fifth of a cached `jwtagent token`'s instructions), only to put a name
//! on a stack overflow. What else it does that the CLI relies on is done
//! here. Elsewhere (musl, macOS, which do not hand std its arguments before
//! `main`), it is an ordinary Rust `main`.

#![cfg_attr(all(target_os = "linux", target_env = "gnu"), no_main)]

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(jwtagent_cli::client_exit_status())
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
use std::ffi::{c_char, c_int};
#[cfg(all(target_os = "linux", target_env = "gnu"))]
use std::io::Write;

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[unsafe(no_mangle)]
extern "C" fn main(_argc: c_int, _argv: *const *const c_char) -> c_int {
    // SAFETY: both run before any other code of the process: nothing else
    // can be using the descriptors or the signal disposition yet.
    unsafe {
        open_standard_descriptors();
        // A write to a closed pipe or socket fails with EPIPE, which the CLI
        // handles (a closed stdout counts as success, an agent that hung up
        // is reported), instead of killing it.
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    // Arguments need nothing from us: on glibc, std reads them in an
    // `.init_array` function, which runs before `main`.
    let status = std::panic::catch_unwind(jwtagent_cli::client_exit_status).unwrap_or(101);
    // Rust's exit path flushes stdout's buffer; C's does not know it.
    let _ = std::io::stdout().flush();
    c_int::from(status)
}

/// Opens /dev/null on any of descriptors 0, 1 and 2 that is closed, so
/// that no file or socket the CLI opens later takes their place (and gets
/// the token printed into it).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
unsafe fn open_standard_descriptors() {
    let mut fds = [0, 1, 2].map(|fd| libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    });
    // SAFETY: `fds` is a valid array of three pollfd for the duration.
    if unsafe { libc::poll(fds.as_mut_ptr(), 3, 0) } == -1 {
        // Cannot tell (EINTR, ENOMEM): test each one instead.
        for pollfd in &mut fds {
            // SAFETY: F_GETFD takes no argument and touches no memory.
            let closed = unsafe { libc::fcntl(pollfd.fd, libc::F_GETFD) } == -1
                && std::io::Error::last_os_error().raw_os_error() == Some(libc::EBADF);
            pollfd.revents = if closed { libc::POLLNVAL } else { 0 };
        }
    }
    for pollfd in fds {
        if pollfd.revents & libc::POLLNVAL != 0 {
            // SAFETY: a NUL-terminated path; the descriptor it returns is
            // the lowest free one, which is this one, and is kept open.
            let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
            if fd != pollfd.fd {
                // Nothing safe is left to do: std aborts here too.
                std::process::abort();
            }
        }
    }
}
