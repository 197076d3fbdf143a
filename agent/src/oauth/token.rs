//! One token request (RFC 6749 §3.2) and its answer (§5.1, §5.2): the form,
//! the POST, and the parsing of whatever comes back, which is treated as
//! hostile: lifetimes clamped, tokens that a header cannot carry refused, and
//! the request's secrets scrubbed from any error text.

use super::auth::{self, ClientAuth};
use super::error::Step;
use super::error::{OAuthError, SetupError};
use super::form::Form;
use super::grant::Grant;
use super::http::{LossyText, excerpt, host_of, network_error, printable, read_body};
use crate::jwk::DpopKey;
use jwtagent::secret::Secret;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};
use url::Url;

/// The longest token lifetime believed; a larger `expires_in` is clamped to it.
pub(crate) const MAX_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);

/// One token request.
pub(crate) struct TokenRequest<'a> {
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
    /// RFC 8693 §2.2.1: what a token exchange issued.
    pub issued_token_type: Option<String>,
    /// OpenID Connect: the ID token issued with it (`openid` scope).
    pub id_token: Option<Secret>,
    /// `DPoP-Nonce` of the answer: the nonce to use next time.
    pub dpop_nonce: Option<String>,
    /// How long the refresh token lasts, in seconds, when the server says:
    /// Keycloak's `refresh_expires_in`, or `refresh_token_expires_in`
    /// (GitHub, Microsoft). `0` (Keycloak's offline tokens) is no limit.
    pub refresh_expires_in: Option<u64>,
}

/// Sends `builder`'s POST to `url` with the form-encoded `body`, asking for
/// JSON back.
pub(super) async fn post_form(
    builder: reqwest::RequestBuilder,
    body: zeroize::Zeroizing<String>,
    url: &Url,
    step: Step,
) -> Result<reqwest::Response, OAuthError> {
    builder
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json")
        // A copy for hyper: freed memory is wiped by the binary's allocator
        // (zeroizing_alloc in cli/src/main.rs), `body` by Zeroizing.
        .body(body.as_bytes().to_vec())
        .send()
        .await
        .map_err(|e| network_error(url, step, &e))
}

/// Whether a request of `grant` that failed with `e` may be sent once more,
/// as curl does on a fresh connection: the connection closed before any
/// answer came. Never a refresh token or an authorization code: each is for
/// one use, and a server that did take the first request would see it
/// reused (and may revoke what it issued for it).
pub(super) fn may_send_again(e: &OAuthError, grant: &Grant<'_>) -> bool {
    e.unanswered()
        && !matches!(
            grant,
            Grant::RefreshToken(_) | Grant::AuthorizationCode { .. }
        )
}

/// Performs one token request.
pub(crate) async fn fetch_token(
    http: &reqwest::Client,
    req: &TokenRequest<'_>,
) -> Result<TokenResponse, OAuthError> {
    let mut form = req.form();
    let builder = http.post(req.token_endpoint.clone());
    let mut builder = auth::apply(&req.auth, req.client_id, &mut form, builder)?;
    // Everything secret this request carries, in every form a server that
    // reflects its input could echo: scrubbed from any error text below.
    let mut needles: Vec<zeroize::Zeroizing<String>> = Vec::new();
    for (_, v) in &form.secrets {
        needles.extend(encodings(req.client_id, v));
    }
    if let ClientAuth::Basic(secret) = &req.auth {
        needles.extend(encodings(req.client_id, secret));
    }
    let body = form.encode()?;
    let url = req.token_endpoint;
    if let Some((key, nonce)) = &req.dpop {
        builder = builder.header("dpop", dpop_header(key, url, nonce.as_deref())?);
    }
    let response = post_form(builder, body, url, Step::Token).await?;
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
    let (status, bytes) = read_body(url, Step::Token, response).await?;
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

impl TokenRequest<'_> {
    /// The form fields: the grant's, then scope, resources, audience and the
    /// profile's extra parameters (client authentication adds its own).
    fn form(&self) -> Form<'_> {
        let mut form = Form::default();
        self.grant.add_to(&mut form);
        if !self.scopes.is_empty() {
            form.push("scope", self.scopes.join(" "));
        }
        for resource in self.resources {
            form.push("resource", resource.clone());
        }
        if let Some(audience) = self.audience {
            form.push("audience", audience);
        }
        for (k, v) in self.params {
            form.push(k.as_str(), v.clone());
        }
        form
    }
}

