//! The refresher's fetcher: reads a profile, its secret and DPoP key, and asks
//! the OAuth client for a token. The refresher calls it for a caller's request
//! and for background refreshes alike, so it reads the config afresh: a hand
//! edit applies at the next refresh. It names the profiles a token is made
//! from ([`Fetcher::inputs`]); the refresher gets their tokens and hands them
//! over, so the fetcher never calls back up.

use crate::dpop_keys::DpopKeys;
use crate::oauth::grant::{ACCESS_TOKEN_TYPE, Input, Inputs};
use crate::oauth::{self, OAuthClient};
use crate::profiles::{ProfileError, Profiles};
use crate::refresh::{FetchError, Fetched, Fetcher, Key, RefreshError, Served};
use crate::store::SecretStore;
use crate::token_error::{TokenError, key_for};
use jwtagent::config::{ConfigFile, Grant, Profile};
use jwtagent::secret::Secret;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Fetches tokens for the refresher: reads the profile, its secret and DPoP
/// key, and asks the OAuth client.
pub(crate) struct AgentFetcher {
    profiles: Arc<Profiles>,
    store: SecretStore,
    oauth: OAuthClient,
    dpop: Arc<DpopKeys>,
    /// User profiles: what concerns their sign-in.
    users: Users,
}

/// What the fetcher keeps about user profiles (device-code and
/// authorization-code). Their refresh token lives in the keyring only.
#[derive(Default)]
struct Users {
    /// One refresh-token use at a time per profile: with rotation, two
    /// requests with the same refresh token would be taken for a replay
    /// (and the server would revoke the whole grant).
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The ID token last issued to each.
    id_tokens: Mutex<HashMap<String, Secret>>,
    /// When each signed in (Unix seconds), as this agent saw it.
    signed_in_at: Mutex<HashMap<String, u64>>,
    /// Until when each one's refresh token lasts (Unix seconds), when its
    /// server said (with the sign-in, or a refresh since).
    refresh_until: Mutex<HashMap<String, u64>>,
    /// Why a profile needs `jwtagent login`, when it is known to.
    login_required: Mutex<HashMap<String, String>>,
}

impl Users {
    fn lock(&self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(name.to_string()).or_default().clone()
    }

    fn set_login_required(&self, name: &str, why: Option<String>) {
        set(&self.login_required, name, why);
    }

    fn set_signed_in_at(&self, name: &str, at: Option<u64>) {
        set(&self.signed_in_at, name, at);
    }

    /// Notes until when `name`'s refresh token lasts, from an answer's
    /// `refresh_expires_in` (an answer without one leaves what was said).
    fn note_refresh_lifetime(&self, name: &str, secs: Option<u64>) {
        if let Some(secs) = secs {
            let until = jwtagent::time::unix_now().saturating_add(secs);
            set(&self.refresh_until, name, Some(until));
        }
    }

    fn set_id_token(&self, name: &str, token: Option<Secret>) {
        set(&self.id_tokens, name, token);
    }
}

/// `name`'s entry of `map`.
fn get<T: Clone>(map: &Mutex<HashMap<String, T>>, name: &str) -> Option<T> {
    map.lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(name)
        .cloned()
}

/// Sets (or with None, removes) `name`'s entry of `map`.
fn set<T>(map: &Mutex<HashMap<String, T>>, name: &str, value: Option<T>) {
    let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
    match value {
        Some(v) => map.insert(name.to_string(), v),
        None => map.remove(name),
    };
}

impl AgentFetcher {
    pub(crate) fn new(
        profiles: Arc<Profiles>,
        store: SecretStore,
        dpop: Arc<DpopKeys>,
    ) -> AgentFetcher {
        AgentFetcher {
            profiles,
            store,
            oauth: OAuthClient::default(),
            dpop,
            users: Users::default(),
        }
    }

    /// Forgets what is kept in memory of user profile `name`'s sign-in (its
    /// ID token; whether it needs one is found out again).
    pub(crate) fn forget_user(&self, name: &str) {
        self.users.set_id_token(name, None);
        self.users.set_signed_in_at(name, None);
        self.users.set_login_required(name, None);
    }

    /// Forgets every user profile's ID token (`lock`).
    pub(crate) fn forget_users(&self) {
        let mut map = self
            .users
            .id_tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        map.clear();
    }

