//! The jwtagent daemon.
//!
//! [`Agent::start`] claims the socket (everything that can fail at startup fails
//! there, before the CLI reports readiness); [`Agent::run`] serves until a `stop`
//! request or SIGTERM/SIGINT and cleans up after itself.

#![deny(unsafe_code)]
#![deny(unreachable_pub)]

pub(crate) mod audit;
pub(crate) mod config_io;
pub(crate) mod connection;
pub(crate) mod controls;
pub(crate) mod dpop_keys;
pub(crate) mod endpoints;
pub(crate) mod error;
pub(crate) mod fetcher;
pub(crate) mod filestore;
pub(crate) mod handler;
pub(crate) mod harden;
pub(crate) mod jwk;
pub(crate) mod keys;
pub(crate) mod listener;
pub(crate) mod lock;
pub(crate) mod login;
#[cfg(target_os = "linux")]
pub(crate) mod logind;
pub(crate) mod loopback;
pub(crate) mod oauth;
pub(crate) mod ops;
pub(crate) mod peer;
pub(crate) mod policy;
pub(crate) mod profiles;
pub(crate) mod quiet;
pub(crate) mod refresh;
pub(crate) mod secret_command;
pub(crate) mod senders;
pub(crate) mod server;
pub(crate) mod sinks;
pub(crate) mod state;
pub(crate) mod store;
#[cfg(target_os = "linux")]
mod sys;
pub(crate) mod token_error;
pub(crate) mod tokens;

#[cfg(test)]
mod proptests;

