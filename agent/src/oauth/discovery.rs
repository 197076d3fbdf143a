//! Discovery (OpenID Connect Discovery, RFC 8414): where an issuer's token
//! endpoint is, fetched once an hour per issuer and trust configuration.

use super::error::OAuthError;
use super::error::Step;
use super::http::{excerpt, network_error, read_body};
use jwtagent::config::check_endpoint;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use url::Url;

/// How long discovered metadata is reused.
const METADATA_TTL: Duration = Duration::from_secs(3600);

/// Authorization server metadata (the part jwtagent uses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Metadata {
    pub issuer: String,
    pub token_endpoint: Url,
    /// RFC 8705 §5: the token endpoint for clients that use mutual TLS,
    /// when the server has a separate one.
    pub mtls_token_endpoint: Option<Url>,
    /// Where users sign in: the authorization endpoint (RFC 6749 §3.1) and
    /// the device authorization endpoint (RFC 8628 §4), when the server has
    /// them; and where tokens are revoked (RFC 7009).
    pub authorization_endpoint: Option<Url>,
    pub device_authorization_endpoint: Option<Url>,
    pub revocation_endpoint: Option<Url>,
    /// Where clients are registered (RFC 7591), when the server lets them.
    pub registration_endpoint: Option<Url>,
}

type Discovered = HashMap<(String, Option<PathBuf>), (Metadata, Instant)>;

/// Discovered metadata by (issuer, CA file), with when it was fetched.
#[derive(Default)]
pub(crate) struct MetadataCache(tokio::sync::Mutex<Discovered>);

impl MetadataCache {
    /// The issuer's metadata, discovered now or within the last hour.
    pub(crate) async fn get(
        &self,
        http: &reqwest::Client,
        issuer: &str,
        ca_file: Option<&PathBuf>,
    ) -> Result<Metadata, OAuthError> {
        self.get_at(http, issuer, ca_file, Instant::now()).await
    }

    /// [`MetadataCache::get`] at time `now`.
    async fn get_at(
        &self,
        http: &reqwest::Client,
        issuer: &str,
        ca_file: Option<&PathBuf>,
        now: Instant,
    ) -> Result<Metadata, OAuthError> {
        let key = (issuer.to_string(), ca_file.cloned());
        let mut cache = self.0.lock().await;
        if let Some((meta, at)) = cache.get(&key)
            && now.saturating_duration_since(*at) < METADATA_TTL
        {
            return Ok(meta.clone());
        }
        let meta = discover(http, issuer).await?;
        tracing::info!(issuer, token_endpoint = %meta.token_endpoint, "discovered authorization server metadata");
        cache.insert(key, (meta.clone(), now));
        Ok(meta)
    }
}

