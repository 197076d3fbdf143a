//! `sink`, and the writers that keep each profile's sink files holding its
//! current access token: rewritten (atomically) after every refresh and
//! before the token in them expires, deleted when the agent locks or
//! stops, the profile goes, or its user signs out (unless `keep`).
//!
//! A file is a way to a token like the socket: each write is a token
//! request through the same policy, lock, controls and audit (op `sink`,
//! the agent as the caller), and only profiles that any process of the
//! user may have can have sinks (no `--allow-exe`, `--confirm`, `--dpop`).

use crate::error::AgentError;
use crate::refresh::Served;
use crate::sinks::{self, Outcome, Writer};
use crate::state::AgentState;
use jwtagent::config::{Profile, Sink, SinkFormat};
use jwtagent::protocol::{SinkList, SinkView};
use jwtagent::secret::Secret;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Without an expiry, a sink's token is read again this often.
const UNKNOWN_LIFETIME_REREAD: Duration = Duration::from_secs(300);

/// The soonest a writer wakes again.
const MIN_WAKE: Duration = Duration::from_millis(200);

/// What a `sink` request asks: the path, its format, whether it is kept,
/// whether it is removed.
pub(crate) type SinkChange = (Option<PathBuf>, SinkFormat, bool, bool);

/// The profile and change a `sink` request asks for.
pub(crate) fn asked(request: jwtagent::protocol::Request) -> (String, SinkChange) {
    match request {
        jwtagent::protocol::Request::Sink {
            name,
            path,
            format,
            keep,
            remove,
        } => (name, (path, format, keep, remove)),
        _ => (String::new(), (None, SinkFormat::Token, false, false)),
    }
}

/// `sink`: lists profile `name`'s sinks, or adds, changes or removes one.
/// A new sink is written at once: a place that cannot hold the token is an
/// error, and the sink is not kept.
pub(crate) async fn sink(
    state: &AgentState,
    name: &str,
    (path, format, keep, remove): SinkChange,
) -> Result<SinkList, AgentError> {
    let profile = state.profiles.get(name)?;
    let Some(path) = path else {
        if remove {
            return Err(AgentError::Sink("--remove needs the sink's PATH".into()));
        }
        return Ok(list(state, &profile.sinks));
    };
    let mut wanted = profile.sinks.clone();
    if remove {
        if !wanted.iter().any(|s| s.path == path) {
            return Err(AgentError::Sink(format!(
                "profile {name:?} has no sink {}; `jwtagent sink {name}` lists them",
                path.display()
            )));
        }
        wanted.retain(|s| s.path != path);
        let saved = state.profiles.set_sinks(name, wanted).await?;
        state.sinks.changed();
        let _guard = state.sinks.write.lock().unwrap_or_else(|p| p.into_inner());
        sinks::remove(&path);
        state.sinks.forget_outcome(&path);
        return Ok(list(state, &saved.sinks));
    }
    check_unused(state, name, &path)?;
    sinks::check(&path).map_err(|e| AgentError::Sink(e.to_string()))?;
    let sink = Sink {
        path: path.clone(),
        format,
        keep,
    };
    match wanted.iter_mut().find(|s| s.path == path) {
        Some(old) => *old = sink.clone(),
        None => wanted.push(sink.clone()),
    }
    let saved = state.profiles.set_sinks(name, wanted).await?;
    // Written now, so that a failing write is said here; without a token
    // (not signed in, the server down), the sink says why.
    match for_sink(state, name, Duration::ZERO).await {
        Ok(served) => {
            let written = write_all(state, std::slice::from_ref(&sink), &served, None).await;
            if let Err(e) = written {
                let restored = profile.sinks.clone();
                state.profiles.set_sinks(name, restored).await?;
                return Err(AgentError::Sink(e));
            }
        }
        Err(e) => state.sinks.set_outcome(
            &path,
            Outcome {
                written_at: None,
                error: Some(e.to_string()),
            },
        ),
    }
    state.sinks.changed();
    Ok(list(state, &saved.sinks))
}

/// No other profile writes to `path`.
fn check_unused(state: &AgentState, name: &str, path: &std::path::Path) -> Result<(), AgentError> {
    let config = state
        .profiles
        .current_fast()
        .map_err(|e| crate::profiles::ProfileError::Config(e.to_string()))?;
    let other = config
        .profiles
        .iter()
        .find(|(n, p)| *n != name && p.sinks.iter().any(|s| s.path == path));
    match other {
        Some((other, _)) => Err(AgentError::Sink(format!(
            "{} is already profile {other:?}'s sink",
            path.display()
        ))),
        None => Ok(()),
    }
}

