//! The secret store: the OS keyring or jwtagent's own encrypted file
//! ([`crate::filestore`]), reached from one dedicated thread.
//!
//! Keyring calls block (D-Bus round trips, syscalls) and the Secret Service store
//! panics when driven from a tokio worker, so every call runs on a thread of its
//! own with no runtime on it; async callers queue jobs and await the answer. The
//! one thread also serialises access, which some stores need, and holds the
//! keyutils session keyring it joined.

use crate::filestore::{FileStore, FileStoreError};
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

/// The keyring account holding the registration access token (RFC 7592) of
/// the client `add --register` registered for profile `name`.
pub(crate) fn registration_account(name: &str, generation: u32) -> String {
    with_generation(format!("registration/{name}"), generation)
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
    /// `auto` found no Secret Service, and the config's profiles have their
    /// secrets in neither the kernel keyring nor a file store.
    #[error(
        "no Secret Service now ({secret_service}), and this config's secrets are neither in the kernel keyring nor in a file store: start the Secret Service that holds them (tried again at the next request); or, if they were in the kernel keyring and a reboot took them, start the agent with --store file and add the profiles again"
    )]
    Elsewhere { secret_service: Box<OpenError> },
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
    #[error(transparent)]
    File(#[from] FileStoreError),
    /// A profile's `secret_command` did not give its secret.
    #[error("the secret command `{command}` did not give the secret: {detail}")]
    Command { command: String, detail: String },
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
    /// The file store, until `jwtagent unlock` gives its passphrase; `exists`:
    /// whether the file is there yet (the first unlock creates it);
    /// `secret_service`: why `auto` did not use one, when it chose the file.
    Sealed {
        exists: bool,
        secret_service: Option<OpenError>,
    },
}

impl StoreState {
    pub(crate) fn describe(&self) -> String {
        match self {
            StoreState::Opening => "opening".into(),
            StoreState::Sealed { exists: true, .. } => {
                "file (sealed: run `jwtagent unlock` and give its passphrase)".into()
            }
            StoreState::Sealed { exists: false, .. } => {
                "file (not created yet: run `jwtagent unlock` to choose its passphrase)".into()
            }
            StoreState::Ready(backend) | StoreState::FellBack { backend, .. } => {
                backend.name().into()
            }
            StoreState::Failed(why) => format!("unavailable: {why}"),
        }
    }

