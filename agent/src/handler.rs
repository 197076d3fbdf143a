//! Request handling: one request line in, one encoded response line out. It
//! parses, keeps a locked agent closed, and dispatches to the op's module in
//! [`crate::ops`], which answers it; nothing else. Knows nothing of sockets.

use crate::audit::Record;
use crate::error::AgentError;
use crate::ops;
use crate::peer::Peer;
pub(crate) use crate::state::AgentState;
use crate::tokens::TokenQuery;
use jwtagent::protocol::{Empty, ErrorBody, ErrorCode, Id, Request, Response, parse_request};
use serde::Serialize;

/// What the connection should do after sending the response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum After {
    Continue,
    /// The request was `stop`: shut the agent down once the answer is sent.
    Shutdown,
    /// The answer holds a token of this profile, served because of who the
    /// caller is (`--allow-exe`, its own or an input's): it goes out only if
    /// the processes that wrote the request still run what they ran then.
    Recheck(String),
}

/// Handles one request line (without its newline) and returns the response line
/// (with its newline).
pub(crate) async fn handle_line(state: &AgentState, peer: &Peer, line: &[u8]) -> (Vec<u8>, After) {
    let parsed = parse_request(line);
    let request = match parsed.request {
        Ok(request) => request,
        Err(error) => {
            tracing::debug!(code = %error.code, "rejected request");
            return (encode_body::<Empty>(parsed.id, Err(error)), After::Continue);
        }
    };
    tracing::trace!(op = request.op(), "request");
    state.quiet.request();
    // Watching the agent (a prompt that shows its state) is not using it.
    if !matches!(request, Request::Hello | Request::Status) {
        state.active();
    }
    if let Err(refused) = gate(state, peer, &request) {
        return (
            encode::<Empty>(state, parsed.id, Err(refused)),
            After::Continue,
        );
    }
    dispatch(state, peer, parsed.id, request).await
}

/// Answers `request` (with id `id`) by its op.
async fn dispatch(state: &AgentState, peer: &Peer, id: Id, request: Request) -> (Vec<u8>, After) {
    let line = match request {
        Request::Stop
        | Request::Lock { .. }
        | Request::Unlock { .. }
        | Request::Add { .. }
        | Request::Secret { .. }
        | Request::StoreMigrate { .. }
        | Request::Renew { .. }
        | Request::Sink { .. }
        | Request::Endpoint { .. }
        | Request::Remove { .. }
        | Request::Keygen { .. }
        | Request::Login { .. }
        | Request::Logout { .. } => {
            // Boxed: its future is most of a connection's (8.7 of 9.1 KiB
            // in a release build), and a thousand connections at once that
            // only ask for tokens should not each carry one.
            return Box::pin(administer(state, peer, id, request)).await;
        }
        Request::Hello => encode(state, id, Ok(ops::status::hello(state, peer))),
        Request::Status => large(encode(state, id, Ok(ops::status::status(state).await))),
        Request::List => large(encode(state, id, ops::profiles::list(state))),
        Request::Show { name } => encode(state, id, ops::profiles::show(state, &name).await),
        Request::Jwks { name } => encode(state, id, ops::profiles::jwks(state, &name).await),
        Request::Token {
            name,
            min_ttl,
            scopes,
            resources,
            force,
            id_token,
        } => {
            let mut query = TokenQuery::new(name, min_ttl, scopes, resources, force);
            query.id_token = id_token;
            let mut answer = ops::token::token(state, peer, query).await;
            let after = checked_after(&mut answer);
            let answer = answer.map_err(|e| body(state, &e));
            return (
                encode_with(id, answer, ops::token::Checked::write_json),
                after,
            );
        }
        Request::Whoami { name } => encode(state, id, ops::login::whoami(state, &name).await),
        Request::LoginWait { name, wait_secs } => {
            let wait = std::time::Duration::from_secs(wait_secs.unwrap_or(10));
            encode(state, id, ops::login::wait(state, &name, wait).await)
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
            let proof = ops::token::dpop_proof(state, peer, query, &method, &url, nonce.as_deref());
            let mut answer = proof.await;
            let after = checked_after(&mut answer);
            return (encode(state, id, answer), after);
        }
    };
    (line, After::Continue)
}

