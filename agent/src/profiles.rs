//! Profiles: the config file and the keyring, kept consistent.
//!
//! The agent is the only writer of profiles.toml. Writes are serialised, each
//! one re-reads the file first (so a hand edit is not lost), and nothing is
//! written over a file that does not parse. `add` stores the secret before the
//! config and puts the old secret back if the config cannot be written, so a
//! failed `add` leaves the old profile whole.

use crate::config_io::write_atomic;
use crate::jwk;
use crate::keys::check_secret;
use crate::store::{SecretStore, StoreError};
use jwtagent::chain::ChainError;
use jwtagent::config::{
    Alg, AuthMethod, ConfigError, ConfigFile, Profile, StoreKind, validate_name,
};
use jwtagent::secret::Secret;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Why a profile operation failed; each maps to a protocol error code.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum ProfileError {
    /// `add` (or `keygen`, which adds) refused the profile.
    #[error("cannot {} {name:?}: {reason}", if *.keygen { "generate a key for" } else { "add profile" })]
    Refused {
        name: String,
        keygen: bool,
        reason: Refusal,
    },
    /// `jwks` of a profile that has no usable key pair.
    #[error("profile {name:?} {reason}")]
    NoKeyPair { name: String, reason: NoKeyPair },
    #[error("no profile named {0:?}; `jwtagent list` shows the profiles")]
    Unknown(String),
    /// The file has the profile, but it is not valid: skipped.
    #[error("{0}")]
    Skipped(String),
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// Why profile `name` is not among `config`'s profiles: not valid in the
/// file (and why), or not there.
pub(crate) fn not_served(config: &ConfigFile, name: &str) -> ProfileError {
    match config.skipped_reason(name) {
        Some(reason) => ProfileError::Skipped(reason.to_string()),
        None => ProfileError::Unknown(name.to_string()),
    }
}

/// A profile as stored: its name, its settings, and (when looked up) whether
/// the keyring holds its secret.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub name: String,
    pub profile: Arc<Profile>,
    pub secret_stored: Option<bool>,
    /// Where the secret was looked for or stored ([`crate::store::Backend::place`]).
    pub stored_in: Option<&'static str>,
}

/// What `add` did.
#[derive(Debug, Clone)]
pub(crate) struct Saved {
    /// A new profile, not a replaced one.
    pub created: bool,
    pub entry: Entry,
}

/// What `remove` left behind: the keyring entry it could not delete, with why.
#[derive(Debug, Clone)]
pub(crate) struct Leftover {
    pub service: String,
    pub account: String,
    pub error: StoreError,
}

/// Why `add` or `keygen` refused a profile.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum Refusal {
    /// The name is not one a profile can have.
    #[error("{0}")]
    Name(String),
    #[error(transparent)]
    Field(#[from] jwtagent::config::FieldError),
    #[error(transparent)]
    Secret(#[from] crate::keys::KeyError),
    #[error(transparent)]
    Certificate(#[from] crate::oauth::tls::CertError),
    #[error("ca_file: cannot read {}: {cause}", path.display())]
    CaFileUnreadable { path: PathBuf, cause: String },
    #[error("ca_file: {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)", .0.display())]
    CaFileEmpty(PathBuf),
    /// Generating (or reading back) a key failed.
    #[error(transparent)]
    Key(#[from] crate::jwk::JwkError),
    #[error(
        "the profile exists, and replacing its key breaks the one registered with the authorization server; use --force to replace it, or choose another name"
    )]
    Exists,
    #[error("it takes tokens from profile {0:?}, which does not exist; add that one first")]
    NoInput(String),
    #[error(
        "it has no secret or key to replace (auth none, and a grant that signs nothing); `jwtagent add` it again to change how it authenticates"
    )]
    NoSecret,
    #[error(
        "its secret comes from its --secret-command, so none is stored; change the command with `jwtagent add`, or drop it to store a secret"
    )]
    SecretAndCommand,
    #[error("profiles would feed each other tokens in a circle: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
    #[error(
        "its chain of profiles feeding each other tokens would be longer than {} links: {}",
        jwtagent::chain::MAX_DEPTH,
        .0.join(" -> ")
    )]
    TooDeep(Vec<String>),
}

/// Why `jwks` has no public key to show.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum NoKeyPair {
    #[error(
        "uses {0}, which has no key pair (private_key_jwt, tls_client_auth and self_signed_tls_client_auth have); `jwtagent keygen` makes a private_key_jwt profile"
    )]
    NotPrivateKeyJwt(AuthMethod),
    #[error("has a certificate that cannot be read: {0}")]
    BadCertificate(crate::oauth::tls::CertError),
    #[error(
        "has no key in the keyring (it was deleted outside jwtagent); run `jwtagent keygen {0} --force ...` again"
    )]
    KeyMissing(String),
    #[error("has no alg; add it again")]
    NoAlg,
    #[error("has a key that cannot be used: {0}")]
    BadKey(crate::jwk::JwkError),
}

/// Identity of the file as last read, to notice edits made behind our back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: i64,
    mtime_nsec: i64,
    /// A chmod or chown changes only the ctime: the file is checked again.
    ctime: i64,
    ctime_nsec: i64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    std::fs::metadata(path).ok().map(|m| Stamp {
        dev: m.dev(),
        ino: m.ino(),
        len: m.len(),
        mtime: m.mtime(),
        mtime_nsec: m.mtime_nsec(),
        ctime: m.ctime(),
        ctime_nsec: m.ctime_nsec(),
    })
}

struct Loaded {
    config: Result<Arc<ConfigFile>, ConfigError>,
    stamp: Option<Stamp>,
    /// When the file was last checked for changes.
    checked: Instant,
}

/// A config this large has its leftovers handed back to the system after
/// it is read or written.
const MANY: usize = 1000;

/// How often the hot path looks at the file for hand edits.
const RECHECK: Duration = Duration::from_secs(1);

