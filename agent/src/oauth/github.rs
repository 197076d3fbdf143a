//! GitHub App installation access tokens: an app JWT (RS256, `iss` the app
//! id, `iat` a minute in the past for clock drift, `exp` nine minutes ahead)
//! exchanged at `POST {api}/app/installations/{id}/access_tokens`, as
//! GitHub documents it.

use super::auth::{AssertionHeader, sign};
use super::error::{OAuthError, SetupError, Step};
use super::http::{excerpt, host_of, network_error, printable, read_body};
use super::token::{MAX_LIFETIME, TokenResponse};
use jwtagent::config::{GitHubApp, Grant, Profile};
use jwtagent::secret::Secret;
use serde::{Deserialize, Serialize};
use url::Url;

/// GitHub refuses app JWTs that live longer than ten minutes.
const APP_JWT_LIFETIME: u64 = 540;
/// GitHub's advice for clocks that drift: an `iat` in the past.
const CLOCK_DRIFT: u64 = 60;
const API_VERSION: &str = "2022-11-28";

#[derive(Serialize)]
struct AppClaims<'a> {
    iss: &'a str,
    iat: u64,
    exp: u64,
}

/// The app JWT's claims at `now`: `iat` a minute in the past, as GitHub
/// asks, and a lifetime within its ten minutes.
fn app_claims(iss: &str, now: u64) -> AppClaims<'_> {
    AppClaims {
        iss,
        iat: now.saturating_sub(CLOCK_DRIFT),
        exp: now + APP_JWT_LIFETIME,
    }
}

/// An installation token for `profile` (a GitHub App), signed for with its
/// app key.
pub(crate) async fn installation_token(
    http: &reqwest::Client,
    profile: &Profile,
    key: &Secret,
) -> Result<super::token::Obtained, OAuthError> {
    let Grant::GithubApp(app) = &profile.grant else {
        return Err(SetupError::NoEndpoint.into());
    };
    let url = endpoint(app)?;
    let claims = app_claims(&profile.client_id, jwtagent::time::unix_now());
    let alg = profile.alg.ok_or(SetupError::NoAlg)?;
    let jwt = sign(key, alg, AssertionHeader::default(), &claims)?;
    let mut bearer = zeroize::Zeroizing::new(b"Bearer ".to_vec());
    bearer.extend_from_slice(jwt.expose());
    let authorization =
        reqwest::header::HeaderValue::from_bytes(&bearer).map_err(|_| SetupError::Stored {
            what: "GitHub App JWT",
            detail: "it is not a header value".into(),
        })?;
    let mut request = http
        .post(url.clone())
        .header("accept", "application/vnd.github+json")
        .header("x-github-api-version", API_VERSION)
        .header("authorization", authorization);
    if !app.repositories.is_empty() || !app.permissions.is_empty() {
        request = request.json(&Narrowed {
            repositories: &app.repositories,
            permissions: &app.permissions,
        });
    }
    let response = request
        .send()
        .await
        .map_err(|e| network_error(&url, Step::Token, &e))?;
    let (status, body) = read_body(&url, Step::Token, response).await?;
    let response = parse(&url, status, &body)?;
    Ok(super::token::Obtained {
        response,
        grant: "github-app",
        refresh_token: None,
    })
}

#[derive(Serialize)]
struct Narrowed<'a> {
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    repositories: &'a [String],
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    permissions: &'a std::collections::BTreeMap<String, String>,
}

/// `{api}/app/installations/{id}/access_tokens`.
pub(crate) fn endpoint(app: &GitHubApp) -> Result<Url, OAuthError> {
    let base = app.api_url.trim_end_matches('/');
    Url::parse(&format!(
        "{base}/app/installations/{}/access_tokens",
        app.installation_id
    ))
    .map_err(|e| SetupError::TokenUrl(e.to_string()).into())
}

