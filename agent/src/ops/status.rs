//! `hello` and `status`.

use crate::refresh::KeyStatus;
use crate::state::AgentState;
use crate::store::StoreState;
use jwtagent::protocol::{
    Hello, PROTOCOL_VERSION, ProfileStatus, Sealed, SkippedProfile, Status, TokenState, TokenStatus,
};
use std::collections::HashMap;
use std::time::Duration;

pub(crate) fn hello(state: &AgentState, peer: &crate::peer::Peer) -> Hello {
    Hello {
        protocol: PROTOCOL_VERSION,
        version: env!("CARGO_PKG_VERSION").to_string(),
        pid: state.pid,
        forwarded: peer.forwarded(),
    }
}

pub(crate) async fn status(state: &AgentState) -> Status {
    let config = state.profiles.current();
    let keys = state.tokens.status();
    let by_profile = by_profile(&keys);
    let skipped_profiles = match &config {
        Ok(config) => config
            .skipped
            .iter()
            .map(|(name, skipped)| SkippedProfile {
                name: name.clone(),
                reason: skipped.reason.clone(),
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    let (profiles, config_error) = match config {
        Ok(config) => {
            let mut profiles = Vec::with_capacity(config.profiles.len());
            for (name, profile) in &config.profiles {
                let mine = by_profile.get(name.as_str()).map_or(&[][..], Vec::as_slice);
                let mut status = profile_status(name, mine);
                status.assertion_aud_worked = state.tokens.aud_worked(profile).map(str::to_string);
                status.lifetime_left_secs = lifetime_left(state, name, profile);
                if profile.grant.is_user() {
                    status.logging_in = state.logins.under_way(name);
                    let fetcher = state.tokens.fetcher();
                    // The keyring is asked briefly: a hung one must not
                    // hold `status` up (unknown counts as signed in).
                    let stored = tokio::time::timeout(
                        Duration::from_millis(500),
                        fetcher.signed_in(name, profile.generation),
                    )
                    .await;
                    status.login_required =
                        fetcher.login_required(name).is_some() || matches!(stored, Ok(Ok(false)));
                    if !status.login_required {
                        status.signed_in_as = super::login::identity(fetcher, name, profile).0;
                        status.signed_in_until = fetcher.refresh_until(name);
                    }
                }
                profiles.push(status);
            }
            (profiles, None)
        }
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    Status {
        version: env!("CARGO_PKG_VERSION").to_string(),
        protocol: PROTOCOL_VERSION,
        pid: state.pid,
        uptime_secs: state.started.elapsed().as_secs(),
        socket: state.socket.display().to_string(),
        store: Some(state.profiles.store().state().describe()),
        store_warning: state.profiles.store().state().warning(),
        store_sealed: match state.profiles.store().state() {
            StoreState::Sealed { exists: true, .. } => Some(Sealed::Sealed),
            StoreState::Sealed { exists: false, .. } => Some(Sealed::NotCreated),
            _ => None,
        },
        store_is_file: state.profiles.store().is_file(),
        config: Some(state.profiles.path().display().to_string()),
        config_error,
        skipped_profiles,
        locked: state.lock.is_locked(),
        unlock_with: state.lock.unlock_with().map(str::to_string),
        profiles,
    }
}

/// Each profile's keys, found once (not a walk of every key per profile),
/// in order of their scopes and resources: the keys come in no order, and
/// sorting the few of each profile costs less than sorting all.
fn by_profile(keys: &[KeyStatus]) -> HashMap<&str, Vec<&KeyStatus>> {
    let mut by_profile: HashMap<&str, Vec<&KeyStatus>> = HashMap::new();
    for key in keys {
        by_profile.entry(&key.key.profile).or_default().push(key);
    }
    for mine in by_profile.values_mut().filter(|mine| mine.len() > 1) {
        mine.sort_by(|a, b| {
            (&a.key.scopes, &a.key.resources).cmp(&(&b.key.scopes, &b.key.resources))
        });
    }
    by_profile
}

fn secs(d: Option<Duration>) -> Option<i64> {
    d.map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// One profile's summary over its cached tokens: it follows the token that
/// lives longest.
fn profile_status(name: &str, mine: &[&KeyStatus]) -> ProfileStatus {
    let best = mine.iter().max_by_key(|k| k.expires_in_secs);
    let failures = mine.iter().map(|k| k.failures).max().unwrap_or(0);
    let token_state = match best {
        None => TokenState::None,
        Some(_) if failures > 0 => TokenState::Failing,
        Some(k) if k.expires_in_secs.is_none_or(|s| s <= 0) => TokenState::Expired,
        Some(_) => TokenState::Valid,
    };
    ProfileStatus {
        name: name.to_string(),
        token_state,
        expires_in_secs: best.and_then(|k| k.expires_in_secs),
        next_refresh_in_secs: best.and_then(|k| secs(k.next_refresh_in)),
        last_error: mine.iter().find_map(|k| k.last_error.clone()),
        failures,
        tokens: mine
            .iter()
            .map(|k| TokenStatus {
                scopes: k.key.scopes.clone(),
                resources: k.key.resources.clone(),
                expires_in_secs: k.expires_in_secs,
                next_refresh_in_secs: secs(k.next_refresh_in),
                last_error: k.last_error.clone(),
                failures: k.failures,
            })
            .collect(),
        assertion_aud_worked: None,
        login_required: false,
        logging_in: false,
        signed_in_as: None,
        lifetime_left_secs: None,
        signed_in_until: None,
    }
}

/// What is left of `profile`'s lifetime, when it has one (0: it ran out).
pub(crate) fn lifetime_left(
    state: &AgentState,
    name: &str,
    profile: &jwtagent::config::Profile,
) -> Option<u64> {
    profile.lifetime?;
    Some(
        state
            .lifetimes
            .left(name)
            .map_or(0, |left| left.as_secs().max(1)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::refresh::Key;
    use std::sync::Arc;

    fn status(profile: &str, scopes: &[&str]) -> KeyStatus {
        KeyStatus {
            key: Arc::new(Key {
                profile: profile.into(),
                scopes: scopes.iter().map(|s| s.to_string()).collect(),
                resources: vec![],
                dpop: false,
            }),
            expires_in_secs: None,
            next_refresh_in: None,
            last_error: None,
            failures: 0,
            refreshing: true,
        }
    }

    #[test]
    fn a_profiles_tokens_are_grouped_and_in_order_of_their_scopes() {
        let keys = [
            status("b", &["write"]),
            status("a", &["x"]),
            status("b", &["admin"]),
            status("b", &["read"]),
        ];
        let grouped = by_profile(&keys);
        let scopes = |p: &str| -> Vec<String> {
            grouped[p].iter().map(|k| k.key.scopes.join(" ")).collect()
        };
        assert_eq!(scopes("b"), ["admin", "read", "write"]);
        assert_eq!(scopes("a"), ["x"]);
        assert_eq!(grouped.len(), 2);
    }
}
