//! Grants (RFC 6749 §4 and its extensions): what a token request asks for,
//! and the plan a profile follows: a refresh token first when the server
//! issued one, then the profile's own grant. A new grant is a new variant
//! here.

use super::error::OAuthError;
use super::form::Form;
use jwtagent::config::{self, Assertion, Profile};
use jwtagent::secret::Secret;

pub(crate) const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
pub(crate) const DEVICE_CODE: &str = "urn:ietf:params:oauth:grant-type:device_code";
pub(crate) const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// RFC 8693 §3: the token type of an OAuth access token.
pub(crate) const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// Another profile's current token, as a grant carries it.
#[derive(Clone)]
pub(crate) struct Input {
    pub token: Secret,
    /// Its RFC 8693 token type: what its server said it issued, else an
    /// access token.
    pub token_type: String,
}

/// What a profile's grant takes from other profiles (`--assertion-profile`,
/// `--subject-profile`, `--actor-profile`), fetched by the agent first.
#[derive(Clone, Default)]
pub(crate) struct Inputs {
    pub assertion: Option<Input>,
    pub subject: Option<Input>,
    pub actor: Option<Input>,
}

/// The grant one token request uses.
#[derive(Clone)]
pub(crate) enum Grant<'a> {
    /// RFC 6749 §4.4: the client's own credentials.
    ClientCredentials,
    /// RFC 6749 §6, with a refresh token the server issued earlier.
    RefreshToken(&'a Secret),
    /// RFC 7523 §2.1 with this assertion (signed by the agent, or another
    /// profile's token).
    JwtBearer(Secret),
    /// RFC 8628 §3.4: the device code of a sign-in under way.
    DeviceCode(&'a Secret),
    /// RFC 6749 §4.1.3 with RFC 7636's verifier: the code the browser brought
    /// back to the loopback redirect.
    AuthorizationCode {
        code: &'a Secret,
        verifier: &'a Secret,
        redirect_uri: &'a str,
    },
    /// RFC 8693: these tokens exchanged for one of `requested` type.
    TokenExchange {
        subject: &'a Input,
        actor: Option<&'a Input>,
        requested: Option<&'a str>,
    },
}

impl<'a> Grant<'a> {
    /// The name used in logs.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Grant::ClientCredentials => "client_credentials",
            Grant::RefreshToken(_) => "refresh_token",
            Grant::JwtBearer(_) => "jwt-bearer",
            Grant::TokenExchange { .. } => "token-exchange",
            Grant::DeviceCode(_) => "device_code",
            Grant::AuthorizationCode { .. } => "authorization_code",
        }
    }

    /// Adds the grant's fields to a request's form.
    pub(crate) fn add_to(&self, form: &mut Form<'_>) {
        match self {
            Grant::ClientCredentials => form.push("grant_type", "client_credentials"),
            Grant::RefreshToken(token) => {
                form.push("grant_type", "refresh_token");
                form.push_secret("refresh_token", (*token).clone());
            }
            Grant::DeviceCode(code) => {
                form.push("grant_type", DEVICE_CODE);
                form.push_secret("device_code", (*code).clone());
            }
            Grant::AuthorizationCode {
                code,
                verifier,
                redirect_uri,
            } => {
                form.push("grant_type", "authorization_code");
                form.push_secret("code", (*code).clone());
                form.push_secret("code_verifier", (*verifier).clone());
                form.push("redirect_uri", *redirect_uri);
            }
            Grant::JwtBearer(assertion) => {
                form.push("grant_type", JWT_BEARER);
                form.push_secret("assertion", assertion.clone());
            }
            Grant::TokenExchange {
                subject,
                actor,
                requested,
            } => {
                form.push("grant_type", TOKEN_EXCHANGE);
                form.push_secret("subject_token", subject.token.clone());
                form.push("subject_token_type", subject.token_type.clone());
                if let Some(actor) = actor {
                    form.push_secret("actor_token", actor.token.clone());
                    form.push("actor_token_type", actor.token_type.clone());
                }
                if let Some(requested) = requested {
                    form.push("requested_token_type", *requested);
                }
            }
        }
    }

    /// Whether the next grant of the plan is tried after this one failed
    /// with `error`: a refused refresh token (an RFC 6749 error) falls back to
    /// the client's own grant; a network failure does not.
    pub(crate) fn falls_back_on(&self, error: &OAuthError) -> bool {
        matches!(self, Grant::RefreshToken(_)) && matches!(error, OAuthError::Idp { .. })
    }

    /// Whether a server that answers this grant without a new refresh token
    /// means the one sent stays good (RFC 6749 §6).
    pub(crate) fn keeps_refresh_token(&self) -> bool {
        matches!(self, Grant::RefreshToken(_))
    }
}

/// One step of a profile's plan: a grant, or for jwt-bearer without an
/// assertion from another profile, one the agent signs when it sends it (a
/// fresh `jti` and the `aud` of the attempt).
pub(crate) enum Step<'a> {
    Ready(Grant<'a>),
    SignedJwtBearer,
}

impl Step<'_> {
    /// The grant's name (for logs and the audit), whether an answer without
    /// a refresh token keeps the one sent, and whether a refusal falls back
    /// to the next step on `error`.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Step::Ready(grant) => grant.name(),
            Step::SignedJwtBearer => "jwt-bearer",
        }
    }

    pub(crate) fn keeps_refresh_token(&self) -> bool {
        matches!(self, Step::Ready(grant) if grant.keeps_refresh_token())
    }

    pub(crate) fn falls_back_on(&self, error: &OAuthError) -> bool {
        matches!(self, Step::Ready(grant) if grant.falls_back_on(error))
    }
}

