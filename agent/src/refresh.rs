//! The refresher: a token cache that keeps itself fresh.
//!
//! One entry per key (profile + scopes + resources). Each entry has one fetch
//! at a time (single-flight: however many callers ask, one request goes out)
//! and a background task that refreshes it at about 75 % of its lifetime, backs
//! off with full jitter on failure (honouring Retry-After), and stops once the
//! key has gone unused for 30 minutes. It asks a [`Fetcher`] for tokens and has
//! no socket or HTTP code of its own; time is tokio's, so tests pause it.

use jwtagent::config::RefreshBefore;
use jwtagent::secret::Secret;
use jwtagent::time::unix_now;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Refresh at 70–80 % of the lifetime (75 % ± jitter).
const REFRESH_FRACTION: (f64, f64) = (0.70, 0.80);
/// A token without `expires_in` is refreshed after this long...
pub(crate) const UNKNOWN_LIFETIME_REFRESH: Duration = Duration::from_secs(300);
/// ... and served for at most this long if refreshing it fails.
pub(crate) const UNKNOWN_LIFETIME_SERVE: Duration = Duration::from_secs(600);
/// Backoff bounds.
pub(crate) const BACKOFF_MIN: Duration = Duration::from_secs(1);
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// The longest Retry-After honoured as given: a server cannot make a profile
/// unusable for longer than the backoff's own maximum.
const RETRY_AFTER_MAX: Duration = BACKOFF_MAX;
/// The soonest a background refresh follows a fetch.
pub(crate) const MIN_REFRESH_AFTER: Duration = Duration::from_secs(1);
/// A key nobody asked for in this long stops being refreshed.
pub(crate) const IDLE_AFTER: Duration = Duration::from_secs(30 * 60);
/// How long a caller waits for a fetch in progress before getting an error.
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(75);

/// What is cached: the profile, and exactly what was asked of the server.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    pub profile: String,
    pub scopes: Vec<String>,
    pub resources: Vec<String>,
    /// DPoP-bound tokens are cached apart from bearer ones.
    pub dpop: bool,
}

/// A token as the fetcher got it.
pub(crate) struct Fetched {
    pub token: Secret,
    pub token_type: String,
    pub scope: Option<String>,
    /// `expires_in`, when the server said.
    pub lifetime: Option<Duration>,
    /// The refresh token to use next time, if any.
    pub refresh_token: Option<Secret>,
    /// The profile's `refresh_before`.
    pub refresh_before: Option<RefreshBefore>,
    /// RFC 8693: the type of token a token exchange issued.
    pub issued_token_type: Option<String>,
    /// The tokens this one was made from (other keys, and the generation of
    /// each that was used): when one of them is replaced, so is this one.
    /// Filled in by the refresher, which got them.
    pub inputs: Vec<(Key, u64)>,
}

/// Why a fetch failed: the fetcher's error, and when to try again.
#[derive(Debug, Clone)]
pub(crate) struct FetchError<E> {
    pub error: E,
    /// The server's Retry-After (429, 503).
    pub retry_after: Option<Duration>,
    /// The failure is about the profile itself (gone, misconfigured): no
    /// background retries.
    pub permanent: bool,
}

/// Gets tokens. The agent's fetcher talks to the OAuth client; tests use fakes.
pub(crate) trait Fetcher: Send + Sync + 'static {
    /// What a failed fetch reports; kept (for `status` and for callers while
    /// backing off), so it is cloned.
    type Error: Clone + fmt::Display + Send + Sync + 'static;

    /// The keys whose tokens a token of `key` is made from, each with the
    /// role it plays (a token exchange's `subject`, ...). The refresher gets
    /// them first, from its own cache as for any caller, and hands them to
    /// [`Fetcher::fetch`]: the fetcher never asks the refresher for anything.
    fn inputs(&self, _key: &Key) -> Result<Vec<(&'static str, Key)>, FetchError<Self::Error>> {
        Ok(Vec::new())
    }

    /// The failure of a fetch of `key` whose input `input` (in `role`)
    /// could not be had.
    fn input_failed(
        &self,
        key: &Key,
        role: &'static str,
        input: &Key,
        error: RefreshError<Self::Error>,
    ) -> FetchError<Self::Error>;

    /// A token for `key`, made from `inputs` (the tokens [`Fetcher::inputs`]
    /// named, in its order).
    fn fetch(
        &self,
        key: &Key,
        refresh_token: Option<Secret>,
        inputs: Vec<(&'static str, Served)>,
    ) -> impl Future<Output = Result<Fetched, FetchError<Self::Error>>> + Send;
}

/// A boxed [`Refresher::get`].
type Getting<'a, E> =
    std::pin::Pin<Box<dyn Future<Output = Result<Served, RefreshError<E>>> + Send + 'a>>;

/// How long another key's token must still be valid to be made into a new
/// one (as an assertion, a subject or an actor token).
const INPUT_MIN_TTL: Duration = Duration::from_secs(30);

/// While the background backs off, callers with no token to be served get
/// one attempt now at most this often (for each cache key).
const FOREGROUND_EVERY: Duration = Duration::from_secs(1);

/// Why a caller got no token.
#[derive(Debug, Clone)]
pub(crate) enum RefreshError<E> {
    /// The last fetch failed; while backing off, when the next attempt is.
    Failed {
        error: E,
        next_attempt_in: Option<Duration>,
    },
    /// Another caller's fetch did not finish in time.
    WaitTimedOut(Duration),
    /// A fetch succeeded but left nothing to serve (a bug).
    NotKept,
}

impl<E: fmt::Display> fmt::Display for RefreshError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RefreshError::Failed {
                error,
                next_attempt_in,
            } => {
                write!(f, "{error}")?;
                if let Some(d) = next_attempt_in {
                    write!(
                        f,
                        " (next attempt in {}s; `--force` tries now)",
                        d.as_secs().max(1)
                    )?;
                }
                Ok(())
            }
            RefreshError::WaitTimedOut(after) => write!(
                f,
                "timed out after {}s waiting for the token request in progress",
                after.as_secs()
            ),
            RefreshError::NotKept => f.write_str("a token was fetched but not kept"),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for RefreshError<E> {}

/// What one fetch issued: held once, and shared (not copied) by every
/// answer that serves it.
#[derive(Debug)]
pub(crate) struct Issued {
    pub token: Secret,
    /// The token's fingerprint (`oauth::fingerprint`) for the audit log,
    /// taken once: a token the size of a JWT cost its SHA-256 on every
    /// request it was served for.
    pub fingerprint: crate::oauth::Fingerprint,
    pub token_type: String,
    pub scope: Option<String>,
    pub issued_token_type: Option<String>,
}

