//! The profiles' DPoP keys, held in memory once read from the keyring: a proof
//! is made per resource request, and a keyring round trip each time would be
//! too slow.

use crate::jwk::DpopKey;
use crate::oauth::{OAuthError, SetupError};
use crate::store::SecretStore;
use crate::token_error::TokenError;
use jwtagent::config::Alg;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// DPoP keys read from the keyring, by profile: proofs are made per resource
/// request, and a keyring round trip each time would be too slow. Dropped
/// with the profile's tokens (`add`, `remove`, `lock`).
pub(crate) struct DpopKeys {
    store: SecretStore,
    held: Mutex<HeldKeys>,
}

#[derive(Default)]
struct HeldKeys {
    keys: HashMap<String, (Alg, u32, Arc<DpopKey>)>,
    /// Bumped by every forget: a key read from the keyring before one is
    /// used, but not kept.
    epoch: u64,
}

impl DpopKeys {
    pub(crate) fn new(store: SecretStore) -> DpopKeys {
        DpopKeys {
            store,
            held: Mutex::new(HeldKeys::default()),
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HeldKeys> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) async fn get(
        &self,
        name: &str,
        alg: Alg,
        generation: u32,
    ) -> Result<Arc<DpopKey>, TokenError> {
        let epoch = {
            let held = self.held();
            if let Some((held_alg, held_generation, key)) = held.keys.get(name)
                && *held_alg == alg
                && *held_generation == generation
            {
                return Ok(key.clone());
            }
            held.epoch
        };
        let pem = self
            .store
            .get_dpop(name, generation)
            .await?
            .ok_or_else(|| TokenError::DpopKeyMissing(name.to_string()))?;
        let key = Arc::new(DpopKey::from_pem(&pem, alg).map_err(|e| TokenError::OAuth {
            name: name.to_string(),
            source: OAuthError::Setup(SetupError::Stored {
                what: "DPoP key",
                detail: e.to_string(),
            }),
        })?);
        tracing::debug!(profile = %name, jkt = %key.thumbprint(), "DPoP key loaded");
        let mut held = self.held();
        if held.epoch == epoch {
            held.keys
                .insert(name.to_string(), (alg, generation, key.clone()));
        }
        Ok(key)
    }

    pub(crate) fn forget(&self, name: Option<&str>) {
        let mut held = self.held();
        held.epoch += 1;
        match name {
            Some(name) => {
                held.keys.remove(name);
            }
            None => held.keys.clear(),
        }
    }
}
