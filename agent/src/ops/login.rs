//! `login`, `login_wait` and `logout`: the agent's state read for the
//! sign-in machinery of [`crate::login`], which knows nothing of it; and the
//! revocation of a user profile's refresh token, shared with `add` and
//! `remove`.

use crate::error::{AgentError, LoginError};
use crate::state::AgentState;
use crate::token_error::TokenError;
use jwtagent::config::Profile;
use jwtagent::protocol::{LoggedOut, LoginProgress, LoginStarted};
use jwtagent::secret::Secret;
use std::time::Duration;

/// `login`: a sign-in of user profile `name`, started or joined.
pub(crate) async fn start(state: &AgentState, name: &str) -> Result<LoginStarted, AgentError> {
    if let Some(joined) = state.logins.join(name) {
        return Ok(joined);
    }
    let profile = user_profile(state, name, "start")?;
    let secret = match profile.auth {
        jwtagent::config::AuthMethod::None => None,
        _ => Some(
            state
                .profiles
                .store()
                .get(name, profile.generation)
                .await
                .map_err(TokenError::from)?
                .ok_or_else(|| TokenError::SecretMissing(name.to_string()))?,
        ),
    };
    let refresher = state.tokens.refresher();
    state.logins.start(name, profile, secret, refresher).await
}

/// `login_wait`: waits up to `wait` for the sign-in under way.
pub(crate) async fn wait(
    state: &AgentState,
    name: &str,
    wait: Duration,
) -> Result<LoginProgress, AgentError> {
    state.logins.wait(name, wait).await
}

/// `logout`: cancels a sign-in under way, deletes the refresh token and
/// revokes it at the server (RFC 7009) when it has a revocation endpoint.
pub(crate) async fn logout(state: &AgentState, name: &str) -> Result<LoggedOut, AgentError> {
    let profile = user_profile(state, name, "end")?;
    state.logins.cancel(name, "you signed out");
    sign_out(state, name, &profile, "you signed out").await
}

/// User profile `name` as the config has it now (`verb`: what the op would
/// do to its sign-in, for the error when it is not a user profile).
fn user_profile(state: &AgentState, name: &str, verb: &'static str) -> Result<Profile, AgentError> {
    let config = state
        .profiles
        .current()
        .map_err(|e| crate::profiles::ProfileError::Config(e.to_string()))?;
    let profile = config
        .profiles
        .get(name)
        .ok_or_else(|| crate::profiles::not_served(&config, name))?;
    if !profile.grant.is_user() {
        return Err(LoginError::NotUser {
            name: name.to_string(),
            grant: profile.grant.kind(),
            verb,
        }
        .into());
    }
    Ok(profile.clone())
}

/// Forgets user profile `name`'s sign-in and revokes its refresh token
/// (`logout`, and `remove` of a user profile).
pub(crate) async fn sign_out(
    state: &AgentState,
    name: &str,
    profile: &Profile,
    why: &str,
) -> Result<LoggedOut, AgentError> {
    let refresher = state.tokens.refresher();
    let fetcher = refresher.fetcher();
    let rt = fetcher.sign_out(name, profile.generation, why).await?;
    refresher.forget(name);
    let Some(rt) = rt else {
        return Ok(LoggedOut::default());
    };
    let secret = client_secret(state, name, profile).await;
    let (revoked, warning) = revoke(state, name, profile, secret.as_ref(), &rt).await;
    tracing::info!(profile = %name, revoked, "signed out");
    Ok(LoggedOut {
        was_logged_in: true,
        revoked,
        warning,
    })
}

/// The secret user profile `name`'s client authenticates with, if it has one.
pub(crate) async fn client_secret(
    state: &AgentState,
    name: &str,
    profile: &Profile,
) -> Option<Secret> {
    match profile.auth {
        jwtagent::config::AuthMethod::None => None,
        _ => state
            .profiles
            .store()
            .get(name, profile.generation)
            .await
            .ok()
            .flatten(),
    }
}

/// Revokes refresh token `rt` of user profile `name` (as `profile` and
/// `secret` were when it was issued) where the server offers revocation
/// (RFC 7009): whether it did, and what to tell the user when not.
pub(crate) async fn revoke(
    state: &AgentState,
    name: &str,
    profile: &Profile,
    secret: Option<&Secret>,
    rt: &Secret,
) -> (bool, Option<String>) {
    let refresher = state.tokens.refresher();
    match refresher.fetcher().oauth().revoke(name, profile, secret, rt).await {
        Ok(true) => (true, None),
        Ok(false) => (
            false,
            Some("the server has no revocation endpoint (RFC 7009): the refresh token is deleted here, but stays valid at the server until it expires (give --revocation-url if the server has one)".to_string()),
        ),
        Err(e) => (
            false,
            Some(format!(
                "the server did not revoke the refresh token ({e}); it is deleted here all the same"
            )),
        ),
    }
}
