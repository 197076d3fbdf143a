//! `jwtagent status`: the agent's state; never starts an agent.

use crate::connect;
use crate::error::CliError;
use crate::output;
use jwtagent::paths::SocketPath;
use jwtagent::protocol::{ProfileStatus, Status};
use std::fmt::Write as _;

pub fn run(socket: &SocketPath, json: bool) -> Result<(), CliError> {
    let (mut client, _) = connect::connect_existing(socket)?;
    let status = client
        .status()
        .map_err(|e| CliError::from_client(e, crate::error::START_HINT))?;
    if json {
        let mut text = serde_json::to_string_pretty(&status).map_err(anyhow::Error::from)?;
        text.push('\n');
        return output::print(&text);
    }
    let mut text = render(&status);
    if let Some(note) = stale_pid(std::env::var("JWTAGENT_PID").ok().as_deref(), status.pid) {
        let _ = writeln!(text, "note      {note}");
    }
    output::print(&text)
}

/// When the shell's JWTAGENT_PID (from `jwtagent env`) names another agent
/// than the one answering (it was started again, by autostart or by hand):
/// what that means and what to run.
fn stale_pid(env: Option<&str>, running: u32) -> Option<String> {
    let named = env?.trim();
    if named.is_empty() || named.parse::<u32>().ok() == Some(running) {
        return None;
    }
    Some(format!(
        "JWTAGENT_PID in this shell is {}, not the running agent's {running} (the agent was started again): run `eval \"$(jwtagent env)\"` to update it (`kill $JWTAGENT_PID` would miss the agent)",
        jwtagent::text::escaped(named)
    ))
}

fn render(s: &Status) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "agent     running (pid {}, version {}, protocol {})",
        s.pid, s.version, s.protocol
    );
    let _ = writeln!(out, "socket    {}", s.socket);
    let _ = writeln!(out, "uptime    {}", output::duration(s.uptime_secs));
    let _ = writeln!(
        out,
        "store     {}",
        s.store.as_deref().unwrap_or("none configured")
    );
    if let Some(warning) = &s.store_warning {
        let _ = writeln!(out, "          WARNING: {warning}");
    }
    if let Some(config) = &s.config {
        let _ = writeln!(out, "config    {config}");
    }
    if let Some(err) = &s.config_error {
        let _ = writeln!(out, "          ERROR: {err}");
    }
    for skipped in &s.skipped_profiles {
        let reason = jwtagent::text::escaped(&skipped.reason);
        let _ = writeln!(out, "          SKIPPED: {reason}");
    }
    let locked = match (s.locked, s.unlock_with.as_deref()) {
        (false, _) => "no",
        (true, Some("store")) => "yes (jwtagent unlock: the file store's passphrase)",
        (true, Some("askpass")) => {
            "yes (it locked itself; jwtagent unlock asks you to confirm through askpass)"
        }
        (true, _) => "yes (jwtagent unlock: the passphrase it was locked with)",
    };
    let _ = writeln!(out, "locked    {locked}");
    if s.profiles.is_empty() {
        let _ = writeln!(out, "profiles  none");
    } else {
        let _ = writeln!(out, "profiles");
        for p in &s.profiles {
            profile_line(&mut out, p);
        }
    }
    out
}

/// `status`'s line for one profile.
fn profile_line(out: &mut String, p: &ProfileStatus) {
    let _ = write!(out, "  {:<20} {}", p.name, p.token_state);
    if p.logging_in {
        let _ = write!(out, ", signing in");
    } else if p.login_required {
        let _ = write!(out, ", LOGIN REQUIRED (jwtagent login {})", p.name);
    } else if let Some(whom) = &p.signed_in_as {
        let _ = write!(out, ", signed in as {}", jwtagent::text::escaped(whom));
    }
    if let Some(until) = p.signed_in_until.filter(|_| !p.login_required) {
        let _ = write!(out, " until {}", jwtagent::time::rfc3339(until));
    }
    match p.expires_in_secs {
        Some(secs) if secs > 0 => {
            let _ = write!(
                out,
                ", expires in {}",
                output::duration(secs.unsigned_abs())
            );
        }
        Some(secs) => {
            let _ = write!(
                out,
                ", expired {} ago",
                output::duration(secs.unsigned_abs())
            );
        }
        None => {}
    }
    if let Some(secs) = p.next_refresh_in_secs {
        let _ = write!(out, ", refresh in {}", output::duration(secs.max(0) as u64));
    }
    if p.failures > 0 {
        let _ = write!(
            out,
            ", {} failed refresh{}",
            p.failures,
            if p.failures == 1 { "" } else { "es" }
        );
    }
    match p.lifetime_left_secs {
        Some(0) => {
            let _ = write!(out, ", LIFETIME RAN OUT (jwtagent renew {})", p.name);
        }
        Some(secs) => {
            let _ = write!(out, ", lifetime left {}", output::duration(secs));
        }
        None => {}
    }
    if let Some(aud) = &p.assertion_aud_worked {
        let _ = write!(out, ", assertion aud {aud}");
    }
    if let Some(err) = &p.last_error {
        let _ = write!(out, ", last error: {err}");
    }
    if p.tokens.len() > 1 {
        let _ = write!(
            out,
            " ({} cached tokens; --json shows each)",
            p.tokens.len()
        );
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_stale_jwtagent_pid_is_pointed_out() {
        assert_eq!(super::stale_pid(None, 42), None);
        assert_eq!(super::stale_pid(Some("42"), 42), None);
        assert_eq!(super::stale_pid(Some(""), 42), None);
        let note = super::stale_pid(Some("41"), 42).unwrap();
        assert!(note.contains("41") && note.contains("42") && note.contains("jwtagent env"));
    }
}
