//! Signing in as a user (`jwtagent login`): the agent runs the sign-in and
//! keeps what it yields; the CLI only shows the prompts.
//!
//! - Device code (RFC 8628): the agent asks for a code, the CLI shows it, the
//!   agent polls the token endpoint at the server's interval.
//! - Authorization code with PKCE (RFC 6749 §4.1, RFC 7636) on a loopback
//!   redirect (RFC 8252 §7.3): the agent listens on 127.0.0.1, the CLI opens
//!   the browser, the browser brings the code back to the agent.
//!
//! One sign-in per profile at a time: a second `login` joins the one under
//! way. A sign-in is followed by `login_wait` calls; one nobody waits on for
//! [`LEASE`] (the CLI was interrupted) is abandoned.

use crate::error::{AgentError, LoginError};
use crate::fetcher::AgentFetcher;
use crate::oauth::grant::{Grant, Inputs};
use crate::oauth::user::{self, DeviceAuthorization, Pkce};
use crate::oauth::{self, OAuthError};
use crate::refresh::Refresher;
use jwtagent::config::{self, GrantKind, Profile};
use jwtagent::protocol::{LoginProgress, LoginStarted};
use jwtagent::secret::Secret;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// A sign-in nobody has waited on for this long is abandoned.
pub(crate) const LEASE: Duration = Duration::from_secs(15);
/// The longest one `login_wait` waits.
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(30);
/// How long the browser flow waits for the browser.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// The longest request head the redirect listener reads.
const MAX_HEAD: usize = 8 * 1024;
/// How long one browser connection may take to send its request.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections the redirect listener screens at once; more are closed unread.
const MAX_REDIRECT_CONNECTIONS: usize = 16;

type Outcome = Option<Result<LoginProgress, LoginError>>;

/// The loopback listener a browser sign-in's redirect comes to (on the
/// profile's `redirect_port`, else any free port), and its redirect URI.
async fn redirect_listener(profile: &Profile) -> Result<(TcpListener, String), LoginError> {
    let port = match profile.grant {
        config::Grant::AuthorizationCode {
            redirect_port: Some(port),
            ..
        } => port,
        _ => 0,
    };
    let refused = |e: std::io::Error| LoginError::Listen {
        port,
        cause: e.to_string(),
    };
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(refused)?;
    let port = listener.local_addr().map_err(refused)?.port();
    Ok((listener, format!("http://127.0.0.1:{port}/callback")))
}

/// One sign-in under way (or just ended, until the next one).
struct Flow {
    prompt: LoginStarted,
    expires: Instant,
    outcome: tokio::sync::watch::Sender<Outcome>,
    /// When someone last waited on it, and how many wait now.
    waited: Mutex<Instant>,
    waiting: AtomicUsize,
    cancel: CancellationToken,
}

impl Flow {
    /// A sign-in started `now` that shows `prompt` and ends after
    /// `lifetime`.
    fn new(prompt: LoginStarted, lifetime: Duration, now: Instant) -> Arc<Flow> {
        Arc::new(Flow {
            prompt,
            expires: now + lifetime,
            outcome: tokio::sync::watch::channel(None).0,
            waited: Mutex::new(now),
            waiting: AtomicUsize::new(0),
            cancel: CancellationToken::new(),
        })
    }

    fn finish(&self, result: Result<LoginProgress, LoginError>) {
        self.outcome.send_if_modified(|o| {
            if o.is_some() {
                return false;
            }
            *o = Some(result);
            true
        });
        self.cancel.cancel();
    }

    fn ended(&self) -> bool {
        self.outcome.borrow().is_some()
    }

    /// Whether nobody waits on it and nobody has for longer than [`LEASE`].
    fn abandoned(&self, now: Instant) -> bool {
        let waited = *self.waited.lock().unwrap_or_else(|p| p.into_inner());
        self.waiting.load(Ordering::SeqCst) == 0 && now.saturating_duration_since(waited) > LEASE
    }