fn list(state: &AgentState, sinks: &[Sink]) -> SinkList {
    SinkList {
        sinks: sinks
            .iter()
            .map(|s| {
                let outcome = state.sinks.outcome(&s.path);
                SinkView {
                    path: s.path.clone(),
                    format: s.format,
                    keep: s.keep,
                    written_at: outcome.written_at,
                    error: outcome.error,
                }
            })
            .collect(),
    }
}

/// A token of profile `name` for its sinks: the `token` op's checks and
/// audit, with op `sink` and the agent as the caller.
async fn for_sink(state: &AgentState, name: &str, min_ttl: Duration) -> Result<Served, AgentError> {
    super::token::for_agent(state, "sink", name, min_ttl).await
}

/// Writes `served` to `sinks` (in a blocking thread), unless the writer
/// `alive` says otherwise by then; records each outcome. The first error.
async fn write_all(
    state: &AgentState,
    sinks: &[Sink],
    served: &Served,
    alive: Option<Arc<AtomicBool>>,
) -> Result<(), String> {
    let files: Vec<(Sink, zeroize::Zeroizing<Vec<u8>>)> = sinks
        .iter()
        .map(|s| {
            let text = sinks::contents(
                s.format,
                &served.token,
                &served.token_type,
                served.expires_at,
            );
            (s.clone(), text)
        })
        .collect();
    let shared = state.sinks.clone();
    let written = tokio::task::spawn_blocking(move || {
        let _guard = shared.write.lock().unwrap_or_else(|p| p.into_inner());
        if alive.is_some_and(|a| !a.load(Ordering::SeqCst)) {
            return Ok(());
        }
        let mut first = Ok(());
        for (sink, text) in &files {
            let outcome = match sinks::write(sink, text) {
                Ok(()) => Outcome {
                    written_at: Some(jwtagent::time::unix_now()),
                    error: None,
                },
                Err(e) => {
                    tracing::warn!(path = %sink.path.display(), error = %e, "cannot write a sink");
                    if first.is_ok() {
                        first = Err(e.to_string());
                    }
                    Outcome {
                        written_at: None,
                        error: Some(e.to_string()),
                    }
                }
            };
            shared.set_outcome(&sink.path, outcome);
        }
        first
    })
    .await;
    written.unwrap_or_else(|e| Err(format!("the writer failed: {e}")))
}

/// Keeps every profile's sinks fresh: one writer per profile with sinks,
/// started, stopped and restarted as the config, the lock and sign-ins
/// change. Runs for the agent's life.
pub(crate) async fn keep_fresh(state: Arc<AgentState>) {
    loop {
        reconcile(&state).await;
        state.sinks.changed.notified().await;
    }
}

/// Brings the writers in line with the config and the lock: a writer whose
/// profile's sinks (or generation) changed, or that is asked to restart,
/// starts again; the files of sinks no longer wanted are deleted, unless
/// kept.
async fn reconcile(state: &Arc<AgentState>) {
    let wanted: HashMap<String, Profile> = match state.profiles.current_fast() {
        Ok(config) if !state.lock.is_locked() => config
            .profiles
            .iter()
            .filter(|(_, p)| !p.sinks.is_empty())
            .map(|(n, p)| (n.clone(), Profile::clone(p)))
            .collect(),
        _ => HashMap::new(),
    };
    let restarts = state.sinks.take_restarts();
    let mut guard = state.sinks.writers.lock().await;
    // The agent is stopping: no writer starts again.
    let Some(writers) = guard.as_mut() else {
        return;
    };
    let names: Vec<String> = writers.keys().cloned().collect();
    for name in names {
        let unchanged = wanted.get(&name).is_some_and(|p| {
            let running = &writers[&name].profile;
            p.sinks == running.sinks && p.generation == running.generation
        });
        if unchanged && !restarts.contains(&name) {
            continue;
        }
        let Some(writer) = writers.remove(&name) else {
            continue;
        };
        let old = writer.stop().await;
        let still: &[Sink] = wanted.get(&name).map_or(&[], |p| &p.sinks);
        let gone = old
            .sinks
            .iter()
            .filter(|s| !still.iter().any(|n| n.path == s.path));
        remove_files(state, gone);
    }
    for (name, profile) in wanted {
        if writers.contains_key(&name) {
            continue;
        }
        let alive = Arc::new(AtomicBool::new(true));
        let task = tokio::spawn(write_loop(
            state.clone(),
            name.clone(),
            profile.sinks.clone(),
            alive.clone(),
        ));
        writers.insert(
            name,
            Writer {
                profile,
                alive,
                task,
            },
        );
    }
}