/// A token handed to a caller: what was issued (shared with the cache, so
/// that serving it copies no token, and wipes no copy of one), and when.
#[derive(Debug, Clone)]
pub(crate) struct Served {
    pub issued: Arc<Issued>,
    /// Unix seconds, when the lifetime is known.
    pub expires_at: Option<u64>,
    /// Which fetch of its key this token came from.
    pub generation: u64,
}

impl std::ops::Deref for Served {
    type Target = Issued;

    fn deref(&self) -> &Issued {
        &self.issued
    }
}

/// Per-key state, for `status`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct KeyStatus {
    pub key: Arc<Key>,
    /// Seconds until the held token is no longer served; below zero, how
    /// long ago that was.
    pub expires_in_secs: Option<i64>,
    pub next_refresh_in: Option<Duration>,
    pub last_error: Option<String>,
    pub failures: u32,
    pub refreshing: bool,
}

struct Held {
    issued: Arc<Issued>,
    expires_at: Option<u64>,
    inputs: Vec<(Key, u64)>,
    valid_until: Instant,
}

struct State<E> {
    held: Option<Held>,
    refresh_token: Option<Secret>,
    next_refresh: Option<Instant>,
    retry_at: Option<Instant>,
    failures: u32,
    /// Boxed: most keys never fail, and each of 10,000 holds a `State`.
    last_error: Option<Box<FetchError<E>>>,
    last_used: Option<Instant>,
    /// When the last fetch began (a caller's or the background's).
    last_attempt: Option<Instant>,
    /// The background task has stopped refreshing (idle).
    idle: bool,
    /// Counts successful fetches, so a caller can tell "fetched after I asked".
    generation: u64,
}

impl<E: Clone + fmt::Display> State<E> {
    /// Holds a token just fetched (the fetch started at `started`).
    fn fetched(&mut self, f: Fetched, started: Instant, jitter: f64) {
        let serve_for = f.lifetime.unwrap_or(UNKNOWN_LIFETIME_SERVE);
        self.next_refresh = Some(refresh_at(started, f.lifetime, f.refresh_before, jitter));
        self.held = Some(Held {
            issued: Arc::new(Issued {
                fingerprint: crate::oauth::fingerprint(&f.token),
                token: f.token,
                token_type: f.token_type,
                scope: f.scope,
                issued_token_type: f.issued_token_type,
            }),
            inputs: f.inputs,
            expires_at: f.lifetime.map(|l| unix_now().saturating_add(l.as_secs())),
            // The OAuth client clamps lifetimes; saturate all the same.
            valid_until: started
                .checked_add(serve_for)
                .unwrap_or(started + UNKNOWN_LIFETIME_SERVE),
        });
        self.refresh_token = f.refresh_token;
        self.failures = 0;
        self.retry_at = None;
        self.last_error = None;
        self.generation += 1;
    }

    /// Records a failed fetch: when to try again (never, for a permanent
    /// failure) and a warning, rate-limited: a server failing for hours logs
    /// at the 1st, 2nd, 4th, 8th... failure, and whenever the error changes.
    fn failed(&mut self, key: &Key, e: FetchError<E>, jitter: f64) -> RefreshError<E> {
        self.failures = self.failures.saturating_add(1);
        let delay = retry_delay(&e, self.failures, jitter);
        self.retry_at = (!e.permanent).then(|| Instant::now() + delay);
        let message = e.error.to_string();
        let last = self.last_error.as_ref().map(|l| l.error.to_string());
        if warns(self.failures, last.as_deref(), &message) {
            tracing::warn!(
                profile = %key.profile,
                failures = self.failures,
                retry_in_ms = delay.as_millis() as u64,
                error = %message,
                "token refresh failed"
            );
        } else {
            tracing::debug!(
                profile = %key.profile,
                failures = self.failures,
                retry_in_ms = delay.as_millis() as u64,
                "token refresh failed again"
            );
        }
        let failed = RefreshError::Failed {
            error: e.error.clone(),
            next_attempt_in: None,
        };
        self.last_error = Some(Box::new(e));
        failed
    }
}

/// Whether the `failures`th failure in a row, with `message` after `last`,
/// is logged as a warning: the 1st, 2nd, 4th, 8th..., and whenever the
/// error changes (the rest at debug level).
fn warns(failures: u32, last: Option<&str>, message: &str) -> bool {
    last != Some(message) || failures.is_power_of_two()
}

impl<E> Default for State<E> {
    fn default() -> Self {
        State {
            held: None,
            refresh_token: None,
            next_refresh: None,
            retry_at: None,
            failures: 0,
            last_error: None,
            last_used: None,
            last_attempt: None,
            idle: false,
            generation: 0,
        }
    }
}

/// Each key's entry.
type Entries<E> = HashMap<Arc<Key>, Arc<Entry<E>>>;

struct Entry<E> {
    key: Arc<Key>,
    state: Mutex<State<E>>,
    fetch: tokio::sync::Mutex<()>,
    wake: Notify,
    /// Set to end the key's task, then woken (`wake`): a flag where a
    /// cancellation token would cost each of 10,000 keys an allocation.
    stopped: AtomicBool,
}

impl<E> Entry<E> {
    fn state(&self) -> std::sync::MutexGuard<'_, State<E>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ends the key's task, at the wake-up this gives it (or at once, if
    /// it is not waiting: the wake-up is kept for it).
    fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    fn stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }
}

/// Randomness for jitter, replaceable in tests.
pub(crate) type Rng = Arc<dyn Fn() -> f64 + Send + Sync>;

