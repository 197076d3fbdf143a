//! Serving tokens: a per-key cache in memory and the glue between a profile, its
//! secret and the OAuth client.
//!
//! A simple cache for now: a token is fetched when none is cached, when less
//! than `min_ttl` remains, or on `force`; concurrent requests for one key wait
//! for the one fetch. Proactive refresh and backoff belong to the refresher.

use crate::oauth::{self, ClientAuth, Metadata, OAuthError, TokenRequest};
use crate::profiles::{ProfileError, Profiles};
use crate::store::StoreError;
use jwtagent::config::{AssertionAud, AuthMethod};
use jwtagent::protocol::{ErrorBody, ErrorCode, IdpDetail, TokenAnswer};
use jwtagent::secret::Secret;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a token without `expires_in` is served before it is fetched again.
pub const UNKNOWN_LIFETIME: Duration = Duration::from_secs(300);
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
}

/// Cache key: the profile and exactly what was asked of the server.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    profile: String,
    scopes: Vec<String>,
    resources: Vec<String>,
}

struct Cached {
    token: Secret,
    token_type: String,
    scope: Option<String>,
    expires_at: Option<u64>,
    /// When to stop serving it (monotonic).
    valid_until: Instant,
}

type Slot = Arc<tokio::sync::Mutex<Option<Cached>>>;

/// Discovered metadata by (issuer, CA file), with when it was fetched.
type MetadataCache = HashMap<(String, Option<PathBuf>), (Metadata, Instant)>;

#[derive(Default)]
pub struct Tokens {
    slots: Mutex<HashMap<Key, Slot>>,
    http: Mutex<HashMap<Option<PathBuf>, reqwest::Client>>,
    metadata: tokio::sync::Mutex<MetadataCache>,
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v.dedup();
    v
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Tokens {
    pub fn new() -> Tokens {
        Tokens::default()
    }

    /// Drops every cached token of `profile` (after `remove` or a replacing `add`).
    pub fn forget(&self, profile: &str) {
        if let Ok(mut slots) = self.slots.lock() {
            slots.retain(|key, _| key.profile != profile);
        }
    }

    /// Per profile: the seconds left on its longest-lived cached token, for
    /// `status`. Keys busy fetching right now are skipped rather than waited for.
    pub fn remaining(&self) -> HashMap<String, Duration> {
        let slots: Vec<(Key, Slot)> = self
            .slots
            .lock()
            .map(|s| s.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        let now = Instant::now();
        let mut out: HashMap<String, Duration> = HashMap::new();
        for (key, slot) in slots {
            if let Ok(cached) = slot.try_lock()
                && let Some(c) = cached.as_ref()
            {
                let left = c.valid_until.saturating_duration_since(now);
                let best = out.entry(key.profile).or_default();
                *best = (*best).max(left);
            }
        }
        out
    }

    fn slot(&self, key: Key) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.entry(key).or_default().clone()
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

    /// A token for `query`: the cached one when it has more than `min_ttl` left,
    /// else a new one.
    pub async fn get(
        &self,
        profiles: &Profiles,
        query: TokenQuery,
    ) -> Result<TokenAnswer, TokenError> {
        let config = profiles
            .current()
            .map_err(|e| ProfileError::Config(e.to_string()))?;
        let profile = config
            .profiles
            .get(&query.name)
            .ok_or_else(|| ProfileError::Unknown(query.name.clone()))?
            .clone();
        let key = Key {
            profile: query.name.clone(),
            scopes: sorted(
                query
                    .scopes
                    .clone()
                    .unwrap_or_else(|| profile.scopes.clone()),
            ),
            resources: sorted(
                query
                    .resources
                    .clone()
                    .unwrap_or_else(|| profile.resources.clone()),
            ),
        };
        let slot = self.slot(key.clone());
        // One fetch per key at a time: the others wait here and then find it cached.
        let mut cached = slot.lock().await;
        if !query.force
            && let Some(c) = cached.as_ref()
            && c.valid_until.saturating_duration_since(Instant::now()) > query.min_ttl
        {
            return Ok(answer(c));
        }

        let oauth_err = |source| TokenError::OAuth {
            name: query.name.clone(),
            source,
        };
        let secret = match profile.auth {
            AuthMethod::None => None,
            _ => Some(
                profiles
                    .store()
                    .get(&query.name)
                    .await?
                    .ok_or_else(|| TokenError::SecretMissing(query.name.clone()))?,
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
        let auth = match (profile.auth, secret.as_ref()) {
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
            (_, None) => return Err(TokenError::SecretMissing(query.name.clone())),
        };
        let started = Instant::now();
        let fetched_at = unix_now();
        let response = oauth::fetch_token(
            &http,
            &TokenRequest {
                token_endpoint: &token_endpoint,
                client_id: &profile.client_id,
                auth,
                scopes: &key.scopes,
                resources: &key.resources,
                audience: profile.audience.as_deref(),
                params: &profile.params,
            },
        )
        .await
        .map_err(|e| {
            tracing::warn!(profile = %query.name, error = %e, "token request failed");
            oauth_err(e)
        })?;
        let lifetime = response
            .expires_in
            .map(Duration::from_secs)
            .unwrap_or(UNKNOWN_LIFETIME);
        tracing::info!(
            profile = %query.name,
            fingerprint = %oauth::fingerprint(&response.access_token),
            expires_in = ?response.expires_in,
            "token fetched"
        );
        let entry = Cached {
            token: response.access_token,
            token_type: response.token_type,
            scope: response.scope,
            expires_at: response.expires_in.map(|s| fetched_at + s),
            valid_until: started + lifetime,
        };
        let out = answer(&entry);
        *cached = Some(entry);
        Ok(out)
    }
}

fn answer(c: &Cached) -> TokenAnswer {
    TokenAnswer {
        access_token: c.token.clone(),
        token_type: c.token_type.clone(),
        expires_at: c.expires_at,
        scope: c.scope.clone(),
    }
}
