//! The OAuth 2.0 client: discovery and the client_credentials grant with every
//! client authentication method (RFC 6749 §2.3, §4.4; RFC 7523; RFC 8414).
//!
//! Knows nothing of sockets or caches: it is handed a request and a secret and
//! returns a token or an error. No error it returns contains a secret, an
//! assertion or a token.

use crate::jwk::DpopKey;
use crate::keys::{jwt_alg, parse_private_key};
use jwtagent::config::{Alg, check_endpoint};
use jwtagent::secret::Secret;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime};
use url::Url;

pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub const TOTAL_TIMEOUT: Duration = Duration::from_secs(30);
/// Lifetime of a client assertion (RFC 7523 wants it short).
pub const ASSERTION_LIFETIME: u64 = 60;
/// How much of a non-JSON error body is shown.
const BODY_EXCERPT: usize = 300;
/// The longest token lifetime believed; a larger `expires_in` is clamped to it.
pub const MAX_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);
/// Largest response body read from an authorization server.
const MAX_BODY: usize = 1024 * 1024;

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

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
    #[error("cannot reach {host}: {cause}")]
    Network { host: String, cause: String },
    /// Discovery failed or returned an unacceptable document.
    #[error("discovery for issuer {issuer} failed: {message}")]
    Discovery { issuer: String, message: String },
    /// The profile cannot be used as configured (bad key, missing CA file, ...).
    #[error("{0}")]
    Setup(String),
}

/// Authorization server metadata (the part jwtagent uses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    pub issuer: String,
    pub token_endpoint: Url,
}

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

/// The grant a token request uses.
#[derive(Clone, Copy)]
pub enum Grant<'a> {
    ClientCredentials,
    /// RFC 6749 §6, with a refresh token the server issued earlier.
    RefreshToken(&'a Secret),
}

/// One token request.
pub struct TokenRequest<'a> {
    pub grant: Grant<'a>,
    pub token_endpoint: &'a Url,
    pub client_id: &'a str,
    pub auth: ClientAuth<'a>,
    pub scopes: &'a [String],
    pub resources: &'a [String],
    pub audience: Option<&'a str>,
    pub params: &'a BTreeMap<String, String>,
    /// DPoP (RFC 9449): the key that signs the request's proof, and the
    /// server's nonce when it asked for one.
    pub dpop: Option<(&'a DpopKey, Option<String>)>,
}

/// A successful token response.
#[derive(Debug)]
pub struct TokenResponse {
    pub access_token: Secret,
    pub token_type: String,
    /// Seconds, when the server said.
    pub expires_in: Option<u64>,
    pub scope: Option<String>,
    pub refresh_token: Option<Secret>,
    /// `DPoP-Nonce` of the answer: the nonce to use next time.
    pub dpop_nonce: Option<String>,
}

/// An HTTP client for one trust configuration (platform roots plus an optional
/// per-profile CA file).
pub fn http_client(ca_file: Option<&Path>) -> Result<reqwest::Client, OAuthError> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(TOTAL_TIMEOUT)
        // A token endpoint that redirects is misconfigured; following it would
        // resend credentials to wherever it points.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("jwtagent/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).map_err(|e| {
            OAuthError::Setup(format!("cannot read ca_file {}: {e}", path.display()))
        })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            OAuthError::Setup(format!(
                "ca_file {} is not a PEM bundle: {e}",
                path.display()
            ))
        })?;
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder
        .build()
        .map_err(|e| OAuthError::Setup(format!("cannot set up HTTPS: {e}")))
}

fn host_of(url: &Url) -> String {
    match url.port() {
        Some(port) => format!("{}:{port}", url.host_str().unwrap_or("?")),
        None => url.host_str().unwrap_or("?").to_string(),
    }
}

/// Describes a transport error by its cause, without the URL reqwest would add.
fn network_error(url: &Url, e: &reqwest::Error) -> OAuthError {
    let mut cause = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "connection failed".to_string()
    } else {
        "request failed".to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        cause.push_str(": ");
        cause.push_str(&s.to_string());
        source = s.source();
    }
    OAuthError::Network {
        host: host_of(url),
        cause,
    }
}

