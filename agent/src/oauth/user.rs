//! What signing in as a user takes besides token requests: where the user
//! signs in (discovered, or the profile's URLs), the device authorization
//! request (RFC 8628 §3.1), PKCE (RFC 7636 §4), the authorization URL
//! (RFC 6749 §4.1.1), and revoking a refresh token (RFC 7009).
//!
//! Everything a server sends here is hostile: a user code or URL that is
//! shown to the user must be printable and short, lifetimes are clamped.

use super::OAuthClient;
use super::auth::{self, Aud};
use super::error::{OAuthError, SetupError, Step};
use super::form::Form;
use super::http::read_body;
use super::token::{parse_error, post_form};
use jwtagent::config::{Grant, Profile, check_endpoint};
use jwtagent::secret::Secret;
use serde::Deserialize;
use std::time::Duration;
use url::Url;

/// RFC 8628 §3.5: the polling interval when the server gives none.
const DEFAULT_INTERVAL: u64 = 5;
/// The longest a device code is waited on, whatever the server says.
const MAX_DEVICE_LIFETIME: u64 = 30 * 60;

/// Where a profile's users sign in, and its tokens are revoked.
pub(crate) struct SignIn {
    pub authorization: Option<Url>,
    pub device_authorization: Option<Url>,
    pub revocation: Option<Url>,
    /// The client assertion `aud` for requests other than token requests
    /// (the first the profile would try), for the JWT client auth methods.
    aud: Option<Aud>,
}

/// RFC 8628 §3.2: what the user is to do, and the code the agent polls with.
pub(crate) struct DeviceAuthorization {
    pub device_code: Secret,
    pub user_code: String,
    pub verification_uri: String,
    pub verification_uri_complete: Option<String>,
    pub expires_in: u64,
    pub interval: u64,
}

/// A PKCE verifier and its S256 challenge (RFC 7636 §4.1, §4.2).
pub(crate) struct Pkce {
    pub verifier: Secret,
    pub challenge: String,
}

impl Pkce {
    pub(crate) fn new() -> Result<Pkce, OAuthError> {
        use base64::Engine;
        // 64 hex characters: within the 43-128 unreserved characters §4.1
        // asks for, 256 bits of entropy.
        let verifier = format!(
            "{}{}",
            super::error::random_id()?,
            super::error::random_id()?
        );
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref());
        Ok(Pkce {
            verifier: Secret::new(verifier.into_bytes()),
            challenge,
        })
    }
}

