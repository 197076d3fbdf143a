//! The `jwtagent` binary: the CLI and, as `jwtagent agent`, the daemon.

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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("jwtagent: {}", render(&e));
            e.exit_code()
        }
    }
}

fn render(e: &CliError) -> String {
    match e {
        CliError::Other(e) => format!("{e:#}"),
        other => other.to_string(),
    }
}

fn run(cli: Cli) -> Result<(), CliError> {
    let socket = connect::socket_path(cli.global.socket.as_deref());
    connect::set_timeout(cli.global.timeout);
    match cli.command {
        Command::Env { shell, no_start } => commands::env::run(&socket, shell, no_start),
        Command::Agent(args) => commands::agent::run(&socket, &args, cli.global.log_format),
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