/// A uniform value in [0, 1) from the system's random generator.
pub(crate) fn system_rng() -> Rng {
    Arc::new(|| {
        let mut b = [0u8; 8];
        if aws_lc_rs::rand::fill(&mut b).is_err() {
            return 0.5;
        }
        (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
    })
}

/// When to refresh a token obtained at `obtained`: at 70–80 % of its lifetime,
/// or earlier if `refresh_before` says so; never sooner than a second after it
/// was obtained, so a tiny lifetime cannot spin.
pub(crate) fn refresh_at(
    obtained: Instant,
    lifetime: Option<Duration>,
    refresh_before: Option<RefreshBefore>,
    rand: f64,
) -> Instant {
    let Some(lifetime) = lifetime else {
        return obtained + UNKNOWN_LIFETIME_REFRESH;
    };
    let (lo, hi) = REFRESH_FRACTION;
    let mut after = lifetime.mul_f64(lo + (hi - lo) * rand.clamp(0.0, 1.0));
    match refresh_before {
        Some(RefreshBefore::Duration(d)) => after = after.min(lifetime.saturating_sub(d)),
        Some(RefreshBefore::Percent(p)) => {
            after = after.min(lifetime.mul_f64(1.0 - f64::from(p) / 100.0))
        }
        None => {}
    }
    // A floor, so that no lifetime (or refresh_before) can make it spin.
    let after = after.max(MIN_REFRESH_AFTER);
    obtained
        .checked_add(after)
        .unwrap_or(obtained + UNKNOWN_LIFETIME_REFRESH)
}

/// Whole seconds from `now` to `at`: below zero when `at` is past.
fn signed_secs(at: Instant, now: Instant) -> i64 {
    let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    match at.checked_duration_since(now) {
        Some(ahead) => secs(ahead),
        None => -secs(now.saturating_duration_since(at)),
    }
}

/// Exponential backoff with full jitter after `failures` consecutive failures
/// (1, 2, 3, ...): uniform in [1 s, min(5 min, 1 s × 2^(failures-1))].
pub(crate) fn backoff(failures: u32, rand: f64) -> Duration {
    let exp = BACKOFF_MIN
        .saturating_mul(
            1u32.checked_shl(failures.saturating_sub(1).min(20))
                .unwrap_or(u32::MAX),
        )
        .min(BACKOFF_MAX);
    let jittered = exp.mul_f64(rand.clamp(0.0, 1.0));
    jittered.max(BACKOFF_MIN)
}

/// The delay before the next attempt after a failure.
pub(crate) fn retry_delay<E>(error: &FetchError<E>, failures: u32, rand: f64) -> Duration {
    match error.retry_after {
        Some(after) => after.clamp(BACKOFF_MIN, RETRY_AFTER_MAX),
        None => backoff(failures, rand),
    }
}

pub(crate) struct Refresher<F: Fetcher> {
    fetcher: Arc<F>,
    /// The key is shared with its entry: one copy of its strings.
    entries: Mutex<Entries<F::Error>>,
    rng: Rng,
}

impl<F: Fetcher> Refresher<F> {
    pub(crate) fn new(fetcher: F) -> Arc<Self> {
        Self::with_rng(fetcher, system_rng())
    }

    pub(crate) fn with_rng(fetcher: F, rng: Rng) -> Arc<Self> {
        Arc::new(Refresher {
            fetcher: Arc::new(fetcher),
            entries: Mutex::new(HashMap::new()),
            rng,
        })
    }

    fn entry(self: &Arc<Self>, key: &Key) -> Arc<Entry<F::Error>> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = entries.get(key) {
            return entry.clone();
        }
        let key = Arc::new(key.clone());
        let entry = Arc::new(Entry {
            key: key.clone(),
            state: Mutex::new(State::default()),
            fetch: tokio::sync::Mutex::new(()),
            wake: Notify::new(),
            stopped: AtomicBool::new(false),
        });
        entries.insert(key, entry.clone());
        let this = self.clone();
        let task_entry = entry.clone();
        tokio::spawn(async move { this.background(task_entry).await });
        entry
    }

    /// A token for `key` with more than `min_ttl` left: the cached one, or a
    /// new one (fetched once for all concurrent callers). `force` always
    /// fetches (a token fetched after this call began counts).
    pub(crate) async fn get(
        self: &Arc<Self>,
        key: &Key,
        min_ttl: Duration,
        force: bool,
    ) -> Result<Served, RefreshError<F::Error>> {
        let entry = self.entry(key);
        let asked = Instant::now();
        // A token made from another that has since been replaced is
        // replaced too, before it is served again.
        let stale = self.inputs_replaced(&entry);
        let force = force || stale;
        let asked_generation = {
            let mut st = entry.state();
            st.last_used = Some(asked);
            if st.idle {
                st.idle = false;
                entry.wake.notify_one();
            }
            if !force && let Some(served) = satisfying(&st, asked, min_ttl) {
                return Ok(served);
            }
            st.generation
        };
        let _guard = match tokio::time::timeout(MAX_WAIT, entry.fetch.lock()).await {
            Ok(guard) => guard,
            Err(_) => {
                return Err(last_error_or(&entry, RefreshError::WaitTimedOut(MAX_WAIT)));
            }
        };
        let now = Instant::now();
        let refresh_token = {
            let st = entry.state();
            // Someone else fetched while we waited: theirs is as fresh as it
            // gets (even for `force`, or a min_ttl longer than any lifetime).
            if st.generation != asked_generation
                && let Some(served) = satisfying(&st, now, Duration::ZERO)
            {
                return Ok(served);
            }
            if !force && let Some(served) = satisfying(&st, now, min_ttl) {
                return Ok(served);
            }
            // Backing off. With no token to serve, a caller gets an attempt
            // now, so that a server back from an outage serves at once: one
            // a second at most, for all callers together (the background
            // keeps its backoff). A server's own Retry-After is honoured,
            // and `force` is the user saying "try now" in any case.
            if !force
                && let (Some(retry_at), Some(err)) = (st.retry_at, &st.last_error)
                && retry_at > now
                && (err.retry_after.is_some()
                    || st
                        .last_attempt
                        .is_some_and(|at| now.saturating_duration_since(at) < FOREGROUND_EVERY))
            {
                return Err(RefreshError::Failed {
                    error: err.error.clone(),
                    next_attempt_in: Some(retry_at - now),
                });
            }
            st.refresh_token.clone()
        };
        // Boxed: the fetch (an HTTP request, its TLS and its parsing) is a
        // large future, which would otherwise make every caller's future
        // (every connection's task) that large whether it fetches or not.
        Box::pin(self.fetch_into(&entry, refresh_token)).await?;
        let st = entry.state();
        satisfying(&st, Instant::now(), Duration::ZERO).ok_or(RefreshError::NotKept)
    }

    /// Whether a token the entry holds was made from another key's token
    /// that has been replaced (refreshed, or dropped) since.
    fn inputs_replaced(&self, entry: &Entry<F::Error>) -> bool {
        let inputs = match entry.state().held.as_ref() {
            Some(held) if !held.inputs.is_empty() => held.inputs.clone(),
            _ => return false,
        };
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        inputs.iter().any(|(key, generation)| {
            entries
                .get(key)
                .is_none_or(|input| input.state().generation != *generation)
        })
    }

    /// Fetches and records the outcome. Call with the entry's fetch lock held.
    async fn fetch_into(
        self: &Arc<Self>,
        entry: &Entry<F::Error>,
        refresh_token: Option<Secret>,
    ) -> Result<(), RefreshError<F::Error>> {
        let started = Instant::now();
        entry.state().last_attempt = Some(started);
        let result = match self.get_inputs(&entry.key).await {
            Ok((inputs, made_from)) => {
                let fetched = self.fetcher.fetch(&entry.key, refresh_token, inputs).await;
                fetched.map(|mut fetched| {
                    fetched.inputs = made_from;
                    fetched
                })
            }
            Err(e) => Err(e),
        };
        let jitter = (self.rng)();
        let outcome = {
            let mut st = entry.state();
            match result {
                Ok(fetched) => {
                    st.fetched(fetched, started, jitter);
                    Ok(())
                }
                Err(e) => Err(st.failed(&entry.key, e, jitter)),
            }
        };
        entry.wake.notify_one();
        outcome
    }

    /// The tokens `key`'s is made from (each from this cache, fetched as for
    /// any caller), and which they are (key and generation). Chains are at
    /// most a few links deep (the config refuses more, and circles).
    async fn get_inputs(
        self: &Arc<Self>,
        key: &Key,
    ) -> Result<(Vec<(&'static str, Served)>, Vec<(Key, u64)>), FetchError<F::Error>> {
        let wanted = self.fetcher.inputs(key)?;
        let mut inputs = Vec::with_capacity(wanted.len());
        let mut made_from = Vec::with_capacity(wanted.len());
        for (role, input) in wanted {
            match self.get_boxed(input.clone()).await {
                Ok(served) => {
                    made_from.push((input, served.generation));
                    inputs.push((role, served));
                }
                Err(e) => return Err(self.fetcher.input_failed(key, role, &input, e)),
            }
        }
        Ok((inputs, made_from))
    }

    /// [`Refresher::get`] of an input, boxed: getting one key's token may get
    /// another's first, so the future's type is recursive.
    fn get_boxed(self: &Arc<Self>, key: Key) -> Getting<'_, F::Error> {
        Box::pin(async move { self.get(&key, INPUT_MIN_TTL, false).await })
    }

    /// Keeps one entry fresh until it goes idle and its token expires.
    async fn background(self: Arc<Self>, entry: Arc<Entry<F::Error>>) {
        loop {
            if entry.stopped() {
                return;
            }
            let now = Instant::now();
            let (wake_at, idle_since) = {
                let st = entry.state();
                let last_used = st.last_used.unwrap_or(now);
                let idle_at = last_used + IDLE_AFTER;
                let due = match (&st.held, st.last_error.as_ref().map(|e| e.permanent)) {
                    // Nothing to keep fresh; a caller's request drives the next fetch.
                    (None, _) | (_, Some(true)) => None,
                    (Some(_), _) => st.retry_at.or(st.next_refresh),
                };
                (due, idle_at)
            };
            if now >= idle_since {
                // Unused for IDLE_AFTER: stop refreshing; drop the entry once its
                // token has expired, unless someone asks again before.
                let expiry = {
                    let mut st = entry.state();
                    st.idle = true;
                    st.held.as_ref().map(|h| h.valid_until)
                };
                tracing::debug!(profile = %entry.key.profile, "token unused for 30 minutes; refreshing stops");
                let until = expiry.unwrap_or(now);
                tokio::select! {
                    _ = entry.wake.notified() => continue,
                    _ = tokio::time::sleep_until(until) => {}
                }
                if entry.state().idle {
                    self.remove_if_same(&entry);
                    return;
                }
                continue;
            }
            let sleep_until = wake_at.map_or(idle_since, |w| w.min(idle_since));
            tokio::select! {
                _ = entry.wake.notified() => continue,
                _ = tokio::time::sleep_until(sleep_until) => {}
            }
            let Some(due) = wake_at else { continue };
            if Instant::now() < due {
                continue;
            }
            let _guard = loop {
                tokio::select! {
                    guard = entry.fetch.lock() => break guard,
                    _ = entry.wake.notified() => if entry.stopped() { return },
                }
            };
            // A caller may have refreshed it while we waited for the lock.
            let (still_due, refresh_token) = {
                let st = entry.state();
                let due = st.retry_at.or(st.next_refresh);
                (
                    due.is_some_and(|d| d <= Instant::now()),
                    st.refresh_token.clone(),
                )
            };
            if still_due {
                // Boxed: each key's task sleeps most of its life, and would
                // otherwise hold room for a whole fetch while it does.
                let _ = Box::pin(self.fetch_into(&entry, refresh_token)).await;
            }
        }
    }

    fn remove_if_same(&self, entry: &Arc<Entry<F::Error>>) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries
            .get(&entry.key)
            .is_some_and(|e| Arc::ptr_eq(e, entry))
        {
            entries.remove(&entry.key);
        }
    }

    /// Drops every entry of `profile` (removed or replaced) and stops its tasks.
    /// The fetcher tokens come from.
    pub(crate) fn fetcher(&self) -> &F {
        &self.fetcher
    }

    pub(crate) fn forget(&self, profile: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.retain(|key, entry| {
            let keep = key.profile != profile;
            if !keep {
                entry.stop();
            }
            keep
        });
    }

    /// Holds `fetched` for `key` as if the refresher had fetched it now (a
    /// sign-in's token: the agent asked for it, the refresher did not).
    pub(crate) fn seed(self: &Arc<Self>, key: &Key, fetched: Fetched) {
        let entry = self.entry(key);
        let jitter = (self.rng)();
        {
            let mut st = entry.state();
            let now = Instant::now();
            st.fetched(fetched, now, jitter);
            st.last_used = Some(now);
            st.idle = false;
        }
        entry.wake.notify_one();
    }

    /// Drops everything (shutdown, lock).
    pub(crate) fn clear(&self) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        for entry in entries.values() {
            entry.stop();
        }
        entries.clear();
    }

    /// Every key's state, for `status`, in no order.
    pub(crate) fn status(&self) -> Vec<KeyStatus> {
        let entries: Vec<Arc<Entry<F::Error>>> = self
            .entries
            .lock()
            .map(|e| e.values().cloned().collect())
            .unwrap_or_default();
        let now = Instant::now();
        entries
            .iter()
            .map(|entry| {
                let st = entry.state();
                KeyStatus {
                    key: entry.key.clone(),
                    expires_in_secs: st.held.as_ref().map(|h| signed_secs(h.valid_until, now)),
                    next_refresh_in: if st.idle || st.held.is_none() {
                        None
                    } else {
                        st.retry_at
                            .or(st.next_refresh)
                            .map(|t| t.saturating_duration_since(now))
                    },
                    last_error: st.last_error.as_ref().map(|e| e.error.to_string()),
                    failures: st.failures,
                    refreshing: !st.idle,
                }
            })
            .collect()
    }
}