/// GitHub's answer: 201 with `token` and `expires_at` (RFC 3339), or an
/// error with a `message`.
fn parse(url: &Url, status: u16, body: &[u8]) -> Result<TokenResponse, OAuthError> {
    #[derive(Deserialize)]
    struct Created {
        token: Option<String>,
        expires_at: Option<String>,
    }
    #[derive(Deserialize)]
    struct Failed {
        message: String,
        documentation_url: Option<String>,
    }
    let bad = |what: &'static str, excerpt: String| OAuthError::BadResponse {
        host: host_of(url),
        status,
        what,
        excerpt,
        retry_after: None,
    };
    if status != 201 {
        return Err(match serde_json::from_slice::<Failed>(body) {
            Ok(f) => OAuthError::Idp {
                status,
                error: printable(f.message.chars().take(300).collect()),
                description: f.documentation_url.map(printable),
                retry_after: None,
                dpop_nonce: None,
            },
            Err(_) => bad("an error that is not GitHub's JSON", excerpt(body)),
        });
    }
    let hidden = || "(body not shown)".to_string();
    let created: Created = serde_json::from_slice(body)
        .map_err(|_| bad("an installation token answer that is not JSON", hidden()))?;
    let token = created
        .token
        .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            bad(
                "an installation token answer without a usable token",
                hidden(),
            )
        })?;
    let expires_at = created.expires_at.unwrap_or_default();
    let at =
        time::OffsetDateTime::parse(&expires_at, &time::format_description::well_known::Rfc3339)
            .map_err(|_| {
                bad(
                    "an expires_at that is not an RFC 3339 time",
                    printable(expires_at.chars().take(40).collect()),
                )
            })?;
    let now = i64::try_from(jwtagent::time::unix_now()).unwrap_or(i64::MAX);
    let left = at.unix_timestamp().saturating_sub(now);
    if left <= 0 {
        return Err(bad(
            "a token that had already expired",
            format!("expires_at {expires_at} is not in the future; check this machine's clock"),
        ));
    }
    Ok(TokenResponse {
        id_token: None,
        access_token: Secret::new(token.into_bytes()),
        token_type: "Bearer".into(),
        expires_in: Some((left as u64).min(MAX_LIFETIME.as_secs())),
        scope: None,
        refresh_token: None,
        issued_token_type: None,
        dpop_nonce: None,
        refresh_expires_in: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_app_jwt_is_backdated_a_minute_and_lives_under_ten() {
        let claims = app_claims("12345", 1_800_000_000);
        assert_eq!(claims.iss, "12345");
        assert_eq!(claims.iat, 1_800_000_000 - 60);
        assert!(claims.exp > 1_800_000_000 && claims.exp - claims.iat <= 600);
    }

    fn url() -> Url {
        Url::parse("https://api.github.com/app/installations/1/access_tokens").unwrap()
    }

    #[test]
    fn a_created_answer_gives_the_token_and_its_lifetime() {
        let at = jwtagent::time::unix_now() + 3600;
        let when = time::OffsetDateTime::from_unix_timestamp(at as i64).unwrap();
        let text = format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            when.year(),
            when.month() as u8,
            when.day(),
            when.hour(),
            when.minute(),
            when.second()
        );
        let body = format!(r#"{{"token":"ghs_abc","expires_at":"{text}","permissions":{{}}}}"#);
        let r = parse(&url(), 201, body.as_bytes()).unwrap();
        assert_eq!(r.access_token.expose(), b"ghs_abc");
        assert!((3590..=3600).contains(&r.expires_in.unwrap()));
    }

    #[test]
    fn errors_carry_githubs_message_and_bad_answers_are_refused() {
        let e = parse(
            &url(),
            401,
            br#"{"message":"A JSON web token could not be decoded","documentation_url":"https://docs.github.com/rest"}"#,
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("A JSON web token could not be decoded"),
            "{e}"
        );
        for body in [
            r#"{"token":"ghs_x","expires_at":"tomorrow"}"#,
            r#"{"token":"ghs_x","expires_at":"2001-01-01T00:00:00Z"}"#,
            r#"{"token":"gh s","expires_at":"2999-01-01T00:00:00Z"}"#,
            "not json",
        ] {
            assert!(parse(&url(), 201, body.as_bytes()).is_err(), "{body}");
        }
    }
}
