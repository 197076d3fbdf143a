//! Request handling: one parsed request in, one encoded response line out.
//!
//! Knows nothing of sockets. Each op is answered by its own piece (profiles and
//! the keyring now; tokens and the refresher later); this module only dispatches.

use crate::audit::{Audit, Record};
use crate::lock::{Lock, LockError};
use crate::peer::Peer;
use crate::profiles::Profiles;
use crate::tokens::{TokenQuery, Tokens};
use jwtagent::protocol::{
    DpopAnswer, Empty, ErrorBody, ErrorCode, Hello, Id, PROTOCOL_VERSION, ProfileList,
    ProfileStatus, Request, Response, Shown, Status, TokenAnswer, TokenStatus, parse_request,
};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

/// What the agent knows, shared by every connection.
pub struct AgentState {
    pub started: Instant,
    pub pid: u32,
    pub socket: PathBuf,
    pub profiles: Arc<Profiles>,
    pub tokens: Tokens,
    pub lock: Lock,
    pub audit: Audit,
}

impl AgentState {
    pub fn new(socket: PathBuf, profiles: Profiles, audit: Audit) -> Self {
        let profiles = Arc::new(profiles);
        AgentState {
            started: Instant::now(),
            pid: std::process::id(),
            socket,
            tokens: Tokens::new(profiles.clone()),
            profiles,
            lock: Lock::default(),
            audit,
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
pub async fn handle_line(state: &AgentState, peer: &Peer, line: &[u8]) -> (Vec<u8>, After) {
    let parsed = parse_request(line);
    let request = match parsed.request {
        Ok(request) => request,
        Err(error) => {
            tracing::debug!(code = %error.code, "rejected request");
            return (encode::<Empty>(parsed.id, Err(error)), After::Continue);
        }
    };
    tracing::trace!(op = request.op(), "request");
    let open_while_locked = matches!(
        request,
        Request::Hello | Request::Status | Request::Unlock { .. } | Request::Stop
    );
    if !open_while_locked && state.lock.is_locked() {
        if let Request::Token { name, .. } | Request::DpopProof { name, .. } = &request {
            state
                .audit
                .record(&Record::new(peer, request.op(), Some(name), "locked"));
        }
        return (
            encode::<Empty>(parsed.id, Err(locked_error())),
            After::Continue,
        );
    }
    match request {
        Request::Lock { passphrase } => {
            let result = state.lock.lock(&passphrase).await;
            if result.is_ok() {
                // Nothing usable stays in memory while locked.
                state.tokens.clear();
                tracing::info!("agent locked");
            }
            (encode(parsed.id, lock_result(result)), After::Continue)
        }
        Request::Unlock { passphrase } => {
            let result = state.lock.unlock(&passphrase).await;
            if result.is_ok() {
                tracing::info!("agent unlocked");
            }
            (encode(parsed.id, lock_result(result)), After::Continue)
        }
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
        Request::Add {
            name,
            profile,
            secret,
        } => {
            let result = state.profiles.add(&name, *profile, secret).await;
            if result.is_ok() {
                // The profile changed: tokens fetched under the old one must go.
                state.tokens.forget(&name);
            }
            (
                encode(parsed.id, result.map_err(|e| e.to_body())),
                After::Continue,
            )
        }
        Request::Remove { name } => {
            let result = state.profiles.remove(&name).await;
            if result.is_ok() {
                state.tokens.forget(&name);
            }
            (
                encode(parsed.id, result.map_err(|e| e.to_body())),
                After::Continue,
            )
        }
        Request::List => {
            let result = state
                .profiles
                .list()
                .map(|profiles| ProfileList { profiles });
            (
                encode(parsed.id, result.map_err(|e| e.to_body())),
                After::Continue,
            )
        }
        Request::Token {
            name,
            min_ttl,
            scopes,
            resources,
            force,
        } => {
            let query = TokenQuery::new(name, min_ttl, scopes, resources, force);
            let result = token(state, peer, query).await;
            (encode(parsed.id, result), After::Continue)
        }
        Request::Keygen {
            name,
            profile,
            alg,
            force,
        } => {
            let result = state.profiles.keygen(&name, *profile, alg, force).await;
            if result.is_ok() {
                state.tokens.forget(&name);
            }
            (
                encode(parsed.id, result.map_err(|e| e.to_body())),
                After::Continue,
            )
        }
        Request::Jwks { name } => {
            let result = state.profiles.jwks(&name).await;
            (
                encode(parsed.id, result.map_err(|e| e.to_body())),
                After::Continue,
            )
        }
        Request::DpopProof {
            name,
            method,
            url,
            nonce,
            min_ttl,
            scopes,
            resources,
            force,
        } => {
            let query = TokenQuery::new(name, min_ttl, scopes, resources, force);
            let result = dpop_proof(state, peer, query, &method, &url, nonce.as_deref()).await;
            (encode(parsed.id, result), After::Continue)
        }
        Request::Show { name } => {
            let result = state
                .profiles
                .show(&name)
                .await
                .map(|profile| Shown { profile });
            (
                encode(parsed.id, result.map_err(|e| e.to_body())),
                After::Continue,
            )
        }
    }
}

/// The `token` op: the profile's caller policy, the token, and the audit record.
async fn token(
    state: &AgentState,
    peer: &Peer,
    query: TokenQuery,
) -> Result<TokenAnswer, ErrorBody> {
    let name = query.name.clone();
    audited(
        state,
        peer,
        "token",
        &name,
        |a: &TokenAnswer| &a.access_token,
        async { state.tokens.get(query).await },
    )
    .await
}

/// The `dpop_proof` op: like `token` (policy, audit), answered with a proof
/// and the token it is bound to.
async fn dpop_proof(
    state: &AgentState,
    peer: &Peer,
    query: TokenQuery,
    method: &str,
    url: &str,
    nonce: Option<&str>,
) -> Result<DpopAnswer, ErrorBody> {
    let name = query.name.clone();
    audited(
        state,
        peer,
        "dpop_proof",
        &name,
        |a: &DpopAnswer| &a.access_token,
        async { state.tokens.dpop_proof(query, method, url, nonce).await },
    )
    .await
}

/// Runs `serve` for an op that hands out a token of profile `name`, if the
/// profile's caller policy admits the peer, and records the outcome (with
/// the token's fingerprint) in the audit log.
async fn audited<T>(
    state: &AgentState,
    peer: &Peer,
    op: &'static str,
    name: &str,
    token_of: impl Fn(&T) -> &jwtagent::secret::Secret,
    serve: impl Future<Output = Result<T, ErrorBody>>,
) -> Result<T, ErrorBody> {
    if let Err(denied) = check_policy(state, peer, name) {
        tracing::warn!(profile = %name, op, peer_pid = ?peer.pid, peer_exe = %peer.exe_display(), "request denied by the profile's policy");
        state
            .audit
            .record(&Record::new(peer, op, Some(name), "denied"));
        return Err(denied);
    }
    let epoch = state.lock.epoch();
    let mut result = serve.await;
    // Locked while the request was in flight: the answer is not handed out
    // (it is dropped here, and wiped with it).
    if result.is_ok() && (state.lock.is_locked() || state.lock.epoch() != epoch) {
        result = Err(locked_error());
    }
    let outcome = match &result {
        Ok(_) => "ok",
        Err(e) => e.code.as_str(),
    };
    let mut record = Record::new(peer, op, Some(name), outcome);
    if let Ok(answer) = &result {
        record.fingerprint = Some(crate::oauth::fingerprint(token_of(answer)));
    }
    state.audit.record(&record);
    result
}

fn locked_error() -> ErrorBody {
    ErrorBody::new(
        ErrorCode::Locked,
        "the agent is locked; unlock it with `jwtagent unlock`",
    )
}

/// A profile with `allow_exe` serves only those executables.
fn check_policy(state: &AgentState, peer: &Peer, name: &str) -> Result<(), ErrorBody> {
    let Ok(config) = state.profiles.current_fast() else {
        return Ok(()); // the token request itself reports the config error
    };
    let Some(profile) = config.profiles.get(name) else {
        return Ok(());
    };
    if profile.allow_exe.is_empty() {
        return Ok(());
    }
    let admits = |exe: Option<&PathBuf>| {
        exe.is_some_and(|exe| {
            profile
                .allow_exe
                .iter()
                .any(|a| a == exe || std::fs::canonicalize(a).is_ok_and(|c| &c == exe))
        })
    };
    // The process that connected, and every process that wrote to the
    // connection: a socket handed on (fork then exec, fd passing) is judged
    // by who uses it.
    let refused_writer = peer.writers.iter().find(|(_, exe)| !admits(exe.as_ref()));
    if admits(peer.exe.as_ref()) && refused_writer.is_none() && !peer.too_many_writers {
        return Ok(());
    }
    if let Some((pid, exe)) = refused_writer
        && admits(peer.exe.as_ref())
    {
        let exe = exe
            .as_ref()
            .map_or_else(|| "unknown".to_string(), |e| e.display().to_string());
        return Err(ErrorBody::new(
            ErrorCode::Denied,
            format!(
                "profile {name:?}: this connection was opened by {} but written to by pid {pid} ({exe}), which the profile does not allow",
                peer.exe_display()
            ),
        ));
    }
    Err(ErrorBody::new(
        ErrorCode::Denied,
        format!(
            "profile {name:?} serves only {}; the caller is {}",
            profile
                .allow_exe
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            peer.exe_display()
        ),
    ))
}

fn lock_result(result: Result<(), LockError>) -> Result<Empty, ErrorBody> {
    result.map(|()| Empty {}).map_err(|e| {
        let code = match e {
            LockError::WrongPassphrase => ErrorCode::Denied,
            LockError::Hash(_) => ErrorCode::Internal,
            _ => ErrorCode::BadRequest,
        };
        ErrorBody::new(code, e.to_string())
    })
}

fn status(state: &AgentState) -> Status {
    let config = state.profiles.current();
    let keys = state.tokens.status();
    let secs = |d: Option<Duration>| d.map(|d| d.as_secs() as i64);
    let (profiles, config_error) = match config {
        Ok(config) => (
            config
                .profiles
                .keys()
                .cloned()
                .map(|name| {
                    let mine: Vec<_> = keys.iter().filter(|k| k.key.profile == name).collect();
                    // The summary follows the token that lives longest.
                    let best = mine.iter().max_by_key(|k| k.expires_in);
                    let failures = mine.iter().map(|k| k.failures).max().unwrap_or(0);
                    let token_state = match best {
                        None => "none",
                        Some(_) if failures > 0 => "failing",
                        Some(k) if k.expires_in.is_none_or(|d| d.is_zero()) => "expired",
                        Some(_) => "valid",
                    };
                    ProfileStatus {
                        token_state: token_state.into(),
                        expires_in_secs: best.and_then(|k| secs(k.expires_in)),
                        next_refresh_in_secs: best.and_then(|k| secs(k.next_refresh_in)),
                        last_error: mine.iter().find_map(|k| k.last_error.clone()),
                        failures,
                        tokens: mine
                            .iter()
                            .map(|k| TokenStatus {
                                scopes: k.key.scopes.clone(),
                                resources: k.key.resources.clone(),
                                expires_in_secs: secs(k.expires_in),
                                next_refresh_in_secs: secs(k.next_refresh_in),
                                last_error: k.last_error.clone(),
                                failures: k.failures,
                            })
                            .collect(),
                        name,
                    }
                })
                .collect(),
            None,
        ),
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    Status {
        version: env!("CARGO_PKG_VERSION").to_string(),
        protocol: PROTOCOL_VERSION,
        pid: state.pid,
        uptime_secs: state.started.elapsed().as_secs(),
        socket: state.socket.display().to_string(),
        store: Some(state.profiles.store().state().describe()),
        config: Some(state.profiles.path().display().to_string()),
        config_error,
        locked: state.lock.is_locked(),
        profiles,
    }
}

/// An error response line for cases found before a request could be parsed
/// (an oversized line, a refused peer).
pub fn error_line(code: ErrorCode, message: impl Into<String>) -> Vec<u8> {
    encode::<Empty>(Id::null(), Err(ErrorBody::new(code, message)))
}

fn encode<T: Serialize>(id: Id, result: Result<T, ErrorBody>) -> Vec<u8> {
    let response = Response { id, result };
    let mut line = match serde_json::to_vec(&response) {
        Ok(line) => line,
        Err(e) => {
            // Only reachable through a bug in a body type; still answer in protocol.
            tracing::error!(error = %e, "cannot encode response");
            let fallback: Response<Empty, Id> = Response {
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
    use serde_json::{Value, json};

    async fn call(line: &str) -> (Value, After) {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::SecretStore::with_store(
            keyring_core::mock::Store::new().unwrap(),
            "mock",
        );
        let state = AgentState::new(
            PathBuf::from("/tmp/x.sock"),
            Profiles::new(dir.path().join("profiles.toml"), store),
            Audit::new(None),
        );
        let (out, after) = handle_line(&state, &Peer::default(), line.as_bytes()).await;
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
        let (v, after) = call(r#"{"id":2,"op":"teleport"}"#).await;
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