    /// The seconds it has left at `now`.
    fn left(&self, now: Instant) -> u64 {
        self.expires.saturating_duration_since(now).as_secs()
    }

    /// Ends the flow if it is abandoned or expired at `now`: whether it did.
    fn lapsed(&self, name: &str, now: Instant) -> bool {
        if self.abandoned(now) {
            tracing::info!(profile = %name, "sign-in abandoned");
            self.finish(Err(LoginError::Abandoned(
                name.to_string(),
                LEASE.as_secs(),
            )));
            true
        } else if now >= self.expires {
            self.finish(Err(LoginError::Expired(name.to_string())));
            true
        } else {
            false
        }
    }
}

/// What a sign-in task needs: the profile as it was when the sign-in began,
/// its secret, and the refresher (whose fetcher keeps the result).
struct Job {
    name: String,
    profile: Profile,
    secret: Option<Secret>,
    refresher: Arc<Refresher<AgentFetcher>>,
    flow: Arc<Flow>,
}

impl Job {
    fn fetcher(&self) -> &AgentFetcher {
        self.refresher.fetcher()
    }

    /// A token request with the sign-in's grant.
    async fn exchange(&self, grant: Grant<'_>) -> Result<oauth::Obtained, OAuthError> {
        let inputs = Inputs::default();
        let ask = oauth::Ask {
            name: &self.name,
            profile: &self.profile,
            secret: self.secret.as_ref(),
            dpop: None,
            scopes: &[],
            resources: &[],
            inputs: &inputs,
            sign_in: Some(grant),
        };
        self.fetcher().oauth().token(ask, None).await
    }

    /// Keeps what the sign-in obtained and ends the flow.
    async fn signed_in(&self, obtained: oauth::Obtained) {
        let progress = LoginProgress {
            done: true,
            scope: obtained.response.scope.clone(),
            refresh_token: obtained.refresh_token.is_some(),
            expires_in: None,
        };
        let kept = self
            .fetcher()
            .keep_sign_in(&self.name, &self.profile, obtained)
            .await
            .map(|(key, fetched)| {
                // The new sign-in's token replaces any cached ones.
                self.refresher.forget(&self.name);
                self.refresher.seed(&key, fetched);
            });
        self.flow
            .finish(kept.map(|()| progress).map_err(LoginError::Token));
    }

