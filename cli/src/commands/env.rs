//! `jwtagent env`: print the variables for a shell, starting the agent if needed.

use crate::args::Shell;
use crate::connect;
use crate::error::CliError;
use crate::output;
use crate::shell;
use jwtagent::paths::SocketPath;

pub fn run(socket: &SocketPath, shell: Option<Shell>, no_start: bool) -> Result<(), CliError> {
    let (client, hello, started) = if no_start {
        let (client, hello) = connect::connect_existing(socket)?;
        (client, hello, false)
    } else {
        connect::start_if_needed(socket)?
    };
    if started {
        warn_about_store(client);
    }
    // An agent reached through SSH forwarding runs on another machine: its
    // pid means nothing here.
    let pid = (!hello.forwarded).then_some(hello.pid);
    let script =
        shell::env_script(shell::detect(shell), &socket.path, pid).map_err(CliError::Usage)?;
    output::print(&script)
}

/// After starting an agent: what the user should know about where it keeps
/// secrets (the kernel keyring for want of a Secret Service, or nothing at
/// all), on stderr, so that it reaches the user and not the shell's eval.
fn warn_about_store(mut client: jwtagent::client::Client) {
    let Ok(status) = crate::connect::settled_status(&mut client) else {
        return;
    };
    if let Some(warning) = status.store_warning {
        eprintln!("jwtagent: warning: {warning}");
    } else if let Some(why) = status
        .store
        .as_deref()
        .and_then(|s| s.strip_prefix("unavailable: "))
    {
        eprintln!(
            "jwtagent: warning: the agent has no secret store, so no profile with a secret can be added: {why}"
        );
    }
}
