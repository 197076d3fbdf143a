//! The HTTP side of talking to an authorization server: one client per trust
//! configuration, bounded bodies, and errors that name the host, never the URL
//! (which may carry a secret in a query) or the body of a success.

use super::error::{OAuthError, SetupError, Step};
use super::tls::{Identity, TlsProblem};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;
use url::Url;

pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub(crate) const TOTAL_TIMEOUT: Duration = Duration::from_secs(30);
/// How much of a non-JSON error body is shown.
const BODY_EXCERPT: usize = 300;
/// Largest response body read from an authorization server.
const MAX_BODY: usize = 1024 * 1024;
/// Idle connections kept to one server for the next token request. Not
/// more: profiles fetched together are refreshed together, and a burst of
/// 100 refreshes left 100 idle connections with their buffers for 90
/// seconds (2 MiB of the agent's 10 with 100 profiles).
const IDLE_PER_SERVER: usize = 4;

/// An HTTP client for one trust configuration (platform roots plus an optional
/// per-profile CA file), presenting `identity` when a server asks for a
/// client certificate.
pub(crate) fn http_client(
    ca_file: Option<&Path>,
    identity: Option<Identity>,
) -> Result<reqwest::Client, OAuthError> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(TOTAL_TIMEOUT)
        .pool_max_idle_per_host(IDLE_PER_SERVER)
        // A token endpoint that redirects is misconfigured; following it would
        // resend credentials to wherever it points.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("jwtagent/", env!("CARGO_PKG_VERSION")));
    builder = builder.tls_backend_preconfigured(
        super::tls::client_config(ca_file, identity).map_err(SetupError::from)?,
    );
    builder = super::proxy::proxies().apply(builder);
    builder
        .build()
        .map_err(|e| SetupError::Https(super::tls::TlsSetupError::Tls(e.to_string())).into())
}

/// Makes a client identity, when a client presenting it is first needed.
pub(crate) type MakeIdentity<'a> = &'a dyn Fn() -> Result<Identity, OAuthError>;

/// Which client: a trust configuration (a profile's CA file, if any), and
/// the profile whose client certificate it presents, if any.
type ClientKey = (Option<PathBuf>, Option<String>);

/// The HTTP clients in use, one per trust configuration (platform roots, plus
/// a profile's CA file) and client certificate: connections are reused across
/// token requests.
#[derive(Default)]
pub(crate) struct HttpClients(Mutex<HashMap<ClientKey, reqwest::Client>>);

impl HttpClients {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<ClientKey, reqwest::Client>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The client for `ca_file`, presenting the certificate of `identity`
    /// (an owner's id, and a way to make the identity when the client is not
    /// made yet).
    pub(crate) fn get(
        &self,
        ca_file: Option<&PathBuf>,
        identity: Option<(String, MakeIdentity<'_>)>,
    ) -> Result<reqwest::Client, OAuthError> {
        let key = (
            ca_file.cloned(),
            identity.as_ref().map(|(id, _)| id.clone()),
        );
        if let Some(client) = self.map().get(&key) {
            return Ok(client.clone());
        }
        let identity = match identity {
            Some((_, make)) => Some(make()?),
            None => None,
        };
        let client = http_client(ca_file.map(PathBuf::as_path), identity)?;
        self.map().insert(key, client.clone());
        Ok(client)
    }

    /// Drops the clients that present a certificate of `owner` (of any
    /// profile: None), and with them its private key.
    pub(crate) fn forget(&self, owner: Option<&str>) {
        self.map().retain(|(_, id), _| match (id, owner) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(id), Some(owner)) => !owns(owner, id),
        });
    }
}

/// Whether client id `id` (`NAME#GENERATION`) is one of profile `owner`'s.
fn owns(owner: &str, id: &str) -> bool {
    id.strip_prefix(owner)
        .is_some_and(|rest| rest.starts_with('#'))
}

pub(super) fn host_of(url: &Url) -> String {
    match url.port() {
        Some(port) => format!("{}:{port}", url.host_str().unwrap_or("?")),
        None => url.host_str().unwrap_or("?").to_string(),
    }
}

