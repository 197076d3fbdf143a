//! The agent's one error type: everything an op can fail with, and the stable
//! wire code of each ([`AgentError::code`]). The handler turns it into the
//! wire's `ErrorBody`; nothing else builds one.

use crate::lock::LockError;
use crate::oauth::OAuthError;
use crate::profiles::ProfileError;
use crate::refresh::RefreshError;
use crate::token_error::TokenError;
use jwtagent::protocol::{ErrorCode, IdpDetail};

#[derive(Debug, thiserror::Error)]
pub(crate) enum AgentError {
    #[error(transparent)]
    Profile(#[from] ProfileError),
    // Boxed: a token error carries the server's answer, and every op's
    // result would otherwise be that large.
    #[error(transparent)]
    Token(Box<TokenError>),
    /// No token: the refresher's last fetch failed, or waiting for one did.
    #[error(transparent)]
    Refresh(Box<RefreshError<TokenError>>),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("the agent is locked; unlock it with `jwtagent unlock`")]
    Locked,
    /// Locked by its file store, which is sealed.
    #[error(
        "the file store is sealed: run `jwtagent unlock` and give its passphrase (the first unlock chooses it)"
    )]
    Sealed,
    #[error(
        "the lifetime of profile {0:?} has run out (or the agent has started since it was added or renewed): run `jwtagent renew {0}`"
    )]
    ExpiredLifetime(String),
    #[error("profile {0:?} has no lifetime to renew (add it with --lifetime DUR for one)")]
    NoLifetime(String),
    #[error("{0}")]
    Renew(String),
    #[error(
        "a token of profile {name:?} needs a yes from the person at the keyboard, and got none: {why}"
    )]
    ConfirmDenied { name: String, why: String },
    /// `store migrate` did not move the secrets; nothing changed.
    #[error("cannot move the secrets: {0}; nothing changed")]
    Migrate(String),
    /// `stop` while locked: the agent would come back unlocked.
    #[error(
        "the agent is locked, and a locked agent is not stopped through its socket (started again, it would come back unlocked): unlock it first with `jwtagent unlock`, or stop it from its service manager (SIGTERM: `systemctl --user stop jwtagent`, or `kill PID`)"
    )]
    StopLocked,
    /// A profile's caller policy refused the caller.
    #[error("{0}")]
    Denied(String),
    /// A bug: something that cannot happen did.
    #[error("{0}")]
    Internal(String),
    /// `token --id-token` for a profile whose server issued none.
    #[error(
        "profile {0:?} has no ID token: the server issues one to user profiles with the `openid` scope (add it with --scope openid, then `jwtagent login {0}`)"
    )]
    NoIdToken(String),
    /// A sink cannot be added, changed or removed as asked.
    #[error("{0}")]
    Sink(String),
    /// An endpoint cannot be started.
    #[error("{0}")]
    Endpoint(String),
    /// `add --register` registered no client.
    #[error("cannot register a client for profile {name:?}: {source}")]
    Register {
        name: String,
        source: crate::oauth::register::RegisterError,
    },
    /// `login_wait` or a sign-in's end: what went wrong.
    #[error("{0}")]
    Login(#[from] LoginError),
}

impl From<TokenError> for AgentError {
    fn from(e: TokenError) -> Self {
        AgentError::Token(Box::new(e))
    }
}

impl From<RefreshError<TokenError>> for AgentError {
    fn from(e: RefreshError<TokenError>) -> Self {
        AgentError::Refresh(Box::new(e))
    }
}

impl AgentError {
    /// The profile name this error says does not exist, if it says that.
    pub(crate) fn unknown_profile(&self) -> Option<&str> {
        let profile = match self {
            AgentError::Profile(e) => Some(e),
            _ => match self.token_error() {
                Some(TokenError::Profile(e)) => Some(e),
                _ => None,
            },
        };
        match profile {
            Some(ProfileError::Unknown(name)) => Some(name),
            _ => None,
        }
    }

    /// The token error behind this one, if any.
    fn token_error(&self) -> Option<&TokenError> {
        match self {
            AgentError::Token(e) => Some(e),
            AgentError::Login(LoginError::Token(e)) => Some(e),
            AgentError::Refresh(e) => match e.as_ref() {
                RefreshError::Failed { error, .. } => Some(error),
                _ => None,
            },
            _ => None,
        }
    }

