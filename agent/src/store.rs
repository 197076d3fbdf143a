//! The secret store: the OS keyring, reached from one dedicated thread.
//!
//! Keyring calls block (D-Bus round trips, syscalls) and the Secret Service store
//! panics when driven from a tokio worker, so every call runs on a thread of its
//! own with no runtime on it; async callers queue jobs and await the answer. The
//! one thread also serialises access, which some stores need, and holds the
//! keyutils session keyring it joined.

use jwtagent::config::StoreKind;
use jwtagent::secret::Secret;
use keyring_core::{CredentialStore, Error as KeyringError};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

/// Keyring service name; the account is `profile/NAME`.
pub(crate) const SERVICE: &str = "jwtagent";

/// A keyring call that takes longer than this (a hung D-Bus peer, an unanswered
/// unlock prompt) fails instead of holding the request forever.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The keyring account holding profile `name`'s secret, in generation
/// `generation` (see [`jwtagent::config::Profile::generation`]).
pub(crate) fn account(name: &str, generation: u32) -> String {
    with_generation(format!("profile/{name}"), generation)
}

/// The keyring account holding profile `name`'s DPoP private key.
pub(crate) fn dpop_account(name: &str, generation: u32) -> String {
    with_generation(format!("dpop/{name}"), generation)
}

/// The keyring account holding user profile `name`'s refresh token (from
/// `jwtagent login`).
pub(crate) fn refresh_account(name: &str, generation: u32) -> String {
    with_generation(format!("refresh/{name}"), generation)
}

/// `#` cannot appear in a profile name, so no generation's account is
/// another profile's.
fn with_generation(account: String, generation: u32) -> String {
    match generation {
        0 => account,
        n => format!("{account}#{n}"),
    }
}

/// Why a keyring backend could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum OpenError {
    #[error(
        "no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS is unset and $XDG_RUNTIME_DIR/bus does not exist)"
    )]
    NoBus,
    #[error("cannot reach a Secret Service on the session bus ({0})")]
    NoSecretService(String),
    #[error("cannot join a session keyring ({0})")]
    SessionKeyring(String),
    #[error("cannot open the {backend} keyring ({detail})")]
    Open { backend: Backend, detail: String },
    /// Opened, but a lookup of an entry that does not exist failed.
    #[error("the {backend} keyring does not answer ({detail})")]
    NoAnswer { backend: Backend, detail: String },
    #[error("the {store} store is available on {platform} only")]
    OtherPlatform {
        store: &'static str,
        platform: &'static str,
    },
    /// `auto` tried both Linux backends.
    #[error(
        "secret-service: {secret_service}; keyutils: {keyutils}. Start a Secret Service (GNOME Keyring, KWallet, KeePassXC) in your session, or make the kernel keyring usable (a kernel built with CONFIG_KEYS; in a container, keyctl allowed by its seccomp profile)"
    )]
    Neither {
        secret_service: Box<OpenError>,
        keyutils: Box<OpenError>,
    },
    #[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
    #[error("no supported keyring on this platform")]
    Unsupported,
    #[error("cannot start the keyring thread: {0}")]
    Thread(String),
}

impl OpenError {
    /// What to do about one backend that failed (`auto`'s [`OpenError::Neither`]
    /// says it for both).
    fn what_to_do(&self) -> &'static str {
        match self {
            OpenError::NoBus => {
                ". Run the agent inside your desktop session (or under `dbus-run-session`), or use the kernel keyring: `jwtagent agent --store keyutils`"
            }
            OpenError::NoSecretService(_) => {
                ". Start a Secret Service (GNOME Keyring, KWallet, or KeePassXC with its Secret Service integration) in your session, or use the kernel keyring: `jwtagent agent --store keyutils`"
            }
            OpenError::SessionKeyring(_) => {
                ". The kernel keyring needs a kernel built with CONFIG_KEYS and, in a container, keyctl allowed by its seccomp profile; or use a Secret Service: `jwtagent agent --store secret-service`"
            }
            _ => "",
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum StoreError {
    /// No backend could be opened; `tried` says each attempt and its failure.
    #[error("no secret store is available. Tried: {tried}{}", tried.what_to_do())]
    Unavailable { tried: OpenError },
    /// The backend refused access: typically a locked keyring.
    #[error("the {backend} keyring refused access ({detail}); {hint}")]
    NoAccess {
        backend: Backend,
        detail: String,
        hint: &'static str,
    },
    #[error("the {backend} keyring failed: {detail}")]
    Backend { backend: Backend, detail: String },
    #[error("the keyring did not answer within {}s", CALL_TIMEOUT.as_secs())]
    Timeout,
    #[error("the secret store thread has stopped")]
    Gone,
}

/// What `status` shows about the store, readable without queueing behind a
/// slow keyring call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StoreState {
    Opening,
    Ready(Backend),
    /// `auto` found no Secret Service and uses the kernel keyring, whose
    /// entries are gone at the next reboot.
    FellBack {
        backend: Backend,
        secret_service: OpenError,
    },
    Failed(OpenError),
}

impl StoreState {
    pub(crate) fn describe(&self) -> String {
        match self {
            StoreState::Opening => "opening".into(),
            StoreState::Ready(backend) | StoreState::FellBack { backend, .. } => {
                backend.name().into()
            }
            StoreState::Failed(why) => format!("unavailable: {why}"),
        }
    }

