//! The OAuth 2.0 client: what the agent says to authorization servers.
//!
//! - [`auth`]: client authentication (RFC 6749 §2.3, RFC 7523 §2.2) and the
//!   assertion's audience;
//! - [`grant`]: the grants and the order a profile tries them in;
//! - [`form`]: the form a request sends, its secrets kept apart;
//! - [`token`]: one token request and the parsing of its answer;
//! - [`discovery`]: finding the token endpoint (RFC 8414, OpenID Discovery);
//! - [`register`]: registering a client (RFC 7591) and deleting it (RFC 7592);
//! - [`dpop`]: DPoP nonces (RFC 9449 §8) and the retry they need;
//! - [`http`]: HTTP clients, bounded bodies, transport errors.
//!
//! Knows nothing of sockets or the token cache: [`OAuthClient::token`] is
//! handed a profile and its keys and returns a token or an error. No error it
//! returns contains a secret, an assertion or a token.

pub(crate) mod auth;
pub(crate) mod discovery;
pub(crate) mod dpop;
pub(crate) mod error;
pub(crate) mod form;
pub(crate) mod github;
pub(crate) mod grant;
pub(crate) mod http;
pub(crate) mod proxy;
pub(crate) mod register;
pub(crate) mod tls;
pub(crate) mod token;
pub(crate) mod user;

pub use error::OAuthError;
pub(crate) use error::SetupError;
pub(crate) use error::random_id;
pub use token::parse_token_response;
pub(crate) use token::{Obtained, TokenRequest, TokenResponse};

use crate::jwk::DpopKey;
use grant::Grant;
use jwtagent::config::{self, Profile};
use jwtagent::secret::Secret;
use url::Url;

/// What a token is asked for with: profile `name`, its secret and DPoP key,
/// and the scopes and resources of the request.
pub(crate) struct Ask<'a> {
    pub name: &'a str,
    pub profile: &'a Profile,
    pub secret: Option<&'a Secret>,
    pub dpop: Option<&'a DpopKey>,
    pub scopes: &'a [String],
    pub resources: &'a [String],
    /// What the grant takes from other profiles.
    pub inputs: &'a grant::Inputs,
    /// A sign-in's grant (a device code, an authorization code) to send
    /// instead of the profile's plan.
    pub sign_in: Option<Grant<'a>>,
}

/// What the agent keeps between token requests: HTTP clients, discovered
/// metadata, DPoP nonces.
#[derive(Default)]
pub(crate) struct OAuthClient {
    http: http::HttpClients,
    metadata: discovery::MetadataCache,
    nonces: dpop::Nonces,
    auds: auth::AudMemory,
    posts: auth::PostMemory,
}

