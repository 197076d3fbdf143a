//! `add`, `remove`, `list`, `show`, `keygen` and `jwks`: the profile store's
//! answers, with the tokens of a changed profile dropped.

use crate::error::AgentError;
use crate::state::AgentState;
use jwtagent::config::{Alg, Profile};
use jwtagent::protocol::{Added, KeyGenerated, Removed};
use jwtagent::protocol::{ProfileList, Shown};
use jwtagent::secret::Secret;

pub async fn add(
    state: &AgentState,
    name: &str,
    profile: Profile,
    secret: Option<Secret>,
) -> Result<Added, AgentError> {
    let added = state.profiles.add(name, profile, secret).await;
    if added.is_ok() {
        // The profile changed: tokens fetched under the old one must go.
        state.tokens.forget(name);
    }
    added.map_err(AgentError::from)
}

pub async fn remove(state: &AgentState, name: &str) -> Result<Removed, AgentError> {
    let removed = state.profiles.remove(name).await;
    if removed.is_ok() {
        state.tokens.forget(name);
    }
    removed.map_err(AgentError::from)
}

pub fn list(state: &AgentState) -> Result<ProfileList, AgentError> {
    state
        .profiles
        .list()
        .map(|profiles| ProfileList { profiles })
        .map_err(AgentError::from)
}

pub async fn show(state: &AgentState, name: &str) -> Result<Shown, AgentError> {
    state
        .profiles
        .show(name)
        .await
        .map(|profile| Shown { profile })
        .map_err(AgentError::from)
}

pub async fn keygen(
    state: &AgentState,
    name: &str,
    profile: Profile,
    alg: Alg,
    force: bool,
) -> Result<KeyGenerated, AgentError> {
    let generated = state.profiles.keygen(name, profile, alg, force).await;
    if generated.is_ok() {
        state.tokens.forget(name);
    }
    generated.map_err(AgentError::from)
}

pub async fn jwks(state: &AgentState, name: &str) -> Result<serde_json::Value, AgentError> {
    state.profiles.jwks(name).await.map_err(AgentError::from)
}
