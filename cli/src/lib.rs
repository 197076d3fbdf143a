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

/// The two command lines run most, parsed without building clap's whole
/// command tree: `jwtagent token NAME`, which scripts run (clap was a third
/// of the process's CPU time), and the daemon's own `agent -D ...`, whose
/// process stays resident (clap's code, touched once at start-up, stayed in
/// its memory: about 1 MiB). Anything else, or anything unusual (an option
/// not listed here, one given twice or as `--opt=value`, a value that looks
/// like an option, a name that is not UTF-8), goes through clap. The result
/// is what clap makes of the same arguments.
fn fast_path(args: impl Iterator<Item = std::ffi::OsString>) -> Option<Cli> {
    const MOST: usize = 16;
    let args: Vec<std::ffi::OsString> = args.skip(1).take(MOST + 1).collect();
    if args.len() > MOST {
        return None;
    }
    match args.first()?.to_str()? {
        "token" => fast_token(&args[1..]),
        _ => fast_agent(&args),
    }
}

fn fast_global() -> args::Global {
    args::Global {
        socket: None,
        timeout: std::time::Duration::from_secs(60),
        log_format: args::LogFormat::Text,
    }
}

fn fast_token(args: &[std::ffi::OsString]) -> Option<Cli> {
    let [name] = args else {
        return None;
    };
    let name = name.to_str()?;
    if name.is_empty() || name.starts_with('-') {
        return None;
    }
    Some(Cli {
        global: fast_global(),
        command: Command::Token {
            token: args::TokenArgs {
                name: name.to_string(),
                ask: args::TokenAsk::default(),
            },
            json: false,
            id_token: false,
        },
    })
}

