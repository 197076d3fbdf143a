//! A blocking client for the agent's socket.
//!
//! Blocking on purpose: the CLI makes one or two requests per process, and
//! starting no async runtime is what keeps `jwtagent token` within a millisecond.

use crate::protocol::{
    DpopAnswer, Empty, Envelope, ErrorBody, Hello, LoggedOut, LoginProgress, LoginStarted,
    PROTOCOL_VERSION, Request, Response, Status, TokenAnswer, WhoAmI,
};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;
use zeroize::{Zeroize, Zeroizing};

/// Longest response line the client accepts. Larger than a request line: a
/// `status` of many profiles is allowed to be long.
const MAX_RESPONSE_LINE: u64 = 16 * 1024 * 1024;

/// How long one request may take before the client gives up on the agent.
/// Token requests may wait on the authorization server (30 s total), so this is
/// comfortably above that.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long to keep trying to connect while the agent's accept queue is full.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing answers on the socket: not started, stale file, or wrong path.
    #[error("no agent is listening on {path}: {source}")]
    NotRunning { path: PathBuf, source: io::Error },
    /// The connection broke mid-request. (`cause`, not `source`: the message
    /// already says it, and a source would print it twice in an error chain.)
    #[error("lost the connection to the agent on {path}: {cause}")]
    Io { path: PathBuf, cause: io::Error },
    /// The agent answered something that is not a valid response.
    #[error("the agent on {path} sent an invalid response: {detail}")]
    Protocol { path: PathBuf, detail: String },
    /// Something other than this user's (or root's) process listens on the
    /// socket: nothing is sent to it.
    #[error(
        "refusing the agent on {path}: it runs as uid {uid}, not as you (uid {me}) or root; another user may have put it there. Nothing was sent to it. Stop using that socket (check JWTAGENT_SOCK and the socket's directory)"
    )]
    UntrustedPeer { path: PathBuf, uid: u32, me: u32 },
    /// The agent did not answer (or accept the connection) in time.
    #[error(
        "the agent on {path} did not {what} within {}s; it may be stopped or overloaded (check `jwtagent status`, or raise --timeout)", .after.as_secs_f64()
    )]
    Timeout {
        path: PathBuf,
        what: &'static str,
        after: Duration,
    },
    /// The agent speaks another protocol version.
    #[error(
        "the agent on {path} speaks protocol {agent} (version {agent_version}) but this jwtagent speaks {client}; stop it with `jwtagent stop` and start this version"
    )]
    VersionMismatch {
        path: PathBuf,
        agent: u32,
        agent_version: String,
        client: u32,
    },
    /// The agent answered with an error.
    #[error("{0}")]
    Agent(ErrorBody),
    /// The default socket's directory is not safe to use: nothing is sent.
    #[error(transparent)]
    UnsafeDir(#[from] crate::paths::DirError),
}

/// What a token request asks beyond the profile: empty lists mean the
/// profile's own scopes and resources.
#[derive(Debug, Clone, Default)]
pub struct TokenOptions {
    /// The token must still be valid for this long.
    pub min_ttl: Option<Duration>,
    pub scopes: Vec<String>,
    pub resources: Vec<String>,
    /// Fetch a new token even if one is cached (and even while backing off).
    pub force: bool,
    /// Also get the ID token the server issued with it.
    pub id_token: bool,
}

impl TokenOptions {
    fn min_ttl(&self) -> Option<u64> {
        self.min_ttl.map(|d| d.as_secs())
    }

    fn scopes(&self) -> Option<Vec<String>> {
        (!self.scopes.is_empty()).then(|| self.scopes.clone())
    }

    fn resources(&self) -> Option<Vec<String>> {
        (!self.resources.is_empty()).then(|| self.resources.clone())
    }
}

/// One connection to the agent; it may carry many requests.
pub struct Client {
    path: PathBuf,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    next_id: u64,
    line: Vec<u8>,
    timeout: Duration,
}

/// A Unix-socket connect that gives up after `timeout`. A non-blocking connect
/// to a Unix socket whose accept queue is full fails with EAGAIN at once (it
/// never completes later, as TCP's does), so it is retried until the deadline.
fn connect_bounded(path: &Path, timeout: Duration) -> Result<UnixStream, ClientError> {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let not_running = |source: io::Error| ClientError::NotRunning {
        path: path.to_path_buf(),
        source,
    };
    let addr = SocketAddrUnix::new(path).map_err(|e| not_running(e.into()))?;
    let deadline = std::time::Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        let fd = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            None,
        )
        .map_err(|e| not_running(e.into()))?;
        match rustix::net::connect(&fd, &addr) {
            Ok(()) => {
                let stream = UnixStream::from(fd);
                stream.set_nonblocking(false).map_err(not_running)?;
                return Ok(stream);
            }
            Err(rustix::io::Errno::AGAIN) if std::time::Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            Err(rustix::io::Errno::AGAIN) => {
                return Err(ClientError::Timeout {
                    path: path.to_path_buf(),
                    what: "accept the connection",
                    after: timeout,
                });
            }
            Err(e) => return Err(not_running(e.into())),
        }
    }
}

