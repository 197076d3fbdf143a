//! The grant a profile's tokens come from, each with the settings only it
//! takes: what goes with which grant is the type, not a list of rules. The
//! file and the wire keep their flat form (`grant = "..."` beside the grant's
//! own fields); [`super::raw`] converts between the two.

use super::values::{AuthMethod, FieldError, field_err};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// The grant of a profile, with its own settings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Grant {
    /// RFC 6749 §4.4.
    #[default]
    ClientCredentials,
    /// RFC 7523 §2.1: a JWT as the authorization grant.
    JwtBearer(Assertion),
    /// RFC 8693: another profile's token exchanged for one of this server's.
    /// Boxed, as the next: each of 10,000 profiles holds a `Grant`, most
    /// of them client credentials.
    TokenExchange(Box<Exchange>),
    /// A GitHub App installation access token.
    GithubApp(Box<GitHubApp>),
    /// RFC 8628: the user signs in on another device (`jwtagent login`).
    DeviceCode {
        /// Without an issuer: the device authorization endpoint (§3.1).
        device_authorization_url: Option<String>,
    },
    /// RFC 6749 §4.1 with PKCE (RFC 7636) on a loopback redirect (RFC 8252
    /// §7.3): the user signs in in a browser (`jwtagent login`).
    AuthorizationCode {
        /// Without an issuer: the authorization endpoint.
        authorization_url: Option<String>,
        /// The loopback redirect's port, for servers that need a fixed one
        /// (default: any free port).
        redirect_port: Option<u16>,
    },
}

/// Where a jwt-bearer grant's assertion comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assertion {
    /// The agent signs it with the profile's private key.
    Signed {
        /// The assertion's `sub` (default: the client id); for a Google
        /// service account, the user to act as (domain-wide delegation).
        subject: Option<String>,
        /// Google's form (a service account): `iss` = the client id (the
        /// account's email), the scopes in the assertion's `scope` claim, no
        /// client_id in the request.
        google: bool,
    },
    /// The current token of the profile named, sent as it is.
    Profile(String),
}

/// What a token exchange sends and asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    /// The profile whose current token is the subject_token.
    pub subject_profile: String,
    /// The subject_token_type (default: what the subject profile's server
    /// issued, else an access token).
    pub subject_token_type: Option<String>,
    /// The profile whose current token is the actor_token.
    pub actor_profile: Option<String>,
    /// The requested_token_type.
    pub requested_token_type: Option<String>,
}

impl Exchange {
    /// An exchange of `subject_profile`'s token, with nothing else set.
    pub fn of(subject_profile: impl Into<String>) -> Exchange {
        Exchange {
            subject_profile: subject_profile.into(),
            subject_token_type: None,
            actor_profile: None,
            requested_token_type: None,
        }
    }
}

/// The role another profile's token plays in a grant.
pub const ROLES: [&str; 3] = ["assertion", "subject", "actor"];

impl Grant {
    pub fn kind(&self) -> GrantKind {
        match self {
            Grant::ClientCredentials => GrantKind::ClientCredentials,
            Grant::JwtBearer(_) => GrantKind::JwtBearer,
            Grant::TokenExchange(_) => GrantKind::TokenExchange,
            Grant::GithubApp(_) => GrantKind::GithubApp,
            Grant::DeviceCode { .. } => GrantKind::DeviceCode,
            Grant::AuthorizationCode { .. } => GrantKind::AuthorizationCode,
        }
    }

    /// Whether the tokens are a user's, obtained by `jwtagent login` and
    /// kept coming with the refresh token it yielded.
    pub fn is_user(&self) -> bool {
        self.kind().is_user()
    }

    /// Whether the agent signs a JWT with the profile's key for the grant
    /// itself: a jwt-bearer assertion of its own, or a GitHub App JWT.
    pub fn signs(&self) -> bool {
        matches!(
            self,
            Grant::JwtBearer(Assertion::Signed { .. }) | Grant::GithubApp(_)
        )
    }

    /// Whether the grant is jwt-bearer in Google's form.
    pub fn is_google(&self) -> bool {
        matches!(
            self,
            Grant::JwtBearer(Assertion::Signed { google: true, .. })
        )
    }

    /// The other profiles whose tokens the grant carries, with the role of
    /// each: `assertion`, `subject` or `actor` (in that order).
    pub fn input_roles(&self) -> impl Iterator<Item = (&'static str, &str)> {
        let (assertion, subject, actor) = match self {
            Grant::JwtBearer(Assertion::Profile(name)) => (Some(name.as_str()), None, None),
            Grant::TokenExchange(exchange) => (
                None,
                Some(exchange.subject_profile.as_str()),
                exchange.actor_profile.as_deref(),
            ),
            _ => (None, None, None),
        };
        ROLES
            .into_iter()
            .zip([assertion, subject, actor])
            .filter_map(|(role, name)| Some((role, name?)))
    }

