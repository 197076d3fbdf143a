//! The controls on a profile's use, at the door of every op that serves a
//! token (`token`, `dpop_proof`, and through them `header`, `exec`, ...):
//! the lifetime of the profile and of every profile its token is made from,
//! then the confirmation of each that asks for one. And `renew`, and the
//! task that ends lifetimes.

use crate::audit::Record;
use crate::error::AgentError;
use crate::peer::Peer;
use crate::state::AgentState;
use jwtagent::config::Profile;
use jwtagent::protocol::Renewed;
use std::sync::Arc;

/// Whether `peer` may have a token of profile `name` now: no lifetime in the
/// chain has run out, and every profile in it that asks for a confirmation
/// got a yes.
pub(crate) async fn admit(
    state: &AgentState,
    peer: &Peer,
    op: &'static str,
    name: &str,
    profiles: &jwtagent::config::ProfileMap,
) -> Result<(), AgentError> {
    let Some(profile) = profiles.get(name).map(|p| &**p) else {
        return Ok(());
    };
    // Most profiles have neither control and are made from none: nothing
    // to walk or allocate on their request path.
    let inputs = profile.inputs().next().is_some();
    if !inputs && profile.lifetime.is_none() && !profile.confirm {
        return Ok(());
    }
    let chain: Vec<(&str, &Profile)> = if !inputs {
        vec![(name, profile)]
    } else {
        let links = jwtagent::chain::inputs(profiles, name).unwrap_or_default();
        std::iter::once((name, profile))
            .chain(links.iter().filter_map(|l| {
                let (name, input) = profiles.get_key_value(&l.name)?;
                Some((name.as_str(), &**input))
            }))
            .collect()
    };
    for (link, p) in &chain {
        if p.lifetime.is_some() && state.lifetimes.left(link).is_none() {
            state
                .audit
                .record(&Record::new(peer, op, Some(name), "expired_lifetime"));
            return Err(AgentError::ExpiredLifetime(link.to_string()));
        }
    }
    for (link, p) in chain {
        if p.confirm {
            confirm(state, peer, op, link, p).await?;
        }
    }
    Ok(())
}

/// Asks whether `peer` may use profile `name`, naming the caller: its
/// executable and its parents (the process that ran the CLI, when the CLI
/// asks).
async fn confirm(
    state: &AgentState,
    peer: &Peer,
    op: &'static str,
    name: &str,
    profile: &Profile,
) -> Result<(), AgentError> {
    let callers = caller_chain(peer);
    let shown = callers
        .iter()
        .map(|p| {
            let file = p.file_name().unwrap_or(p.as_os_str());
            jwtagent::text::escaped(&file.to_string_lossy()).into_owned()
        })
        .collect::<Vec<_>>()
        .join(" ← ");
    let shown = if shown.is_empty() {
        "an unknown process".into()
    } else {
        shown
    };
    let key = callers
        .iter()
        .map(|p| p.to_string_lossy())
        .collect::<Vec<_>>()
        .join("\n");
    let prompt = format!(
        "Allow {shown} (uid {}) to use a token of jwtagent profile {}?",
        peer.uid,
        jwtagent::text::escaped(name)
    );
    let (asked, answer) = state
        .confirms
        .ask(name, &key, &prompt, profile.confirm_for)
        .await;
    if asked {
        state
            .audit
            .record(&Record::new(peer, "confirm", Some(name), "asked"));
    }
    let outcome = if answer.is_ok() {
        "allowed"
    } else {
        "confirm_denied"
    };
    state
        .audit
        .record(&Record::new(peer, "confirm", Some(name), outcome));
    answer.map_err(|why| {
        tracing::warn!(profile = %name, op, peer_pid = ?peer.pid, "not confirmed: {why}");
        AgentError::ConfirmDenied {
            name: name.to_string(),
            why: why.to_string(),
        }
    })
}

/// The caller's executable and its parents, nearest first. When the caller
/// is the jwtagent CLI, the chain starts at the process that ran it.
fn caller_chain(peer: &Peer) -> Vec<std::path::PathBuf> {
    if peer.pid.is_none() {
        return Vec::new();
    }
    let mut chain: Vec<std::path::PathBuf> = peer.exe.iter().map(|e| e.path.clone()).collect();
    chain.extend(peer.parents().iter().cloned());
    if chain
        .first()
        .and_then(|p| p.file_name())
        .is_some_and(|f| f == "jwtagent")
    {
        chain.remove(0);
    }
    chain
}

/// `renew`: a profile whose lifetime ran out (or that the agent has not
/// served since it started) is served again for its lifetime, once its
/// secret is found in the store again (and the person at the keyboard
/// said yes, if it asks).
pub(crate) async fn renew(
    state: &AgentState,
    peer: &Peer,
    name: &str,
) -> Result<Renewed, AgentError> {
    let profile = state.profiles.get(name)?;
    let Some(lifetime) = profile.lifetime else {
        return Err(AgentError::NoLifetime(name.to_string()));
    };
    if profile.confirm {
        confirm(state, peer, "renew", name, &profile).await?;
    }
    let needs_secret = profile.auth != jwtagent::config::AuthMethod::None || profile.signs_grant();
    if needs_secret
        && profile.secret_command.is_empty()
        && state
            .profiles
            .store()
            .get(name, profile.generation)
            .await
            .map_err(crate::profiles::ProfileError::from)?
            .is_none()
    {
        return Err(AgentError::Renew(format!(
            "profile {name:?} has no secret in the store any more (--lifetime-remove deleted it when its lifetime ran out): add it again"
        )));
    }
    state.lifetimes.start(name, lifetime);
    tracing::info!(profile = %name, lifetime_secs = lifetime.as_secs(), "lifetime renewed");
    Ok(Renewed {
        lifetime_left_secs: lifetime.as_secs(),
    })
}

/// Ends lifetimes as they run out: drops the profile's tokens (and, with
/// `lifetime_remove`, its secret and refresh token from the store), and
/// records it. Sleeps until the next end; not at all while none runs.
pub(crate) async fn end_lifetimes(state: Arc<AgentState>) {
    loop {
        let changed = state.lifetimes.changed();
        match state.lifetimes.next_end() {
            Some(end) => {
                tokio::select! {
                    _ = changed => continue,
                    _ = tokio::time::sleep_until(end.into()) => {}
                }
            }
            None => {
                changed.await;
                continue;
            }
        }
        for name in state.lifetimes.take_ended() {
            end_lifetime(&state, &name).await;
        }
    }
}

async fn end_lifetime(state: &AgentState, name: &str) {
    state.tokens.forget(name);
    state.confirms.forget(Some(name));
    let profile = state
        .profiles
        .current()
        .ok()
        .and_then(|c| c.profiles.get(name).cloned());
    if let Some(profile) = profile.filter(|p| p.lifetime_remove && p.secret_command.is_empty()) {
        let store = state.profiles.store();
        let secret = store.delete(name, profile.generation).await;
        let refresh = store.delete_refresh(name, profile.generation).await;
        if let Err(e) = secret.and(refresh) {
            tracing::warn!(profile = %name, error = %e, "could not delete the secret of a profile whose lifetime ran out");
        }
    }
    tracing::info!(profile = %name, "lifetime ran out: tokens dropped");
    let agent = Peer::agent();
    state
        .audit
        .record(&Record::new(&agent, "lifetime_expired", Some(name), "ok"));
}