    /// What the user should know about a store that works, but less well
    /// than it could: said where they act (`add`, `status`).
    pub(crate) fn warning(&self) -> Option<String> {
        let no_service = |why: &OpenError| {
            format!(
                "no Secret Service ({why}), so secrets are kept in jwtagent's encrypted file store (--store file)"
            )
        };
        match self {
            StoreState::FellBack {
                backend: Backend::Keyutils,
                secret_service,
            } => Some(format!(
                "secrets are in the kernel keyring, which loses them at the next reboot (no Secret Service: {secret_service}); keep them in jwtagent's encrypted file store with `jwtagent store migrate --to file`, or start a Secret Service (GNOME Keyring, KWallet, KeePassXC) and `jwtagent store migrate --to secret-service`"
            )),
            StoreState::FellBack { secret_service, .. } => Some(format!(
                "{}; --store keyutils keeps nothing on disk, but loses them at the next reboot",
                no_service(secret_service)
            )),
            StoreState::Sealed {
                exists,
                secret_service: Some(why),
            } => Some(format!(
                "{}, which {}; --store keyutils keeps nothing on disk, but loses them at the next reboot",
                no_service(why),
                if *exists {
                    "is sealed: run `jwtagent unlock` and give its passphrase"
                } else {
                    "does not exist yet: run `jwtagent unlock` to choose its passphrase"
                }
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
    File,
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
            Backend::File => "file",
            #[cfg(target_os = "macos")]
            Backend::Keychain => "keychain",
            #[cfg(windows)]
            Backend::CredentialManager => "windows-credential-manager",
            #[cfg(test)]
            Backend::Mock => "mock",
        }
    }

    /// Where `add` and `show` say a secret is: "secret stored in {place}".
    pub(crate) fn place(self) -> &'static str {
        match self {
            Backend::SecretService => "the Secret Service",
            Backend::Keyutils => "the kernel keyring",
            Backend::File => "the encrypted file store",
            #[cfg(target_os = "macos")]
            Backend::Keychain => "the login keychain",
            #[cfg(windows)]
            Backend::CredentialManager => "the Windows Credential Manager",
            #[cfg(test)]
            Backend::Mock => "the test store",
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
            Backend::File => "run `jwtagent unlock` and give the file store's passphrase",
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
    store: Kept,
    backend: Backend,
    /// Why the better backend was not used, when `auto` fell back.
    fell_back: Option<OpenError>,
}

/// Where an opened backend keeps entries.
enum Kept {
    Keyring(Arc<CredentialStore>),
    File(FileStore),
}

type Opener = Box<dyn FnMut() -> Result<Opened, OpenError> + Send>;
type Job = Box<dyn FnOnce(&mut Worker) + Send>;

struct Worker {
    open: Opener,
    opened: Option<Opened>,
    /// The store a migration copied to, until [`SecretStore::switch`].
    pending: Option<Opened>,
    state: Arc<Mutex<StoreState>>,
}

impl Worker {
    /// The opened backend, opening it first if needed. A failed open is retried
    /// on the next call, so starting a keyring daemon later heals the agent.
    fn opened(&mut self) -> Result<&mut Opened, StoreError> {
        if self.opened.is_none() {
            match (self.open)() {
                Ok(opened) => {
                    tracing::info!(backend = opened.backend.name(), "secret store ready");
                    set_state(&self.state, opened.state());
                    self.opened = Some(opened);
                }
                Err(tried) => {
                    tracing::error!(tried = %tried, "no secret store available");
                    set_state(&self.state, StoreState::Failed(tried.clone()));
                    return Err(StoreError::Unavailable { tried });
                }
            }
        }
        self.opened.as_mut().ok_or(StoreError::Gone)
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
    /// `legacy`: the accounts of the config's profiles, which `auto` looks
    /// for in the kernel keyring where there is no Secret Service (secrets
    /// an earlier jwtagent put there stay in use, until `store migrate`).
    pub(crate) fn open(kind: StoreKind, service: &str, legacy: Vec<String>) -> SecretStore {
        let owned = service.to_owned();
        let store = Self::spawn(
            Box::new(move || backends::open(kind, &owned, &legacy)),
            service,
        );
        // The file store opens sealed at once: said from the start, not
        // "opening" until its thread has run.
        if kind == StoreKind::File
            && let Some(path) = jwtagent::paths::store_file()
        {
            let exists = std::fs::symlink_metadata(path).is_ok();
            if let Ok(mut state) = store.state.lock()
                && *state == StoreState::Opening
            {
                *state = StoreState::Sealed {
                    exists,
                    secret_service: None,
                };
            }
        }
        store
    }

    /// A store over a given keyring-core store (the mock store in tests).
    #[cfg(test)]
    pub(crate) fn with_store(store: Arc<CredentialStore>, backend: Backend) -> SecretStore {
        let mut store = Some(store);
        Self::spawn(
            Box::new(move || match store.take() {
                Some(store) => Ok(Opened {
                    store: Kept::Keyring(store),
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

    /// The file store at `path` (tests).
    #[cfg(test)]
    pub(crate) fn file_at(path: std::path::PathBuf) -> SecretStore {
        let mut path = Some(path);
        Self::spawn(
            Box::new(move || match path.take() {
                Some(path) => Ok(Opened {
                    store: Kept::File(FileStore::new(path)),
                    backend: Backend::File,
                    fell_back: None,
                }),
                None => Err(OpenError::Open {
                    backend: Backend::File,
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
            pending: None,
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

    /// Where the store keeps secrets ([`Backend::place`]), once that is
    /// known: the backend opened, or the file store sealed.
    pub(crate) fn place(&self) -> Option<&'static str> {
        match self.state() {
            StoreState::Ready(backend) | StoreState::FellBack { backend, .. } => {
                Some(backend.place())
            }
            StoreState::Sealed { .. } => Some(Backend::File.place()),
            StoreState::Opening | StoreState::Failed(_) => None,
        }
    }

    /// The backend in use, for `status`.
    pub(crate) fn state(&self) -> StoreState {
        self.state
            .lock()
            .map(|s| s.clone())
            .unwrap_or(StoreState::Opening)
    }

    /// Runs `f` on the opened backend, on the store's thread.
    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Opened) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.call_worker(CALL_TIMEOUT, move |worker| worker.opened().and_then(f))
            .await
    }

    /// Runs `f` on the store's thread, waiting at most `limit`; then
    /// publishes what `status` shows (sealed or opened, created).
    async fn call_worker<T: Send + 'static>(
        &self,
        limit: Duration,
        f: impl FnOnce(&mut Worker) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move |worker: &mut Worker| {
                let result = f(worker);
                if let Some(opened) = &worker.opened {
                    set_state(&worker.state, opened.state());
                }
                let _ = tx.send(result);
            }))
            .map_err(|_| StoreError::Gone)?;
        match tokio::time::timeout(limit, rx).await {
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

    /// The registration access token of profile `name`'s registered client,
    /// or `None`.
    pub(crate) async fn get_registration(
        &self,
        name: &str,
        g: u32,
    ) -> Result<Option<Secret>, StoreError> {
        self.get_at(registration_account(name, g)).await
    }

    /// Stores the registration access token of profile `name`'s client.
    pub(crate) async fn set_registration(
        &self,
        name: &str,
        g: u32,
        token: Secret,
    ) -> Result<(), StoreError> {
        self.set_at(registration_account(name, g), token).await
    }

    /// Deletes the registration access token of profile `name`; `false`
    /// when there was none.
    pub(crate) async fn delete_registration(&self, name: &str, g: u32) -> Result<bool, StoreError> {
        self.delete_at(registration_account(name, g)).await
    }

    async fn get_at(&self, account: String) -> Result<Option<Secret>, StoreError> {
        let service = self.service.clone();
        self.call(move |o| o.get(&service, &account)).await
    }

    async fn set_at(&self, account: String, secret: Secret) -> Result<(), StoreError> {
        let service = self.service.clone();
        self.call(move |o| o.set(&service, &account, secret)).await
    }

    async fn delete_at(&self, account: String) -> Result<bool, StoreError> {
        let service = self.service.clone();
        self.call(move |o| o.delete(&service, &account)).await
    }

    /// Wipes the file store's key and secrets from memory (nothing for a
    /// keyring, which the OS keeps).
    pub(crate) async fn seal(&self) -> Result<(), StoreError> {
        self.call(|o| {
            if let Kept::File(file) = &mut o.store {
                file.seal();
            }
            Ok(())
        })
        .await
    }

    /// Opens the file store with `passphrase`, creating it when it does not
    /// exist yet (Argon2id: a fraction of a second, on the store's thread).
    pub(crate) async fn unseal(&self, passphrase: Secret) -> Result<(), StoreError> {
        self.call(move |o| match &mut o.store {
            Kept::File(file) => Ok(file.unseal(&passphrase)?),
            Kept::Keyring(_) => Ok(()),
        })
        .await
    }

    /// `store migrate`, first half: opens the `to` store (the file store
    /// with `passphrase`, created if need be) on the store's thread, copies
    /// every entry of `accounts` there and reads each back. The copy waits
    /// for [`SecretStore::switch`]; nothing changes in the store in use.
    /// Answers how many entries were copied.
    pub(crate) async fn copy_to(
        &self,
        to: StoreKind,
        passphrase: Option<Secret>,
        accounts: Vec<String>,
    ) -> Result<usize, MigrateError> {
        let service = self.service.clone();
        // Argon2id, and a keyring call per entry: more than one call's time.
        self.call_worker(CALL_TIMEOUT * 4, move |worker| {
            Ok(worker.copy_to(to, passphrase, &service, &accounts))
        })
        .await?
    }

    /// `store migrate`, second half (once the config names the new store):
    /// the copy becomes the store in use, and `accounts` are deleted from the
    /// old one. Answers the entries that could not be deleted, with why.
    pub(crate) async fn switch(&self, accounts: Vec<String>) -> Result<Vec<String>, StoreError> {
        let service = self.service.clone();
        self.call_worker(CALL_TIMEOUT, move |worker| {
            let new = worker.pending.take().ok_or(StoreError::Gone)?;
            let mut old = worker.opened.replace(new).ok_or(StoreError::Gone)?;
            Ok(accounts
                .iter()
                .filter_map(|account| match old.delete(&service, account) {
                    Ok(_) => None,
                    Err(e) => Some(format!("{account}: {e}")),
                })
                .collect())
        })
        .await
    }

    /// Whether the store is the file store (whose passphrase is the lock's).
    pub(crate) fn is_file(&self) -> bool {
        matches!(
            self.state(),
            StoreState::Sealed { .. }
                | StoreState::Ready(Backend::File)
                | StoreState::FellBack {
                    backend: Backend::File,
                    ..
                }
        )
    }

    /// Whether the store, once opened, is a sealed file store (`auto` may
    /// choose the file store only when it finds no Secret Service).
    pub(crate) async fn opens_sealed(&self) -> bool {
        self.call(|o| Ok(matches!(o.state(), StoreState::Sealed { .. })))
            .await
            .unwrap_or(false)
    }
}

/// Why `store migrate` did not copy.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MigrateError {
    #[error("cannot open the {to} store: {why}")]
    Open { to: StoreKind, why: OpenError },
    #[error("the secrets are in the {0} store already")]
    Same(Backend),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("the copy of {account} in the {to} store reads back different; nothing was switched")]
    Differs { account: String, to: Backend },
}

impl Worker {
    fn copy_to(
        &mut self,
        to: StoreKind,
        passphrase: Option<Secret>,
        service: &str,
        accounts: &[String],
    ) -> Result<usize, MigrateError> {
        let mut target =
            backends::open(to, service, &[]).map_err(|why| MigrateError::Open { to, why })?;
        let from = self.opened()?;
        if target.backend == from.backend {
            return Err(MigrateError::Same(from.backend));
        }
        if let (Kept::File(file), Some(passphrase)) = (&mut target.store, &passphrase) {
            file.unseal(passphrase).map_err(StoreError::from)?;
        }
        let mut copied = 0;
        for account in accounts {
            let Some(secret) = from.get(service, account)? else {
                continue;
            };
            target.set(service, account, secret.clone())?;
            if target.get(service, account)?.as_ref() != Some(&secret) {
                return Err(MigrateError::Differs {
                    account: account.clone(),
                    to: target.backend,
                });
            }
            copied += 1;
        }
        self.pending = Some(target);
        Ok(copied)
    }
}

impl Opened {
    /// What `status` shows of this backend.
    fn state(&self) -> StoreState {
        match (&self.store, &self.fell_back) {
            (Kept::File(file), why) if file.is_sealed() => StoreState::Sealed {
                exists: file.exists(),
                secret_service: why.clone(),
            },
            (_, Some(why)) => StoreState::FellBack {
                backend: self.backend,
                secret_service: why.clone(),
            },
            (_, None) => StoreState::Ready(self.backend),
        }
    }

    fn get(&self, service: &str, account: &str) -> Result<Option<Secret>, StoreError> {
        match &self.store {
            Kept::File(file) => Ok(file.get(&file_key(service, account))?),
            Kept::Keyring(store) => {
                match entry(store, self.backend, service, account)?.get_secret() {
                    Ok(bytes) => Ok(Some(Secret::new(bytes))),
                    Err(KeyringError::NoEntry) => Ok(None),
                    Err(e) => Err(map_error(self.backend, e)),
                }
            }
        }
    }

    fn set(&mut self, service: &str, account: &str, secret: Secret) -> Result<(), StoreError> {
        match &mut self.store {
            Kept::File(file) => Ok(file.set(&file_key(service, account), secret)?),
            Kept::Keyring(store) => entry(store, self.backend, service, account)?
                .set_secret(secret.expose())
                .map_err(|e| map_error(self.backend, e)),
        }
    }

    fn delete(&mut self, service: &str, account: &str) -> Result<bool, StoreError> {
        match &mut self.store {
            Kept::File(file) => Ok(file.delete(&file_key(service, account))?),
            Kept::Keyring(store) => {
                match entry(store, self.backend, service, account)?.delete_credential() {
                    Ok(()) => Ok(true),
                    Err(KeyringError::NoEntry) => Ok(false),
                    Err(e) => Err(map_error(self.backend, e)),
                }
            }
        }
    }
}

fn entry(
    store: &Arc<CredentialStore>,
    backend: Backend,
    service: &str,
    account: &str,
) -> Result<keyring_core::Entry, StoreError> {
    store
        .build(service, account, None)
        .map_err(|e| map_error(backend, e))
}

/// An entry's name in the file store: the keyring's service and account, so
/// that agents with their own `JWTAGENT_KEYRING_SERVICE` keep apart there too.
fn file_key(service: &str, account: &str) -> String {
    format!("{service}/{account}")
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

    pub(super) fn open(
        kind: StoreKind,
        service: &str,
        legacy: &[String],
    ) -> Result<Opened, OpenError> {
        match kind {
            StoreKind::Auto => auto(service, legacy),
            StoreKind::SecretService => secret_service(),
            StoreKind::Keyutils => keyutils(),
            StoreKind::File => file(),
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
        let super::Kept::Keyring(store) = &opened.store else {
            return Ok(opened);
        };
        let entry = store
            .build(super::SERVICE, "probe/availability", None)
            .map_err(no_answer)?;
        match entry.get_secret() {
            Ok(_) | Err(keyring_core::Error::NoEntry) => Ok(opened),
            Err(e) => Err(no_answer(e)),
        }
    }

    /// A Secret Service when one answers; else the file store, unless the
    /// kernel keyring holds secrets of the config's profiles (put there by
    /// an earlier jwtagent, whose `auto` chose it) and no file store exists.
    #[cfg(target_os = "linux")]
    fn auto(service: &str, legacy: &[String]) -> Result<Opened, OpenError> {
        let ss = match secret_service() {
            Ok(opened) => return Ok(opened),
            Err(ss) => ss,
        };
        // No data directory for a file (no HOME): the kernel keyring, as
        // before there was a file store.
        let file = match file() {
            Ok(file) => file,
            Err(why) => {
                return keyutils()
                    .map(|opened| Opened {
                        fell_back: Some(ss.clone()),
                        ..opened
                    })
                    .map_err(|ku| OpenError::Neither {
                        secret_service: Box::new(ss),
                        keyutils: Box::new(OpenError::Open {
                            backend: Backend::File,
                            detail: format!("{why}; and keyutils: {ku}"),
                        }),
                    });
            }
        };
        let file_exists = matches!(&file.store, super::Kept::File(f) if f.exists());
        if !file_exists
            && !legacy.is_empty()
            && let Ok(opened) = keyutils()
            && legacy
                .iter()
                .any(|account| matches!(opened.get(service, account), Ok(Some(_))))
        {
            tracing::warn!(
                secret_service = %ss,
                "no Secret Service available; the kernel keyring holds this config's secrets, which do not survive a reboot: `jwtagent store migrate --to file` keeps them"
            );
            return Ok(Opened {
                fell_back: Some(ss),
                ..opened
            });
        }
        if !file_exists && !legacy.is_empty() {
            // This config's secrets are in no store the agent can reach now:
            // most likely a Secret Service that has not started yet (tried
            // again at the next request), not a file store to make.
            return Err(OpenError::Elsewhere {
                secret_service: Box::new(ss),
            });
        }
        tracing::warn!(
            secret_service = %ss,
            "no Secret Service available; using jwtagent's encrypted file store"
        );
        Ok(Opened {
            fell_back: Some(ss),
            ..file
        })
    }

    #[cfg(target_os = "macos")]
    fn auto(_: &str, _: &[String]) -> Result<Opened, OpenError> {
        keychain()
    }

    #[cfg(windows)]
    fn auto(_: &str, _: &[String]) -> Result<Opened, OpenError> {
        windows()
    }

    #[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
    fn auto(_: &str, _: &[String]) -> Result<Opened, OpenError> {
        Err(OpenError::Unsupported)
    }

    /// The file store, sealed: `jwtagent unlock` opens it.
    pub(super) fn file() -> Result<Opened, OpenError> {
        let path = jwtagent::paths::store_file().ok_or(OpenError::Open {
            backend: Backend::File,
            detail: "neither XDG_DATA_HOME nor HOME is an absolute path".into(),
        })?;
        Ok(Opened {
            store: super::Kept::File(super::FileStore::new(path)),
            backend: Backend::File,
            fell_back: None,
        })
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
            store: super::Kept::Keyring(store),
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
            store: super::Kept::Keyring(store),
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
            store: super::Kept::Keyring(store),
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
            store: super::Kept::Keyring(store),
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

    /// The accounts are where earlier versions keep users' secrets: a name
    /// changed would lose them. Each kind of secret is an entry of its own.
    #[tokio::test]
    async fn each_kind_of_secret_is_its_own_entry_under_its_own_name() {
        assert_eq!(dpop_account("web", 0), "dpop/web");
        assert_eq!(refresh_account("web", 0), "refresh/web");
        assert_eq!(registration_account("web", 0), "registration/web");
        assert_eq!(refresh_account("web", 2), "refresh/web#2");
        let store = mock();
        let s = |v: &str| Secret::new(v.as_bytes().to_vec());
        store.set("web", 0, s("client")).await.unwrap();
        store.set_dpop("web", 0, s("dpop")).await.unwrap();
        store.set_refresh("web", 0, s("refresh")).await.unwrap();
        store.set_registration("web", 0, s("reg")).await.unwrap();
        let read = |v: Option<Secret>| String::from_utf8(v.unwrap().expose().to_vec()).unwrap();
        assert_eq!(read(store.get("web", 0).await.unwrap()), "client");
        assert_eq!(read(store.get_dpop("web", 0).await.unwrap()), "dpop");
        assert_eq!(read(store.get_refresh("web", 0).await.unwrap()), "refresh");
        assert_eq!(read(store.get_registration("web", 0).await.unwrap()), "reg");
        assert_eq!(store.get_refresh("web", 1).await.unwrap(), None);
        // Each delete takes its own entry, and says whether there was one.
        assert!(store.delete_refresh("web", 0).await.unwrap());
        assert!(!store.delete_refresh("web", 0).await.unwrap());
        assert_eq!(store.get_refresh("web", 0).await.unwrap(), None);
        assert!(store.delete_registration("web", 0).await.unwrap());
        assert!(!store.delete_registration("web", 0).await.unwrap());
        assert_eq!(store.get_registration("web", 0).await.unwrap(), None);
        assert!(store.delete_dpop("web", 0).await.unwrap());
        assert!(!store.delete_dpop("web", 0).await.unwrap());
        assert_eq!(read(store.get("web", 0).await.unwrap()), "client");
        assert_eq!(store.service(), SERVICE);
        assert!(!store.is_file());
        assert!(!store.opens_sealed().await);
    }

    /// What `status`, `add` and errors say of each state and backend: the
    /// name a user passes to `--store`, and what to do.
    #[test]
    fn each_state_and_failure_says_what_it_is_and_what_to_do() {
        use StoreState::*;
        let no_bus = || OpenError::NoBus;
        assert_eq!(Opening.describe(), "opening");
        assert_eq!(Ready(Backend::Keyutils).describe(), "keyutils");
        let fell_back = |backend| FellBack {
            backend,
            secret_service: no_bus(),
        };
        assert_eq!(fell_back(Backend::File).describe(), "file");
        let sealed = |exists, secret_service| Sealed {
            exists,
            secret_service,
        };
        assert!(
            sealed(true, None)
                .describe()
                .contains("sealed: run `jwtagent unlock`")
        );
        assert!(sealed(false, None).describe().contains("not created yet"));
        assert!(
            Failed(no_bus())
                .describe()
                .starts_with("unavailable: no D-Bus session bus")
        );

        let warned = |state: StoreState| state.warning().unwrap_or_default();
        let w = warned(fell_back(Backend::Keyutils));
        assert!(
            w.contains("loses them at the next reboot (no Secret Service: no D-Bus"),
            "{w}"
        );
        assert!(w.contains("`jwtagent store migrate --to file`"), "{w}");
        let w = warned(fell_back(Backend::File));
        assert!(w.starts_with("no Secret Service (no D-Bus"), "{w}");
        assert!(
            w.contains("encrypted file store (--store file); --store keyutils"),
            "{w}"
        );
        let w = warned(sealed(true, Some(no_bus())));
        assert!(w.contains("which is sealed: run `jwtagent unlock`"), "{w}");
        let w = warned(sealed(false, Some(no_bus())));
        assert!(w.contains("which does not exist yet"), "{w}");
        assert_eq!(sealed(true, None).warning(), None);
        assert_eq!(Ready(Backend::SecretService).warning(), None);

        let unavailable = |tried| StoreError::Unavailable { tried }.to_string();
        let e = unavailable(no_bus());
        assert!(e.contains("does not exist). Run the agent inside your desktop session (or under `dbus-run-session`)"), "{e}");
        let e = unavailable(OpenError::NoSecretService("refused".into()));
        assert!(
            e.contains("(refused). Start a Secret Service (GNOME Keyring"),
            "{e}"
        );
        let e = unavailable(OpenError::SessionKeyring("ENOSYS".into()));
        assert!(
            e.contains("(ENOSYS). The kernel keyring needs a kernel built with CONFIG_KEYS"),
            "{e}"
        );
        let open = OpenError::Open {
            backend: Backend::SecretService,
            detail: "d".into(),
        };
        assert!(unavailable(open).ends_with("cannot open the secret-service keyring (d)"));

        for (backend, name, hint) in [
            (
                Backend::SecretService,
                "secret-service",
                "gnome-keyring-daemon --unlock",
            ),
            (Backend::Keyutils, "keyutils", "keyctl show"),
            (Backend::File, "file", "jwtagent unlock"),
        ] {
            assert_eq!(backend.name(), name);
            assert_eq!(backend.to_string(), name);
            assert!(backend.unlock_hint().contains(hint), "{backend}");
        }
    }

    #[tokio::test]
    async fn a_store_that_cannot_open_reports_what_was_tried() {
        let store = SecretStore::spawn(Box::new(|| Err(OpenError::NoBus)), SERVICE);
        let err = store.get("a", 0).await.unwrap_err();
        assert!(err.to_string().contains("no D-Bus session bus"), "{err}");
        assert!(matches!(store.state(), StoreState::Failed(_)));
    }
}