/// What the connection does with an answer holding a token: check the
/// caller again as it is written, when the token was served because of who
/// the caller is.
fn checked_after<T>(answer: &mut Result<ops::token::Checked<T>, AgentError>) -> After {
    match answer {
        Ok(checked) => checked
            .take_recheck()
            .map_or(After::Continue, After::Recheck),
        Err(_) => After::Continue,
    }
}

/// Answers a request that changes the agent (its profiles, its lock, a
/// sign-in, its life), each recorded in the audit log.
async fn administer(state: &AgentState, peer: &Peer, id: Id, request: Request) -> (Vec<u8>, After) {
    let op = request.op();
    // The op's answer, recorded in the audit log under the op's own name.
    macro_rules! answer {
        ($profile:expr, $result:expr) => {
            encode(state, id, audited(state, peer, op, $profile, $result))
        };
    }
    let line = match request {
        Request::Stop => {
            tracing::info!("stop requested by a client");
            return (answer!(None, Ok(Empty {})), After::Shutdown);
        }
        Request::Lock { passphrase } => answer!(None, ops::lock::lock(state, &passphrase).await),
        Request::Unlock { passphrase } => {
            answer!(None, ops::lock::unlock(state, &passphrase).await)
        }
        Request::Add {
            name,
            profile,
            secret,
            verify,
            register,
        } => {
            let added =
                ops::profiles::add(state, peer, &name, *profile, secret, verify, register).await;
            answer!(Some(&name), added)
        }
        Request::Secret {
            name,
            secret,
            verify,
        } => {
            let replaced = ops::profiles::replace_secret(state, peer, &name, secret, verify).await;
            answer!(Some(&name), replaced)
        }
        Request::StoreMigrate { to, passphrase } => {
            answer!(None, ops::store::migrate(state, to, passphrase).await)
        }
        Request::Remove { name } => answer!(Some(&name), ops::profiles::remove(state, &name).await),
        Request::Renew { name } => {
            answer!(Some(&name), ops::controls::renew(state, peer, &name).await)
        }
        Request::Endpoint { name, kind } => {
            let started = ops::endpoints::start(state, peer, &name, kind).await;
            answer!(Some(&name), started)
        }
        sink @ Request::Sink { .. } => {
            let (name, change) = ops::sinks::asked(sink);
            answer!(Some(&name), ops::sinks::sink(state, &name, change).await)
        }
        Request::Keygen {
            name,
            profile,
            alg,
            force,
        } => {
            let made = ops::profiles::keygen(state, peer, &name, *profile, alg, force).await;
            answer!(Some(&name), made)
        }
        Request::Login { name, headless } => {
            answer!(Some(&name), ops::login::start(state, &name, headless).await)
        }
        Request::Logout { name } => answer!(Some(&name), ops::login::logout(state, &name).await),
        // `dispatch` sends only the ops above here.
        other => encode::<Empty>(
            state,
            id,
            Err(AgentError::Internal(format!(
                "{} is not an op that changes the agent",
                other.op()
            ))),
        ),
    };
    (line, After::Continue)
}

/// Records in the audit log what came of an op that changes the agent (its
/// profiles, its lock, a sign-in; a token's ops record their own): `ok`, or
/// the error's code.
fn audited<T>(
    state: &AgentState,
    peer: &Peer,
    op: &'static str,
    profile: Option<&str>,
    result: Result<T, AgentError>,
) -> Result<T, AgentError> {
    let outcome = match &result {
        Ok(_) => "ok",
        Err(e) => e.code().as_str(),
    };
    state.audit.record(&Record::new(peer, op, profile, outcome));
    if result.is_ok() {
        // A profile, the lock or a sign-in changed: so may the sinks.
        state.sinks.changed();
    }
    result
}