    /// RFC 8628 §3.4, §3.5: polls until the user acts or the code expires.
    async fn poll(self, device: DeviceAuthorization) {
        let mut interval = Duration::from_secs(device.interval);
        loop {
            tokio::select! {
                _ = self.flow.cancel.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            if self.flow.lapsed(&self.name, Instant::now()) {
                return;
            }
            let result = tokio::select! {
                _ = self.flow.cancel.cancelled() => return,
                r = self.exchange(Grant::DeviceCode(&device.device_code)) => r,
            };
            match result {
                Ok(obtained) => return self.signed_in(obtained).await,
                Err(OAuthError::Idp { error, .. }) if error == "authorization_pending" => {}
                Err(OAuthError::Idp { error, .. }) if error == "slow_down" => {
                    interval = user::slowed(interval);
                    tracing::debug!(profile = %self.name, interval_secs = interval.as_secs(), "the server asked to poll more slowly");
                }
                Err(OAuthError::Idp {
                    error, description, ..
                }) if error == "access_denied" => {
                    return self.flow.finish(Err(LoginError::Denied {
                        name: self.name.clone(),
                        detail: Some(description.unwrap_or(error)),
                    }));
                }
                Err(OAuthError::Idp { error, .. }) if error == "expired_token" => {
                    return self
                        .flow
                        .finish(Err(LoginError::Expired(self.name.clone())));
                }
                // The network comes and goes while the user is away.
                Err(e @ (OAuthError::Network { .. } | OAuthError::BadResponse { .. })) => {
                    tracing::warn!(profile = %self.name, error = %e, "polling for the sign-in failed; trying again");
                }
                Err(e) => return self.flow.finish(Err(LoginError::oauth(&self.name, e))),
            }
        }
    }

    /// Waits for the browser on the loopback redirect; answers every
    /// request to it, and ends with the first that carries this sign-in's
    /// `state`. Connections are screened concurrently (at most
    /// [`MAX_REDIRECT_CONNECTIONS`] at once, each with a short timeout), and
    /// only those of this user's processes are read: another local user can
    /// see `state` in the browser's command line, so it is no secret here.
    async fn listen(self, listener: TcpListener, redirect_uri: String, state: String, pkce: Pkce) {
        let Ok(ours) = listener.local_addr() else {
            return;
        };
        let (callbacks, mut received) = tokio::sync::mpsc::channel(1);
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_REDIRECT_CONNECTIONS));
        // Dropped with this function: no screening outlives the sign-in.
        let mut screening = tokio::task::JoinSet::new();
        // One clock for the whole sign-in: a sleep made anew each turn would
        // never end while connections kept coming, and the sign-in with it.
        let mut second = tokio::time::interval(Duration::from_secs(1));
        second.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let (mut stream, query) = tokio::select! {
                _ = self.flow.cancel.cancelled() => return,
                _ = second.tick() => {
                    if self.flow.lapsed(&self.name, Instant::now()) {
                        return;
                    }
                    while screening.try_join_next().is_some() {}
                    continue;
                }
                Some(callback) = received.recv() => callback,
                accepted = listener.accept() => {
                    let Ok((stream, peer)) = accepted else {
                        // Out of descriptors, say: not a spin while it lasts.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    };
                    match slots.clone().try_acquire_owned() {
                        Ok(slot) => {
                            let name = self.name.clone();
                            let to = callbacks.clone();
                            screening.spawn(screen(stream, ours, peer, name, to, slot));
                        }
                        Err(_) => tracing::warn!(profile = %self.name, %peer, "sign-in redirect: too many connections at once; one closed unread"),
                    }
                    continue;
                }
            };
            // A redirect after the sign-in's end (expired, or abandoned by
            // its CLI) is not redeemed.
            if self.flow.lapsed(&self.name, Instant::now()) {
                let text = format!(
                    "This sign-in has ended. Back in the terminal, run jwtagent login {} to start again.",
                    self.name
                );
                respond(&mut stream, 400, "Sign-in ended", &text).await;
                return;
            }
            if self
                .answer(&mut stream, &query, &state, &redirect_uri, &pkce)
                .await
            {
                return;
            }
        }
    }

    /// Redeems the redirect's authorization `code` (RFC 7636: with the PKCE
    /// verifier), keeps the sign-in, and tells the browser how it went.
    async fn redeem(&self, stream: &mut TcpStream, code: String, redirect_uri: &str, pkce: &Pkce) {
        let code = Secret::new(code.into_bytes());
        let grant = Grant::AuthorizationCode {
            code: &code,
            verifier: &pkce.verifier,
            redirect_uri,
        };
        match self.exchange(grant).await {
            Ok(obtained) => {
                self.signed_in(obtained).await;
                let (title, text) = match self.flow.outcome.borrow().as_ref() {
                    Some(Ok(_)) => (
                        "Signed in",
                        format!(
                            "jwtagent has the tokens of profile {}. You can close this tab.",
                            self.name
                        ),
                    ),
                    _ => (
                        "Sign-in failed",
                        "jwtagent could not keep the sign-in; the terminal says why.".to_string(),
                    ),
                };
                respond(stream, 200, title, &text).await;
            }
            Err(e) => {
                respond(
                    stream,
                    200,
                    "Sign-in failed",
                    "The server refused the code; the terminal says why.",
                )
                .await;
                self.flow.finish(Err(LoginError::oauth(&self.name, e)));
            }
        }
    }

    /// Answers the redirect `query` on `stream`: whether it ended the
    /// sign-in (it carried this sign-in's `state`), or the listener waits on.
    async fn answer(
        &self,
        stream: &mut TcpStream,
        query: &[(String, String)],
        state: &str,
        redirect_uri: &str,
        pkce: &Pkce,
    ) -> bool {
        // What the redirect says reaches the terminal: no control characters.
        let get = |k: &str| {
            query
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| crate::oauth::http::printable(v.chars().take(500).collect()))
        };
        if get("state").as_deref() != Some(state) {
            tracing::warn!(profile = %self.name, "a redirect with another state was refused");
            respond(
                stream,
                400,
                "Not this sign-in",
                "This response does not belong to the sign-in jwtagent started (its state does not match), so it was ignored.",
            )
            .await;
            return false;
        }
        if let Some(error) = get("error") {
            let detail =
                get("error_description").map_or(error.clone(), |d| format!("{error}: {d}"));
            respond(stream, 200, "Sign-in failed", &format!("The server said: {detail}. Back in the terminal, run jwtagent login {} to try again.", self.name)).await;
            let err = if error == "access_denied" {
                LoginError::Denied {
                    name: self.name.clone(),
                    detail: Some(detail),
                }
            } else {
                LoginError::oauth(
                    &self.name,
                    OAuthError::Idp {
                        status: 302,
                        error,
                        description: get("error_description"),
                        retry_after: None,
                        dpop_nonce: None,
                    },
                )
            };
            self.flow.finish(Err(err));
            return true;
        }
        let Some(code) = get("code") else {
            respond(
                stream,
                400,
                "No code",
                "The redirect carries no authorization code.",
            )
            .await;
            return false;
        };
        self.redeem(stream, code, redirect_uri, pkce).await;
        true
    }
}