/// Fetches the issuer's metadata: OpenID configuration first, then RFC 8414
/// (`/.well-known/oauth-authorization-server` inserted before the issuer's path).
/// The document's `issuer` must equal `issuer` exactly.
pub(crate) async fn discover(http: &reqwest::Client, issuer: &str) -> Result<Metadata, OAuthError> {
    let fail = |message: String| OAuthError::Discovery {
        issuer: issuer.to_string(),
        message,
    };
    let urls = metadata_urls(issuer).map_err(|e| fail(format!("not a URL: {e}")))?;
    let mut tried = Vec::new();
    for url in urls {
        let response = get(http, &url).await?;
        let (status, body) = read_body(&url, Step::Discovery, response).await?;
        if status != 200 {
            tried.push(format!("{url}: HTTP {status}"));
            continue;
        }
        #[derive(Deserialize)]
        struct Aliases {
            token_endpoint: Option<String>,
        }
        #[derive(Deserialize)]
        struct Doc {
            issuer: Option<String>,
            token_endpoint: Option<String>,
            mtls_endpoint_aliases: Option<Aliases>,
            authorization_endpoint: Option<String>,
            device_authorization_endpoint: Option<String>,
            revocation_endpoint: Option<String>,
            registration_endpoint: Option<String>,
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
        let mtls_token_endpoint = match doc.mtls_endpoint_aliases.and_then(|a| a.token_endpoint) {
            Some(alias) => Some(
                check_endpoint("mtls_endpoint_aliases.token_endpoint", &alias)
                    .map_err(|e| fail(e.to_string()))?,
            ),
            None => None,
        };
        let optional = |field: &'static str, value: Option<String>| match value {
            Some(v) => check_endpoint(field, &v)
                .map(Some)
                .map_err(|e| fail(e.to_string())),
            None => Ok(None),
        };
        return Ok(Metadata {
            issuer: found,
            token_endpoint,
            mtls_token_endpoint,
            authorization_endpoint: optional("authorization_endpoint", doc.authorization_endpoint)?,
            device_authorization_endpoint: optional(
                "device_authorization_endpoint",
                doc.device_authorization_endpoint,
            )?,
            revocation_endpoint: optional("revocation_endpoint", doc.revocation_endpoint)?,
            registration_endpoint: optional("registration_endpoint", doc.registration_endpoint)?,
        });
    }
    Err(fail(format!("no metadata found ({})", tried.join("; "))))
}

/// GETs `url`, and once more when the connection closed before any answer
/// (a pooled connection a proxy or the server had closed): a GET may be
/// repeated.
async fn get(http: &reqwest::Client, url: &Url) -> Result<reqwest::Response, OAuthError> {
    match http.get(url.clone()).send().await {
        Ok(response) => Ok(response),
        Err(e) if network_error(url, Step::Discovery, &e).unanswered() => {
            tracing::debug!(%url, "the connection closed before any answer; asking again");
            http.get(url.clone())
                .send()
                .await
                .map_err(|e| network_error(url, Step::Discovery, &e))
        }
        Err(e) => Err(network_error(url, Step::Discovery, &e)),
    }
}

