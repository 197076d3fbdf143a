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

pub fn login(
    socket: &SocketPath,
    name: &str,
    no_browser: bool,
    force: bool,
) -> Result<(), CliError> {
    let (mut client, _) = connect::connect_or_autostart(socket)?;
    let fail = |e| CliError::from_client(e, START_HINT);
    if !force {
        let who = client.whoami(name).map_err(fail)?;
        if who.signed_in {
            let said = whoami_line(name, &who);
            return Err(CliError::Usage(format!(
                "{} `jwtagent login {name} --force` signs in again (`jwtagent logout {name}` signs out).",
                said.trim_end()
            )));
        }
    }
    // No browser to open here (and none asked for with --no-browser, which
    // only prints the address): a device code the user can enter elsewhere.
    let headless = !no_browser && !has_browser();
    let started = client.login(name, headless).map_err(fail)?;
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
    // The file that hands the address to the browser goes when this ends.
    let _handed = show_prompt(&mut err, &started, no_browser, &socket.path);
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
fn show_prompt(
    err: &mut impl Write,
    started: &LoginStarted,
    no_browser: bool,
    socket: &std::path::Path,
) -> Option<Handed> {
    let mut handed = None;
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
        LoginStarted::Browser {
            url,
            joined,
            expires_in,
            ..
        } => {
            if !no_browser && !*joined {
                handed = open_browser(url, socket);
            }
            let _ = writeln!(
                err,
                "{} this address in a browser on this machine to sign in:\n\n    {url}\n",
                if handed.is_some() { "Opened" } else { "Open" }
            );
            let _ = writeln!(
                err,
                "The sign-in expires in {}.",
                crate::output::duration(*expires_in)
            );
        }
    }
    handed
}

/// A page that sends the browser on to the authorization request, deleted
/// when dropped.
struct Handed(std::path::PathBuf);

impl Drop for Handed {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Whether a browser can be opened here: `$BROWSER`, macOS, or a display
/// for xdg-open.
fn has_browser() -> bool {
    let set = |var: &str| std::env::var_os(var).is_some_and(|v| !v.is_empty());
    set("BROWSER") || cfg!(target_os = "macos") || set("DISPLAY") || set("WAYLAND_DISPLAY")
}

/// Opens `url` in the user's browser: `$BROWSER` (commands separated by `:`,
/// tried in turn, `%s` standing for the address, as git and xdg-utils read
/// it), else the desktop's opener. The browser is given a page of ours
/// (0600, in the agent's private directory beside `socket`) that sends it
/// on: the address, with its `state`, is on no command line another user
/// could read in /proc. None when no browser could be started.
fn open_browser(url: &str, socket: &std::path::Path) -> Option<Handed> {
    let openers: Vec<Vec<String>> = match std::env::var("BROWSER") {
        Ok(list) if !list.trim().is_empty() => list
            .split(':')
            .map(|cmd| cmd.split_whitespace().map(str::to_string).collect())
            .filter(|words: &Vec<String>| !words.is_empty())
            .collect(),
        _ if cfg!(target_os = "macos") => vec![vec!["open".into()]],
        // xdg-open without a display only prints errors.
        _ if std::env::var_os("DISPLAY").is_none()
            && std::env::var_os("WAYLAND_DISPLAY").is_none() =>
        {
            return None;
        }
        _ => vec![vec!["xdg-open".into()]],
    };
    let handed = hand_over(url, socket)?;
    let page = handed.0.to_string_lossy().into_owned();
    for words in openers {
        let mut args: Vec<String> = words[1..].iter().map(|w| w.replace("%s", &page)).collect();
        if !words[1..].iter().any(|w| w.contains("%s")) {
            args.push(page.clone());
        }
        let started = std::process::Command::new(&words[0])
            .args(&args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .is_ok();
        if started {
            return Some(handed);
        }
    }
    None
}

/// Writes the page that sends a browser on to `url`, new and 0600, in the
/// directory of `socket` (the agent's, 0700 and checked).
fn hand_over(url: &str, socket: &std::path::Path) -> Option<Handed> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = socket.parent()?;
    let path = dir.join(format!("login-{}.html", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .ok()?;
    let handed = Handed(path);
    let escaped = url
        .replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    let page = format!(
        "<!doctype html>\n<meta charset=\"utf-8\">\n<meta name=\"referrer\" content=\"no-referrer\">\n<meta http-equiv=\"refresh\" content=\"0;url={escaped}\">\n<title>jwtagent sign-in</title>\n<a href=\"{escaped}\">Continue to sign in</a>\n"
    );
    file.write_all(page.as_bytes()).ok()?;
    Some(handed)
}

/// `whoami`: whether user profile `name` is signed in, and as whom.
pub fn whoami(socket: &SocketPath, name: &str, json: bool) -> Result<(), CliError> {
    let (mut client, _) = connect::connect_or_autostart(socket)?;
    let who = client
        .whoami(name)
        .map_err(|e| CliError::from_client(e, START_HINT))?;
    if json {
        let mut text = serde_json::to_string(&who).map_err(anyhow::Error::from)?;
        text.push('\n');
        return crate::output::print(&text);
    }
    crate::output::print(&whoami_line(name, &who))
}

/// What `whoami` says of `who`; the server's words escaped.
fn whoami_line(name: &str, who: &jwtagent::protocol::WhoAmI) -> String {
    use jwtagent::text::escaped;
    if !who.signed_in {
        return format!("Profile {name} is not signed in: run `jwtagent login {name}`.\n");
    }
    let whom = match (&who.username, &who.subject) {
        (Some(user), Some(sub)) => format!(" as {} (subject {})", escaped(user), escaped(sub)),
        (Some(user), None) => format!(" as {}", escaped(user)),
        (None, Some(sub)) => format!(" as subject {}", escaped(sub)),
        (None, None) => String::new(),
    };
    let since = who
        .since
        .map(|at| format!(" since {}", jwtagent::time::rfc3339(at)))
        .unwrap_or_default();
    let until = who
        .until
        .map(|at| {
            format!(
                ", until {} (when its refresh token expires)",
                jwtagent::time::rfc3339(at)
            )
        })
        .unwrap_or_default();
    let unknown = if whom.is_empty() {
        format!(
            " As whom is not known: no ID token came since the agent started (servers send one at sign-in with the openid scope, some on a refresh too: `jwtagent token {name} --force`)."
        )
    } else {
        String::new()
    };
    format!("Profile {name} is signed in{whom}{since}{until}.{unknown}\n")
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