enum Target {
    Callback(Vec<(String, String)>),
    Other,
}

/// A redirect's query, and the connection to answer it on.
type Callback = (TcpStream, Vec<(String, String)>);

/// One connection to the redirect listener: closed unread unless the
/// kernel says it is this user's; otherwise its request head is read (within
/// [`HEAD_TIMEOUT`]), a callback handed to the sign-in, anything else
/// answered here.
async fn screen(
    mut stream: TcpStream,
    ours: std::net::SocketAddr,
    peer: std::net::SocketAddr,
    name: String,
    callbacks: tokio::sync::mpsc::Sender<Callback>,
    _slot: tokio::sync::OwnedSemaphorePermit,
) {
    let me = rustix::process::geteuid().as_raw();
    let owner = tokio::task::spawn_blocking(move || crate::loopback::peer_uid(ours, peer))
        .await
        .ok()
        .flatten();
    if owner != Some(me) {
        tracing::warn!(profile = %name, %peer, owner = ?owner, "sign-in redirect: refused a connection that is not this user's");
        return;
    }
    match tokio::time::timeout(HEAD_TIMEOUT, read_target(&mut stream)).await {
        Ok(Some(Target::Callback(query))) => {
            let _ = callbacks.send((stream, query)).await;
        }
        Ok(Some(Target::Other)) => {
            respond(
                &mut stream,
                404,
                "Not found",
                "This address only takes the sign-in's redirect.",
            )
            .await;
        }
        _ => {
            respond(
                &mut stream,
                400,
                "Bad request",
                "The request could not be read.",
            )
            .await;
        }
    }
}

/// Reads an HTTP request head and returns what its target asks for.
async fn read_target(stream: &mut TcpStream) -> Option<Target> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() >= MAX_HEAD {
            return None;
        }
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|&b| b == b'\r').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split(' ');
    let (Some("GET"), Some(target)) = (parts.next(), parts.next()) else {
        return None;
    };
    let url = url::Url::parse(&format!("http://127.0.0.1{target}")).ok()?;
    if url.path() != "/callback" {
        return Some(Target::Other);
    }
    Some(Target::Callback(url.query_pairs().into_owned().collect()))
}

