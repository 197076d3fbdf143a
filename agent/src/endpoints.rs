//! Loopback HTTP endpoints for programs that cannot ask the socket (the
//! cloud SDKs' metadata and managed-identity protocols): the server side.
//! Every connection's peer is found before a byte of it is read: the uid
//! that owns its socket (`/proc/net/tcp`), and the process holding it; a
//! connection of another uid is closed unanswered. Requests are small
//! HTTP/1.1 GETs, read with bounds, answered with a length, kept alive.

use crate::peer::Peer;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The longest request head read.
const MAX_HEAD: usize = 16 * 1024;
/// Headers read at most.
const MAX_HEADERS: usize = 64;
/// A kept-alive connection with no request for this long is closed.
const IDLE: Duration = Duration::from_secs(30);
/// Connections open at once, at most.
const MAX_CONNECTIONS: usize = 64;

/// One request: its method, path, query and headers (names in lower case).
#[derive(Debug, Default)]
pub(crate) struct HttpRequest {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
}

impl HttpRequest {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// An answer: status, content type, body (wiped once sent: it may hold a
/// token), and headers of its own.
pub(crate) struct HttpAnswer {
    pub status: u16,
    pub content_type: &'static str,
    pub body: zeroize::Zeroizing<Vec<u8>>,
    pub headers: Vec<(&'static str, &'static str)>,
}

impl HttpAnswer {
    pub(crate) fn new(status: u16, content_type: &'static str, body: Vec<u8>) -> HttpAnswer {
        HttpAnswer {
            status,
            content_type,
            body: zeroize::Zeroizing::new(body),
            headers: vec![],
        }
    }

    pub(crate) fn json(status: u16, value: &serde_json::Value) -> HttpAnswer {
        HttpAnswer::new(
            status,
            "application/json",
            serde_json::to_vec(value).unwrap_or_default(),
        )
    }
}

/// What answers a request of `peer`.
pub(crate) type Answerer = Arc<
    dyn Fn(Arc<Peer>, HttpRequest) -> Pin<Box<dyn Future<Output = HttpAnswer> + Send>>
        + Send
        + Sync,
>;

/// What is told of a connection refused because of who made it.
pub(crate) type Refused = Arc<dyn Fn(&Peer) + Send + Sync>;

/// Serves `listener` until `until` is done: each connection of the agent's
/// own uid gets its requests answered by `answer`; one of another uid is
/// closed unanswered, and `refused` is told.
pub(crate) async fn serve(
    listener: TcpListener,
    until: impl Future<Output = ()>,
    answer: Answerer,
    refused: Refused,
) {
    let open = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let accepting = async {
        loop {
            let (stream, from) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors, say: no spinning until it passes.
                    tracing::warn!(error = %e, "an endpoint cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(permit) = open.clone().try_acquire_owned() else {
                tracing::warn!("an endpoint has too many connections; one is closed");
                continue;
            };
            let (answer, refused) = (answer.clone(), refused.clone());
            let ours = listener.local_addr();
            tokio::spawn(async move {
                let _permit = permit;
                let Ok(ours) = ours else { return };
                let Some(peer) = identify(ours, from, &refused).await else {
                    return;
                };
                connection(stream, Arc::new(peer), answer).await;
            });
        }
    };
    tokio::select! {
        _ = until => {}
        _ = accepting => {}
    }
}

/// The peer of the connection from `from` to `ours`, if it is of the
/// agent's uid.
async fn identify(ours: SocketAddr, from: SocketAddr, refused: &Refused) -> Option<Peer> {
    let accepted_at = crate::peer::boot_ticks_now().unwrap_or(u64::MAX);
    let found = tokio::task::spawn_blocking(move || {
        let (uid, inode) = crate::loopback::peer_socket(ours, from)?;
        let pid = crate::loopback::socket_holder(uid, inode);
        let exe = pid.and_then(|pid| crate::peer::resolve_exe(pid, accepted_at));
        Some(Peer {
            uid,
            pid,
            exe,
            ..Peer::default()
        })
    })
    .await
    .ok()
    .flatten();
    let Some(peer) = found else {
        tracing::warn!(%from, "an endpoint connection whose owner the kernel does not list was closed");
        return None;
    };
    if peer.uid != rustix::process::geteuid().as_raw() {
        tracing::warn!(peer_uid = peer.uid, peer_pid = ?peer.pid, peer_exe = %peer.exe_display(), "refused an endpoint connection from another user");
        refused(&peer);
        return None;
    }
    Some(peer)
}

/// Answers the connection's requests, one after the other, until it closes,
/// idles, or sends what is not a request this endpoint reads.
async fn connection(mut stream: TcpStream, peer: Arc<Peer>, answer: Answerer) {
    let mut buf = Vec::with_capacity(1024);
    loop {
        let request = match tokio::time::timeout(IDLE, read_request(&mut stream, &mut buf)).await {
            Ok(Ok(Some(request))) => request,
            Ok(Err(why)) => {
                let mut bad = HttpAnswer::new(400, "text/plain", why.as_bytes().to_vec());
                bad.headers.push(("connection", "close"));
                let _ = write_answer(&mut stream, bad).await;
                return;
            }
            _ => return,
        };
        let answered = answer(peer.clone(), request).await;
        if write_answer(&mut stream, answered).await.is_err() {
            return;
        }
    }
}

/// Reads one request head into `buf` (what follows it stays there for the
/// next); `None` at the end of the connection.
async fn read_request(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> Result<Option<HttpRequest>, &'static str> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            if end + 4 > MAX_HEAD {
                return Err("request head too large");
            }
            let head: Vec<u8> = buf.drain(..end + 4).collect();
            return parse_head(&head).map(Some);
        }
        if buf.len() > MAX_HEAD {
            return Err("request head too large");
        }
        let mut chunk = [0u8; 2048];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return Ok(None),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A request head: `METHOD TARGET HTTP/1.x`, then headers. A request with