/// Where an issuer's metadata may be: OpenID Connect Discovery appends
/// `/.well-known/openid-configuration` to the issuer; RFC 8414 §3.1 inserts
/// `/.well-known/oauth-authorization-server` between the host and the path.
pub(crate) fn metadata_urls(issuer: &str) -> Result<[Url; 2], url::ParseError> {
    let base = Url::parse(issuer)?;
    let oidc = Url::parse(&format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    ))?;
    let mut rfc8414 = base.clone();
    let path = base.path().trim_end_matches('/');
    rfc8414.set_path(&format!("/.well-known/oauth-authorization-server{path}"));
    Ok([oidc, rfc8414])
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// Serves `doc` (with `{issuer}` replaced by the server's own URL) to
    /// every request on a loopback port; the issuer's URL.
    async fn serve_metadata(doc: &'static str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let body = doc.replace("{issuer}", &issuer);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut head = [0u8; 4096];
                let _ = stream.read(&mut head).await;
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            }
        });
        issuer
    }

    /// Like [`serve_metadata`], counting the answers given; with
    /// `drop_first`, the first connection is closed once its request is in,
    /// unanswered.
    async fn serve_counted(
        doc: &'static str,
        drop_first: bool,
    ) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::Ordering::SeqCst;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let body = doc.replace("{issuer}", &issuer);
        let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = answered.clone();
        tokio::spawn(async move {
            let mut first = drop_first;
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut head = [0u8; 4096];
                let _ = stream.read(&mut head).await;
                if std::mem::take(&mut first) {
                    continue;
                }
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                count.fetch_add(1, SeqCst);
                let _ = stream.write_all(answer.as_bytes()).await;
            }
        });
        (issuer, answered)
    }

    const PLAIN: &str = r#"{"issuer":"{issuer}","token_endpoint":"{issuer}/token"}"#;

    #[tokio::test]
    async fn metadata_is_fetched_once_an_hour_per_issuer_and_ca_file() {
        use std::sync::atomic::Ordering::SeqCst;
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let (issuer, answered) = serve_counted(PLAIN, false).await;
        let cache = MetadataCache::default();
        let meta = cache.get(&http, &issuer, None).await.unwrap();
        assert_eq!(meta.token_endpoint.as_str(), format!("{issuer}/token"));
        cache.get(&http, &issuer, None).await.unwrap();
        assert_eq!(answered.load(SeqCst), 1, "the second came from the cache");
        let ca = PathBuf::from("/etc/ssl/other-ca.pem");
        cache.get(&http, &issuer, Some(&ca)).await.unwrap();
        assert_eq!(answered.load(SeqCst), 2, "another trust, another fetch");
        // Within the hour, from the cache; an hour later, fetched again.
        let now = Instant::now();
        let almost = now + METADATA_TTL - Duration::from_secs(60);
        cache.get_at(&http, &issuer, None, almost).await.unwrap();
        assert_eq!(answered.load(SeqCst), 2);
        cache
            .get_at(&http, &issuer, None, now + METADATA_TTL)
            .await
            .unwrap();
        assert_eq!(answered.load(SeqCst), 3);
        // Exactly an hour after it was fetched, it is fetched again.
        let third = PathBuf::from("/etc/ssl/third-ca.pem");
        cache
            .get_at(&http, &issuer, Some(&third), now)
            .await
            .unwrap();
        cache
            .get_at(&http, &issuer, Some(&third), now + METADATA_TTL)
            .await
            .unwrap();
        assert_eq!(answered.load(SeqCst), 5);
    }

    #[tokio::test]
    async fn a_connection_closed_before_any_answer_is_asked_again_once() {
        use std::sync::atomic::Ordering::SeqCst;
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let (issuer, answered) = serve_counted(PLAIN, true).await;
        let meta = discover(&http, &issuer).await.unwrap();
        assert_eq!(meta.issuer, issuer);
        assert_eq!(answered.load(SeqCst), 1);
    }

    #[tokio::test]
    async fn an_answer_that_is_not_http_is_not_asked_again() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut head = [0u8; 4096];
                let _ = stream.read(&mut head).await;
                let _ = stream.write_all(b"garbage\r\n\r\n").await;
            }
        });
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        assert!(discover(&http, &issuer).await.is_err());
        // Once: the first metadata URL's error ends the discovery.
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_discovered_endpoint_off_loopback_must_be_https() {
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        for field in [
            "token_endpoint",
            "authorization_endpoint",
            "revocation_endpoint",
            "registration_endpoint",
        ] {
            let doc: &'static str = match field {
                "token_endpoint" => {
                    r#"{"issuer":"{issuer}","token_endpoint":"http://idp.example/token"}"#
                }
                "authorization_endpoint" => {
                    r#"{"issuer":"{issuer}","token_endpoint":"{issuer}/token","authorization_endpoint":"http://idp.example/authorize"}"#
                }
                "registration_endpoint" => {
                    r#"{"issuer":"{issuer}","token_endpoint":"{issuer}/token","registration_endpoint":"http://idp.example/reg"}"#
                }
                _ => {
                    r#"{"issuer":"{issuer}","token_endpoint":"{issuer}/token","revocation_endpoint":"http://idp.example/revoke"}"#
                }
            };
            let issuer = serve_metadata(doc).await;
            let e = discover(&http, &issuer).await.unwrap_err().to_string();
            assert!(
                e.contains("uses http://") && e.contains(field),
                "{field}: {e}"
            );
        }
        // Loopback over plain http is fine (the test servers are).
        let issuer =
            serve_metadata(r#"{"issuer":"{issuer}","token_endpoint":"{issuer}/token"}"#).await;
        let meta = discover(&http, &issuer).await.unwrap();
        assert_eq!(meta.token_endpoint.as_str(), format!("{issuer}/token"));
    }
}
