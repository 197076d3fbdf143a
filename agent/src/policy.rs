//! Which callers a profile serves: its own policy (`--no-forward`,
//! `--allow-exe`), and, for a profile whose token is made from other
//! profiles' tokens, the policy of every one of those, down the chain. Every
//! way to a token asks here.

use crate::error::AgentError;
use crate::peer::{Exe, Peer};
use jwtagent::config::{Profile, ProfileMap};
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// A profile with `no_forward` serves no connection forwarded by OpenSSH; one
/// with `allow_exe` serves only those executables.
pub(crate) fn check_policy(peer: &Peer, name: &str, profile: &Profile) -> Result<(), AgentError> {
    // Closed when in doubt: a caller whose executable could not be told is
    // not known not to be ssh.
    if profile.no_forward && (peer.forwarded() || peer.exe.is_none()) {
        return Err(AgentError::Denied(format!(
            "profile {name:?} is not served over SSH forwarding (--no-forward); this connection came through {}",
            peer.exe_display()
        )));
    }
    if profile.allow_exe.is_empty() {
        return Ok(());
    }
    let admits = |exe: Option<&Exe>| exe.map_or(Err(Refused::Unknown), |e| admitted(profile, e));
    // The process that connected, and every process that wrote to the
    // connection: a socket handed on (fork then exec, fd passing) is judged
    // by who uses it.
    let refused_writer = peer
        .writers
        .iter()
        .find_map(|(pid, exe)| admits(exe.as_ref()).err().map(|why| (pid, exe, why)));
    let connected = admits(peer.exe.as_ref());
    if connected.is_ok() && refused_writer.is_none() && !peer.too_many_writers {
        return Ok(());
    }
    if let Some((pid, exe, why)) = refused_writer
        && connected.is_ok()
    {
        let exe = crate::peer::exe_display(exe.as_ref());
        return Err(AgentError::Denied(format!(
            "profile {name:?}: this connection was opened by {} but written to by pid {pid} ({exe}), which the profile does not allow: {why}",
            peer.exe_display()
        )));
    }
    let why = connected.err().unwrap_or(Refused::TooManyWriters);
    Err(AgentError::Denied(format!(
        "profile {name:?} serves only {}; the caller is {}: {why}",
        profile
            .allow_exe
            .iter()
            .map(|p| jwtagent::text::escaped(&p.to_string_lossy()).into_owned())
            .collect::<Vec<_>>()
            .join(", "),
        peer.exe_display()
    )))
}

/// Why an executable is not one a profile allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum Refused {
    #[error("its executable could not be told")]
    Unknown,
    #[error("more processes wrote to the connection than the agent tracks")]
    TooManyWriters,
    #[error(
        "it runs in another mount or user namespace, where a path need not be the file it names here (--allow-exe-any-namespace allows that)"
    )]
    Namespace,
    #[error("it runs none of the files at those paths (compared by device and inode)")]
    OtherFile,
    #[error("its file's SHA-256 is none of those --allow-exe-sha256 names")]
    Digest,
}

/// Whether `exe` is one of `profile`'s allowed executables: the very file at
/// an allowed path (device and inode, as the agent's mount namespace sees
/// it, not a name: a bind mount over the path shows another file), run in
/// the agent's namespaces unless the profile allows others, and, with a
/// pin, with that content.
fn admitted(profile: &Profile, exe: &Exe) -> Result<(), Refused> {
    if !exe.own_namespaces && !profile.allow_exe_any_namespace {
        return Err(Refused::Namespace);
    }
    let file_of = |path: &Path| std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()));
    let Some(allowed) = profile
        .allow_exe
        .iter()
        .find(|path| file_of(path) == Some(exe.file))
    else {
        return Err(Refused::OtherFile);
    };
    if profile.allow_exe_sha256.is_empty() {
        return Ok(());
    }
    match digest(allowed, exe.file) {
        Some(digest)
            if profile
                .allow_exe_sha256
                .iter()
                .any(|pin| pin.eq_ignore_ascii_case(&digest)) =>
        {
            Ok(())
        }
        _ => Err(Refused::Digest),
    }
}

/// The SHA-256 (hex) of the file at `path`, if it is still the file `file`
/// (device and inode). Kept per file and version (size, modification and
/// change times): an executable is hashed once, not at every request.
fn digest(path: &Path, file: (u64, u64)) -> Option<String> {
    use std::io::Read;
    type Version = (u64, u64, u64, i64, i64, i64, i64);
    static DIGESTS: std::sync::Mutex<BTreeMap<Version, String>> =
        std::sync::Mutex::new(BTreeMap::new());
    let mut opened = std::fs::File::open(path).ok()?;
    let meta = opened.metadata().ok()?;
    if (meta.dev(), meta.ino()) != file || !meta.is_file() {
        return None;
    }
    let version = (
        meta.dev(),
        meta.ino(),
        meta.size(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ctime(),
        meta.ctime_nsec(),
    );
    let mut digests = DIGESTS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(known) = digests.get(&version) {
        return Some(known.clone());
    }
    let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match opened.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => context.update(&buf[..n]),
            Err(_) => return None,
        }
    }
    let hex: String = context
        .finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    // A handful of pinned executables; a bound all the same.
    if digests.len() >= 64 {
        digests.clear();
    }
    digests.insert(version, hex.clone());
    Some(hex)
}

