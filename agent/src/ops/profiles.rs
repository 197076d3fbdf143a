//! `add`, `remove`, `list`, `show`, `keygen` and `jwks`: the profile store's
//! answers, with the tokens of a changed profile dropped.

use crate::error::AgentError;
use crate::profiles::{Entry, Saved};
use crate::state::AgentState;
use jwtagent::config::{Alg, Profile};
use jwtagent::protocol::{Added, KeyGenerated, ProfileList, ProfileView, Removed, Shown};
use jwtagent::secret::Secret;

pub async fn add(
    state: &AgentState,
    name: &str,
    profile: Profile,
    secret: Option<Secret>,
) -> Result<Added, AgentError> {
    let saved = state.profiles.add(name, profile, secret).await?;
    // The profile changed: tokens fetched under the old one must go, and a
    // sign-in under way for it is for settings that are gone.
    state.logins.cancel(name, "the profile was replaced");
    state.tokens.forget(name);
    let mut answer = added(saved);
    answer.warning = state.profiles.store().state().warning();
    Ok(answer)
}

pub async fn remove(state: &AgentState, name: &str) -> Result<Removed, AgentError> {
    // A user profile's sign-in is revoked at the server first (best effort:
    // the refresh token leaves the keyring with the profile in any case).
    let config = state.profiles.current().ok();
    if let Some(profile) = config.as_ref().and_then(|c| c.profiles.get(name))
        && profile.grant().is_user()
    {
        state.logins.cancel(name, "the profile was removed");
        if let Err(e) =
            crate::login::sign_out(state, name, profile, "the profile was removed").await
        {
            tracing::warn!(profile = %name, error = %e, "could not sign out before removing");
        }
    }
    let leftover = state.profiles.remove(name).await?;
    state.tokens.forget(name);
    Ok(Removed {
        warning: leftover.map(|l| {
            format!(
                "the profile is removed, but its keyring entry (service {}, account {}) could not be deleted: {}",
                l.service, l.account, l.error
            )
        }),
    })
}

pub fn list(state: &AgentState) -> Result<ProfileList, AgentError> {
    state
        .profiles
        .list()
        .map(|entries| ProfileList {
            profiles: entries.into_iter().map(view).collect(),
        })
        .map_err(AgentError::from)
}

pub async fn show(state: &AgentState, name: &str) -> Result<Shown, AgentError> {
    let entry = state.profiles.show(name).await?;
    let worked = state.tokens.aud_worked(&entry.profile);
    let mut profile = view(entry);
    profile.assertion_aud_worked = worked.map(str::to_string);
    Ok(Shown { profile })
}

pub async fn keygen(
    state: &AgentState,
    name: &str,
    profile: Profile,
    alg: Alg,
    force: bool,
) -> Result<KeyGenerated, AgentError> {
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

pub async fn jwks(state: &AgentState, name: &str) -> Result<serde_json::Value, AgentError> {
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
        assertion_aud_worked: None,
    }
}

fn added(saved: Saved) -> Added {
    Added {
        created: saved.created,
        profile: view(saved.entry),
        warning: None,
    }
}
