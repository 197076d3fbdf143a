//! Dynamic client registration (RFC 7591) and its deletion (RFC 7592): the
//! client `add --register` asks the issuer for, used as the server
//! registered it (servers may make it confidential even when a public one
//! was asked for), and deleted at `remove`.

use super::OAuthClient;
use super::error::{OAuthError, Step};
use super::http::{excerpt, host_of, network_error, printable, read_body};
use super::token::parse_error;
use jwtagent::config::{AuthMethod, Grant, Profile, check_endpoint};
use jwtagent::secret::Secret;
use serde::{Deserialize, Serialize};
use url::Url;

const DEVICE_CODE: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// The longest client id accepted from a server: it is shown, stored in
/// the config and sent in every request.
const MAX_CLIENT_ID: usize = 1024;

/// What the server registered.
pub(crate) struct Registration {
    pub client_id: String,
    /// The authentication the server registered the client for.
    pub auth: AuthMethod,
    /// The client secret, when the server made it confidential.
    pub client_secret: Option<Secret>,
    /// RFC 7592: the registration's address and the token that manages it,
    /// when the server gave both.
    pub management: Option<(Url, Secret)>,
}

/// Why no client was registered.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RegisterError {
    #[error(
        "registering a client needs --issuer (the registration endpoint is found in the issuer's metadata)"
    )]
    NoIssuer,
    /// Asked with what a registered client cannot have.
    #[error("{0}")]
    Misuse(&'static str),
    #[error(
        "the issuer {0} does not offer dynamic client registration (its metadata names no registration_endpoint): have a client registered for jwtagent at the server (its console or administrator), then add the profile with --client-id ID instead of --register"
    )]
    NotOffered(String),
    #[error("the server refused to register the client (HTTP {status}): {error}{}{hint}", .description.as_ref().map(|d| format!(": {d}")).unwrap_or_default())]
    Refused {
        status: u16,
        error: String,
        description: Option<String>,
        hint: &'static str,
    },
    #[error(
        "the server registered client {client_id:?} for client authentication {method:?}, which jwtagent cannot use for a registered client (only none, client_secret_basic and client_secret_post); the registration {}",
        if *.deleted { "was deleted again" } else { "could not be deleted: delete it at the server" }
    )]
    Unusable {
        client_id: String,
        method: String,
        deleted: bool,
    },
    #[error(transparent)]
    OAuth(#[from] OAuthError),
}

/// The client metadata of the request (RFC 7591 §2): a native client of
/// the profile's user grant, authenticating with nothing.
#[derive(Serialize)]
struct Metadata {
    client_name: String,
    application_type: &'static str,
    token_endpoint_auth_method: &'static str,
    grant_types: Vec<&'static str>,
    response_types: Vec<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    redirect_uris: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
}

fn metadata(name: &str, profile: &Profile) -> Metadata {
    let (grant, response_types, redirect_uris) = match &profile.grant {
        Grant::AuthorizationCode { redirect_port, .. } => (
            "authorization_code",
            vec!["code"],
            // RFC 8252 §7.3: a loopback redirect, on any port unless the
            // profile fixes one.
            vec![match redirect_port {
                Some(port) => format!("http://127.0.0.1:{port}/callback"),
                None => "http://127.0.0.1/callback".to_string(),
            }],
        ),
        _ => (DEVICE_CODE, vec![], vec![]),
    };
    let host = rustix::system::uname();
    let host = host.nodename().to_string_lossy();
    Metadata {
        client_name: format!("jwtagent {name} on {}", printable(host.into_owned())),
        application_type: "native",
        token_endpoint_auth_method: "none",
        grant_types: vec![grant, "refresh_token"],
        response_types,
        redirect_uris,
        scope: (!profile.scopes.is_empty()).then(|| profile.scopes.join(" ")),
    }
}

impl OAuthClient {
    /// Registers a client for user profile `name` at its issuer, with the
    /// `initial` access token when the server asks for one.
    pub(crate) async fn register(
        &self,
        name: &str,
        profile: &Profile,
        initial: Option<&Secret>,
    ) -> Result<Registration, RegisterError> {
        let issuer = profile.issuer.as_ref().ok_or(RegisterError::NoIssuer)?;
        let http = self.http_client(name, profile, None)?;
        let meta = self
            .metadata
            .get(&http, issuer, profile.ca_file.as_ref())
            .await?;
        let url = meta
            .registration_endpoint
            .ok_or_else(|| RegisterError::NotOffered(issuer.clone()))?;
        let body = serde_json::to_vec(&metadata(name, profile)).unwrap_or_default();
        let mut builder = http
            .post(url.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "application/json")
            .body(body);
        if let Some(token) = initial {
            builder = builder.header(http::header::AUTHORIZATION, bearer(token)?);
        }
        let response = builder
            .send()
            .await
            .map_err(|e| network_error(&url, Step::Registration, &e))?;
        let (status, body) = read_body(&url, Step::Registration, response).await?;
        if !matches!(status, 200 | 201) {
            return Err(refused(&url, status, &body, initial.is_some()));
        }
        let registration = parse_answer(&url, status, &body)?;
        match registration {
            Answered::Usable(r) => Ok(r),
            Answered::Unusable {
                client_id,
                method,
                management,
            } => {
                let deleted = match &management {
                    Some((uri, token)) => self.unregister(name, profile, uri, token).await.is_ok(),
                    None => false,
                };
                Err(RegisterError::Unusable {
                    client_id,
                    method,
                    deleted,
                })
            }
        }
    }

