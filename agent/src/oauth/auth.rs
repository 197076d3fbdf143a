//! Client authentication (RFC 6749 §2.3, RFC 7523 §2.2): which method a
//! profile uses, the assertion's audience, and what each method adds to a
//! token request.

use super::error::{OAuthError, SetupError};
use super::form::Form;
use crate::keys::{jwt_alg, parse_private_key};
use jwtagent::config::{Alg, Assertion, AssertionAud, AuthMethod, Grant, Profile};
use jwtagent::secret::Secret;
use serde::Serialize;
use url::Url;

/// Lifetime of a client assertion (RFC 7523 wants it short).
pub(crate) const ASSERTION_LIFETIME: u64 = 60;

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How the client authenticates.
pub(crate) enum ClientAuth<'a> {
    None,
    /// Not even a client_id (Google's service account form).
    Anonymous,
    /// tls_client_auth, self_signed_tls_client_auth: the certificate the
    /// connection presents; the request names the client only.
    Tls,
    Basic(&'a Secret),
    Post(&'a Secret),
    /// client_secret_jwt (HMAC with the secret) or private_key_jwt (the PEM key).
    Jwt {
        secret: &'a Secret,
        alg: Alg,
        kid: Option<&'a str>,
        /// The client certificate's SHA-256 thumbprint, when the profile has
        /// one (Entra ID finds a certificate credential by it).
        x5t_s256: Option<String>,
        aud: String,
    },
}

/// Which of the two usual values a client assertion's `aud` was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AudKind {
    Issuer,
    TokenEndpoint,
}

impl AudKind {
    /// As `--assertion-aud` spells it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            AudKind::Issuer => "issuer",
            AudKind::TokenEndpoint => "token-endpoint",
        }
    }
}

/// One `aud` to try: its value, and which kind it is when the agent chose it
/// (`--assertion-aud auto`), so that what worked can be remembered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Aud {
    pub value: String,
    pub auto: Option<AudKind>,
}

/// The `aud` values to try for `profile`'s client assertions, in order.
/// Empty when it sends no assertion. An explicit `assertion_aud` is the one
/// value; `auto` (the default) is the issuer when known
/// (draft-ietf-oauth-rfc7523bis), then the token endpoint for servers that
/// want that, in the order `worked` says last succeeded.
pub(crate) fn audiences(
    profile: &Profile,
    token_endpoint: &Url,
    issuer: Option<&str>,
    worked: Option<AudKind>,
) -> Result<Vec<Aud>, SetupError> {
    if !profile.signs_jwts() {
        return Ok(Vec::new());
    }
    let fixed = |value: &str| {
        vec![Aud {
            value: value.to_string(),
            auto: None,
        }]
    };
    Ok(match (&profile.assertion_aud, issuer) {
        (Some(AssertionAud::Url(url)), _) => fixed(url),
        (Some(AssertionAud::TokenEndpoint), _) => fixed(token_endpoint.as_str()),
        (Some(AssertionAud::Issuer), Some(issuer)) => fixed(issuer),
        (Some(AssertionAud::Issuer), None) => return Err(SetupError::AudWithoutIssuer),
        (None, None) => vec![Aud {
            value: token_endpoint.to_string(),
            auto: Some(AudKind::TokenEndpoint),
        }],
        (None, Some(issuer)) => {
            let mut both = vec![
                Aud {
                    value: issuer.to_string(),
                    auto: Some(AudKind::Issuer),
                },
                Aud {
                    value: token_endpoint.to_string(),
                    auto: Some(AudKind::TokenEndpoint),
                },
            ];
            if worked == Some(AudKind::TokenEndpoint) {
                both.reverse();
            }
            both
        }
    })
}

/// Which `aud` worked last for each client of each server, with
/// `--assertion-aud auto`.
#[derive(Default)]
pub(crate) struct AudMemory(std::sync::Mutex<std::collections::HashMap<(String, String), AudKind>>);

impl AudMemory {
    fn key(profile: &Profile) -> (String, String) {
        let server = profile.token_url.as_ref().or(profile.issuer.as_ref());
        (
            server.cloned().unwrap_or_default(),
            profile.client_id.clone(),
        )
    }

