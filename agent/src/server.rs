//! The accept loop: peer checks, a cap on connections, one task per connection,
//! and graceful shutdown.
//!
//! Each connection is its own task with its own bounded buffers and timeouts, so a
//! client that sends garbage, stops mid-line or never reads its answers only ever
//! holds up itself.

use crate::connection::{Frame, read_frame};
use crate::handler::{After, AgentState, error_line, handle_line};
use crate::peer::{Holder, Peer, boot_ticks_now, resolve, resolve_exe};
use crate::senders::{CredReader, Writer};
use crate::sys::wipe;
use jwtagent::protocol::{ErrorCode, MAX_LINE};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Tunables of the server; the defaults are what the agent runs with.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections served at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// A connection with no complete request for this long is closed.
    pub idle_timeout: Duration,
    /// A response the client does not read within this long closes the connection.
    pub write_timeout: Duration,
    /// How long in-flight requests may run on after shutdown begins.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            idle_timeout: Duration::from_secs(300),
            write_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Serves `listener` until `shutdown` is cancelled (by a `stop` request or a
/// signal), then waits up to the grace period for in-flight requests.
pub(crate) async fn serve(
    listener: UnixListener,
    state: Arc<AgentState>,
    limits: Limits,
    shutdown: CancellationToken,
) {
    // Every byte a connection carries comes with its writer's credentials;
    // accepted sockets inherit the option, so none arrives without them.
    if let Err(e) = rustix::net::sockopt::set_socket_passcred(&listener, true) {
        tracing::warn!(error = %e, "cannot set SO_PASSCRED: caller policies see only the connecting process");
    }
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let idle = Arc::new(Idle::default());
    let bursts = Arc::new(Bursts::default());
    let tracker = TaskTracker::new();
    let my_uid = rustix::process::geteuid().as_raw();
    loop {
        let Some(permit) = slot(&slots, &idle, &shutdown).await else {
            break;
        };
        let stream = match accept(&listener, &shutdown).await {
            Accepted::Stream(stream) => stream,
            Accepted::Retry => continue,
            Accepted::Stop => break,
        };
        let Some((mut peer, accepted_at)) = peer_allowed(&stream, my_uid, &state) else {
            continue;
        };
        let state = state.clone();
        let shutdown = shutdown.clone();
        let limits = limits.clone();
        bursts.opened(open_connections(&slots, &limits));
        let (slots, bursts) = (slots.clone(), bursts.clone());
        // Idle from the moment it is accepted: the longest-idle connection
        // is the oldest one that never asked anything, in accept order. Its
        // token closes it, for an eviction or (as a child of `shutdown`) at
        // shutdown.
        let closing = shutdown.child_token();
        let place = idle.enter(&closing);
        tracker.spawn(async move {
            // The executable (for policies and the audit log) is read here,
            // off the accept loop: a process that started after the accept
            // is never taken for the peer.
            let holder = match peer.pid.and_then(|pid| resolve(pid, accepted_at)) {
                Some((exe, holder)) => {
                    peer.exe = Some(exe);
                    Some(holder)
                }
                None => None,
            };
            tracing::trace!(peer_pid = ?peer.pid, peer_exe = %peer.exe_display(), "connection accepted");
            let conn = Conn {
                state: &state,
                peer: &peer,
                holder: holder.as_ref(),
                limits: &limits,
                shutdown: &shutdown,
            };
            handle_connection(stream, conn, closing, place).await;
            drop(permit);
            if bursts.closed(open_connections(&slots, &limits)) {
                // Milliseconds after a thousand connections (4 ms seen): not
                // on a worker, where the connections still open would wait.
                tokio::task::spawn_blocking(release_free_memory);
            }
        });
    }
    drop(listener);
    wind_down(tracker, limits.shutdown_grace).await;
}

/// Waits up to `grace` for the connections still open to finish.
async fn wind_down(tracker: TaskTracker, grace: Duration) {
    tracker.close();
    let active = tracker.len();
    if active > 0 {
        tracing::info!(active, "waiting for in-flight requests");
    }
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        tracing::warn!(
            grace_secs = grace.as_secs(),
            "in-flight requests did not finish in time; closing them"
        );
    }
}

