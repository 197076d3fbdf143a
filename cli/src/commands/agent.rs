//! `jwtagent agent`: run the daemon, in the foreground or detached.

use crate::args::{AgentArgs, LogFormat};
use crate::daemon::{self, Started};
use crate::error::CliError;
use crate::logging;
use anyhow::{Context, anyhow};
use jwtagent::paths::SocketPath;
use jwtagent_agent::{Agent, Limits, Options};

/// The daemon's own binary, installed beside `jwtagent`.
const DAEMON_BINARY: &str = "jwtagent-agent";

/// Replaces this process with `jwtagent-agent` and the same arguments when
/// this is `jwtagent` and the daemon's binary is beside it: the same pid,
/// descriptors (a socket-activated listener, the readiness pipe) and
/// environment, a position-independent image. Returns only when there is
/// nothing to hand over to (then this binary runs the agent itself), or the
/// exec failed.
fn hand_over_to_daemon_binary() {
    use std::os::unix::process::CommandExt;
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    if exe.file_name().is_some_and(|n| n == DAEMON_BINARY) {
        return;
    }
    let daemon = exe.with_file_name(DAEMON_BINARY);
    if !daemon.is_file() {
        return;
    }
    let error = std::process::Command::new(&daemon)
        .args(std::env::args_os().skip(1))
        .exec();
    eprintln!(
        "jwtagent: cannot run {} ({error}); running the agent from {} instead",
        daemon.display(),
        exe.display()
    );
}

pub fn run(socket: &SocketPath, args: &AgentArgs, log_format: LogFormat) -> Result<(), CliError> {
    if !args.foreground {
        return start_detached(socket, args, log_format);
    }
    hand_over_to_daemon_binary();
    if args.detached_child {
        // Our own session: no controlling terminal, no signals from the shell's
        // job control. We are not a process-group leader, so this cannot fail
        // for that reason.
        rustix::process::setsid().context("cannot start a new session")?;
        let log_file = args.log_file.clone().or_else(daemon::default_log_file);
        if let Err(e) = logging::init_file(log_format, log_file.as_deref()) {
            daemon::report(Err(format!("{e:#}")))?;
            return Err(e.into());
        }
    } else {
        logging::init_stderr(log_format);
    }

    let Some(config_path) = jwtagent::config::config_path() else {
        let e = anyhow!("cannot find a config directory: set HOME or JWTAGENT_CONFIG");
        if args.detached_child {
            daemon::report(Err(e.to_string()))?;
        }
        return Err(e.into());
    };
    let config_path = std::path::absolute(&config_path).unwrap_or(config_path);
    let options = Options {
        limits: Limits::default(),
        config_path,
        store: args.store,
        keyring_service: std::env::var(jwtagent::paths::KEYRING_SERVICE_ENV).unwrap_or_default(),
        audit_log: jwtagent::paths::audit_log(),
    };
    // systemd socket activation: a listening socket in LISTEN_FDS is ours to
    // serve (and systemd's to remove).
    let inherited = listenfd::ListenFd::from_env()
        .take_unix_listener(0)
        .context("cannot take the socket passed by systemd (LISTEN_FDS)")?;
    let started = match inherited {
        Some(listener) => {
            tracing::info!("using the socket passed by systemd");
            Agent::start_inherited(listener, options)
        }
        None => Agent::start(&socket.path, options),
    };
    let agent = match started {
        Ok(agent) => agent,
        Err(e) => {
            tracing::error!(error = %e, "agent cannot start");
            if args.detached_child {
                daemon::report(Err(e.to_string()))?;
            }
            return Err(anyhow!(e).into());
        }
    };
    if args.detached_child {
        daemon::report(Ok(std::process::id()))?;
        // Like ssh-agent: a daemon keeps no directory busy (every path it uses
        // was made absolute above).
        let _ = std::env::set_current_dir("/");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("jwtagent-worker")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(agent.run()).map_err(anyhow::Error::from)?;
    Ok(())
}

fn start_detached(
    socket: &SocketPath,
    args: &AgentArgs,
    log_format: LogFormat,
) -> Result<(), CliError> {
    let log_file = args.log_file.clone().or_else(daemon::default_log_file);
    match daemon::spawn_detached(&socket.path, log_file.as_deref(), log_format, args.store)? {
        Started::Ready { pid } => {
            eprintln!(
                "jwtagent: agent started (pid {pid}) on {}",
                socket.path.display()
            );
            Ok(())
        }
        Started::Failed(message) => Err(anyhow!("cannot start the agent: {message}").into()),
    }
}