/// Answers the browser with a short page and closes.
async fn respond(stream: &mut TcpStream, status: u16, title: &str, text: &str) {
    let body = format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>jwtagent: {t}</title></head><body><h1>{t}</h1><p>{x}</p></body></html>",
        t = html_escape(title),
        x = html_escape(text)
    );
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        _ => "Bad Request",
    };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: {}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    // A peer that does not read holds nothing up for long.
    let _ = tokio::time::timeout(HEAD_TIMEOUT, async {
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// The sign-ins under way, by profile.
#[derive(Default)]
pub(crate) struct Logins {
    flows: Mutex<HashMap<String, Arc<Flow>>>,
}

/// The device flow's start, when the sign-in is to use it: always for a
/// device-code profile; for an authorization-code one when the user has no
/// browser (`headless`) and its server offers the device flow (a server that
/// refuses it to this client leaves the browser flow, whose address is
/// printed).
async fn device_flow(
    oauth: &oauth::OAuthClient,
    name: &str,
    profile: &Profile,
    secret: Option<&Secret>,
    sign_in: &oauth::user::SignIn,
    headless: bool,
) -> Result<Option<DeviceAuthorization>, OAuthError> {
    match profile.grant.kind() {
        GrantKind::DeviceCode => oauth
            .device_authorization(name, profile, secret, sign_in)
            .await
            .map(Some),
        GrantKind::AuthorizationCode if headless && sign_in.device_authorization.is_some() => {
            match oauth
                .device_authorization(name, profile, secret, sign_in)
                .await
            {
                Ok(device) => Ok(Some(device)),
                Err(e) => {
                    tracing::info!(profile = %name, error = %e, "the server refused the device flow to this client: the browser flow instead");
                    Ok(None)
                }
            }
        }
        _ => Ok(None),
    }
}

impl Logins {
    fn flow(&self, name: &str) -> Option<Arc<Flow>> {
        let flows = self.flows.lock().unwrap_or_else(|p| p.into_inner());
        flows.get(name).cloned()
    }

    /// Whether a sign-in is under way for `name`.
    pub(crate) fn under_way(&self, name: &str) -> bool {
        self.flow(name).is_some_and(|f| !f.ended())
    }

    /// Ends the sign-in under way for `name`, if any.
    pub(crate) fn cancel(&self, name: &str, why: &'static str) {
        if let Some(flow) = self.flow(name) {
            flow.finish(Err(LoginError::Cancelled(name.to_string(), why)));
        }
    }

    /// Ends every sign-in under way (`lock`).
    pub(crate) fn cancel_all(&self, why: &'static str) {
        let flows: Vec<(String, Arc<Flow>)> = {
            let flows = self.flows.lock().unwrap_or_else(|p| p.into_inner());
            flows.iter().map(|(n, f)| (n.clone(), f.clone())).collect()
        };
        for (name, flow) in flows {
            flow.finish(Err(LoginError::Cancelled(name, why)));
        }
    }

    /// The sign-in under way for `name`, joined (its lease renewed), if any.
    pub(crate) fn join(&self, name: &str) -> Option<LoginStarted> {
        let flow = self.flow(name).filter(|f| !f.ended())?;
        *flow.waited.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        Some(joined(&flow))
    }

    /// `login`: starts a sign-in for user profile `name` (as `profile`,
    /// its client authenticating with `secret`), whose tokens go to
    /// `refresher`; or joins the one under way.
    pub(crate) async fn start(
        &self,
        name: &str,
        profile: Profile,
        secret: Option<Secret>,
        refresher: Arc<Refresher<AgentFetcher>>,
        headless: bool,
    ) -> Result<LoginStarted, AgentError> {
        if let Some(joined) = self.join(name) {
            return Ok(joined);
        }
        let oauth = refresher.fetcher().oauth();
        let failed = |e: OAuthError| AgentError::from(LoginError::oauth(name, e));
        let sign_in = oauth
            .sign_in(name, &profile, secret.as_ref())
            .await
            .map_err(failed)?;
        let job = |flow: &Arc<Flow>| Job {
            name: name.to_string(),
            profile: profile.clone(),
            secret: secret.clone(),
            refresher: refresher.clone(),
            flow: flow.clone(),
        };
        let device = device_flow(oauth, name, &profile, secret.as_ref(), &sign_in, headless)
            .await
            .map_err(failed)?;
        let flow = if let Some(device) = device {
            let flow = Flow::new(
                LoginStarted::Device {
                    verification_uri: device.verification_uri.clone(),
                    user_code: device.user_code.clone(),
                    verification_uri_complete: device.verification_uri_complete.clone(),
                    expires_in: device.expires_in,
                    joined: false,
                },
                Duration::from_secs(device.expires_in),
                Instant::now(),
            );
            tracing::info!(profile = %name, "device sign-in started");
            tokio::spawn(job(&flow).poll(device));
            flow
        } else {
            let endpoint = sign_in.authorization.clone().ok_or_else(|| {
                failed(OAuthError::Setup(oauth::SetupError::TokenUrl(
                    "the server's metadata names no authorization_endpoint: give --authorization-url".into(),
                )))
            })?;
            let (listener, redirect_uri) = redirect_listener(&profile).await?;
            let state_param = oauth::random_id().map_err(failed)?;
            let pkce = Pkce::new().map_err(failed)?;
            let url = user::authorization_url(
                &endpoint,
                &profile,
                &redirect_uri,
                &state_param,
                &pkce.challenge,
            );
            let flow = Flow::new(
                LoginStarted::Browser {
                    url: url.to_string(),
                    redirect_uri: redirect_uri.clone(),
                    expires_in: BROWSER_TIMEOUT.as_secs(),
                    joined: false,
                },
                BROWSER_TIMEOUT,
                Instant::now(),
            );
            tracing::info!(profile = %name, %redirect_uri, "browser sign-in started");
            tokio::spawn(job(&flow).listen(listener, redirect_uri, state_param, pkce));
            flow
        };
        Ok(self.enter(name, flow))
    }

    /// Enters `flow` as profile `name`'s sign-in under way; what it shows.
    fn enter(&self, name: &str, flow: Arc<Flow>) -> LoginStarted {
        let prompt = flow.prompt.clone();
        let mut flows = self.flows.lock().unwrap_or_else(|p| p.into_inner());
        // Two `login`s that raced past `join`: the first one in wins, the
        // other's flow is dropped and it joins.
        if let Some(other) = flows.get(name).filter(|f| !f.ended()) {
            flow.cancel.cancel();
            return joined(other);
        }
        flows.insert(name.to_string(), flow);
        prompt
    }

    /// `login_wait`: waits up to `wait` for the sign-in under way.
    pub(crate) async fn wait(
        &self,
        name: &str,
        wait: Duration,
    ) -> Result<LoginProgress, AgentError> {
        let flow = self
            .flow(name)
            .ok_or_else(|| LoginError::NoneUnderWay(name.to_string()))?;
        let mut rx = flow.outcome.subscribe();
        // Counted while waiting, also if this wait is dropped half-way.
        struct Waiting<'a>(&'a Flow);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                *self.0.waited.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
                self.0.waiting.fetch_sub(1, Ordering::SeqCst);
            }
        }
        flow.waiting.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(&flow);
        let deadline = tokio::time::sleep(wait.min(MAX_WAIT));
        tokio::pin!(deadline);
        loop {
            if let Some(outcome) = rx.borrow_and_update().clone() {
                return outcome.map_err(AgentError::from);
            }
            tokio::select! {
                changed = rx.changed() => if changed.is_err() {
                    return Err(LoginError::Cancelled(name.to_string(), "the agent is stopping").into());
                },
                _ = &mut deadline => return Ok(LoginProgress {
                    done: false,
                    scope: None,
                    refresh_token: false,
                    expires_in: Some(flow.left(Instant::now())),
                }),
            }
        }
    }
}