/// A connection slot; None once the agent shuts down. When every slot is
/// taken, the connection idle the longest makes room, so that idle clients
/// cannot lock everyone else out; only when all are busy does the next one
/// wait.
async fn slot(
    slots: &Arc<Semaphore>,
    idle: &Idle,
    shutdown: &CancellationToken,
) -> Option<OwnedSemaphorePermit> {
    if let Ok(permit) = slots.clone().try_acquire_owned() {
        return Some(permit);
    }
    if idle.evict_oldest() {
        tracing::debug!("all connection slots taken; closing the longest-idle one");
    }
    tokio::select! {
        _ = shutdown.cancelled() => None,
        permit = slots.clone().acquire_owned() => permit.ok(),
    }
}

enum Accepted {
    Stream(UnixStream),
    /// Accepting failed (EMFILE and friends) and a short back-off passed.
    Retry,
    Stop,
}

async fn accept(listener: &UnixListener, shutdown: &CancellationToken) -> Accepted {
    tokio::select! {
        _ = shutdown.cancelled() => Accepted::Stop,
        accepted = listener.accept() => match accepted {
            Ok((stream, _)) => Accepted::Stream(stream),
            Err(e) => {
                // Back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::select! {
                    _ = shutdown.cancelled() => Accepted::Stop,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => Accepted::Retry,
                }
            }
        },
    }
}

/// SO_PEERCRED check: only the agent's own uid may talk to it. An allowed
/// peer's executable is left for its connection's task to resolve, with the
/// time of the accept returned beside it. A refused peer gets one `denied`
/// line (best effort, never blocking), is logged and audited with its
/// executable.
fn peer_allowed(stream: &UnixStream, my_uid: u32, state: &AgentState) -> Option<(Peer, u64)> {
    let accepted_at = boot_ticks_now().unwrap_or(u64::MAX);
    let cred = match stream.peer_cred() {
        Ok(cred) => cred,
        Err(e) => {
            tracing::warn!(error = %e, "refused connection: cannot read peer credentials");
            return None;
        }
    };
    let pid = cred.pid().and_then(|p| u32::try_from(p).ok());
    let mut peer = Peer {
        uid: cred.uid(),
        pid,
        ..Peer::default()
    };
    if cred.uid() == my_uid {
        return Some((peer, accepted_at));
    }
    peer.exe = pid.and_then(|pid| resolve_exe(pid, accepted_at));
    let exe = peer.exe_display();
    tracing::warn!(
        peer_uid = cred.uid(),
        peer_pid = ?cred.pid(),
        peer_exe = %exe,
        "refused connection from another user"
    );
    state
        .audit
        .record(&crate::audit::Record::new(&peer, "connect", None, "denied"));
    let line = error_line(
        ErrorCode::Denied,
        format!(
            "uid {} may not use this agent: it serves uid {my_uid} only",
            cred.uid()
        ),
    );
    let _ = stream.try_write(&line);
    None
}

/// Connections open at once, watched for the end of a burst: when many were
/// open and nearly all have closed, what they used goes back to the system
/// (the allocator keeps it otherwise, and the agent's resident memory stays
/// at the burst's peak).
#[derive(Default)]
struct Bursts {
    /// The most connections open at once since memory was last released.
    peak: std::sync::atomic::AtomicUsize,
}

/// Open connections that make a burst, and the most that may still be open
/// when it is over.
const BURST: usize = 64;
const BURST_OVER: usize = 4;

impl Bursts {
    /// A connection opened; `open` are open now, with it.
    fn opened(&self, open: usize) {
        self.peak
            .fetch_max(open, std::sync::atomic::Ordering::Relaxed);
    }

    /// A connection closed; `open` are still open. True once per burst, as
    /// it ends.
    fn closed(&self, open: usize) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        open <= BURST_OVER
            && self.peak.load(Relaxed) >= BURST
            && self.peak.swap(open, Relaxed) >= BURST
    }
}