async fn read_body(url: &Url, response: reqwest::Response) -> Result<(u16, Vec<u8>), OAuthError> {
    let status = response.status().as_u16();
    let mut response = response;
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| network_error(url, &e))? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(OAuthError::BadResponse {
                host: host_of(url),
                status,
                what: "an oversized response",
                excerpt: format!("more than {MAX_BODY} bytes"),
                retry_after: None,
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok((status, body))
}

/// Server text as it may reach a terminal: control characters (an escape
/// sequence, a newline that fakes a second message) become U+FFFD.
fn printable(text: String) -> String {
    if text.chars().any(char::is_control) {
        text.chars()
            .map(|c| if c.is_control() { '\u{fffd}' } else { c })
            .collect()
    } else {
        text
    }
}

fn excerpt(body: &[u8]) -> String {
    let text = printable(String::from_utf8_lossy(body).into_owned());
    let text = text.trim();
    if text.is_empty() {
        return "(empty body)".into();
    }
    let cut: String = text.chars().take(BODY_EXCERPT).collect();
    if cut.len() < text.len() {
        format!("{cut}…")
    } else {
        cut
    }
}

/// Fetches the issuer's metadata: OpenID configuration first, then RFC 8414
/// (`/.well-known/oauth-authorization-server` inserted before the issuer's path).
/// The document's `issuer` must equal `issuer` exactly.
pub async fn discover(http: &reqwest::Client, issuer: &str) -> Result<Metadata, OAuthError> {
    let fail = |message: String| OAuthError::Discovery {
        issuer: issuer.to_string(),
        message,
    };
    let urls = metadata_urls(issuer).map_err(fail)?;
    let mut tried = Vec::new();
    for url in urls {
        let response = match http.get(url.clone()).send().await {
            Ok(r) => r,
            Err(e) => return Err(network_error(&url, &e)),
        };
        let (status, body) = read_body(&url, response).await?;
        if status != 200 {
            tried.push(format!("{url}: HTTP {status}"));
            continue;
        }
        #[derive(Deserialize)]
        struct Doc {
            issuer: Option<String>,
            token_endpoint: Option<String>,
        }
        let doc: Doc = serde_json::from_slice(&body).map_err(|e| {
            fail(format!(
                "{url} is not a JSON metadata document ({e}): {}",
                excerpt(&body)
            ))
        })?;
        let found = doc.issuer.unwrap_or_default();
        if found != issuer {
            return Err(fail(format!(
                "{url} names issuer {found:?}, not {issuer:?}; the configured issuer must match the server's exactly (check the scheme, host, port and trailing slash)"
            )));
        }
        let endpoint = doc
            .token_endpoint
            .ok_or_else(|| fail(format!("{url} has no token_endpoint")))?;
        let token_endpoint =
            check_endpoint("token_endpoint", &endpoint).map_err(|e| fail(e.to_string()))?;
        return Ok(Metadata {
            issuer: found,
            token_endpoint,
        });
    }
    Err(fail(format!("no metadata found ({})", tried.join("; "))))
}

/// Where an issuer's metadata may be: OpenID Connect Discovery appends
/// `/.well-known/openid-configuration` to the issuer; RFC 8414 §3.1 inserts
/// `/.well-known/oauth-authorization-server` between the host and the path.
pub fn metadata_urls(issuer: &str) -> Result<[Url; 2], String> {
    let base = Url::parse(issuer).map_err(|e| format!("not a URL: {e}"))?;
    let oidc = Url::parse(&format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    ))
    .map_err(|e| e.to_string())?;
    let mut rfc8414 = base.clone();
    let path = base.path().trim_end_matches('/');
    rfc8414.set_path(&format!("/.well-known/oauth-authorization-server{path}"));
    Ok([oidc, rfc8414])
}