/// `agent` with `-D`, `--detached-child`, `--socket`, `--log-format`,
/// `--log-file`, `--store`, `--store-passphrase-file`, `--lifetime`,
/// `--lock-idle`, `--lock-on-sleep` and `--allow-forwarded-admin` (the global options
/// also before `agent`), as
/// `jwtagent agent`, the detached start and the systemd unit give them.
fn fast_agent(args: &[std::ffi::OsString]) -> Option<Cli> {
    let mut global = fast_global();
    let mut agent = args::AgentArgs {
        foreground: false,
        log_file: None,
        store: None,
        store_passphrase_file: None,
        lifetime: None,
        lock_idle: None,
        lock_on_sleep: false,
        allow_forwarded_admin: false,
        detached_child: false,
    };
    let mut seen_agent = false;
    let mut seen: Vec<&str> = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let arg = arg.to_str()?;
        if arg == "agent" && !seen_agent {
            seen_agent = true;
            continue;
        }
        let key = if arg == "-D" { "--foreground" } else { arg };
        // The agent's own options come after `agent`; an option given twice
        // is refused by clap: both are left to it.
        let global_option = matches!(key, "--socket" | "--log-format");
        if !(global_option || seen_agent) || seen.contains(&key) {
            return None;
        }
        seen.push(key);
        // An option's value: present, not empty, not like an option.
        let mut value = || {
            args.next()
                .filter(|v| !v.is_empty() && !v.as_encoded_bytes().starts_with(b"-"))
        };
        match key {
            "--socket" => global.socket = Some(value()?.into()),
            "--log-format" => {
                global.log_format = match value()?.to_str()? {
                    "text" => args::LogFormat::Text,
                    "json" => args::LogFormat::Json,
                    _ => return None,
                }
            }
            "--foreground" => agent.foreground = true,
            "--detached-child" => agent.detached_child = true,
            "--allow-forwarded-admin" => agent.allow_forwarded_admin = true,
            "--log-file" => agent.log_file = Some(value()?.into()),
            "--store" => agent.store = Some(value()?.to_str()?.parse().ok()?),
            "--store-passphrase-file" => agent.store_passphrase_file = Some(value()?.into()),
            "--lifetime" => {
                let text = value()?.to_str()?;
                agent.lifetime = Some(jwtagent::duration::parse_duration(text).ok()?);
            }
            "--lock-idle" => {
                let text = value()?.to_str()?;
                agent.lock_idle = Some(jwtagent::duration::parse_duration(text).ok()?);
            }
            "--lock-on-sleep" => agent.lock_on_sleep = true,
            _ => return None,
        }
    }
    seen_agent.then_some(Cli {
        global,
        command: Command::Agent(agent),
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
        Command::Secret(args) => commands::profiles::secret(&socket, &args),
        Command::List { json } => commands::profiles::list(&socket, json),
        Command::Show { name, json } => commands::profiles::show(&socket, &name, json),
        Command::Remove { name } => commands::profiles::remove(&socket, &name),
        Command::Token {
            token,
            json,
            id_token,
        } => commands::token::token(&socket, &token, json, id_token),
        Command::Login {
            name,
            no_browser,
            force,
        } => commands::login::login(&socket, &name, no_browser, force),
        Command::Logout { name } => commands::login::logout(&socket, &name),
        Command::Whoami { name, json } => commands::login::whoami(&socket, &name, json),
        Command::Header { token, proof } => commands::token::header(&socket, &token, &proof),
        Command::Dpop { token, proof } => commands::token::dpop_proof(&socket, &token, &proof),
        Command::Keygen(args) => commands::profiles::keygen(&socket, *args),
        Command::Jwks { name } => commands::profiles::jwks(&socket, &name),
        Command::Exec(args) => commands::integrations::exec(&socket, &args),
        Command::Kubectl(args) => commands::integrations::kubectl(&socket, &args),
        Command::GitCredential {
            token,
            operation,
            username,
        } => commands::integrations::git_credential(&socket, &token, operation, &username),
        Command::Lock { passphrase_stdin } => commands::lock::lock(&socket, passphrase_stdin),
        Command::Renew { name } => commands::profiles::renew(&socket, &name),
        Command::Sink(args) => commands::sinks::sink(&socket, args),
        Command::Store {
            action:
                args::StoreAction::Migrate {
                    to,
                    passphrase_stdin,
                },
        } => commands::lock::migrate(&socket, to, passphrase_stdin),
        Command::Unlock { passphrase_stdin } => commands::lock::unlock(&socket, passphrase_stdin),
        Command::Audit {
            follow,
            json,
            filter,
        } => commands::audit::run(follow, json, &filter),
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
            assert_same_as_clap(&["jwtagent", "token", name]);
        }
    }

    fn assert_same_as_clap(args: &[&str]) {
        let args = os(args);
        let fast = fast_path(args.clone().into_iter()).expect("the fast path");
        let clap = Cli::try_parse_from(args).unwrap();
        assert_eq!(format!("{fast:?}"), format!("{clap:?}"));
    }

    #[test]
    fn the_fast_path_parses_the_agent_s_command_lines_exactly_as_clap_does() {
        for args in [
            &["jwtagent-agent", "agent"][..],
            &["jwtagent-agent", "agent", "-D"],
            &["jwtagent", "agent", "--foreground", "--store", "keyutils"],
            // What the detached start gives the daemon (cli/src/daemon.rs).
            &[
                "jwtagent-agent",
                "agent",
                "-D",
                "--detached-child",
                "--socket",
                "/run/user/1000/jwtagent/agent.sock",
                "--log-format",
                "json",
                "--log-file",
                "/tmp/agent log",
                "--store",
                "secret-service",
            ],
            &["jwtagent-agent", "--socket", "/s", "agent", "-D"],
            &[
                "jwtagent-agent",
                "--log-format",
                "text",
                "agent",
                "--socket",
                "s.sock",
            ],
        ] {
            assert_same_as_clap(args);
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
            &["jwtagent-agent", "agent", "--help"],
            &["jwtagent-agent", "agent", "-D", "-D"],
            &["jwtagent-agent", "agent", "-D", "--foreground"],
            &["jwtagent-agent", "agent", "-Dx"],
            &["jwtagent-agent", "agent", "--socket"],
            &["jwtagent-agent", "agent", "--socket", ""],
            &["jwtagent-agent", "agent", "--socket", "-D"],
            &["jwtagent-agent", "agent", "--socket=/s"],
            &[
                "jwtagent-agent",
                "agent",
                "--socket",
                "/a",
                "--socket",
                "/b",
            ],
            &["jwtagent-agent", "agent", "--store", "vault"],
            &["jwtagent-agent", "agent", "--log-format", "xml"],
            &["jwtagent-agent", "agent", "--timeout", "5s"],
            &["jwtagent-agent", "agent", "agent"],
            &["jwtagent-agent", "-D", "agent"],
            &["jwtagent-agent", "--socket", "/s"],
            &["jwtagent-agent", "status"],
            &["jwtagent-agent"],
        ] {
            assert!(fast_path(os(args).into_iter()).is_none(), "{args:?}");
        }
    }
}