    fn map(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<(String, String), AudKind>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What worked last for `profile`'s client, if the agent chose it.
    pub(crate) fn get(&self, profile: &Profile) -> Option<AudKind> {
        let map = self.map();
        // `status` asks for every profile: no key is made when none is known.
        if map.is_empty() {
            return None;
        }
        map.get(&Self::key(profile)).copied()
    }

    pub(crate) fn worked(&self, profile: &Profile, aud: Option<&Aud>) {
        if let Some(kind) = aud.and_then(|a| a.auto) {
            self.map().insert(Self::key(profile), kind);
        }
    }
}

/// The clients whose server refused Basic credentials that form-encoding
/// changed (it does not decode them, as RFC 6749 §2.3.1 says it must) and
/// took them as client_secret_post: they go on with client_secret_post.
#[derive(Default)]
pub(crate) struct PostMemory(std::sync::Mutex<std::collections::HashSet<(String, String)>>);

impl PostMemory {
    fn set(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<(String, String)>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `profile`'s client sends its secret in the form instead.
    pub(crate) fn get(&self, profile: &Profile) -> bool {
        self.set().contains(&AudMemory::key(profile))
    }

    pub(crate) fn worked(&self, profile: &Profile) {
        self.set().insert(AudMemory::key(profile));
    }
}

impl ClientAuth<'_> {
    /// Basic credentials that a server which does not form-decode them
    /// reads wrong: form-encoding changes the id or the secret.
    pub(crate) fn misreadable(&self, client_id: &str) -> bool {
        match self {
            ClientAuth::Basic(secret) => {
                form_encode(secret.expose()).as_bytes() != secret.expose()
                    || form_encode(client_id.as_bytes()) != client_id
            }
            _ => false,
        }
    }

    /// The same secret sent in the form (client_secret_post) instead of
    /// as Basic credentials.
    pub(crate) fn post_instead(&mut self) {
        if let ClientAuth::Basic(secret) = *self {
            *self = ClientAuth::Post(secret);
        }
    }
}

/// The client authentication `profile` asks for, with its `secret` (none for
/// `auth = none`) and, for an assertion, its `aud`.
pub(crate) fn choose<'a>(
    profile: &'a Profile,
    secret: Option<&'a Secret>,
    aud: Option<&Aud>,
) -> Result<ClientAuth<'a>, OAuthError> {
    Ok(match (profile.auth, secret) {
        (AuthMethod::None, _) if profile.grant.is_google() => ClientAuth::Anonymous,
        (AuthMethod::None, _) => ClientAuth::None,
        (_, None) => {
            return Err(SetupError::SecretMissing.into());
        }
        (AuthMethod::TlsClientAuth | AuthMethod::SelfSignedTlsClientAuth, Some(_)) => {
            ClientAuth::Tls
        }
        (AuthMethod::ClientSecretBasic, Some(s)) => ClientAuth::Basic(s),
        (AuthMethod::ClientSecretPost, Some(s)) => ClientAuth::Post(s),
        (AuthMethod::ClientSecretJwt | AuthMethod::PrivateKeyJwt, Some(s)) => {
            let alg = profile.alg.ok_or(SetupError::NoAlg)?;
            let x5t_s256 = match &profile.certificate {
                Some(cert) => {
                    Some(super::tls::x5t_s256(cert).map_err(|e| SetupError::Https(e.into()))?)
                }
                None => None,
            };
            ClientAuth::Jwt {
                secret: s,
                alg,
                kid: profile.kid.as_deref(),
                x5t_s256,
                aud: aud.ok_or(SetupError::NoEndpoint)?.value.clone(),
            }
        }
    })
}

/// Whether `error` is a server refusing the client's authentication: an
/// RFC 6749 `invalid_client`, or a bare 401 or 403.
pub(crate) fn refuses_client_auth(error: &OAuthError) -> bool {
    match error {
        OAuthError::Idp { error, .. } => error == "invalid_client",
        OAuthError::BadResponse { status, .. } => matches!(status, 401 | 403),
        _ => false,
    }
}

