//! What the OAuth client fails with: [`OAuthError`], the step it failed at,
//! and [`SetupError`] for what is wrong before anything is sent.

use super::tls::{TlsProblem, TlsSetupError};
use std::time::Duration;

#[derive(Debug, Clone, thiserror::Error)]
pub enum OAuthError {
    /// The server answered with an RFC 6749 §5.2 error.
    #[error("the authorization server refused the token request (HTTP {status}): {error}{}", .description.as_ref().map(|d| format!(": {d}")).unwrap_or_default())]
    Idp {
        status: u16,
        error: String,
        description: Option<String>,
        /// `Retry-After` of a 429 or 503 answer.
        retry_after: Option<Duration>,
        /// `DPoP-Nonce` of the answer (RFC 9449 §8), for `use_dpop_nonce`.
        dpop_nonce: Option<String>,
    },
    /// The server answered something that is not a valid token or error response.
    #[error("{what} from {host} (HTTP {status}): {excerpt}")]
    BadResponse {
        host: String,
        status: u16,
        what: &'static str,
        excerpt: String,
        /// `Retry-After` of a 429 or 503 answer.
        retry_after: Option<Duration>,
    },
    /// The server could not be reached.
    #[error("{step}: cannot reach {host}{}: {cause}", .via.as_ref().map(|p| format!(" through proxy {p}")).unwrap_or_default())]
    Network {
        step: Step,
        host: String,
        /// The proxy the request went through, without its credentials.
        via: Option<String>,
        cause: String,
        /// The connection closed before any answer came (a pooled one the
        /// server or a proxy had closed): the request may be sent again.
        unanswered: bool,
    },
    /// The server's certificate was refused.
    #[error("{step}: TLS with {host} failed: {problem}")]
    Tls {
        step: Step,
        host: String,
        problem: TlsProblem,
    },
    /// Discovery failed or returned an unacceptable document.
    #[error("discovery for issuer {issuer} failed: {message}")]
    Discovery { issuer: String, message: String },
    /// The profile cannot be used as configured (bad key, missing CA file, ...).
    #[error("{0}")]
    Setup(#[from] SetupError),
}

impl OAuthError {
    /// Replaces every occurrence of `needles` in the server-supplied text of
    /// this error with `[REDACTED]`.
    pub fn redact(&mut self, needles: &[zeroize::Zeroizing<String>]) {
        let scrub = |text: &mut String| {
            for needle in needles {
                if text.contains(needle.as_str()) {
                    *text = text.replace(needle.as_str(), "[REDACTED]");
                }
            }
        };
        match self {
            OAuthError::Idp {
                error, description, ..
            } => {
                scrub(error);
                if let Some(d) = description {
                    scrub(d);
                }
            }
            OAuthError::BadResponse { excerpt, .. } => scrub(excerpt),
            OAuthError::Network { cause, .. } => scrub(cause),
            // Certificate names and dates, never a request's text.
            OAuthError::Tls { .. } => {}
            OAuthError::Discovery { message, .. } => scrub(message),
            // Made by us, never of the server's text.
            OAuthError::Setup(_) => {}
        }
    }
}

/// Which request to the authorization server failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Fetching the issuer's metadata.
    Discovery,
    /// The token request.
    Token,
    /// Starting a user's sign-in (the device authorization request).
    SignIn,
    /// Revoking a refresh token.
    Revocation,
    /// Registering a client, or deleting its registration.
    Registration,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Step::Discovery => "discovery",
            Step::Token => "token request",
            Step::SignIn => "device authorization request",
            Step::Revocation => "revocation request",
            Step::Registration => "client registration request",
        })
    }
}

/// Why a profile cannot be used as configured: found before anything is sent.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SetupError {
    #[error("the profile's secret is missing")]
    SecretMissing,
    #[error("assertion_aud is `issuer` but the profile has no issuer")]
    AudWithoutIssuer,
    #[error("the profile has no alg; add it again")]
    NoAlg,
    #[error("the profile has neither issuer nor token_url")]
    NoEndpoint,
    #[error("the profile has no grant to try")]
    NoGrant,
    #[error("the grant needs {0}, which was not fetched")]
    MissingInput(&'static str),
    #[error("token_url: {0}")]
    TokenUrl(String),
    #[error("the stored private key cannot be used: {0}")]
    Key(#[from] crate::keys::KeyError),
    #[error("the stored {what} cannot be used: {detail}")]
    Stored { what: &'static str, detail: String },
    #[error("cannot sign the client assertion with {alg}: {detail}")]
    Sign {
        alg: jwtagent::config::Alg,
        detail: String,
    },
    /// The CA file, the client certificate, or TLS itself.
    #[error(transparent)]
    Https(#[from] TlsSetupError),
    #[error("DPoP: {0}")]
    Dpop(#[from] crate::jwk::JwkError),
    #[error("the system random generator failed")]
    Random,
}

impl OAuthError {
    /// The connection closed before any answer came.
    pub fn unanswered(&self) -> bool {
        matches!(
            self,
            OAuthError::Network {
                unanswered: true,
                ..
            }
        )
    }
}

/// A fresh 128-bit random id, hex-encoded.
pub(crate) fn random_id() -> Result<String, OAuthError> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| SetupError::Random)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