    /// What the user should know about a store that works, but less well
    /// than it could: said where they act (`add`, `status`).
    pub(crate) fn warning(&self) -> Option<String> {
        match self {
            StoreState::FellBack { secret_service, .. } => Some(format!(
                "secrets are in the kernel keyring, which loses them at the next reboot (no Secret Service: {secret_service}); start GNOME Keyring, KWallet or KeePassXC in your session and add the profiles again to keep them"
            )),
            _ => None,
        }
    }
}

/// The keyring backends jwtagent can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    SecretService,
    Keyutils,
    #[cfg(target_os = "macos")]
    Keychain,
    #[cfg(windows)]
    CredentialManager,
    /// An in-memory store (tests).
    #[cfg(test)]
    Mock,
}

impl Backend {
    /// The name `status` and errors show.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Backend::SecretService => "secret-service",
            Backend::Keyutils => "keyutils",
            #[cfg(target_os = "macos")]
            Backend::Keychain => "keychain",
            #[cfg(windows)]
            Backend::CredentialManager => "windows-credential-manager",
            #[cfg(test)]
            Backend::Mock => "mock",
        }
    }

    /// What to do when the backend refuses access.
    fn unlock_hint(self) -> &'static str {
        match self {
            Backend::SecretService => {
                "unlock the keyring (log in to the desktop session, or run `gnome-keyring-daemon --unlock`), or start the agent with `--store keyutils`"
            }
            Backend::Keyutils => {
                "check that the agent runs with a session keyring of your user (see `keyctl show`)"
            }
            #[cfg(target_os = "macos")]
            Backend::Keychain => "unlock the login keychain (Keychain Access), then try again",
            #[cfg(windows)]
            Backend::CredentialManager => {
                "check that your user session can use its credential store"
            }
            #[cfg(test)]
            Backend::Mock => "",
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// An opened backend.
pub(crate) struct Opened {
    store: Arc<CredentialStore>,
    backend: Backend,
    /// Why the better backend was not used, when `auto` fell back.
    fell_back: Option<OpenError>,
}

type Opener = Box<dyn FnMut() -> Result<Opened, OpenError> + Send>;
type Job = Box<dyn FnOnce(&mut Worker) + Send>;

struct Worker {
    open: Opener,
    opened: Option<Opened>,
    state: Arc<Mutex<StoreState>>,
}

impl Worker {
    /// The opened backend, opening it first if needed. A failed open is retried
    /// on the next call, so starting a keyring daemon later heals the agent.
    fn opened(&mut self) -> Result<&Opened, StoreError> {
        if self.opened.is_none() {
            match (self.open)() {
                Ok(opened) => {
                    tracing::info!(backend = opened.backend.name(), "secret store ready");
                    let state = match &opened.fell_back {
                        Some(why) => StoreState::FellBack {
                            backend: opened.backend,
                            secret_service: why.clone(),
                        },
                        None => StoreState::Ready(opened.backend),
                    };
                    set_state(&self.state, state);
                    self.opened = Some(opened);
                }
                Err(tried) => {
                    tracing::error!(tried = %tried, "no secret store available");
                    set_state(&self.state, StoreState::Failed(tried.clone()));
                    return Err(StoreError::Unavailable { tried });
                }
            }
        }
        self.opened.as_ref().ok_or(StoreError::Gone)
    }
}

fn set_state(state: &Mutex<StoreState>, new: StoreState) {
    if let Ok(mut s) = state.lock() {
        *s = new;
    }
}

/// Handle to the store thread. Cheap to clone: every clone talks to the
/// same thread.
#[derive(Clone)]
pub(crate) struct SecretStore {
    jobs: mpsc::Sender<Job>,
    state: Arc<Mutex<StoreState>>,
    service: Arc<str>,
}

impl SecretStore {
    /// Starts the store thread for `kind`; the backend is opened on it right away.
    /// Entries are kept under keyring service `service` (normally [`SERVICE`]).
    pub(crate) fn open(kind: StoreKind, service: &str) -> SecretStore {
        Self::spawn(Box::new(move || backends::open(kind)), service)
    }

    /// A store over a given keyring-core store (the mock store in tests).
    #[cfg(test)]
    pub(crate) fn with_store(store: Arc<CredentialStore>, backend: Backend) -> SecretStore {
        let mut store = Some(store);
        Self::spawn(
            Box::new(move || match store.take() {
                Some(store) => Ok(Opened {
                    store,
                    backend,
                    fell_back: None,
                }),
                None => Err(OpenError::Open {
                    backend,
                    detail: "store already opened".into(),
                }),
            }),
            SERVICE,
        )
    }

    fn spawn(open: Opener, service: &str) -> SecretStore {
        let (jobs, rx) = mpsc::channel::<Job>();
        let state = Arc::new(Mutex::new(StoreState::Opening));
        let mut worker = Worker {
            open,
            opened: None,
            state: state.clone(),
        };
        let spawned = std::thread::Builder::new()
            .name("jwtagent-keyring".into())
            .spawn(move || {
                let _ = worker.opened();
                for job in rx {
                    job(&mut worker);
                }
            });
        if let Err(e) = spawned {
            set_state(&state, StoreState::Failed(OpenError::Thread(e.to_string())));
        }
        SecretStore {
            jobs,
            state,
            service: service.into(),
        }
    }

    /// The keyring service entries are stored under.
    pub(crate) fn service(&self) -> &str {
        &self.service
    }

    /// The backend in use, for `status`.
    pub(crate) fn state(&self) -> StoreState {
        self.state
            .lock()
            .map(|s| s.clone())
            .unwrap_or(StoreState::Opening)
    }

    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Opened) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move |worker: &mut Worker| {
                let result = worker.opened().and_then(f);
                let _ = tx.send(result);
            }))
            .map_err(|_| StoreError::Gone)?;
        match tokio::time::timeout(CALL_TIMEOUT, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(StoreError::Gone),
            Err(_) => Err(StoreError::Timeout),
        }
    }

    /// The secret of profile `name` (generation `g`), or `None` when the
    /// keyring has none.
    pub(crate) async fn get(&self, name: &str, g: u32) -> Result<Option<Secret>, StoreError> {
        self.get_at(account(name, g)).await
    }

    /// Stores (creates or replaces) the secret of profile `name`.
    pub(crate) async fn set(&self, name: &str, g: u32, secret: Secret) -> Result<(), StoreError> {
        self.set_at(account(name, g), secret).await
    }

    /// Deletes the secret of profile `name`; `false` when there was none.
    pub(crate) async fn delete(&self, name: &str, g: u32) -> Result<bool, StoreError> {
        self.delete_at(account(name, g)).await
    }

    /// The DPoP private key of profile `name`, or `None`.
    pub(crate) async fn get_dpop(&self, name: &str, g: u32) -> Result<Option<Secret>, StoreError> {
        self.get_at(dpop_account(name, g)).await
    }

    /// Stores (creates or replaces) the DPoP private key of profile `name`.
    pub(crate) async fn set_dpop(&self, name: &str, g: u32, key: Secret) -> Result<(), StoreError> {
        self.set_at(dpop_account(name, g), key).await
    }

    /// Deletes the DPoP private key of profile `name`; `false` when there was none.
    pub(crate) async fn delete_dpop(&self, name: &str, g: u32) -> Result<bool, StoreError> {
        self.delete_at(dpop_account(name, g)).await
    }

    /// The refresh token of user profile `name`, or `None` (never signed in,
    /// or signed out).
    pub(crate) async fn get_refresh(
        &self,
        name: &str,
        g: u32,
    ) -> Result<Option<Secret>, StoreError> {
        self.get_at(refresh_account(name, g)).await
    }

    /// Stores the refresh token of user profile `name`, replacing the one
    /// there in one keyring call (never a delete then a write: a crash
    /// between the two would lose the only valid one).
    pub(crate) async fn set_refresh(
        &self,
        name: &str,
        g: u32,
        token: Secret,
    ) -> Result<(), StoreError> {
        self.set_at(refresh_account(name, g), token).await
    }

    /// Deletes the refresh token of user profile `name`; `false` when there was none.
    pub(crate) async fn delete_refresh(&self, name: &str, g: u32) -> Result<bool, StoreError> {
        self.delete_at(refresh_account(name, g)).await
    }

    async fn get_at(&self, account: String) -> Result<Option<Secret>, StoreError> {
        let service = self.service.clone();
        self.call(move |o| {
            let entry = o.entry(&service, &account)?;
            match entry.get_secret() {
                Ok(bytes) => Ok(Some(Secret::new(bytes))),
                Err(KeyringError::NoEntry) => Ok(None),
                Err(e) => Err(map_error(o.backend, e)),
            }
        })
        .await
    }

    async fn set_at(&self, account: String, secret: Secret) -> Result<(), StoreError> {
        let service = self.service.clone();
        self.call(move |o| {
            let entry = o.entry(&service, &account)?;
            entry
                .set_secret(secret.expose())
                .map_err(|e| map_error(o.backend, e))
        })
        .await
    }

    async fn delete_at(&self, account: String) -> Result<bool, StoreError> {
        let service = self.service.clone();
        self.call(move |o| {
            let entry = o.entry(&service, &account)?;
            match entry.delete_credential() {
                Ok(()) => Ok(true),
                Err(KeyringError::NoEntry) => Ok(false),
                Err(e) => Err(map_error(o.backend, e)),
            }
        })
        .await
    }
}

