//! Locking the agent: while locked it serves nothing but `hello`, `status`,
//! `unlock` and `stop`.
//!
//! The passphrase is kept only as an Argon2id hash (with a random salt) in
//! memory. With the file store, the lock and the store are one thing: the
//! agent starts locked (sealed), `lock` wipes the store's key and `unlock`
//! takes the store's passphrase. Wrong passphrases are answered after a delay that doubles up to
//! 10 s, and attempts are serialised, so guessing cannot go faster by opening
//! more connections.

use crate::filestore::FileStoreError;
use crate::store::{SecretStore, StoreError};
use jwtagent::secret::Secret;
use std::time::Duration;
use zeroize::Zeroizing;

/// The longest delay before a wrong passphrase is answered.
pub(crate) const MAX_DELAY: Duration = Duration::from_secs(10);
/// The first delay.
const FIRST_DELAY: Duration = Duration::from_millis(250);

/// What opens a locked agent.
enum Key {
    /// The passphrase `lock` was given, as its hash.
    Hash {
        salt: [u8; 16],
        hash: Zeroizing<[u8; 32]>,
    },
    /// The file store's passphrase.
    Store,
    /// Locked by the agent itself (idle, sleep, the session locked) with a
    /// keyring store: a yes through askpass unlocks. `why` says when.
    Askpass { why: &'static str },
}

struct Locked {
    key: Key,
    failures: u32,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum LockError {
    #[error("the agent is already locked; unlock it first with `jwtagent unlock`")]
    AlreadyLocked,
    #[error("the agent is not locked")]
    NotLocked,
    #[error("wrong passphrase")]
    WrongPassphrase,
    #[error("an empty passphrase would protect nothing; choose one")]
    EmptyPassphrase,
    #[error("cannot hash the passphrase: {0}")]
    Hash(String),
    /// The file store could not be opened for another reason than the
    /// passphrase (damaged, unsafe, unwritable).
    #[error("{0}")]
    Store(String),
    /// Locked by the agent itself, and the askpass program gave no yes.
    #[error("unlocking needs a yes from the person at the keyboard, and got none: {0}")]
    NotConfirmed(String),
}

/// The lock; `Default` is unlocked.
#[derive(Default)]
pub(crate) struct Lock {
    state: tokio::sync::Mutex<Option<Locked>>,
    /// Mirror of "locked" readable without waiting behind an unlock attempt.
    locked: std::sync::atomic::AtomicBool,
    /// Counts locks, so that a request can tell it was locked (and perhaps
    /// unlocked again) while it was in flight.
    epoch: std::sync::atomic::AtomicU64,
}

fn hash(passphrase: &Secret, salt: &[u8; 16]) -> Result<Zeroizing<[u8; 32]>, LockError> {
    let mut out = Zeroizing::new([0u8; 32]);
    argon2::Argon2::default()
        .hash_password_into(passphrase.expose(), salt, &mut *out)
        .map_err(|e| LockError::Hash(e.to_string()))?;
    Ok(out)
}

/// The delay before answering the `failures`th wrong passphrase in a row.
pub(crate) fn delay_after(failures: u32) -> Duration {
    FIRST_DELAY
        .saturating_mul(
            1u32.checked_shl(failures.saturating_sub(1).min(16))
                .unwrap_or(u32::MAX),
        )
        .min(MAX_DELAY)
}

impl Lock {
    /// An agent whose file store is sealed: locked until `unlock` opens it.
    pub(crate) fn sealed() -> Lock {
        let mut lock = Lock::default();
        *lock.state.get_mut() = Some(Locked {
            key: Key::Store,
            failures: 0,
        });
        lock.locked.store(true, std::sync::atomic::Ordering::SeqCst);
        lock
    }