/// Writes the config file; a seam so tests can make the write fail.
type WriteFn = fn(&Path, &[u8]) -> Result<(), crate::config_io::WriteError>;

pub(crate) struct Profiles {
    path: PathBuf,
    loaded: Mutex<Loaded>,
    writer: tokio::sync::Mutex<()>,
    write: WriteFn,
    store: SecretStore,
}

impl Profiles {
    /// Loads `path` (a missing file is an empty config). A config that does not
    /// parse is kept as an error: reported by every op and by `status`, and
    /// re-read once the file changes.
    #[cfg(test)]
    pub(crate) fn new(path: PathBuf, store: SecretStore) -> Profiles {
        let config = ConfigFile::load(&path);
        Profiles::loaded(path, store, config)
    }

    /// [`Profiles::new`] with the file already read (`config`): the agent
    /// reads it once at start, for its store and for this.
    pub(crate) fn loaded(
        path: PathBuf,
        store: SecretStore,
        config: Result<ConfigFile, ConfigError>,
    ) -> Profiles {
        match &config {
            Ok(c) => {
                tracing::info!(path = %path.display(), profiles = c.profiles.len(), "config loaded");
            }
            Err(e) => tracing::error!(error = %e, "config not usable"),
        }
        Profiles {
            loaded: Mutex::new(Loaded {
                config: config.map(Arc::new),
                stamp: stamp(&path),
                checked: Instant::now(),
            }),
            path,
            writer: tokio::sync::Mutex::new(()),
            write: write_atomic,
            store,
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn store(&self) -> &SecretStore {
        &self.store
    }

    /// The config as it is on disk now (re-read when the file changed).
    pub(crate) fn current(&self) -> Result<Arc<ConfigFile>, ConfigError> {
        self.load_if_changed(Duration::ZERO)
    }

    /// Like [`Profiles::current`], but looks at the file at most once a second:
    /// for the token path, which must stay cheap. A hand edit reaches it within
    /// a second.
    pub(crate) fn current_fast(&self) -> Result<Arc<ConfigFile>, ConfigError> {
        self.load_if_changed(RECHECK)
    }

    fn load_if_changed(&self, max_age: Duration) -> Result<Arc<ConfigFile>, ConfigError> {
        let mut loaded = self
            .loaded
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if loaded.checked.elapsed() >= max_age || loaded.config.is_err() {
            let now = stamp(&self.path);
            loaded.checked = Instant::now();
            // A config in error is read again each time: what made it unusable
            // (its directory's mode, say) may be fixed without touching it.
            if loaded.stamp != now || loaded.config.is_err() {
                let before = loaded.config.as_ref().err().map(ToString::to_string);
                loaded.config = load_config(&self.path).map(Arc::new);
                loaded.stamp = now;
                // Logged once per distinct error, not once per request.
                if let Err(e) = &loaded.config
                    && before.as_deref() != Some(e.to_string().as_str())
                {
                    tracing::error!(error = %e, "config not usable");
                }
            }
        }
        loaded.config.clone()
    }

    /// The config to change, as the file holds it now: the one in memory
    /// when the file has not changed since it was read or written (a hand
    /// edit changes its stamp), else the file read again. Not parsing
    /// 10,000 profiles again for each `add` is most of its cost.
    fn for_write(&self) -> Result<ConfigFile, ConfigError> {
        {
            let loaded = self
                .loaded
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Ok(config) = &loaded.config
                && loaded.stamp.is_some()
                && stamp(&self.path) == loaded.stamp
            {
                return Ok((**config).clone());
            }
        }
        ConfigFile::load(&self.path)
    }

    fn remember(&self, config: ConfigFile) {
        let mut loaded = self
            .loaded
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let many = config.profiles.len() >= MANY;
        loaded.config = Ok(Arc::new(config));
        loaded.stamp = stamp(&self.path);
        loaded.checked = Instant::now();
        if many {
            // The copy that was written, and its text.
            release_free_memory();
        }
    }

    fn config(&self) -> Result<ConfigFile, ProfileError> {
        self.current()
            .map(|c| (*c).clone())
            .map_err(|e| ProfileError::Config(e.to_string()))
    }

    pub(crate) fn list(&self) -> Result<Vec<Entry>, ProfileError> {
        let config = self
            .current()
            .map_err(|e| ProfileError::Config(e.to_string()))?;
        Ok(config
            .profiles
            .iter()
            .map(|(name, profile)| Entry {
                name: name.clone(),
                profile: Arc::clone(profile),
                secret_stored: None,
                stored_in: None,
            })
            .collect())
    }

    /// Why profile `name` is not among the profiles served: not valid in
    /// the file, or not there.
    pub(crate) fn not_served(&self, name: &str) -> ProfileError {
        match self.current_fast() {
            Ok(config) => not_served(&config, name),
            Err(_) => ProfileError::Unknown(name.to_string()),
        }
    }

    /// Profile `name` as the config file has it now, or why it is not
    /// served (not there, or not valid).
    pub(crate) fn get(&self, name: &str) -> Result<Profile, ProfileError> {
        let config = self
            .current()
            .map_err(|e| ProfileError::Config(e.to_string()))?;
        config
            .profiles
            .get(name)
            .map(|p| Profile::clone(p))
            .ok_or_else(|| not_served(&config, name))
    }

    /// One profile, with whether its secret is in the keyring.
    pub(crate) async fn show(&self, name: &str) -> Result<Entry, ProfileError> {
        let profile = self.get(name)?;
        let secret_stored =
            if profile.auth == AuthMethod::None || !profile.secret_command.is_empty() {
                // A command's secret is not looked for: that would run it.
                None
            } else {
                // The secret is dropped (and wiped) right away; only its presence is told.
                Some(self.store.get(name, profile.generation).await?.is_some())
            };
        Ok(Entry {
            name: name.to_string(),
            profile: Arc::new(profile),
            stored_in: secret_stored.and_then(|_| self.store.place()),
            secret_stored,
        })
    }

    /// Creates or replaces a profile. Validates everything first; then stores
    /// the secret (and a new DPoP key), then writes the config, putting back
    /// what was in the keyring before if anything fails.
    pub(crate) async fn add(
        &self,
        name: &str,
        profile: Profile,
        secret: Option<Secret>,
    ) -> Result<Saved, ProfileError> {
        self.add_registered(name, profile, secret, None).await
    }

    /// [`Profiles::add`] of a profile whose client `add` registered: the
    /// `registration` access token (RFC 7592) goes to the store with the
    /// secret.
    pub(crate) async fn add_registered(
        &self,
        name: &str,
        profile: Profile,
        secret: Option<Secret>,
        registration: Option<Secret>,
    ) -> Result<Saved, ProfileError> {
        let checked = secret.clone();
        self.save(name, profile, (secret, registration), checked, false)
            .await
    }

    /// [`Profiles::add`] for a profile whose secret comes from its command:
    /// `given` (what the command printed) is checked, and not stored.
    pub(crate) async fn add_commanded(
        &self,
        name: &str,
        profile: Profile,
        given: Secret,
    ) -> Result<Saved, ProfileError> {
        self.save(name, profile, (None, None), Some(given), false)
            .await
    }

    /// [`Profiles::add`] for a profile that stays the same but for its secret
    /// (`jwtagent secret`): a user profile's sign-in is carried over to the
    /// new generation with the secret, before the config names it.
    pub(crate) async fn replace_secret(
        &self,
        name: &str,
        profile: Profile,
        secret: Secret,
    ) -> Result<Saved, ProfileError> {
        let checked = Some(secret.clone());
        self.save(name, profile, (Some(secret), None), checked, true)
            .await
    }

    /// Saves `profile`, storing `secret` and its client's `registration`
    /// access token; `checked` is the secret its settings are checked with
    /// (the stored one, or its command's). With `keep_sign_in`, the old
    /// generation's refresh token and registration go to the new one.
    async fn save(
        &self,
        name: &str,
        mut profile: Profile,
        (secret, registration): (Option<Secret>, Option<Secret>),
        checked: Option<Secret>,
        keep_sign_in: bool,
    ) -> Result<Saved, ProfileError> {
        let dpop_key = prepare(name, &mut profile, checked.as_ref())
            .await
            .map_err(refused(name))?;

        let _guard = self.writer.lock().await;
        let mut config = self
            .for_write()
            .map_err(|e| ProfileError::Config(format!("cannot add profile {name:?}: {e}")))?;
        check_inputs(&config, name, &profile).map_err(refused(name))?;
        let old = config.profiles.get(name).cloned();
        let created = old.is_none();
        // The new secret and key go to entries of a new generation; the old
        // ones stay until the config names the new: a crash anywhere leaves
        // the config naming one complete profile, old or new.
        let generation = old.as_ref().map_or(0, |o| o.generation.wrapping_add(1));
        profile.generation = generation;
        crate::crash_point("add:before-keyring");

        // 1. The keyring.
        let result = async {
            if let Some(new) = &secret {
                self.store.set(name, generation, new.clone()).await?;
            }
            if let Some(key) = &dpop_key {
                self.store.set_dpop(name, generation, key.clone()).await?;
            }
            if let Some(token) = &registration {
                self.store
                    .set_registration(name, generation, token.clone())
                    .await?;
            }
            if keep_sign_in && let Some(old) = &old {
                self.carry_sign_in(name, old.generation, generation).await?;
            }
            crate::crash_point("add:after-keyring");
            // 2. The config: the switch.
            config.skipped.remove(name);
            config.profiles.insert(name.into(), profile.clone().into());
            self.write(&config).await
        }
        .await;
        if let Err(e) = result {
            // Nothing names the new entries: remove them; the old profile
            // and its entries were never touched.
            self.delete_entries(name, generation, secret.is_some(), dpop_key.is_some())
                .await;
            if keep_sign_in || registration.is_some() {
                self.delete_sign_in(name, generation).await;
            }
            return Err(e);
        }
        crate::crash_point("add:after-config");

        // 3. The old generation's entries are no longer named by anything;
        // a sign-in belongs to the settings it was made with.
        if let Some(old) = &old {
            self.delete_entries(name, old.generation, true, true).await;
            self.delete_sign_in(name, old.generation).await;
        }
        self.remember(config);
        let wrote_secret = secret.is_some();
        tracing::info!(profile = %name, created, auth = %profile.auth, dpop = profile.dpop, "profile saved");
        Ok(Saved {
            created,
            entry: Entry {
                name: name.to_string(),
                profile: Arc::new(profile),
                secret_stored: Some(wrote_secret),
                stored_in: self.store.place(),
            },
        })
    }

    /// Copies a user profile's sign-in (its refresh token) and its client's
    /// registration from generation `from` to `to`.
    async fn carry_sign_in(&self, name: &str, from: u32, to: u32) -> Result<(), StoreError> {
        if let Some(rt) = self.store.get_refresh(name, from).await? {
            self.store.set_refresh(name, to, rt).await?;
        }
        if let Some(token) = self.store.get_registration(name, from).await? {
            self.store.set_registration(name, to, token).await?;
        }
        Ok(())
    }

    /// Deletes a generation's refresh token and registration access token
    /// (best effort, as [`Profiles::delete_entries`]).
    async fn delete_sign_in(&self, name: &str, generation: u32) {
        if let Err(e) = self.store.delete_refresh(name, generation).await {
            tracing::warn!(profile = %name, generation, error = %e, "could not delete a refresh token no profile uses");
        }
        if let Err(e) = self.store.delete_registration(name, generation).await {
            tracing::warn!(profile = %name, generation, error = %e, "could not delete a registration access token no profile uses");
        }
    }

    /// `profile` as `add` would save it (its `kid` and the rest filled in),
    /// checked as `add` checks it, without saving anything.
    pub(crate) async fn prepared(
        &self,
        name: &str,
        mut profile: Profile,
        secret: Option<&Secret>,
    ) -> Result<Profile, ProfileError> {
        profile.dpop = false;
        profile.dpop_alg = None;
        prepare(name, &mut profile, secret)
            .await
            .map_err(refused(name))?;
        Ok(profile)
    }

    /// Deletes a generation's keyring entries (best effort: a failure is
    /// logged, and the entry is swept at the next start).
    async fn delete_entries(&self, name: &str, generation: u32, secret: bool, dpop: bool) {
        if secret && let Err(e) = self.store.delete(name, generation).await {
            tracing::warn!(profile = %name, generation, error = %e, "could not delete a keyring entry no profile uses");
        }
        if dpop && let Err(e) = self.store.delete_dpop(name, generation).await {
            tracing::warn!(profile = %name, generation, error = %e, "could not delete a DPoP key no profile uses");
        }
    }

    /// After a crash: deletes the keyring entries that a replace left behind
    /// (the generation before each profile's, and the one after it), and the
    /// config writer's stale temp files. Run once at start.
    pub(crate) async fn sweep(&self) {
        // Held throughout, so that no `add` writes a generation being swept.
        let _guard = self.writer.lock().await;
        let path = self.path.clone();
        let _ =
            tokio::task::spawn_blocking(move || crate::config_io::remove_stale_temp_files(&path))
                .await;
        let Ok(config) = self.current() else { return };
        for (name, profile) in &config.profiles {
            let current = profile.generation;
            let before = current.checked_sub(1);
            for generation in before.into_iter().chain([current.wrapping_add(1)]) {
                let secret = self.store.delete(name, generation).await;
                let dpop = self.store.delete_dpop(name, generation).await;
                let refresh = self.store.delete_refresh(name, generation).await;
                let registration = self.store.delete_registration(name, generation).await;
                if [secret, dpop, refresh, registration]
                    .iter()
                    .any(|r| matches!(r, Ok(true)))
                {
                    tracing::info!(profile = %name, generation, "deleted keyring entries an interrupted add left behind");
                }
            }
        }
    }

    /// `keygen`: generates a private key in the agent, stores it, and creates
    /// a private_key_jwt profile with it. Answers with the public JWKS to
    /// register; the private key never leaves the agent. An existing profile is
    /// replaced only with `force` (its registered key would stop working).
    pub(crate) async fn keygen(
        &self,
        name: &str,
        mut profile: Profile,
        alg: Alg,
        force: bool,
    ) -> Result<(Saved, serde_json::Value), ProfileError> {
        let invalid = |reason: Refusal| ProfileError::Refused {
            name: name.to_string(),
            keygen: true,
            reason,
        };
        if !force && self.config()?.profiles.contains_key(name) {
            return Err(invalid(Refusal::Exists));
        }
        let pem = jwk::generate(alg).map_err(|e| invalid(Refusal::Key(e)))?;
        if profile.auth == AuthMethod::SelfSignedTlsClientAuth {
            // A key and a self-signed certificate for it: the server knows
            // the client by the certificate's thumbprint.
            let certificate = crate::oauth::tls::self_signed(&pem, &profile.client_id)
                .map_err(|e| invalid(Refusal::Certificate(e)))?;
            profile.certificate = Some(certificate);
            let saved = self.add(name, profile, Some(pem)).await?;
            let jwks = self.jwks(name).await?;
            return Ok((saved, jwks));
        }
        let invalid = |e: crate::jwk::JwkError| invalid(Refusal::Key(e));
        let kid = match profile.kid.take() {
            Some(kid) => kid,
            None => jwk::thumbprint(&jwk::public_jwk(&pem).map_err(invalid)?),
        };
        let jwks = jwk::jwks(&pem, alg, &kid).map_err(invalid)?;
        profile.auth = AuthMethod::PrivateKeyJwt;
        profile.alg = Some(alg);
        profile.kid = Some(kid);
        let saved = self.add(name, profile, Some(pem)).await?;
        Ok((saved, jwks))
    }

    /// The public JWKS of a key-based profile's key (private_key_jwt, or a
    /// TLS client certificate's), with its certificate chain when it has one.
    pub(crate) async fn jwks(&self, name: &str) -> Result<serde_json::Value, ProfileError> {
        let profile = self
            .config()?
            .profiles
            .remove(name)
            .ok_or_else(|| self.not_served(name))?;
        let fail = |reason: NoKeyPair| ProfileError::NoKeyPair {
            name: name.to_string(),
            reason,
        };
        if !profile.has_private_key() {
            return Err(fail(NoKeyPair::NotPrivateKeyJwt(profile.auth)));
        }
        let pem = crate::secret_command::secret_of(&self.store, name, &profile)
            .await?
            .ok_or_else(|| fail(NoKeyPair::KeyMissing(name.to_string())))?;
        if let Some(cert) = &profile.certificate {
            let certificate = |e| fail(NoKeyPair::BadCertificate(e));
            let chain: Vec<Vec<u8>> = crate::oauth::tls::certificates(cert)
                .map_err(certificate)?
                .iter()
                .map(|der| der.to_vec())
                .collect();
            let x5t = crate::oauth::tls::x5t_s256(cert).map_err(certificate)?;
            return jwk::jwks_with_chain(&pem, profile.alg, profile.kid.as_deref(), &chain, &x5t)
                .map_err(|e| fail(NoKeyPair::BadKey(e)));
        }
        let public = jwk::public_jwk(&pem).map_err(|e| fail(NoKeyPair::BadKey(e)))?;
        let kid = profile
            .kid
            .clone()
            .unwrap_or_else(|| jwk::thumbprint(&public));
        let alg = profile.alg.ok_or_else(|| fail(NoKeyPair::NoAlg))?;
        jwk::jwks(&pem, alg, &kid).map_err(|e| fail(NoKeyPair::BadKey(e)))
    }

    async fn write(&self, config: &ConfigFile) -> Result<(), ProfileError> {
        let text = config.to_toml();
        let path = self.path.clone();
        let write = self.write;
        tokio::task::spawn_blocking(move || write(&path, text.as_bytes()))
            .await
            .map_err(|e| ProfileError::Config(format!("config writer failed: {e}")))?
            .map_err(|e| ProfileError::Config(e.to_string()))
    }

    /// The keyring accounts of every profile's current generation: secret,
    /// DPoP key and refresh token (whichever it has).
    pub(crate) fn accounts(&self) -> Result<Vec<String>, ProfileError> {
        let config = self
            .current()
            .map_err(|e| ProfileError::Config(e.to_string()))?;
        Ok(config
            .profiles
            .iter()
            .flat_map(|(name, p)| {
                [
                    crate::store::account(name, p.generation),
                    crate::store::dpop_account(name, p.generation),
                    crate::store::refresh_account(name, p.generation),
                    crate::store::registration_account(name, p.generation),
                ]
            })
            .collect())
    }

    /// Replaces profile `name`'s sinks, keeping everything else (its
    /// generation too: its secrets and sign-in stay). The profile as saved.
    pub(crate) async fn set_sinks(
        &self,
        name: &str,
        sinks: Vec<jwtagent::config::Sink>,
    ) -> Result<Profile, ProfileError> {
        let _guard = self.writer.lock().await;
        let mut config = self
            .for_write()
            .map_err(|e| ProfileError::Config(format!("cannot change the sinks: {e}")))?;
        let Some(profile) = config.profiles.get_mut(name) else {
            return Err(not_served(&config, name));
        };
        let profile = Arc::make_mut(profile);
        profile.sinks = sinks;
        profile
            .validate()
            .map_err(|e| refused(name)(Refusal::Field(e)))?;
        let saved = profile.clone();
        self.write(&config).await?;
        self.remember(config);
        Ok(saved)
    }

    /// Names `store` as the config's secret store.
    pub(crate) async fn set_store(&self, store: StoreKind) -> Result<(), ProfileError> {
        let _guard = self.writer.lock().await;
        let mut config = self
            .for_write()
            .map_err(|e| ProfileError::Config(format!("cannot switch the store: {e}")))?;
        config.store = Some(store);
        self.write(&config).await?;
        self.remember(config);
        Ok(())
    }

    /// Deletes a profile from the config, then its keyring entry.
    pub(crate) async fn remove(&self, name: &str) -> Result<Option<Leftover>, ProfileError> {
        let _guard = self.writer.lock().await;
        let mut config = self
            .for_write()
            .map_err(|e| ProfileError::Config(format!("cannot remove profile {name:?}: {e}")))?;
        // A profile that is not valid goes too (its secrets are found by
        // the generation it names, if it names one it can).
        let generation = match config.profiles.remove(name) {
            Some(removed) => removed.generation,
            None => match config.skipped.remove(name) {
                Some(skipped) => skipped.generation(),
                None => return Err(ProfileError::Unknown(name.to_string())),
            },
        };
        self.write(&config).await?;
        self.remember(config);
        tracing::info!(profile = %name, "profile removed");
        if let Err(e) = self.store.delete_dpop(name, generation).await {
            tracing::warn!(profile = %name, error = %e, "profile removed but its DPoP key was not");
        }
        if let Err(e) = self.store.delete_refresh(name, generation).await {
            tracing::warn!(profile = %name, error = %e, "profile removed but its refresh token was not");
        }
        if let Err(e) = self.store.delete_registration(name, generation).await {
            tracing::warn!(profile = %name, error = %e, "profile removed but its registration access token was not");
        }
        match self.store.delete(name, generation).await {
            Ok(_) => Ok(None),
            Err(error) => {
                tracing::warn!(profile = %name, %error, "profile removed but its keyring entry was not");
                Ok(Some(Leftover {
                    service: self.store.service().to_string(),
                    account: crate::store::account(name, generation),
                    error,
                }))
            }
        }
    }
}

/// A config file this large (some 600 profiles) is read by [`load_config`]
/// on a thread of its own.
const LARGE_CONFIG: u64 = 64 * 1024;

/// Reads the config file at `path`. A large one is parsed on a thread of
/// its own and copied here, profile after profile: parsing 10,000 profiles
/// builds and frees a tree of tens of megabytes, and what it freed between
/// the profiles it made stayed in the agent's resident memory (about 5 MiB
/// of 21 at 10,000). The parsing thread's memory is then all free, and
/// given back. A small one is read here, with no thread.
pub(crate) fn load_config(path: &Path) -> Result<ConfigFile, ConfigError> {
    if !std::fs::metadata(path).is_ok_and(|m| m.len() >= LARGE_CONFIG) {
        return ConfigFile::load(path);
    }
    let parsed = std::thread::scope(|s| {
        let reader = std::thread::Builder::new()
            .name("jwtagent-config".into())
            .spawn_scoped(s, || ConfigFile::load(path));
        match reader {
            Ok(reader) => reader.join().unwrap_or_else(|_| {
                Err(ConfigError::Read {
                    path: path.to_path_buf(),
                    message: "its reader failed (a bug: please report it)".into(),
                })
            }),
            // No thread for it: read here.
            Err(_) => ConfigFile::load(path),
        }
    })?;
    let copy = ConfigFile {
        version: parsed.version,
        store: parsed.store,
        profiles: parsed
            .profiles
            .iter()
            .map(|(name, profile)| (name.clone(), Arc::new(Profile::clone(profile))))
            .collect(),
        skipped: parsed.skipped.clone(),
    };
    drop(parsed);
    release_free_memory();
    Ok(copy)
}

/// Hands what the allocator keeps of freed memory back to the system, in the
/// background (it takes a few milliseconds with a large heap): after work
/// on every profile at once (reading the config, `list`, `status`).
pub(crate) fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn_blocking(crate::sys::release_free_memory);
    }
}

