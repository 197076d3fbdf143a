//! Serving tokens: the glue between a profile, its secret, the OAuth client and
//! the refresher.
//!
//! [`AgentFetcher`] turns a cache key into a token request (reading the profile
//! and its secret afresh each time); [`Tokens`] is what the request handler
//! talks to: it maps a `token` op to a key and asks the refresher.

use crate::oauth::{self, ClientAuth, Grant, Metadata, OAuthError, TokenRequest};
use crate::profiles::{ProfileError, Profiles};
use crate::refresh::{FetchError, Fetched, Fetcher, Key, KeyStatus, Refresher};
use crate::store::StoreError;
use jwtagent::config::{AssertionAud, AuthMethod};
use jwtagent::protocol::{ErrorBody, ErrorCode, IdpDetail, TokenAnswer};
use jwtagent::secret::Secret;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long discovered metadata is reused.
const METADATA_TTL: Duration = Duration::from_secs(3600);

/// One token request, as the `token` op asks it.
#[derive(Debug, Clone, Default)]
pub struct TokenQuery {
    pub name: String,
    pub min_ttl: Duration,
    pub scopes: Option<Vec<String>>,
    pub resources: Option<Vec<String>>,
    pub force: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(transparent)]
    Profile(#[from] ProfileError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("profile {name:?}: {source}")]
    OAuth { name: String, source: OAuthError },
    #[error(
        "profile {0:?} has no secret in the keyring (it was deleted outside jwtagent, or the keyring was reset); add the profile again"
    )]
    SecretMissing(String),
}

impl TokenError {
    pub fn to_body(&self) -> ErrorBody {
        match self {
            TokenError::Profile(e) => e.to_body(),
            TokenError::Store(_) | TokenError::SecretMissing(_) => {
                ErrorBody::new(ErrorCode::Store, self.to_string())
            }
            TokenError::OAuth { source, .. } => {
                let code = match source {
                    OAuthError::Network { .. } => ErrorCode::Network,
                    OAuthError::Setup(_) => ErrorCode::Config,
                    OAuthError::Idp { .. }
                    | OAuthError::BadResponse { .. }
                    | OAuthError::Discovery { .. } => ErrorCode::IdpError,
                };
                let mut body = ErrorBody::new(code, self.to_string());
                body.idp = match source {
                    OAuthError::Idp {
                        status,
                        error,
                        description,
                        ..
                    } => Some(IdpDetail {
                        status: *status,
                        error: Some(error.clone()),
                        error_description: description.clone(),
                    }),
                    OAuthError::BadResponse { status, .. } => Some(IdpDetail {
                        status: *status,
                        error: None,
                        error_description: None,
                    }),
                    _ => None,
                };
                body
            }
        }
    }

    fn into_fetch_error(self) -> FetchError {
        let retry_after = match &self {
            TokenError::OAuth {
                source:
                    OAuthError::Idp { retry_after, .. } | OAuthError::BadResponse { retry_after, .. },
                ..
            } => *retry_after,
            _ => None,
        };
        let permanent = matches!(self, TokenError::Profile(_) | TokenError::SecretMissing(_));
        FetchError {
            body: self.to_body(),
            retry_after,
            permanent,
        }
    }
}

/// Discovered metadata by (issuer, CA file), with when it was fetched.
type MetadataCache = HashMap<(String, Option<PathBuf>), (Metadata, Instant)>;

/// Fetches tokens for the refresher: reads the profile and its secret, finds
/// the token endpoint, and runs the grant.
pub struct AgentFetcher {
    profiles: Arc<Profiles>,
    http: Mutex<HashMap<Option<PathBuf>, reqwest::Client>>,
    metadata: tokio::sync::Mutex<MetadataCache>,
}