    /// A token for `profile` (not saved yet) with `secret`: the check `add`
    /// makes that the server takes the profile as it is.
    pub(crate) async fn verify(
        &self,
        name: &str,
        profile: &Profile,
        secret: Option<&Secret>,
    ) -> Result<oauth::Obtained, oauth::OAuthError> {
        let (key, _) = key_for(name, profile, None, None)
            .map_err(|e| oauth::OAuthError::Setup(oauth::SetupError::TokenUrl(e.to_string())))?;
        let inputs = Inputs::default();
        // Clients cached for the profile's old certificate must not be used.
        self.oauth.forget(name);
        let result = self
            .oauth
            .token(
                oauth::Ask {
                    name,
                    profile,
                    secret,
                    dpop: None,
                    scopes: &key.scopes,
                    resources: &key.resources,
                    inputs: &inputs,
                    sign_in: None,
                },
                None,
            )
            .await;
        self.oauth.forget(name);
        result
    }

    /// Why user profile `name` needs `jwtagent login`, when it is known to.
    pub(crate) fn login_required(&self, name: &str) -> Option<String> {
        get(&self.users.login_required, name)
    }

    /// When user profile `name` signed in, if this agent saw it.
    pub(crate) fn signed_in_at(&self, name: &str) -> Option<u64> {
        get(&self.users.signed_in_at, name)
    }

    /// Until when user profile `name`'s refresh token lasts, when its server
    /// said.
    pub(crate) fn refresh_until(&self, name: &str) -> Option<u64> {
        get(&self.users.refresh_until, name)
    }

    /// The ID token last issued to profile `name`.
    pub(crate) fn id_token(&self, name: &str) -> Option<Secret> {
        get(&self.users.id_tokens, name)
    }

    /// Whether user profile `name` has a refresh token in the keyring.
    pub(crate) async fn signed_in(&self, name: &str, generation: u32) -> Result<bool, TokenError> {
        Ok(self.store.get_refresh(name, generation).await?.is_some())
    }

    /// Keeps what a sign-in of user profile `name` obtained: the refresh
    /// token goes to the keyring first (the server may already have
    /// forgotten any earlier one); its token is returned, for the caller to
    /// put in the refresher's place of the profile's cached ones.
    pub(crate) async fn keep_sign_in(
        &self,
        name: &str,
        profile: &Profile,
        obtained: oauth::Obtained,
    ) -> Result<(Key, Fetched), TokenError> {
        let lock = self.users.lock(name);
        let _held = lock.lock().await;
        match obtained.refresh_token {
            Some(rt) => self.store.set_refresh(name, profile.generation, rt).await?,
            // No refresh token: the sign-in lasts as long as this access
            // token. An earlier refresh token belongs to an earlier sign-in.
            None => {
                self.store.delete_refresh(name, profile.generation).await?;
            }
        }
        self.users.set_login_required(name, None);
        self.users
            .set_signed_in_at(name, Some(jwtagent::time::unix_now()));
        set(&self.users.refresh_until, name, None);
        self.users
            .note_refresh_lifetime(name, obtained.response.refresh_expires_in);
        let mut response = obtained.response;
        self.users.set_id_token(name, response.id_token.take());
        tracing::info!(
            profile = %name,
            fingerprint = %oauth::fingerprint(&response.access_token),
            expires_in = ?response.expires_in,
            grant = obtained.grant,
            "signed in"
        );
        seeded(name, profile, response)
    }

    /// Forgets user profile `name`'s sign-in: its refresh token leaves the
    /// keyring (returned, for revocation); the caller drops its tokens.
    pub(crate) async fn sign_out(
        &self,
        name: &str,
        generation: u32,
        why: &str,
    ) -> Result<Option<Secret>, TokenError> {
        let lock = self.users.lock(name);
        let _held = lock.lock().await;
        let rt = self.store.get_refresh(name, generation).await?;
        self.store.delete_refresh(name, generation).await?;
        self.users.set_id_token(name, None);
        self.users.set_signed_in_at(name, None);
        set(&self.users.refresh_until, name, None);
        self.users.set_login_required(name, Some(why.to_string()));
        Ok(rt)
    }