    /// The stable code clients match on.
    pub(crate) fn code(&self) -> ErrorCode {
        if let Some(e) = self.token_error() {
            return token_code(e);
        }
        match self {
            AgentError::Profile(e) => profile_code(e),
            AgentError::Refresh(e) if matches!(e.as_ref(), RefreshError::WaitTimedOut(_)) => {
                ErrorCode::Network
            }
            AgentError::Token(_) | AgentError::Refresh(_) | AgentError::Internal(_) => {
                ErrorCode::Internal
            }
            AgentError::Lock(LockError::WrongPassphrase | LockError::NotConfirmed(_)) => {
                ErrorCode::Denied
            }
            AgentError::Lock(LockError::Hash(_)) => ErrorCode::Internal,
            AgentError::Lock(_) => ErrorCode::BadRequest,
            AgentError::Locked | AgentError::StopLocked => ErrorCode::Locked,
            AgentError::Sealed => ErrorCode::Sealed,
            AgentError::Migrate(_) => ErrorCode::Store,
            AgentError::ExpiredLifetime(_) => ErrorCode::ExpiredLifetime,
            AgentError::NoLifetime(_) => ErrorCode::BadRequest,
            AgentError::Renew(_) => ErrorCode::Store,
            AgentError::ConfirmDenied { .. } => ErrorCode::ConfirmDenied,
            AgentError::Denied(_) => ErrorCode::Denied,
            AgentError::NoIdToken(_) => ErrorCode::BadRequest,
            AgentError::Login(e) => e.code(),
            AgentError::Register { source, .. } => register_code(source),
            AgentError::Sink(_) | AgentError::Endpoint(_) => ErrorCode::BadRequest,
        }
    }

    /// For `idp_error`: what the authorization server answered.
    pub(crate) fn idp(&self) -> Option<IdpDetail> {
        let Some(TokenError::OAuth { source, .. }) = self.token_error() else {
            return None;
        };
        match source {
            OAuthError::Idp {
                status,
                error,
                description,
                ..
            } => Some(IdpDetail {
                status: *status,
                error: Some(error.clone()),
                error_description: description.clone(),
            }),
            OAuthError::BadResponse { status, .. } => Some(IdpDetail {
                status: *status,
                error: None,
                error_description: None,
            }),
            _ => None,
        }
    }
}

fn profile_code(e: &ProfileError) -> ErrorCode {
    match e {
        ProfileError::Refused { .. } | ProfileError::NoKeyPair { .. } => ErrorCode::BadRequest,
        ProfileError::Unknown(_) => ErrorCode::UnknownProfile,
        ProfileError::Config(_) | ProfileError::Skipped(_) => ErrorCode::Config,
        ProfileError::Store(_) => ErrorCode::Store,
    }
}

pub(crate) fn token_code(e: &TokenError) -> ErrorCode {
    match e {
        TokenError::Profile(e) => profile_code(e),
        TokenError::Store(_) | TokenError::SecretMissing(_) | TokenError::DpopKeyMissing(_) => {
            ErrorCode::Store
        }
        TokenError::Field(_) | TokenError::NotDpop(_) | TokenError::Proof(_) => {
            ErrorCode::BadRequest
        }
        TokenError::Chain(_) => ErrorCode::Config,
        TokenError::LoginRequired { .. } => ErrorCode::LoginRequired,
        // What the other profile's failure is.
        TokenError::Input { error, .. } => match error.as_ref() {
            RefreshError::Failed { error, .. } => token_code(error),
            _ => ErrorCode::Network,
        },
        TokenError::Unverified { source, .. } => oauth_code(source),
        TokenError::OAuth { source, .. } => oauth_code(source),
    }
}

fn register_code(e: &crate::oauth::register::RegisterError) -> ErrorCode {
    use crate::oauth::register::RegisterError;
    match e {
        RegisterError::NoIssuer | RegisterError::Misuse(_) => ErrorCode::BadRequest,
        RegisterError::OAuth(e) => oauth_code(e),
        RegisterError::NotOffered(_)
        | RegisterError::Refused { .. }
        | RegisterError::Unusable { .. } => ErrorCode::IdpError,
    }
}

/// The wire code of what the OAuth client failed with.
fn oauth_code(source: &OAuthError) -> ErrorCode {
    match source {
        OAuthError::Network { .. } | OAuthError::Tls { .. } => ErrorCode::Network,
        OAuthError::Setup(_) => ErrorCode::Config,
        OAuthError::Idp { .. } | OAuthError::BadResponse { .. } | OAuthError::Discovery { .. } => {
            ErrorCode::IdpError
        }
    }
}

/// Why a sign-in (`login`, `login_wait`, `logout`) failed.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum LoginError {
    #[error(
        "profile {name:?} is a machine profile (the {grant} grant: its tokens come without anyone signing in), so there is no sign-in to {verb}; `jwtagent login` and `logout` are for user profiles (--grant device-code or authorization-code)"
    )]
    NotUser {
        name: String,
        grant: jwtagent::config::GrantKind,
        /// `start` or `end`.
        verb: &'static str,
    },
    #[error("no sign-in is under way for profile {0:?}: start one with `jwtagent login {0}`")]
    NoneUnderWay(String),
    #[error("the sign-in for profile {name:?} was denied at the server{}; run `jwtagent login {name}` to try again", .detail.as_ref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Denied {
        name: String,
        detail: Option<String>,
    },
    #[error(
        "the sign-in for profile {0:?} expired before it was completed; run `jwtagent login {0}` again"
    )]
    Expired(String),
    #[error(
        "the sign-in for profile {0:?} was abandoned (nobody waited for it for {1}s); run `jwtagent login {0}` again"
    )]
    Abandoned(String, u64),
    #[error("the sign-in for profile {0:?} was cancelled: {1}")]
    Cancelled(String, &'static str),
    #[error(
        "cannot listen for the browser on 127.0.0.1:{port}: {cause} (another program may hold the port: choose another with --redirect-port, or leave it out for any free port)"
    )]
    Listen { port: u16, cause: String },
    #[error(transparent)]
    Token(#[from] TokenError),
}