/// The grants to try, in order, for `profile`: the refresh token the server
/// issued, if any, then the profile's own grant with what it takes from
/// other profiles. None when an input is missing (`why`).
pub(crate) fn plan<'a>(
    profile: &'a Profile,
    refresh_token: Option<&'a Secret>,
    inputs: &'a Inputs,
) -> Result<Vec<Step<'a>>, &'static str> {
    let own = match &profile.grant {
        config::Grant::ClientCredentials => Step::Ready(Grant::ClientCredentials),
        config::Grant::JwtBearer(Assertion::Signed { .. }) => Step::SignedJwtBearer,
        config::Grant::JwtBearer(Assertion::Profile(_)) => match &inputs.assertion {
            Some(input) => Step::Ready(Grant::JwtBearer(input.token.clone())),
            None => return Err("the assertion profile's token"),
        },
        config::Grant::TokenExchange(exchange) => {
            let subject = inputs
                .subject
                .as_ref()
                .ok_or("the subject profile's token")?;
            let actor = match (&exchange.actor_profile, &inputs.actor) {
                (Some(_), None) => return Err("the actor profile's token"),
                (_, actor) => actor.as_ref(),
            };
            Step::Ready(Grant::TokenExchange {
                subject,
                actor,
                requested: exchange.requested_token_type.as_deref(),
            })
        }
        config::Grant::GithubApp(_) => return Err("a token endpoint (a GitHub App has none)"),
        // A user's tokens come from the refresh token `jwtagent login` got;
        // without one there is nothing to try.
        config::Grant::DeviceCode { .. } | config::Grant::AuthorizationCode { .. } => {
            let rt = refresh_token.ok_or("a refresh token (sign in with `jwtagent login`)")?;
            return Ok(vec![Step::Ready(Grant::RefreshToken(rt))]);
        }
    };
    Ok(refresh_token
        .map(|rt| Step::Ready(Grant::RefreshToken(rt)))
        .into_iter()
        .chain([own])
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jwtagent::config::AuthMethod;

    fn names(steps: &[Step<'_>]) -> Vec<&'static str> {
        steps
            .iter()
            .map(|s| match s {
                Step::Ready(g) => g.name(),
                Step::SignedJwtBearer => "signed jwt-bearer",
            })
            .collect()
    }

    fn input(token: &str) -> Input {
        Input {
            token: Secret::new(token.as_bytes().to_vec()),
            token_type: ACCESS_TOKEN_TYPE.into(),
        }
    }

    #[test]
    fn plan_uses_a_refresh_token_first_then_the_profiles_grant() {
        let rt = Secret::new(b"rt".to_vec());
        let none = Inputs::default();
        let mut p = Profile::new("https://idp.example/token", "c", AuthMethod::None);
        assert_eq!(
            names(&plan(&p, Some(&rt), &none).unwrap()),
            ["refresh_token", "client_credentials"]
        );
        assert_eq!(
            names(&plan(&p, None, &none).unwrap()),
            ["client_credentials"]
        );
        p.grant = config::Grant::JwtBearer(Assertion::Signed {
            subject: None,
            google: false,
        });
        assert_eq!(
            names(&plan(&p, None, &none).unwrap()),
            ["signed jwt-bearer"]
        );
        p.grant = config::Grant::JwtBearer(Assertion::Profile("idp".into()));
        assert!(plan(&p, None, &none).is_err());
        let given = Inputs {
            assertion: Some(input("id-jag")),
            ..Inputs::default()
        };
        assert_eq!(names(&plan(&p, None, &given).unwrap()), ["jwt-bearer"]);
    }

    #[test]
    fn token_exchange_sends_the_subject_and_actor_with_their_types() {
        let mut p = Profile::new("https://idp.example/token", "c", AuthMethod::None);
        p.grant = config::Grant::TokenExchange(Box::new(config::Exchange {
            requested_token_type: Some("urn:ietf:params:oauth:token-type:id-jag".into()),
            ..config::Exchange::of("user")
        }));
        assert!(plan(&p, None, &Inputs::default()).is_err());
        let inputs = Inputs {
            subject: Some(input("subject-token")),
            actor: Some(input("actor-token")),
            ..Inputs::default()
        };
        let steps = plan(&p, None, &inputs).unwrap();
        let Step::Ready(grant) = &steps[0] else {
            panic!("not ready")
        };
        let mut form = Form::default();
        grant.add_to(&mut form);
        let fields: Vec<_> = form.fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(
            fields,
            [
                ("grant_type", TOKEN_EXCHANGE),
                ("subject_token_type", ACCESS_TOKEN_TYPE),
                ("actor_token_type", ACCESS_TOKEN_TYPE),
                (
                    "requested_token_type",
                    "urn:ietf:params:oauth:token-type:id-jag"
                ),
            ]
        );
        let secrets: Vec<_> = form.secrets.iter().map(|(k, _)| *k).collect();
        assert_eq!(secrets, ["subject_token", "actor_token"]);
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
            step: crate::oauth::error::Step::Token,
            host: "idp".into(),
            via: None,
            cause: "refused".into(),
            unanswered: false,
        };
        assert!(Grant::RefreshToken(&rt).falls_back_on(&refused));
        assert!(!Grant::RefreshToken(&rt).falls_back_on(&down));
        assert!(!Grant::ClientCredentials.falls_back_on(&refused));
    }
}