    /// A token for user profile `name` from the refresh token in the
    /// keyring, which is replaced there when the server rotates it.
    async fn fetch_user(&self, ask: oauth::Ask<'_>) -> Result<oauth::Obtained, TokenError> {
        let name = ask.name;
        let generation = ask.profile.generation;
        let lock = self.users.lock(name);
        let _held = lock.lock().await;
        let Some(rt) = self.store.get_refresh(name, generation).await? else {
            let why = self
                .login_required(name)
                .unwrap_or_else(|| "it has not signed in".to_string());
            self.users.set_login_required(name, Some(why.clone()));
            return Err(TokenError::LoginRequired {
                name: name.to_string(),
                why,
            });
        };
        match self.oauth.token(ask, Some(rt.clone())).await {
            Ok(mut obtained) => {
                if let Some(new) = obtained.refresh_token.take()
                    && new != rt
                {
                    // Stored before anything else is done with the answer:
                    // the server has retired the old one.
                    if let Err(e) = self.store.set_refresh(name, generation, new).await {
                        tracing::error!(profile = %name, error = %e, "cannot store the rotated refresh token; the next refresh will need a new login");
                    }
                    crate::crash_point("refresh:after-store");
                }
                if obtained.response.id_token.is_some() {
                    self.users
                        .set_id_token(name, obtained.response.id_token.take());
                }
                self.users
                    .note_refresh_lifetime(name, obtained.response.refresh_expires_in);
                Ok(obtained)
            }
            Err(oauth::OAuthError::Idp {
                error, description, ..
            }) if error == "invalid_grant" => {
                // Dead for good: dropped, so that later requests fail here
                // and not at the server.
                let _ = self.store.delete_refresh(name, generation).await;
                let why = format!(
                    "the server rejected its refresh token (invalid_grant{})",
                    description.map(|d| format!(": {d}")).unwrap_or_default()
                );
                self.users.set_login_required(name, Some(why.clone()));
                Err(TokenError::LoginRequired {
                    name: name.to_string(),
                    why,
                })
            }
            Err(source) => Err(TokenError::OAuth {
                name: name.to_string(),
                source,
            }),
        }
    }

    /// The OAuth client, for what it learned about servers.
    pub(crate) fn oauth(&self) -> &OAuthClient {
        &self.oauth
    }

    /// The config as it is now (a hand edit applies at the next fetch), and
    /// profile `name` in it.
    fn profile(&self, name: &str) -> Result<(Arc<ConfigFile>, Profile), TokenError> {
        let config = self
            .profiles
            .current()
            .map_err(|e| ProfileError::Config(e.to_string()))?;
        let profile = config
            .profiles
            .get(name)
            .map(|p| Profile::clone(p))
            .ok_or_else(|| crate::profiles::not_served(&config, name))?;
        Ok((config, profile))
    }

    /// The cache keys of the profiles `key`'s profile takes tokens from,
    /// with their roles: each input profile's own scopes and resources. A
    /// chain that cannot be walked (a hand edit the loader missed, a circle)
    /// or an input that does not exist is an error here, before anything is
    /// fetched.
    fn input_keys(&self, key: &Key) -> Result<Vec<(&'static str, Key)>, TokenError> {
        let name = &key.profile;
        let (config, profile) = self.profile(name)?;
        if profile.inputs().next().is_none() {
            return Ok(Vec::new());
        }
        jwtagent::chain::inputs(&config.profiles, name).map_err(TokenError::Chain)?;
        profile
            .input_roles()
            .map(|(role, from)| {
                let input = config.profiles.get(from).ok_or_else(|| TokenError::Input {
                    profile: name.clone(),
                    role,
                    input: from.to_string(),
                    error: Box::new(crate::refresh::RefreshError::Failed {
                        error: TokenError::Profile(ProfileError::Unknown(from.to_string())),
                        next_attempt_in: None,
                    }),
                })?;
                Ok((role, key_for(from, input, None, None)?.0))
            })
            .collect()
    }