/// Describes a transport error by its cause, without the URL reqwest would
/// add; a refused certificate as what to do about it.
pub(super) fn network_error(url: &Url, step: Step, e: &reqwest::Error) -> OAuthError {
    if let Some(problem) = TlsProblem::find(e) {
        return OAuthError::Tls {
            step,
            host: host_of(url),
            problem,
        };
    }
    let mut cause = if e.is_connect() && e.is_timeout() {
        format!(
            "could not connect within {}s (timed out)",
            CONNECT_TIMEOUT.as_secs()
        )
    } else if e.is_timeout() {
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
    let via = super::proxy::proxies().describe(url);
    if via.is_some() && cause.ends_with("tunnel error: unsuccessful") {
        cause.push_str(
            " (the proxy refused to open a tunnel: check the user and password in the proxy URL, and that the proxy allows CONNECT to this host and port)",
        );
    }
    OAuthError::Network {
        step,
        host: host_of(url),
        via,
        cause,
        unanswered: unanswered(e),
    }
}

/// Whether `e` says the connection closed before the answer began: hyper's
/// "connection closed before message completed" on sending the request.
fn unanswered(e: &reqwest::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(hyper) = s.downcast_ref::<hyper::Error>() {
            return hyper.is_incomplete_message();
        }
        source = s.source();
    }
    false
}

pub(super) async fn read_body(
    url: &Url,
    step: Step,
    response: reqwest::Response,
) -> Result<(u16, Vec<u8>), OAuthError> {
    let status = response.status().as_u16();
    let mut response = response;
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| network_error(url, step, &e))?
    {
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

/// A server's free text (an `error_description`) read as bytes, so that a
/// stray invalid UTF-8 sequence costs the reader a U+FFFD, not the whole
/// answer: serde_json refuses such a string as a `String`.
pub(super) struct LossyText(pub String);

impl<'de> serde::Deserialize<'de> for LossyText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = LossyText;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_bytes<E>(self, bytes: &[u8]) -> Result<LossyText, E> {
                Ok(LossyText(String::from_utf8_lossy(bytes).into_owned()))
            }
        }
        d.deserialize_bytes(Visit)
    }
}

/// Server text as it may reach a terminal: control characters (an escape
/// sequence, a newline that fakes a second message) become U+FFFD.
pub(crate) fn printable(text: String) -> String {
    if text.chars().any(char::is_control) {
        text.chars()
            .map(|c| if c.is_control() { '\u{fffd}' } else { c })
            .collect()
    } else {
        text
    }
}