/// The `DPoP` header of a token request to `url` (RFC 9449 §5).
fn dpop_header(
    key: &crate::jwk::DpopKey,
    url: &Url,
    nonce: Option<&str>,
) -> Result<reqwest::header::HeaderValue, OAuthError> {
    let htu = crate::jwk::htu(url.as_str()).map_err(SetupError::Dpop)?;
    let proof = key
        .proof("POST", &htu, None, nonce)
        .map_err(SetupError::Dpop)?;
    reqwest::header::HeaderValue::from_bytes(proof.expose()).map_err(|_| {
        SetupError::Stored {
            what: "DPoP proof",
            detail: "it is not a header value".into(),
        }
        .into()
    })
}

/// The forms in which a secret sent as `client_id:secret` Basic credentials or
/// as a form field can come back: as it is, form-urlencoded, percent-encoded,
/// and the Basic credentials' base64.
fn encodings(client_id: &str, secret: &Secret) -> Vec<zeroize::Zeroizing<String>> {
    use base64::Engine;
    let raw = String::from_utf8_lossy(secret.expose()).into_owned();
    let form = auth::form_encode(secret.expose());
    let percent = form.replace('+', "%20");
    let basic = format!("{}:{form}", auth::form_encode(client_id.as_bytes()));
    let b64 = base64::engine::general_purpose::STANDARD.encode(basic.as_bytes());
    let b64url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret.expose());
    [raw, form, percent, b64, b64url]
        .into_iter()
        .filter(|n| !n.is_empty())
        .map(zeroize::Zeroizing::new)
        .collect()
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
        // GitHub answers its errors (authorization_pending, slow_down, ...)
        // with 200 and an RFC 6749 error body.
        #[derive(Deserialize)]
        struct Probe {
            error: Option<String>,
            access_token: Option<serde::de::IgnoredAny>,
        }
        if let Ok(Probe {
            error: Some(_),
            access_token: None,
        }) = serde_json::from_slice::<Probe>(body)
        {
            return Err(parse_error(url, status, retry_after, body));
        }
        return parse_success(url, body);
    }
    Err(parse_error(url, status, retry_after, body))
}

/// An error answer of the token endpoint, or of another endpoint that
/// answers as it does (device authorization, revocation): RFC 6749 §5.2
/// JSON, or something else shown cut short.
pub(super) fn parse_error(
    url: &Url,
    status: u16,
    retry_after: Option<Duration>,
    body: &[u8],
) -> OAuthError {
    #[derive(Deserialize)]
    struct Err {
        error: String,
        error_description: Option<LossyText>,
    }
    match serde_json::from_slice::<Err>(body) {
        Ok(e) => OAuthError::Idp {
            status,
            error: printable(e.error),
            description: e.error_description.map(|d| printable(d.0)),
            retry_after,
            dpop_nonce: None,
        },
        Err(_) => OAuthError::BadResponse {
            host: host_of(url),
            status,
            what: "an error response that is not RFC 6749 JSON",
            // A 200 answer may carry a token beside its `error`.
            excerpt: if status == 200 {
                "(body not shown)".to_string()
            } else {
                excerpt(body)
            },
            retry_after,
        },
    }
}