impl OAuthClient {
    /// Gets a token as `ask` says: finds the token endpoint, then follows
    /// the profile's grant plan.
    pub(crate) async fn token(
        &self,
        ask: Ask<'_>,
        refresh_token: Option<Secret>,
    ) -> Result<Obtained, OAuthError> {
        let Ask {
            name,
            profile,
            secret,
            dpop,
            scopes,
            resources,
            inputs,
            sign_in,
        } = ask;
        let http = self.http_client(name, profile, secret)?;
        if matches!(profile.grant, config::Grant::GithubApp(_)) {
            let key = secret.ok_or(SetupError::SecretMissing)?;
            return github::installation_token(&http, profile, key).await;
        }
        let (token_endpoint, issuer, _) = self.token_endpoint(&http, profile).await?;
        let auds = auth::audiences(
            profile,
            &token_endpoint,
            issuer.as_deref(),
            self.auds.get(profile),
        )?;
        let (plan, form_scopes) = steps(profile, sign_in, refresh_token.as_ref(), inputs, scopes)?;
        let mut last = None;
        for step in &plan {
            let request = |aud: Option<&auth::Aud>| -> Result<TokenRequest<'_>, OAuthError> {
                let grant = match step {
                    grant::Step::Ready(grant) => grant.clone(),
                    grant::Step::SignedJwtBearer => {
                        let key = secret.ok_or(SetupError::SecretMissing)?;
                        let aud = aud
                            .map(|a| a.value.as_str())
                            .unwrap_or(token_endpoint.as_str());
                        Grant::JwtBearer(auth::grant_assertion(profile, key, aud, scopes)?)
                    }
                };
                Ok(TokenRequest {
                    dpop: dpop.map(|key| (key, None)),
                    grant,
                    token_endpoint: &token_endpoint,
                    client_id: &profile.client_id,
                    auth: auth::choose(profile, secret, aud)?,
                    scopes: form_scopes,
                    resources,
                    audience: profile.audience.as_deref(),
                    params: &profile.params,
                })
            };
            match self
                .send_authenticated(&http, profile, &auds, request)
                .await
            {
                Ok(mut response) => {
                    let refresh_token = response.refresh_token.take().or_else(|| {
                        step.keeps_refresh_token()
                            .then(|| refresh_token.clone())
                            .flatten()
                    });
                    return Ok(Obtained {
                        response,
                        grant: step.name(),
                        refresh_token,
                    });
                }
                Err(e) if step.falls_back_on(&e) => {
                    tracing::info!(grant = step.name(), error = %e, "grant refused; trying the next in the profile's plan");
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(OAuthError::Setup(SetupError::NoGrant)))
    }

    /// The profile's token endpoint, its issuer when known, and the issuer's
    /// metadata when it was discovered.
    async fn token_endpoint(
        &self,
        http: &reqwest::Client,
        profile: &Profile,
    ) -> Result<(Url, Option<String>, Option<discovery::Metadata>), OAuthError> {
        match (&profile.token_url, &profile.issuer) {
            (Some(url), issuer) => Ok((
                Url::parse(url).map_err(|e| SetupError::TokenUrl(e.to_string()))?,
                issuer.clone(),
                None,
            )),
            (None, Some(issuer)) => {
                let meta = self
                    .metadata
                    .get(http, issuer, profile.ca_file.as_ref())
                    .await?;
                // RFC 8705 §5: mutual TLS clients use the server's alias.
                let endpoint = match &meta.mtls_token_endpoint {
                    Some(alias) if profile.auth.uses_mtls() => alias.clone(),
                    _ => meta.token_endpoint.clone(),
                };
                Ok((endpoint, Some(meta.issuer.clone()), Some(meta)))
            }
            (None, None) => Err(SetupError::NoEndpoint.into()),
        }
    }

    /// Sends the request `request` builds, with each assertion `aud` in
    /// turn while the server refuses the client's authentication (at most
    /// the two of `auto`), and remembers the one that worked.
    async fn send_authenticated<'a>(
        &self,
        http: &reqwest::Client,
        profile: &Profile,
        auds: &[auth::Aud],
        request: impl Fn(Option<&auth::Aud>) -> Result<TokenRequest<'a>, OAuthError>,
    ) -> Result<token::TokenResponse, OAuthError> {
        if auds.is_empty() {
            return self
                .send_basic_or_post(http, profile, || request(None))
                .await;
        }
        let mut i = 0;
        loop {
            let aud = &auds[i];
            match self.nonces.send(http, || request(Some(aud))).await {
                Ok(response) => {
                    self.auds.worked(profile, Some(aud));
                    return Ok(response);
                }
                Err(e) if auth::refuses_client_auth(&e) && i + 1 < auds.len() => {
                    tracing::info!(
                        aud = %aud.value,
                        error = %e,
                        "client authentication refused; retrying with the other assertion aud"
                    );
                    i += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends the request `request` builds; when the server refuses Basic
    /// credentials that form-encoding changed, once more with the secret
    /// in the form, which is remembered when it works.
    async fn send_basic_or_post<'a>(
        &self,
        http: &reqwest::Client,
        profile: &Profile,
        request: impl Fn() -> Result<TokenRequest<'a>, OAuthError>,
    ) -> Result<token::TokenResponse, OAuthError> {
        let post = self.posts.get(profile);
        let build = |as_post: bool| {
            request().map(|mut r| {
                if as_post {
                    r.auth.post_instead();
                }
                r
            })
        };
        match self.nonces.send(http, || build(post)).await {
            Err(e)
                if !post
                    && auth::refuses_client_auth(&e)
                    && request()?.auth.misreadable(&profile.client_id) =>
            {
                tracing::info!(error = %e, "Basic credentials that form-encoding changed were refused; trying client_secret_post");
                let response = self.nonces.send(http, || build(true)).await?;
                self.posts.worked(profile);
                Ok(response)
            }
            other => other,
        }
    }

    /// The HTTP client for profile `name`: its CA file, and for mutual TLS
    /// its certificate and key (`secret`).
    fn http_client(
        &self,
        name: &str,
        profile: &Profile,
        secret: Option<&Secret>,
    ) -> Result<reqwest::Client, OAuthError> {
        let (Some(cert), true, Some(key)) =
            (&profile.certificate, profile.auth.uses_mtls(), secret)
        else {
            return self.http.get(profile.ca_file.as_ref(), None);
        };
        let make = || tls::identity(cert, key).map_err(|e| SetupError::Https(e.into()).into());
        let id = format!("{name}#{}", profile.generation);
        self.http.get(profile.ca_file.as_ref(), Some((id, &make)))
    }

    /// Forgets what is kept for profile `name` that holds its key (the
    /// HTTP clients presenting its certificate).
    pub(crate) fn forget(&self, name: &str) {
        self.http.forget(Some(name));
    }

    /// Forgets every profile's keys it holds (`lock`).
    pub(crate) fn forget_all(&self) {
        self.http.forget(None);
    }

    /// Which assertion `aud` worked last for `profile`, when the agent
    /// chose it (`--assertion-aud auto`).
    pub(crate) fn aud_worked(&self, profile: &Profile) -> Option<auth::AudKind> {
        self.auds.get(profile)
    }
}

/// The grants to try for `profile`, and the scopes their form carries: the
/// code of a sign-in alone, as it is (what it grants was settled at
/// sign-in), else the profile's plan.
fn steps<'a>(
    profile: &'a Profile,
    sign_in: Option<Grant<'a>>,
    refresh_token: Option<&'a Secret>,
    inputs: &'a grant::Inputs,
    scopes: &'a [String],
) -> Result<(Vec<grant::Step<'a>>, &'a [String]), OAuthError> {
    Ok(match sign_in {
        Some(grant) => (vec![grant::Step::Ready(grant)], &[][..]),
        None => (
            grant::plan(profile, refresh_token, inputs).map_err(SetupError::MissingInput)?,
            // Google's form carries the scopes in the assertion only.
            if profile.grant.is_google() {
                &[][..]
            } else {
                scopes
            },
        ),
    })
}

/// SHA-256 fingerprint of a token for logs: the first 8 hex digits.
pub(crate) fn fingerprint(token: &Secret) -> Fingerprint {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.expose());
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut text = [0u8; 8];
    for (i, b) in digest.as_ref()[..4].iter().enumerate() {
        text[2 * i] = HEX[usize::from(b >> 4)];
        text[2 * i + 1] = HEX[usize::from(b & 0xf)];
    }
    Fingerprint(text)
}

/// A token's fingerprint as text, held in place: the cache keeps one per
/// token (10,000 of them at scale), with no allocation of its own.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fingerprint([u8; 8]);

impl Fingerprint {
    pub(crate) fn as_str(&self) -> &str {
        // Hex digits only, as `fingerprint` writes them.
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_eight_hex_digits_of_sha256() {
        // sha256("abc") = ba7816bf...
        assert_eq!(
            fingerprint(&Secret::new(b"abc".to_vec())).as_str(),
            "ba7816bf"
        );
    }
}
