//! Errors the CLI reports, and the exit code each maps to (SPEC §3): 1 a request
//! failed, 2 usage, 3 no agent reachable.

use jwtagent::ClientError;
use jwtagent::protocol::ErrorBody;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Nothing answers on the socket and we may not (or could not) start an agent.
    #[error("no agent is listening on {path} ({reason}).\n{hint}")]
    NoAgent {
        path: PathBuf,
        reason: String,
        hint: std::borrow::Cow<'static, str>,
    },
    /// The agent answered with an error.
    #[error("{}: {}", .0.code, .0.message)]
    Agent(ErrorBody),
    #[error("{0}")]
    Usage(String),
    /// A failure with its own exit code (e.g. 127: `exec` found no command).
    #[error("{message}")]
    Exit { code: u8, message: String },
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

pub const START_HINT: &str = "Start one with: eval \"$(jwtagent env)\" (or `jwtagent agent`)";
/// For a socket the user named (--socket, or a JWTAGENT_SOCK other than the
/// default path): agents start there only when asked, with the real path.
pub fn explicit_hint(path: &std::path::Path) -> String {
    format!(
        "This socket was named with --socket or JWTAGENT_SOCK; start an agent there with `jwtagent agent --socket {}`, or unset JWTAGENT_SOCK to use the default agent",
        path.display()
    )
}

/// When JWTAGENT_NO_AUTOSTART=1 is why no agent was started.
pub const NO_AUTOSTART_HINT: &str = "JWTAGENT_NO_AUTOSTART=1 is set, so no agent is started for you: start one with eval \"$(jwtagent env)\" (or `jwtagent agent`), or unset JWTAGENT_NO_AUTOSTART";

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::NoAgent { .. } => 3,
            CliError::Usage(_) => 2,
            CliError::Exit { code, .. } => *code,
            CliError::Agent(_) | CliError::Other(_) => 1,
        }
    }

    /// Maps a client error: "nothing listening" becomes exit 3 with `hint`.
    pub fn from_client(
        e: ClientError,
        hint: impl Into<std::borrow::Cow<'static, str>>,
    ) -> CliError {
        match e {
            ClientError::NotRunning { path, source } => CliError::NoAgent {
                path,
                reason: describe_io(&source),
                hint: hint.into(),
            },
            ClientError::Agent(body) => CliError::Agent(body),
            other => CliError::Other(other.into()),
        }
    }
}

pub fn describe_io(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no socket file".into(),
        std::io::ErrorKind::ConnectionRefused => "connection refused: stale socket".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}