/// Whether a token of profile `name` is served according to who the caller
/// is (`--allow-exe` on it or on a profile it is made from): then the
/// answer is checked again as it is written.
///
/// Judged on the config the request was served from (`profiles`), so that
/// a config changed in between cannot serve a bound profile unbound.
pub(crate) fn exe_bound(profiles: &ProfileMap, name: &str) -> bool {
    let Some(profile) = profiles.get(name) else {
        return false;
    };
    if !profile.allow_exe.is_empty() {
        return true;
    }
    if profile.inputs().next().is_none() {
        return false;
    }
    jwtagent::chain::inputs(profiles, name).is_ok_and(|links| {
        links.iter().any(|link| {
            profiles
                .get(&link.name)
                .is_some_and(|p| !p.allow_exe.is_empty())
        })
    })
}

/// Whether every process that wrote to the connection (the one that
/// connected among them) still runs the file it ran when it was resolved:
/// a process that wrote its request and then exec'd an allowed executable,
/// or handed the answer to a child, gets nothing.
pub(crate) fn caller_unchanged(peer: &Peer, holder_alive: bool) -> bool {
    let connected = match (peer.pid, &peer.exe) {
        (Some(pid), Some(exe)) => holder_alive && crate::peer::still_runs(pid, exe),
        _ => false,
    };
    connected
        && peer.writers.iter().all(|(pid, exe)| {
            Some(*pid) == peer.pid
                || exe
                    .as_ref()
                    .is_some_and(|e| crate::peer::still_runs(*pid, e))
        })
}

/// An input profile that refuses the caller: which one, and why.
#[derive(Debug)]
pub(crate) struct InputRefused {
    /// The input profile.
    pub input: String,
    /// What the caller is told: the chain and the input's rule.
    pub why: String,
}

impl InputRefused {
    /// The error for the caller.
    pub(crate) fn error(self) -> AgentError {
        AgentError::Denied(self.why)
    }
}