    /// RFC 7592 §2.3: deletes the registration at `uri` with its `token`.
    pub(crate) async fn unregister(
        &self,
        name: &str,
        profile: &Profile,
        uri: &Url,
        token: &Secret,
    ) -> Result<(), OAuthError> {
        let http = self.http_client(name, profile, None)?;
        let response = http
            .delete(uri.clone())
            .header(http::header::AUTHORIZATION, bearer(token)?)
            .send()
            .await
            .map_err(|e| network_error(uri, Step::Registration, &e))?;
        let (status, body) = read_body(uri, Step::Registration, response).await?;
        match status {
            200 | 204 => Ok(()),
            _ => Err(parse_error(uri, status, None, &body)),
        }
    }
}

/// `Bearer TOKEN`, marked sensitive; a token a header cannot carry is refused.
fn bearer(token: &Secret) -> Result<http::HeaderValue, OAuthError> {
    let mut value = b"Bearer ".to_vec();
    value.extend_from_slice(token.expose());
    let value = zeroize::Zeroizing::new(value);
    match http::HeaderValue::from_bytes(&value) {
        Ok(mut header) if token.expose().iter().all(u8::is_ascii_graphic) => {
            header.set_sensitive(true);
            Ok(header)
        }
        _ => Err(super::SetupError::TokenUrl(
            "the registration's access token has characters a header cannot carry".into(),
        )
        .into()),
    }
}

/// A refusal, with what to do about the usual ones.
fn refused(url: &Url, status: u16, body: &[u8], had_token: bool) -> RegisterError {
    let error = parse_error(url, status, None, body);
    let (error, description) = match error {
        OAuthError::Idp {
            error, description, ..
        } => (error, description),
        other => return other.into(),
    };
    let hint = match (status, error.as_str(), had_token) {
        (401 | 403, _, false) | (_, "invalid_token", false) => {
            " (the server asks for an initial access token: give it with --registration-token-stdin)"
        }
        (401 | 403, _, true) | (_, "invalid_token", true) => {
            " (the initial access token given was refused: check it, and that it has not expired or been used)"
        }
        (_, "invalid_redirect_uri", _) => {
            " (the server does not take a loopback redirect URI: try --grant device-code)"
        }
        _ => "",
    };
    RegisterError::Refused {
        status,
        error,
        description,
        hint,
    }
}

enum Answered {
    Usable(Registration),
    Unusable {
        client_id: String,
        method: String,
        management: Option<(Url, Secret)>,
    },
}

/// RFC 7591 §3.2.1: the registered client's information. The client id is
/// shown and stored: printable and bounded; secrets go in headers and
/// forms: visible ASCII.
fn parse_answer(url: &Url, status: u16, body: &[u8]) -> Result<Answered, OAuthError> {
    #[derive(Deserialize)]
    struct Answer {
        client_id: String,
        client_secret: Option<String>,
        token_endpoint_auth_method: Option<String>,
        registration_access_token: Option<String>,
        registration_client_uri: Option<String>,
    }
    let bad = |why: String| OAuthError::BadResponse {
        host: host_of(url),
        status,
        what: "a client registration answer jwtagent cannot use",
        excerpt: why,
        retry_after: None,
    };
    let answer: Answer = serde_json::from_slice(body).map_err(|_| {
        bad(format!(
            "not JSON with a client_id: {}",
            // The answer may hold a secret: only what precedes any.
            if body.windows(6).any(|w| w == b"secret" || w == b"_token") {
                "(body not shown)".to_string()
            } else {
                excerpt(body)
            }
        ))
    })?;
    let client_id = answer.client_id;
    if client_id.is_empty()
        || client_id.chars().count() > MAX_CLIENT_ID
        || client_id.chars().any(char::is_control)
    {
        return Err(bad(
            "its client_id is empty, too long or has control characters".into(),
        ));
    }
    let visible = |field: &str, value: Option<String>| match value {
        Some(v) if v.is_empty() || !v.bytes().all(|b| b.is_ascii_graphic()) => Err(bad(format!(
            "its {field} is empty or has characters a request cannot carry"
        ))),
        Some(v) => Ok(Some(Secret::new(v.into_bytes()))),
        None => Ok(None),
    };
    let client_secret = visible("client_secret", answer.client_secret)?;
    let token = visible(
        "registration_access_token",
        answer.registration_access_token,
    )?;
    let management = match (answer.registration_client_uri, token) {
        (Some(uri), Some(token)) => Some((
            check_endpoint("registration_client_uri", &uri).map_err(|e| bad(e.to_string()))?,
            token,
        )),
        _ => None,
    };
    let (method, auth) = method(answer.token_endpoint_auth_method, client_secret.is_some());
    let Some(auth) = auth else {
        return Ok(Answered::Unusable {
            client_id,
            method,
            management,
        });
    };
    let client_secret = match (auth, client_secret) {
        (AuthMethod::None, _) => None,
        (_, Some(secret)) => Some(secret),
        (_, None) => {
            return Err(bad(format!(
                "it registered the client for {method} but sent no client_secret"
            )));
        }
    };
    Ok(Answered::Usable(Registration {
        client_id,
        auth,
        client_secret,
        management,
    }))
}