/// The authorization request URL (RFC 6749 §4.1.1, RFC 7636 §4.3) for
/// `profile`. OpenID Connect issues a refresh token for `offline_access`
/// only when the user was asked (Core §11), so that scope brings
/// `prompt=consent`.
pub(crate) fn authorization_url(
    endpoint: &Url,
    profile: &Profile,
    redirect_uri: &str,
    state: &str,
    challenge: &str,
) -> Url {
    let mut url = endpoint.clone();
    {
        let mut query = url.query_pairs_mut();
        query
            .append_pair("response_type", "code")
            .append_pair("client_id", &profile.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("state", state)
            .append_pair("code_challenge", challenge)
            .append_pair("code_challenge_method", "S256");
        if !profile.scopes.is_empty() {
            query.append_pair("scope", &profile.scopes.join(" "));
        }
        if profile.scopes.iter().any(|s| s == "offline_access") {
            query.append_pair("prompt", "consent");
        }
        for resource in &profile.resources {
            query.append_pair("resource", resource);
        }
    }
    url
}

/// Text a server sent that is shown to the user: printable, at most `max`
/// characters.
fn shown(field: &'static str, text: String, max: usize) -> Result<String, OAuthError> {
    if text.is_empty() || text.chars().count() > max || text.chars().any(char::is_control) {
        return Err(OAuthError::BadResponse {
            host: String::new(),
            status: 200,
            what: "a device authorization response with an unusable field",
            excerpt: format!("{field} is empty, too long or has control characters"),
            retry_after: None,
        });
    }
    Ok(text)
}

impl OAuthClient {
    /// Where `profile`'s users sign in: its own URLs, else the issuer's
    /// metadata.
    pub(crate) async fn sign_in(
        &self,
        name: &str,
        profile: &Profile,
        secret: Option<&Secret>,
    ) -> Result<SignIn, OAuthError> {
        let http = self.http_client(name, profile, secret)?;
        let (token_endpoint, issuer, meta) = self.token_endpoint(&http, profile).await?;
        let own =
            |field: &'static str, value: &Option<String>| -> Result<Option<Url>, OAuthError> {
                match value {
                    Some(v) => check_endpoint(field, v)
                        .map(Some)
                        .map_err(|e| SetupError::TokenUrl(e.to_string()).into()),
                    None => Ok(None),
                }
            };
        let meta = meta.as_ref();
        let aud = auth::audiences(
            profile,
            &token_endpoint,
            issuer.as_deref(),
            self.auds.get(profile),
        )?
        .into_iter()
        .next();
        let (authorization, device_authorization) = match &profile.grant {
            Grant::AuthorizationCode {
                authorization_url, ..
            } => (authorization_url, &None),
            Grant::DeviceCode {
                device_authorization_url,
            } => (&None, device_authorization_url),
            _ => (&None, &None),
        };
        Ok(SignIn {
            authorization: own("authorization_url", authorization)?
                .or_else(|| meta.and_then(|m| m.authorization_endpoint.clone())),
            device_authorization: own("device_authorization_url", device_authorization)?
                .or_else(|| meta.and_then(|m| m.device_authorization_endpoint.clone())),
            revocation: own("revocation_url", &profile.revocation_url)?
                .or_else(|| meta.and_then(|m| m.revocation_endpoint.clone())),
            aud,
        })
    }

    /// POSTs `form` to `url` with the client authentication of profile
    /// `name` (with its secret); the status and body of the answer.
    async fn post_as_client(
        &self,
        (name, profile, secret): (&str, &Profile, Option<&Secret>),
        sign_in: &SignIn,
        url: &Url,
        step: Step,
        form: Form<'_>,
    ) -> Result<(u16, Vec<u8>), OAuthError> {
        let http = self.http_client(name, profile, secret)?;
        let mut client_auth = auth::choose(profile, secret, sign_in.aud.as_ref())?;
        let post = self.posts.get(profile);
        if post {
            client_auth.post_instead();
        }
        let send = |client_auth: &auth::ClientAuth<'_>| {
            let mut form = form.clone();
            let builder = auth::apply(
                client_auth,
                &profile.client_id,
                &mut form,
                http.post(url.clone()),
            );
            async move {
                let response = post_form(builder?, form.encode()?, url, step).await?;
                read_body(url, step, response).await
            }
        };
        let (status, body) = send(&client_auth).await?;
        let refused = !(200..300).contains(&status)
            && auth::refuses_client_auth(&parse_error(url, status, None, &body));
        if post || !refused || !client_auth.misreadable(&profile.client_id) {
            return Ok((status, body));
        }
        tracing::info!(%status, "Basic credentials that form-encoding changed were refused; trying client_secret_post");
        client_auth.post_instead();
        let answer = send(&client_auth).await?;
        if (200..300).contains(&answer.0) {
            self.posts.worked(profile);
        }
        Ok(answer)
    }

    /// RFC 8628 §3.1: asks for a device code and the user code to show.
    pub(crate) async fn device_authorization(
        &self,
        name: &str,
        profile: &Profile,
        secret: Option<&Secret>,
        sign_in: &SignIn,
    ) -> Result<DeviceAuthorization, OAuthError> {
        let url = sign_in.device_authorization.as_ref().ok_or_else(|| {
            OAuthError::Setup(SetupError::TokenUrl(
                "the server's metadata names no device_authorization_endpoint: give --device-authorization-url".into(),
            ))
        })?;
        let mut form = Form::default();
        if !profile.scopes.is_empty() {
            form.push("scope", profile.scopes.join(" "));
        }
        let (status, body) = self
            .post_as_client((name, profile, secret), sign_in, url, Step::SignIn, form)
            .await?;
        if status != 200 {
            return Err(parse_error(url, status, None, &body));
        }
        #[derive(Deserialize)]
        struct Answer {
            device_code: String,
            user_code: String,
            verification_uri: Option<String>,
            /// Google's name for it.
            verification_url: Option<String>,
            verification_uri_complete: Option<String>,
            expires_in: Option<serde_json::Value>,
            interval: Option<serde_json::Value>,
        }
        let bad = |excerpt: &str| OAuthError::BadResponse {
            host: super::http::host_of(url),
            status,
            what: "a device authorization response jwtagent cannot use",
            excerpt: excerpt.to_string(),
            retry_after: None,
        };
        let a: Answer = serde_json::from_slice(&body).map_err(|_| {
            bad("not JSON with device_code, user_code and verification_uri (body not shown)")
        })?;
        let uri = a
            .verification_uri
            .or(a.verification_url)
            .ok_or_else(|| bad("no verification_uri"))?;
        let is_web = |u: &str| Url::parse(u).is_ok_and(|u| matches!(u.scheme(), "https" | "http"));
        if !is_web(&uri) {
            return Err(bad("verification_uri is not an http(s) URL"));
        }
        let complete = match a.verification_uri_complete {
            Some(c) if is_web(&c) => Some(shown("verification_uri_complete", c, 2048)?),
            _ => None,
        };
        let secs =
            |v: Option<serde_json::Value>| v.and_then(|v| v.as_f64()).filter(|s| s.is_finite());
        Ok(DeviceAuthorization {
            device_code: Secret::new(a.device_code.into_bytes()),
            user_code: shown("user_code", a.user_code, 64)?,
            verification_uri: shown("verification_uri", uri, 2048)?,
            verification_uri_complete: complete,
            expires_in: secs(a.expires_in).map_or(MAX_DEVICE_LIFETIME, |s| {
                s.max(1.0).min(MAX_DEVICE_LIFETIME as f64) as u64
            }),
            interval: secs(a.interval).map_or(DEFAULT_INTERVAL, |s| s.clamp(1.0, 60.0) as u64),
        })
    }

    /// RFC 7009: revokes `refresh_token`. `Ok(false)` when the server has no
    /// revocation endpoint.
    pub(crate) async fn revoke(
        &self,
        name: &str,
        profile: &Profile,
        secret: Option<&Secret>,
        refresh_token: &Secret,
    ) -> Result<bool, OAuthError> {
        let sign_in = self.sign_in(name, profile, secret).await?;
        let Some(url) = sign_in.revocation.clone() else {
            return Ok(false);
        };
        let mut form = Form::default();
        form.push_secret("token", refresh_token.clone());
        form.push("token_type_hint", "refresh_token");
        let (status, body) = self
            .post_as_client(
                (name, profile, secret),
                &sign_in,
                &url,
                Step::Revocation,
                form,
            )
            .await?;
        if status != 200 {
            return Err(parse_error(&url, status, None, &body));
        }
        Ok(true)
    }
}

