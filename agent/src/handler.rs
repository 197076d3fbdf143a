//! Request handling: one parsed request in, one encoded response line out.
//!
//! Knows nothing of sockets. Later ops (profiles, tokens) plug in here and talk to
//! their own pieces (store, refresher); this module only dispatches.

use jwtagent::protocol::{
    Empty, ErrorBody, ErrorCode, Hello, PROTOCOL_VERSION, Request, Response, Status, parse_request,
};
use serde::Serialize;
use serde_json::Value;
use std::path::PathBuf;
use std::time::Instant;

/// What the agent knows about itself, shared by every connection.
#[derive(Debug)]
pub struct AgentState {
    pub started: Instant,
    pub pid: u32,
    pub socket: PathBuf,
}

impl AgentState {
    pub fn new(socket: PathBuf) -> Self {
        AgentState {
            started: Instant::now(),
            pid: std::process::id(),
            socket,
        }
    }
}

/// What the connection should do after sending the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    Continue,
    /// The request was `stop`: shut the agent down once the answer is sent.
    Shutdown,
}

/// Handles one request line (without its newline) and returns the response line
/// (with its newline).
pub async fn handle_line(state: &AgentState, line: &[u8]) -> (Vec<u8>, After) {
    let parsed = parse_request(line);
    let request = match parsed.request {
        Ok(request) => request,
        Err(error) => {
            tracing::debug!(code = %error.code, "rejected request");
            return (encode::<Empty>(parsed.id, Err(error)), After::Continue);
        }
    };
    tracing::trace!(op = request.op(), "request");
    match request {
        Request::Hello => (
            encode(
                parsed.id,
                Ok(Hello {
                    protocol: PROTOCOL_VERSION,
                    version: env!("CARGO_PKG_VERSION").to_string(),
                    pid: state.pid,
                }),
            ),
            After::Continue,
        ),
        Request::Status => (encode(parsed.id, Ok(status(state))), After::Continue),
        Request::Stop => {
            tracing::info!("stop requested by a client");
            (encode(parsed.id, Ok(Empty {})), After::Shutdown)
        }
    }
}

fn status(state: &AgentState) -> Status {
    Status {
        version: env!("CARGO_PKG_VERSION").to_string(),
        protocol: PROTOCOL_VERSION,
        pid: state.pid,
        uptime_secs: state.started.elapsed().as_secs(),
        socket: state.socket.display().to_string(),
        store: None,
        locked: false,
        profiles: Vec::new(),
    }
}

/// An error response line for cases found before a request could be parsed
/// (an oversized line, a refused peer).
pub fn error_line(code: ErrorCode, message: impl Into<String>) -> Vec<u8> {
    encode::<Empty>(Value::Null, Err(ErrorBody::new(code, message)))
}

fn encode<T: Serialize>(id: Value, result: Result<T, ErrorBody>) -> Vec<u8> {
    let response = Response { id, result };
    let mut line = match serde_json::to_vec(&response) {
        Ok(line) => line,
        Err(e) => {
            // Only reachable through a bug in a body type; still answer in protocol.
            tracing::error!(error = %e, "cannot encode response");
            let fallback: Response<Empty> = Response {
                id: response.id,
                result: Err(ErrorBody::new(
                    ErrorCode::Internal,
                    "cannot encode response",
                )),
            };
            serde_json::to_vec(&fallback).unwrap_or_default()
        }
    };
    line.push(b'\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn state() -> AgentState {
        AgentState::new(PathBuf::from("/tmp/x.sock"))
    }

    async fn call(line: &str) -> (Value, After) {
        let (out, after) = handle_line(&state(), line.as_bytes()).await;
        assert_eq!(out.last(), Some(&b'\n'));
        (serde_json::from_slice(&out).unwrap(), after)
    }

    #[tokio::test]
    async fn hello_reports_protocol_version_and_pid() {
        let (v, _) = call(r#"{"id":1,"op":"hello"}"#).await;
        assert_eq!(v["ok"], json!(true));
        assert_eq!(v["protocol"], json!(PROTOCOL_VERSION));
        assert_eq!(v["pid"], json!(std::process::id()));
    }

    #[tokio::test]
    async fn stop_answers_ok_then_asks_for_shutdown() {
        let (v, after) = call(r#"{"id":"s","op":"stop"}"#).await;
        assert_eq!(v, json!({"id": "s", "ok": true}));
        assert_eq!(after, After::Shutdown);
    }

    #[tokio::test]
    async fn not_yet_implemented_op_is_unknown_op() {
        let (v, after) = call(r#"{"id":2,"op":"token","name":"x"}"#).await;
        assert_eq!(v["error"]["code"], json!("unknown_op"));
        assert_eq!(v["id"], json!(2));
        assert_eq!(after, After::Continue);
    }

    #[tokio::test]
    async fn garbage_is_bad_request() {
        let (v, _) = call("\u{1}\u{2}garbage").await;
        assert_eq!(v["error"]["code"], json!("bad_request"));
        assert_eq!(v["id"], Value::Null);
    }
}
