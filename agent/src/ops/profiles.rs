//! `add`, `remove`, `list`, `show`, `keygen` and `jwks`: the profile store's
//! answers, with the tokens of a changed profile dropped.

use crate::audit::Record;
use crate::error::AgentError;
use crate::oauth::OAuthError;
use crate::peer::Peer;
use crate::policy::check_inputs;
use crate::profiles::{Entry, ProfileError, Refusal, Saved};
use crate::state::AgentState;
use crate::token_error::TokenError;
use jwtagent::config::{Alg, Profile};
use jwtagent::protocol::{Added, KeyGenerated, ProfileList, ProfileView, Register, Removed, Shown};
use jwtagent::secret::Secret;

pub(crate) async fn add(
    state: &AgentState,
    peer: &Peer,
    name: &str,
    profile: Profile,
    secret: Option<Secret>,
    verify: bool,
    register: Option<Register>,
) -> Result<Added, AgentError> {
    inputs_serve(state, peer, "add", name, &profile)?;
    let mut profile = profile;
    if profile.lifetime.is_none() {
        // The agent's --lifetime, for profiles added without one.
        profile.lifetime = state.default_lifetime;
    }
    // Where a registration is managed is the agent's to say.
    profile.registration_uri = None;
    let Some(register) = register else {
        return add_checked(state, name, profile, secret, verify, None).await;
    };
    let registering =
        super::register::register(state, name, &mut profile, secret.is_some(), register).await?;
    let secret = registering.client_secret.clone();
    match add_checked(
        state,
        name,
        profile.clone(),
        secret,
        verify,
        Some(&registering),
    )
    .await
    {
        Ok(mut added) => {
            added.registered = Some(registering.view.clone());
            Ok(added)
        }
        Err(e) => {
            // Not saved: the client registered for it would be left behind.
            registering.undo(state, name, &profile).await;
            Err(e)
        }
    }
}

/// `add` of `profile` (its client registered, if `registering`): checked
/// with the server when `verify`, then saved.
async fn add_checked(
    state: &AgentState,
    name: &str,
    mut profile: Profile,
    secret: Option<Secret>,
    verify: bool,
    registering: Option<&super::register::Registering>,
) -> Result<Added, AgentError> {
    // A secret kept elsewhere is got now, to check the profile with, and
    // not stored.
    let given = match (&secret, profile.secret_command.is_empty()) {
        (Some(_), false) => {
            return Err(ProfileError::Refused {
                name: name.to_string(),
                keygen: false,
                reason: Refusal::SecretAndCommand,
            }
            .into());
        }
        (None, false) => Some(
            crate::secret_command::run(&profile.secret_command)
                .await
                .map_err(ProfileError::from)?,
        ),
        _ => None,
    };
    let obtained = checked(
        state,
        name,
        &profile,
        given.as_ref().or(secret.as_ref()),
        verify,
    )
    .await?;
    // A signed-in user profile that is replaced: its sign-in is read now
    // (the save deletes it) and revoked at the server once the new profile
    // is saved, as `logout` would; a failed save leaves it as it was.
    let replaced_sign_in = sign_in_of(state, name).await;
    let previous =
        super::register::previous(state, name, &mut profile, registering.is_some()).await;
    let token = registering
        .and_then(|r| r.token.clone())
        .or(previous.carried.clone());
    let saved = match given {
        Some(given) => state.profiles.add_commanded(name, profile, given).await?,
        None => {
            state
                .profiles
                .add_registered(name, profile, secret, token)
                .await?
        }
    };
    let revoked = match replaced_sign_in {
        Some(replaced) => Some(revoke_replaced(state, name, replaced).await),
        None => None,
    };
    let unregistered = previous.finish(state, name).await;
    // The profile changed: tokens fetched under the old one must go, and a
    // sign-in under way for it is for settings that are gone.
    state.logins.cancel(name, "the profile was replaced");
    state.tokens.forget(name);
    restart_controls(state, name, &saved);
    let mut answer = answer_saved(state, name, saved, obtained, verify, revoked);
    if let Some(w) = unregistered {
        answer.warning = Some(match answer.warning {
            Some(first) => format!("{first}; {w}"),
            None => w,
        });
    }
    Ok(answer)
}

