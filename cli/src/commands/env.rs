//! `jwtagent env`: print the variables for a shell, starting the agent if needed.

use crate::args::Shell;
use crate::connect;
use crate::error::CliError;
use crate::output;
use crate::shell;
use jwtagent::paths::SocketPath;

pub fn run(socket: &SocketPath, shell: Option<Shell>, no_start: bool) -> Result<(), CliError> {
    let (_, hello) = if no_start {
        connect::connect_existing(socket)?
    } else {
        connect::connect_or_start(socket)?
    };
    let script = shell::env_script(shell::detect(shell), &socket.path, hello.pid)
        .map_err(CliError::Usage)?;
    output::print(&script)
}
