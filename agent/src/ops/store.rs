//! `store migrate`: every secret, key and refresh token moved to another
//! store, so that nothing is lost at any step: copied and read back first,
//! then the config names the new store, and only then are the old entries
//! deleted. A crash before the config is written leaves the old store in
//! use (and a copy no one reads); after it, both hold every entry and the
//! new one is used.

use crate::error::AgentError;
use crate::profiles::ProfileError;
use crate::state::AgentState;
use crate::store::MigrateError;
use jwtagent::config::StoreKind;
use jwtagent::protocol::Migrated;
use jwtagent::secret::Secret;

pub(crate) async fn migrate(
    state: &AgentState,
    to: StoreKind,
    passphrase: Option<Secret>,
) -> Result<Migrated, AgentError> {
    let refuse = |e: MigrateError| AgentError::Migrate(e.to_string());
    if to == StoreKind::Auto {
        return Err(AgentError::Migrate(
            "name the store to move to (secret-service, keyutils, file, ...), not auto".into(),
        ));
    }
    if to == StoreKind::File && passphrase.as_ref().is_none_or(Secret::is_empty) {
        return Err(AgentError::Migrate(
            "the file store needs its passphrase (a new one if it does not exist yet)".into(),
        ));
    }
    let store = state.profiles.store();
    let from = store.state().describe();
    let accounts = state.profiles.accounts()?;
    let moved = store
        .copy_to(to, passphrase, accounts.clone())
        .await
        .map_err(refuse)?;
    crate::crash_point("migrate:after-copy");
    state.profiles.set_store(to).await?;
    crate::crash_point("migrate:after-config");
    let leftovers = store.switch(accounts).await.map_err(ProfileError::from)?;
    tracing::info!(%from, to = %to, moved, "secrets moved to another store");
    let mut warnings = Vec::new();
    if !leftovers.is_empty() {
        warnings.push(format!(
            "these entries could not be deleted from the old store; delete them by hand: {}",
            leftovers.join("; ")
        ));
    }
    if state.store_flag.is_some_and(|flag| flag != to) {
        warnings.push(format!(
            "this agent was started with --store {} (or JWTAGENT_STORE), which overrides the config: start it without (or with --store {to}), or its next start uses the old store",
            state.store_flag.map(StoreKind::as_str).unwrap_or_default()
        ));
    }
    Ok(Migrated {
        from,
        to: to.to_string(),
        moved: moved as u64,
        warning: (!warnings.is_empty()).then(|| warnings.join("; ")),
    })
}
