//! `endpoint`: a profile's token served, for as long as the asking process
//! lives, on a loopback HTTP endpoint that speaks a cloud SDK's protocol,
//! so that Google's and Microsoft's client libraries take it unchanged:
//!
//! - the Compute Engine metadata server's service-account paths (the
//!   `Metadata-Flavor: Google` header required, as Google's server does);
//! - the App Service managed identity protocol (2019-08-01: the
//!   `X-IDENTITY-HEADER` secret, compared in constant time; `resource`
//!   must be one the profile is for).
//!
//! Each token request is one as the socket's: the caller is the process
//! that connected (found through `/proc`), through the profile's policy,
//! controls, the lock and the audit (ops `gcp_metadata`, `azure_identity`).
//! Connections of another uid are closed unanswered and audited.

use crate::endpoints::{Answerer, HttpAnswer, HttpRequest, Refused};
use crate::error::AgentError;
use crate::peer::Peer;
use crate::state::AgentState;
use crate::tokens::TokenQuery;
use jwtagent::config::Profile;
use jwtagent::protocol::{EndpointKind, EndpointStarted, ErrorCode};
use jwtagent::secret::Secret;
use serde_json::json;
use std::sync::Arc;

const METADATA: &str = "/computeMetadata/v1/";

/// Starts the endpoint of `kind` for profile `name`, which lives as long
/// as `peer`'s process (`jwtagent exec`, then the command it runs).
pub(crate) async fn start(
    state: &AgentState,
    peer: &Peer,
    name: &str,
    kind: EndpointKind,
) -> Result<EndpointStarted, AgentError> {
    let profile = state.profiles.get(name)?;
    if profile.dpop {
        return Err(AgentError::Endpoint(format!(
            "profile {name:?} has DPoP-bound tokens, which the cloud SDKs cannot use (they send Bearer tokens)"
        )));
    }
    let me = state
        .me
        .get()
        .and_then(std::sync::Weak::upgrade)
        .ok_or_else(|| AgentError::Internal("the agent's state is not shared".into()))?;
    let holder = peer
        .pid
        .and_then(|pid| crate::peer::resolve(pid, crate::peer::boot_ticks_now()?))
        .map(|(_, holder)| holder)
        .ok_or_else(|| {
            AgentError::Endpoint("cannot tell which process asked, so not how long to serve".into())
        })?;
    let listener = tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
        .await
        .map_err(|e| AgentError::Endpoint(format!("cannot listen on loopback: {e}")))?;
    let port = listener
        .local_addr()
        .map_err(|e| AgentError::Endpoint(e.to_string()))?
        .port();
    let secret = match kind {
        EndpointKind::AzureIdentity => Some(Secret::new(
            crate::oauth::random_id()
                .map_err(|e| AgentError::Internal(e.to_string()))?
                .into_bytes(),
        )),
        EndpointKind::GcpMetadata => None,
    };
    let answer = answerer(me.clone(), name.to_string(), kind, secret.clone());
    let audit = me.clone();
    let refused: Refused = Arc::new(move |peer: &Peer| {
        let record = crate::audit::Record::new(peer, "connect", None, "denied");
        audit.audit.record(&record);
    });
    tracing::info!(profile = %name, ?kind, port, "endpoint started");
    let owner = name.to_string();
    tokio::spawn(async move {
        crate::endpoints::serve(listener, holder.exit(), answer, refused).await;
        tracing::info!(profile = %owner, port, "endpoint stopped: its process exited");
    });
    Ok(EndpointStarted { port, secret })
}

fn answerer(
    state: Arc<AgentState>,
    name: String,
    kind: EndpointKind,
    secret: Option<Secret>,
) -> Answerer {
    Arc::new(move |peer: Arc<Peer>, request: HttpRequest| {
        let (state, name, secret) = (state.clone(), name.clone(), secret.clone());
        Box::pin(async move {
            match kind {
                EndpointKind::GcpMetadata => gcp(&state, &name, &peer, request).await,
                EndpointKind::AzureIdentity => azure(&state, &name, secret, &peer, request).await,
            }
        })
    })
}

/// The metadata server's answers that Google's client libraries read: the
/// ping, the default service account (its email, scopes and token), and
/// nothing else.
async fn gcp(state: &AgentState, name: &str, peer: &Peer, request: HttpRequest) -> HttpAnswer {
    let mut answer = gcp_answer(state, name, peer, &request).await;
    answer.headers.push(("metadata-flavor", "Google"));
    answer
}