/// The method the server registered the client for (RFC 7591 §2:
/// client_secret_basic when it does not say; a server that gave no secret
/// registered a public client), and the one jwtagent uses for it if it can.
fn method(named: Option<String>, has_secret: bool) -> (String, Option<AuthMethod>) {
    let method = named.unwrap_or_else(|| {
        match has_secret {
            true => "client_secret_basic",
            false => "none",
        }
        .to_string()
    });
    let auth = match method.as_str() {
        "none" => Some(AuthMethod::None),
        "client_secret_basic" => Some(AuthMethod::ClientSecretBasic),
        "client_secret_post" => Some(AuthMethod::ClientSecretPost),
        _ => None,
    };
    (printable(method.chars().take(64).collect()), auth)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<Answered, OAuthError> {
        parse_answer(
            &Url::parse("https://as.example/reg").unwrap(),
            201,
            body.as_bytes(),
        )
    }

    fn usable(body: &str) -> Registration {
        match parse(body) {
            Ok(Answered::Usable(r)) => r,
            Ok(Answered::Unusable { method, .. }) => panic!("unusable: {method}"),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn a_public_client_is_used_as_registered() {
        let r = usable(r#"{"client_id":"abc","token_endpoint_auth_method":"none"}"#);
        assert_eq!(r.client_id, "abc");
        assert_eq!(r.auth, AuthMethod::None);
        assert!(r.client_secret.is_none() && r.management.is_none());
    }

    #[test]
    fn a_server_that_hands_back_a_secret_makes_the_client_confidential() {
        // No method named: RFC 7591's default, client_secret_basic.
        let r = usable(r#"{"client_id":"abc","client_secret":"s+/="}"#);
        assert_eq!(r.auth, AuthMethod::ClientSecretBasic);
        assert_eq!(r.client_secret.unwrap().expose(), b"s+/=");
        let r = usable(
            r#"{"client_id":"abc","client_secret":"s","token_endpoint_auth_method":"client_secret_post"}"#,
        );
        assert_eq!(r.auth, AuthMethod::ClientSecretPost);
        // A public client's stray secret is not kept.
        let r = usable(
            r#"{"client_id":"abc","client_secret":"s","token_endpoint_auth_method":"none"}"#,
        );
        assert!(r.client_secret.is_none());
    }

    #[test]
    fn management_needs_both_the_uri_and_the_token_and_an_https_uri() {
        let r = usable(
            r#"{"client_id":"abc","registration_client_uri":"https://as.example/reg/abc","registration_access_token":"t"}"#,
        );
        let (uri, token) = r.management.unwrap();
        assert_eq!(uri.as_str(), "https://as.example/reg/abc");
        assert_eq!(token.expose(), b"t");
        let r =
            usable(r#"{"client_id":"abc","registration_client_uri":"https://as.example/reg/abc"}"#);
        assert!(r.management.is_none());
        let e = parse(
            r#"{"client_id":"abc","registration_client_uri":"http://as.example/reg/abc","registration_access_token":"t"}"#,
        )
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("registration_client_uri"), "{e}");
    }

    #[test]
    fn hostile_answers_are_refused_without_echoing_secrets() {
        for body in [
            r#"{"client_id":""}"#,
            "{\"client_id\":\"a\\u001b[31m\"}",
            r#"{"client_id":"a","client_secret":"has space"}"#,
            r#"{"client_id":"a","client_secret":""}"#,
            r#"{"client_id":"a","registration_access_token":"x\ny","registration_client_uri":"https://as.example/r"}"#,
            r#"{"client_id":"a","token_endpoint_auth_method":"client_secret_post"}"#,
            r#"{"client_secret":"topsecret"}"#,
            "[]",
        ] {
            let e = parse(body)
                .err()
                .unwrap_or_else(|| panic!("{body} accepted"));
            assert!(!e.to_string().contains("topsecret"), "{e}");
        }
        let long = format!(r#"{{"client_id":"{}"}}"#, "a".repeat(MAX_CLIENT_ID + 1));
        assert!(parse(&long).is_err());
        // At the edge, in characters: taken.
        let longest = format!(r#"{{"client_id":"{}"}}"#, "é".repeat(MAX_CLIENT_ID));
        assert_eq!(usable(&longest).client_id.chars().count(), MAX_CLIENT_ID);
    }

    #[test]
    fn a_refusal_says_what_to_do_about_the_usual_ones() {
        let url = Url::parse("https://as.example/reg").unwrap();
        let hint = |status: u16, error: &str, had_token: bool| {
            let body = format!(r#"{{"error":"{error}","error_description":"no"}}"#);
            match refused(&url, status, body.as_bytes(), had_token) {
                RegisterError::Refused {
                    status: s,
                    error: e,
                    description,
                    hint,
                } => {
                    assert_eq!((s, e.as_str()), (status, error));
                    assert_eq!(description.as_deref(), Some("no"));
                    hint
                }
                other => panic!("{other}"),
            }
        };
        let asks = "the server asks for an initial access token";
        let bad = "the initial access token given was refused";
        let redirect = "does not take a loopback redirect URI";
        for (status, error, had_token, says) in [
            (401, "access_denied", false, asks),
            (403, "access_denied", false, asks),
            (400, "invalid_token", false, asks),
            (401, "access_denied", true, bad),
            (400, "invalid_token", true, bad),
            (400, "invalid_redirect_uri", false, redirect),
            (400, "invalid_redirect_uri", true, redirect),
        ] {
            let got = hint(status, error, had_token);
            assert!(got.contains(says), "{status} {error} {had_token}: {got}");
        }
        assert_eq!(hint(400, "invalid_client_metadata", false), "");
    }

    #[test]
    fn a_bearer_header_carries_only_visible_ascii_and_is_sensitive() {
        let header = bearer(&Secret::new(b"abc.DEF-123_~+/=".to_vec())).unwrap();
        assert_eq!(header.as_bytes(), b"Bearer abc.DEF-123_~+/=");
        assert!(header.is_sensitive());
        for bad in [&b"has space"[..], b"tab\t", b"nl\n", "é".as_bytes()] {
            let e = bearer(&Secret::new(bad.to_vec())).unwrap_err().to_string();
            assert!(e.contains("characters a header cannot carry"), "{e}");
        }
    }

    #[test]
    fn a_method_jwtagent_cannot_use_is_named() {
        match parse(r#"{"client_id":"abc","token_endpoint_auth_method":"private_key_jwt"}"#) {
            Ok(Answered::Unusable { method, .. }) => assert_eq!(method, "private_key_jwt"),
            _ => panic!("accepted"),
        }
    }

    #[test]
    fn the_request_asks_for_a_public_native_client_of_the_profiles_grant() {
        let mut p = Profile::new("https://as.example/token", "", AuthMethod::None);
        p.grant = Grant::DeviceCode {
            device_authorization_url: None,
        };
        p.scopes = vec!["openid".into(), "offline_access".into()];
        let m = serde_json::to_value(metadata("me", &p)).unwrap();
        assert_eq!(m["token_endpoint_auth_method"], "none");
        assert_eq!(m["application_type"], "native");
        assert_eq!(
            m["grant_types"],
            serde_json::json!([DEVICE_CODE, "refresh_token"])
        );
        assert_eq!(m["response_types"], serde_json::json!([]));
        assert!(m.get("redirect_uris").is_none());
        assert_eq!(m["scope"], "openid offline_access");
        assert!(
            m["client_name"]
                .as_str()
                .unwrap()
                .starts_with("jwtagent me on ")
        );
        p.grant = Grant::AuthorizationCode {
            authorization_url: None,
            redirect_port: Some(8400),
        };
        p.scopes.clear();
        let m = serde_json::to_value(metadata("me", &p)).unwrap();
        assert_eq!(
            m["grant_types"],
            serde_json::json!(["authorization_code", "refresh_token"])
        );
        assert_eq!(m["response_types"], serde_json::json!(["code"]));
        assert_eq!(
            m["redirect_uris"],
            serde_json::json!(["http://127.0.0.1:8400/callback"])
        );
        assert!(m.get("scope").is_none());
    }
}