/// `add`'s refusal of profile `name` for `reason`.
fn refused(name: &str) -> impl Fn(Refusal) -> ProfileError + '_ {
    move |reason| ProfileError::Refused {
        name: name.to_string(),
        keygen: false,
        reason,
    }
}

/// The profiles a grant takes tokens from exist, and taking them makes no
/// circle and no chain deeper than the limit.
fn check_inputs(config: &ConfigFile, name: &str, profile: &Profile) -> Result<(), Refusal> {
    for input in profile.inputs() {
        if !config.profiles.contains_key(input) && input != name {
            return Err(Refusal::NoInput(input.to_string()));
        }
    }
    let mut profiles = config.profiles.clone();
    profiles.insert(name.to_string(), Arc::new(profile.clone()));
    // The new profile may close a circle or lengthen the chains of the
    // profiles it feeds: every chain is checked again.
    match jwtagent::chain::check_all(&profiles) {
        Err((_, ChainError::Cycle { path, .. })) => Err(Refusal::Cycle(path)),
        Err((_, ChainError::TooDeep { path, .. })) => Err(Refusal::TooDeep(path)),
        Ok(()) => Ok(()),
    }
}

/// The `kid` that asks for none: `--kid none`.
pub(crate) const NO_KID: &str = "none";

/// Checks everything about a profile to add that needs no lock: its name,
/// fields, secret and CA file; fills in what is left to the key (`alg`) or to
/// the agent (`dpop_alg`); and generates its DPoP key, if it asks for one.
async fn prepare(
    name: &str,
    profile: &mut Profile,
    secret: Option<&Secret>,
) -> Result<Option<Secret>, Refusal> {
    validate_name(name).map_err(Refusal::Name)?;
    // The config says which DPoP key the profile has.
    profile.dpop_alg = profile.dpop_key_alg();
    let no_kid = profile.kid.as_deref() == Some(NO_KID);
    if no_kid {
        profile.kid = None;
    }
    profile.validate()?;
    check_secret(profile, secret)?;
    if let (Some(cert), Some(key)) = (&profile.certificate, secret) {
        crate::oauth::tls::check_identity(cert, key)?;
    }
    // Servers that hold a client's JWKS find its key by `kid`: a key's
    // RFC 7638 thumbprint (what `jwks` prints) unless the user named one.
    let signs_with_key = profile.auth == AuthMethod::PrivateKeyJwt
        || matches!(
            profile.grant,
            jwtagent::config::Grant::JwtBearer(jwtagent::config::Assertion::Signed { .. })
        );
    if signs_with_key
        && profile.kid.is_none()
        && !no_kid
        && let Some(key) = secret
    {
        profile.kid = Some(jwk::thumbprint(&jwk::public_jwk(key)?));
    }
    if let Some(ca) = &profile.ca_file {
        check_ca_file(ca).await?;
    }
    // A DPoP key of its own for every profile that asks, never exported.
    Ok(match profile.dpop_key_alg() {
        Some(alg) => Some(jwk::generate(alg)?),
        None => None,
    })
}