use handler::AgentState;
use jwtagent::config::{ConfigFile, StoreKind};
use listener::{BindError, ClaimedSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use store::SecretStore;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

pub use server::Limits;
pub use sys::tune_allocator;

/// What the fuzz targets (in `fuzz/`) feed: the parsers that read what a
/// server or a file hands the agent. Nothing else of the agent is public.
pub mod fuzzing {
    pub use crate::keys::parse_private_key;
    pub use crate::oauth::auth::{AssertionHeader, client_assertion};
    pub use crate::oauth::{OAuthError, parse_token_response};
    use jwtagent::secret::Secret;

    /// The token_response target's check, on its raw input (a big-endian
    /// status, as libFuzzer's `(u16, &[u8])` reads it, then the body). It
    /// must never panic, and an error made from a 200 answer must never
    /// carry the body: it may hold a token. A token it accepts can go into
    /// a header.
    pub fn token_response(data: &[u8]) {
        let status = u16::from_be_bytes([
            data.first().copied().unwrap_or(0),
            data.get(1).copied().unwrap_or(0),
        ]);
        let body = data.get(2..).unwrap_or_default();
        let url = url::Url::parse("https://idp.example/token").expect("static URL");
        match parse_token_response(&url, status, None, body) {
            Ok(response) => {
                let token = response.access_token.expose();
                assert!(!token.is_empty() && token.iter().all(u8::is_ascii_graphic));
                assert!(["Bearer", "DPoP", "N_A"].contains(&response.token_type.as_str()));
            }
            // Only what the parser chose to show, never the body itself: the
            // lifetime it refused, or the token_type it cannot serve.
            Err(OAuthError::BadResponse { excerpt, .. }) if status == 200 => {
                assert!(
                    excerpt == "(body not shown)"
                        || excerpt.starts_with("expires_in is ")
                        || excerpt.starts_with("token_type "),
                    "a 200 answer's error shows {excerpt:?}"
                );
                assert!(!excerpt.chars().any(char::is_control), "{excerpt:?}");
            }
            // A 200 answer with an RFC 6749 error body is an error (GitHub
            // answers so): it shows the server's `error` and description,
            // made printable, and nothing else of the body.
            Err(OAuthError::Idp {
                error, description, ..
            }) if status == 200 => {
                // Members other than `error` are skipped unread (not checked
                // for valid UTF-8), as any serde struct does; a `Value` would
                // refuse such a body.
                #[derive(serde::Deserialize)]
                struct HasError {
                    error: serde_json::Value,
                }
                let has_error = serde_json::from_slice::<HasError>(body).is_ok_and(|b| {
                    b.error.as_str().is_some_and(|e| {
                        let shown = e
                            .chars()
                            .map(|c| if c.is_control() { '\u{fffd}' } else { c });
                        shown.eq(error.chars())
                    })
                });
                assert!(
                    has_error,
                    "a 200 answer without this `error` gave {error:?}"
                );
                for text in std::iter::once(&error).chain(description.as_ref()) {
                    assert!(!text.chars().any(char::is_control), "{text:?}");
                }
            }
            Err(e) => assert!(status != 200, "a 200 answer gave {e:?}"),
        }
    }

    /// The pem_loader target's check: a key the loader accepts signs.
    pub fn pem_loader(pem: &[u8]) {
        let secret = Secret::new(pem.to_vec());
        if let Ok((kind, _key)) = parse_private_key(&secret) {
            client_assertion(
                "fuzz",
                &secret,
                kind.default_alg(),
                AssertionHeader::default(),
                "https://idp.example",
            )
            .expect("an accepted key signs");
        }
    }

    #[cfg(test)]
    mod tests {
        /// Every committed seed of `target` (among them inputs that once
        /// crashed it) still passes its check, in the normal test run.
        fn replay(target: &str, check: fn(&[u8])) {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../fuzz/seeds")
                .join(target);
            let mut seen = 0;
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                check(&std::fs::read(&path).unwrap());
                seen += 1;
            }
            assert!(seen > 0, "no seeds in {}", dir.display());
        }

        #[test]
        fn token_response_seeds_pass() {
            replay("token_response", super::token_response);
        }

        #[test]
        fn pem_loader_seeds_pass() {
            replay("pem_loader", super::pem_loader);
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error("cannot make the agent non-dumpable: {0}")]
    Harden(std::io::Error),
    #[error("cannot set up the listener on {path}: {source}")]
    Listener {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error(
        "{0} locks the agent with nobody to give a passphrase: use the file store (--store file, whose passphrase unlocks), or set JWTAGENT_ASKPASS (or SSH_ASKPASS, with a display) so that unlocking asks the person at the keyboard"
    )]
    NoWayToUnlock(&'static str),
}

/// How the agent is set up, beyond its socket.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub limits: Limits,
    /// The config file (`JWTAGENT_CONFIG` or the XDG default, resolved by the caller).
    pub config_path: PathBuf,
    /// `--store`; overrides the config's `store`.
    pub store: Option<StoreKind>,
    /// Connections forwarded over SSH may do more than read
    /// (`--allow-forwarded-admin`).
    pub forwarded_admin: bool,
    /// Keyring service name; [`store::SERVICE`] unless `JWTAGENT_KEYRING_SERVICE` says otherwise.
    pub keyring_service: String,
    /// The audit log; `None` keeps none.
    pub audit_log: Option<PathBuf>,
    /// `--lifetime`: the lifetime of profiles added without one.
    pub lifetime: Option<std::time::Duration>,
    /// `--lock-idle`: lock after no request for this long.
    pub lock_idle: Option<std::time::Duration>,
    /// `--lock-on-sleep`: lock when the machine suspends or the session
    /// locks (systemd-logind's signals).
    pub lock_on_sleep: bool,
    /// The file store's passphrase, to open it at start
    /// (`--store-passphrase-file`, a systemd credential).
    pub store_passphrase: Option<jwtagent::secret::Secret>,
}

/// A started agent: the socket is claimed and accepts connections (the kernel
/// queues them) from the moment this exists.
pub struct Agent {
    socket: ClaimedSocket,
    options: Options,
}

/// Descriptors the agent may hold at once: two per connection (its socket
/// and the pidfd on its process) and some to spare.
fn descriptors_wanted(limits: &Limits) -> u64 {
    (limits.max_connections as u64).saturating_mul(2) + 256
}

impl Agent {
    /// Hardens the process and claims the socket at `path`. Call before starting
    /// the async runtime's work; it does no async I/O.
    pub fn start(path: &Path, options: Options) -> Result<Agent, StartError> {
        check_unattended_lock(&options)?;
        sys::keep_large_blocks_apart();
        harden::make_non_dumpable().map_err(StartError::Harden)?;
        harden::raise_nofile_limit(descriptors_wanted(&options.limits));
        let socket = listener::claim(path)?;
        Ok(Agent { socket, options })
    }

    /// Like [`Agent::start`], with a listening socket passed by systemd
    /// (`LISTEN_FDS`) instead of one of our own.
    pub fn start_inherited(
        listener: std::os::unix::net::UnixListener,
        options: Options,
    ) -> Result<Agent, StartError> {
        check_unattended_lock(&options)?;
        sys::keep_large_blocks_apart();
        harden::make_non_dumpable().map_err(StartError::Harden)?;
        harden::raise_nofile_limit(descriptors_wanted(&options.limits));
        let socket = ClaimedSocket::inherited(listener)?;
        Ok(Agent { socket, options })
    }

    /// The socket path.
    pub fn socket_path(&self) -> &Path {
        &self.socket.path
    }

    /// Serves until stopped, then removes the socket file. Must run inside a
    /// tokio runtime.
    pub async fn run(self) -> Result<(), StartError> {
        let path = self.socket.path.clone();
        let std_listener =
            self.socket
                .listener
                .try_clone()
                .map_err(|source| StartError::Listener {
                    path: path.clone(),
                    source,
                })?;
        let listener = tokio::net::UnixListener::from_std(std_listener).map_err(|source| {
            StartError::Listener {
                path: path.clone(),
                source,
            }
        })?;
        let shutdown = CancellationToken::new();
        let mut sigterm = signal(SignalKind::terminate()).map_err(StartError::Signals)?;
        let mut sigint = signal(SignalKind::interrupt()).map_err(StartError::Signals)?;
        // A detached agent has no terminal; one in the foreground should not die
        // with its terminal's hangup either (it is stopped with `jwtagent stop`).
        let mut sighup = signal(SignalKind::hangup()).map_err(StartError::Signals)?;
        let signals = {
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = sigterm.recv() => { tracing::info!("SIGTERM received, shutting down"); break }
                        _ = sigint.recv() => { tracing::info!("SIGINT received, shutting down"); break }
                        _ = sighup.recv() => tracing::debug!("SIGHUP ignored"),
                    }
                }
                shutdown.cancel();
            })
        };

        // Read once: for the store, and then kept as the profiles served.
        let config = profiles::load_config(&self.options.config_path);
        let store_kind = self
            .options
            .store
            .or_else(|| config.as_ref().ok().and_then(|c| c.store))
            .unwrap_or_default();
        // Where `auto` finds no Secret Service, it keeps using the kernel
        // keyring if that holds these profiles' secrets.
        let legacy: Vec<String> = config
            .iter()
            .flat_map(|c| c.profiles.iter())
            .map(|(name, p)| store::account(name, p.generation))
            .collect();
        let service = if self.options.keyring_service.is_empty() {
            store::SERVICE
        } else {
            &self.options.keyring_service
        };
        let store = SecretStore::open(store_kind, service, legacy);
        let audit = audit::Audit::new(self.options.audit_log.clone());
        let read = (self.options.config_path.clone(), config);
        let mut state = AgentState::with_config(path.clone(), read, store, audit);
        state.forwarded_admin = self.options.forwarded_admin;
        state.store_flag = self.options.store;
        state.default_lifetime = self.options.lifetime;
        state.lock_idle = self.options.lock_idle;
        if store_kind == StoreKind::File {
            // Sealed until its passphrase is given.
            state.lock = lock::Lock::sealed();
        }
        let state = Arc::new(state);
        let _ = state.me.set(Arc::downgrade(&state));
        tokio::spawn(ops::controls::end_lifetimes(state.clone()));
        tokio::spawn(ops::sinks::keep_fresh(state.clone()));
        let quieting = state.clone();
        tokio::spawn(async move {
            quieting
                .quiet
                .watch(quiet::QUIET, server::release_free_memory)
                .await
        });
        if let Some(idle) = self.options.lock_idle {
            tokio::spawn(ops::lock::lock_when_idle(state.clone(), idle));
        }
        if self.options.lock_on_sleep {
            lock_on_sleep(&state);
        }
        if store_kind == StoreKind::Auto {
            // `auto` chooses the file store where there is no Secret Service:
            // sealed as soon as that is known (an unlock before then finds
            // the store sealed all the same).
            let sealing = state.clone();
            tokio::spawn(async move {
                if sealing.profiles.store().opens_sealed().await {
                    sealing.lock.seal_at_start();
                }
            });
        }
        if let Some(passphrase) = &self.options.store_passphrase {
            match ops::lock::unlock(&state, passphrase).await {
                Ok(_) => tracing::info!("file store opened with the passphrase given at start"),
                Err(e) => tracing::error!(
                    error = %e,
                    "cannot open the file store with the passphrase given at start; it stays sealed until `jwtagent unlock`"
                ),
            }
        }
        // What a crash in the middle of an `add` left behind (in the
        // background: the keyring may be slow, and adds wait for it).
        let sweeping = state.profiles.clone();
        tokio::spawn(async move { sweeping.sweep().await });
        // Under systemd (Type=notify): ready now, the listener is bound.
        if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
            tracing::warn!(error = %e, "cannot notify systemd");
        }
        tracing::info!(socket = %path.display(), pid = state.pid, version = env!("CARGO_PKG_VERSION"), "agent listening");
        let state_for_shutdown = state.clone();
        let serving = server::serve(
            listener,
            state,
            self.options.limits.clone(),
            shutdown.clone(),
        );
        // Remove the socket file as soon as accepting stops, so clients see "no
        // agent" at once while in-flight requests drain.
        let socket = &self.socket;
        let removed = async {
            shutdown.cancelled().await;
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
            socket.remove_socket_file();
        };
        tokio::join!(serving, removed);
        ops::sinks::stop_all(&state_for_shutdown).await;
        state_for_shutdown.tokens.clear();
        state_for_shutdown.audit.flush();
        drop(self.socket.listener);
        signals.abort();
        tracing::info!("agent stopped");
        Ok(())
    }
}