impl Opened {
    fn entry(&self, service: &str, account: &str) -> Result<keyring_core::Entry, StoreError> {
        self.store
            .build(service, account, None)
            .map_err(|e| map_error(self.backend, e))
    }
}

/// Maps a keyring error to ours, never carrying secret bytes along (some
/// variants hold the raw data).
fn map_error(backend: Backend, e: KeyringError) -> StoreError {
    match e {
        KeyringError::NoStorageAccess(detail) => StoreError::NoAccess {
            backend,
            detail: detail.to_string(),
            hint: backend.unlock_hint(),
        },
        KeyringError::BadEncoding(_) => StoreError::Backend {
            backend,
            detail: "the stored secret is not valid text".into(),
        },
        KeyringError::BadDataFormat(_, _) => StoreError::Backend {
            backend,
            detail: "the stored secret is in an unexpected format".into(),
        },
        other => StoreError::Backend {
            backend,
            detail: other.to_string(),
        },
    }
}

/// Opening the platform backends.
mod backends {
    use super::{Backend, OpenError, Opened};
    use jwtagent::config::StoreKind;

    pub(super) fn open(kind: StoreKind) -> Result<Opened, OpenError> {
        match kind {
            StoreKind::Auto => auto(),
            StoreKind::SecretService => secret_service(),
            StoreKind::Keyutils => keyutils(),
            StoreKind::Keychain => keychain(),
            StoreKind::WindowsCredentialManager => windows(),
        }
    }

