//! `jwtagent stop`: ask the agent to exit, wait until it has, print the unset script.

use crate::args::Shell;
use crate::connect;
use crate::error::CliError;
use crate::output;
use crate::shell;
use anyhow::anyhow;
use jwtagent::paths::SocketPath;
use std::time::{Duration, Instant};

/// Longer than the agent's own shutdown grace, so a clean exit is always seen.
const EXIT_DEADLINE: Duration = Duration::from_secs(15);

pub fn run(socket: &SocketPath, shell: Option<Shell>) -> Result<(), CliError> {
    let (mut client, hello) = connect::connect_existing(socket)?;
    client
        .stop()
        .map_err(|e| CliError::from_client(e, crate::error::START_HINT))?;
    drop(client);
    // Return only once the agent is gone, so a following `env` starts a new
    // agent instead of finding the old one still draining.
    let deadline = Instant::now() + EXIT_DEADLINE;
    while jwtagent::process::is_running(hello.pid) {
        if Instant::now() >= deadline {
            return Err(anyhow!(
                "the agent (pid {}) acknowledged stop but is still running after {}s",
                hello.pid,
                EXIT_DEADLINE.as_secs()
            )
            .into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // The script goes to stdout for `eval`; what happened, to the user.
    eprintln!(
        "Stopped the agent (pid {}) on {}.",
        hello.pid,
        socket.path.display()
    );
    output::print(&shell::unset_script(shell::detect(shell)))
}
