//! `jwtagent login` and `logout`: the agent signs the user in; this shows
//! what the user is to do and follows the sign-in until it ends.

use crate::connect;
use crate::error::{CliError, START_HINT};
use jwtagent::paths::SocketPath;
use jwtagent::protocol::LoginStarted;
use std::io::{IsTerminal, Write};
use std::time::Duration;

/// How long one `login_wait` waits before the progress line is redrawn.
const POLL: Duration = Duration::from_secs(5);

pub fn login(socket: &SocketPath, name: &str, no_browser: bool) -> Result<(), CliError> {
    let (mut client, _) = connect::connect_or_autostart(socket)?;
    let fail = |e| CliError::from_client(e, START_HINT);
    let started = client.login(name).map_err(fail)?;
    let mut err = std::io::stderr().lock();
    let joined = match &started {
        LoginStarted::Device { joined, .. } | LoginStarted::Browser { joined, .. } => *joined,
    };
    if joined {
        let _ = writeln!(
            err,
            "A sign-in for profile {name} is already under way (started elsewhere); following it."
        );
    }
    show_prompt(&mut err, &started, no_browser);
    let _ = err.flush();
    let tty = std::io::stderr().is_terminal();
    loop {
        // Each wait ends well within --timeout, which bounds every answer.
        let poll = POLL.min(connect::timeout() / 2).max(Duration::from_secs(1));
        let progress = client.login_wait(name, poll).map_err(fail)?;
        if progress.done {
            if tty {
                let _ = write!(err, "\r\x1b[K");
            }
            let scope = progress
                .scope
                .map(|s| format!(" (scope: {s})"))
                .unwrap_or_default();
            let _ = writeln!(
                err,
                "Signed in{scope}. `jwtagent token {name}` now serves your tokens."
            );
            if !progress.refresh_token {
                let _ = writeln!(
                    err,
                    "warning: the server issued no refresh token, so this sign-in lasts only as long as the first access token (ask for the offline_access scope, or allow refresh tokens for the client at the server)"
                );
            }
            return Ok(());
        }
        if tty {
            let left = progress.expires_in.unwrap_or(0);
            let _ = write!(
                err,
                "\r\x1b[KWaiting for you to sign in ({} left; Ctrl-C to give up)...",
                crate::output::duration(left)
            );
            let _ = err.flush();
        }
    }
}

/// Tells the user what to do to sign in: the device code to enter, or the
/// address to open (opened for them unless `no_browser`, or the sign-in is
/// another's).
fn show_prompt(err: &mut impl Write, started: &LoginStarted, no_browser: bool) {
    match &started {
        LoginStarted::Device {
            verification_uri,
            user_code,
            verification_uri_complete,
            expires_in,
            ..
        } => {
            let _ = writeln!(
                err,
                "To sign in, open {verification_uri} on any device and enter the code:\n\n    {user_code}\n"
            );
            if let Some(complete) = verification_uri_complete {
                let _ = writeln!(err, "(or open {complete}, which has the code in it)");
            }
            let _ = writeln!(
                err,
                "The code expires in {}.",
                crate::output::duration(*expires_in)
            );
        }
        LoginStarted::Browser { url, joined, .. } => {
            let opened = !no_browser && !*joined && open_browser(url);
            let _ = writeln!(
                err,
                "{} this address in a browser on this machine to sign in:\n\n    {url}\n",
                if opened { "Opened" } else { "Open" }
            );
        }
    }
}

/// Opens `url` in the user's browser, if this machine has one to open.
fn open_browser(url: &str) -> bool {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        // xdg-open without a display only prints errors.
        if std::env::var_os("DISPLAY").is_none() && std::env::var_os("WAYLAND_DISPLAY").is_none() {
            return false;
        }
        "xdg-open"
    };
    std::process::Command::new(opener)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .is_ok()
}

pub fn logout(socket: &SocketPath, name: &str) -> Result<(), CliError> {
    let (mut client, _) = connect::connect_or_autostart(socket)?;
    let out = client
        .logout(name)
        .map_err(|e| CliError::from_client(e, START_HINT))?;
    let mut err = std::io::stderr().lock();
    if !out.was_logged_in {
        let _ = writeln!(err, "Profile {name} was not signed in.");
    } else if out.revoked {
        let _ = writeln!(
            err,
            "Signed out of profile {name}: the server revoked the refresh token, and it is deleted."
        );
    } else {
        let _ = writeln!(
            err,
            "Signed out of profile {name}: the refresh token is deleted."
        );
    }
    if let Some(warning) = out.warning {
        let _ = writeln!(err, "warning: {warning}");
    }
    Ok(())
}