    /// Probes a freshly opened store with a lookup of an entry that does not
    /// exist: "no entry" proves the store answers.
    #[cfg(target_os = "linux")]
    fn probe(opened: Opened) -> Result<Opened, OpenError> {
        let no_answer = |e: keyring_core::Error| OpenError::NoAnswer {
            backend: opened.backend,
            detail: e.to_string(),
        };
        let entry = opened
            .store
            .build(super::SERVICE, "probe/availability", None)
            .map_err(no_answer)?;
        match entry.get_secret() {
            Ok(_) | Err(keyring_core::Error::NoEntry) => Ok(opened),
            Err(e) => Err(no_answer(e)),
        }
    }

    #[cfg(target_os = "linux")]
    fn auto() -> Result<Opened, OpenError> {
        match secret_service() {
            Ok(opened) => Ok(opened),
            Err(ss) => match keyutils() {
                Ok(opened) => {
                    tracing::warn!(
                        secret_service = %ss,
                        "no Secret Service available; using the kernel keyutils keyring, whose entries do not survive a reboot"
                    );
                    Ok(Opened {
                        fell_back: Some(ss),
                        ..opened
                    })
                }
                Err(ku) => Err(OpenError::Neither {
                    secret_service: Box::new(ss),
                    keyutils: Box::new(ku),
                }),
            },
        }
    }

    #[cfg(target_os = "macos")]
    fn auto() -> Result<Opened, OpenError> {
        keychain()
    }

    #[cfg(windows)]
    fn auto() -> Result<Opened, OpenError> {
        windows()
    }