/// Deletes the files of `sinks` that are not kept.
fn remove_files<'a>(state: &AgentState, sinks: impl Iterator<Item = &'a Sink>) {
    let _guard = state.sinks.write.lock().unwrap_or_else(|p| p.into_inner());
    for sink in sinks.filter(|s| !s.keep) {
        if sinks::remove(&sink.path) {
            tracing::info!(path = %sink.path.display(), "sink deleted");
        }
        state.sinks.forget_outcome(&sink.path);
    }
}

/// The agent stops: every writer stops, and every file not kept goes.
pub(crate) async fn stop_all(state: &AgentState) {
    let writers = state.sinks.writers.lock().await.take();
    for (_, writer) in writers.into_iter().flatten() {
        let profile = writer.stop().await;
        remove_files(state, profile.sinks.iter());
    }
}

/// Profile `name`'s writer: fetches its token as a caller would, writes it
/// when it changed, and wakes again before it expires (after the
/// refresher's own refresh, at 70–80 % of its life).
async fn write_loop(
    state: Arc<AgentState>,
    name: String,
    sinks: Vec<Sink>,
    alive: Arc<AtomicBool>,
) {
    let mut written: Option<(Secret, Option<u64>)> = None;
    let mut failures = 0u32;
    loop {
        // A token that outlives the one written, once that one has aged.
        let min_ttl =
            written
                .as_ref()
                .and_then(|(_, expires)| *expires)
                .map_or(Duration::ZERO, |at| {
                    Duration::from_secs(at.saturating_sub(jwtagent::time::unix_now()))
                        .saturating_add(Duration::from_secs(1))
                });
        let wait = match for_sink(&state, &name, min_ttl).await {
            Ok(served) => {
                failures = 0;
                let fresh = written
                    .as_ref()
                    .is_none_or(|(token, _)| token.expose() != served.token.expose());
                if fresh
                    && write_all(&state, &sinks, &served, Some(alive.clone()))
                        .await
                        .is_ok()
                {
                    written = Some((served.token.clone(), served.expires_at));
                }
                next_wake(served.expires_at)
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                failed(&state, &sinks, &e, &mut written);
                crate::refresh::backoff(failures, 0.5).min(Duration::from_secs(60))
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// A failed fetch: said in each sink's outcome; when no token will come
/// without the user (a sign-in, a renew, an unlock), the files not kept go.
fn failed(
    state: &AgentState,
    sinks: &[Sink],
    error: &AgentError,
    written: &mut Option<(Secret, Option<u64>)>,
) {
    use jwtagent::protocol::ErrorCode;
    tracing::warn!(error = %error, "cannot get the token for a sink");
    let lasting = matches!(
        error.code(),
        ErrorCode::LoginRequired
            | ErrorCode::ExpiredLifetime
            | ErrorCode::Locked
            | ErrorCode::Sealed
            | ErrorCode::Denied
            | ErrorCode::UnknownProfile
    );
    if lasting {
        *written = None;
        remove_files(state, sinks.iter());
    }
    for sink in sinks {
        let mut outcome = state.sinks.outcome(&sink.path);
        outcome.error = Some(error.to_string());
        state.sinks.set_outcome(&sink.path, outcome);
    }
}

/// When to look again: at 85 % of what is left of the token's life (after
/// the refresher has replaced it), not sooner than [`MIN_WAKE`].
fn next_wake(expires_at: Option<u64>) -> Duration {
    match expires_at {
        Some(at) => {
            let left = Duration::from_secs(at.saturating_sub(jwtagent::time::unix_now()));
            left.mul_f64(0.85).max(MIN_WAKE)
        }
        None => UNKNOWN_LIFETIME_REREAD,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer wakes at 85 % of what is left of its token's life, never
    /// sooner than MIN_WAKE (not spinning on a token about to expire), and
    /// reads a token without an expiry again every five minutes.
    #[test]
    fn a_writer_wakes_before_its_token_expires_and_never_spins() {
        let now = jwtagent::time::unix_now();
        let wake = next_wake(Some(now + 100));
        assert!(
            (Duration::from_millis(83_000)..=Duration::from_secs(85)).contains(&wake),
            "{wake:?}"
        );
        assert_eq!(next_wake(Some(now)), MIN_WAKE);
        assert_eq!(next_wake(Some(0)), MIN_WAKE);
        assert_eq!(next_wake(None), UNKNOWN_LIFETIME_REREAD);
    }
}
