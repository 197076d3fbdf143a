//! `lock` and `unlock`.

use crate::error::AgentError;
use crate::lock::LockError;
use crate::state::AgentState;
use jwtagent::protocol::Empty;
use jwtagent::secret::Secret;

/// Locks the agent and drops every token: nothing usable stays in memory.
pub(crate) async fn lock(state: &AgentState, passphrase: &Secret) -> Result<Empty, AgentError> {
    let result = state.lock.lock(passphrase).await;
    if result.is_ok() {
        state.logins.cancel_all("the agent was locked");
        state.tokens.clear();
        tracing::info!("agent locked");
    }
    lock_result(result)
}

pub(crate) async fn unlock(state: &AgentState, passphrase: &Secret) -> Result<Empty, AgentError> {
    let result = state.lock.unlock(passphrase).await;
    if result.is_ok() {
        tracing::info!("agent unlocked");
    }
    lock_result(result)
}

fn lock_result(result: Result<(), LockError>) -> Result<Empty, AgentError> {
    result.map(|()| Empty {}).map_err(AgentError::from)
}
