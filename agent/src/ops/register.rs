//! `add --register`: a client registered for a user profile (RFC 7591),
//! its registration access token kept in the store (never the config), and
//! the registration deleted where the server allows (RFC 7592) when the
//! profile is removed, replaced by another client, or not saved after all.

use crate::error::AgentError;
use crate::oauth::register::RegisterError;
use crate::state::AgentState;
use jwtagent::config::Profile;
use jwtagent::protocol::{Register, Registered};
use jwtagent::secret::Secret;
use url::Url;

/// The client registered for a profile being added.
pub(crate) struct Registering {
    pub client_secret: Option<Secret>,
    /// The registration access token, when the registration can be managed.
    pub token: Option<Secret>,
    pub view: Registered,
    management: Option<(Url, Secret)>,
}

fn refused(name: &str, source: RegisterError) -> AgentError {
    AgentError::Register {
        name: name.to_string(),
        source,
    }
}

/// Registers a client for user profile `name`: `profile` takes the client
/// id, authentication and registration address the server gave.
/// `has_secret`: the request brought a secret of its own.
pub(crate) async fn register(
    state: &AgentState,
    name: &str,
    profile: &mut Profile,
    has_secret: bool,
    register: Register,
) -> Result<Registering, AgentError> {
    let misuse = |why| refused(name, RegisterError::Misuse(why));
    if !profile.grant.is_user() {
        return Err(misuse(
            "--register is for user profiles (--grant device-code or authorization-code); a machine profile's client is registered with the secret or key the server is to know",
        ));
    }
    if has_secret || !profile.secret_command.is_empty() || !profile.client_id.is_empty() {
        return Err(misuse(
            "the server chooses the client id and any secret of a registered client: leave out --client-id and the secret options",
        ));
    }
    let oauth = state.tokens.fetcher().oauth();
    let registration = oauth
        .register(name, profile, register.initial_token.as_ref())
        .await
        .map_err(|e| refused(name, e))?;
    profile.client_id = registration.client_id.clone();
    profile.auth = registration.auth;
    profile.registration_uri = registration
        .management
        .as_ref()
        .map(|(uri, _)| uri.to_string());
    tracing::info!(profile = %name, client_id = %registration.client_id, auth = %registration.auth, deletable = registration.management.is_some(), "client registered");
    Ok(Registering {
        view: Registered {
            client_id: registration.client_id,
            confidential: registration.client_secret.is_some(),
            deletable: registration.management.is_some(),
        },
        client_secret: registration.client_secret,
        token: registration.management.as_ref().map(|(_, t)| t.clone()),
        management: registration.management,
    })
}

impl Registering {
    /// Deletes the registration of a profile that was not saved after all.
    pub(crate) async fn undo(&self, state: &AgentState, name: &str, profile: &Profile) {
        let Some((uri, token)) = &self.management else {
            return;
        };
        let oauth = state.tokens.fetcher().oauth();
        match oauth.unregister(name, profile, uri, token).await {
            Ok(()) => {
                tracing::info!(profile = %name, "the profile was not saved: its registration is deleted")
            }
            Err(e) => {
                tracing::warn!(profile = %name, client_id = %profile.client_id, error = %e, "the profile was not saved, and its client's registration could not be deleted")
            }
        }
    }
}

/// What becomes of the registration of the profile an `add` replaces.
#[derive(Default)]
pub(crate) struct Previous {
    /// The new profile uses the same client: its registration goes on, with
    /// this token.
    pub carried: Option<Secret>,
    /// The new profile uses another client: the old registration is deleted
    /// once the new profile is saved.
    replaced: Option<(Profile, Url, Secret)>,
}

/// The registration of profile `name` as the config has it now, if its
/// client was registered by `add --register` and can be deleted.
async fn registration_of(state: &AgentState, name: &str) -> Option<(Profile, Url, Secret)> {
    let old = state.profiles.get(name).ok()?;
    let uri = Url::parse(old.registration_uri.as_deref()?).ok()?;
    let token = state
        .profiles
        .store()
        .get_registration(name, old.generation)
        .await
        .ok()
        .flatten()?;
    Some((old, uri, token))
}

/// The registration of the profile `new` replaces: carried over when `new`
/// is the same client at the same server (and registered none of its own),
/// else deleted after the save ([`Previous::finish`]).
pub(crate) async fn previous(
    state: &AgentState,
    name: &str,
    new: &mut Profile,
    registering: bool,
) -> Previous {
    let Some((old, uri, token)) = registration_of(state, name).await else {
        return Previous::default();
    };
    let same_client = old.client_id == new.client_id
        && old.issuer == new.issuer
        && old.token_url == new.token_url;
    if same_client && !registering {
        new.registration_uri = Some(uri.to_string());
        return Previous {
            carried: Some(token),
            replaced: None,
        };
    }
    Previous {
        carried: None,
        replaced: Some((old, uri, token)),
    }
}

impl Previous {
    /// Deletes the replaced profile's registration; what to tell the user
    /// when that failed.
    pub(crate) async fn finish(self, state: &AgentState, name: &str) -> Option<String> {
        let (old, uri, token) = self.replaced?;
        let oauth = state.tokens.fetcher().oauth();
        match oauth.unregister(name, &old, &uri, &token).await {
            Ok(()) => {
                tracing::info!(profile = %name, client_id = %old.client_id, "the replaced profile's registered client is deleted");
                None
            }
            Err(e) => Some(format!(
                "the replaced profile's registered client {:?} could not be deleted at the server ({e}): delete it there",
                old.client_id
            )),
        }
    }
}

/// The registration `remove` deletes once the profile is gone: read
/// before (the removal deletes its token from the store).
pub(crate) struct Removal {
    client_id: String,
    registration: Result<(Profile, Url, Secret), String>,
}

/// `remove` of profile `name`: its client's registration, if
/// `add --register` made one.
pub(crate) async fn removal(state: &AgentState, name: &str, profile: &Profile) -> Option<Removal> {
    let uri = profile.registration_uri.as_ref()?;
    let registration = registration_of(state, name).await.ok_or_else(|| {
        format!("its registration access token is not in the store, so {uri} cannot be asked to delete it")
    });
    Some(Removal {
        client_id: profile.client_id.clone(),
        registration,
    })
}

impl Removal {
    /// Deletes the registration: whether it was, and what to tell the user
    /// when not.
    pub(crate) async fn finish(self, state: &AgentState, name: &str) -> (bool, Option<String>) {
        let result = match self.registration {
            Ok((old, uri, token)) => {
                let oauth = state.tokens.fetcher().oauth();
                oauth
                    .unregister(name, &old, &uri, &token)
                    .await
                    .map_err(|e| e.to_string())
            }
            Err(why) => Err(why),
        };
        match result {
            Ok(()) => {
                tracing::info!(profile = %name, client_id = %self.client_id, "registered client deleted");
                (true, None)
            }
            Err(why) => (
                false,
                Some(format!(
                    "client {:?} is still registered at the server ({why}): delete it there",
                    self.client_id
                )),
            ),
        }
    }
}
