//! The refresher's fetcher: reads a profile, its secret and DPoP key, and asks
//! the OAuth client for a token. The refresher calls it for a caller's request
//! and for background refreshes alike, so it reads the config afresh: a hand
//! edit applies at the next refresh.

use crate::dpop_keys::DpopKeys;
use crate::oauth::{self, OAuthClient};
use crate::profiles::{ProfileError, Profiles};
use crate::refresh::{FetchError, Fetched, Fetcher, Key};
use crate::store::SecretStore;
use crate::tokens::TokenError;
use jwtagent::config::AuthMethod;
use jwtagent::secret::Secret;
use std::sync::Arc;
use std::time::Duration;

/// Fetches tokens for the refresher: reads the profile, its secret and DPoP
/// key, and asks the OAuth client.
pub struct AgentFetcher {
    profiles: Arc<Profiles>,
    store: SecretStore,
    oauth: OAuthClient,
    dpop: Arc<DpopKeys>,
}

impl AgentFetcher {
    pub fn new(profiles: Arc<Profiles>, store: SecretStore, dpop: Arc<DpopKeys>) -> AgentFetcher {
        AgentFetcher {
            profiles,
            store,
            oauth: OAuthClient::default(),
            dpop,
        }
    }

    /// The OAuth client, for what it learned about servers.
    pub fn oauth(&self) -> &OAuthClient {
        &self.oauth
    }

    async fn fetch_inner(
        &self,
        key: &Key,
        refresh_token: Option<Secret>,
    ) -> Result<Fetched, TokenError> {
        let name = &key.profile;
        let config = self
            .profiles
            .current()
            .map_err(|e| ProfileError::Config(e.to_string()))?;
        let profile = config
            .profiles
            .get(name)
            .ok_or_else(|| ProfileError::Unknown(name.clone()))?;
        let secret = match profile.auth {
            AuthMethod::None => None,
            _ => Some(
                self.store
                    .get(name, profile.generation)
                    .await?
                    .ok_or_else(|| TokenError::SecretMissing(name.clone()))?,
            ),
        };
        let dpop_key = match profile.dpop_key_alg() {
            Some(alg) => Some(self.dpop.get(name, alg, profile.generation).await?),
            None => None,
        };
        let obtained = self
            .oauth
            .token(
                oauth::Ask {
                    name,
                    profile,
                    secret: secret.as_ref(),
                    dpop: dpop_key.as_deref(),
                    scopes: &key.scopes,
                    resources: &key.resources,
                },
                refresh_token,
            )
            .await
            .map_err(|source| TokenError::OAuth {
                name: name.clone(),
                source,
            })?;
        let response = obtained.response;
        tracing::info!(
            profile = %name,
            fingerprint = %oauth::fingerprint(&response.access_token),
            expires_in = ?response.expires_in,
            grant = obtained.grant,
            "token fetched"
        );
        Ok(Fetched {
            token: response.access_token,
            token_type: response.token_type,
            scope: response.scope,
            lifetime: response.expires_in.map(Duration::from_secs),
            refresh_token: obtained.refresh_token,
            refresh_before: profile.refresh_before,
        })
    }
}

impl Fetcher for AgentFetcher {
    type Error = TokenError;

    async fn fetch(
        &self,
        key: &Key,
        refresh_token: Option<Secret>,
    ) -> Result<Fetched, FetchError<TokenError>> {
        self.fetch_inner(key, refresh_token).await.map_err(|e| {
            // The refresher logs failures, rate-limited.
            tracing::debug!(profile = %key.profile, error = %e, "token request failed");
            e.into_fetch_error()
        })
    }
}