/// A token of profile `name` (as `profiles` has it) is made from the tokens
/// of its inputs and carries them to its own server: it is served only to a
/// caller whom every input, at any depth, would serve itself.
///
/// A chain that cannot be walked (a circle, too deep) refuses nothing here:
/// the fetch reports it.
pub(crate) fn check_inputs(
    peer: &Peer,
    profiles: &ProfileMap,
    name: &str,
) -> Result<(), InputRefused> {
    // Most profiles are made from none: no walk (and no allocation) on
    // their request path.
    if profiles
        .get(name)
        .is_none_or(|p| p.inputs().next().is_none())
    {
        return Ok(());
    }
    let Ok(links) = jwtagent::chain::inputs(profiles, name) else {
        return Ok(());
    };
    for link in links {
        let Some(input) = profiles.get(&link.name) else {
            continue;
        };
        if let Err(AgentError::Denied(why)) = check_policy(peer, &link.name, input) {
            return Err(InputRefused {
                why: format!(
                    "profile {name:?} is made from the token of profile {:?} ({}: {}), which does not serve this caller: {why}",
                    link.name,
                    link.role,
                    link.path.join(" -> "),
                ),
                input: link.name,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jwtagent::config::{AuthMethod, Exchange, Grant};

    fn profile() -> Profile {
        Profile::new("https://idp.example/token", "c", AuthMethod::None)
    }

    fn peer(exe: Option<&str>) -> Peer {
        Peer {
            exe: exe.map(Exe::from),
            pid: Some(1),
            ..Peer::default()
        }
    }

    #[test]
    fn no_forward_refuses_ssh_and_an_unknown_executable() {
        let mut p = profile();
        p.no_forward = true;
        for exe in [Some("/usr/sbin/sshd"), Some("/usr/bin/ssh"), None] {
            let e = check_policy(&peer(exe), "p", &p).unwrap_err();
            assert!(e.to_string().contains("--no-forward"), "{exe:?}: {e}");
        }
        check_policy(&peer(Some("/bin/sh")), "p", &p).unwrap();
        p.no_forward = false;
        check_policy(&peer(None), "p", &p).unwrap();
    }

    #[test]
    fn an_input_that_refuses_the_caller_refuses_the_derived_profile() {
        let mut guarded = profile();
        guarded.allow_exe = vec!["/bin/sh".into()];
        let mut derived = profile();
        derived.grant = Grant::TokenExchange(Box::new(Exchange::of("guarded")));
        let mut top = profile();
        top.grant = Grant::TokenExchange(Box::new(Exchange {
            actor_profile: Some("derived".into()),
            ..Exchange::of("absent")
        }));
        let profiles = BTreeMap::from([
            ("guarded".to_string(), guarded.into()),
            ("derived".to_string(), derived.into()),
            ("top".to_string(), top.into()),
        ]);
        let refused = check_inputs(&peer(Some("/usr/bin/env")), &profiles, "top").unwrap_err();
        assert_eq!(refused.input, "guarded");
        assert!(
            refused.why.contains("top -> derived -> guarded"),
            "{}",
            refused.why
        );
        check_inputs(&peer(Some("/bin/sh")), &profiles, "top").unwrap();
    }

    /// An allowed executable is the very file at an allowed path, in the
    /// agent's namespaces unless the profile allows others, and with a pin,
    /// that content.
    #[test]
    fn an_allowed_executable_is_the_file_at_the_path_and_a_pin_its_content() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, "abc").unwrap();
        std::fs::write(&b, "abd").unwrap();
        let (exe_a, exe_b) = (Exe::from(a.clone()), Exe::from(b.clone()));
        let mut p = profile();
        p.allow_exe = vec![a.clone()];
        assert_eq!(admitted(&p, &exe_a), Ok(()));
        assert_eq!(admitted(&p, &exe_b), Err(Refused::OtherFile));
        let elsewhere = Exe {
            own_namespaces: false,
            ..exe_a.clone()
        };
        assert_eq!(admitted(&p, &elsewhere), Err(Refused::Namespace));
        p.allow_exe_any_namespace = true;
        assert_eq!(admitted(&p, &elsewhere), Ok(()));

        // SHA-256 of "abc" (FIPS 180-2's example), pinned in either case.
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(digest(&a, exe_a.file).as_deref(), Some(abc));
        assert_eq!(digest(&a, exe_b.file), None, "not the file resolved");
        p.allow_exe_sha256 = vec![abc.to_uppercase()];
        assert_eq!(admitted(&p, &exe_a), Ok(()));
        p.allow_exe_sha256 = vec!["0".repeat(64)];
        assert_eq!(admitted(&p, &exe_a), Err(Refused::Digest));
        // The file changed in place: hashed anew, not taken from the cache.
        p.allow_exe_sha256 = vec![abc.into()];
        std::fs::write(&a, "abcd").unwrap();
        assert_ne!(digest(&a, exe_a.file).as_deref(), Some(abc));
        assert_eq!(admitted(&p, &exe_a), Err(Refused::Digest));
    }

    /// The connection's process must still run what it ran when resolved,
    /// and so must every other process that wrote to the connection.
    #[test]
    fn a_caller_is_unchanged_only_while_every_writer_runs_what_it_ran() {
        let me = std::process::id();
        let ticks = crate::peer::boot_ticks_now().unwrap();
        let mine = crate::peer::resolve_exe(me, ticks).expect("this test's own executable");
        let caller = Peer {
            pid: Some(me),
            exe: Some(mine.clone()),
            ..Peer::default()
        };
        assert!(caller_unchanged(&caller, true));
        assert!(!caller_unchanged(&caller, false), "its process exited");
        let unknown = Peer {
            exe: None,
            ..caller.clone()
        };
        assert!(!caller_unchanged(&unknown, true));
        let later = Exe {
            started: mine.started + 1,
            ..mine.clone()
        };
        let replaced = Peer {
            exe: Some(later.clone()),
            ..caller.clone()
        };
        assert!(!caller_unchanged(&replaced, true), "another process image");
        // Writers: the caller itself is not checked twice; another one must
        // still run its file, and one that could not be told fails.
        let mut written = caller.clone();
        written.writers = vec![(me, None)];
        assert!(caller_unchanged(&written, true));
        written.writers = vec![(1, None)];
        assert!(!caller_unchanged(&written, true));
        written.writers = vec![(1, Some(later))];
        assert!(!caller_unchanged(&written, true));
    }

    #[test]
    fn a_profile_is_bound_to_executables_when_it_or_an_input_has_allow_exe() {
        let dir = tempfile::tempdir().unwrap();
        let state = crate::state::AgentState::for_tests(dir.path());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut guarded = profile();
        guarded.allow_exe = vec!["/bin/sh".into()];
        let mut derived = profile();
        derived.grant = Grant::TokenExchange(Box::new(Exchange::of("guarded")));
        let mut open_derived = profile();
        open_derived.grant = Grant::TokenExchange(Box::new(Exchange::of("plain")));
        for (name, p) in [
            ("guarded", guarded),
            ("plain", profile()),
            ("derived", derived),
            ("open-derived", open_derived),
        ] {
            rt.block_on(state.profiles.add(name, p, None)).unwrap();
        }
        let config = state.profiles.current().unwrap();
        assert!(exe_bound(&config.profiles, "guarded"));
        assert!(exe_bound(&config.profiles, "derived"));
        assert!(!exe_bound(&config.profiles, "plain"));
        assert!(!exe_bound(&config.profiles, "open-derived"));
        assert!(!exe_bound(&config.profiles, "absent"));
    }
}