fn open_connections(slots: &Semaphore, limits: &Limits) -> usize {
    limits
        .max_connections
        .saturating_sub(slots.available_permits())
}

/// Hands the allocator's free memory back to the system: at the end of a
/// burst of connections, and when the agent falls quiet.
#[cfg(target_os = "linux")]
pub(crate) fn release_free_memory() {
    let started = std::time::Instant::now();
    let released = crate::sys::release_free_memory();
    tracing::debug!(
        released,
        took_us = started.elapsed().as_micros() as u64,
        "free memory returned"
    );
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn release_free_memory() {}

/// The open connections, each with when it began to wait for a request (0
/// while it works on one) and the token that closes it. A connection marks
/// its own entry as it starts and stops waiting, without a lock: only
/// opening, closing and eviction (when every slot is taken) take the lock.
struct Idle {
    started: std::time::Instant,
    next: std::sync::atomic::AtomicU64,
    open: std::sync::Mutex<std::collections::HashMap<u64, Arc<IdleEntry>>>,
}

struct IdleEntry {
    /// The agent's clock, in nanoseconds plus one, when the connection began
    /// to wait; 0 while it works on a request.
    since: std::sync::atomic::AtomicU64,
    close: CancellationToken,
}

/// A connection's entry among the open ones; dropping it removes it.
struct Place {
    idle: Arc<Idle>,
    id: u64,
    entry: Arc<IdleEntry>,
}

impl Default for Idle {
    fn default() -> Self {
        Idle {
            started: std::time::Instant::now(),
            next: std::sync::atomic::AtomicU64::new(0),
            open: std::sync::Mutex::default(),
        }
    }
}

impl Idle {
    fn open(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<u64, Arc<IdleEntry>>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_nanos())
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1)
    }

    /// A connection opens, waiting for its first request.
    fn enter(self: &Arc<Self>, close: &CancellationToken) -> Place {
        use std::sync::atomic::Ordering::Relaxed;
        let id = self.next.fetch_add(1, Relaxed);
        let entry = Arc::new(IdleEntry {
            since: std::sync::atomic::AtomicU64::new(self.now()),
            close: close.clone(),
        });
        self.open().insert(id, entry.clone());
        Place {
            idle: self.clone(),
            id,
            entry,
        }
    }

    /// Closes the connection that has waited longest (the first accepted
    /// among equals); false if none waits.
    fn evict_oldest(&self) -> bool {
        use std::sync::atomic::Ordering::AcqRel;
        use std::sync::atomic::Ordering::Acquire;
        let open = self.open();
        // A connection that stops waiting while it is chosen is not closed:
        // the next oldest is. One already closing (evicted before, or the
        // agent is stopping) makes no room by being chosen again.
        for _ in 0..open.len() {
            let oldest = open
                .iter()
                .map(|(id, e)| (e.since.load(Acquire), *id, e))
                .filter(|(since, _, e)| *since != 0 && !e.close.is_cancelled())
                .min_by_key(|(since, id, _)| (*since, *id));
            let Some((since, _, entry)) = oldest else {
                return false;
            };
            if entry
                .since
                .compare_exchange(since, 0, AcqRel, Acquire)
                .is_ok()
            {
                entry.close.cancel();
                return true;
            }
        }
        false
    }
}

impl Place {
    /// The connection begins to wait for a request.
    fn wait(&self) {
        let now = self.idle.now();
        self.entry
            .since
            .store(now, std::sync::atomic::Ordering::Release);
    }

    /// The connection has a request to work on.
    fn work(&self) {
        self.entry
            .since
            .store(0, std::sync::atomic::Ordering::Release);
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.idle.open().remove(&self.id);
    }
}

