//! Client authentication (RFC 6749 §2.3, RFC 7523 §2.2): which method a
//! profile uses, the assertion's audience, and what each method adds to a
//! token request.

use super::token::Form;
use super::{OAuthError, SetupError};
use crate::keys::{jwt_alg, parse_private_key};
use jwtagent::config::{Alg, AssertionAud, AuthMethod, Profile};
use jwtagent::secret::Secret;
use serde::Serialize;
use url::Url;

/// Lifetime of a client assertion (RFC 7523 wants it short).
pub const ASSERTION_LIFETIME: u64 = 60;

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How the client authenticates.
pub enum ClientAuth<'a> {
    None,
    Basic(&'a Secret),
    Post(&'a Secret),
    /// client_secret_jwt (HMAC with the secret) or private_key_jwt (the PEM key).
    Jwt {
        secret: &'a Secret,
        alg: Alg,
        kid: Option<&'a str>,
        aud: String,
    },
}

/// The client authentication `profile` asks for, with its `secret` (none for
/// `auth = none`). The assertion's `aud` is the profile's `assertion_aud`, else
/// the issuer when known (draft-ietf-oauth-rfc7523bis), else the token endpoint.
pub fn choose<'a>(
    profile: &'a Profile,
    secret: Option<&'a Secret>,
    token_endpoint: &Url,
    issuer: Option<&str>,
) -> Result<ClientAuth<'a>, OAuthError> {
    Ok(match (profile.auth, secret) {
        (AuthMethod::None, _) => ClientAuth::None,
        (_, None) => {
            return Err(SetupError::SecretMissing.into());
        }
        (AuthMethod::ClientSecretBasic, Some(s)) => ClientAuth::Basic(s),
        (AuthMethod::ClientSecretPost, Some(s)) => ClientAuth::Post(s),
        (AuthMethod::ClientSecretJwt | AuthMethod::PrivateKeyJwt, Some(s)) => {
            let aud = match (&profile.assertion_aud, issuer) {
                (Some(AssertionAud::Url(url)), _) => url.clone(),
                (Some(AssertionAud::TokenEndpoint), _) | (None, None) => token_endpoint.to_string(),
                (Some(AssertionAud::Issuer) | None, Some(issuer)) => issuer.to_string(),
                (Some(AssertionAud::Issuer), None) => {
                    return Err(SetupError::AudWithoutIssuer.into());
                }
            };
            let alg = profile.alg.ok_or(SetupError::NoAlg)?;
            ClientAuth::Jwt {
                secret: s,
                alg,
                kid: profile.kid.as_deref(),
                aud,
            }
        }
    })
}

/// Adds `auth` to a request: a form field, an Authorization header, or a
/// freshly signed assertion.
pub fn apply<'a>(
    auth: &ClientAuth<'_>,
    client_id: &'a str,
    form: &mut Form<'a>,
    builder: reqwest::RequestBuilder,
) -> Result<reqwest::RequestBuilder, OAuthError> {
    Ok(match auth {
        ClientAuth::None => {
            form.push("client_id", client_id);
            builder
        }
        ClientAuth::Basic(secret) => {
            let user = form_encode(client_id.as_bytes());
            let pass = zeroize::Zeroizing::new(form_encode(secret.expose()));
            builder.basic_auth(user, Some(pass.as_str()))
        }
        ClientAuth::Post(secret) => {
            form.push("client_id", client_id);
            form.push_secret("client_secret", (*secret).clone());
            builder
        }
        ClientAuth::Jwt {
            secret,
            alg,
            kid,
            aud,
        } => {
            form.push("client_id", client_id);
            form.push("client_assertion_type", ASSERTION_TYPE);
            let assertion = client_assertion(client_id, secret, *alg, *kid, aud)?;
            form.push_secret("client_assertion", assertion);
            builder
        }
    })
}

/// RFC 6749 §2.3.1: id and secret are form-urlencoded before Basic encoding.
pub(super) fn form_encode(bytes: &[u8]) -> String {
    url::form_urlencoded::byte_serialize(bytes).collect()
}

#[derive(Serialize)]
struct AssertionClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    jti: String,
    iat: u64,
    exp: u64,
}