async fn gcp_answer(
    state: &AgentState,
    name: &str,
    peer: &Peer,
    request: &HttpRequest,
) -> HttpAnswer {
    let text = |status, body: &str| HttpAnswer::new(status, "text/plain", body.as_bytes().to_vec());
    if request.header("metadata-flavor") != Some("Google") {
        return text(403, "Missing required header: Metadata-Flavor: Google");
    }
    if request.header("x-forwarded-for").is_some() {
        return text(403, "Request denied: X-Forwarded-For");
    }
    if request.method != "GET" {
        return text(405, "only GET");
    }
    let Ok(profile) = state.profiles.get(name) else {
        return text(404, "the profile is gone");
    };
    if request.path == "/" {
        return text(200, "");
    }
    let Some(rest) = request.path.strip_prefix(METADATA) else {
        return text(404, "not found");
    };
    let email = profile.client_id.as_str();
    if rest == "instance/service-accounts/" {
        return text(200, &format!("default/\n{email}/\n"));
    }
    let account = rest
        .strip_prefix("instance/service-accounts/default/")
        .or_else(|| rest.strip_prefix(&format!("instance/service-accounts/{email}/")));
    let scopes = gcp_scopes(&profile);
    match account {
        Some("") if request.query("recursive") == Some("true") => HttpAnswer::json(
            200,
            &json!({"email": email, "scopes": scopes, "aliases": ["default"]}),
        ),
        Some("") => text(200, "aliases\nemail\nscopes\ntoken\n"),
        Some("email") => text(200, email),
        Some("scopes") => text(200, &format!("{}\n", scopes.join("\n"))),
        Some("aliases") => text(200, "default\n"),
        Some("token") => {
            let asked = request.query("scopes").map(|s| {
                s.split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            });
            let query = TokenQuery {
                name: name.to_string(),
                scopes: asked,
                ..TokenQuery::default()
            };
            match super::token::for_caller(state, peer, "gcp_metadata", query).await {
                Ok(served) => HttpAnswer::json(
                    200,
                    &json!({
                        "access_token": token_text(&served.token),
                        "expires_in": expires_in(served.expires_at),
                        "token_type": "Bearer",
                    }),
                ),
                Err(e) => text(status_of(&e), &e.to_string()),
            }
        }
        _ => text(404, "not found"),
    }
}

/// The scopes the default service account is said to have: the profile's.
fn gcp_scopes(profile: &Profile) -> Vec<String> {
    profile.scopes.clone()
}

/// The App Service managed identity protocol: `GET
/// IDENTITY_ENDPOINT?api-version=2019-08-01&resource=R` with the secret.
async fn azure(
    state: &AgentState,
    name: &str,
    secret: Option<Secret>,
    peer: &Peer,
    request: HttpRequest,
) -> HttpAnswer {
    let fail = |status: u16, message: String| {
        HttpAnswer::json(status, &json!({"statusCode": status, "message": message}))
    };
    let given = request.header("x-identity-header").unwrap_or_default();
    let expected = secret.as_ref().map_or(&[][..], |s| s.expose());
    if expected.is_empty()
        || aws_lc_rs::constant_time::verify_slices_are_equal(given.as_bytes(), expected).is_err()
    {
        return fail(401, "the X-IDENTITY-HEADER is missing or wrong".into());
    }
    if request.method != "GET" {
        return fail(405, "only GET".into());
    }
    if request.query("api-version") != Some("2019-08-01") {
        return fail(400, "api-version must be 2019-08-01".into());
    }
    let Some(resource) = request.query("resource").filter(|r| !r.is_empty()) else {
        return fail(400, "resource is required".into());
    };
    let Ok(profile) = state.profiles.get(name) else {
        return fail(404, format!("profile {name:?} is gone"));
    };
    if !serves_resource(&profile, resource) {
        return fail(
            400,
            format!(
                "profile {name:?} is not for resource {resource:?} (its scopes: {:?}, resources: {:?})",
                profile.scopes, profile.resources
            ),
        );
    }
    let query = TokenQuery {
        name: name.to_string(),
        ..TokenQuery::default()
    };
    match super::token::for_caller(state, peer, "azure_identity", query).await {
        Ok(served) => {
            let expires_on = served
                .expires_at
                .unwrap_or_else(|| jwtagent::time::unix_now().saturating_add(300));
            HttpAnswer::json(
                200,
                &json!({
                    "access_token": token_text(&served.token),
                    "expires_on": expires_on.to_string(),
                    "resource": resource,
                    "token_type": "Bearer",
                    "client_id": profile.client_id,
                }),
            )
        }
        Err(e) => fail(status_of(&e), e.to_string()),
    }
}

