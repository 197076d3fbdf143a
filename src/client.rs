//! A blocking client for the agent's socket.
//!
//! Blocking on purpose: the CLI makes one or two requests per process, and
//! starting no async runtime is what keeps `jwtagent token` within a millisecond.

use crate::protocol::{
    Empty, Envelope, ErrorBody, Hello, PROTOCOL_VERSION, Request, Response, Status,
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
const IO_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing answers on the socket: not started, stale file, or wrong path.
    #[error("no agent is listening on {path}: {source}")]
    NotRunning { path: PathBuf, source: io::Error },
    /// The connection broke or timed out mid-request.
    #[error("lost the connection to the agent on {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    /// The agent answered something that is not a valid response.
    #[error("the agent on {path} sent an invalid response: {detail}")]
    Protocol { path: PathBuf, detail: String },
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
}

/// One connection to the agent; it may carry many requests.
pub struct Client {
    path: PathBuf,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    next_id: u64,
    line: Vec<u8>,
}

impl Client {
    /// Connects to the agent's socket. Does not send anything.
    pub fn connect(path: &Path) -> Result<Client, ClientError> {
        let stream = UnixStream::connect(path).map_err(|source| ClientError::NotRunning {
            path: path.to_path_buf(),
            source,
        })?;
        let io_err = |source| ClientError::Io {
            path: path.to_path_buf(),
            source,
        };
        stream.set_read_timeout(Some(IO_TIMEOUT)).map_err(io_err)?;
        stream.set_write_timeout(Some(IO_TIMEOUT)).map_err(io_err)?;
        let writer = stream.try_clone().map_err(io_err)?;
        Ok(Client {
            path: path.to_path_buf(),
            reader: BufReader::new(stream),
            writer,
            next_id: 1,
            line: Vec::with_capacity(512),
        })
    }

    /// Connects and checks the protocol version with `hello`.
    pub fn connect_checked(path: &Path) -> Result<(Client, Hello), ClientError> {
        let mut client = Client::connect(path)?;
        let hello = client.hello()?;
        Ok((client, hello))
    }

    /// The socket this client is connected to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sends one request and reads its response.
    pub fn call<T: DeserializeOwned>(&mut self, request: &Request) -> Result<T, ClientError> {
        let id = Value::from(self.next_id);
        self.next_id += 1;
        // An `add` request carries a secret: the encoded line is wiped after use.
        let mut line = Zeroizing::new(
            serde_json::to_vec(&Envelope { id: &id, request })
                .map_err(|e| self.protocol(format!("cannot encode request: {e}")))?,
        );
        line.push(b'\n');
        let written = self.writer.write_all(&line);

        // Even when the write failed, the agent may have answered first: a
        // refused peer gets its `denied` line and is disconnected at once.
        self.line.clear();
        let n = (&mut self.reader)
            .take(MAX_RESPONSE_LINE)
            .read_until(b'\n', &mut self.line);
        let n = match (written, n) {
            (Ok(()), Ok(n)) => n,
            (Ok(()), Err(e)) => return Err(self.io(e)),
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
        if response.id != id {
            return Err(self.protocol(format!(
                "response id {} does not match request id {id}",
                response.id
            )));
        }
        response.result.map_err(ClientError::Agent)
    }

    /// `hello`, failing with [`ClientError::VersionMismatch`] on another protocol.
    pub fn hello(&mut self) -> Result<Hello, ClientError> {
        let hello: Hello = self.call(&Request::Hello)?;
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

    pub fn status(&mut self) -> Result<Status, ClientError> {
        self.call(&Request::Status)
    }

    /// Asks the agent to stop. Returns once the agent acknowledged it.
    pub fn stop(&mut self) -> Result<(), ClientError> {
        self.call::<Empty>(&Request::Stop).map(|_| ())
    }

    fn io(&self, source: io::Error) -> ClientError {
        ClientError::Io {
            path: self.path.clone(),
            source,
        }
    }

    fn protocol(&self, detail: String) -> ClientError {
        ClientError::Protocol {
            path: self.path.clone(),
            detail,
        }
    }
}
