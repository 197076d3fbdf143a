//! What the agent knows, shared by every connection: its profiles and keyring,
//! the token cache, the lock and the audit log.

use crate::audit::Audit;
use crate::lock::Lock;
use crate::profiles::Profiles;
use crate::tokens::Tokens;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// What the agent knows, shared by every connection.
pub struct AgentState {
    pub started: Instant,
    pub pid: u32,
    pub socket: PathBuf,
    pub profiles: Arc<Profiles>,
    pub tokens: Tokens,
    pub lock: Lock,
    pub audit: Audit,
}

impl AgentState {
    pub fn new(socket: PathBuf, profiles: Profiles, audit: Audit) -> Self {
        let profiles = Arc::new(profiles);
        AgentState {
            started: Instant::now(),
            pid: std::process::id(),
            socket,
            tokens: Tokens::new(profiles.clone()),
            profiles,
            lock: Lock::default(),
            audit,
        }
    }
}