impl LoginError {
    pub(crate) fn code(&self) -> ErrorCode {
        match self {
            LoginError::NotUser { .. } | LoginError::NoneUnderWay(_) => ErrorCode::BadRequest,
            LoginError::Denied { .. } | LoginError::Expired(_) => ErrorCode::IdpError,
            LoginError::Abandoned(..) | LoginError::Cancelled(..) => ErrorCode::LoginRequired,
            LoginError::Listen { .. } => ErrorCode::Network,
            LoginError::Token(e) => token_code(e),
        }
    }

    pub(crate) fn oauth(name: &str, source: OAuthError) -> LoginError {
        LoginError::Token(TokenError::OAuth {
            name: name.to_string(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;
    use std::time::Duration;

    fn oauth(source: OAuthError) -> TokenError {
        TokenError::OAuth {
            name: "api".into(),
            source,
        }
    }

    #[test]
    fn every_error_has_its_wire_code() {
        let idp = OAuthError::Idp {
            status: 401,
            error: "invalid_client".into(),
            description: None,
            retry_after: None,
            dpop_nonce: None,
        };
        let cases: Vec<(AgentError, ErrorCode)> = vec![
            (
                ProfileError::Unknown("x".into()).into(),
                ErrorCode::UnknownProfile,
            ),
            (
                ProfileError::Refused {
                    name: "x".into(),
                    keygen: false,
                    reason: crate::profiles::Refusal::Exists,
                }
                .into(),
                ErrorCode::BadRequest,
            ),
            (ProfileError::Config("x".into()).into(), ErrorCode::Config),
            (
                ProfileError::Store(StoreError::Timeout).into(),
                ErrorCode::Store,
            ),
            (
                TokenError::SecretMissing("x".into()).into(),
                ErrorCode::Store,
            ),
            (
                TokenError::NotDpop("x".into()).into(),
                ErrorCode::BadRequest,
            ),
            (oauth(idp.clone()).into(), ErrorCode::IdpError),
            (
                oauth(OAuthError::Network {
                    step: crate::oauth::error::Step::Token,
                    host: "h".into(),
                    via: None,
                    cause: "c".into(),
                    unanswered: false,
                })
                .into(),
                ErrorCode::Network,
            ),
            (
                oauth(OAuthError::Tls {
                    step: crate::oauth::error::Step::Discovery,
                    host: "h".into(),
                    problem: crate::oauth::tls::TlsProblem::Expired { not_after: None },
                })
                .into(),
                ErrorCode::Network,
            ),
            (
                oauth(OAuthError::Setup(crate::oauth::SetupError::NoAlg)).into(),
                ErrorCode::Config,
            ),
            (
                RefreshError::Failed {
                    error: oauth(idp),
                    next_attempt_in: Some(Duration::from_secs(3)),
                }
                .into(),
                ErrorCode::IdpError,
            ),
            (
                RefreshError::<TokenError>::WaitTimedOut(Duration::from_secs(75)).into(),
                ErrorCode::Network,
            ),
            (LockError::WrongPassphrase.into(), ErrorCode::Denied),
            (LockError::AlreadyLocked.into(), ErrorCode::BadRequest),
            (AgentError::Locked, ErrorCode::Locked),
            (AgentError::StopLocked, ErrorCode::Locked),
            (AgentError::Sealed, ErrorCode::Sealed),
            (AgentError::Denied("x".into()), ErrorCode::Denied),
            (AgentError::Internal("x".into()), ErrorCode::Internal),
            (
                TokenError::LoginRequired {
                    name: "me".into(),
                    why: "it has not signed in".into(),
                }
                .into(),
                ErrorCode::LoginRequired,
            ),
        ];
        for (error, code) in cases {
            assert_eq!(error.code(), code, "{error}");
        }
    }

    #[test]
    fn the_servers_answer_travels_with_an_idp_error_even_while_backing_off() {
        let error = AgentError::from(RefreshError::Failed {
            error: oauth(OAuthError::Idp {
                status: 429,
                error: "slow_down".into(),
                description: Some("later".into()),
                retry_after: None,
                dpop_nonce: None,
            }),
            next_attempt_in: Some(Duration::from_secs(9)),
        });
        let idp = error.idp().unwrap();
        assert_eq!((idp.status, idp.error.as_deref()), (429, Some("slow_down")));
        assert!(
            error
                .to_string()
                .ends_with("(next attempt in 9s; `--force` tries now)"),
            "{error}"
        );
    }
}
