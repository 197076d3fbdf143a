//! Memory handed back when the agent falls quiet. The C allocator keeps
//! what requests and refreshes freed, split by what stays allocated, and it
//! counts in the agent's resident memory until more work reuses it: once no
//! request has come for [`QUIET`], it goes back to the system. An agent
//! that stays quiet is not woken for it: the watcher waits for the next
//! request, and a request costs a clock read and a store.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::time::Duration;
// tokio's clock, which a test can pause.
use tokio::time::Instant;

/// How long without a request makes the agent quiet.
pub(crate) const QUIET: Duration = Duration::from_secs(1);

/// When the last request came, and whether the watcher knows it.
pub(crate) struct Quiet {
    since: Instant,
    /// The last request, in milliseconds since `since`.
    last_ms: AtomicU64,
    /// Whether a request came since memory was last handed back.
    busy: AtomicBool,
    woken: tokio::sync::Notify,
}

impl Default for Quiet {
    fn default() -> Quiet {
        Quiet {
            since: Instant::now(),
            last_ms: AtomicU64::new(0),
            busy: AtomicBool::new(false),
            woken: tokio::sync::Notify::new(),
        }
    }
}

impl Quiet {
    /// Notes a request.
    pub(crate) fn request(&self) {
        // Sequentially consistent with the watcher's store and load: one of
        // the two sees the other (see `watch`).
        self.last_ms.store(self.now_ms(), SeqCst);
        // Only the first request after a quiet spell wakes the watcher.
        if !self.busy.load(SeqCst) && !self.busy.swap(true, SeqCst) {
            self.woken.notify_one();
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.since.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// How long since the last request.
    fn idle_for(&self) -> Duration {
        let now = self.now_ms();
        Duration::from_millis(now.saturating_sub(self.last_ms.load(SeqCst)))
    }

    /// Forever: after each busy spell, once no request came for `quiet`,
    /// calls `release` (once per spell).
    pub(crate) async fn watch(&self, quiet: Duration, release: impl Fn()) {
        loop {
            self.woken.notified().await;
            loop {
                let idle = self.idle_for();
                if idle < quiet {
                    tokio::time::sleep(quiet - idle).await;
                    continue;
                }
                // A request from now on wakes the watcher again; one that
                // came after the look above and saw the spell still busy
                // did not: it is seen by the look again below.
                self.busy.store(false, SeqCst);
                if self.idle_for() >= quiet {
                    break;
                }
            }
            release();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    #[tokio::test(start_paused = true)]
    async fn memory_goes_back_once_a_busy_spell_is_followed_by_quiet() {
        let quiet = Arc::new(Quiet::default());
        let released = Arc::new(AtomicUsize::new(0));
        let watcher = {
            let (quiet, released) = (quiet.clone(), released.clone());
            tokio::spawn(async move {
                quiet
                    .watch(Duration::from_secs(1), || {
                        released.fetch_add(1, SeqCst);
                    })
                    .await
            })
        };
        let released_after = |secs| {
            let released = released.clone();
            async move {
                tokio::time::sleep(Duration::from_secs_f64(secs)).await;
                released.load(SeqCst)
            }
        };
        // Quiet from the start: nothing to hand back, nothing done.
        assert_eq!(released_after(5.0).await, 0);
        // Requests keep coming for a while: nothing yet.
        for _ in 0..10 {
            quiet.request();
            assert_eq!(released_after(0.5).await, 0);
        }
        // Then none: once, a second after the last.
        assert_eq!(released_after(1.2).await, 1);
        assert_eq!(released_after(60.0).await, 1);
        // The next spell, once more.
        quiet.request();
        quiet.request();
        assert_eq!(released_after(0.9).await, 1);
        assert_eq!(released_after(0.3).await, 2);
        watcher.abort();
    }
}
