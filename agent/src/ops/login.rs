//! `login`, `login_wait` and `logout`: the agent's state read for the
//! sign-in machinery of [`crate::login`], which knows nothing of it; and the
//! revocation of a user profile's refresh token, shared with `add` and
//! `remove`.

use crate::error::{AgentError, LoginError};
use crate::state::AgentState;
use crate::token_error::TokenError;
use jwtagent::config::Profile;
use jwtagent::protocol::{LoggedOut, LoginProgress, LoginStarted, WhoAmI};
use jwtagent::secret::Secret;
use std::time::Duration;

/// `login`: a sign-in of user profile `name`, started or joined.
pub(crate) async fn start(
    state: &AgentState,
    name: &str,
    headless: bool,
) -> Result<LoginStarted, AgentError> {
    if let Some(joined) = state.logins.join(name) {
        return Ok(joined);
    }
    let profile = user_profile(state, name, "start")?;
    let secret = match profile.auth {
        jwtagent::config::AuthMethod::None => None,
        _ => Some(
            crate::secret_command::secret_of(state.profiles.store(), name, &profile)
                .await
                .map_err(TokenError::from)?
                .ok_or_else(|| TokenError::SecretMissing(name.to_string()))?,
        ),
    };
    let refresher = state.tokens.refresher();
    state
        .logins
        .start(name, profile, secret, refresher, headless)
        .await
}

/// `login_wait`: waits up to `wait` for the sign-in under way.
pub(crate) async fn wait(
    state: &AgentState,
    name: &str,
    wait: Duration,
) -> Result<LoginProgress, AgentError> {
    let progress = state.logins.wait(name, wait).await;
    if matches!(&progress, Ok(p) if p.done) {
        // Its sinks get the new sign-in's token now.
        state.sinks.restart(name);
    }
    progress
}

/// `whoami`: whether user profile `name` is signed in, and as whom: the
/// subject and the first of `preferred_username`, `email` and `name` of the
/// ID token the server last issued it, taken as the token endpoint sent it
/// over TLS (OpenID Connect Core 3.1.3.7), once its `iss` and `aud` are this
/// profile's.
pub(crate) async fn whoami(state: &AgentState, name: &str) -> Result<WhoAmI, AgentError> {
    let profile = user_profile(state, name, "show")?;
    let fetcher = state.tokens.fetcher();
    let signed_in = fetcher
        .signed_in(name, profile.generation)
        .await
        .map_err(AgentError::from)?;
    if !signed_in {
        return Ok(WhoAmI::default());
    }
    let (_, subject, username) = identity(fetcher, name, &profile);
    Ok(WhoAmI {
        signed_in,
        subject,
        username,
        since: fetcher.signed_in_at(name),
        until: fetcher.refresh_until(name),
    })
}

/// As whom user profile `name` is signed in, from the ID token its server
/// last issued: the name to show (the username, else the subject), the
/// subject, and the first of `preferred_username`, `email` and `name`.
pub(crate) fn identity(
    fetcher: &crate::fetcher::AgentFetcher,
    name: &str,
    profile: &Profile,
) -> (Option<String>, Option<String>, Option<String>) {
    let claims = fetcher
        .id_token(name)
        .and_then(|token| claims_of(&token, profile));
    let text = |key: &str| {
        claims
            .as_ref()
            .and_then(|c| c.get(key)?.as_str())
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let subject = text("sub");
    let username = text("preferred_username")
        .or_else(|| text("email"))
        .or_else(|| text("name"));
    (
        username.clone().or_else(|| subject.clone()),
        subject,
        username,
    )
}

/// The claims of `id_token` when they are for `profile`'s client from its
/// issuer (when it has one); None otherwise.
fn claims_of(
    id_token: &Secret,
    profile: &Profile,
) -> Option<serde_json::Map<String, serde_json::Value>> {
    use base64::Engine as _;
    let text = std::str::from_utf8(id_token.expose()).ok()?;
    let payload = text.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&bytes).ok()?;
    let issuer_ok = match (&profile.issuer, claims.get("iss").and_then(|v| v.as_str())) {
        (Some(issuer), Some(iss)) => iss.trim_end_matches('/') == issuer.trim_end_matches('/'),
        (Some(_), None) => false,
        (None, _) => true,
    };
    let aud_ok = match claims.get("aud") {
        Some(serde_json::Value::String(aud)) => *aud == profile.client_id,
        Some(serde_json::Value::Array(auds)) => auds
            .iter()
            .any(|a| a.as_str() == Some(profile.client_id.as_str())),
        _ => false,
    };
    if !(issuer_ok && aud_ok) {
        tracing::warn!(client_id = %profile.client_id, "the ID token is not for this profile's client or issuer; its identity is not shown");
        return None;
    }
    Some(claims)
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
    let profile = state.profiles.get(name)?;
    if !profile.grant.is_user() {
        return Err(LoginError::NotUser {
            name: name.to_string(),
            grant: profile.grant.kind(),
            verb,
        }
        .into());
    }
    Ok(profile)
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
    // Its sinks' files go (unless kept): their token is the sign-in's.
    state.sinks.restart(name);
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
        _ => crate::secret_command::secret_of(state.profiles.store(), name, profile)
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

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    fn id_token(claims: serde_json::Value) -> Secret {
        let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let text = format!(
            "{}.{}.sig",
            b64(br#"{"alg":"RS256"}"#),
            b64(claims.to_string().as_bytes())
        );
        Secret::new(text.into_bytes())
    }

    #[test]
    fn an_id_token_is_believed_only_for_this_client_from_this_issuer() {
        let mut profile = Profile::new(
            "https://idp.example/token",
            "cli",
            jwtagent::config::AuthMethod::None,
        );
        profile.issuer = Some("https://idp.example".into());
        let ok =
            serde_json::json!({"iss": "https://idp.example", "aud": ["cli", "x"], "sub": "alice"});
        assert_eq!(claims_of(&id_token(ok), &profile).unwrap()["sub"], "alice");
        for bad in [
            serde_json::json!({"iss": "https://evil.example", "aud": "cli", "sub": "mallory"}),
            serde_json::json!({"iss": "https://idp.example", "aud": "other", "sub": "mallory"}),
            serde_json::json!({"aud": "cli", "sub": "mallory"}),
        ] {
            assert!(
                claims_of(&id_token(bad.clone()), &profile).is_none(),
                "{bad}"
            );
        }
        assert!(claims_of(&Secret::new(b"not a jwt".to_vec()), &profile).is_none());
    }
}