fn joined(flow: &Flow) -> LoginStarted {
    let mut prompt = flow.prompt.clone();
    match &mut prompt {
        LoginStarted::Device {
            joined, expires_in, ..
        }
        | LoginStarted::Browser {
            joined, expires_in, ..
        } => {
            *joined = true;
            *expires_in = flow.left(Instant::now());
        }
    }
    prompt
}

#[cfg(test)]
mod tests {
    use super::*;

    fn browser_flow(lifetime: u64, now: Instant) -> Arc<Flow> {
        let prompt = LoginStarted::Browser {
            url: "https://idp.example/authorize".into(),
            redirect_uri: "http://127.0.0.1:1/callback".into(),
            expires_in: lifetime,
            joined: false,
        };
        Flow::new(prompt, Duration::from_secs(lifetime), now)
    }

    /// A sign-in nobody waits on is abandoned a lease after the last wait
    /// ended, not while one waits, and ends when it expires either way.
    #[test]
    fn a_sign_in_is_abandoned_a_lease_after_its_last_wait_and_ends_at_expiry() {
        let start = Instant::now();
        let at = |secs: u64| start + Duration::from_secs(secs);
        let flow = browser_flow(600, start);
        assert!(!flow.abandoned(at(1)));
        assert!(
            !flow.abandoned(at(LEASE.as_secs())),
            "a lease is not over at its end"
        );
        assert!(flow.abandoned(at(LEASE.as_secs() + 1)));
        flow.waiting.fetch_add(1, Ordering::SeqCst);
        assert!(!flow.abandoned(at(500)), "someone waits");
        assert_eq!(flow.left(at(100)), 500);
        assert_eq!(flow.left(at(700)), 0);

        assert!(!flow.lapsed("web", at(599)));
        assert!(!flow.ended());
        assert!(flow.lapsed("web", at(600)));
        assert!(flow.ended());
        assert!(matches!(
            &*flow.outcome.borrow(),
            Some(Err(LoginError::Expired(name))) if name == "web"
        ));

        let flow = browser_flow(600, start);
        assert!(!flow.lapsed("web", at(LEASE.as_secs())));
        assert!(flow.lapsed("web", at(LEASE.as_secs() + 1)));
        assert!(matches!(
            &*flow.outcome.borrow(),
            Some(Err(LoginError::Abandoned(name, lease))) if name == "web" && *lease == LEASE.as_secs()
        ));
        assert!(flow.cancel.is_cancelled(), "its job is told to stop");
    }

