//! `token` and `dpop_proof`: the caller policy of the profile and of every
//! profile its token is made from, the token (and proof), and the audit
//! record.

use crate::audit::Record;
use crate::error::AgentError;
use crate::peer::Peer;
use crate::policy::{check_inputs, check_policy};
use crate::profiles::ProfileError;
use crate::refresh::Served;
use crate::state::AgentState;
use crate::tokens::TokenQuery;
use jwtagent::config::Profile;
use jwtagent::protocol::{DpopAnswer, TokenAnswerOf};
use jwtagent::secret::Secret;

/// The `token` op's answer: a [`jwtagent::protocol::TokenAnswer`] on the
/// wire, written from the token the agent holds (no copy of it made).
pub(crate) struct Answer {
    served: Served,
    id_token: Option<Secret>,
}

impl Answer {
    fn wire(&self) -> TokenAnswerOf<'_> {
        let served = &self.served;
        TokenAnswerOf {
            access_token: &served.token,
            token_type: &served.token_type,
            expires_at: served.expires_at,
            scope: served.scope.as_deref(),
            issued_token_type: served.issued_token_type.as_deref(),
            id_token: self.id_token.as_ref(),
        }
    }
}

impl serde::Serialize for Answer {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.wire().serialize(s)
    }
}

/// An op's answer that holds a token, and whether it was served because of
/// who the caller is: then it goes out only if the caller is unchanged
/// when it is written.
#[derive(serde::Serialize)]
#[serde(transparent)]
pub(crate) struct Checked<T> {
    answer: T,
    /// The profile, when its token (or an input's) is bound to executables
    /// (`--allow-exe`), as the config the request was served from says.
    #[serde(skip)]
    recheck: Option<String>,
}

impl<T> Checked<T> {
    /// The profile whose answer is checked again as it is written, if any.
    pub(crate) fn take_recheck(&mut self) -> Option<String> {
        self.recheck.take()
    }
}

impl Checked<Answer> {
    /// What its `Serialize` writes, by [`TokenAnswerOf::write_json`].
    pub(crate) fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        self.answer.wire().write_json(out)
    }
}

/// The `token` op: the profile's caller policy, the token, and the audit record.
pub(crate) async fn token(
    state: &AgentState,
    peer: &Peer,
    query: TokenQuery,
) -> Result<Checked<Answer>, AgentError> {
    let name = query.name.clone();
    let ((served, id_token), bound) = audited(
        state,
        peer,
        "token",
        &name,
        |(served, _): &(Served, _)| served.fingerprint.as_str(),
        async move |profile| state.tokens.get(profile, query).await,
    )
    .await?;
    Ok(Checked {
        answer: Answer { served, id_token },
        recheck: bound.then_some(name),
    })
}

/// The `dpop_proof` op: like `token` (policy, audit), answered with a proof
/// and the token it is bound to.
pub(crate) async fn dpop_proof(
    state: &AgentState,
    peer: &Peer,
    query: TokenQuery,
    method: &str,
    url: &str,
    nonce: Option<&str>,
) -> Result<Checked<DpopAnswer>, AgentError> {
    let name = query.name.clone();
    let ((served, proof), bound) = audited(
        state,
        peer,
        "dpop_proof",
        &name,
        |(served, _): &(Served, _)| served.fingerprint.as_str(),
        async move |profile| {
            let proof = state.tokens.dpop_proof(profile, query, method, url, nonce);
            proof.await
        },
    )
    .await?;
    Ok(Checked {
        answer: DpopAnswer {
            proof,
            access_token: served.token.clone(),
            token_type: served.token_type.clone(),
            expires_at: served.expires_at,
        },
        recheck: bound.then_some(name),
    })
}

/// A token of profile `name` that the agent hands out on its own (to a
/// sink file, as `op`): through the same policy, controls, lock and audit
/// as the `token` op, with the agent as the caller.
pub(crate) async fn for_agent(
    state: &AgentState,
    op: &'static str,
    name: &str,
    min_ttl: std::time::Duration,
) -> Result<Served, AgentError> {
    let query = TokenQuery {
        name: name.to_string(),
        min_ttl,
        ..TokenQuery::default()
    };
    for_caller(state, &Peer::agent(), op, query).await
}

