//! What a token of a profile is cached under ([`key_for`]), and what getting
//! one can fail with ([`TokenError`]): below the fetcher, the DPoP keys and
//! the token ops alike, so that none of them imports the others for it.

use crate::jwk::JwkError;
use crate::oauth::OAuthError;
use crate::profiles::ProfileError;
use crate::refresh::{FetchError, Key, RefreshError};
use crate::store::StoreError;
use jwtagent::config::{Alg, FieldError, Profile, check_resources, check_scopes};

#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum TokenError {
    #[error(transparent)]
    Profile(#[from] ProfileError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("profile {name:?}: {source}")]
    OAuth { name: String, source: OAuthError },
    /// `add` could not check the profile: the server could not be reached
    /// or could not answer.
    #[error(
        "profile {name:?} is not saved: it could not be checked, as the server could not be reached or could not answer ({source}); check the URL and the network and add it again, or add it with --no-verify to save it unchecked"
    )]
    Unverified {
        name: String,
        source: Box<OAuthError>,
    },
    #[error(
        "profile {0:?} has no secret in the keyring (it was deleted outside jwtagent, or the keyring was reset); add the profile again"
    )]
    SecretMissing(String),
    #[error(
        "profile {0:?} has no DPoP key in the keyring (it was deleted outside jwtagent, or the keyring was reset); add the profile again to make a new one"
    )]
    DpopKeyMissing(String),
    /// A scope or resource in the request that `add` would refuse too.
    #[error(transparent)]
    Field(#[from] FieldError),
    /// A `dpop_proof` request for a profile without a DPoP key.
    #[error(
        "profile {0:?} does not use DPoP, so its tokens need no proof; add it again with --dpop to bind its tokens to a key"
    )]
    NotDpop(String),
    /// A `dpop_proof` request whose method or URL is unusable.
    #[error(transparent)]
    Proof(#[from] JwkError),
    /// A profile whose grant takes another's token could not get it.
    #[error("profile {profile:?} needs the token of its {role} profile {input:?}: {error}")]
    Input {
        profile: String,
        role: &'static str,
        input: String,
        error: Box<RefreshError<TokenError>>,
    },
    /// Profiles that feed each other tokens in a circle, or a chain too deep
    /// (`add` and the config loader refuse both).
    #[error("{0}; change one of them")]
    Chain(jwtagent::chain::ChainError),
    /// A user profile without a usable sign-in.
    #[error("profile {name:?} needs you to sign in: {why}. Run `jwtagent login {name}`")]
    LoginRequired { name: String, why: String },
}

impl TokenError {
    pub(crate) fn into_fetch_error(self) -> FetchError<TokenError> {
        let retry_after = match &self {
            TokenError::OAuth {
                source:
                    OAuthError::Idp { retry_after, .. } | OAuthError::BadResponse { retry_after, .. },
                ..
            } => *retry_after,
            _ => None,
        };
        let permanent = matches!(
            self,
            TokenError::Profile(_)
                | TokenError::SecretMissing(_)
                | TokenError::DpopKeyMissing(_)
                | TokenError::Field(_)
                | TokenError::NotDpop(_)
                | TokenError::Proof(_)
                | TokenError::Chain(_)
                | TokenError::LoginRequired { .. }
        );
        FetchError {
            error: self,
            retry_after,
            permanent,
        }
    }
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v.dedup();
    v
}

/// The cache key `query` asks for (the profile's scopes and resources
/// unless it names its own), and the profile's DPoP key algorithm.
pub(crate) fn key_for(
    name: &str,
    profile: &Profile,
    scopes: Option<Vec<String>>,
    resources: Option<Vec<String>>,
) -> Result<(Key, Option<(Alg, u32)>), TokenError> {
    // What a request names goes to the server as it is: checked as `add`
    // checks the profile's own.
    if let Some(scopes) = &scopes {
        check_scopes(scopes)?;
    }
    if let Some(resources) = &resources {
        check_resources(resources)?;
    }
    let key = Key {
        profile: name.to_string(),
        scopes: sorted(scopes.unwrap_or_else(|| profile.scopes.clone())),
        resources: sorted(resources.unwrap_or_else(|| profile.resources.clone())),
        dpop: profile.dpop,
    };
    Ok((
        key,
        profile.dpop_key_alg().map(|alg| (alg, profile.generation)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jwtagent::config::AuthMethod;

    #[test]
    fn the_cache_key_holds_scopes_and_resources_sorted() {
        let profile = Profile::new("https://idp.example/token", "c", AuthMethod::None);
        let key = |scopes: &[&str], resources: &[&str]| {
            let owned = |v: &[&str]| Some(v.iter().map(|s| s.to_string()).collect());
            key_for("p", &profile, owned(scopes), owned(resources))
                .unwrap()
                .0
        };
        assert_eq!(
            key(&["write", "read"], &["https://b/", "https://a/"]),
            key(&["read", "write"], &["https://a/", "https://b/"])
        );
        assert_eq!(key(&["write", "read"], &[]).scopes, ["read", "write"]);
        assert_ne!(key(&["read"], &[]), key(&["write"], &[]));
    }
}