/// Resolves the executables of writers not seen before. The connecting
/// process, writing itself, is known already while `holder` (its hold) says
/// it still runs.
fn update_writers(peer: &mut Peer, holder: Option<&Holder>, writers: Option<&[Writer]>) {
    let Some(writers) = writers else {
        peer.too_many_writers = true;
        return;
    };
    for writer in writers {
        if peer.writers.iter().any(|(pid, _)| *pid == writer.pid) {
            continue;
        }
        let exe = match writer.pid {
            0 => None,
            pid if Some(pid) == peer.pid && holder.is_some_and(Holder::alive) => peer.exe.clone(),
            pid => resolve_exe(pid, writer.seen_at),
        };
        if writer.pid != 0 && Some(writer.pid) != peer.pid {
            tracing::debug!(connected_pid = ?peer.pid, writer_pid = writer.pid, "another process writes to this connection");
        }
        peer.writers.push((writer.pid, exe));
    }
}

/// What a connection's task works with.
struct Conn<'a> {
    state: &'a AgentState,
    peer: &'a Peer,
    /// A hold on the connecting process, when its executable is known.
    holder: Option<&'a Holder>,
    limits: &'a Limits,
    shutdown: &'a CancellationToken,
}

/// Serves one connection. `closing` closes it while it waits for a request
/// (an eviction, or the agent's shutdown); `place` is its entry among the
/// open ones, waiting since it was accepted.
async fn handle_connection(
    stream: UnixStream,
    conn: Conn<'_>,
    closing: CancellationToken,
    place: Place,
) {
    let Conn {
        state,
        peer,
        holder,
        limits,
        shutdown,
    } = conn;
    let (read_half, mut writer) = stream.into_split();
    // Requests are a few hundred bytes (an `add` with a PEM key a few KiB);
    // small buffers keep 1,000 idle connections cheap, and `line` grows for
    // the rare long one (up to MAX_LINE).
    let mut reader = BufReader::with_capacity(2 * 1024, CredReader::new(read_half));
    let mut peer = peer.clone();
    let mut line = Vec::with_capacity(512);
    // Answers held back while the client's next request is already read
    // (the CLI writes `hello` and `token` together): they go out together,
    // one write and one wake-up of the client, once no whole request is left
    // to read. Never while the client waits for them.
    let mut held = Vec::new();
    // One timer and one wait on the token for the connection's life, moved
    // on for each request (a later deadline is an atomic store): a timer or
    // a waiter per request would take a lock shared by every connection,
    // twice.
    let timer = tokio::time::sleep(limits.idle_timeout);
    tokio::pin!(timer);
    let closed = closing.cancelled();
    tokio::pin!(closed);
    let mut waits = Waits {
        place,
        fresh: true,
        closing: &closing,
        timer,
        closed,
    };
    loop {
        if !reader.buffer().contains(&b'\n') && !flush(&mut writer, &mut held, limits).await {
            return;
        }
        let next = next_frame(&mut reader, &mut line, &mut waits, limits, shutdown).await;
        let frame = match next {
            Next::Stop => return,
            // Shutting down with the next request unread: what it had
            // answered still goes out.
            Next::Closed => {
                flush(&mut writer, &mut held, limits).await;
                return;
            }
            Next::Frame(frame) => frame,
        };
        let (response, after) = match frame {
            Frame::Eof => return,
            Frame::TooLarge => return refuse_too_large(&mut reader, &mut writer, limits).await,
            Frame::Line if line.iter().all(u8::is_ascii_whitespace) => continue,
            Frame::Line => {
                if reader.get_mut().take_new() {
                    update_writers(&mut peer, holder, reader.get_ref().writers());
                }
                handle_line(state, &peer, &line).await
            }
        };
        // Request lines may carry a secret (`add`) and responses a token:
        // neither outlives its use in our buffers.
        wipe(&mut line);
        let response = rechecked(state, &peer, holder, &after, response);
        let more = reader.buffer().contains(&b'\n');
        if !answer(&mut writer, &mut held, response, &after, more, limits).await {
            return;
        }
        if after == After::Shutdown {
            shutdown.cancel();
            return;
        }
    }
}

/// How a connection waits for its next request: its idle mark among the
/// open connections, and what ends the wait: its idle timeout, or the agent
/// closing it (to make room, or at shutdown).
struct Waits<'a, 'b> {
    place: Place,
    /// No request read yet: the idle mark set at the accept stands.
    fresh: bool,
    closing: &'b CancellationToken,
    timer: std::pin::Pin<&'a mut tokio::time::Sleep>,
    closed: std::pin::Pin<&'a mut tokio_util::sync::WaitForCancellationFuture<'b>>,
}