/// How long to wait before polling again after `slow_down` (RFC 8628 §3.5:
/// five seconds more, for this and every later request).
pub(crate) fn slowed(interval: Duration) -> Duration {
    interval
        .saturating_add(Duration::from_secs(5))
        .min(Duration::from_secs(60))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jwtagent::config::AuthMethod;

    #[test]
    fn pkce_challenge_is_the_s256_of_the_verifier() {
        use base64::Engine;
        let p = Pkce::new().unwrap();
        let v = p.verifier.expose();
        assert_eq!(v.len(), 64);
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, v);
        assert_eq!(
            p.challenge,
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref())
        );
        assert_ne!(Pkce::new().unwrap().verifier, p.verifier);
    }

    #[test]
    fn the_authorization_url_carries_state_pkce_and_asks_consent_for_offline_access() {
        let mut p = Profile::new("https://idp.example/token", "cli", AuthMethod::None);
        p.scopes = vec!["openid".into(), "offline_access".into()];
        let url = authorization_url(
            &Url::parse("https://idp.example/auth?tenant=a").unwrap(),
            &p,
            "http://127.0.0.1:5000/callback",
            "st",
            "ch",
        );
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        let get = |k: &str| {
            pairs
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("tenant"), Some("a"));
        assert_eq!(get("response_type"), Some("code"));
        assert_eq!(get("state"), Some("st"));
        assert_eq!(get("code_challenge"), Some("ch"));
        assert_eq!(get("code_challenge_method"), Some("S256"));
        assert_eq!(get("scope"), Some("openid offline_access"));
        assert_eq!(get("prompt"), Some("consent"));
        assert_eq!(get("redirect_uri"), Some("http://127.0.0.1:5000/callback"));
    }

    #[test]
    fn slow_down_adds_five_seconds_up_to_a_minute() {
        assert_eq!(slowed(Duration::from_secs(5)), Duration::from_secs(10));
        assert_eq!(slowed(Duration::from_secs(58)), Duration::from_secs(60));
    }
}