/// a body is refused (these endpoints take GETs).
pub(crate) fn parse_head(head: &[u8]) -> Result<HttpRequest, &'static str> {
    let text = std::str::from_utf8(head).map_err(|_| "request head is not UTF-8")?;
    let mut lines = text.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let (method, target, version) = (first.next(), first.next(), first.next());
    let (Some(method), Some(target), Some(version)) = (method, target, version) else {
        return Err("malformed request line");
    };
    if !version.starts_with("HTTP/1.") || first.next().is_some() {
        return Err("malformed request line");
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut request = HttpRequest {
        method: method.to_string(),
        path: path.to_string(),
        query: url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect(),
        headers: vec![],
    };
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':').ok_or("malformed header")?;
        if request.headers.len() >= MAX_HEADERS {
            return Err("too many headers");
        }
        request
            .headers
            .push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let has_body = request.header("transfer-encoding").is_some()
        || request
            .header("content-length")
            .is_some_and(|n| n.trim() != "0");
    if has_body {
        return Err("a request with a body is not read here");
    }
    Ok(request)
}

async fn write_answer(stream: &mut TcpStream, answer: HttpAnswer) -> std::io::Result<()> {
    let reason = match answer.status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let mut head = format!(
        "HTTP/1.1 {} {reason}\r\ncontent-type: {}\r\ncontent-length: {}\r\ncache-control: no-store\r\n",
        answer.status,
        answer.content_type,
        answer.body.len()
    );
    for (name, value) in &answer.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut out = zeroize::Zeroizing::new(head.into_bytes());
    out.extend_from_slice(&answer.body);
    stream.write_all(&out).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_heads_are_read_with_their_query_and_headers() {
        let r = parse_head(
            b"GET /computeMetadata/v1/x?recursive=true&scopes=a%2Cb HTTP/1.1\r\nHost: h\r\nMetadata-Flavor:  Google \r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, "/computeMetadata/v1/x");
        assert_eq!(r.query("scopes"), Some("a,b"));
        assert_eq!(r.header("metadata-flavor"), Some("Google"));
        assert_eq!(r.header("x-forwarded-for"), None);
    }

    #[test]
    fn malformed_or_bodied_requests_are_refused() {
        for bad in [
            &b"GET /\r\n\r\n"[..],
            b"GET / HTTP/1.1 extra\r\n\r\n",
            b"GET / SPDY/3\r\n\r\n",
            b"GET / HTTP/1.1\r\nno colon\r\n\r\n",
            b"POST / HTTP/1.1\r\ncontent-length: 5\r\n\r\n",
            b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n",
            b"GET / HTTP/1.1\r\nx: \xff\r\n\r\n",
        ] {
            assert!(
                parse_head(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let many: String = (0..=MAX_HEADERS).map(|i| format!("h{i}: v\r\n")).collect();
        assert!(parse_head(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes()).is_err());
    }

    /// Sends `bytes` on a new connection to `addr`; the start of the answer.
    async fn roundtrip(addr: SocketAddr, bytes: &[u8]) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(bytes).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .unwrap()
            .unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[tokio::test]
    async fn heads_are_read_whole_up_to_their_bound_and_the_caller_is_known() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let answer: Answerer = {
            let seen = seen.clone();
            Arc::new(move |peer: Arc<Peer>, request: HttpRequest| {
                seen.lock()
                    .unwrap()
                    .push((peer.uid, peer.pid, request.path));
                Box::pin(async { HttpAnswer::new(200, "text/plain", b"ok".to_vec()) })
            })
        };
        let refused: Refused = Arc::new(|_: &Peer| {});
        tokio::spawn(serve(listener, std::future::pending(), answer, refused));
        // A head of 5,000 bytes, read in several pieces, is read whole.
        let big = format!("GET /a HTTP/1.1\r\nx-pad: {}\r\n\r\n", "p".repeat(5000));
        let answer = roundtrip(addr, big.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        // One over the bound is refused, and so is what is not HTTP.
        let huge = format!("GET /a HTTP/1.1\r\nx-pad: {}\r\n\r\n", "p".repeat(MAX_HEAD));
        let answer = roundtrip(addr, huge.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        let answer = roundtrip(addr, b"GARBAGE\r\n\r\n").await;
        assert!(
            answer.starts_with("HTTP/1.1 400") && answer.contains("malformed"),
            "{answer}"
        );
        // The caller: this process, of this uid.
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].0, rustix::process::geteuid().as_raw());
        assert_eq!(seen[0].1, Some(std::process::id()));
        assert_eq!(seen[0].2, "/a");
    }

    /// A server whose answer's status is the request's path (`/401`).
    async fn echo_status() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let answer: Answerer = Arc::new(|_: Arc<Peer>, request: HttpRequest| {
            let status = request.path[1..].parse().unwrap_or(200);
            Box::pin(async move { HttpAnswer::new(status, "text/plain", b"ok".to_vec()) })
        });
        let refused: Refused = Arc::new(|_: &Peer| {});
        tokio::spawn(serve(listener, std::future::pending(), answer, refused));
        addr
    }

    /// The bound is on the whole head, exactly; a connection that sends no
    /// end of head is cut off past it (not read on and on); requests sent
    /// back to back on one connection are each answered.
    #[tokio::test]
    async fn the_bound_is_exact_and_pipelined_requests_are_each_answered() {
        let addr = echo_status().await;
        let head = |len: usize| {
            let start = "GET /a HTTP/1.1\r\nx-pad: ";
            format!("{start}{}\r\n\r\n", "p".repeat(len - start.len() - 4))
        };
        let answer = roundtrip(addr, head(MAX_HEAD).as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let answer = roundtrip(addr, head(MAX_HEAD + 1).as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        let endless = "p".repeat(MAX_HEAD + 4096);
        let answer = roundtrip(addr, endless.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");

        let mut stream = TcpStream::connect(addr).await.unwrap();
        let two = format!("{}{}", head(600), "GET /404 HTTP/1.1\r\n\r\n");
        stream.write_all(two.as_bytes()).await.unwrap();
        let mut got = Vec::new();
        while got.windows(9).filter(|w| w == b"HTTP/1.1 ").count() < 2 {
            let mut buf = [0u8; 1024];
            let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "{}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
        let got = String::from_utf8_lossy(&got);
        assert!(
            got.starts_with("HTTP/1.1 200") && got.contains("HTTP/1.1 404"),
            "{got}"
        );
    }

    #[tokio::test]
    async fn each_status_has_its_reason() {
        let addr = echo_status().await;
        for (status, reason) in [
            (200, "OK"),
            (400, "Bad Request"),
            (401, "Unauthorized"),
            (403, "Forbidden"),
            (404, "Not Found"),
            (405, "Method Not Allowed"),
            (502, "Bad Gateway"),
            (503, "Service Unavailable"),
            (500, "Error"),
        ] {
            let request = format!("GET /{status} HTTP/1.1\r\n\r\n");
            let answer = roundtrip(addr, request.as_bytes()).await;
            let line = format!("HTTP/1.1 {status} {reason}\r\n");
            assert!(answer.starts_with(&line), "{answer}");
        }
    }
}
