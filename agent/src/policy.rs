//! Which callers a profile serves: its own policy (`--no-forward`,
//! `--allow-exe`), and, for a profile whose token is made from other
//! profiles' tokens, the policy of every one of those, down the chain. Every
//! way to a token asks here.

use crate::error::AgentError;
use crate::peer::Peer;
use jwtagent::config::Profile;
use std::collections::BTreeMap;
use std::path::PathBuf;

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
    let admits = |exe: Option<&PathBuf>| {
        exe.is_some_and(|exe| {
            profile
                .allow_exe
                .iter()
                .any(|a| a == exe || std::fs::canonicalize(a).is_ok_and(|c| &c == exe))
        })
    };
    // The process that connected, and every process that wrote to the
    // connection: a socket handed on (fork then exec, fd passing) is judged
    // by who uses it.
    let refused_writer = peer.writers.iter().find(|(_, exe)| !admits(exe.as_ref()));
    if admits(peer.exe.as_ref()) && refused_writer.is_none() && !peer.too_many_writers {
        return Ok(());
    }
    if let Some((pid, exe)) = refused_writer
        && admits(peer.exe.as_ref())
    {
        let exe = crate::peer::exe_display(exe.as_ref());
        return Err(AgentError::Denied(format!(
            "profile {name:?}: this connection was opened by {} but written to by pid {pid} ({exe}), which the profile does not allow",
            peer.exe_display()
        )));
    }
    Err(AgentError::Denied(format!(
        "profile {name:?} serves only {}; the caller is {}",
        profile
            .allow_exe
            .iter()
            .map(|p| jwtagent::text::escaped(&p.to_string_lossy()).into_owned())
            .collect::<Vec<_>>()
            .join(", "),
        peer.exe_display()
    )))
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
    pub fn error(self) -> AgentError {
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
    profiles: &BTreeMap<String, Profile>,
    name: &str,
) -> Result<(), InputRefused> {
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