/// RFC 6749 §2.3.1: id and secret are form-urlencoded before Basic encoding.
fn form_encode(bytes: &[u8]) -> String {
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

/// A fresh 128-bit random id, hex-encoded.
pub fn random_id() -> Result<String, OAuthError> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes)
        .map_err(|_| OAuthError::Setup("the system random generator failed".into()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
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
        parse_private_key(secret)
            .map_err(|e| OAuthError::Setup(format!("the stored private key cannot be used: {e}")))?
            .1
    };
    let mut header = jsonwebtoken::Header::new(jwt_alg(alg));
    header.typ = Some("JWT".into());
    header.kid = kid.map(str::to_string);
    let iat = jwtagent::time::unix_now();
    let claims = AssertionClaims {
        iss: client_id,
        sub: client_id,
        aud,
        jti: random_id()?,
        iat,
        exp: iat + ASSERTION_LIFETIME,
    };
    jsonwebtoken::encode(&header, &claims, &key)
        .map(|jwt| Secret::new(jwt.into_bytes()))
        .map_err(|e| OAuthError::Setup(format!("cannot sign the client assertion with {alg}: {e}")))
}

/// Performs one client_credentials token request.
pub async fn fetch_token(
    http: &reqwest::Client,
    req: &TokenRequest<'_>,
) -> Result<TokenResponse, OAuthError> {
    let mut form: Vec<(&str, String)> = Vec::new();
    // The form holds the secret or the assertion for some methods; it is built
    // in a zeroizing buffer below and never logged.
    let mut secret_fields: Vec<(&str, Secret)> = Vec::new();
    match req.grant {
        Grant::ClientCredentials => form.push(("grant_type", "client_credentials".into())),
        Grant::RefreshToken(token) => {
            form.push(("grant_type", "refresh_token".into()));
            secret_fields.push(("refresh_token", token.clone()));
        }
    }
    if !req.scopes.is_empty() {
        form.push(("scope", req.scopes.join(" ")));
    }
    for resource in req.resources {
        form.push(("resource", resource.clone()));
    }
    if let Some(audience) = req.audience {
        form.push(("audience", audience.to_string()));
    }
    for (k, v) in req.params {
        form.push((k.as_str(), v.clone()));
    }
    let mut builder = http.post(req.token_endpoint.clone());
    match &req.auth {
        ClientAuth::None => form.push(("client_id", req.client_id.to_string())),
        ClientAuth::Basic(secret) => {
            let user = form_encode(req.client_id.as_bytes());
            let pass = zeroize::Zeroizing::new(form_encode(secret.expose()));
            builder = builder.basic_auth(user, Some(pass.as_str()));
        }
        ClientAuth::Post(secret) => {
            form.push(("client_id", req.client_id.to_string()));
            secret_fields.push(("client_secret", (*secret).clone()));
        }
        ClientAuth::Jwt {
            secret,
            alg,
            kid,
            aud,
        } => {
            form.push(("client_id", req.client_id.to_string()));
            form.push(("client_assertion_type", ASSERTION_TYPE.into()));
            let assertion = client_assertion(req.client_id, secret, *alg, *kid, aud)?;
            secret_fields.push(("client_assertion", assertion));
        }
    }
    let mut body = zeroize::Zeroizing::new(String::new());
    {
        let mut ser = url::form_urlencoded::Serializer::new(&mut *body);
        for (k, v) in &form {
            ser.append_pair(k, v);
        }
        for (k, v) in &secret_fields {
            let text = std::str::from_utf8(v.expose())
                .map_err(|_| OAuthError::Setup("the stored secret is not text".into()))?;
            ser.append_pair(k, text);
        }
        ser.finish();
    }
    // Everything secret this request carries, in every form a server that
    // reflects its input could echo: scrubbed from any error text below.
    let mut needles: Vec<zeroize::Zeroizing<String>> = Vec::new();
    for (_, v) in &secret_fields {
        needles.extend(encodings(req.client_id, v));
    }
    if let ClientAuth::Basic(secret) = &req.auth {
        needles.extend(encodings(req.client_id, secret));
    }
    let url = req.token_endpoint;
    if let Some((key, nonce)) = &req.dpop {
        let htu = crate::jwk::htu(url.as_str()).map_err(OAuthError::Setup)?;
        let proof = key
            .proof("POST", &htu, None, nonce.as_deref())
            .map_err(OAuthError::Setup)?;
        let value = reqwest::header::HeaderValue::from_bytes(proof.expose())
            .map_err(|_| OAuthError::Setup("the DPoP proof is not a header value".into()))?;
        builder = builder.header("dpop", value);
    }
    let response = builder
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json")
        .body(body.as_bytes().to_vec())
        .send()
        .await
        .map_err(|e| network_error(url, &e))?;
    let retry_after = match response.status().as_u16() {
        429 | 503 => response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now())),
        _ => None,
    };
    let dpop_nonce = response
        .headers()
        .get("dpop-nonce")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let (status, bytes) = read_body(url, response).await?;
    let mut result = parse_token_response(url, status, retry_after, &bytes);
    match &mut result {
        Ok(TokenResponse { dpop_nonce: n, .. }) | Err(OAuthError::Idp { dpop_nonce: n, .. }) => {
            *n = dpop_nonce;
        }
        Err(_) => {}
    }
    if let Err(e) = &mut result {
        e.redact(&needles);
    }
    result
}