    /// Checks the grant's settings, and what it needs of the rest of its
    /// profile: the client authentication, whether there is an issuer to
    /// discover endpoints from, whether tokens are DPoP-bound. (Which
    /// settings go with which grant is the type itself.)
    pub(super) fn check(
        &self,
        auth: AuthMethod,
        has_issuer: bool,
        dpop: bool,
    ) -> Result<(), FieldError> {
        self.check_own()?;
        let grant = self.kind();
        match self {
            Grant::DeviceCode {
                device_authorization_url: None,
            } if !has_issuer => Err(field_err(
                "device_authorization_url",
                "the device-code grant needs --issuer (discovery) or --device-authorization-url URL beside --token-url",
            )),
            Grant::AuthorizationCode {
                authorization_url: None,
                ..
            } if !has_issuer => Err(field_err(
                "authorization_url",
                "the authorization-code grant needs --issuer (discovery) or --authorization-url URL beside --token-url",
            )),
            Grant::DeviceCode { .. } | Grant::AuthorizationCode { .. } if dpop => Err(field_err(
                "dpop",
                "DPoP is not supported for user tokens yet: leave out --dpop",
            )),
            // The key signs the grant; the client authenticates with that
            // key too, or not at all.
            Grant::JwtBearer(Assertion::Signed { .. }) | Grant::GithubApp(_)
                if !matches!(
                    auth,
                    AuthMethod::None
                        | AuthMethod::PrivateKeyJwt
                        | AuthMethod::TlsClientAuth
                        | AuthMethod::SelfSignedTlsClientAuth
                ) =>
            {
                Err(field_err(
                    "auth",
                    format!(
                        "the {grant} grant signs with the profile's private key, so the client authenticates with that key (private_key_jwt, mutual TLS) or not at all (none), not with {}",
                        auth
                    ),
                ))
            }
            Grant::JwtBearer(Assertion::Signed { google: true, .. })
                if auth != AuthMethod::None =>
            {
                Err(field_err(
                    "google",
                    "Google's form has no client authentication: auth must be none",
                ))
            }
            Grant::ClientCredentials
            | Grant::JwtBearer(_)
            | Grant::TokenExchange(_)
            | Grant::GithubApp(_)
            | Grant::DeviceCode { .. }
            | Grant::AuthorizationCode { .. } => Ok(()),
        }
    }

    /// Checks the grant's own settings.
    fn check_own(&self) -> Result<(), FieldError> {
        let texts: &[(&'static str, &Option<String>)] = match self {
            Grant::JwtBearer(Assertion::Signed { subject, .. }) => &[("subject", subject)],
            Grant::TokenExchange(e) => &[
                ("subject_token_type", &e.subject_token_type),
                ("requested_token_type", &e.requested_token_type),
            ],
            Grant::AuthorizationCode {
                redirect_port: Some(0),
                ..
            } => {
                return Err(field_err(
                    "redirect_port",
                    "must be a port number from 1 to 65535 (leave it out for any free port)",
                ));
            }
            _ => &[],
        };
        for (field, value) in texts {
            if let Some(v) = value
                && (v.trim().is_empty() || v.chars().any(char::is_control))
            {
                return Err(field_err(field, "must be non-empty text"));
            }
        }
        Ok(())
    }

    /// The grant's settings as `show` lists them, after the grant's name
    /// (nothing for client credentials, the default).
    pub fn settings(&self) -> Vec<(&'static str, String)> {
        let kind = self.kind();
        let mut lines = vec![match self {
            Grant::ClientCredentials => return vec![],
            Grant::JwtBearer(Assertion::Signed { google: true, .. }) => {
                ("grant", format!("{kind} (Google service account)"))
            }
            _ => ("grant", kind.to_string()),
        }];
        let mut some = |label, value: Option<&str>| {
            if let Some(value) = value {
                lines.push((label, value.to_string()));
            }
        };
        match self {
            Grant::ClientCredentials => {}
            Grant::JwtBearer(Assertion::Signed { subject, .. }) => {
                some("subject", subject.as_deref());
            }
            Grant::JwtBearer(Assertion::Profile(name)) => some("assertion_from", Some(name)),
            Grant::TokenExchange(exchange) => {
                some("subject_from", Some(&exchange.subject_profile));
                some("subject_type", exchange.subject_token_type.as_deref());
                some("actor_from", exchange.actor_profile.as_deref());
                some("requested_type", exchange.requested_token_type.as_deref());
            }
            Grant::GithubApp(app) => {
                let at = format!("installation {} at {}", app.installation_id, app.api_url);
                some("github", Some(&at));
                if !app.repositories.is_empty() {
                    some("repositories", Some(&app.repositories.join(", ")));
                }
                for (k, v) in &app.permissions {
                    some("permission", Some(&format!("{k}={v}")));
                }
            }
            Grant::DeviceCode {
                device_authorization_url,
            } => some("device_auth", device_authorization_url.as_deref()),
            Grant::AuthorizationCode {
                authorization_url,
                redirect_port,
            } => {
                some("authorization", authorization_url.as_deref());
                some(
                    "redirect_port",
                    redirect_port.map(|p| p.to_string()).as_deref(),
                );
            }
        }
        lines
    }
}

/// Which grant a profile's tokens come from: [`Grant`] without its settings (the
/// `grant` field of the file and the wire, `--grant`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantKind {
    /// RFC 6749 §4.4.
    #[default]
    ClientCredentials,
    /// RFC 7523 §2.1: a JWT as the authorization grant.
    JwtBearer,
    /// RFC 8693.
    TokenExchange,
    /// A GitHub App installation access token.
    GithubApp,
    /// RFC 8628: the user signs in on another device (`jwtagent login`);
    /// the refresh token it yields keeps the tokens coming.
    DeviceCode,
    /// RFC 6749 §4.1 with PKCE (RFC 7636) on a loopback redirect (RFC 8252
    /// §7.3): the user signs in in a browser (`jwtagent login`).
    AuthorizationCode,
}