/// What waiting for a request ended with.
enum Next {
    /// A request line (in `line`), or why there is none.
    Frame(Frame),
    /// The agent closes the connection.
    Closed,
    /// The connection was idle too long, or failed.
    Stop,
}

/// The next request line into `line`.
///
/// A client that sent its next request while the last answer was written
/// has it read at once, with no wait: no idle mark and no idle timer to move
/// on (two clock reads and the timer's update per request). Before any
/// wait, both are set.
async fn next_frame(
    reader: &mut BufReader<CredReader>,
    line: &mut Vec<u8>,
    waits: &mut Waits<'_, '_>,
    limits: &Limits,
    shutdown: &CancellationToken,
) -> Next {
    let next = if !waits.closing.is_cancelled() && line_at_hand(reader) {
        frame_read(read_frame(reader, line).await)
    } else {
        if !waits.fresh {
            waits.place.wait();
        }
        wait_for_frame(reader, line, waits, limits, shutdown).await
    };
    waits.fresh = false;
    waits.place.work();
    next
}

/// Waits for the next request line, up to the idle timeout.
async fn wait_for_frame(
    reader: &mut BufReader<CredReader>,
    line: &mut Vec<u8>,
    waits: &mut Waits<'_, '_>,
    limits: &Limits,
    shutdown: &CancellationToken,
) -> Next {
    waits
        .timer
        .as_mut()
        .reset(tokio::time::Instant::now() + limits.idle_timeout);
    tokio::select! {
        biased;
        _ = &mut waits.closed => {
            if !shutdown.is_cancelled() {
                tracing::debug!("closing an idle connection to make room for a new one");
            }
            wipe(line);
            Next::Closed
        }
        frame = read_frame(reader, line) => frame_read(frame),
        _ = &mut waits.timer => {
            tracing::debug!("closing idle connection");
            Next::Stop
        }
    }
}

/// What reading a request line ended with.
fn frame_read(frame: std::io::Result<Frame>) -> Next {
    match frame {
        Ok(frame) => Next::Frame(frame),
        Err(e) => {
            tracing::debug!(error = %e, "connection read failed");
            Next::Stop
        }
    }
}

/// Whether a whole request line is at hand without waiting: buffered
/// already, or read now by one attempt that does not wait.
fn line_at_hand(reader: &mut BufReader<CredReader>) -> bool {
    use tokio::io::AsyncBufRead;
    if reader.buffer().contains(&b'\n') {
        return true;
    }
    // Nothing is taken from the buffer here: what this attempt reads stays
    // for `read_frame`, and if it finds nothing, the wait that follows
    // polls again with the task's own waker.
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    matches!(
        std::pin::Pin::new(reader).poll_fill_buf(&mut cx),
        std::task::Poll::Ready(Ok(buffered)) if buffered.contains(&b'\n')
    )
}

/// Writes the answers `held`, if any. False when the write failed.
async fn flush(writer: &mut OwnedWriteHalf, held: &mut Vec<u8>, limits: &Limits) -> bool {
    held.is_empty() || send(writer, std::mem::take(held), limits.write_timeout).await
}

/// Writes `response`, with the answers `held` before it; or, while another
/// whole request is already read (`more`) and the client does not wait for
/// this answer, holds it to go out with the next. False when the write
/// failed.
async fn answer(
    writer: &mut OwnedWriteHalf,
    held: &mut Vec<u8>,
    mut response: Vec<u8>,
    after: &After,
    more: bool,
    limits: &Limits,
) -> bool {
    if *after == After::Continue && held.len() + response.len() <= HOLD && more {
        held.extend_from_slice(&response);
        wipe(&mut response);
        return true;
    }
    if !held.is_empty() {
        held.extend_from_slice(&response);
        wipe(&mut response);
        response = std::mem::take(held);
    }
    send(writer, response, limits.write_timeout).await
}

