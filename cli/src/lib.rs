//! jwtagent's command line: everything the two binaries run. `jwtagent` is
//! the CLI; `jwtagent-agent` is the daemon that `jwtagent agent` hands over
//! to. They share this code, but only the daemon's binary links the agent
//! (see [`daemon_main`]): `jwtagent` is a small client, statically linked at
//! a fixed address for a fast start (cli/build.rs), while the daemon, which
//! holds the secrets and talks to servers, keeps a position-independent
//! image and with it the full address-space randomization.

#![forbid(unsafe_code)]

mod args;
mod commands;
mod complete;
mod connect;
mod daemon;
mod error;
mod google;
mod logging;
mod man;
mod output;
mod shell;

use args::{Cli, Command};
use clap::Parser;
use error::CliError;
use std::process::ExitCode;

/// Freed memory is wiped: the agent's tokens, secrets and lock passphrase
/// do not outlive their buffers (including those of hyper, rustls and serde).
#[global_allocator]
static ALLOC: zeroizing_alloc::ZeroAlloc<std::alloc::System> =
    zeroizing_alloc::ZeroAlloc(std::alloc::System);

/// The daemon's binary, `jwtagent-agent`: the command line in
/// `std::env::args_os()`, able to run the agent itself.
pub fn daemon_main() -> ExitCode {
    ExitCode::from(exit_status(Some(commands::agent::serve)))
}

/// The CLI, `jwtagent`: the command line in `std::env::args_os()`; returns
/// the exit status. `jwtagent agent` hands over to `jwtagent-agent`.
pub fn client_exit_status() -> u8 {
    exit_status(None)
}

fn exit_status(serve: Option<commands::agent::Serve>) -> u8 {
    let cli = fast_path(std::env::args_os()).unwrap_or_else(Cli::parse);
    match run(cli, serve) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("jwtagent: {}", render(&e));
            e.exit_code()
        }
    }
}

/// `jwtagent token NAME`, the command scripts run most, parsed without
/// building clap's whole command tree (a third of the process's CPU time);
/// anything else, or anything unusual (an option, a name that is not
/// UTF-8 or looks like one), goes through clap. The result is what clap
/// makes of the same arguments.
fn fast_path(args: impl Iterator<Item = std::ffi::OsString>) -> Option<Cli> {
    let args: Vec<std::ffi::OsString> = args.take(4).collect();
    let [_, command, name] = args.as_slice() else {
        return None;
    };
    let name = name.to_str()?;
    if command != "token" || name.is_empty() || name.starts_with('-') {
        return None;
    }
    Some(Cli {
        global: args::Global {
            socket: None,
            timeout: std::time::Duration::from_secs(60),
            log_format: args::LogFormat::Text,
        },
        command: Command::Token {
            token: args::TokenArgs {
                name: name.to_string(),
                min_ttl: None,
                scopes: Vec::new(),
                resources: Vec::new(),
                force: false,
                strict: false,
            },
            json: false,
            id_token: false,
        },
    })
}

fn render(e: &CliError) -> String {
    match e {
        CliError::Other(e) => format!("{e:#}"),
        other => other.to_string(),
    }
}

fn run(cli: Cli, serve: Option<commands::agent::Serve>) -> Result<(), CliError> {
    let socket = connect::socket_path(cli.global.socket.as_deref());
    connect::set_timeout(cli.global.timeout);
    match cli.command {
        Command::Env { shell, no_start } => commands::env::run(&socket, shell, no_start),
        Command::Agent(args) => commands::agent::run(&socket, &args, cli.global.log_format, serve),
        Command::Stop { shell } => commands::stop::run(&socket, shell),
        Command::Status { json } => commands::status::run(&socket, json),
        Command::Add(args) => commands::profiles::add(&socket, *args),
        Command::List { json } => commands::profiles::list(&socket, json),
        Command::Show { name, json } => commands::profiles::show(&socket, &name, json),
        Command::Remove { name } => commands::profiles::remove(&socket, &name),
        Command::Token {
            token,
            json,
            id_token,
        } => commands::token::token(&socket, &token, json, id_token),
        Command::Login { name, no_browser } => commands::login::login(&socket, &name, no_browser),
        Command::Logout { name } => commands::login::logout(&socket, &name),
        Command::Header { token, proof } => commands::token::header(&socket, &token, &proof),
        Command::Dpop { token, proof } => commands::token::dpop_proof(&socket, &token, &proof),
        Command::Keygen(args) => commands::profiles::keygen(&socket, *args),
        Command::Jwks { name } => commands::profiles::jwks(&socket, &name),
        Command::Exec {
            token,
            var,
            command,
        } => commands::integrations::exec(&socket, &token, &var, &command),
        Command::Kubectl(args) => commands::integrations::kubectl(&socket, &args),
        Command::GitCredential {
            token,
            operation,
            username,
        } => commands::integrations::git_credential(&socket, &token, operation, &username),
        Command::Lock { passphrase_stdin } => commands::lock::lock(&socket, passphrase_stdin),
        Command::Unlock { passphrase_stdin } => commands::lock::unlock(&socket, passphrase_stdin),
        Command::Audit { follow, json } => commands::audit::run(follow, json),
        Command::Completions { shell } => commands::integrations::completions(shell),
        Command::CompleteProfiles => output::print(&complete::profiles()),
        Command::Man { command, dir } => {
            commands::integrations::man(command.as_deref(), dir.as_deref())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<std::ffi::OsString> {
        args.iter().map(Into::into).collect()
    }

    #[test]
    fn the_fast_path_parses_token_name_exactly_as_clap_does() {
        for name in ["p", "ci.prod", "a_b-c", "ü"] {
            let args = os(&["jwtagent", "token", name]);
            let fast = fast_path(args.clone().into_iter()).expect("the fast path");
            let clap = Cli::try_parse_from(args).unwrap();
            assert_eq!(format!("{fast:?}"), format!("{clap:?}"));
        }
    }

    #[test]
    fn anything_else_goes_through_clap() {
        for args in [
            &["jwtagent", "token"][..],
            &["jwtagent", "token", "--help"],
            &["jwtagent", "token", "-h"],
            &["jwtagent", "token", ""],
            &["jwtagent", "token", "p", "--json"],
            &["jwtagent", "header", "p"],
            &["jwtagent", "--socket", "/s", "token"],
        ] {
            assert!(fast_path(os(args).into_iter()).is_none(), "{args:?}");
        }
    }
}