/// A profile just saved starts its lifetime anew, and yeses given for what
/// it was are forgotten.
fn restart_controls(state: &AgentState, name: &str, saved: &Saved) {
    state.confirms.forget(Some(name));
    match saved.entry.profile.lifetime {
        Some(lifetime) => state.lifetimes.start(name, lifetime),
        None => state.lifetimes.forget(name),
    }
}

/// The answer to an `add` or `secret` that saved: the token that proved the
/// profile is served first.
fn answer_saved(
    state: &AgentState,
    name: &str,
    saved: Saved,
    obtained: Option<crate::oauth::Obtained>,
    verify: bool,
    revoked: Option<(bool, Option<String>)>,
) -> Added {
    let verified = obtained.is_some();
    if let Some(mut obtained) = obtained {
        obtained.response.refresh_token = obtained.refresh_token.take();
        if let Ok((key, fetched)) =
            crate::fetcher::seeded(name, &saved.entry.profile, obtained.response)
        {
            state.tokens.refresher().seed(&key, fetched);
        }
    }
    let mut answer = added(saved);
    answer.verified = verify.then_some(verified);
    answer.revoked = revoked.as_ref().map(|(r, _)| *r);
    // The store's own warning is said once, where the agent starts and in
    // `status`, not at every `add`.
    answer.warning = revoked
        .and_then(|(_, w)| w)
        .map(|w| format!("the replaced profile's sign-in: {w}"));
    answer
}

/// `secret`: replaces only profile `name`'s secret (or key), keeping its
/// settings and its sign-in. Checked like `add` (a new secret the server
/// refuses is not saved and the old one stays), and through the same
/// policy on what the profile's inputs serve the caller.
pub(crate) async fn replace_secret(
    state: &AgentState,
    peer: &Peer,
    name: &str,
    secret: Secret,
    verify: bool,
) -> Result<Added, AgentError> {
    let mut profile = state.profiles.get(name)?;
    let refused = |reason| ProfileError::Refused {
        name: name.to_string(),
        keygen: false,
        reason,
    };
    if !profile.signs_grant() && profile.auth == jwtagent::config::AuthMethod::None {
        return Err(refused(Refusal::NoSecret).into());
    }
    if !profile.secret_command.is_empty() {
        return Err(refused(Refusal::SecretAndCommand).into());
    }
    inputs_serve(state, peer, "secret", name, &profile)?;
    // A `kid` that was the old key's thumbprint names the new key's instead.
    let old = state.profiles.store().get(name, profile.generation).await;
    if let (Some(kid), Ok(Some(old))) = (&profile.kid, old)
        && crate::jwk::public_jwk(&old)
            .ok()
            .is_some_and(|jwk| crate::jwk::thumbprint(&jwk) == *kid)
    {
        profile.kid = None;
    }
    let obtained = checked(state, name, &profile, Some(&secret), verify).await?;
    let saved = state.profiles.replace_secret(name, profile, secret).await?;
    state.tokens.forget(name);
    restart_controls(state, name, &saved);
    Ok(answer_saved(state, name, saved, obtained, verify, None))
}

/// `add`'s check of `profile` with a token request of its own (when asked
/// and it can be made): the token, or why the profile is not to be saved.
/// A profile the server refuses is not saved, and the profile it would
/// replace stays as it was; nor is one that could not be checked.
async fn checked(
    state: &AgentState,
    name: &str,
    profile: &Profile,
    secret: Option<&Secret>,
    verify: bool,
) -> Result<Option<crate::oauth::Obtained>, AgentError> {
    if !(verify && verifiable(profile)) {
        return Ok(None);
    }
    let prepared = state
        .profiles
        .prepared(name, profile.clone(), secret)
        .await?;
    match state.tokens.fetcher().verify(name, &prepared, secret).await {
        Ok(obtained) => Ok(Some(obtained)),
        // Down or overloaded for now: nothing says the profile is wrong,
        // nor that it is right. `--no-verify` saves it unchecked.
        Err(source) if transient(&source) => Err(TokenError::Unverified {
            name: name.to_string(),
            source: Box::new(source),
        }
        .into()),
        Err(source) => Err(TokenError::OAuth {
            name: name.to_string(),
            source,
        }
        .into()),
    }
}