impl Client {
    /// Connects to the agent's socket with the default timeout. Does not send
    /// anything; see [`Client::connect_timeout`].
    pub fn connect(path: &Path) -> Result<Client, ClientError> {
        Client::connect_timeout(path, DEFAULT_TIMEOUT)
    }

    /// Connects to the agent's socket and checks who is on the other end
    /// (SO_PEERCRED): only a process of this user or of root is trusted, before
    /// anything is sent. `timeout` bounds the connect (an agent whose accept
    /// queue is full makes a blocking connect wait for ever) and each read and
    /// write of a request.
    pub fn connect_timeout(path: &Path, timeout: Duration) -> Result<Client, ClientError> {
        let stream = connect_bounded(path, timeout.min(CONNECT_TIMEOUT))?;
        let io_err = |cause| ClientError::Io {
            path: path.to_path_buf(),
            cause,
        };
        let peer = rustix::net::sockopt::socket_peercred(&stream)
            .map_err(|e| io_err(e.into()))?
            .uid;
        let me = rustix::process::geteuid();
        if peer != me && !peer.is_root() {
            return Err(ClientError::UntrustedPeer {
                path: path.to_path_buf(),
                uid: peer.as_raw(),
                me: me.as_raw(),
            });
        }
        stream.set_read_timeout(Some(timeout)).map_err(io_err)?;
        stream.set_write_timeout(Some(timeout)).map_err(io_err)?;
        let writer = stream.try_clone().map_err(io_err)?;
        Ok(Client {
            path: path.to_path_buf(),
            reader: BufReader::new(stream),
            writer,
            next_id: 1,
            line: Vec::with_capacity(512),
            timeout,
        })
    }

    /// Connects and checks the protocol version with `hello`.
    pub fn connect_checked(path: &Path) -> Result<(Client, Hello), ClientError> {
        Client::connect_checked_timeout(path, DEFAULT_TIMEOUT)
    }

    /// [`Client::connect_checked`] with a timeout of the caller's choosing.
    pub fn connect_checked_timeout(
        path: &Path,
        timeout: Duration,
    ) -> Result<(Client, Hello), ClientError> {
        let mut client = Client::connect_timeout(path, timeout)?;
        let hello = client.hello()?;
        Ok((client, hello))
    }

    /// The socket this client is connected to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sends one request and reads its response.
    pub fn call<T: DeserializeOwned>(&mut self, request: &Request) -> Result<T, ClientError> {
        let (ids, line) = self.encode(&[request])?;
        let written = self.writer.write_all(&line);
        self.receive(&ids[0], written)
    }

    /// `hello` and `request` in one write, then both answers: one round trip
    /// where [`Client::hello`] then [`Client::call`] take two. An agent of
    /// another protocol fails with [`ClientError::VersionMismatch`], and its
    /// answer to `request` is not read.
    pub fn call_after_hello<T: DeserializeOwned>(
        &mut self,
        request: &Request,
    ) -> Result<(Hello, T), ClientError> {
        let (ids, lines) = self.encode(&[&Request::Hello, request])?;
        let written = self.writer.write_all(&lines);
        let hello = self.receive(&ids[0], written)?;
        let hello = self.checked(hello)?;
        let answer = self.receive(&ids[1], Ok(()))?;
        Ok((hello, answer))
    }

    /// The lines of `requests`, with fresh ids. A request may carry a secret
    /// (`add`): the encoded lines are wiped after use.
    fn encode(
        &mut self,
        requests: &[&Request],
    ) -> Result<(Vec<Value>, Zeroizing<Vec<u8>>), ClientError> {
        let mut ids = Vec::with_capacity(requests.len());
        let mut lines = Zeroizing::new(Vec::new());
        for request in requests {
            let id = Value::from(self.next_id);
            self.next_id += 1;
            serde_json::to_writer(&mut *lines, &Envelope { id: &id, request })
                .map_err(|e| self.protocol(format!("cannot encode request: {e}")))?;
            lines.push(b'\n');
            ids.push(id);
        }
        Ok((ids, lines))
    }