/// Whether `resource` is what the profile's tokens are for: one of its
/// resources, its audience, or a scope `RESOURCE/.default` (or the resource
/// itself). A profile that names none serves any.
fn serves_resource(profile: &Profile, resource: &str) -> bool {
    let trimmed = resource.trim_end_matches('/');
    let same = |v: &str| v.trim_end_matches('/') == trimmed;
    let named =
        !profile.resources.is_empty() || !profile.scopes.is_empty() || profile.audience.is_some();
    !named
        || profile.resources.iter().any(|r| same(r))
        || profile.audience.as_deref().is_some_and(same)
        || profile
            .scopes
            .iter()
            .any(|s| same(s) || s.strip_suffix("/.default").is_some_and(same))
}

/// A served token as text (served tokens are visible ASCII).
fn token_text(token: &Secret) -> &str {
    std::str::from_utf8(token.expose()).unwrap_or_default()
}

fn expires_in(expires_at: Option<u64>) -> u64 {
    expires_at.map_or(300, |at| {
        at.saturating_sub(jwtagent::time::unix_now()).max(1)
    })
}

/// The HTTP status of a refused or failed token request.
fn status_of(e: &AgentError) -> u16 {
    match e.code() {
        ErrorCode::Denied | ErrorCode::ConfirmDenied | ErrorCode::ExpiredLifetime => 403,
        ErrorCode::Locked | ErrorCode::Sealed => 503,
        ErrorCode::LoginRequired => 401,
        ErrorCode::UnknownProfile => 404,
        ErrorCode::Network | ErrorCode::IdpError => 502,
        _ => 500,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jwtagent::config::AuthMethod;

    /// What an SDK is told of a refused or failed token: the status it
    /// acts on (401 sign in, 403 refused, 404 no such account, 502 the
    /// server, 503 locked), and how long a token lives.
    #[test]
    fn refusals_have_the_status_an_sdk_acts_on_and_tokens_their_lifetime() {
        use crate::error::LoginError;
        use crate::profiles::ProfileError;
        let name = || "web".to_string();
        for (e, status) in [
            (AgentError::Login(LoginError::Abandoned(name(), 15)), 401),
            (AgentError::Login(LoginError::Expired(name())), 502),
            (AgentError::Profile(ProfileError::Unknown(name())), 404),
            (AgentError::Denied(name()), 403),
            (AgentError::ExpiredLifetime(name()), 403),
            (AgentError::Locked, 503),
            (AgentError::Sealed, 503),
            (AgentError::Internal(name()), 500),
        ] {
            assert_eq!(status_of(&e), status, "{e}");
        }
        assert_eq!(expires_in(None), 300, "a lifetime not said");
        assert_eq!(expires_in(Some(0)), 1, "past: at least a second");
        let left = expires_in(Some(jwtagent::time::unix_now() + 100));
        assert!((99..=100).contains(&left), "{left}");
    }

    #[test]
    fn a_resource_is_served_only_by_a_profile_for_it() {
        let mut p = Profile::new("https://login.example/token", "c", AuthMethod::None);
        assert!(serves_resource(&p, "https://anything.example"));
        p.scopes = vec!["https://management.azure.com/.default".into()];
        assert!(serves_resource(&p, "https://management.azure.com"));
        assert!(serves_resource(&p, "https://management.azure.com/"));
        assert!(!serves_resource(&p, "https://vault.azure.net"));
        p.scopes.clear();
        p.resources = vec!["https://api.example".into()];
        assert!(serves_resource(&p, "https://api.example"));
        assert!(!serves_resource(&p, "https://api.example.evil"));
        p.resources.clear();
        p.audience = Some("api://x".into());
        assert!(serves_resource(&p, "api://x"));
        assert!(!serves_resource(&p, "api://y"));
    }
}