impl AgentFetcher {
    pub fn new(profiles: Arc<Profiles>) -> AgentFetcher {
        AgentFetcher {
            profiles,
            http: Mutex::new(HashMap::new()),
            metadata: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    fn http(&self, ca_file: Option<&PathBuf>) -> Result<reqwest::Client, OAuthError> {
        let mut clients = self.http.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(client) = clients.get(&ca_file.cloned()) {
            return Ok(client.clone());
        }
        let client = oauth::http_client(ca_file.map(PathBuf::as_path))?;
        clients.insert(ca_file.cloned(), client.clone());
        Ok(client)
    }

    async fn metadata(
        &self,
        http: &reqwest::Client,
        issuer: &str,
        ca_file: Option<&PathBuf>,
    ) -> Result<Metadata, OAuthError> {
        let key = (issuer.to_string(), ca_file.cloned());
        let mut cache = self.metadata.lock().await;
        if let Some((meta, at)) = cache.get(&key)
            && at.elapsed() < METADATA_TTL
        {
            return Ok(meta.clone());
        }
        let meta = oauth::discover(http, issuer).await?;
        tracing::info!(issuer, token_endpoint = %meta.token_endpoint, "discovered authorization server metadata");
        cache.insert(key, (meta.clone(), Instant::now()));
        Ok(meta)
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
            .ok_or_else(|| ProfileError::Unknown(name.clone()))?
            .clone();
        let oauth_err = |source| TokenError::OAuth {
            name: name.clone(),
            source,
        };
        let secret = match profile.auth {
            AuthMethod::None => None,
            _ => Some(
                self.profiles
                    .store()
                    .get(name)
                    .await?
                    .ok_or_else(|| TokenError::SecretMissing(name.clone()))?,
            ),
        };
        let http = self.http(profile.ca_file.as_ref()).map_err(oauth_err)?;
        let (token_endpoint, issuer) = match (&profile.token_url, &profile.issuer) {
            (Some(url), issuer) => (
                url::Url::parse(url)
                    .map_err(|e| oauth_err(OAuthError::Setup(format!("token_url: {e}"))))?,
                issuer.clone(),
            ),
            (None, Some(issuer)) => {
                let meta = self
                    .metadata(&http, issuer, profile.ca_file.as_ref())
                    .await
                    .map_err(oauth_err)?;
                (meta.token_endpoint, Some(meta.issuer))
            }
            (None, None) => {
                return Err(oauth_err(OAuthError::Setup(
                    "the profile has neither issuer nor token_url".into(),
                )));
            }
        };
        let auth = || -> Result<ClientAuth<'_>, TokenError> {
            Ok(match (profile.auth, secret.as_ref()) {
                (AuthMethod::None, _) => ClientAuth::None,
                (AuthMethod::ClientSecretBasic, Some(s)) => ClientAuth::Basic(s),
                (AuthMethod::ClientSecretPost, Some(s)) => ClientAuth::Post(s),
                (AuthMethod::ClientSecretJwt | AuthMethod::PrivateKeyJwt, Some(s)) => {
                    let aud = match (&profile.assertion_aud, &issuer) {
                        (Some(AssertionAud::Url(url)), _) => url.clone(),
                        (Some(AssertionAud::TokenEndpoint), _) | (None, None) => {
                            token_endpoint.to_string()
                        }
                        (Some(AssertionAud::Issuer) | None, Some(issuer)) => issuer.clone(),
                        (Some(AssertionAud::Issuer), None) => {
                            return Err(oauth_err(OAuthError::Setup(
                                "assertion_aud is `issuer` but the profile has no issuer".into(),
                            )));
                        }
                    };
                    let alg = profile.alg.ok_or_else(|| {
                        oauth_err(OAuthError::Setup(
                            "the profile has no alg; add it again".into(),
                        ))
                    })?;
                    ClientAuth::Jwt {
                        secret: s,
                        alg,
                        kid: profile.kid.as_deref(),
                        aud,
                    }
                }
                (_, None) => return Err(TokenError::SecretMissing(name.clone())),
            })
        };
        let request = |grant| -> Result<TokenRequest<'_>, TokenError> {
            Ok(TokenRequest {
                grant,
                token_endpoint: &token_endpoint,
                client_id: &profile.client_id,
                auth: auth()?,
                scopes: &key.scopes,
                resources: &key.resources,
                audience: profile.audience.as_deref(),
                params: &profile.params,
            })
        };
        // A refresh token first, when the server gave one; if it is refused,
        // the client_credentials grant (a new assertion each time).
        let mut response = None;
        if let Some(rt) = refresh_token.as_ref() {
            match oauth::fetch_token(&http, &request(Grant::RefreshToken(rt))?).await {
                Ok(r) => response = Some((r, true)),
                Err(e @ OAuthError::Idp { .. }) => {
                    tracing::info!(profile = %name, error = %e, "refresh token refused; using client_credentials");
                }
                Err(e) => return Err(oauth_err(e)),
            }
        }
        let (response, refreshed) = match response {
            Some(r) => r,
            None => (
                oauth::fetch_token(&http, &request(Grant::ClientCredentials)?)
                    .await
                    .map_err(oauth_err)?,
                false,
            ),
        };
        tracing::info!(
            profile = %name,
            fingerprint = %oauth::fingerprint(&response.access_token),
            expires_in = ?response.expires_in,
            grant = if refreshed { "refresh_token" } else { "client_credentials" },
            "token fetched"
        );
        Ok(Fetched {
            token: response.access_token,
            token_type: response.token_type,
            scope: response.scope,
            lifetime: response.expires_in.map(Duration::from_secs),
            // A server may keep the refresh token it issued: then reuse it.
            refresh_token: response
                .refresh_token
                .or(if refreshed { refresh_token } else { None }),
            refresh_before: profile.refresh_before,
        })
    }
}