/// Adds `auth` to a request: a form field, an Authorization header, or a
/// freshly signed assertion.
pub(crate) fn apply<'a>(
    auth: &ClientAuth<'_>,
    client_id: &'a str,
    form: &mut Form<'a>,
    builder: reqwest::RequestBuilder,
) -> Result<reqwest::RequestBuilder, OAuthError> {
    Ok(match auth {
        ClientAuth::None | ClientAuth::Tls => {
            form.push("client_id", client_id);
            builder
        }
        ClientAuth::Anonymous => builder,
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
            x5t_s256,
            aud,
        } => {
            form.push("client_id", client_id);
            form.push("client_assertion_type", ASSERTION_TYPE);
            let header = AssertionHeader {
                kid: *kid,
                x5t_s256: x5t_s256.as_deref(),
            };
            let assertion = client_assertion(client_id, secret, *alg, header, aud)?;
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
    /// Google's form: the scopes asked for, in the assertion.
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
}

/// What a client assertion's header names besides `alg` and `typ`.
#[derive(Debug, Clone, Copy, Default)]
pub struct AssertionHeader<'a> {
    pub kid: Option<&'a str>,
    pub x5t_s256: Option<&'a str>,
}

/// Signs a client assertion (RFC 7523 §3): `iss` = `sub` = client id, a fresh
/// `jti` every call, `exp` 60 s after `iat`.
pub fn client_assertion(
    client_id: &str,
    secret: &Secret,
    alg: Alg,
    names: AssertionHeader<'_>,
    aud: &str,
) -> Result<Secret, OAuthError> {
    let iat = jwtagent::time::unix_now();
    let claims = AssertionClaims {
        iss: client_id,
        sub: client_id,
        aud,
        jti: super::error::random_id()?,
        iat,
        exp: iat + ASSERTION_LIFETIME,
        scope: None,
    };
    sign(secret, alg, names, &claims)
}

/// The authorization grant assertion of a jwt-bearer profile (RFC 7523
/// §2.1, §3), signed with its key: `iss` the client id, `sub` the profile's
/// subject (else the client id), a fresh `jti`; in Google's form the scopes
/// go in a `scope` claim.
pub(crate) fn grant_assertion(
    profile: &Profile,
    key: &Secret,
    aud: &str,
    scopes: &[String],
) -> Result<Secret, OAuthError> {
    let alg = profile.alg.ok_or(SetupError::NoAlg)?;
    let (subject, google) = match &profile.grant {
        Grant::JwtBearer(Assertion::Signed { subject, google }) => (subject.as_deref(), *google),
        _ => (None, false),
    };
    let iat = jwtagent::time::unix_now();
    let claims = AssertionClaims {
        iss: &profile.client_id,
        sub: subject.unwrap_or(&profile.client_id),
        aud,
        jti: super::error::random_id()?,
        iat,
        exp: iat + ASSERTION_LIFETIME,
        scope: (google && !scopes.is_empty()).then(|| scopes.join(" ")),
    };
    let names = AssertionHeader {
        kid: profile.kid.as_deref(),
        x5t_s256: None,
    };
    sign(key, alg, names, &claims)
}

/// A JWT over `claims`, signed with `secret` (an HMAC secret or a PEM
/// private key) and `alg`, of type `JWT`.
pub(crate) fn sign(
    secret: &Secret,
    alg: Alg,
    names: AssertionHeader<'_>,
    claims: &impl Serialize,
) -> Result<Secret, OAuthError> {
    let key = if alg.is_hmac() {
        jsonwebtoken::EncodingKey::from_secret(secret.expose())
    } else {
        parse_private_key(secret).map_err(SetupError::Key)?.1
    };
    let mut header = jsonwebtoken::Header::new(jwt_alg(alg));
    header.typ = Some("JWT".into());
    header.kid = names.kid.map(str::to_string);
    header.x5t_s256 = names.x5t_s256.map(str::to_string);
    jsonwebtoken::encode(&header, claims, &key)
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

    /// Basic credentials that form-encoding changes (in the secret or the
    /// client id) are the ones a server that does not decode them misreads;
    /// they can go in the form instead, and nothing else changes so.
    #[test]
    fn basic_credentials_form_encoding_changes_are_misreadable_and_go_to_the_form() {
        let plain = Secret::new(b"s3cret-value_1.2".to_vec());
        let awkward = Secret::new(b"a+b/c=".to_vec());
        assert!(!ClientAuth::Basic(&plain).misreadable("client-1"));
        assert!(ClientAuth::Basic(&awkward).misreadable("client-1"));
        assert!(ClientAuth::Basic(&plain).misreadable("client:1"));
        assert!(!ClientAuth::Post(&awkward).misreadable("client:1"));
        let mut auth = ClientAuth::Basic(&awkward);
        auth.post_instead();
        assert!(matches!(auth, ClientAuth::Post(s) if s.expose() == b"a+b/c="));
        let mut auth = ClientAuth::None;
        auth.post_instead();
        assert!(matches!(auth, ClientAuth::None));
    }

    #[test]
    fn assertion_has_the_rfc7523_claims_and_a_fresh_jti() {
        let secret = Secret::new(vec![b'k'; 32]);
        let a = client_assertion(
            "client-1",
            &secret,
            Alg::HS256,
            AssertionHeader {
                kid: Some("kid-1"),
                x5t_s256: Some("thumb"),
            },
            "https://idp.example",
        )
        .unwrap();
        let b = client_assertion(
            "client-1",
            &secret,
            Alg::HS256,
            AssertionHeader {
                kid: Some("kid-1"),
                x5t_s256: Some("thumb"),
            },
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
        assert_eq!(da.header.x5t_s256.as_deref(), Some("thumb"));
        assert_eq!(da.claims["iss"], "client-1");
        assert_eq!(da.claims["sub"], "client-1");
        assert_eq!(
            da.claims["exp"].as_u64().unwrap() - da.claims["iat"].as_u64().unwrap(),
            60
        );
        assert_eq!(da.claims["jti"].as_str().unwrap().len(), 32);
        assert_ne!(da.claims["jti"], db.claims["jti"]);
    }

    /// A jwt-bearer grant's assertion: `sub` the subject to act as, and the
    /// scopes in a `scope` claim in Google's form only, and only when there
    /// are scopes.
    #[test]
    fn a_grant_assertion_carries_scopes_in_googles_form_only() {
        let key = Secret::new(vec![b'k'; 32]);
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.set_audience(&["https://idp.example/token"]);
        let claims = |google: bool, scopes: &[&str]| {
            let mut p = profile(AuthMethod::None, None);
            p.grant = Grant::JwtBearer(Assertion::Signed {
                subject: Some("user@example.com".into()),
                google,
            });
            let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
            let jwt = grant_assertion(&p, &key, "https://idp.example/token", &scopes).unwrap();
            jsonwebtoken::decode::<serde_json::Value>(
                std::str::from_utf8(jwt.expose()).unwrap(),
                &jsonwebtoken::DecodingKey::from_secret(&[b'k'; 32]),
                &validation,
            )
            .unwrap()
            .claims
        };
        let google = claims(true, &["a", "b"]);
        assert_eq!(google["scope"], "a b", "{google}");
        assert_eq!(google["sub"], "user@example.com");
        assert_eq!(google["iss"], "c");
        assert_eq!(
            google["exp"].as_u64().unwrap() - google["iat"].as_u64().unwrap(),
            60
        );
        for (google, scopes) in [(true, &[][..]), (false, &["a", "b"][..])] {
            let claims = claims(google, scopes);
            assert!(claims.get("scope").is_none(), "{claims}");
        }
    }

    fn profile(auth: AuthMethod, aud: Option<AssertionAud>) -> Profile {
        let mut p = Profile::new("https://idp.example/token", "c", auth);
        p.alg = Some(Alg::HS256);
        p.assertion_aud = aud;
        p
    }

    /// Which `aud` worked is remembered for one client of one server (`show`
    /// says it by `--assertion-aud`'s name), and only when the agent chose.
    #[test]
    fn what_aud_worked_is_remembered_per_client_of_each_server() {
        let memory = AudMemory::default();
        let a = profile(AuthMethod::ClientSecretJwt, None);
        let mut other_client = a.clone();
        other_client.client_id = "other".into();
        let mut other_server = a.clone();
        other_server.token_url = Some("https://other.example/token".into());
        assert_eq!(memory.get(&a), None);
        let chose = |auto| Aud {
            value: "https://idp.example/token".into(),
            auto,
        };
        memory.worked(&a, Some(&chose(Some(AudKind::TokenEndpoint))));
        assert_eq!(memory.get(&a), Some(AudKind::TokenEndpoint));
        assert_eq!(memory.get(&other_client), None);
        assert_eq!(memory.get(&other_server), None);
        memory.worked(&other_client, Some(&chose(None)));
        assert_eq!(
            memory.get(&other_client),
            None,
            "a fixed aud is not a choice"
        );
        assert_eq!(AudKind::Issuer.name(), "issuer");
        assert_eq!(AudKind::TokenEndpoint.name(), "token-endpoint");
    }

    /// A client whose server took its secret in the form goes on so, and
    /// only that client.
    #[test]
    fn a_client_that_fell_back_to_the_form_is_remembered_alone() {
        let memory = PostMemory::default();
        let a = profile(AuthMethod::ClientSecretBasic, None);
        let mut other_client = a.clone();
        other_client.client_id = "other".into();
        assert!(!memory.get(&a));
        memory.worked(&a);
        assert!(memory.get(&a) && !memory.get(&other_client));
    }

    fn values(auds: Vec<Aud>) -> Vec<(String, Option<AudKind>)> {
        auds.into_iter().map(|a| (a.value, a.auto)).collect()
    }

    #[test]
    fn assertion_aud_auto_tries_the_issuer_then_the_token_endpoint_unless_told() {
        let endpoint = Url::parse("https://idp.example/oauth/token").unwrap();
        let issuer = Some("https://idp.example");
        let te = || {
            (
                "https://idp.example/oauth/token".to_string(),
                Some(AudKind::TokenEndpoint),
            )
        };
        let is = || ("https://idp.example".to_string(), Some(AudKind::Issuer));
        let auds =
            |p: &Profile, issuer, worked| values(audiences(p, &endpoint, issuer, worked).unwrap());
        let p = profile(AuthMethod::ClientSecretJwt, None);
        assert_eq!(auds(&p, issuer, None), [is(), te()]);
        assert_eq!(auds(&p, issuer, Some(AudKind::Issuer)), [is(), te()]);
        // What worked last goes first.
        assert_eq!(auds(&p, issuer, Some(AudKind::TokenEndpoint)), [te(), is()]);
        assert_eq!(auds(&p, None, None), [te()]);
        // An explicit value is the only one, whatever worked before.
        let p = profile(
            AuthMethod::ClientSecretJwt,
            Some(AssertionAud::TokenEndpoint),
        );
        assert_eq!(
            auds(&p, issuer, Some(AudKind::Issuer)),
            [("https://idp.example/oauth/token".to_string(), None)]
        );
        let p = profile(
            AuthMethod::ClientSecretJwt,
            Some(AssertionAud::Url("https://aud.example".into())),
        );
        assert_eq!(
            auds(&p, issuer, None),
            [("https://aud.example".to_string(), None)]
        );
        let p = profile(AuthMethod::ClientSecretJwt, Some(AssertionAud::Issuer));
        assert_eq!(
            auds(&p, issuer, Some(AudKind::TokenEndpoint)),
            [("https://idp.example".to_string(), None)]
        );
        assert!(audiences(&p, &endpoint, None, None).is_err());
        // No assertion, no aud.
        let p = profile(AuthMethod::ClientSecretPost, None);
        assert!(auds(&p, issuer, None).is_empty());
    }

    #[test]
    fn invalid_client_and_bare_401_or_403_refuse_client_authentication() {
        let idp = |error: &str| OAuthError::Idp {
            status: 400,
            error: error.into(),
            description: None,
            retry_after: None,
            dpop_nonce: None,
        };
        let bare = |status| OAuthError::BadResponse {
            host: "idp".into(),
            status,
            what: "a non-JSON error",
            excerpt: String::new(),
            retry_after: None,
        };
        assert!(refuses_client_auth(&idp("invalid_client")));
        assert!(refuses_client_auth(&bare(401)));
        assert!(refuses_client_auth(&bare(403)));
        assert!(!refuses_client_auth(&idp("invalid_scope")));
        assert!(!refuses_client_auth(&bare(500)));
    }

    #[test]
    fn every_method_but_none_needs_its_secret() {
        let none = profile(AuthMethod::None, None);
        assert!(matches!(choose(&none, None, None), Ok(ClientAuth::None)));
        let basic = profile(AuthMethod::ClientSecretBasic, None);
        assert!(choose(&basic, None, None).is_err());
    }
}