    /// Reads the answer to the request `id` (whose write ended as `written`).
    fn receive<T: DeserializeOwned>(
        &mut self,
        id: &Value,
        written: io::Result<()>,
    ) -> Result<T, ClientError> {
        // Even when the write failed, the agent may have answered first: a
        // refused peer gets its `denied` line and is disconnected at once.
        self.line.clear();
        let n = (&mut self.reader)
            .take(MAX_RESPONSE_LINE)
            .read_until(b'\n', &mut self.line);
        let n = match (written, n) {
            (Ok(()), Ok(n)) => n,
            (Ok(()), Err(e)) => return Err(self.io(e)),
            (Err(e), _) if is_timeout(&e) => return Err(self.io(e)),
            (Err(e), Ok(n)) if n > 0 => {
                return match serde_json::from_slice::<Response<serde::de::IgnoredAny>>(&self.line) {
                    Ok(Response {
                        result: Err(error), ..
                    }) => Err(ClientError::Agent(error)),
                    _ => Err(self.io(e)),
                };
            }
            (Err(e), _) => return Err(self.io(e)),
        };
        if n == 0 {
            return Err(self.io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the agent closed the connection",
            )));
        }
        if self.line.last() != Some(&b'\n') {
            return Err(self.protocol("response line is truncated or too long".into()));
        }
        let parsed = serde_json::from_slice::<Response<T>>(&self.line);
        // A `token` answer carries the token: wipe the raw line once parsed.
        self.line.zeroize();
        let response = parsed.map_err(|e| self.protocol(format!("{e}")))?;
        // Errors the agent finds before it can read a request (a refused peer,
        // an oversized line) carry a null id.
        if response.id.is_null()
            && let Err(error) = response.result
        {
            return Err(ClientError::Agent(error));
        }
        if response.id != *id {
            return Err(self.protocol(format!(
                "response id {} does not match request id {id}",
                response.id
            )));
        }
        response.result.map_err(ClientError::Agent)
    }

    /// `hello`, failing with [`ClientError::VersionMismatch`] on another protocol.
    pub fn hello(&mut self) -> Result<Hello, ClientError> {
        let hello = self.call(&Request::Hello)?;
        self.checked(hello)
    }

    /// `hello` if it names this client's protocol, else the mismatch.
    fn checked(&self, hello: Hello) -> Result<Hello, ClientError> {
        if hello.protocol != PROTOCOL_VERSION {
            return Err(ClientError::VersionMismatch {
                path: self.path.clone(),
                agent: hello.protocol,
                agent_version: hello.version,
                client: PROTOCOL_VERSION,
            });
        }
        Ok(hello)
    }

    /// A token of profile `name`: the cached one, or a new one the agent
    /// fetches (`options` as for the `token` op).
    pub fn token(
        &mut self,
        name: &str,
        options: &TokenOptions,
    ) -> Result<TokenAnswer, ClientError> {
        self.call(&token_request(name, options))
    }

    /// [`Client::token`] on a connection that has not said `hello` yet:
    /// both in one round trip.
    pub fn token_after_hello(
        &mut self,
        name: &str,
        options: &TokenOptions,
    ) -> Result<TokenAnswer, ClientError> {
        self.call_after_hello(&token_request(name, options))
            .map(|(_, answer)| answer)
    }

    /// Starts (or joins) signing in as a user for profile `name`.
    /// `headless`: the user has no browser where this runs (see
    /// [`Request::Login`]).
    pub fn login(&mut self, name: &str, headless: bool) -> Result<LoginStarted, ClientError> {
        self.call(&Request::Login {
            name: name.to_string(),
            headless,
        })
    }

    /// Waits up to `wait` for the sign-in under way for `name`.
    pub fn login_wait(&mut self, name: &str, wait: Duration) -> Result<LoginProgress, ClientError> {
        self.call(&Request::LoginWait {
            name: name.to_string(),
            wait_secs: Some(wait.as_secs()),
        })
    }

    /// Revokes and deletes the refresh token of user profile `name`.
    pub fn whoami(&mut self, name: &str) -> Result<WhoAmI, ClientError> {
        self.call(&Request::Whoami {
            name: name.to_string(),
        })
    }

    pub fn logout(&mut self, name: &str) -> Result<LoggedOut, ClientError> {
        self.call(&Request::Logout {
            name: name.to_string(),
        })
    }

    /// A DPoP proof for one request (`method` on `url`), with the token of
    /// profile `name` it is bound to. `nonce` is a resource server's
    /// `DPoP-Nonce`.
    pub fn dpop_proof(
        &mut self,
        name: &str,
        method: &str,
        url: &str,
        nonce: Option<&str>,
        options: &TokenOptions,
    ) -> Result<DpopAnswer, ClientError> {
        self.call(&Request::DpopProof {
            name: name.to_string(),
            method: method.to_string(),
            url: url.to_string(),
            nonce: nonce.map(str::to_string),
            min_ttl: options.min_ttl(),
            scopes: options.scopes(),
            resources: options.resources(),
            force: options.force,
        })
    }

    pub fn status(&mut self) -> Result<Status, ClientError> {
        self.call(&Request::Status)
    }

    /// Asks the agent to stop. Returns once the agent acknowledged it.
    pub fn stop(&mut self) -> Result<(), ClientError> {
        self.call::<Empty>(&Request::Stop).map(|_| ())
    }

    fn io(&self, source: io::Error) -> ClientError {
        if is_timeout(&source) {
            return ClientError::Timeout {
                path: self.path.clone(),
                what: "answer",
                after: self.timeout,
            };
        }
        ClientError::Io {
            path: self.path.clone(),
            cause: source,
        }
    }

    fn protocol(&self, detail: String) -> ClientError {
        ClientError::Protocol {
            path: self.path.clone(),
            detail,
        }
    }
}

fn token_request(name: &str, options: &TokenOptions) -> Request {
    Request::Token {
        name: name.to_string(),
        min_ttl: options.min_ttl(),
        scopes: options.scopes(),
        resources: options.resources(),
        force: options.force,
        id_token: options.id_token,
    }
}

/// A read or write timeout surfaces as WouldBlock or TimedOut.
fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}
