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
//!
//! Release builds of both binaries are linked with their code layout,
//! `layout/BIN.order` (written by scripts/layout): the functions that run
//! are laid out together, so that the pages the kernel maps around each one
//! (fault-around) hold code that runs, not its neighbours in the crate. The
//! agent's resident code shrinks by half. It needs a linker that takes
//! `--symbol-ordering-file` (lld, which rustc uses on x86_64 Linux); with
//! another, the binaries are linked without it, with a warning.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CC");
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    if var("CARGO_CFG_TARGET_OS") != "linux" {
        return;
    }
    if var("PROFILE") == "release" {
        layout(&PathBuf::from(var("OUT_DIR")));
    }
    // Packagers may want it dynamic and position-independent.
    if std::env::var_os("CARGO_FEATURE_STATIC_CLI").is_none() {
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

/// Hands each binary's symbol-ordering file to the linker, if the linker
/// takes one. Names the file does not match (another toolchain, lock file
/// or version of ours) are skipped by the linker: the build works, only
/// less compactly; scripts/bench reports how many still match.
fn layout(out: &Path) {
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default()).join("layout");
    let bins: Vec<(&str, PathBuf)> = ["jwtagent", "jwtagent-agent"]
        .into_iter()
        .map(|bin| (bin, dir.join(format!("{bin}.order"))))
        .collect();
    for (_, order) in &bins {
        println!("cargo:rerun-if-changed={}", order.display());
    }
    if !bins.iter().any(|(_, order)| order.is_file()) {
        return;
    }
    if !linker_orders_symbols(out) {
        println!(
            "cargo:warning=the linker does not take --symbol-ordering-file (lld does): jwtagent is linked without its code layout and the agent's resident memory is larger"
        );
        return;
    }
    for (bin, order) in bins.iter().filter(|(_, order)| order.is_file()) {
        for arg in [
            "-Xlinker".to_string(),
            format!("--symbol-ordering-file={}", order.display()),
            "-Xlinker".to_string(),
            "--no-warn-symbol-ordering".to_string(),
        ] {
            println!("cargo:rustc-link-arg-bin={bin}={arg}");
        }
    }
}

/// Links an empty program the way this build links, with an empty
/// ordering file: true if the linker took it.
fn linker_orders_symbols(out: &Path) -> bool {
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let probe = out.join("layout-probe");
    if std::fs::create_dir_all(&probe).is_err()
        || std::fs::write(probe.join("main.rs"), "fn main() {}\n").is_err()
        || std::fs::write(probe.join("empty.order"), "").is_err()
    {
        return false;
    }
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let mut cmd = Command::new(rustc);
    cmd.arg("--target")
        .arg(var("TARGET"))
        .arg("-o")
        .arg(probe.join("main"))
        .arg(probe.join("main.rs"))
        .arg("-Clink-arg=-Xlinker")
        .arg(format!(
            "-Clink-arg=--symbol-ordering-file={}",
            probe.join("empty.order").display()
        ));
    if let Ok(linker) = std::env::var("RUSTC_LINKER") {
        cmd.arg(format!("-Clinker={linker}"));
    }
    // The build's own flags: they may choose the linker.
    let flags = var("CARGO_ENCODED_RUSTFLAGS");
    cmd.args(flags.split('\x1f').filter(|f| !f.is_empty()));
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