    /// A second `login` joins the sign-in under way; `cancel` ends it, and
    /// `cancel_all` every one.
    #[tokio::test]
    async fn logins_are_joined_while_under_way_and_cancelled_by_name_or_all() {
        let logins = Logins::default();
        assert!(!logins.under_way("web") && logins.join("web").is_none());
        let now = Instant::now();
        logins.enter("web", browser_flow(600, now));
        logins.enter("api", browser_flow(600, now));
        assert!(logins.under_way("web"));
        let Some(LoginStarted::Browser {
            joined, expires_in, ..
        }) = logins.join("web")
        else {
            panic!("joined a browser sign-in");
        };
        assert!(joined && (598..=600).contains(&expires_in), "{expires_in}");
        // A flow entered while one is under way is dropped for it.
        let late = browser_flow(60, now);
        assert!(matches!(
            logins.enter("web", late.clone()),
            LoginStarted::Browser { joined: true, .. }
        ));
        assert!(late.cancel.is_cancelled());

        logins.cancel("web", "the profile was removed");
        assert!(!logins.under_way("web") && logins.join("web").is_none());
        let err = logins
            .wait("web", Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("the profile was removed"), "{err}");
        assert!(logins.under_way("api"));
        let progress = logins.wait("api", Duration::from_millis(10)).await.unwrap();
        assert!(!progress.done && progress.expires_in.is_some());
        let api = logins.flow("api").unwrap();
        assert_eq!(api.waiting.load(Ordering::SeqCst), 0, "the wait is over");
        assert!(*api.waited.lock().unwrap() > now, "and renewed the lease");
        logins.cancel_all("the agent was locked");
        assert!(!logins.under_way("api"));
    }

    #[test]
    fn pages_escape_what_the_server_said() {
        assert_eq!(
            html_escape("<script>\"x\" & 'y'\u{7}</script>"),
            "&lt;script&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/script&gt;"
        );
    }
}