/// A token for `query` that `peer` asked for another way than the socket
/// (as `op`: an endpoint's request): the `token` op's checks and audit.
pub(crate) async fn for_caller(
    state: &AgentState,
    peer: &Peer,
    op: &'static str,
    query: TokenQuery,
) -> Result<Served, AgentError> {
    let name = query.name.clone();
    // As the socket's gate: a locked agent serves nothing, and fetches
    // nothing either (what a lock dropped must not come back before the
    // unlock).
    if state.lock.is_locked() {
        return Err(super::lock::token_refused(state, peer, op, &name));
    }
    let ((served, _), _) = audited(
        state,
        peer,
        op,
        &name,
        |(served, _): &(Served, _)| served.fingerprint.as_str(),
        async move |profile| state.tokens.get(profile, query).await,
    )
    .await?;
    Ok(served)
}

/// Runs `serve` for an op that hands out a token of profile `name`, if the
/// profile's caller policy admits the peer, and records the outcome (with
/// the token's fingerprint) in the audit log. The profile is read once, here,
/// and the same one is checked and served; with what it served comes whether
/// the profile is bound to executables in that same config
/// ([`crate::policy::exe_bound`]).
async fn audited<T>(
    state: &AgentState,
    peer: &Peer,
    op: &'static str,
    name: &str,
    fingerprint_of: impl Fn(&T) -> &str,
    serve: impl AsyncFnOnce(&Profile) -> Result<T, AgentError>,
) -> Result<(T, bool), AgentError> {
    let config = match state.profiles.current_fast() {
        Ok(config) => config,
        Err(e) => {
            return record(
                state,
                peer,
                op,
                name,
                Err(ProfileError::Config(e.to_string()).into()),
                fingerprint_of,
            )
            .map(|served| (served, false));
        }
    };
    let Some(profile) = config.profiles.get(name) else {
        let unknown = crate::profiles::not_served(&config, name);
        return record(state, peer, op, name, Err(unknown.into()), fingerprint_of)
            .map(|served| (served, false));
    };
    if let Err(denied) = check_policy(peer, name, profile) {
        tracing::warn!(profile = %name, op, peer_pid = ?peer.pid, peer_exe = %peer.exe_display(), "request denied by the profile's policy");
        state
            .audit
            .record(&Record::new(peer, op, Some(name), "denied"));
        return Err(denied);
    }
    if let Err(refused) = check_inputs(peer, &config.profiles, name) {
        tracing::warn!(profile = %name, input = %refused.input, op, peer_pid = ?peer.pid, peer_exe = %peer.exe_display(), "request denied by an input profile's policy");
        let mut record = Record::new(peer, op, Some(name), "denied");
        record.input = Some(&refused.input);
        state.audit.record(&record);
        return Err(refused.error());
    }
    crate::ops::controls::admit(state, peer, op, name, &config.profiles).await?;
    let epoch = state.lock.epoch();
    let mut result = serve(profile).await;
    // Locked while the request was in flight: the answer is not handed out
    // (it is dropped here, and wiped with it).
    if result.is_ok() && (state.lock.is_locked() || state.lock.epoch() != epoch) {
        result = Err(AgentError::Locked);
    }
    record(state, peer, op, name, result, fingerprint_of)
        .map(|served| (served, crate::policy::exe_bound(&config.profiles, name)))
}

/// Writes the audit record of a token op's outcome, and passes it on.
fn record<T>(
    state: &AgentState,
    peer: &Peer,
    op: &'static str,
    name: &str,
    result: Result<T, AgentError>,
    fingerprint_of: impl Fn(&T) -> &str,
) -> Result<T, AgentError> {
    let outcome = match &result {
        Ok(_) => "ok",
        Err(e) => e.code().as_str(),
    };
    let mut record = Record::new(peer, op, Some(name), outcome);
    if let Ok(answer) = &result {
        record.fingerprint = Some(fingerprint_of(answer));
    }
    state.audit.record(&record);
    result
}
