//! Serving tokens: [`Tokens`] is what the token ops talk to. It maps a request
//! and its profile to a cache key and asks the refresher (whose fetcher is
//! `fetcher.rs`), and signs DPoP proofs with the profile's key.

use crate::dpop_keys::DpopKeys;
use crate::error::AgentError;
use crate::fetcher::AgentFetcher;
use crate::jwk;
use crate::profiles::Profiles;
use crate::refresh::{KeyStatus, Refresher, Served};
use crate::store::SecretStore;
use crate::token_error::{TokenError, key_for};
use jwtagent::config::Profile;
use jwtagent::secret::Secret;
use std::sync::Arc;
use std::time::Duration;

/// One token request, as the `token` and `dpop_proof` ops ask it.
#[derive(Debug, Clone, Default)]
pub(crate) struct TokenQuery {
    pub name: String,
    pub min_ttl: Duration,
    pub scopes: Option<Vec<String>>,
    pub resources: Option<Vec<String>>,
    pub force: bool,
    /// Answer with the profile's ID token too.
    pub id_token: bool,
}

impl TokenQuery {
    /// The query from an op's fields (`min_ttl` in seconds).
    pub(crate) fn new(
        name: String,
        min_ttl: Option<u64>,
        scopes: Option<Vec<String>>,
        resources: Option<Vec<String>>,
        force: bool,
    ) -> TokenQuery {
        TokenQuery {
            name,
            min_ttl: Duration::from_secs(min_ttl.unwrap_or(0)),
            scopes,
            resources,
            force,
            id_token: false,
        }
    }
}

/// What the request handler asks for tokens.
pub(crate) struct Tokens {
    refresher: Arc<Refresher<AgentFetcher>>,
    dpop: Arc<DpopKeys>,
}

impl Tokens {
    /// Tokens for `profiles`, whose secrets and keys are in `store`.
    pub(crate) fn new(profiles: Arc<Profiles>, store: SecretStore) -> Tokens {
        let dpop = Arc::new(DpopKeys::new(store.clone()));
        let refresher = Refresher::new(AgentFetcher::new(profiles, store, dpop.clone()));
        Tokens { refresher, dpop }
    }

    /// Drops every cached token of `profile`, and its DPoP key (after
    /// `remove` or a replacing `add`).
    pub(crate) fn forget(&self, profile: &str) {
        self.refresher.fetcher().forget_user(profile);
        self.refresher.forget(profile);
        self.dpop.forget(Some(profile));
        self.refresher.fetcher().oauth().forget(profile);
    }

    /// Drops every cached token and DPoP key.
    pub(crate) fn clear(&self) {
        self.refresher.fetcher().forget_users();
        self.refresher.clear();
        self.dpop.forget(None);
        self.refresher.fetcher().oauth().forget_all();
    }

    /// With `assertion_aud` auto: the `aud` `profile`'s server last
    /// accepted (`issuer` or `token-endpoint`).
    pub(crate) fn aud_worked(&self, profile: &Profile) -> Option<&'static str> {
        let oauth = self.refresher.fetcher().oauth();
        oauth.aud_worked(profile).map(|kind| kind.name())
    }

    /// Every cached key's state.
    pub(crate) fn status(&self) -> Vec<KeyStatus> {
        self.refresher.status()
    }

    /// A token for `query`, and the profile's ID token when it asks.
    pub(crate) async fn get(
        &self,
        profile: &Profile,
        query: TokenQuery,
    ) -> Result<(Served, Option<Secret>), AgentError> {
        let (key, _) = key_for(&query.name, profile, query.scopes, query.resources)?;
        let served = self.refresher.get(&key, query.min_ttl, query.force).await?;
        let id_token = match query.id_token {
            true => Some(
                self.fetcher()
                    .id_token(&query.name)
                    .ok_or_else(|| AgentError::NoIdToken(query.name.clone()))?,
            ),
            false => None,
        };
        Ok((served, id_token))
    }

    /// The refresher, for a sign-in that runs on after its request.
    pub(crate) fn refresher(&self) -> Arc<Refresher<AgentFetcher>> {
        self.refresher.clone()
    }

    /// The fetcher, for what it knows about sign-ins.
    pub(crate) fn fetcher(&self) -> &AgentFetcher {
        self.refresher.fetcher()
    }
}

impl Tokens {
    /// A DPoP proof for one resource request (`dpop_proof`), after the token
    /// it is bound to: the profile's current token (fetched or refreshed as
    /// for `token`) and a proof over `method`, `url` and the token's hash.
    pub(crate) async fn dpop_proof(
        &self,
        profile: &Profile,
        query: TokenQuery,
        method: &str,
        url: &str,
        nonce: Option<&str>,
    ) -> Result<(Served, Secret), AgentError> {
        let TokenQuery {
            name,
            min_ttl,
            scopes,
            resources,
            force,
            ..
        } = query;
        let (key, dpop) = key_for(&name, profile, scopes, resources)?;
        let (alg, generation) = dpop.ok_or_else(|| TokenError::NotDpop(name.clone()))?;
        let htm = jwk::htm(method).map_err(TokenError::Proof)?;
        let htu = jwk::htu(url).map_err(TokenError::Proof)?;
        let served = self.refresher.get(&key, min_ttl, force).await?;
        let signer = self.dpop.get(&name, alg, generation).await?;
        let proof = signer
            .proof(&htm, &htu, Some(&served.token), nonce)
            .map_err(|e| AgentError::Internal(e.to_string()))?;
        Ok((served, proof))
    }
}
