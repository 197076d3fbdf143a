//! `lock` and `unlock`.

use crate::audit::Record;
use crate::error::AgentError;
use crate::lock::LockError;
use crate::peer::Peer;
use crate::state::AgentState;
use jwtagent::protocol::Empty;
use jwtagent::secret::Secret;

/// Locks the agent and drops every token: nothing usable stays in memory.
pub(crate) async fn lock(state: &AgentState, passphrase: &Secret) -> Result<Empty, AgentError> {
    // With the file store the lock is the store's: sealed, its passphrase
    // opens it, and the one given here (if any) is not used.
    let store = state.profiles.store();
    let result = if store.is_file() {
        state.lock.seal(store).await
    } else {
        state.lock.lock(passphrase).await
    };
    if result.is_ok() {
        wipe(state);
        tracing::info!("agent locked");
    }
    lock_result(result)
}

/// What a locked agent answers a request it does not serve: `sealed` when
/// the lock is its file store's seal, else `locked`.
pub(crate) fn refusal(state: &AgentState) -> AgentError {
    if state.profiles.store().is_file() {
        AgentError::Sealed
    } else {
        AgentError::Locked
    }
}

/// [`refusal`] of a token `peer` asked for (as `op`, of profile `name`),
/// recorded in the audit log as every token request is.
pub(crate) fn token_refused(
    state: &AgentState,
    peer: &Peer,
    op: &'static str,
    name: &str,
) -> AgentError {
    let refused = refusal(state);
    let outcome = refused.code().as_str();
    state
        .audit
        .record(&Record::new(peer, op, Some(name), outcome));
    refused
}

/// What a lock drops: sign-ins under way, every token, every yes given.
fn wipe(state: &AgentState) {
    state.logins.cancel_all("the agent was locked");
    state.tokens.clear();
    state.confirms.forget(None);
    // The sinks' files go (unless kept) until the agent is unlocked.
    state.sinks.changed();
}

/// Locks the agent when its user is likely away (`--lock-idle`,
/// `--lock-on-sleep`), and records it as `op` (`lock_idle`, `lock_sleep`).
pub(crate) async fn lock_unattended(state: &AgentState, op: &'static str, why: &'static str) {
    if state
        .lock
        .lock_unattended(state.profiles.store(), why)
        .await
    {
        wipe(state);
        tracing::info!(why, "agent locked");
        let agent = crate::peer::Peer::agent();
        state
            .audit
            .record(&crate::audit::Record::new(&agent, op, None, "ok"));
    }
}

/// `--lock-idle`: locks the agent after no request for `idle`. Wakes when
/// that much time may have passed since the last request, and once per
/// `idle` while it stays idle.
pub(crate) async fn lock_when_idle(state: std::sync::Arc<AgentState>, idle: std::time::Duration) {
    loop {
        let since = state.idle_for();
        if since >= idle {
            lock_unattended(&state, "lock_idle", "no request came for a while").await;
            tokio::time::sleep(idle).await;
        } else {
            tokio::time::sleep(idle - since).await;
        }
    }
}

pub(crate) async fn unlock(state: &AgentState, passphrase: &Secret) -> Result<Empty, AgentError> {
    let store = state.profiles.store();
    let result = state.lock.unlock(passphrase, store).await;
    if result.is_ok() {
        tracing::info!("agent unlocked");
        state.sinks.changed();
        if store.is_file() {
            // What a crash in the middle of an `add` left in the store, which
            // could not be read while it was sealed.
            let sweeping = state.profiles.clone();
            tokio::spawn(async move { sweeping.sweep().await });
        }
    }
    lock_result(result)
}

fn lock_result(result: Result<(), LockError>) -> Result<Empty, AgentError> {
    result.map(|()| Empty {}).map_err(AgentError::from)
}