/// `response`, unless `after` asks to check the caller again and it ran
/// another executable between asking and now: then a `denied` error instead.
fn rechecked(
    state: &AgentState,
    peer: &Peer,
    holder: Option<&Holder>,
    after: &After,
    response: Vec<u8>,
) -> Vec<u8> {
    match after {
        After::Recheck(profile)
            if !crate::policy::caller_unchanged(peer, holder.is_some_and(Holder::alive)) =>
        {
            withheld(state, peer, profile, response)
        }
        _ => response,
    }
}

/// The answer `response` for `profile`'s token replaced with a `denied`
/// error.
fn withheld(state: &AgentState, peer: &Peer, profile: &str, mut response: Vec<u8>) -> Vec<u8> {
    tracing::warn!(profile = %profile, peer_pid = ?peer.pid, peer_exe = %peer.exe_display(), "answer withheld: the caller ran another executable by the time it was written");
    state.audit.record(&crate::audit::Record::new(
        peer,
        "answer",
        Some(profile),
        "denied",
    ));
    let instead = crate::handler::instead_of(
        &response,
        ErrorCode::Denied,
        format!(
            "profile {profile:?}: the process that asked ran another executable (an exec) before the answer was written; nothing was sent"
        ),
    );
    wipe(&mut response);
    instead
}

/// Answers a request line over MAX_LINE with `too_large`, and lets the
/// client read it before the connection closes.
async fn refuse_too_large(
    reader: &mut BufReader<CredReader>,
    writer: &mut OwnedWriteHalf,
    limits: &Limits,
) {
    tracing::debug!("request line too large; closing connection");
    let line = error_line(
        ErrorCode::TooLarge,
        format!("request line exceeds {MAX_LINE} bytes; connection closed"),
    );
    if send(writer, line, limits.write_timeout).await {
        linger(reader, writer).await;
    }
}

/// Bytes of answers held back for one write at most.
const HOLD: usize = 64 * 1024;

/// How much of the rest of an oversized request is read and dropped, and
/// for how long, before the connection is closed.
const LINGER_BYTES: usize = 4 * MAX_LINE;
const LINGER_TIME: Duration = Duration::from_secs(1);

/// Before closing on a client still sending: says it is done writing, then
/// reads and drops what the client sends (a bounded amount, for a bounded
/// time). Closed with unread data, a Unix socket makes the client's read fail
/// with ECONNRESET, and the answer it was sent could be lost with it.
async fn linger<R: tokio::io::AsyncRead + Unpin>(reader: &mut R, writer: &mut OwnedWriteHalf) {
    use tokio::io::AsyncReadExt;
    let _ = writer.shutdown().await;
    let mut sink = [0u8; 8 * 1024];
    let mut left = LINGER_BYTES;
    let drain = async {
        while left > 0 {
            match reader.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TIME, drain).await;
}

/// Writes `response` (then wipes it: it may hold a token); false when the
/// connection is to be closed because the write failed or stalled.
async fn send(writer: &mut OwnedWriteHalf, mut response: Vec<u8>, timeout: Duration) -> bool {
    // An answer nearly always fits in the socket's buffer: written at once,
    // with no timer set (a clock read and the timer's setup per answer).
    let written = match write_now(writer, &response) {
        Ok(n) if n == response.len() => Ok(Ok(())),
        Ok(n) => tokio::time::timeout(timeout, writer.write_all(&response[n..])).await,
        Err(e) => Ok(Err(e)),
    };
    wipe(&mut response);
    match written {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "connection write failed");
            false
        }
        Err(_) => {
            tracing::debug!("client does not read its responses; closing connection");
            false
        }
    }
}