/// The rules every request meets before its op: forwarded connections are
/// read-only, and a locked agent serves nothing but `hello`, `status` and
/// `unlock` (and is not stopped through its socket: stopped and started
/// again it would come back unlocked; its service manager's SIGTERM does.
/// One whose lock is its sealed file store comes back sealed, and stops).
fn gate(state: &AgentState, peer: &Peer, request: &Request) -> Result<(), AgentError> {
    check_forwarded(state, peer, request)?;
    if !state.lock.is_locked() {
        return Ok(());
    }
    // With the file store, the lock is the store's seal.
    let sealed = state.profiles.store().is_file();
    match request {
        Request::Hello | Request::Status | Request::Unlock { .. } => Ok(()),
        // A sealed file store comes back sealed: stopping undoes nothing.
        Request::Stop if sealed => Ok(()),
        Request::Stop => Err(AgentError::StopLocked),
        Request::Token { name, .. } | Request::DpopProof { name, .. } => {
            Err(ops::lock::token_refused(state, peer, request.op(), name))
        }
        _ => Err(ops::lock::refusal(state)),
    }
}

/// What a connection forwarded over SSH may do unless the agent was started
/// with `--allow-forwarded-admin`: the remote side reads tokens, it does not
/// change what this machine holds or trusts (profiles, secrets, the lock,
/// sign-ins) nor stop the agent. Only a connection known to come through
/// OpenSSH is held to this: where the agent cannot tell executables at all
/// (no `pidfd_open` before Linux 5.3, a `/proc` mounted with `hidepid`, a
/// peer in another pid namespace), refusing every unknown one would leave
/// the agent without an administrator. `--no-forward` profiles stay closed
/// to such callers all the same.
fn check_forwarded(state: &AgentState, peer: &Peer, request: &Request) -> Result<(), AgentError> {
    let read_only = matches!(
        request,
        Request::Hello
            | Request::Status
            | Request::List
            | Request::Token { .. }
            | Request::DpopProof { .. }
    );
    if read_only || state.forwarded_admin || !peer.forwarded() {
        return Ok(());
    }
    tracing::warn!(op = request.op(), peer_pid = ?peer.pid, peer_exe = %peer.exe_display(), "refused: connections forwarded over SSH are read-only");
    let name = match request {
        Request::Add { name, .. }
        | Request::Secret { name, .. }
        | Request::Renew { name }
        | Request::Sink { name, .. }
        | Request::Endpoint { name, .. }
        | Request::Remove { name }
        | Request::Keygen { name, .. } => Some(name.as_str()),
        _ => None,
    };
    state
        .audit
        .record(&Record::new(peer, request.op(), name, "denied"));
    Err(AgentError::Denied(format!(
        "`{}` is refused over SSH forwarding (this connection came through {}): forwarded connections are read-only (hello, token, header, list, status); run it on the machine the agent runs on, or start that agent with --allow-forwarded-admin",
        request.op(),
        peer.exe_display()
    )))
}

/// An answer about every profile: with thousands of them, what it was made
/// from (copies of every profile) is freed by now, but the allocator keeps
/// it, and the agent's resident memory with it: handed back to the system,
/// in the background.
fn large(line: Vec<u8>) -> Vec<u8> {
    if line.len() >= 256 * 1024 {
        crate::profiles::release_free_memory();
    }
    line
}

/// An error response line for cases found before a request could be parsed
/// (an oversized line, a refused peer).
pub(crate) fn error_line(code: ErrorCode, message: impl Into<String>) -> Vec<u8> {
    encode_body::<Empty>(Id::null(), Err(ErrorBody::new(code, message)))
}

/// An error line in place of the answer `answer` (same id): an answer
/// withheld as it was about to be written.
pub(crate) fn instead_of(answer: &[u8], code: ErrorCode, message: impl Into<String>) -> Vec<u8> {
    encode_body::<Empty>(Id::of_line(answer), Err(ErrorBody::new(code, message)))
}

fn encode<T: Serialize>(state: &AgentState, id: Id, result: Result<T, AgentError>) -> Vec<u8> {
    encode_body(id, result.map_err(|e| body(state, &e)))
}

