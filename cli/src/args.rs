//! The command line, as clap derives it. Help texts here are the reference the
//! README and the man page repeat.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "jwtagent",
    version,
    about = "ssh-agent for API tokens: one agent holds OAuth client credentials and serves fresh access tokens over a Unix socket",
    propagate_version = true,
    after_help = "Start with: eval \"$(jwtagent env)\""
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// The agent's socket [default: $JWTAGENT_SOCK, else $XDG_RUNTIME_DIR/jwtagent/agent.sock, else /tmp/jwtagent-$UID/agent.sock]
    #[arg(long, global = true, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Log format on stderr (the filter is JWTAGENT_LOG, default `info`)
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    /// POSIX sh, bash, zsh
    Sh,
    /// csh, tcsh
    Csh,
    /// fish
    Fish,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print shell commands that point JWTAGENT_SOCK at the agent, starting one if none answers
    ///
    /// Use it as `eval "$(jwtagent env)"` (sh, bash, zsh), `eval "`jwtagent env --shell csh`"`
    /// (csh) or `jwtagent env --shell fish | source` (fish). A live agent is reused; an
    /// agent is never started twice on one socket.
    Env {
        /// Shell syntax to print [default: guessed from $SHELL]
        #[arg(long, value_enum)]
        shell: Option<Shell>,
        /// Do not start an agent; fail (exit 3) if none answers
        #[arg(long)]
        no_start: bool,
    },
    /// Run the agent
    ///
    /// Without -D the agent detaches, and this command returns once its socket
    /// accepts connections (or prints why it could not start and exits non-zero).
    Agent(AgentArgs),
    /// Ask the agent to exit, and print shell commands that unset its variables
    Stop {
        /// Shell syntax to print [default: guessed from $SHELL]
        #[arg(long, value_enum)]
        shell: Option<Shell>,
    },
    /// Show the agent's state and every profile's token state
    Status {
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// Stay in the foreground (logs go to stderr)
    #[arg(short = 'D', long)]
    pub foreground: bool,
    /// Where a detached agent writes its log [default: $XDG_STATE_HOME/jwtagent/agent.log]
    #[arg(long, value_name = "PATH")]
    pub log_file: Option<PathBuf>,
    /// Internal: set by the parent of a detached agent; readiness is reported on stdout.
    #[arg(long, hide = true)]
    pub detached_child: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