/// Revokes the sign-in of a user profile that `add` replaced: whether the
/// server did, and what to tell the user when not.
async fn revoke_replaced(
    state: &AgentState,
    name: &str,
    (old, secret, rt): (Profile, Option<Secret>, Secret),
) -> (bool, Option<String>) {
    let (revoked, warning) = super::login::revoke(state, name, &old, secret.as_ref(), &rt).await;
    tracing::info!(profile = %name, revoked, "the replaced profile's sign-in was revoked");
    (revoked, warning)
}

/// User profile `name` as it is now, with its client secret and refresh
/// token, if it is signed in.
async fn sign_in_of(state: &AgentState, name: &str) -> Option<(Profile, Option<Secret>, Secret)> {
    let config = state.profiles.current().ok()?;
    let old = config.profiles.get(name)?;
    if !old.grant.is_user() {
        return None;
    }
    let store = state.profiles.store();
    let rt = store
        .get_refresh(name, old.generation)
        .await
        .ok()
        .flatten()?;
    let secret = super::login::client_secret(state, name, old).await;
    Some((Profile::clone(old), secret, rt))
}

/// A caller may add (or replace) a profile made from other profiles' tokens
/// only if every one of those would serve it: otherwise the new profile
/// would carry a token the caller may not have to a server of its choice.
/// A refusal is audited, naming the input.
fn inputs_serve(
    state: &AgentState,
    peer: &Peer,
    op: &'static str,
    name: &str,
    profile: &Profile,
) -> Result<(), AgentError> {
    if profile.inputs().next().is_none() {
        return Ok(());
    }
    let mut profiles = match state.profiles.current_fast() {
        Ok(config) => config.profiles.clone(),
        // `add` reports the config itself.
        Err(_) => return Ok(()),
    };
    profiles.insert(name.to_string(), std::sync::Arc::new(profile.clone()));
    let Err(refused) = check_inputs(peer, &profiles, name) else {
        return Ok(());
    };
    tracing::warn!(profile = %name, input = %refused.input, op, peer_pid = ?peer.pid, peer_exe = %peer.exe_display(), "profile refused: an input profile does not serve the caller");
    let mut record = Record::new(peer, op, Some(name), "denied");
    record.input = Some(&refused.input);
    state.audit.record(&record);
    Err(refused.error())
}

/// A failure that says the server cannot answer now, not that the profile
/// is wrong: unreachable, or a 429 or 5xx answer.
fn transient(e: &OAuthError) -> bool {
    match e {
        OAuthError::Network { .. } => true,
        OAuthError::Idp { status, .. } | OAuthError::BadResponse { status, .. } => {
            *status == 429 || *status >= 500
        }
        _ => false,
    }
}

/// Whether `add` can check the profile with a token request of its own: not
/// a user's (that takes a login), nor one made from other profiles' tokens,
/// nor a DPoP-bound one (its key is made when it is saved).
fn verifiable(profile: &Profile) -> bool {
    !profile.grant.is_user() && profile.inputs().next().is_none() && !profile.dpop
}