/// The CA file must be readable and hold at least one PEM certificate.
async fn check_ca_file(path: &Path) -> Result<(), Refusal> {
    let owned = path.to_path_buf();
    let read = tokio::task::spawn_blocking(move || {
        jwtagent::files::read_regular(&owned, crate::oauth::tls::MAX_CA_FILE)
    })
    .await;
    let text = read
        .map_err(|e| e.to_string())
        .and_then(|read| read.map_err(|e| e.to_string()))
        .map_err(|cause| Refusal::CaFileUnreadable {
            path: path.to_path_buf(),
            cause,
        })?;
    let text = String::from_utf8_lossy(&text);
    match crate::oauth::tls::certificates(&text) {
        Ok(_) => Ok(()),
        Err(crate::oauth::tls::CertError::Empty) => Err(Refusal::CaFileEmpty(path.to_path_buf())),
        Err(e) => Err(Refusal::CaFileUnreadable {
            path: path.to_path_buf(),
            cause: e.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SERVICE;
    use keyring_core::api::CredentialStoreApi;
    use std::sync::Arc;

    fn profile(client_id: &str) -> Profile {
        Profile::new(
            "https://idp.example/token",
            client_id,
            AuthMethod::ClientSecretBasic,
        )
    }

    fn secret(s: &str) -> Option<Secret> {
        Some(Secret::new(s.as_bytes().to_vec()))
    }

    /// A large file is read on a thread of its own and copied: the copy is
    /// the file, skipped profiles and store included; a small one and an
    /// unreadable one are read as ever.
    #[test]
    fn a_large_config_is_read_the_same_through_its_own_thread() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let path = dir.path().join("profiles.toml");
        for n in [3, MANY + 1] {
            let mut text = String::from("version = 1\nstore = \"keyutils\"\n");
            for i in 0..n {
                text.push_str(&format!(
                    "\n[profiles.p{i}]\ntoken_url = \"https://idp.example/token\"\nclient_id = \"c{i}\"\nscopes = [\"a\", \"b\"]\n"
                ));
            }
            text.push_str("\n[profiles.broken]\nclient_id = 3\n");
            std::fs::write(&path, &text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            assert_eq!(text.len() as u64 >= LARGE_CONFIG, n > MANY);
            let read = load_config(&path).unwrap();
            assert_eq!(read, ConfigFile::load(&path).unwrap());
            assert_eq!(read.profiles.len(), n);
            assert_eq!(read.store, Some(jwtagent::config::StoreKind::Keyutils));
            assert!(read.skipped.contains_key("broken"));
        }
        std::fs::write(&path, "version = 1\n[profiles\n").unwrap();
        assert_eq!(
            load_config(&path).unwrap_err().to_string(),
            ConfigFile::load(&path).unwrap_err().to_string()
        );
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        mock: Arc<keyring_core::mock::Store>,
        profiles: Profiles,
    }

    impl Fixture {
        /// The fixture's profiles and keyring, but every config write fails.
        fn with_failing_writes(&self) -> Profiles {
            let mut profiles = Profiles::new(
                self.profiles.path().to_path_buf(),
                SecretStore::with_store(self.mock.clone(), crate::store::Backend::Mock),
            );
            profiles.write = |path, _| {
                Err(crate::config_io::WriteError {
                    path: path.to_path_buf(),
                    source: std::io::Error::other("disk full (injected)"),
                })
            };
            profiles
        }
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let mock = keyring_core::mock::Store::new().unwrap();
        let store = SecretStore::with_store(mock.clone(), crate::store::Backend::Mock);
        let profiles = Profiles::new(dir.path().join("profiles.toml"), store);
        Fixture {
            _dir: dir,
            mock,
            profiles,
        }
    }

    /// A keyring-core store over the mock whose writes can be made to fail.
    struct FailingStore {
        inner: Arc<keyring_core::mock::Store>,
        fail: Arc<std::sync::atomic::AtomicBool>,
    }

    struct FailingCred {
        inner: keyring_core::Entry,
        fail: Arc<std::sync::atomic::AtomicBool>,
    }

    impl FailingStore {
        fn wrap(inner: Arc<keyring_core::mock::Store>) -> Arc<FailingStore> {
            Arc::new(FailingStore {
                inner,
                fail: Arc::default(),
            })
        }
        fn fail_writes(&self, on: bool) {
            self.fail.store(on, std::sync::atomic::Ordering::SeqCst);
        }
    }

    impl keyring_core::api::CredentialStoreApi for FailingStore {
        fn vendor(&self) -> String {
            "failing".into()
        }
        fn id(&self) -> String {
            "failing".into()
        }
        fn build(
            &self,
            service: &str,
            user: &str,
            mods: Option<&std::collections::HashMap<&str, &str>>,
        ) -> keyring_core::Result<keyring_core::Entry> {
            let inner = self.inner.build(service, user, mods)?;
            Ok(keyring_core::Entry::new_with_credential(Arc::new(
                FailingCred {
                    inner,
                    fail: self.fail.clone(),
                },
            )))
        }
        fn as_any(&self) -> &dyn std::any::Any {
            self
        }
    }

    impl keyring_core::api::CredentialApi for FailingCred {
        fn set_secret(&self, secret: &[u8]) -> keyring_core::Result<()> {
            if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(keyring_core::Error::PlatformFailure(
                    "injected write failure".into(),
                ));
            }
            self.inner.set_secret(secret)
        }
        fn get_secret(&self) -> keyring_core::Result<Vec<u8>> {
            self.inner.get_secret()
        }
        fn delete_credential(&self) -> keyring_core::Result<()> {
            self.inner.delete_credential()
        }
        fn get_credential(&self) -> keyring_core::Result<Option<Arc<keyring_core::Credential>>> {
            Ok(None)
        }
        fn get_specifiers(&self) -> Option<(String, String)> {
            self.inner.get_specifiers()
        }
        fn as_any(&self) -> &dyn std::any::Any {
            self
        }
    }

    /// Makes the next call on profile `name`'s keyring entry fail.
    /// The profile's secret in the generation its config names (0 for a
    /// profile the config does not have).
    async fn stored(profiles: &Profiles, name: &str) -> Option<Secret> {
        let g = generation(profiles, name);
        profiles.store().get(name, g).await.unwrap()
    }

    async fn stored_dpop(profiles: &Profiles, name: &str) -> Option<Secret> {
        let g = generation(profiles, name);
        profiles.store().get_dpop(name, g).await.unwrap()
    }

    fn generation(profiles: &Profiles, name: &str) -> u32 {
        profiles
            .current()
            .ok()
            .and_then(|c| c.profiles.get(name).map(|p| p.generation))
            .unwrap_or(0)
    }

    fn fail_next_store_call(mock: &keyring_core::mock::Store, name: &str) {
        let entry = mock
            .build(SERVICE, &format!("profile/{name}"), None)
            .unwrap();
        let cred: &keyring_core::mock::Cred = entry.as_any().downcast_ref().unwrap();
        cred.set_error(keyring_core::Error::PlatformFailure("injected".into()));
    }

    #[tokio::test]
    async fn add_stores_the_secret_in_the_keyring_and_not_in_the_config() {
        let f = fixture();
        let added = f
            .profiles
            .add("api", profile("c1"), secret("s3cret-value"))
            .await
            .unwrap();
        assert!(added.created);
        let on_disk = std::fs::read_to_string(f.profiles.path()).unwrap();
        assert!(on_disk.contains("c1") && !on_disk.contains("s3cret-value"));
        let stored = stored(&f.profiles, "api").await.unwrap();
        assert_eq!(stored.expose(), b"s3cret-value");
    }

    #[tokio::test]
    async fn failed_keyring_write_leaves_the_old_profile_and_secret_intact() {
        let f = fixture();
        f.profiles
            .add("api", profile("old-id"), secret("old-secret"))
            .await
            .unwrap();
        let before = std::fs::read(f.profiles.path()).unwrap();
        let failing = FailingStore::wrap(f.mock.clone());
        let profiles = Profiles::new(
            f.profiles.path().to_path_buf(),
            SecretStore::with_store(failing.clone(), crate::store::Backend::Mock),
        );
        failing.fail_writes(true);
        let err = profiles
            .add("api", profile("new-id"), secret("new-secret"))
            .await
            .unwrap_err();
        assert!(matches!(err, ProfileError::Store(_)), "{err}");
        assert_eq!(std::fs::read(f.profiles.path()).unwrap(), before);
        failing.fail_writes(false);
        let kept = stored(&profiles, "api").await.unwrap();
        assert_eq!(kept.expose(), b"old-secret");
        assert_eq!(profiles.list().unwrap()[0].profile.client_id, "old-id");
    }

    #[tokio::test]
    async fn failed_config_write_puts_the_old_secret_back() {
        let f = fixture();
        f.profiles
            .add("api", profile("old-id"), secret("old-secret"))
            .await
            .unwrap();
        let before = std::fs::read(f.profiles.path()).unwrap();
        let profiles = f.with_failing_writes();
        let err = profiles
            .add("api", profile("new-id"), secret("new-secret"))
            .await
            .unwrap_err();
        assert!(matches!(err, ProfileError::Config(_)), "{err}");
        assert!(err.to_string().contains("disk full"), "{err}");
        assert_eq!(std::fs::read(f.profiles.path()).unwrap(), before);
        let kept = stored(&profiles, "api").await.unwrap();
        assert_eq!(kept.expose(), b"old-secret");

        // A new profile whose config write fails leaves no secret behind.
        let err = profiles
            .add("fresh", profile("x"), secret("fresh-secret"))
            .await;
        assert!(err.is_err());
        assert!(stored(&profiles, "fresh").await.is_none());
    }

    #[tokio::test]
    async fn failed_config_write_puts_the_old_dpop_key_back() {
        let f = fixture();
        let mut dpop = profile("old-id");
        dpop.dpop = true;
        f.profiles
            .add("api", dpop.clone(), secret("old-secret"))
            .await
            .unwrap();
        let old_key = stored_dpop(&f.profiles, "api").await.unwrap();
        let profiles = f.with_failing_writes();
        // Replacing it (with a new DPoP key) fails: the old key is back.
        assert!(
            profiles
                .add("api", dpop.clone(), secret("new"))
                .await
                .is_err()
        );
        let key = stored_dpop(&profiles, "api").await.unwrap();
        assert_eq!(key.expose(), old_key.expose());
        // Turning DPoP off fails too: the key is still there.
        assert!(
            profiles
                .add("api", profile("x"), secret("new"))
                .await
                .is_err()
        );
        assert!(stored_dpop(&profiles, "api").await.is_some());
        // A new DPoP profile whose config write fails leaves no key behind.
        assert!(profiles.add("fresh", dpop, secret("s")).await.is_err());
        assert!(stored_dpop(&profiles, "fresh").await.is_none());
        // And once writes work, turning DPoP off deletes the key.
        f.profiles
            .add("api", profile("x"), secret("new"))
            .await
            .unwrap();
        assert!(stored_dpop(&f.profiles, "api").await.is_none());
    }

    #[tokio::test]
    async fn corrupt_config_is_reported_and_never_overwritten() {
        let f = fixture();
        std::fs::write(f.profiles.path(), b"version = 1\n[profiles.x\n").unwrap();
        let err = f
            .profiles
            .add("api", profile("c"), secret("s"))
            .await
            .unwrap_err();
        assert!(matches!(err, ProfileError::Config(_)));
        assert!(err.to_string().contains("profiles.toml"), "{err}");
        assert_eq!(
            std::fs::read(f.profiles.path()).unwrap(),
            b"version = 1\n[profiles.x\n"
        );
        assert!(f.profiles.list().is_err());
        assert!(stored(&f.profiles, "api").await.is_none(), "nothing stored");
    }

    #[tokio::test]
    async fn remove_deletes_config_entry_and_secret() {
        let f = fixture();
        f.profiles
            .add("api", profile("c"), secret("s"))
            .await
            .unwrap();
        let removed = f.profiles.remove("api").await.unwrap();
        assert!(removed.is_none());
        assert!(f.profiles.list().unwrap().is_empty());
        assert!(stored(&f.profiles, "api").await.is_none());
        assert!(matches!(
            f.profiles.remove("api").await,
            Err(ProfileError::Unknown(_))
        ));
    }

    #[tokio::test]
    async fn remove_reports_a_keyring_failure_as_a_warning() {
        let f = fixture();
        f.profiles
            .add("api", profile("c"), secret("s"))
            .await
            .unwrap();
        fail_next_store_call(&f.mock, "api");
        let removed = f.profiles.remove("api").await.unwrap();
        assert_eq!(removed.unwrap().account, "profile/api");
    }

    #[tokio::test]
    async fn hand_edits_are_seen_and_kept_by_the_next_write() {
        let f = fixture();
        f.profiles
            .add("a", profile("c"), secret("s"))
            .await
            .unwrap();
        let mut text = std::fs::read_to_string(f.profiles.path()).unwrap();
        text.push_str("\n[profiles.hand]\ntoken_url = \"https://h.example/t\"\nclient_id = \"h\"\nauth = \"none\"\n");
        std::fs::write(f.profiles.path(), text).unwrap();
        f.profiles
            .add("b", profile("c"), secret("s"))
            .await
            .unwrap();
        let names: Vec<String> = f
            .profiles
            .list()
            .unwrap()
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(names, ["a", "b", "hand"]);
    }

    #[tokio::test]
    async fn invalid_profiles_are_refused_before_anything_is_written() {
        let f = fixture();
        let mut p = profile("c");
        p.token_url = Some("http://idp.example/token".into());
        let err = f.profiles.add("api", p, secret("s")).await.unwrap_err();
        assert!(
            matches!(
                err,
                ProfileError::Refused {
                    reason: Refusal::Field(_),
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("https://"), "{err}");
        assert!(!f.profiles.path().exists());
        let err = f.profiles.add("api", profile("c"), None).await.unwrap_err();
        assert!(err.to_string().contains("--secret-stdin"), "{err}");
        let mut p = profile("c");
        p.auth = AuthMethod::ClientSecretJwt;
        let err = f.profiles.add("api", p, secret("short")).await.unwrap_err();
        assert!(err.to_string().contains("at least 32 bytes"), "{err}");
    }
}