/// Writes what of `bytes` the socket takes without waiting; how much that was.
fn write_now(writer: &OwnedWriteHalf, bytes: &[u8]) -> std::io::Result<usize> {
    let mut done = 0;
    while done < bytes.len() {
        match writer.try_write(&bytes[done..]) {
            // Nothing taken: the rest goes the waiting way, which says why.
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncBufReadExt;

    #[tokio::test]
    async fn an_answer_larger_than_the_socket_takes_at_once_goes_out_whole() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let (read_half, mut writer) = ours.into_split();
        let answer: Vec<u8> = (0..4 << 20).map(|i| (i % 251) as u8).collect();
        let expected = answer.clone();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut theirs, &mut got)
                .await
                .unwrap();
            got
        });
        assert!(send(&mut writer, answer, Duration::from_secs(10)).await);
        drop((read_half, writer));
        assert!(
            reader.await.unwrap() == expected,
            "the answer arrived whole"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_the_client_does_not_read_is_given_up_after_the_write_timeout() {
        let (ours, _theirs) = UnixStream::pair().unwrap();
        let (_read_half, mut writer) = ours.into_split();
        let answer = vec![b'x'; 4 << 20];
        // The clock is paused: the timeout passes as soon as nothing else can
        // happen, and a send that never gave up would fail here, not hang.
        let sent = tokio::time::timeout(
            Duration::from_secs(3600),
            send(&mut writer, answer, Duration::from_secs(10)),
        )
        .await;
        assert_eq!(sent, Ok(false), "given up after the write timeout");
    }

    #[test]
    fn the_connection_waiting_longest_is_evicted_and_one_at_work_is_not() {
        let idle = Arc::new(Idle::default());
        let tokens: Vec<CancellationToken> = (0..3).map(|_| CancellationToken::new()).collect();
        let places: Vec<Place> = tokens.iter().map(|t| idle.enter(t)).collect();
        // The first accepted is at work; the other two wait, the third
        // since before the second.
        places[0].work();
        places[1].work();
        places[2].work();
        places[2].wait();
        places[1].wait();
        assert!(idle.evict_oldest());
        assert!(tokens[2].is_cancelled());
        assert!(!tokens[0].is_cancelled() && !tokens[1].is_cancelled());
        assert!(idle.evict_oldest());
        assert!(tokens[1].is_cancelled());
        // Only the one at work is left: nothing to evict.
        assert!(!idle.evict_oldest());
        assert!(!tokens[0].is_cancelled());
        // An evicted connection that waits again before it sees its token
        // is not chosen again: it makes no more room.
        places[2].wait();
        assert!(!idle.evict_oldest());
        // A closed connection leaves the set.
        drop(places);
        assert!(idle.open().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_closes_when_idle_for_the_timeout_since_its_last_request() {
        let agent = Serving::start(Limits {
            idle_timeout: Duration::from_secs(10),
            ..Limits::default()
        });
        let path = agent.path.clone();
        let (read, mut write) = UnixStream::connect(&path).await.unwrap().into_split();
        let mut read = tokio::io::BufReader::new(read);
        let started = tokio::time::Instant::now();
        let mut line = String::new();
        // Four requests 6 s apart: 24 s in all, never 10 s without one.
        for _ in 0..4 {
            tokio::time::advance(Duration::from_secs(6)).await;
            write
                .write_all(b"{\"id\":1,\"op\":\"hello\"}\n")
                .await
                .unwrap();
            line.clear();
            read.read_line(&mut line).await.unwrap();
            assert!(line.contains(r#""ok":true"#), "{line}");
        }
        // Then silence: closed 10 s after the last request, not before.
        line.clear();
        assert_eq!(read.read_line(&mut line).await.unwrap(), 0, "{line}");
        assert!(
            started.elapsed() >= Duration::from_secs(34),
            "{:?}",
            started.elapsed()
        );
        agent.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn half_a_request_is_closed_at_the_idle_timeout() {
        let agent = Serving::start(Limits {
            idle_timeout: Duration::from_secs(10),
            ..Limits::default()
        });
        let path = agent.path.clone();
        let started = tokio::time::Instant::now();
        for pipelined in [false, true] {
            let (mut read, mut write) = connect(&path).await;
            if pipelined {
                // After a whole request, in the same write.
                write
                    .write_all(b"{\"id\":1,\"op\":\"hello\"}\n")
                    .await
                    .unwrap();
            }
            write.write_all(br#"{"id":2,"op":"hel"#).await.unwrap();
            // The clock is paused: the timeout passes as soon as nothing else
            // can happen, and a connection never closed fails here, not hangs.
            let mut answers = String::new();
            let read = tokio::time::timeout(
                Duration::from_secs(3600),
                tokio::io::AsyncReadExt::read_to_string(&mut read, &mut answers),
            );
            assert!(read.await.is_ok(), "closed: {answers}");
            assert_eq!(answers.lines().count(), usize::from(pipelined), "{answers}");
        }
        assert!(
            started.elapsed() >= Duration::from_secs(20),
            "{:?}",
            started.elapsed()
        );
        agent.stop().await;
    }

    /// `serve` on a socket in a directory of its own, with `limits`.
    struct Serving {
        _dir: tempfile::TempDir,
        path: std::path::PathBuf,
        shutdown: CancellationToken,
        serving: tokio::task::JoinHandle<()>,
    }

    impl Serving {
        fn start(limits: Limits) -> Serving {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("s.sock");
            let listener = UnixListener::bind(&path).unwrap();
            let shutdown = CancellationToken::new();
            let serving = tokio::spawn(serve(
                listener,
                Arc::new(AgentState::for_tests(dir.path())),
                limits,
                shutdown.clone(),
            ));
            Serving {
                _dir: dir,
                path,
                shutdown,
                serving,
            }
        }

        async fn stop(self) {
            self.shutdown.cancel();
            self.serving.await.unwrap();
        }
    }

    /// A connection and a reader of its answers.
    async fn connect(
        path: &std::path::Path,
    ) -> (
        tokio::io::BufReader<tokio::net::unix::OwnedReadHalf>,
        OwnedWriteHalf,
    ) {
        let (read, write) = UnixStream::connect(path).await.unwrap().into_split();
        (tokio::io::BufReader::new(read), write)
    }

    /// Sends `hello` and reads its answer: whether it came.
    async fn hello(
        conn: &mut (
            tokio::io::BufReader<tokio::net::unix::OwnedReadHalf>,
            OwnedWriteHalf,
        ),
    ) -> bool {
        let (read, write) = conn;
        if write
            .write_all(b"{\"id\":1,\"op\":\"hello\"}\n")
            .await
            .is_err()
        {
            return false;
        }
        let mut line = String::new();
        read.read_line(&mut line)
            .await
            .is_ok_and(|_| line.contains(r#""ok":true"#))
    }

    #[tokio::test]
    async fn a_connection_whose_first_request_was_at_hand_is_evicted_once_it_waits_longest() {
        let agent = Serving::start(Limits {
            max_connections: 3,
            ..Limits::default()
        });
        let path = agent.path.clone();
        // The first request is written before the agent accepts: it is read
        // without a wait. Then the connection waits, longer than the next.
        let mut first = connect(&path).await;
        assert!(hello(&mut first).await);
        let mut second = connect(&path).await;
        assert!(hello(&mut second).await);
        // A third takes the last slot, and the agent makes room for the
        // next at once: the one waiting longest, the first, is closed.
        let mut third = connect(&path).await;
        assert!(hello(&mut third).await);
        assert!(hello(&mut second).await, "the second is still served");
        let mut rest = String::new();
        assert_eq!(first.0.read_line(&mut rest).await.unwrap(), 0, "{rest}");
        agent.stop().await;
    }

    #[test]
    fn a_burst_ends_once_when_nearly_all_of_its_connections_have_closed() {
        let bursts = Bursts::default();
        // One at a time, as the CLI connects: never a burst.
        for _ in 0..1000 {
            bursts.opened(1);
            assert!(!bursts.closed(0));
        }
        for open in 1..=BURST {
            bursts.opened(open);
        }
        // Still busy: not over.
        assert!(!bursts.closed(BURST_OVER + 1));
        assert!(bursts.closed(BURST_OVER));
        // Over once, not again for the connections that close after it.
        assert!(!bursts.closed(BURST_OVER - 1));
        assert!(!bursts.closed(0));
        // The next burst is seen again.
        bursts.opened(BURST);
        assert!(bursts.closed(0));
    }
}