impl GrantKind {
    /// Every grant, in the order help lists them.
    pub const ALL: [GrantKind; 6] = [
        GrantKind::ClientCredentials,
        GrantKind::JwtBearer,
        GrantKind::TokenExchange,
        GrantKind::GithubApp,
        GrantKind::DeviceCode,
        GrantKind::AuthorizationCode,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            GrantKind::ClientCredentials => "client-credentials",
            GrantKind::JwtBearer => "jwt-bearer",
            GrantKind::TokenExchange => "token-exchange",
            GrantKind::GithubApp => "github-app",
            GrantKind::DeviceCode => "device-code",
            GrantKind::AuthorizationCode => "authorization-code",
        }
    }

    /// Whether the tokens are a user's, obtained by `jwtagent login` and
    /// kept coming with the refresh token it yielded.
    pub fn is_user(self) -> bool {
        matches!(self, GrantKind::DeviceCode | GrantKind::AuthorizationCode)
    }
}

impl fmt::Display for GrantKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for GrantKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.replace('_', "-").as_str() {
            "client-credentials" => Ok(GrantKind::ClientCredentials),
            "jwt-bearer" => Ok(GrantKind::JwtBearer),
            "token-exchange" => Ok(GrantKind::TokenExchange),
            "github-app" => Ok(GrantKind::GithubApp),
            "device-code" => Ok(GrantKind::DeviceCode),
            "authorization-code" => Ok(GrantKind::AuthorizationCode),
            _ => Err(format!(
                "unknown grant {s:?}: use client-credentials, jwt-bearer, token-exchange, device-code or authorization-code (--github-app makes a GitHub App profile)"
            )),
        }
    }
}

/// A GitHub App installation (the app id is the profile's client id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitHubApp {
    pub installation_id: u64,
    /// The REST API root: `https://api.github.com`, or a GitHub Enterprise
    /// Server's `https://HOST/api/v3`.
    pub api_url: String,
    /// Repositories the tokens are limited to (names); empty: all the
    /// installation can reach.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repositories: Vec<String>,
    /// Permissions the tokens are limited to (`contents = "read"`); empty:
    /// all the installation has.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub permissions: BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `show`'s lines of a GitHub App grant: the repositories only when the
    /// tokens are limited to some, each permission on a line of its own.
    #[test]
    fn a_github_app_shows_its_repositories_only_when_it_names_some() {
        let mut app = GitHubApp {
            installation_id: 7,
            api_url: "https://api.github.com".into(),
            repositories: vec![],
            permissions: BTreeMap::from([("contents".into(), "read".into())]),
        };
        let lines = Grant::GithubApp(Box::new(app.clone())).settings();
        assert_eq!(
            lines,
            [
                ("grant", "github-app".to_string()),
                ("github", "installation 7 at https://api.github.com".into()),
                ("permission", "contents=read".into()),
            ]
        );
        app.repositories = vec!["one".into(), "two".into()];
        let lines = Grant::GithubApp(Box::new(app)).settings();
        assert!(
            lines.contains(&("repositories", "one, two".into())),
            "{lines:?}"
        );
    }
}