/// The one place an agent error becomes the wire's error body. A mistyped
/// profile name gets the nearest existing one suggested.
fn body(state: &AgentState, error: &AgentError) -> ErrorBody {
    let mut message = error.to_string();
    if let Some(name) = error.unknown_profile()
        && let Some(near) = nearest_profile(state, name)
    {
        message.push_str(&format!(" (did you mean {near:?}?)"));
    }
    let mut body = ErrorBody::new(error.code(), message);
    body.idp = error.idp();
    body
}

/// The existing profile whose name is closest to `name`, if one is close
/// (an edit distance of at most a third of the name, and at least 1).
fn nearest_profile(state: &AgentState, name: &str) -> Option<String> {
    let config = state.profiles.current_fast().ok()?;
    let limit = (name.chars().count() / 3).max(1);
    config
        .profiles
        .keys()
        .map(|candidate| (strsim::levenshtein(name, candidate), candidate))
        .filter(|(distance, _)| *distance <= limit)
        .min()
        .map(|(_, candidate)| candidate.clone())
}

/// The room an answer line is written into at first.
const ANSWER_ROOM: usize = 1024;

fn encode_body<T: Serialize>(id: Id, result: Result<T, ErrorBody>) -> Vec<u8> {
    encode_with(id, result, |body, out| serde_json::to_writer(out, body))
}