/// An agent that may lock itself (`--lock-idle`, `--lock-on-sleep`) needs
/// a way to be unlocked: the file store's passphrase, or askpass.
fn check_unattended_lock(options: &Options) -> Result<(), StartError> {
    let option = match (options.lock_idle, options.lock_on_sleep) {
        (Some(_), _) => "--lock-idle",
        (None, true) => "--lock-on-sleep",
        (None, false) => return Ok(()),
    };
    let store = options.store.or_else(|| {
        ConfigFile::load(&options.config_path)
            .ok()
            .and_then(|c| c.store)
    });
    if store == Some(StoreKind::File) || controls::can_ask() {
        return Ok(());
    }
    Err(StartError::NoWayToUnlock(option))
}

/// `--lock-on-sleep`: logind's signals lock the agent; without a system bus,
/// a warning says it will not.
fn lock_on_sleep(state: &Arc<AgentState>) {
    #[cfg(target_os = "linux")]
    {
        let handle = tokio::runtime::Handle::current();
        let state = state.clone();
        logind::watch(move |why| {
            let state = state.clone();
            handle
                .spawn(async move { ops::lock::lock_unattended(&state, "lock_sleep", why).await });
        });
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = state;
        tracing::warn!(
            "--lock-on-sleep works on Linux only (systemd-logind): the agent will NOT lock when the machine sleeps"
        );
    }
}

/// Set `JWTAGENT_CRASH_AT` to a step name (`add:after-keyring`, ...) to make
/// the agent abort there, as a `kill -9` would: how the tests check that a
/// crash at each step of `add` loses nothing. Unset, it costs one lookup.
pub(crate) fn crash_point(step: &str) {
    if std::env::var_os("JWTAGENT_CRASH_AT").is_some_and(|at| at == step) {
        tracing::warn!(step, "JWTAGENT_CRASH_AT: aborting");
        std::process::abort();
    }
}