    #[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
    fn auto() -> Result<Opened, OpenError> {
        Err(OpenError::Unsupported)
    }

    #[cfg(target_os = "linux")]
    fn secret_service() -> Result<Opened, OpenError> {
        let has_bus = std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some_and(|a| !a.is_empty())
            || std::env::var_os("XDG_RUNTIME_DIR")
                .map(|d| std::path::Path::new(&d).join("bus").exists())
                .unwrap_or(false);
        if !has_bus {
            return Err(OpenError::NoBus);
        }
        let store = zbus_secret_service_keyring_store::Store::new()
            .map_err(|e| OpenError::NoSecretService(e.to_string()))?;
        probe(Opened {
            store,
            backend: Backend::SecretService,
            fell_back: None,
        })
    }

    #[cfg(not(target_os = "linux"))]
    fn secret_service() -> Result<Opened, OpenError> {
        Err(OpenError::OtherPlatform {
            store: "secret-service",
            platform: "Linux",
        })
    }

    #[cfg(target_os = "linux")]
    fn keyutils() -> Result<Opened, OpenError> {
        // Without a session keyring of its own, linking into the user's
        // persistent keyring fails with EACCES; join a fresh one (this thread
        // does every keyutils call).
        crate::sys::join_session_keyring().map_err(|e| OpenError::SessionKeyring(e.to_string()))?;
        let store = linux_keyutils_keyring_store::Store::new().map_err(|e| OpenError::Open {
            backend: Backend::Keyutils,
            detail: e.to_string(),
        })?;
        probe(Opened {
            store,
            backend: Backend::Keyutils,
            fell_back: None,
        })
    }

    #[cfg(not(target_os = "linux"))]
    fn keyutils() -> Result<Opened, OpenError> {
        Err(OpenError::OtherPlatform {
            store: "keyutils",
            platform: "Linux",
        })
    }

    #[cfg(target_os = "macos")]
    fn keychain() -> Result<Opened, OpenError> {
        let store =
            apple_native_keyring_store::keychain::Store::new().map_err(|e| OpenError::Open {
                backend: Backend::Keychain,
                detail: e.to_string(),
            })?;
        Ok(Opened {
            store,
            backend: Backend::Keychain,
            fell_back: None,
        })
    }

    #[cfg(not(target_os = "macos"))]
    fn keychain() -> Result<Opened, OpenError> {
        Err(OpenError::OtherPlatform {
            store: "keychain",
            platform: "macOS",
        })
    }

    #[cfg(windows)]
    fn windows() -> Result<Opened, OpenError> {
        let store = windows_native_keyring_store::Store::new().map_err(|e| OpenError::Open {
            backend: Backend::CredentialManager,
            detail: e.to_string(),
        })?;
        Ok(Opened {
            store,
            backend: Backend::CredentialManager,
            fell_back: None,
        })
    }

    #[cfg(not(windows))]
    fn windows() -> Result<Opened, OpenError> {
        Err(OpenError::OtherPlatform {
            store: "windows-credential-manager",
            platform: "Windows",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mock() -> SecretStore {
        SecretStore::with_store(
            keyring_core::mock::Store::new().unwrap(),
            crate::store::Backend::Mock,
        )
    }

    #[tokio::test]
    async fn set_get_delete_round_trip() {
        let store = mock();
        assert_eq!(store.get("a", 0).await.unwrap(), None);
        store
            .set("a", 0, Secret::new(b"s3cret".to_vec()))
            .await
            .unwrap();
        assert_eq!(
            store.get("a", 0).await.unwrap().unwrap().expose(),
            b"s3cret"
        );
        // Another generation is another entry.
        assert_eq!(store.get("a", 1).await.unwrap(), None);
        assert_eq!(account("a", 0), "profile/a");
        assert_eq!(account("a", 7), "profile/a#7");
        assert!(store.delete("a", 0).await.unwrap());
        assert!(!store.delete("a", 0).await.unwrap());
        assert_eq!(store.state(), StoreState::Ready(Backend::Mock));
    }

    #[tokio::test]
    async fn a_store_that_cannot_open_reports_what_was_tried() {
        let store = SecretStore::spawn(Box::new(|| Err(OpenError::NoBus)), SERVICE);
        let err = store.get("a", 0).await.unwrap_err();
        assert!(err.to_string().contains("no D-Bus session bus"), "{err}");
        assert!(matches!(store.state(), StoreState::Failed(_)));
    }
}