/// [`encode_body`], with a success's body written by `write_body` (the bytes
/// serde_json writes for it, by a faster way).
fn encode_with<T: Serialize>(
    id: Id,
    result: Result<T, ErrorBody>,
    write_body: impl FnOnce(&T, &mut Vec<u8>) -> serde_json::Result<()>,
) -> Vec<u8> {
    let response = Response { id, result };
    // Room for a token's answer (a JWT of some 900 bytes, with its type and
    // expiry) from the start: grown from serde_json's 128 bytes, it was
    // copied four times, and its spare room wiped after the write.
    let mut line = Vec::with_capacity(ANSWER_ROOM);
    let written = response.write_with(&mut line, write_body);
    let mut line = match written {
        Ok(()) => line,
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
    use jwtagent::protocol::PROTOCOL_VERSION;
    use serde_json::{Value, json};

    async fn call(line: &str) -> (Value, After) {
        let dir = tempfile::tempdir().unwrap();
        let state = AgentState::for_tests(dir.path());
        let (out, after) = handle_line(&state, &local_peer(), line.as_bytes()).await;
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
    async fn an_unknown_op_is_unknown_op_and_keeps_the_id() {
        let (v, after) = call(r#"{"id":2,"op":"teleport"}"#).await;
        assert_eq!(v["error"]["code"], json!("unknown_op"));
        assert_eq!(v["id"], json!(2));
        assert_eq!(after, After::Continue);
    }

    fn id_of(json: &str) -> Id {
        jwtagent::protocol::parse_request(format!(r#"{{"id":{json},"op":"hello"}}"#).as_bytes()).id
    }

    #[test]
    fn an_internal_error_reaches_the_wire_as_internal_with_its_message() {
        let line = encode_body::<Empty>(
            id_of(r#""i""#),
            Err(ErrorBody::new(ErrorCode::Internal, "signing failed")),
        );
        let v: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(
            v,
            json!({"id": "i", "ok": false, "error": {"code": "internal", "message": "signing failed"}})
        );
    }

    #[test]
    fn a_token_s_answer_is_written_into_its_first_room() {
        let answer = jwtagent::protocol::TokenAnswer {
            access_token: jwtagent::secret::Secret::new(vec![b'e'; 900]),
            token_type: "Bearer".into(),
            expires_at: Some(1_800_000_000),
            scope: Some("api:read api:write".into()),
            issued_token_type: None,
            id_token: None,
        };
        let line = encode_body(id_of("12345"), Ok(answer));
        assert!(line.len() > 950 && line.ends_with(b"}\n"), "{}", line.len());
        assert_eq!(line.capacity(), ANSWER_ROOM, "grown, so copied");
    }

    #[test]
    fn a_body_that_cannot_be_encoded_is_answered_as_internal_keeping_the_id() {
        // JSON object keys must be strings: a bug in a body type of this kind.
        let bad: std::collections::BTreeMap<(u8, u8), u8> = [((1, 2), 3)].into();
        let line = encode_body(id_of("42"), Ok(bad));
        let v: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["id"], json!(42));
        assert_eq!(v["ok"], json!(false));
        assert_eq!(v["error"]["code"], json!("internal"));
    }

    #[tokio::test]
    async fn garbage_is_bad_request() {
        let (v, _) = call("\u{1}\u{2}garbage").await;
        assert_eq!(v["error"]["code"], json!("bad_request"));
        assert_eq!(v["id"], Value::Null);
    }

    /// A caller on this machine, whose executable is known.
    fn local_peer() -> Peer {
        Peer {
            exe: Some("/usr/bin/python3".into()),
            ..Peer::default()
        }
    }

    /// `line` from a connection forwarded by sshd, to an agent that allows
    /// forwarded connections more than reading when `admin`.
    async fn forwarded(line: &str, admin: bool, exe: Option<&str>) -> Value {
        let dir = tempfile::tempdir().unwrap();
        let mut state = AgentState::for_tests(dir.path());
        state.forwarded_admin = admin;
        let peer = Peer {
            exe: exe.map(Into::into),
            ..Peer::default()
        };
        let (out, _) = handle_line(&state, &peer, line.as_bytes()).await;
        serde_json::from_slice(&out).unwrap()
    }

    #[tokio::test]
    async fn a_forwarded_connection_is_read_only() {
        for line in [
            r#"{"id":1,"op":"stop"}"#,
            r#"{"id":1,"op":"remove","name":"a"}"#,
            r#"{"id":1,"op":"lock","passphrase":"p"}"#,
            r#"{"id":1,"op":"unlock","passphrase":"p"}"#,
            r#"{"id":1,"op":"login","name":"a"}"#,
            r#"{"id":1,"op":"logout","name":"a"}"#,
        ] {
            for exe in [Some("/usr/sbin/sshd"), Some("/usr/bin/ssh")] {
                let v = forwarded(line, false, exe).await;
                assert_eq!(
                    v["error"]["code"],
                    json!("denied"),
                    "{line} from {exe:?}: {v}"
                );
                assert!(
                    v["error"]["message"]
                        .as_str()
                        .unwrap()
                        .contains("--allow-forwarded-admin"),
                    "{v}"
                );
            }
        }
        for line in [
            r#"{"id":1,"op":"hello"}"#,
            r#"{"id":1,"op":"status"}"#,
            r#"{"id":1,"op":"list"}"#,
        ] {
            let v = forwarded(line, false, Some("/usr/sbin/sshd")).await;
            assert_eq!(v["ok"], json!(true), "{line}: {v}");
        }
        // A token op is not refused by this rule (the profile's own rules apply).
        let v = forwarded(
            r#"{"id":1,"op":"token","name":"a"}"#,
            false,
            Some("/usr/sbin/sshd"),
        )
        .await;
        assert_eq!(v["error"]["code"], json!("unknown_profile"), "{v}");
    }

    #[tokio::test]
    async fn an_agent_started_to_allow_it_lets_forwarded_connections_administer() {
        let v = forwarded(
            r#"{"id":1,"op":"remove","name":"a"}"#,
            true,
            Some("/usr/sbin/sshd"),
        )
        .await;
        assert_eq!(v["error"]["code"], json!("unknown_profile"), "{v}");
        let v = forwarded(
            r#"{"id":1,"op":"remove","name":"a"}"#,
            false,
            Some("/usr/bin/jwtagent"),
        )
        .await;
        assert_eq!(v["error"]["code"], json!("unknown_profile"), "{v}");
        // An executable the agent could not tell (no pidfd_open, valgrind,
        // hidepid): not known to be ssh, so not held to the rule.
        let v = forwarded(r#"{"id":1,"op":"remove","name":"a"}"#, false, None).await;
        assert_eq!(v["error"]["code"], json!("unknown_profile"), "{v}");
    }

    /// A mistyped name gets the nearest profile suggested, when one is near
    /// (a third of the name's length, at least one edit); the error lines
    /// made outside a request carry its id, or null.
    #[tokio::test]
    async fn a_near_miss_is_suggested_and_error_lines_keep_their_id() {
        let dir = tempfile::tempdir().unwrap();
        let state = AgentState::for_tests(dir.path());
        let open = jwtagent::config::Profile::new(
            "https://idp.example/token",
            "c",
            jwtagent::config::AuthMethod::None,
        );
        for name in ["github-ci", "api", "alpha"] {
            state.profiles.add(name, open.clone(), None).await.unwrap();
        }
        assert_eq!(
            nearest_profile(&state, "github-cl").as_deref(),
            Some("github-ci")
        );
        assert_eq!(
            nearest_profile(&state, "gxxxub-ci").as_deref(),
            Some("github-ci"),
            "3 edits in 9"
        );
        assert_eq!(nearest_profile(&state, "xxxxub-ci"), None, "4 edits in 9");
        assert_eq!(nearest_profile(&state, "apl").as_deref(), Some("api"));
        assert_eq!(nearest_profile(&state, "zzzzzz"), None);
        let (out, _) = handle_line(
            &state,
            &local_peer(),
            br#"{"id":7,"op":"token","name":"github-cl"}"#,
        )
        .await;
        let v: Value = serde_json::from_slice(&out).unwrap();
        let message = v["error"]["message"].as_str().unwrap();
        assert!(
            message.ends_with("(did you mean \"github-ci\"?)"),
            "{message}"
        );

        let v: Value =
            serde_json::from_slice(&error_line(ErrorCode::TooLarge, "too long")).unwrap();
        assert_eq!(
            v,
            json!({"id": null, "ok": false, "error": {"code": "too_large", "message": "too long"}})
        );
        let v: Value = serde_json::from_slice(&instead_of(
            br#"{"id":"x-1","ok":true,"access_token":"t"}"#,
            ErrorCode::Denied,
            "no",
        ))
        .unwrap();
        assert_eq!(
            v,
            json!({"id": "x-1", "ok": false, "error": {"code": "denied", "message": "no"}})
        );
    }

    /// A locked agent answers hello, status and unlock, refuses stop (it
    /// would come back unlocked) and everything else.
    #[tokio::test]
    async fn a_locked_agent_serves_only_hello_status_and_unlock() {
        let dir = tempfile::tempdir().unwrap();
        let state = AgentState::for_tests(dir.path());
        let pass = jwtagent::secret::Secret::new(b"pw".to_vec());
        state.lock.lock(&pass).await.unwrap();
        let code = async |line: &str| {
            let (out, after) = handle_line(&state, &local_peer(), line.as_bytes()).await;
            let v: Value = serde_json::from_slice(&out).unwrap();
            (v["error"]["code"].as_str().map(str::to_string), after)
        };
        for ok in [r#"{"id":1,"op":"hello"}"#, r#"{"id":1,"op":"status"}"#] {
            assert_eq!(code(ok).await.0, None, "{ok}");
        }
        for refused in [
            r#"{"id":1,"op":"token","name":"a"}"#,
            r#"{"id":1,"op":"dpop_proof","name":"a","method":"GET","url":"https://x/"}"#,
            r#"{"id":1,"op":"list"}"#,
            r#"{"id":1,"op":"remove","name":"a"}"#,
        ] {
            assert_eq!(
                code(refused).await.0.as_deref(),
                Some("locked"),
                "{refused}"
            );
        }
        let (stop, after) = code(r#"{"id":1,"op":"stop"}"#).await;
        assert_eq!(stop.as_deref(), Some("locked"));
        assert!(matches!(after, After::Continue), "not stopped");
        let (wrong, _) = code(r#"{"id":1,"op":"unlock","passphrase":"no"}"#).await;
        assert_eq!(wrong.as_deref(), Some("denied"));
        let (right, _) = code(r#"{"id":1,"op":"unlock","passphrase":"pw"}"#).await;
        assert_eq!(right, None);
        assert_eq!(code(r#"{"id":1,"op":"list"}"#).await.0, None);
    }
}