/// A 200 answer (RFC 6749 §5.1). Its body is never echoed: it may hold a
/// token; an error shows at most the field it refused.
fn parse_success(url: &Url, body: &[u8]) -> Result<TokenResponse, OAuthError> {
    #[derive(Deserialize)]
    struct Ok {
        access_token: Option<String>,
        token_type: Option<String>,
        expires_in: Option<serde_json::Value>,
        scope: Option<String>,
        refresh_token: Option<String>,
        issued_token_type: Option<String>,
        id_token: Option<String>,
        refresh_expires_in: Option<serde_json::Value>,
        refresh_token_expires_in: Option<serde_json::Value>,
    }
    let bad = |what: &'static str, excerpt: String| OAuthError::BadResponse {
        host: host_of(url),
        status: 200,
        what,
        excerpt,
        retry_after: None,
    };
    let hidden = || "(body not shown)".to_string();
    let ok: Ok = serde_json::from_slice(body)
        .map_err(|_| bad("a token response that is not JSON", hidden()))?;
    let access_token = ok
        .access_token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| bad("a token response without access_token", hidden()))?;
    // Served in headers (`Authorization: Bearer ...`) and env variables:
    // a newline would inject a header. RFC 6750's b64token is narrower,
    // but real servers issue tokens with other visible characters.
    if !access_token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad(
            "an access_token with characters a header cannot carry (control characters, spaces or non-ASCII)",
            hidden(),
        ));
    }
    let token_type = canonical_token_type(ok.token_type.as_deref()).ok_or_else(|| {
        let sent: String = ok.token_type.unwrap_or_default().chars().take(40).collect();
        bad(
            "a token_type jwtagent cannot serve (only Bearer, DPoP, and N_A from a token exchange)",
            format!("token_type {:?}", printable(sent)),
        )
    })?;
    let expires_in = match ok.expires_in.as_ref().and_then(lifetime_secs) {
        Some(secs) if secs <= 0.0 => {
            return Err(bad(
                "a token that had already expired",
                format!(
                    "expires_in is {secs}; the server must give a lifetime of at least one second (check its clock and token settings)"
                ),
            ));
        }
        // Clamped: a lifetime of 1e30 s must not overflow a deadline.
        Some(secs) => Some((secs.ceil() as u64).min(MAX_LIFETIME.as_secs())),
        None => None,
    };
    Ok(TokenResponse {
        access_token: Secret::new(access_token.into_bytes()),
        token_type: token_type.to_string(),
        expires_in,
        scope: ok.scope,
        // Sent back to the server and printed: a token with characters a
        // form or a terminal would misread is dropped, not passed on.
        refresh_token: printable_token(ok.refresh_token),
        id_token: printable_token(ok.id_token),
        issued_token_type: ok
            .issued_token_type
            .filter(|t| !t.is_empty() && t.len() <= 200 && !t.chars().any(char::is_control)),
        dpop_nonce: None,
        refresh_expires_in: refresh_lifetime(
            ok.refresh_expires_in
                .or(ok.refresh_token_expires_in)
                .as_ref(),
        ),
    })
}

/// A token of the answer that is sent back or printed, if it is one: one
/// with characters a form or a terminal would misread is dropped.
fn printable_token(token: Option<String>) -> Option<Secret> {
    token
        .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()))
        .map(|t| Secret::new(t.into_bytes()))
}

/// A refresh token's lifetime as the server said it, in whole seconds: none
/// for `0` (Keycloak's offline tokens) or what is not a number.
fn refresh_lifetime(said: Option<&serde_json::Value>) -> Option<u64> {
    said.and_then(lifetime_secs)
        .filter(|secs| *secs >= 1.0)
        .map(|secs| (secs as u64).min(MAX_REFRESH_LIFETIME))
}

/// The longest refresh-token lifetime kept (ten years): a larger number
/// from a server must not overflow a date.
const MAX_REFRESH_LIFETIME: u64 = 10 * 365 * 86400;

/// RFC 6749 §7.1: token types are case-insensitive; served in their canonical
/// case. Missing means Bearer; a type jwtagent cannot serve is `None`.
fn canonical_token_type(sent: Option<&str>) -> Option<&'static str> {
    match sent {
        None => Some("Bearer"),
        Some(t) if t.eq_ignore_ascii_case("bearer") => Some("Bearer"),
        Some(t) if t.eq_ignore_ascii_case("dpop") => Some("DPoP"),
        // RFC 8693 §2.2.1: a token exchange's answer that is not an access
        // token (an ID-JAG, say), for use as an assertion, not in a header.
        Some(t) if t.eq_ignore_ascii_case("n_a") => Some("N_A"),
        Some(_) => None,
    }
}

/// `Retry-After` (RFC 9110 §10.2.3): delay-seconds or an HTTP-date.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// What a successful request got, and with which grant.
pub(crate) struct Obtained {
    pub response: TokenResponse,
    pub grant: &'static str,
    /// The refresh token to use next time: the one issued now, or the one
    /// sent when the server kept it.
    pub refresh_token: Option<Secret>,
}

