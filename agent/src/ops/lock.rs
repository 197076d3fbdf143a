//! `lock` and `unlock`.

use crate::error::AgentError;
use crate::lock::LockError;
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
        state.logins.cancel_all("the agent was locked");
        state.tokens.clear();
        state.confirms.forget(None);
        tracing::info!("agent locked");
    }
    lock_result(result)
}

pub(crate) async fn unlock(state: &AgentState, passphrase: &Secret) -> Result<Empty, AgentError> {
    let store = state.profiles.store();
    let result = state.lock.unlock(passphrase, store).await;
    if result.is_ok() {
        tracing::info!("agent unlocked");
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
