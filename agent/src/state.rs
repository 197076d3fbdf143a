//! What the agent knows, shared by every connection: its profiles and keyring,
//! the token cache, the lock and the audit log.

use crate::audit::Audit;
use crate::lock::Lock;
use crate::profiles::Profiles;
use crate::store::SecretStore;
use crate::tokens::Tokens;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// What the agent knows, shared by every connection.
pub(crate) struct AgentState {
    pub started: Instant,
    pub pid: u32,
    pub socket: PathBuf,
    pub profiles: Arc<Profiles>,
    pub tokens: Tokens,
    pub lock: Lock,
    pub audit: Audit,
    /// Users' sign-ins under way.
    pub logins: crate::login::Logins,
    /// Connections forwarded over SSH may do more than read
    /// (`--allow-forwarded-admin`).
    pub forwarded_admin: bool,
    /// The agent's `--store`, which overrides the config's.
    pub store_flag: Option<jwtagent::config::StoreKind>,
    /// The lifetimes of profiles with `--lifetime`.
    pub lifetimes: crate::controls::Lifetimes,
    /// The agent's `--lifetime`: for profiles added without one.
    pub default_lifetime: Option<std::time::Duration>,
    /// Confirmations asked and remembered (`--confirm`).
    pub confirms: crate::controls::Confirms,
    /// `--lock-idle`: lock after no request for this long.
    pub lock_idle: Option<std::time::Duration>,
    /// When the last request came, in milliseconds since `started` (kept
    /// only with `--lock-idle`).
    pub last_request_ms: std::sync::atomic::AtomicU64,
    /// When the last request came, for handing memory back once none comes.
    pub quiet: crate::quiet::Quiet,
    /// Files kept holding profiles' tokens.
    pub sinks: Arc<crate::sinks::Sinks>,
    /// This state, for what runs on after a request (an endpoint).
    pub me: std::sync::OnceLock<std::sync::Weak<AgentState>>,
}

impl AgentState {
    /// The state of an agent on `socket` whose profiles are in `config` and
    /// their secrets in `store`.
    #[cfg(test)]
    pub(crate) fn new(socket: PathBuf, config: PathBuf, store: SecretStore, audit: Audit) -> Self {
        let loaded = jwtagent::config::ConfigFile::load(&config);
        AgentState::with_config(socket, (config, loaded), store, audit)
    }

    /// [`AgentState::new`] with the config file already read.
    pub(crate) fn with_config(
        socket: PathBuf,
        (config, loaded): (
            PathBuf,
            Result<jwtagent::config::ConfigFile, jwtagent::config::ConfigError>,
        ),
        store: SecretStore,
        audit: Audit,
    ) -> Self {
        let profiles = Arc::new(Profiles::loaded(config, store.clone(), loaded));
        AgentState {
            started: Instant::now(),
            pid: std::process::id(),
            socket,
            tokens: Tokens::new(profiles.clone(), store),
            profiles,
            lock: Lock::default(),
            audit,
            logins: crate::login::Logins::default(),
            forwarded_admin: false,
            store_flag: None,
            lifetimes: Default::default(),
            default_lifetime: None,
            confirms: Default::default(),
            lock_idle: None,
            last_request_ms: Default::default(),
            quiet: Default::default(),
            sinks: Default::default(),
            me: Default::default(),
        }
    }

    /// Notes a request, for `--lock-idle`.
    pub(crate) fn active(&self) {
        if self.lock_idle.is_some() {
            let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
            self.last_request_ms
                .store(now, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// How long since the last request (or the start).
    pub(crate) fn idle_for(&self) -> std::time::Duration {
        let last = self
            .last_request_ms
            .load(std::sync::atomic::Ordering::Relaxed);
        self.started
            .elapsed()
            .saturating_sub(std::time::Duration::from_millis(last))
    }

    /// For tests: an agent on `dir/s.sock` with its config in `dir`, an
    /// in-memory secret store and no audit log.
    #[cfg(test)]
    pub(crate) fn for_tests(dir: &std::path::Path) -> Self {
        let store = crate::store::SecretStore::with_store(
            keyring_core::mock::Store::new().unwrap(),
            crate::store::Backend::Mock,
        );
        AgentState::new(
            dir.join("s.sock"),
            dir.join("profiles.toml"),
            store,
            Audit::new(None),
        )
    }
}
