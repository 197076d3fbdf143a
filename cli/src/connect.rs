//! Finding the agent: connect, check the protocol, and start one on the default
//! socket when the command needs an agent and none answers (like gpg-agent).

use crate::args::LogFormat;
use crate::daemon::{self, Started};
use crate::error::{CliError, NO_AUTOSTART_HINT, START_HINT, explicit_hint};
use anyhow::anyhow;
use jwtagent::client::DEFAULT_TIMEOUT;
use jwtagent::paths::{NO_AUTOSTART_ENV, SocketPath, SocketSource, check_socket_dir};
use jwtagent::protocol::Hello;
use jwtagent::{Client, ClientError};
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long to wait for an agent that another process is starting right now.
const RACE_DEADLINE: Duration = Duration::from_secs(10);

/// Resolves the socket path, making a relative `--socket` absolute so that what
/// `env` prints still works from another directory.
pub fn socket_path(flag: Option<&Path>) -> SocketPath {
    let mut socket = SocketPath::resolve(flag);
    if socket.path.is_relative()
        && let Ok(cwd) = std::env::current_dir()
    {
        socket.path = cwd.join(&socket.path);
    }
    socket
}

/// The `--timeout` of this run: how long to wait for the agent to accept and
/// to answer each request.
static TIMEOUT: OnceLock<Duration> = OnceLock::new();

pub fn set_timeout(timeout: Duration) {
    let _ = TIMEOUT.set(timeout);
}

/// How long the agent may take to answer one request (`--timeout`).
pub fn timeout() -> Duration {
    TIMEOUT.get().copied().unwrap_or(DEFAULT_TIMEOUT)
}

/// Connects and says hello, after checking the default socket's directory the
/// way the agent checks it (ours, private, not a symlink, in a directory no other
/// user can change): a predictable path in /tmp must not lead to another user's
/// listener. The peer's uid is checked by [`Client`] for every socket.
fn connect(socket: &SocketPath) -> Result<(Client, Hello), ClientError> {
    if socket.source == SocketSource::Default
        && let Some(dir) = socket.path.parent()
    {
        match std::fs::symlink_metadata(dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ClientError::NotRunning {
                    path: socket.path.clone(),
                    source: e,
                });
            }
            _ => check_socket_dir(dir)?,
        }
    }
    let timeout = TIMEOUT.get().copied().unwrap_or(DEFAULT_TIMEOUT);
    Client::connect_checked_timeout(&socket.path, timeout)
}

/// For the hot path (`token` and what is built on it): a connection that
/// has not said `hello` yet, for a request that carries it along
/// ([`Client::token_after_hello`]). When nothing answers, it is
/// [`connect_or_autostart`] with its errors and hints.
pub fn autostart_unchecked(socket: &SocketPath) -> Result<Client, CliError> {
    let timeout = TIMEOUT.get().copied().unwrap_or(DEFAULT_TIMEOUT);
    let default_dir_ok = || match (socket.source, socket.path.parent()) {
        (SocketSource::Default, Some(dir)) => check_socket_dir(dir).is_ok(),
        _ => true,
    };
    if default_dir_ok()
        && let Ok(client) = Client::connect_timeout(&socket.path, timeout)
    {
        return Ok(client);
    }
    connect_or_autostart(socket).map(|(client, _)| client)
}

/// Connects to a running agent; never starts one (for `status`, `stop`).
pub fn connect_existing(socket: &SocketPath) -> Result<(Client, Hello), CliError> {
    connect(socket).map_err(|e| {
        let hint = match socket.source {
            SocketSource::Default => START_HINT.to_string(),
            _ => explicit_hint(&socket.path),
        };
        CliError::from_client(e, hint)
    })
}

/// Connects for a command that needs an agent, starting one on the default socket
/// when none answers, unless `JWTAGENT_NO_AUTOSTART=1`. An explicit socket that
/// does not answer is an error (exit 3).
pub fn connect_or_autostart(socket: &SocketPath) -> Result<(Client, Hello), CliError> {
    let no_autostart = std::env::var_os(NO_AUTOSTART_ENV).is_some_and(|v| v == "1");
    if socket.source == SocketSource::Default && no_autostart {
        return connect(socket).map_err(|e| CliError::from_client(e, NO_AUTOSTART_HINT));
    }
    if socket.source != SocketSource::Default {
        return connect_existing(socket);
    }
    connect_or_start(socket)
}

/// Connects to the agent on `socket`, starting one if nothing answers. Safe to
/// race: of many processes doing this at once, one agent wins the socket and the
/// others connect to it.
pub fn connect_or_start(socket: &SocketPath) -> Result<(Client, Hello), CliError> {
    start_if_needed(socket).map(|(client, hello, _)| (client, hello))
}

/// As [`connect_or_start`], and whether this call started the agent.
pub fn start_if_needed(socket: &SocketPath) -> Result<(Client, Hello, bool), CliError> {
    match connect(socket) {
        Ok((client, hello)) => return Ok((client, hello, false)),
        Err(ClientError::NotRunning { .. }) => {}
        Err(e) => return Err(CliError::from_client(e, START_HINT)),
    }
    let failure = match daemon::spawn_detached(
        &socket.path,
        daemon::default_log_file().as_deref(),
        LogFormat::Text,
        &[],
    )? {
        Started::Ready { .. } => None,
        Started::Failed(message) => Some(message),
    };
    // Ready: connect now. Failed: most often another process started an agent on
    // this socket a moment ago (it holds the lock and is about to listen), so wait
    // for it to answer before reporting our own failure.
    let deadline = Instant::now()
        + if failure.is_some() {
            RACE_DEADLINE
        } else {
            Duration::ZERO
        };
    loop {
        match connect(socket) {
            Ok((client, hello)) => return Ok((client, hello, failure.is_none())),
            Err(ClientError::NotRunning { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => {
                return Err(match failure {
                    Some(message) => CliError::Other(anyhow!("cannot start the agent: {message}")),
                    None => CliError::from_client(e, START_HINT),
                });
            }
        }
    }
}

/// The agent's status once it has opened its secret store (it opens it
/// while it starts serving, so just after a start the store is "opening"
/// for a moment): asked again for up to 3 s.
pub fn settled_status(client: &mut Client) -> Result<jwtagent::protocol::Status, ClientError> {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let status = client.status()?;
        if status.store.as_deref() != Some("opening") || Instant::now() >= deadline {
            return Ok(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