#[cfg(test)]
impl<F: Fetcher> Refresher<F> {
    /// How many keys are cached.
    fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The held token if it has more than `min_ttl` left.
fn satisfying<E>(st: &State<E>, now: Instant, min_ttl: Duration) -> Option<Served> {
    let h = st.held.as_ref()?;
    let left = h.valid_until.checked_duration_since(now)?;
    if left.is_zero() || left <= min_ttl {
        return None;
    }
    Some(Served {
        issued: h.issued.clone(),
        expires_at: h.expires_at,
        generation: st.generation,
    })
}

/// The last fetch's error, if there was one, else `default`.
fn last_error_or<E: Clone>(entry: &Entry<E>, default: RefreshError<E>) -> RefreshError<E> {
    entry
        .state()
        .last_error
        .as_ref()
        .map_or(default, |e| RefreshError::Failed {
            error: e.error.clone(),
            next_attempt_in: None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn seconds_to_an_instant_are_signed_and_a_lifetime_past_the_clock_falls_back() {
        let now = Instant::now();
        let later = now + Duration::from_millis(5_500);
        assert_eq!(signed_secs(later, now), 5);
        assert_eq!(signed_secs(now, later), -5);
        assert_eq!(signed_secs(now, now), 0);
        // A lifetime no clock can add: refreshed as one the server did not say.
        assert_eq!(
            refresh_at(now, Some(Duration::MAX), None, 0.5),
            now + UNKNOWN_LIFETIME_REFRESH
        );
    }

    #[test]
    fn a_failure_warns_when_new_and_then_at_powers_of_two() {
        assert!(warns(1, None, "503"));
        assert!(warns(2, Some("503"), "503"));
        assert!(!warns(3, Some("503"), "503"));
        assert!(warns(4, Some("503"), "503"));
        assert!(!warns(5, Some("503"), "503"));
        assert!(warns(5, Some("503"), "timeout"), "the error changed");
    }

    #[test]
    fn the_system_rng_is_uniform_in_the_unit_interval() {
        let rng = system_rng();
        let draws: Vec<f64> = (0..10_000).map(|_| rng()).collect();
        assert!(draws.iter().all(|x| (0.0..1.0).contains(x)));
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        // The mean of 10,000 uniform draws is within 0.02 of 1/2 but once in
        // millions (its standard deviation is 0.003).
        assert!((mean - 0.5).abs() < 0.02, "{mean}");
        assert!(draws.iter().any(|&x| x < 0.01) && draws.iter().any(|&x| x > 0.99));
    }

    const LIFETIME: Duration = Duration::from_secs(100);

    /// A fetcher that counts calls, takes `delay` per call, and answers from a
    /// script (then with tokens of `LIFETIME`).
    #[derive(Default)]
    struct Fake {
        calls: AtomicUsize,
        delay: Duration,
        script: Mutex<VecDeque<Result<Option<Duration>, FetchError<String>>>>,
        refresh_tokens_seen: Mutex<Vec<Option<String>>>,
        issue_refresh_token: bool,
        /// The keys each profile's token is made from.
        inputs_of: HashMap<String, Vec<(&'static str, Key)>>,
        /// The input tokens each fetch was handed (role, token).
        inputs_seen: Mutex<Vec<Vec<(&'static str, String)>>>,
    }

    struct Shared(Arc<Fake>);

    impl Fetcher for Shared {
        type Error = String;

        fn inputs(&self, key: &Key) -> Result<Vec<(&'static str, Key)>, FetchError<String>> {
            Ok(self
                .0
                .inputs_of
                .get(&key.profile)
                .cloned()
                .unwrap_or_default())
        }

        fn input_failed(
            &self,
            _key: &Key,
            role: &'static str,
            _input: &Key,
            error: RefreshError<String>,
        ) -> FetchError<String> {
            FetchError {
                error: format!("{role}: {error}"),
                retry_after: None,
                permanent: false,
            }
        }

        async fn fetch(
            &self,
            _key: &Key,
            rt: Option<Secret>,
            inputs: Vec<(&'static str, Served)>,
        ) -> Result<Fetched, FetchError<String>> {
            let fake = &self.0;
            fake.inputs_seen.lock().unwrap().push(
                inputs
                    .iter()
                    .map(|(role, s)| (*role, String::from_utf8(s.token.expose().to_vec()).unwrap()))
                    .collect(),
            );
            let n = fake.calls.fetch_add(1, Ordering::SeqCst) + 1;
            fake.refresh_tokens_seen
                .lock()
                .unwrap()
                .push(rt.map(|s| String::from_utf8(s.expose().to_vec()).unwrap()));
            tokio::time::sleep(fake.delay).await;
            let next = fake.script.lock().unwrap().pop_front();
            let lifetime = match next {
                Some(Err(e)) => return Err(e),
                Some(Ok(lifetime)) => lifetime,
                None => Some(LIFETIME),
            };
            Ok(Fetched {
                token: Secret::new(format!("token-{n}").into_bytes()),
                token_type: "Bearer".into(),
                scope: None,
                lifetime,
                refresh_token: fake
                    .issue_refresh_token
                    .then(|| Secret::new(format!("rt-{n}").into_bytes())),
                refresh_before: None,
                issued_token_type: None,
                inputs: Vec::new(),
            })
        }
    }

    fn key() -> Key {
        Key {
            profile: "p".into(),
            scopes: vec![],
            resources: vec![],
            dpop: false,
        }
    }

    fn refresher(fake: Fake, rand: f64) -> (Arc<Refresher<Shared>>, Arc<Fake>) {
        let fake = Arc::new(fake);
        let r = Refresher::with_rng(Shared(fake.clone()), Arc::new(move || rand));
        (r, fake)
    }

    fn err(retry_after: Option<Duration>) -> FetchError<String> {
        FetchError {
            error: "HTTP 503: temporarily_unavailable".into(),
            retry_after,
            permanent: false,
        }
    }

    fn token_text(s: &Served) -> String {
        String::from_utf8(s.token.expose().to_vec()).unwrap()
    }

    /// Lets spawned tasks run at the current (paused) instant.
    async fn settle() {
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
    }

    #[test]
    fn refresh_is_scheduled_at_70_to_80_percent_of_the_lifetime() {
        let t0 = Instant::now();
        let l = Duration::from_secs(1000);
        assert_eq!(
            refresh_at(t0, Some(l), None, 0.0) - t0,
            Duration::from_secs(700)
        );
        assert_eq!(
            refresh_at(t0, Some(l), None, 0.5) - t0,
            Duration::from_secs(750)
        );
        assert_eq!(
            refresh_at(t0, Some(l), None, 1.0) - t0,
            Duration::from_secs(800)
        );
        for i in 0..=100 {
            let at = refresh_at(t0, Some(l), None, f64::from(i) / 100.0) - t0;
            assert!(at >= Duration::from_secs(700) && at <= Duration::from_secs(800));
        }
    }

    #[test]
    fn refresh_before_moves_the_refresh_earlier_never_later() {
        let t0 = Instant::now();
        let l = Duration::from_secs(1000);
        let d = |s| Some(RefreshBefore::Duration(Duration::from_secs(s)));
        assert_eq!(
            refresh_at(t0, Some(l), d(500), 0.5) - t0,
            Duration::from_secs(500)
        );
        assert_eq!(
            refresh_at(t0, Some(l), d(10), 0.5) - t0,
            Duration::from_secs(750)
        );
        let pct = Some(RefreshBefore::Percent(40));
        assert_eq!(
            refresh_at(t0, Some(l), pct, 0.5) - t0,
            Duration::from_secs(600)
        );
        // More than the whole lifetime: refresh soon, but not in a tight loop.
        assert_eq!(
            refresh_at(t0, Some(l), d(5000), 0.5) - t0,
            Duration::from_secs(1)
        );
        assert_eq!(
            refresh_at(t0, Some(Duration::from_millis(600)), d(5000), 0.5) - t0,
            MIN_REFRESH_AFTER
        );
        assert_eq!(
            refresh_at(t0, Some(Duration::ZERO), None, 0.5) - t0,
            MIN_REFRESH_AFTER,
            "no lifetime makes the refresher spin"
        );
        // A lifetime no Instant can hold does not panic.
        let _ = refresh_at(t0, Some(Duration::MAX), None, 1.0);
    }

    #[test]
    fn unknown_lifetime_is_refreshed_after_five_minutes() {
        let t0 = Instant::now();
        assert_eq!(
            refresh_at(t0, None, None, 0.9) - t0,
            Duration::from_secs(300)
        );
    }

    #[test]
    fn backoff_doubles_with_full_jitter_from_one_second_to_five_minutes() {
        let caps: Vec<u64> = (1..=12).map(|n| backoff(n, 1.0).as_secs()).collect();
        assert_eq!(caps, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(backoff(1000, 1.0), BACKOFF_MAX);
        for n in 1..20 {
            assert_eq!(backoff(n, 0.0), BACKOFF_MIN, "never below a second");
            assert!(backoff(n, 0.5) <= backoff(n, 1.0));
        }
        assert_eq!(backoff(4, 0.5), Duration::from_secs(4));
    }

    #[test]
    fn retry_after_overrides_the_backoff() {
        let e = err(Some(Duration::from_secs(42)));
        assert_eq!(retry_delay(&e, 1, 0.0), Duration::from_secs(42));
        assert_eq!(retry_delay(&e, 9, 1.0), Duration::from_secs(42));
        assert_eq!(retry_delay(&err(Some(Duration::ZERO)), 1, 1.0), BACKOFF_MIN);
        assert_eq!(retry_delay(&err(None), 3, 1.0), Duration::from_secs(4));
        assert_eq!(
            retry_delay(&err(Some(Duration::from_secs(999_999))), 1, 0.5),
            BACKOFF_MAX,
            "Retry-After is capped at the backoff maximum"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn force_tries_now_even_while_backing_off() {
        let fake = Fake::default();
        fake.script.lock().unwrap().extend([
            Err(err(Some(Duration::from_secs(999_999)))),
            Ok(Some(LIFETIME)),
        ]);
        let (r, fake) = refresher(fake, 1.0);
        r.get(&key(), Duration::ZERO, false).await.unwrap_err();
        let backing_off = r.get(&key(), Duration::ZERO, false).await.unwrap_err();
        assert!(
            backing_off.to_string().contains("next attempt in 300s"),
            "{backing_off}"
        );
        assert_eq!(fake.calls.load(Ordering::SeqCst), 1);
        r.get(&key(), Duration::ZERO, true).await.unwrap();
        assert_eq!(fake.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_huge_lifetime_is_served_without_panicking() {
        let fake = Fake::default();
        fake.script
            .lock()
            .unwrap()
            .push_back(Ok(Some(Duration::MAX)));
        let (r, _fake) = refresher(fake, 1.0);
        let served = r.get(&key(), Duration::ZERO, false).await.unwrap();
        // Saturated, not wrapped around into the past.
        assert_eq!(served.expires_at, Some(u64::MAX));
        r.get(&key(), Duration::ZERO, false).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_thousand_concurrent_callers_cause_one_fetch() {
        let (r, fake) = refresher(
            Fake {
                delay: Duration::from_millis(200),
                ..Fake::default()
            },
            0.5,
        );
        let callers: Vec<_> = (0..1000)
            .map(|_| {
                let r = r.clone();
                tokio::spawn(async move { r.get(&key(), Duration::ZERO, false).await })
            })
            .collect();
        for c in callers {
            assert_eq!(token_text(&c.await.unwrap().unwrap()), "token-1");
        }
        assert_eq!(fake.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_fetch_for_one_key_does_not_hold_up_another_key() {
        let (r, _) = refresher(
            Fake {
                delay: Duration::from_secs(20),
                ..Fake::default()
            },
            0.5,
        );
        let slow = {
            let r = r.clone();
            tokio::spawn(async move { r.get(&key(), Duration::ZERO, false).await })
        };
        settle().await;
        let other = Key {
            scopes: vec!["other".into()],
            ..key()
        };
        let started = Instant::now();
        r.get(&other, Duration::ZERO, false).await.unwrap();
        assert_eq!(
            Instant::now() - started,
            Duration::from_secs(20),
            "its own fetch only"
        );
        slow.await.unwrap().unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn cached_token_is_served_and_refreshed_before_it_expires() {
        let (r, fake) = refresher(Fake::default(), 0.5);
        assert_eq!(
            token_text(&r.get(&key(), Duration::ZERO, false).await.unwrap()),
            "token-1"
        );
        tokio::time::sleep(Duration::from_secs(74)).await;
        assert_eq!(
            token_text(&r.get(&key(), Duration::ZERO, false).await.unwrap()),
            "token-1"
        );
        assert_eq!(fake.calls.load(Ordering::SeqCst), 1);
        // At 75 % of the lifetime the background task fetches a new one.
        tokio::time::sleep(Duration::from_secs(2)).await;
        settle().await;
        assert_eq!(fake.calls.load(Ordering::SeqCst), 2);
        assert_eq!(
            token_text(&r.get(&key(), Duration::ZERO, false).await.unwrap()),
            "token-2"
        );
        // And again 75 s after that.
        tokio::time::sleep(Duration::from_secs(76)).await;
        settle().await;
        assert_eq!(fake.calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn min_ttl_longer_than_what_remains_fetches_first() {
        let (r, fake) = refresher(Fake::default(), 0.5);
        r.get(&key(), Duration::ZERO, false).await.unwrap();
        tokio::time::sleep(Duration::from_secs(50)).await;
        // 50 s left: enough for 40 s, not for 60 s.
        let t = r.get(&key(), Duration::from_secs(40), false).await.unwrap();
        assert_eq!(token_text(&t), "token-1");
        let t = r.get(&key(), Duration::from_secs(60), false).await.unwrap();
        assert_eq!(token_text(&t), "token-2");
        assert_eq!(fake.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn force_always_fetches() {
        let (r, fake) = refresher(Fake::default(), 0.5);
        r.get(&key(), Duration::ZERO, false).await.unwrap();
        let t = r.get(&key(), Duration::ZERO, true).await.unwrap();
        assert_eq!(token_text(&t), "token-2");
        assert_eq!(fake.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn failing_refreshes_keep_serving_the_valid_token_and_back_off() {
        let fake = Fake::default();
        fake.script.lock().unwrap().extend([
            Ok(Some(LIFETIME)),
            Err(err(None)),
            Err(err(None)),
            Err(err(None)),
        ]);
        // rand = 1.0: backoff is exactly 1 s, 2 s, 4 s, ...
        let (r, fake) = refresher(fake, 1.0);
        r.get(&key(), Duration::ZERO, false).await.unwrap();
        // Refresh due at 80 s (rand 1.0); it fails.
        tokio::time::sleep(Duration::from_secs(80)).await;
        settle().await;
        assert_eq!(fake.calls.load(Ordering::SeqCst), 2);
        let t = r.get(&key(), Duration::ZERO, false).await.unwrap();
        assert_eq!(token_text(&t), "token-1", "still valid, still served");
        let st = &r.status()[0];
        assert_eq!(st.failures, 1);
        assert!(st.last_error.as_ref().unwrap().contains("503"));
        // Retries after 1 s, then 2 s later, then 4 s later (that one succeeds).
        tokio::time::sleep(Duration::from_millis(1001)).await;
        settle().await;
        assert_eq!(fake.calls.load(Ordering::SeqCst), 3);
        tokio::time::sleep(Duration::from_millis(2001)).await;
        settle().await;
        assert_eq!(fake.calls.load(Ordering::SeqCst), 4);
        tokio::time::sleep(Duration::from_millis(3900)).await;
        settle().await;
        assert_eq!(fake.calls.load(Ordering::SeqCst), 4, "not before 4 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
        settle().await;
        assert_eq!(fake.calls.load(Ordering::SeqCst), 5);
        let t = r.get(&key(), Duration::ZERO, false).await.unwrap();
        assert_eq!(token_text(&t), "token-5");
        assert_eq!(r.status()[0].failures, 0);
        assert_eq!(r.status()[0].last_error, None);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_is_honoured() {
        let fake = Fake::default();
        fake.script
            .lock()
            .unwrap()
            .extend([Ok(Some(LIFETIME)), Err(err(Some(Duration::from_secs(15))))]);
        let (r, fake) = refresher(fake, 1.0);
        r.get(&key(), Duration::ZERO, false).await.unwrap();
        tokio::time::sleep(Duration::from_secs(80)).await;
        settle().await;
        assert_eq!(fake.calls.load(Ordering::SeqCst), 2);
        tokio::time::sleep(Duration::from_secs(14)).await;
        settle().await;
        assert_eq!(
            fake.calls.load(Ordering::SeqCst),
            2,
            "not before Retry-After"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        settle().await;
        assert_eq!(fake.calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_caller_with_no_token_tries_now_once_a_second_while_the_background_waits() {
        let fake = Fake::default();
        for _ in 0..3 {
            fake.script.lock().unwrap().push_back(Err(err(None)));
        }
        let (r, fake) = refresher(fake, 1.0);
        let calls = || fake.calls.load(Ordering::SeqCst);
        // Three failures (forced): the background waits 4 s now.
        for _ in 0..3 {
            assert!(r.get(&key(), Duration::ZERO, true).await.is_err());
        }
        assert_eq!(calls(), 3);
        // Asked again within the second: the last error, and what to do.
        let e = r.get(&key(), Duration::ZERO, false).await.unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("next attempt in 4s") && text.contains("--force"),
            "{text}"
        );
        assert_eq!(calls(), 3, "no second attempt within a second");
        // A second on, the server is back: the caller's attempt serves at
        // once, three seconds before the background would have tried.
        tokio::time::sleep(FOREGROUND_EVERY).await;
        let served = r.get(&key(), Duration::ZERO, false).await.unwrap();
        assert_eq!(served.token.expose(), b"token-4");
        assert_eq!(calls(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn unsatisfiable_request_gets_the_last_error_without_waiting() {
        let fake = Fake::default();
        fake.script
            .lock()
            .unwrap()
            .push_back(Err(err(Some(Duration::from_secs(60)))));
        let (r, fake) = refresher(fake, 0.5);
        let e = r.get(&key(), Duration::ZERO, false).await.unwrap_err();
        assert!(
            matches!(&e, RefreshError::Failed { error, .. } if error.contains("503")),
            "{e}"
        );
        let started = Instant::now();
        let e = r.get(&key(), Duration::ZERO, false).await.unwrap_err();
        assert_eq!(Instant::now(), started, "answered at once");
        assert!(e.to_string().contains("next attempt in 60s"), "{e}");
        assert_eq!(
            fake.calls.load(Ordering::SeqCst),
            1,
            "the server is left alone"
        );
        // After the delay, a request tries again.
        tokio::time::sleep(Duration::from_secs(61)).await;
        r.get(&key(), Duration::ZERO, false).await.unwrap();
        assert_eq!(fake.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_unused_for_30_minutes_stops_refreshing_and_is_dropped_at_expiry() {
        let (r, fake) = refresher(Fake::default(), 0.5);
        r.get(&key(), Duration::ZERO, false).await.unwrap();
        let st = &r.status()[0];
        assert!(st.refreshing && st.next_refresh_in == Some(Duration::from_secs(75)));
        assert_eq!(st.expires_in_secs, Some(100));
        // 100 s tokens refreshed every 75 s for 30 minutes: 24 refreshes.
        tokio::time::sleep(IDLE_AFTER + Duration::from_secs(1)).await;
        settle().await;
        let calls = fake.calls.load(Ordering::SeqCst);
        assert_eq!(calls, 1 + 24);
        assert_eq!(r.len(), 1, "kept until its token expires");
        // `status`: held, not refreshed, no next refresh.
        let st = &r.status()[0];
        assert!(
            !st.refreshing && st.next_refresh_in.is_none(),
            "{:?}",
            st.next_refresh_in
        );
        assert!(st.expires_in_secs.is_some());
        tokio::time::sleep(Duration::from_secs(600)).await;
        settle().await;
        assert_eq!(
            fake.calls.load(Ordering::SeqCst),
            calls,
            "no refresh while idle"
        );
        assert!(r.is_empty(), "dropped after expiry");
        // The next request fetches.
        r.get(&key(), Duration::ZERO, false).await.unwrap();
        assert_eq!(fake.calls.load(Ordering::SeqCst), calls + 1);
    }

    #[tokio::test(start_paused = true)]
    async fn unknown_lifetime_refreshes_after_five_minutes() {
        let fake = Fake::default();
        fake.script.lock().unwrap().push_back(Ok(None));
        let (r, fake) = refresher(fake, 0.5);
        let t = r.get(&key(), Duration::ZERO, false).await.unwrap();
        assert_eq!(t.expires_at, None);
        tokio::time::sleep(Duration::from_secs(299)).await;
        settle().await;
        assert_eq!(fake.calls.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_secs(2)).await;
        settle().await;
        assert_eq!(fake.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn refresh_token_is_passed_to_the_next_fetch() {
        let (r, fake) = refresher(
            Fake {
                issue_refresh_token: true,
                ..Fake::default()
            },
            0.5,
        );
        r.get(&key(), Duration::ZERO, false).await.unwrap();
        r.get(&key(), Duration::ZERO, true).await.unwrap();
        r.get(&key(), Duration::ZERO, true).await.unwrap();
        let seen = fake.refresh_tokens_seen.lock().unwrap().clone();
        assert_eq!(seen, [None, Some("rt-1".into()), Some("rt-2".into())]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_seeded_token_is_served_without_a_fetch_and_refreshed_in_time() {
        let (r, fake) = refresher(Fake::default(), 0.5);
        r.seed(
            &key(),
            Fetched {
                token: Secret::new(b"seeded".to_vec()),
                token_type: "Bearer".into(),
                scope: None,
                lifetime: Some(Duration::from_secs(100)),
                refresh_token: None,
                refresh_before: None,
                issued_token_type: None,
                inputs: Vec::new(),
            },
        );
        let served = r.get(&key(), Duration::ZERO, false).await.unwrap();
        assert_eq!(token_text(&served), "seeded");
        assert_eq!(fake.calls.load(Ordering::SeqCst), 0);
        // At about 75 % of its lifetime the background refresh replaces it.
        tokio::time::sleep(Duration::from_secs(80)).await;
        settle().await;
        assert_eq!(fake.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn forget_drops_the_token() {
        let (r, fake) = refresher(Fake::default(), 0.5);
        r.get(&key(), Duration::ZERO, false).await.unwrap();
        r.forget("p");
        assert!(r.is_empty());
        r.get(&key(), Duration::ZERO, false).await.unwrap();
        assert_eq!(fake.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_served_token_carries_its_own_fingerprint_after_each_fetch() {
        let (r, _fake) = refresher(Fake::default(), 0.5);
        let first = r.get(&key(), Duration::ZERO, false).await.unwrap();
        assert_eq!(first.fingerprint, crate::oauth::fingerprint(&first.token));
        let again = r.get(&key(), Duration::ZERO, true).await.unwrap();
        assert_ne!(token_text(&again), token_text(&first));
        assert_eq!(again.fingerprint, crate::oauth::fingerprint(&again.token));
    }

    #[tokio::test(start_paused = true)]
    async fn forget_and_clear_end_the_keys_tasks() {
        let (r, fake) = refresher(Fake::default(), 0.5);
        r.get(&key(), Duration::ZERO, false).await.unwrap();
        r.forget("p");
        // Long past when a live task would have refreshed it: nothing is.
        tokio::time::sleep(Duration::from_secs(3600)).await;
        settle().await;
        assert_eq!(fake.calls.load(Ordering::SeqCst), 1);
        r.get(&key(), Duration::ZERO, false).await.unwrap();
        r.clear();
        tokio::time::sleep(Duration::from_secs(3600)).await;
        settle().await;
        assert_eq!(fake.calls.load(Ordering::SeqCst), 2);
    }

    fn key_of(profile: &str) -> Key {
        Key {
            profile: profile.into(),
            ..key()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_token_made_from_another_gets_it_from_the_cache_and_follows_its_refresh() {
        let fake = Fake {
            inputs_of: HashMap::from([("derived".to_string(), vec![("subject", key_of("base"))])]),
            ..Fake::default()
        };
        let (r, fake) = refresher(fake, 1.0);
        let base = r.get(&key_of("base"), Duration::ZERO, false).await.unwrap();
        let derived = r
            .get(&key_of("derived"), Duration::ZERO, false)
            .await
            .unwrap();
        // Made from the cached base token: no second fetch of base.
        assert_eq!(fake.calls.load(Ordering::SeqCst), 2);
        let token = |s: &Served| String::from_utf8(s.token.expose().to_vec()).unwrap();
        assert_eq!(
            fake.inputs_seen.lock().unwrap().last().unwrap(),
            &vec![("subject", token(&base))]
        );
        // Cached while base is the same.
        let again = r
            .get(&key_of("derived"), Duration::ZERO, false)
            .await
            .unwrap();
        assert_eq!(token(&again), token(&derived));
        // base is fetched anew: derived is made again, from the new one.
        let new_base = r.get(&key_of("base"), Duration::ZERO, true).await.unwrap();
        let new_derived = r
            .get(&key_of("derived"), Duration::ZERO, false)
            .await
            .unwrap();
        assert_ne!(token(&new_derived), token(&derived));
        assert_eq!(
            fake.inputs_seen.lock().unwrap().last().unwrap(),
            &vec![("subject", token(&new_base))]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_input_fails_the_token_made_from_it_naming_its_role() {
        let fake = Fake {
            inputs_of: HashMap::from([("derived".to_string(), vec![("actor", key_of("base"))])]),
            ..Fake::default()
        };
        fake.script.lock().unwrap().push_back(Err(FetchError {
            error: "base refused".into(),
            retry_after: None,
            permanent: true,
        }));
        let (r, fake) = refresher(fake, 1.0);
        let e = r
            .get(&key_of("derived"), Duration::ZERO, false)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("actor: base refused"), "{e}");
        // derived itself was never fetched: only base's attempt.
        assert_eq!(fake.calls.load(Ordering::SeqCst), 1);
    }

    /// A key's task sleeps most of its life, and a connection's request
    /// waits in `get`: neither may hold room for a whole fetch (an HTTP
    /// request with its TLS and parsing) while it does, or 10,000 keys and
    /// 1,000 idle connections cost that much memory each.
    #[test]
    fn a_keys_task_and_a_get_stay_small_with_the_real_fetcher() {
        let dir = tempfile::tempdir().unwrap();
        let mock = keyring_core::mock::Store::new().unwrap();
        let store = crate::store::SecretStore::with_store(mock, crate::store::Backend::Mock);
        let profiles = Arc::new(crate::profiles::Profiles::new(
            dir.path().join("profiles.toml"),
            store.clone(),
        ));
        let dpop = Arc::new(crate::dpop_keys::DpopKeys::new(store.clone()));
        let refresher = Refresher::new(crate::fetcher::AgentFetcher::new(profiles, store, dpop));
        let entry = Arc::new(Entry {
            key: key().into(),
            state: Mutex::new(State::default()),
            fetch: tokio::sync::Mutex::new(()),
            wake: Notify::new(),
            stopped: AtomicBool::new(false),
        });
        let task = refresher.clone().background(entry);
        assert!(
            std::mem::size_of_val(&task) <= 1024,
            "{}",
            std::mem::size_of_val(&task)
        );
        let k = key();
        let get = refresher.get(&k, Duration::ZERO, false);
        assert!(
            std::mem::size_of_val(&get) <= 1024,
            "{}",
            std::mem::size_of_val(&get)
        );
    }
}