pub(super) fn excerpt(body: &[u8]) -> String {
    // Trimmed first: a body of blank lines is empty, not a U+FFFD.
    let text = printable(String::from_utf8_lossy(body).trim().to_string());
    let text = text.as_str();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_owns_the_clients_of_its_generations_only() {
        assert!(owns("api", "api#0"));
        assert!(owns("api", "api#12"));
        assert!(!owns("api", "api2#0"));
        assert!(!owns("api", "ap#0"));
        assert!(!owns("api", "api"));
    }

    /// A burst of requests to one server opens a connection each; when it
    /// is over, the client keeps `IDLE_PER_SERVER` of them and closes the
    /// rest (the server sees them closed), instead of holding all for 90 s.
    #[tokio::test]
    async fn a_burst_leaves_a_few_idle_connections_not_one_each() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        const BURST: usize = 10;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let closed = Arc::new(AtomicUsize::new(0));
        // Every connection of the burst is open before any is answered.
        let all_in = Arc::new(tokio::sync::Barrier::new(BURST));
        let seen = closed.clone();
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                let (closed, all_in) = (seen.clone(), all_in.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut first = true;
                    loop {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(_) => {}
                        }
                        if first {
                            all_in.wait().await;
                            first = false;
                        }
                        let answer = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
                        if stream.write_all(answer.as_bytes()).await.is_err() {
                            break;
                        }
                    }
                    closed.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        let client = http_client(None, None).unwrap();
        let url = format!("http://127.0.0.1:{port}/token");
        let requests = (0..BURST).map(|_| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move { client.get(url).send().await?.bytes().await })
        });
        for r in requests.collect::<Vec<_>>() {
            r.await.unwrap().unwrap();
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while closed.load(Ordering::SeqCst) < BURST - IDLE_PER_SERVER {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} of {BURST} connections closed after the burst",
                closed.load(Ordering::SeqCst)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(closed.load(Ordering::SeqCst), BURST - IDLE_PER_SERVER);
    }

    /// A server on loopback that answers every connection with `answer`
    /// (or, if None, closes it once the request is in); its port.
    async fn one_answer(answer: Option<Vec<u8>>) -> u16 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let answer = answer.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let _ = stream.read(&mut buf).await;
                    if let Some(answer) = answer {
                        let _ = stream.write_all(&answer).await;
                    }
                });
            }
        });
        port
    }

    fn ok_with_body(len: usize) -> Vec<u8> {
        let mut answer = format!("HTTP/1.1 200 OK\r\ncontent-length: {len}\r\n\r\n").into_bytes();
        answer.resize(answer.len() + len, b'x');
        answer
    }

    async fn body_of(port: u16) -> Result<(u16, Vec<u8>), OAuthError> {
        let url = Url::parse(&format!("http://127.0.0.1:{port}/token")).unwrap();
        let client = http_client(None, None).unwrap();
        let response = client.get(url.clone()).send().await;
        let response = response.map_err(|e| network_error(&url, Step::Token, &e))?;
        read_body(&url, Step::Token, response).await
    }

    #[tokio::test]
    async fn a_body_is_read_up_to_one_mib_and_refused_past_it() {
        let (status, body) = body_of(one_answer(Some(ok_with_body(MAX_BODY))).await)
            .await
            .unwrap();
        assert_eq!((status, body.len()), (200, 1024 * 1024));
        let port = one_answer(Some(ok_with_body(MAX_BODY + 1))).await;
        match body_of(port).await {
            Err(OAuthError::BadResponse {
                host,
                status: 200,
                what: "an oversized response",
                excerpt,
                ..
            }) => {
                assert_eq!(host, format!("127.0.0.1:{port}"));
                assert_eq!(excerpt, "more than 1048576 bytes");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn network_errors_name_the_host_and_the_cause_and_whether_anything_came() {
        // Nothing listens: refused.
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        match body_of(port).await {
            Err(OAuthError::Network {
                step: Step::Token,
                host,
                via: None,
                cause,
                unanswered: false,
            }) => {
                assert_eq!(host, format!("127.0.0.1:{port}"));
                assert!(cause.starts_with("connection failed: "), "{cause}");
            }
            other => panic!("{other:?}"),
        }
        // The connection closes before an answer: said, so it can be sent
        // again.
        match body_of(one_answer(None).await).await {
            Err(OAuthError::Network {
                cause,
                unanswered: true,
                ..
            }) => assert!(cause.starts_with("request failed: "), "{cause}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn server_text_is_shown_printable_and_cut() {
        assert_eq!(printable("plain".into()), "plain");
        assert_eq!(printable("a\u{1b}[2Jb\nc".into()), "a\u{fffd}[2Jb\u{fffd}c");
        assert_eq!(excerpt(b"  \n "), "(empty body)");
        assert_eq!(excerpt(b" short "), "short");
        let exactly = "é".repeat(BODY_EXCERPT);
        assert_eq!(excerpt(exactly.as_bytes()), exactly);
        let longer = format!("{exactly}z");
        assert_eq!(excerpt(longer.as_bytes()), format!("{exactly}…"));
        assert_eq!(excerpt(b"bad \xff byte\x07"), "bad \u{fffd} byte\u{fffd}");
        let with_port = Url::parse("https://idp.example:8443/t?secret=1").unwrap();
        assert_eq!(host_of(&with_port), "idp.example:8443");
        let without = Url::parse("https://idp.example/t").unwrap();
        assert_eq!(host_of(&without), "idp.example");
    }

    #[test]
    fn a_client_is_made_once_per_trust_and_certificate() {
        let clients = HttpClients::default();
        let made = std::cell::Cell::new(0);
        let make = || -> Result<Identity, OAuthError> {
            made.set(made.get() + 1);
            Err(OAuthError::Setup(SetupError::Https(
                super::super::tls::TlsSetupError::Tls("no identity here".into()),
            )))
        };
        clients.get(None, None).unwrap();
        clients.get(None, None).unwrap();
        assert_eq!(clients.map().len(), 1, "one client for the platform roots");
        let ca = PathBuf::from("/nonexistent/ca.pem");
        assert!(clients.get(Some(&ca), None).is_err(), "its CA file is read");
        assert_eq!(clients.map().len(), 1);
        // A client certificate's identity is made when its client is.
        assert!(clients.get(None, Some(("api#1".into(), &make))).is_err());
        assert_eq!(made.get(), 1);
        assert_eq!(clients.map().len(), 1);
    }

    #[test]
    fn forgetting_a_profile_drops_only_its_certificate_clients() {
        let clients = HttpClients::default();
        let plain = reqwest::Client::new();
        for id in [None, Some("api#1"), Some("api2#1")] {
            clients
                .map()
                .insert((None, id.map(str::to_string)), plain.clone());
        }
        clients.forget(Some("api"));
        let mut left: Vec<_> = clients.map().keys().map(|(_, id)| id.clone()).collect();
        left.sort();
        assert_eq!(left, [None, Some("api2#1".to_string())]);
        clients.forget(None);
        assert_eq!(clients.map().len(), 1, "the plain client stays");
    }
}