    async fn fetch_inner(
        &self,
        key: &Key,
        refresh_token: Option<Secret>,
        served: Vec<(&'static str, Served)>,
    ) -> Result<Fetched, TokenError> {
        let name = &key.profile;
        let (_, profile) = self.profile(name)?;
        let profile = &profile;
        let (inputs, inputs_expire) = grant_inputs(profile, served);
        let secret = match profile.auth {
            jwtagent::config::AuthMethod::None if !profile.signs_grant() => None,
            _ => Some(
                crate::secret_command::secret_of(&self.store, name, profile)
                    .await?
                    .ok_or_else(|| TokenError::SecretMissing(name.clone()))?,
            ),
        };
        let dpop_key = match profile.dpop_key_alg() {
            Some(alg) => Some(self.dpop.get(name, alg, profile.generation).await?),
            None => None,
        };
        let ask = oauth::Ask {
            name,
            profile,
            secret: secret.as_ref(),
            dpop: dpop_key.as_deref(),
            scopes: &key.scopes,
            resources: &key.resources,
            inputs: &inputs,
            sign_in: None,
        };
        let user = profile.grant.is_user();
        let obtained = if user {
            self.fetch_user(ask).await?
        } else {
            self.oauth
                .token(ask, refresh_token)
                .await
                .map_err(|source| TokenError::OAuth {
                    name: name.clone(),
                    source,
                })?
        };
        let response = obtained.response;
        tracing::info!(
            profile = %name,
            fingerprint = %oauth::fingerprint(&response.access_token),
            expires_in = ?response.expires_in,
            grant = obtained.grant,
            "token fetched"
        );
        // No token outlives the tokens it was made from.
        let lifetime = match (response.expires_in, inputs_expire) {
            (own, Some(at)) => {
                let left = at.saturating_sub(jwtagent::time::unix_now());
                Some(own.map_or(left, |own| own.min(left)))
            }
            (own, None) => own,
        };
        Ok(Fetched {
            token: response.access_token,
            token_type: response.token_type,
            scope: response.scope,
            lifetime: lifetime.map(Duration::from_secs),
            // A user's refresh token is in the keyring, not the cache.
            refresh_token: if user { None } else { obtained.refresh_token },
            refresh_before: profile.refresh_before,
            issued_token_type: response.issued_token_type,
            inputs: Vec::new(),
        })
    }
}

/// The grant inputs of `profile` from the tokens the refresher got for it
/// (`served`, by role), and when the first of them expires.
fn grant_inputs(profile: &Profile, served: Vec<(&'static str, Served)>) -> (Inputs, Option<u64>) {
    let mut inputs = Inputs::default();
    let mut expires: Option<u64> = None;
    for (role, served) in served {
        expires = match (expires, served.expires_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let given = match role {
            "subject" => match &profile.grant {
                Grant::TokenExchange(exchange) => exchange.subject_token_type.as_deref(),
                _ => None,
            },
            _ => None,
        };
        let input = Input {
            token_type: given
                .map(str::to_string)
                .or_else(|| served.issued_token_type.clone())
                .unwrap_or_else(|| ACCESS_TOKEN_TYPE.to_string()),
            token: served.token.clone(),
        };
        match role {
            "assertion" => inputs.assertion = Some(input),
            "actor" => inputs.actor = Some(input),
            _ => inputs.subject = Some(input),
        }
    }
    (inputs, expires)
}

/// A token the agent got for profile `name` outside the refresher (at
/// sign-in, or when `add` verified the profile), as the cache entry of the
/// profile's own scopes and resources that the caller seeds the refresher
/// with.
pub(crate) fn seeded(
    name: &str,
    profile: &Profile,
    response: oauth::TokenResponse,
) -> Result<(Key, Fetched), TokenError> {
    let (key, _) = key_for(name, profile, None, None)?;
    Ok((
        key,
        Fetched {
            token: response.access_token,
            token_type: response.token_type,
            scope: response.scope,
            lifetime: response.expires_in.map(Duration::from_secs),
            refresh_token: response.refresh_token,
            refresh_before: profile.refresh_before,
            issued_token_type: response.issued_token_type,
            inputs: Vec::new(),
        },
    ))
}

impl Fetcher for AgentFetcher {
    type Error = TokenError;

    fn inputs(&self, key: &Key) -> Result<Vec<(&'static str, Key)>, FetchError<TokenError>> {
        self.input_keys(key).map_err(TokenError::into_fetch_error)
    }

    fn input_failed(
        &self,
        key: &Key,
        role: &'static str,
        input: &Key,
        error: RefreshError<TokenError>,
    ) -> FetchError<TokenError> {
        TokenError::Input {
            profile: key.profile.clone(),
            role,
            input: input.profile.clone(),
            error: Box::new(error),
        }
        .into_fetch_error()
    }

    async fn fetch(
        &self,
        key: &Key,
        refresh_token: Option<Secret>,
        inputs: Vec<(&'static str, Served)>,
    ) -> Result<Fetched, FetchError<TokenError>> {
        self.fetch_inner(key, refresh_token, inputs)
            .await
            .map_err(|e| {
                // The refresher logs failures, rate-limited.
                tracing::debug!(profile = %key.profile, error = %e, "token request failed");
                e.into_fetch_error()
            })
    }
}