/// Signs a client assertion (RFC 7523 §3): `iss` = `sub` = client id, a fresh
/// `jti` every call, `exp` 60 s after `iat`.
pub fn client_assertion(
    client_id: &str,
    secret: &Secret,
    alg: Alg,
    kid: Option<&str>,
    aud: &str,
) -> Result<Secret, OAuthError> {
    let key = if alg.is_hmac() {
        jsonwebtoken::EncodingKey::from_secret(secret.expose())
    } else {
        parse_private_key(secret).map_err(SetupError::Key)?.1
    };
    let mut header = jsonwebtoken::Header::new(jwt_alg(alg));
    header.typ = Some("JWT".into());
    header.kid = kid.map(str::to_string);
    let iat = jwtagent::time::unix_now();
    let claims = AssertionClaims {
        iss: client_id,
        sub: client_id,
        aud,
        jti: super::random_id()?,
        iat,
        exp: iat + ASSERTION_LIFETIME,
    };
    jsonwebtoken::encode(&header, &claims, &key)
        .map(|jwt| Secret::new(jwt.into_bytes()))
        .map_err(|e| {
            SetupError::Sign {
                alg,
                detail: e.to_string(),
            }
            .into()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_encoded_first() {
        assert_eq!(form_encode(b"a b:c/d%"), "a+b%3Ac%2Fd%25");
    }

    #[test]
    fn assertion_has_the_rfc7523_claims_and_a_fresh_jti() {
        let secret = Secret::new(vec![b'k'; 32]);
        let a = client_assertion(
            "client-1",
            &secret,
            Alg::HS256,
            Some("kid-1"),
            "https://idp.example",
        )
        .unwrap();
        let b = client_assertion(
            "client-1",
            &secret,
            Alg::HS256,
            Some("kid-1"),
            "https://idp.example",
        )
        .unwrap();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.set_audience(&["https://idp.example"]);
        let key = jsonwebtoken::DecodingKey::from_secret(&[b'k'; 32]);
        let decode = |t: &Secret| {
            jsonwebtoken::decode::<serde_json::Value>(
                std::str::from_utf8(t.expose()).unwrap(),
                &key,
                &validation,
            )
            .unwrap()
        };
        let (da, db) = (decode(&a), decode(&b));
        assert_eq!(da.header.kid.as_deref(), Some("kid-1"));
        assert_eq!(da.claims["iss"], "client-1");
        assert_eq!(da.claims["sub"], "client-1");
        assert_eq!(
            da.claims["exp"].as_u64().unwrap() - da.claims["iat"].as_u64().unwrap(),
            60
        );
        assert_eq!(da.claims["jti"].as_str().unwrap().len(), 32);
        assert_ne!(da.claims["jti"], db.claims["jti"]);
    }

    fn profile(auth: AuthMethod, aud: Option<AssertionAud>) -> Profile {
        let mut p = Profile::new("https://idp.example/token", "c", auth);
        p.alg = Some(Alg::HS256);
        p.assertion_aud = aud;
        p
    }

    fn aud_of(auth: ClientAuth<'_>) -> String {
        match auth {
            ClientAuth::Jwt { aud, .. } => aud,
            _ => panic!("not an assertion"),
        }
    }

    #[test]
    fn assertion_aud_is_the_issuer_when_known_else_the_token_endpoint_unless_told() {
        let secret = Secret::new(vec![b'k'; 32]);
        let endpoint = Url::parse("https://idp.example/oauth/token").unwrap();
        let issuer = Some("https://idp.example");
        let p = profile(AuthMethod::ClientSecretJwt, None);
        let choose_aud =
            |p: &Profile, issuer| aud_of(choose(p, Some(&secret), &endpoint, issuer).unwrap());
        assert_eq!(choose_aud(&p, issuer), "https://idp.example");
        assert_eq!(choose_aud(&p, None), "https://idp.example/oauth/token");
        let p = profile(
            AuthMethod::ClientSecretJwt,
            Some(AssertionAud::TokenEndpoint),
        );
        assert_eq!(choose_aud(&p, issuer), "https://idp.example/oauth/token");
        let p = profile(
            AuthMethod::ClientSecretJwt,
            Some(AssertionAud::Url("https://aud.example".into())),
        );
        assert_eq!(choose_aud(&p, issuer), "https://aud.example");
        let p = profile(AuthMethod::ClientSecretJwt, Some(AssertionAud::Issuer));
        assert!(choose(&p, Some(&secret), &endpoint, None).is_err());
    }

    #[test]
    fn every_method_but_none_needs_its_secret() {
        let endpoint = Url::parse("https://idp.example/token").unwrap();
        let none = profile(AuthMethod::None, None);
        assert!(matches!(
            choose(&none, None, &endpoint, None),
            Ok(ClientAuth::None)
        ));
        let basic = profile(AuthMethod::ClientSecretBasic, None);
        assert!(choose(&basic, None, &endpoint, None).is_err());
    }
}
