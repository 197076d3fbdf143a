//! Grants (RFC 6749 §4): what a token request asks for, and the plan a
//! profile follows: a refresh token first when the server issued one, then the
//! profile's own grant. A new grant is a new variant here.

use super::OAuthError;
use super::token::Form;
use jwtagent::secret::Secret;

/// The grant one token request uses.
#[derive(Clone, Copy)]
pub enum Grant<'a> {
    /// RFC 6749 §4.4: the client's own credentials.
    ClientCredentials,
    /// RFC 6749 §6, with a refresh token the server issued earlier.
    RefreshToken(&'a Secret),
}

impl<'a> Grant<'a> {
    /// The name used in logs.
    pub fn name(&self) -> &'static str {
        match self {
            Grant::ClientCredentials => "client_credentials",
            Grant::RefreshToken(_) => "refresh_token",
        }
    }

    /// Adds the grant's fields to a request's form.
    pub fn add_to(&self, form: &mut Form<'_>) {
        match self {
            Grant::ClientCredentials => form.push("grant_type", "client_credentials"),
            Grant::RefreshToken(token) => {
                form.push("grant_type", "refresh_token");
                form.push_secret("refresh_token", (*token).clone());
            }
        }
    }

    /// Whether the next grant of the plan is tried after this one failed
    /// with `error`: a refused refresh token (an RFC 6749 error) falls back to
    /// the client's own grant; a network failure does not.
    pub fn falls_back_on(&self, error: &OAuthError) -> bool {
        matches!(self, Grant::RefreshToken(_)) && matches!(error, OAuthError::Idp { .. })
    }

    /// Whether a server that answers this grant without a new refresh token
    /// means the one sent stays good (RFC 6749 §6).
    pub fn keeps_refresh_token(&self) -> bool {
        matches!(self, Grant::RefreshToken(_))
    }
}

/// The grants to try, in order, for a profile: the refresh token the server
/// issued, if any, then client_credentials.
pub fn plan(refresh_token: Option<&Secret>) -> Vec<Grant<'_>> {
    refresh_token
        .map(Grant::RefreshToken)
        .into_iter()
        .chain([Grant::ClientCredentials])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_uses_a_refresh_token_first_then_client_credentials() {
        let rt = Secret::new(b"rt".to_vec());
        let names: Vec<_> = plan(Some(&rt)).iter().map(Grant::name).collect();
        assert_eq!(names, ["refresh_token", "client_credentials"]);
        let names: Vec<_> = plan(None).iter().map(Grant::name).collect();
        assert_eq!(names, ["client_credentials"]);
    }

    #[test]
    fn only_a_refused_refresh_token_falls_back() {
        let rt = Secret::new(b"rt".to_vec());
        let refused = OAuthError::Idp {
            status: 400,
            error: "invalid_grant".into(),
            description: None,
            retry_after: None,
            dpop_nonce: None,
        };
        let down = OAuthError::Network {
            step: crate::oauth::Step::Token,
            host: "idp".into(),
            via: None,
            cause: "refused".into(),
        };
        assert!(Grant::RefreshToken(&rt).falls_back_on(&refused));
        assert!(!Grant::RefreshToken(&rt).falls_back_on(&down));
        assert!(!Grant::ClientCredentials.falls_back_on(&refused));
    }
}
