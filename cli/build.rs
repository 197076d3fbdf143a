//! Links the `jwtagent` CLI binary for a fast start on Linux: a short-lived
//! process that does little must not spend most of its time in the dynamic
//! loader. The daemon's binary, `jwtagent-agent`, keeps the defaults (a
//! dynamically linked, position-independent executable).
//!
//! - Not position-independent: there are no relative relocations to apply
//!   at every start (about 25,000 in a release build).
//! - With glibc, statically linked: no shared objects to map, relocate and
//!   bind symbols against (two thirds of a cached `jwtagent token`'s
//!   instructions). The CLI links no name resolution and no user database
//!   lookup (the agent does its networking in its own binary; home is
//!   `$HOME`), so a static glibc never loads a name service module, and the
//!   binary runs whatever glibc the machine has. Where the static libc is
//!   not installed (Fedora's glibc-static, say), the CLI is linked
//!   dynamically, with a warning.
//!
//! rustc asks for the system libraries as shared ones (`-lc`, `-lgcc_s`,
//! ...) whatever the linker is told after them; for this binary alone,
//! linker scripts in a directory searched before the system's hand it the
//! static archives under those names.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CC");
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    if var("CARGO_CFG_TARGET_OS") != "linux" {
        return;
    }
    println!("cargo:rustc-link-arg-bin=jwtagent=-no-pie");
    // Cross builds keep the dynamic link: the C compiler asked below is the
    // host's, whose libc.a is not the target's.
    if var("CARGO_CFG_TARGET_ENV") != "gnu" || var("TARGET") != var("HOST") {
        return;
    }
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let Some(libc_a) = Command::new(&cc)
        .arg("-print-file-name=libc.a")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|path| PathBuf::from(path.trim()))
        .filter(|path| path.is_absolute() && path.is_file())
    else {
        println!(
            "cargo:warning=`{cc} -print-file-name=libc.a` found no static C library: jwtagent is linked dynamically and starts slower (Debian: libc6-dev; Fedora: glibc-static)"
        );
        return;
    };
    let out = PathBuf::from(var("OUT_DIR")).join("static-libs");
    std::fs::create_dir_all(&out).expect("OUT_DIR is writable");
    // The unwinder from libgcc_eh.a instead of libgcc_s.so; the C library
    // and libm from their archives.
    for (name, script) in [
        ("libgcc_s.so", "INPUT(-lgcc_eh)\n".to_string()),
        ("libc.so", format!("INPUT({})\n", libc_a.display())),
        ("libm.so", "INPUT(-l:libm.a)\n".to_string()),
    ] {
        std::fs::write(out.join(name), script).expect("OUT_DIR is writable");
    }
    println!("cargo:rustc-link-arg-bin=jwtagent=-static");
    println!("cargo:rustc-link-arg-bin=jwtagent=-L{}", out.display());
}