/// The forms in which a secret sent as `client_id:secret` Basic credentials or
/// as a form field can come back: as it is, form-urlencoded, percent-encoded,
/// and the Basic credentials' base64.
fn encodings(client_id: &str, secret: &Secret) -> Vec<zeroize::Zeroizing<String>> {
    use base64::Engine;
    let raw = String::from_utf8_lossy(secret.expose()).into_owned();
    let form = form_encode(secret.expose());
    let percent = form.replace('+', "%20");
    let basic = format!("{}:{form}", form_encode(client_id.as_bytes()));
    let b64 = base64::engine::general_purpose::STANDARD.encode(basic.as_bytes());
    let b64url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret.expose());
    [raw, form, percent, b64, b64url]
        .into_iter()
        .filter(|n| !n.is_empty())
        .map(zeroize::Zeroizing::new)
        .collect()
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
            OAuthError::Discovery { message, .. } => scrub(message),
            OAuthError::Setup(message) => scrub(message),
        }
    }
}

/// `expires_in` in seconds, as a number or (some servers) a string; `None`
/// when it is absent or not a number.
fn lifetime_secs(value: &serde_json::Value) -> Option<f64> {
    let secs = match value {
        serde_json::Value::Number(n) => n.as_f64()?,
        serde_json::Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    secs.is_finite().then_some(secs)
}

/// Parses a token endpoint answer: success (RFC 6749 §5.1) or error (§5.2).
pub fn parse_token_response(
    url: &Url,
    status: u16,
    retry_after: Option<Duration>,
    body: &[u8],
) -> Result<TokenResponse, OAuthError> {
    if status == 200 {
        #[derive(Deserialize)]
        struct Ok {
            access_token: Option<String>,
            token_type: Option<String>,
            expires_in: Option<serde_json::Value>,
            scope: Option<String>,
            refresh_token: Option<String>,
        }
        let bad = |what: &'static str| OAuthError::BadResponse {
            host: host_of(url),
            status,
            what,
            // Never echo a success body: it may hold a token.
            excerpt: "(body not shown)".into(),
            retry_after: None,
        };
        let ok: Ok =
            serde_json::from_slice(body).map_err(|_| bad("a token response that is not JSON"))?;
        let access_token = ok
            .access_token
            .filter(|t| !t.is_empty())
            .ok_or_else(|| bad("a token response without access_token"))?;
        // Served in headers (`Authorization: Bearer ...`) and env variables:
        // a newline would inject a header. RFC 6750's b64token is narrower,
        // but real servers issue tokens with other visible characters.
        if !access_token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(bad(
                "an access_token with characters a header cannot carry (control characters, spaces or non-ASCII)",
            ));
        }
        let token_type = match ok.token_type.as_deref() {
            // RFC 6749 §7.1: case-insensitive; served in its canonical case.
            None => "Bearer",
            Some(t) if t.eq_ignore_ascii_case("bearer") => "Bearer",
            Some(t) if t.eq_ignore_ascii_case("dpop") => "DPoP",
            Some(other) => {
                return Err(OAuthError::BadResponse {
                    host: host_of(url),
                    status,
                    what: "a token_type jwtagent cannot serve (only Bearer and DPoP)",
                    excerpt: format!(
                        "token_type {:?}",
                        printable(other.chars().take(40).collect())
                    ),
                    retry_after: None,
                });
            }
        };
        let expires_in = match ok.expires_in.as_ref().and_then(lifetime_secs) {
            Some(secs) if secs <= 0.0 => {
                return Err(OAuthError::BadResponse {
                    host: host_of(url),
                    status,
                    what: "a token that had already expired",
                    excerpt: format!(
                        "expires_in is {secs}; the server must give a lifetime of at least one second (check its clock and token settings)"
                    ),
                    retry_after: None,
                });
            }
            // Clamped: a lifetime of 1e30 s must not overflow a deadline.
            Some(secs) => Some((secs.ceil() as u64).min(MAX_LIFETIME.as_secs())),
            None => None,
        };
        return Ok(TokenResponse {
            access_token: Secret::new(access_token.into_bytes()),
            token_type: token_type.to_string(),
            expires_in,
            scope: ok.scope,
            refresh_token: ok.refresh_token.map(|t| Secret::new(t.into_bytes())),
            dpop_nonce: None,
        });
    }
    #[derive(Deserialize)]
    struct Err {
        error: String,
        error_description: Option<String>,
    }
    match serde_json::from_slice::<Err>(body) {
        Ok(e) => Err(OAuthError::Idp {
            status,
            error: printable(e.error),
            description: e.error_description.map(printable),
            retry_after,
            dpop_nonce: None,
        }),
        Err(_) => Err(OAuthError::BadResponse {
            host: host_of(url),
            status,
            what: "an error response that is not RFC 6749 JSON",
            excerpt: excerpt(body),
            retry_after,
        }),
    }
}

