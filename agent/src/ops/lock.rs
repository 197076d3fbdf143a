//! `lock` and `unlock`.

use crate::lock::LockError;
use crate::state::AgentState;
use jwtagent::protocol::{Empty, ErrorBody, ErrorCode};
use jwtagent::secret::Secret;

/// Locks the agent and drops every token: nothing usable stays in memory.
pub async fn lock(state: &AgentState, passphrase: &Secret) -> Result<Empty, ErrorBody> {
    let result = state.lock.lock(passphrase).await;
    if result.is_ok() {
        state.tokens.clear();
        tracing::info!("agent locked");
    }
    lock_result(result)
}

pub async fn unlock(state: &AgentState, passphrase: &Secret) -> Result<Empty, ErrorBody> {
    let result = state.lock.unlock(passphrase).await;
    if result.is_ok() {
        tracing::info!("agent unlocked");
    }
    lock_result(result)
}

/// The answer to any op but `hello`, `status`, `unlock` and `stop` while locked.
pub fn locked_error() -> ErrorBody {
    ErrorBody::new(
        ErrorCode::Locked,
        "the agent is locked; unlock it with `jwtagent unlock`",
    )
}

fn lock_result(result: Result<(), LockError>) -> Result<Empty, ErrorBody> {
    result.map(|()| Empty {}).map_err(|e| {
        let code = match e {
            LockError::WrongPassphrase => ErrorCode::Denied,
            LockError::Hash(_) => ErrorCode::Internal,
            _ => ErrorCode::BadRequest,
        };
        ErrorBody::new(code, e.to_string())
    })
}