pub(crate) async fn remove(state: &AgentState, name: &str) -> Result<Removed, AgentError> {
    // A user profile's sign-in is revoked at the server first (best effort:
    // the refresh token leaves the keyring with the profile in any case).
    let config = state.profiles.current().ok();
    if let Some(profile) = config.as_ref().and_then(|c| c.profiles.get(name))
        && profile.grant.is_user()
    {
        state.logins.cancel(name, "the profile was removed");
        if let Err(e) =
            super::login::sign_out(state, name, profile, "the profile was removed").await
        {
            tracing::warn!(profile = %name, error = %e, "could not sign out before removing");
        }
    }
    // Then its registered client (which the sign-out still needed), once
    // the profile is gone: a failed removal leaves it working.
    let removal = match config.as_ref().and_then(|c| c.profiles.get(name)) {
        Some(profile) => super::register::removal(state, name, profile).await,
        None => None,
    };
    let leftover = state.profiles.remove(name).await?;
    let (unregistered, not_unregistered) = match removal {
        Some(removal) => {
            let (done, warning) = removal.finish(state, name).await;
            (Some(done), warning)
        }
        None => (None, None),
    };
    state.tokens.forget(name);
    state.lifetimes.forget(name);
    state.confirms.forget(Some(name));
    let leftover = leftover.map(|l| {
        format!(
            "the profile is removed, but its keyring entry (service {}, account {}) could not be deleted: {}",
            l.service, l.account, l.error
        )
    });
    let warning = match (not_unregistered, leftover) {
        (Some(a), Some(b)) => Some(format!("{a}; {b}")),
        (a, b) => a.or(b),
    };
    Ok(Removed {
        warning,
        unregistered,
    })
}

pub(crate) fn list(state: &AgentState) -> Result<ProfileList, AgentError> {
    state
        .profiles
        .list()
        .map(|entries| ProfileList {
            profiles: entries
                .into_iter()
                .map(|entry| view_signed_in(state, entry))
                .collect(),
        })
        .map_err(AgentError::from)
}

pub(crate) async fn show(state: &AgentState, name: &str) -> Result<Shown, AgentError> {
    let entry = state.profiles.show(name).await?;
    let worked = state.tokens.aud_worked(&entry.profile);
    let mut profile = view_signed_in(state, entry);
    profile.assertion_aud_worked = worked.map(str::to_string);
    Ok(Shown { profile })
}

pub(crate) async fn keygen(
    state: &AgentState,
    peer: &Peer,
    name: &str,
    profile: Profile,
    alg: Alg,
    force: bool,
) -> Result<KeyGenerated, AgentError> {
    inputs_serve(state, peer, "keygen", name, &profile)?;
    let (saved, jwks) = state.profiles.keygen(name, profile, alg, force).await?;
    state.tokens.forget(name);
    let Added {
        created, profile, ..
    } = added(saved);
    Ok(KeyGenerated {
        created,
        profile,
        jwks,
    })
}

pub(crate) async fn jwks(state: &AgentState, name: &str) -> Result<serde_json::Value, AgentError> {
    state.profiles.jwks(name).await.map_err(AgentError::from)
}

fn view(entry: Entry) -> ProfileView {
    let certificate_info = entry
        .profile
        .certificate
        .as_deref()
        .and_then(crate::oauth::tls::describe);
    ProfileView {
        name: entry.name,
        profile: entry.profile,
        certificate_info,
        secret_stored: entry.secret_stored,
        stored_in: entry.stored_in.map(str::to_string),
        assertion_aud_worked: None,
        signed_in_as: None,
        lifetime_left_secs: None,
        signed_in_until: None,
    }
}

/// `view` of `entry`, with as whom it is signed in when it is a user
/// profile whose server said.
fn view_signed_in(state: &AgentState, entry: Entry) -> ProfileView {
    let whom = entry
        .profile
        .grant
        .is_user()
        .then(|| super::login::identity(state.tokens.fetcher(), &entry.name, &entry.profile).0)
        .flatten();
    let left = super::status::lifetime_left(state, &entry.name, &entry.profile);
    let until = entry
        .profile
        .grant
        .is_user()
        .then(|| state.tokens.fetcher().refresh_until(&entry.name))
        .flatten();
    let mut view = view(entry);
    view.signed_in_as = whom;
    view.signed_in_until = until;
    view.lifetime_left_secs = left;
    view
}

fn added(saved: Saved) -> Added {
    Added {
        created: saved.created,
        profile: view(saved.entry),
        warning: None,
        verified: None,
        revoked: None,
        registered: None,
    }
}