impl Fetcher for AgentFetcher {
    async fn fetch(&self, key: &Key, refresh_token: Option<Secret>) -> Result<Fetched, FetchError> {
        self.fetch_inner(key, refresh_token).await.map_err(|e| {
            tracing::warn!(profile = %key.profile, error = %e, "token request failed");
            e.into_fetch_error()
        })
    }
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v.dedup();
    v
}

/// What the request handler asks for tokens.
pub struct Tokens {
    profiles: Arc<Profiles>,
    refresher: Arc<Refresher<AgentFetcher>>,
}

impl Tokens {
    pub fn new(profiles: Arc<Profiles>) -> Tokens {
        Tokens {
            refresher: Refresher::new(AgentFetcher::new(profiles.clone())),
            profiles,
        }
    }

    /// Drops every cached token of `profile` (after `remove` or a replacing `add`).
    pub fn forget(&self, profile: &str) {
        self.refresher.forget(profile);
    }

    /// Drops every cached token.
    pub fn clear(&self) {
        self.refresher.clear();
    }

    /// Every cached key's state.
    pub fn status(&self) -> Vec<KeyStatus> {
        self.refresher.status()
    }

    /// A token for `query`.
    pub async fn get(&self, query: TokenQuery) -> Result<TokenAnswer, ErrorBody> {
        let config = self
            .profiles
            .current_fast()
            .map_err(|e| ProfileError::Config(e.to_string()).to_body())?;
        let profile = config
            .profiles
            .get(&query.name)
            .ok_or_else(|| ProfileError::Unknown(query.name.clone()).to_body())?;
        let key = Key {
            profile: query.name.clone(),
            scopes: sorted(query.scopes.unwrap_or_else(|| profile.scopes.clone())),
            resources: sorted(query.resources.unwrap_or_else(|| profile.resources.clone())),
        };
        let served = self.refresher.get(&key, query.min_ttl, query.force).await?;
        Ok(TokenAnswer {
            access_token: served.token,
            token_type: served.token_type,
            expires_at: served.expires_at,
            scope: served.scope,
        })
    }
}
