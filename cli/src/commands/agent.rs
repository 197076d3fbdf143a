//! `jwtagent agent`: run the daemon, in the foreground or detached.

use crate::args::{AgentArgs, LogFormat};
use crate::daemon::{self, Started};
use crate::error::CliError;
use crate::logging;
use anyhow::{Context, anyhow};
use jwtagent::paths::SocketPath;
use jwtagent_agent::{Agent, Limits, Options};

/// The agent itself: what `jwtagent-agent` runs. Only that binary links it
/// (with the HTTP client, TLS and the keyring), so `jwtagent` stays a small
/// client that asks nothing of the name service.
pub type Serve = fn(&SocketPath, &AgentArgs, LogFormat) -> Result<(), CliError>;

pub fn run(
    socket: &SocketPath,
    args: &AgentArgs,
    log_format: LogFormat,
    serve: Option<Serve>,
) -> Result<(), CliError> {
    if !args.foreground {
        return start_detached(socket, args, log_format);
    }
    match serve {
        Some(serve) => serve(socket, args, log_format),
        None => Err(hand_over_to_daemon_binary().into()),
    }
}

/// Replaces this process with `jwtagent-agent` and the same arguments: the
/// same pid, descriptors (a socket-activated listener) and environment.
/// Returns only the reason it could not.
fn hand_over_to_daemon_binary() -> anyhow::Error {
    use std::os::unix::process::CommandExt;
    let daemon = match daemon::daemon_binary() {
        Ok(daemon) => daemon,
        Err(e) => return e.context("cannot start the agent"),
    };
    let error = std::process::Command::new(&daemon)
        .args(std::env::args_os().skip(1))
        .exec();
    anyhow!(
        "cannot start the agent: cannot run {}: {error}",
        daemon.display()
    )
}

/// The options a detached agent is started with: the agent's own, as given.
fn passed_on(args: &AgentArgs) -> Vec<std::ffi::OsString> {
    let mut options: Vec<std::ffi::OsString> = Vec::new();
    if let Some(store) = args.store {
        options.extend(["--store".into(), store.as_str().into()]);
    }
    if let Some(file) = &args.store_passphrase_file {
        options.extend(["--store-passphrase-file".into(), file.into()]);
    }
    if let Some(lifetime) = args.lifetime {
        let lifetime = jwtagent::duration::format_duration(lifetime);
        options.extend(["--lifetime".into(), lifetime.into()]);
    }
    if let Some(idle) = args.lock_idle {
        let idle = jwtagent::duration::format_duration(idle);
        options.extend(["--lock-idle".into(), idle.into()]);
    }
    if args.lock_on_sleep {
        options.push("--lock-on-sleep".into());
    }
    if args.allow_forwarded_admin {
        options.push("--allow-forwarded-admin".into());
    }
    options
}

/// The agent's options from its arguments and the environment.
fn options(args: &AgentArgs) -> anyhow::Result<Options> {
    let config_path = jwtagent::config::config_path()
        .ok_or_else(|| anyhow!("cannot find a config directory: set HOME or JWTAGENT_CONFIG"))?;
    let config_path = std::path::absolute(&config_path).unwrap_or(config_path);
    Ok(Options {
        limits: Limits::default(),
        config_path,
        store: match args.store {
            Some(store) => Some(store),
            None => store_from_env()?,
        },
        forwarded_admin: args.allow_forwarded_admin,
        keyring_service: std::env::var(jwtagent::paths::KEYRING_SERVICE_ENV).unwrap_or_default(),
        audit_log: jwtagent::paths::audit_log(),
        store_passphrase: store_passphrase(args)?,
        lifetime: args.lifetime,
        lock_idle: args.lock_idle,
        lock_on_sleep: args.lock_on_sleep,
    })
}

/// `JWTAGENT_STORE`, the store when `--store` names none (before the
/// config's `store`).
fn store_from_env() -> anyhow::Result<Option<jwtagent::config::StoreKind>> {
    match std::env::var(jwtagent::paths::STORE_ENV) {
        Ok(value) if !value.is_empty() => value
            .parse()
            .map(Some)
            .map_err(|e: String| anyhow!("{}: {e}", jwtagent::paths::STORE_ENV)),
        _ => Ok(None),
    }
}

/// systemd's name for the credential holding the file store's passphrase
/// (`LoadCredential=jwtagent-store-passphrase:PATH`, or `LoadCredentialEncrypted=`).
const PASSPHRASE_CREDENTIAL: &str = "jwtagent-store-passphrase";

/// The file store's passphrase given for the start: `--store-passphrase-file`,
/// else the systemd credential when there is one. Its first line, at most
/// 4 KiB; the file is read once and not kept open.
fn store_passphrase(args: &AgentArgs) -> anyhow::Result<Option<jwtagent::secret::Secret>> {
    let path = args.store_passphrase_file.clone().or_else(|| {
        let dir = std::env::var_os("CREDENTIALS_DIRECTORY")?;
        let path = std::path::Path::new(&dir).join(PASSPHRASE_CREDENTIAL);
        path.exists().then_some(path)
    });
    let Some(path) = path else { return Ok(None) };
    let bytes = read_passphrase_file(&path)
        .with_context(|| format!("cannot read the store passphrase from {}", path.display()))?;
    let line = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.is_empty() {
        return Err(anyhow!(
            "the store passphrase file {} is empty",
            path.display()
        ));
    }
    Ok(Some(jwtagent::secret::Secret::new(line.to_vec())))
}

/// At most 4 KiB of `path`, which may be a pipe (`/dev/fd/N`).
fn read_passphrase_file(path: &std::path::Path) -> std::io::Result<zeroize::Zeroizing<Vec<u8>>> {
    use std::io::Read;
    let mut out = zeroize::Zeroizing::new(Vec::with_capacity(4096));
    std::fs::File::open(path)?
        .take(4096)
        .read_to_end(&mut out)?;
    Ok(out)
}

/// Runs the agent in this process, in the foreground: `jwtagent-agent agent -D`.
pub fn serve(socket: &SocketPath, args: &AgentArgs, log_format: LogFormat) -> Result<(), CliError> {
    // First, while the process has one thread: it may run the daemon again.
    jwtagent_agent::tune_allocator();
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

    let options = options(args).map_err(|e| {
        if args.detached_child {
            let _ = daemon::report(Err(format!("{e:#}")));
        }
        e
    })?;
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
    // On a worker thread, not on this one: the tasks the accept loop spawns
    // for connections then start on the worker that accepted them, where
    // spawning from outside the runtime's workers hands every connection to
    // another thread (a wake-up per connection).
    let serving = runtime.spawn(agent.run());
    runtime
        .block_on(serving)
        .context("the agent's main task failed")?
        .map_err(anyhow::Error::from)?;
    Ok(())
}

fn start_detached(
    socket: &SocketPath,
    args: &AgentArgs,
    log_format: LogFormat,
) -> Result<(), CliError> {
    let log_file = args.log_file.clone().or_else(daemon::default_log_file);
    match daemon::spawn_detached(
        &socket.path,
        log_file.as_deref(),
        log_format,
        &passed_on(args),
    )? {
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