/// `Retry-After` (RFC 9110 §10.2.3): delay-seconds or an HTTP-date.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// SHA-256 fingerprint of a token for logs: the first 8 hex digits.
pub fn fingerprint(token: &Secret) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.expose());
    digest.as_ref()[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn url() -> Url {
        Url::parse("https://idp.example/token").unwrap()
    }

    #[test]
    fn success_response_is_parsed_with_string_or_number_expires_in() {
        let r = parse_token_response(
            &url(),
            200,
            None,
            br#"{"access_token":"abc","token_type":"Bearer","expires_in":"60","scope":"a b"}"#,
        )
        .unwrap();
        assert_eq!(r.access_token.expose(), b"abc");
        assert_eq!(r.expires_in, Some(60));
        let r = parse_token_response(
            &url(),
            200,
            None,
            br#"{"access_token":"abc","expires_in":3600}"#,
        )
        .unwrap();
        assert_eq!(r.expires_in, Some(3600));
        assert_eq!(r.token_type, "Bearer");
    }

    #[test]
    fn huge_lifetimes_are_clamped_and_expired_ones_refused() {
        let parse = |expires_in: &str| {
            parse_token_response(
                &url(),
                200,
                None,
                format!(r#"{{"access_token":"abc","expires_in":{expires_in}}}"#).as_bytes(),
            )
        };
        for huge in [
            "1e30",
            "9223372036854775808",
            "18446744073709551616",
            "\"1e300\"",
        ] {
            assert_eq!(
                parse(huge).unwrap().expires_in,
                Some(MAX_LIFETIME.as_secs()),
                "{huge}"
            );
        }
        assert_eq!(parse("0.2").unwrap().expires_in, Some(1));
        for expired in ["0", "-5", "-1e30", "\"0\"", "\"-3\""] {
            let e = parse(expired).unwrap_err().to_string();
            assert!(e.contains("already expired"), "{expired}: {e}");
        }
        assert_eq!(parse("\"soon\"").unwrap().expires_in, None);
        assert_eq!(parse("null").unwrap().expires_in, None);
    }

    #[test]
    fn tokens_a_header_cannot_carry_are_refused_and_token_types_canonical() {
        let parse = |body: &str| parse_token_response(&url(), 200, None, body.as_bytes());
        for bad in [
            r#""abc\ndef""#,
            r#""abc def""#,
            r#""abc\u0000""#,
            r#""tök""#,
        ] {
            let e = parse(&format!(r#"{{"access_token":{bad}}}"#)).unwrap_err();
            assert!(e.to_string().contains("header cannot carry"), "{bad}: {e}");
        }
        for (sent, served) in [("bearer", "Bearer"), ("BEARER", "Bearer"), ("dpop", "DPoP")] {
            let r = parse(&format!(
                r#"{{"access_token":"a.b-c_d~e+f/g=","token_type":"{sent}"}}"#
            ));
            assert_eq!(r.unwrap().token_type, served);
        }
        let e = parse(r#"{"access_token":"abc","token_type":"mac\u001b[2J"}"#).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("cannot serve") && !text.contains('\u{1b}'),
            "{text}"
        );
    }

    #[test]
    fn error_text_loses_secrets_in_every_encoding_and_control_characters() {
        let secret = Secret::new(b"s3cr et+/=%".to_vec());
        let needles = encodings("client 1", &secret);
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode("client+1:s3cr+et%2B%2F%3D%25");
        let reflected = format!(
            "got client_secret=s3cr+et%2B%2F%3D%25 raw=s3cr et+/=% pct=s3cr%20et%2B%2F%3D%25 basic={b64}\x1b[31m"
        );
        let mut e = parse_token_response(&url(), 500, None, reflected.as_bytes()).unwrap_err();
        e.redact(&needles);
        let text = e.to_string();
        assert!(!text.contains("s3cr") && !text.contains(&b64), "{text}");
        assert_eq!(text.matches("[REDACTED]").count(), 4, "{text}");
        assert!(!text.contains('\u{1b}'), "{text}");
        let mut e = parse_token_response(
            &url(),
            400,
            None,
            br#"{"error":"invalid_request","error_description":"bad secret s3cr et+/=%\n[fake] ok"}"#,
        )
        .unwrap_err();
        e.redact(&needles);
        let text = e.to_string();
        assert!(!text.contains("s3cr") && !text.contains('\n'), "{text}");
    }

    #[test]
    fn rfc6749_error_keeps_error_description_and_status() {
        let e = parse_token_response(
            &url(),
            401,
            None,
            br#"{"error":"invalid_client","error_description":"client authentication failed"}"#,
        )
        .unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("HTTP 401")
                && text.contains("invalid_client")
                && text.contains("client authentication failed"),
            "{text}"
        );
    }

    #[test]
    fn non_json_error_body_is_cut_short() {
        let body = format!("<html>{}</html>", "x".repeat(5000));
        let e = parse_token_response(&url(), 502, None, body.as_bytes()).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("HTTP 502") && text.contains("idp.example"),
            "{text}"
        );
        assert!(text.len() < 600, "{}", text.len());
    }

    #[test]
    fn success_without_token_never_echoes_the_body() {
        let e = parse_token_response(&url(), 200, None, br#"{"refresh_token":"SECRET-RT"}"#)
            .unwrap_err();
        assert!(!e.to_string().contains("SECRET-RT"));
    }

    #[test]
    fn metadata_urls_follow_oidc_and_rfc8414() {
        let [oidc, rfc] = metadata_urls("https://idp.example/tenant/a").unwrap();
        assert_eq!(
            oidc.as_str(),
            "https://idp.example/tenant/a/.well-known/openid-configuration"
        );
        assert_eq!(
            rfc.as_str(),
            "https://idp.example/.well-known/oauth-authorization-server/tenant/a"
        );
        let [oidc, rfc] = metadata_urls("https://idp.example").unwrap();
        assert_eq!(
            oidc.as_str(),
            "https://idp.example/.well-known/openid-configuration"
        );
        assert_eq!(
            rfc.as_str(),
            "https://idp.example/.well-known/oauth-authorization-server"
        );
    }

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

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:40:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn fingerprint_is_eight_hex_digits_of_sha256() {
        // sha256("abc") = ba7816bf...
        assert_eq!(fingerprint(&Secret::new(b"abc".to_vec())), "ba7816bf");
    }
}