#[cfg(test)]
mod tests {

    /// How long a refresh token lasts, under either name servers use; 0
    /// (Keycloak's offline tokens), junk and absence say nothing; a huge
    /// number is bounded.
    #[test]
    fn a_refresh_tokens_lifetime_is_read_under_either_name() {
        let url = url::Url::parse("https://as.example/token").unwrap();
        let said = |extra: &str| {
            let body = format!(r#"{{"access_token":"a","token_type":"Bearer"{extra}}}"#);
            super::parse_success(&url, body.as_bytes())
                .unwrap()
                .refresh_expires_in
        };
        assert_eq!(said(r#","refresh_expires_in":1800"#), Some(1800));
        assert_eq!(
            said(r#","refresh_token_expires_in":"7776000""#),
            Some(7_776_000)
        );
        assert_eq!(said(r#","refresh_expires_in":0"#), None);
        assert_eq!(said(r#","refresh_expires_in":"soon""#), None);
        assert_eq!(said(""), None);
        assert_eq!(
            said(r#","refresh_expires_in":1e300"#),
            Some(super::MAX_REFRESH_LIFETIME)
        );
    }

    #[test]
    fn only_a_request_of_a_reusable_grant_is_sent_again_after_an_unanswered_close() {
        let closed = |unanswered| OAuthError::Network {
            step: crate::oauth::error::Step::Token,
            host: "idp".into(),
            via: None,
            cause: "connection closed before message completed".into(),
            unanswered,
        };
        let rt = Secret::new(b"rt".to_vec());
        let (code, verifier) = (Secret::new(b"c".to_vec()), Secret::new(b"v".to_vec()));
        let code_grant = Grant::AuthorizationCode {
            code: &code,
            verifier: &verifier,
            redirect_uri: "http://127.0.0.1/callback",
        };
        assert!(may_send_again(&closed(true), &Grant::ClientCredentials));
        assert!(!may_send_again(&closed(false), &Grant::ClientCredentials));
        assert!(!may_send_again(&closed(true), &Grant::RefreshToken(&rt)));
        assert!(!may_send_again(&closed(true), &code_grant));
    }

    use super::*;
    use std::time::UNIX_EPOCH;

    fn url() -> Url {
        Url::parse("https://idp.example/token").unwrap()
    }

    #[test]
    fn an_error_body_with_status_200_is_an_error_as_github_sends_it() {
        let url = Url::parse("https://github.com/login/oauth/access_token").unwrap();
        let e = parse_token_response(
            &url,
            200,
            None,
            br#"{"error":"authorization_pending","error_description":"The authorization request is still pending."}"#,
        )
        .unwrap_err();
        assert!(
            matches!(&e, OAuthError::Idp { status: 200, error, .. } if error == "authorization_pending"),
            "{e:?}"
        );
    }

    /// A stray invalid UTF-8 sequence in a description costs a U+FFFD; an
    /// error body of a 200 answer that is not RFC 6749 JSON is not echoed
    /// (it may carry a token). The fuzzer found the echo.
    #[test]
    fn a_200_error_body_is_read_leniently_and_never_echoed() {
        let e = parse_token_response(
            &url(),
            200,
            None,
            b"{\"error\":\"invalid_client\",\"error_description\":\"no \xf8\xff such\"}",
        )
        .unwrap_err();
        assert!(
            matches!(&e, OAuthError::Idp { error, description: Some(d), .. }
                if error == "invalid_client" && d == "no \u{fffd}\u{fffd} such"),
            "{e:?}"
        );
        let body = br#"{"error":"invalid_client","error_description":5,"tok":"s3cret"}"#;
        let e = parse_token_response(&url(), 200, None, body).unwrap_err();
        assert!(
            matches!(&e, OAuthError::BadResponse { excerpt, .. } if excerpt == "(body not shown)"),
            "{e:?}"
        );
        // Another status's unreadable error body is shown, cut short.
        let e = parse_token_response(&url(), 400, None, body).unwrap_err();
        assert!(format!("{e}").contains("s3cret"), "{e}");
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
}