    /// Locks an agent whose store turned out, once opened, to be a sealed
    /// file store. Nothing to do if it is locked already.
    pub(crate) fn seal_at_start(&self) {
        if let Ok(mut state) = self.state.try_lock()
            && state.is_none()
        {
            *state = Some(Locked {
                key: Key::Store,
                failures: 0,
            });
            self.locked.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// Locks when the person at the keyboard is likely away (idle, the
    /// machine suspending, the session locked): with the file store it is
    /// sealed; otherwise a yes through askpass unlocks. Answers whether it
    /// locked (it may have been locked already).
    pub(crate) async fn lock_unattended(&self, store: &SecretStore, why: &'static str) -> bool {
        if self.is_locked() {
            return false;
        }
        if store.is_file() {
            return self.seal(store).await.is_ok();
        }
        let mut state = self.state.lock().await;
        if state.is_some() {
            return false;
        }
        *state = Some(Locked {
            key: Key::Askpass { why },
            failures: 0,
        });
        self.epoch.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.locked.store(true, std::sync::atomic::Ordering::SeqCst);
        true
    }

    /// What unlocks the agent now, for `status`: `None` while unlocked (or
    /// while an unlock attempt holds the lock).
    pub(crate) fn unlock_with(&self) -> Option<&'static str> {
        let state = self.state.try_lock().ok()?;
        Some(match &state.as_ref()?.key {
            Key::Hash { .. } => "passphrase",
            Key::Store => "store",
            Key::Askpass { .. } => "askpass",
        })
    }

    pub(crate) fn is_locked(&self) -> bool {
        self.locked.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// How many times the agent has been locked.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Locks with `passphrase`.
    pub(crate) async fn lock(&self, passphrase: &Secret) -> Result<(), LockError> {
        if passphrase.is_empty() {
            return Err(LockError::EmptyPassphrase);
        }
        let mut state = self.state.lock().await;
        if state.is_some() {
            return Err(LockError::AlreadyLocked);
        }
        let mut salt = [0u8; 16];
        aws_lc_rs::rand::fill(&mut salt).map_err(|_| LockError::Hash("no randomness".into()))?;
        let passphrase = passphrase.clone();
        // Argon2 takes tens of milliseconds of CPU: off the async workers.
        let hash = tokio::task::spawn_blocking(move || hash(&passphrase, &salt))
            .await
            .map_err(|e| LockError::Hash(e.to_string()))??;
        *state = Some(Locked {
            key: Key::Hash { salt, hash },
            failures: 0,
        });
        self.epoch.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.locked.store(true, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    /// Locks by sealing `store` (the file store): its key is wiped, and its
    /// passphrase unlocks.
    pub(crate) async fn seal(&self, store: &SecretStore) -> Result<(), LockError> {
        let mut state = self.state.lock().await;
        if state.is_some() {
            return Err(LockError::AlreadyLocked);
        }
        // Closed first, so that no request reads the store between the two.
        *state = Some(Locked {
            key: Key::Store,
            failures: 0,
        });
        self.epoch.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.locked.store(true, std::sync::atomic::Ordering::SeqCst);
        store
            .seal()
            .await
            .map_err(|e| LockError::Store(e.to_string()))
    }

    /// Unlocks if `passphrase` is the one the agent was locked with, or opens
    /// `store` when the lock is the file store's. A wrong one is answered
    /// only after the delay, holding off other attempts.
    pub(crate) async fn unlock(
        &self,
        passphrase: &Secret,
        store: &SecretStore,
    ) -> Result<(), LockError> {
        let mut state = self.state.lock().await;
        if state.is_none() && store.opens_sealed().await {
            // Before `seal_at_start` saw the store sealed.
            *state = Some(Locked {
                key: Key::Store,
                failures: 0,
            });
        }
        let Some(locked) = state.as_mut() else {
            return Err(LockError::NotLocked);
        };
        let right = match &locked.key {
            Key::Hash { salt, hash: kept } => {
                let (salt, passphrase) = (*salt, passphrase.clone());
                let candidate = tokio::task::spawn_blocking(move || hash(&passphrase, &salt))
                    .await
                    .map_err(|e| LockError::Hash(e.to_string()))??;
                aws_lc_rs::constant_time::verify_slices_are_equal(&*candidate, &**kept).is_ok()
            }
            Key::Askpass { why } => {
                let prompt = format!("Unlock the jwtagent agent? It locked itself when {why}.");
                if let Err(refused) = crate::controls::ask_once(&prompt).await {
                    return Err(LockError::NotConfirmed(refused.to_string()));
                }
                true
            }
            Key::Store => match store.unseal(passphrase.clone()).await {
                Ok(()) => true,
                Err(StoreError::File(FileStoreError::WrongPassphrase { .. })) => false,
                Err(StoreError::File(FileStoreError::EmptyPassphrase)) => {
                    return Err(LockError::EmptyPassphrase);
                }
                Err(e) => return Err(LockError::Store(e.to_string())),
            },
        };
        if right {
            *state = None;
            self.locked
                .store(false, std::sync::atomic::Ordering::SeqCst);
            return Ok(());
        }
        locked.failures = locked.failures.saturating_add(1);
        let delay = delay_after(locked.failures);
        tracing::warn!(
            failures = locked.failures,
            delay_ms = delay.as_millis() as u64,
            "wrong unlock passphrase"
        );
        // Sleep with the state held: the next attempt waits its turn.
        tokio::time::sleep(delay).await;
        Err(LockError::WrongPassphrase)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> Secret {
        Secret::new(text.as_bytes().to_vec())
    }

    #[test]
    fn delay_doubles_up_to_ten_seconds() {
        let ms: Vec<u128> = (1..=8).map(|n| delay_after(n).as_millis()).collect();
        assert_eq!(ms, [250, 500, 1000, 2000, 4000, 8000, 10000, 10000]);
    }

    #[tokio::test(start_paused = true)]
    async fn lock_then_unlock_with_the_same_passphrase() {
        let lock = Lock::default();
        let store = SecretStore::with_store(
            keyring_core::mock::Store::new().unwrap(),
            crate::store::Backend::Mock,
        );
        lock.lock(&s("correct horse")).await.unwrap();
        assert!(lock.is_locked());
        assert_eq!(lock.lock(&s("x")).await, Err(LockError::AlreadyLocked));
        let started = tokio::time::Instant::now();
        assert_eq!(
            lock.unlock(&s("wrong"), &store).await,
            Err(LockError::WrongPassphrase)
        );
        assert_eq!(started.elapsed(), Duration::from_millis(250));
        assert_eq!(
            lock.unlock(&s("wrong"), &store).await,
            Err(LockError::WrongPassphrase)
        );
        assert_eq!(started.elapsed(), Duration::from_millis(750));
        assert!(lock.is_locked());
        lock.unlock(&s("correct horse"), &store).await.unwrap();
        assert!(!lock.is_locked());
        assert_eq!(
            lock.unlock(&s("x"), &store).await,
            Err(LockError::NotLocked)
        );
    }

    /// With the file store, the store's passphrase is the lock's: the agent
    /// starts sealed, the first unlock creates the store, `seal` locks it
    /// with no passphrase of its own, and a wrong one waits like any other.
    #[tokio::test]
    async fn the_file_stores_passphrase_is_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data").join("secrets.sealed");
        let store = SecretStore::file_at(path.clone());
        let lock = Lock::sealed();
        assert!(lock.is_locked());
        assert!(store.is_file() || matches!(store.state(), crate::store::StoreState::Opening));
        lock.unlock(&s("store pass"), &store).await.unwrap();
        assert!(!lock.is_locked() && path.exists());
        store.set("a", 0, s("s3cret")).await.unwrap();

        lock.seal(&store).await.unwrap();
        assert!(lock.is_locked());
        assert_eq!(lock.epoch(), 1);
        assert!(store.get("a", 0).await.is_err(), "sealed: nothing readable");
        let started = std::time::Instant::now();
        assert_eq!(
            lock.unlock(&s("wrong"), &store).await,
            Err(LockError::WrongPassphrase)
        );
        assert!(started.elapsed() >= FIRST_DELAY);
        lock.unlock(&s("store pass"), &store).await.unwrap();
        assert_eq!(store.get("a", 0).await.unwrap(), Some(s("s3cret")));

        // A damaged file is an error of its own, not a wrong passphrase.
        lock.seal(&store).await.unwrap();
        std::fs::write(&path, "{").unwrap();
        let err = lock.unlock(&s("store pass"), &store).await.unwrap_err();
        assert!(
            matches!(&err, LockError::Store(m) if m.contains("is damaged")),
            "{err}"
        );
        assert!(lock.is_locked());
    }

    #[tokio::test]
    async fn empty_passphrase_is_refused() {
        assert_eq!(
            Lock::default().lock(&s("")).await,
            Err(LockError::EmptyPassphrase)
        );
    }
}
