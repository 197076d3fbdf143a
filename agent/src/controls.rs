//! ssh-agent's controls over a profile's use: a lifetime (`--lifetime`,
//! like `ssh-add -t`), after which the agent drops the profile's tokens and
//! refuses it until `renew`; and confirmation on use (`--confirm`, like
//! `ssh-add -c`), where the person at the keyboard answers an askpass
//! program before a token is served.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long the askpass program may take to answer, unless
/// `JWTAGENT_CONFIRM_TIMEOUT` (seconds) says otherwise.
const ASK_TIMEOUT: Duration = Duration::from_secs(30);

/// The lifetimes running: profile name → when it runs out.
#[derive(Default)]
pub(crate) struct Lifetimes {
    running: Mutex<HashMap<String, Instant>>,
    /// Woken when a lifetime starts, so the expiry task sleeps until the
    /// nearest end (and not at all when none runs).
    changed: tokio::sync::Notify,
}

impl Lifetimes {
    /// Starts (or restarts) profile `name`'s lifetime of `lifetime`.
    pub(crate) fn start(&self, name: &str, lifetime: Duration) {
        let end = Instant::now()
            .checked_add(lifetime)
            .unwrap_or_else(far_future);
        if let Ok(mut running) = self.running.lock() {
            running.insert(name.to_string(), end);
        }
        self.changed.notify_one();
    }

    /// Forgets profile `name`'s lifetime (removed, replaced).
    pub(crate) fn forget(&self, name: &str) {
        if let Ok(mut running) = self.running.lock() {
            running.remove(name);
        }
    }

    /// What is left of profile `name`'s lifetime; `None` when none runs
    /// (it ran out, or the agent started since the profile was added).
    pub(crate) fn left(&self, name: &str) -> Option<Duration> {
        let end = *self.running.lock().ok()?.get(name)?;
        end.checked_duration_since(Instant::now())
            .filter(|left| !left.is_zero())
    }

    /// The profiles whose lifetime has run out, taken off the list.
    pub(crate) fn take_ended(&self) -> Vec<String> {
        let now = Instant::now();
        let Ok(mut running) = self.running.lock() else {
            return Vec::new();
        };
        let ended: Vec<String> = running
            .iter()
            .filter(|(_, end)| **end <= now)
            .map(|(name, _)| name.clone())
            .collect();
        for name in &ended {
            running.remove(name);
        }
        ended
    }

    /// When the next lifetime ends.
    pub(crate) fn next_end(&self) -> Option<Instant> {
        self.running.lock().ok()?.values().min().copied()
    }

    /// Resolves when a lifetime starts.
    pub(crate) async fn changed(&self) {
        self.changed.notified().await;
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(100 * 365 * 86400)
}

/// Why a token was not served without a yes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refused {
    NoAskpass,
    TimedOut(Duration),
    Said(String),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::NoAskpass => f.write_str(
                "no askpass program to ask with: set JWTAGENT_ASKPASS (or SSH_ASKPASS, with a display) in the agent's environment",
            ),
            Refused::TimedOut(limit) => write!(
                f,
                "nobody answered within {}s",
                limit.as_secs()
            ),
            Refused::Said(why) => f.write_str(why),
        }
    }
}

type Answer = Arc<tokio::sync::OnceCell<Result<(), Refused>>>;

/// Confirmations: the yeses remembered (`--confirm-for`), and the questions
/// being asked, which concurrent requests for the same profile and caller
/// share.
#[derive(Default)]
pub(crate) struct Confirms {
    remembered: Mutex<HashMap<(String, String), Instant>>,
    asking: Mutex<HashMap<(String, String), Answer>>,
}

impl Confirms {
    /// Asks (through askpass) whether `caller` may have a token of profile
    /// `name`, unless a yes for them is remembered; a yes is remembered for
    /// `remember`. Answers whether this call asked, and the answer.
    pub(crate) async fn ask(
        &self,
        name: &str,
        caller: &str,
        prompt: &str,
        remember: Option<Duration>,
    ) -> (bool, Result<(), Refused>) {
        let key = (name.to_string(), caller.to_string());
        if self.remembered(&key) {
            return (false, Ok(()));
        }
        let (answer, first) = {
            let Ok(mut asking) = self.asking.lock() else {
                return (false, Err(Refused::Said("internal error".into())));
            };
            match asking.get(&key) {
                Some(answer) => (answer.clone(), false),
                None => {
                    let answer = Answer::default();
                    asking.insert(key.clone(), answer.clone());
                    (answer, true)
                }
            }
        };
        let result = answer.get_or_init(|| askpass(prompt)).await.clone();
        // The question is over: the next request asks anew (whoever gets
        // here first takes it off; a first asker that went away does not
        // leave its answer behind for later ones).
        if let Ok(mut asking) = self.asking.lock()
            && asking.get(&key).is_some_and(|a| Arc::ptr_eq(a, &answer))
        {
            asking.remove(&key);
            if let (Ok(()), Some(remember)) = (&result, remember)
                && let (Ok(mut remembered), Some(until)) =
                    (self.remembered.lock(), Instant::now().checked_add(remember))
            {
                remembered.insert(key, until);
            }
        }
        (first, result)
    }

    fn remembered(&self, key: &(String, String)) -> bool {
        let Ok(mut remembered) = self.remembered.lock() else {
            return false;
        };
        match remembered.get(key) {
            Some(until) if *until > Instant::now() => true,
            Some(_) => {
                remembered.remove(key);
                false
            }
            None => false,
        }
    }

    /// Forgets every yes for profile `name` (replaced, removed), or every
    /// one (the agent was locked).
    pub(crate) fn forget(&self, name: Option<&str>) {
        if let Ok(mut remembered) = self.remembered.lock() {
            remembered.retain(|(profile, _), _| name.is_some_and(|n| n != profile));
        }
    }
}

/// One question through askpass, asked now (unlocking an agent that
/// locked itself).
pub(crate) async fn ask_once(prompt: &str) -> Result<(), Refused> {
    askpass(prompt).await
}

/// Whether there is an askpass program to ask with.
pub(crate) fn can_ask() -> bool {
    askpass_program().is_some()
}

/// The askpass program, by ssh-add -c's conventions: `JWTAGENT_ASKPASS`,
/// else `SSH_ASKPASS` when there is a display to show it on.
fn askpass_program() -> Option<PathBuf> {
    let set = |var: &str| std::env::var_os(var).filter(|v| !v.is_empty());
    set("JWTAGENT_ASKPASS").map(PathBuf::from).or_else(|| {
        let display = set("DISPLAY").or_else(|| set("WAYLAND_DISPLAY"));
        display.and(set("SSH_ASKPASS")).map(PathBuf::from)
    })
}

fn ask_timeout() -> Duration {
    let setting = std::env::var("JWTAGENT_CONFIRM_TIMEOUT").ok();
    jwtagent::time::whole_seconds(setting.as_deref()).unwrap_or(ASK_TIMEOUT)
}

/// Runs the askpass program with `prompt` as its argument (and
/// `SSH_ASKPASS_PROMPT=confirm`, as ssh-agent does): exit status 0 is a
/// yes; anything else, no program, or no answer in time is a no.
async fn askpass(prompt: &str) -> Result<(), Refused> {
    let program = askpass_program().ok_or(Refused::NoAskpass)?;
    let mut child = tokio::process::Command::new(&program)
        .arg(prompt)
        .env("SSH_ASKPASS_PROMPT", "confirm")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Refused::Said(format!("cannot run {}: {e}", program.display())))?;
    let limit = ask_timeout();
    match tokio::time::timeout(limit, child.wait()).await {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(Refused::Said(format!("the answer was no ({status})"))),
        Ok(Err(e)) => Err(Refused::Said(e.to_string())),
        Err(_) => Err(Refused::TimedOut(limit)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lifetime_runs_out_and_is_taken_once() {
        let lifetimes = Lifetimes::default();
        assert_eq!(lifetimes.left("a"), None, "none started");
        lifetimes.start("a", Duration::from_secs(3600));
        lifetimes.start("b", Duration::ZERO);
        assert!(lifetimes.left("a").unwrap() > Duration::from_secs(3590));
        assert_eq!(lifetimes.left("b"), None, "ran out");
        assert!(lifetimes.next_end().unwrap() <= Instant::now());
        assert_eq!(lifetimes.take_ended(), ["b"]);
        assert!(lifetimes.take_ended().is_empty());
        lifetimes.forget("a");
        assert_eq!(lifetimes.left("a"), None);
        assert_eq!(lifetimes.next_end(), None);
    }

    #[test]
    fn a_remembered_yes_lasts_until_its_time_and_is_forgotten_by_profile() {
        let confirms = Confirms::default();
        let key = |profile: &str, caller: &str| (profile.to_string(), caller.to_string());
        let later = Instant::now() + Duration::from_secs(60);
        let remember = |k: (String, String), until: Instant| {
            confirms.remembered.lock().unwrap().insert(k, until);
        };
        remember(key("api", "/usr/bin/curl"), later);
        remember(key("api", "/usr/bin/git"), later);
        remember(key("ci", "/usr/bin/git"), later);
        assert!(confirms.remembered(&key("api", "/usr/bin/curl")));
        assert!(!confirms.remembered(&key("api", "/usr/bin/wget")));
        // Past its time: no longer a yes, and taken off.
        remember(
            key("api", "/usr/bin/curl"),
            Instant::now() - Duration::from_millis(1),
        );
        assert!(!confirms.remembered(&key("api", "/usr/bin/curl")));
        assert_eq!(confirms.remembered.lock().unwrap().len(), 2);
        confirms.forget(Some("api"));
        assert!(!confirms.remembered(&key("api", "/usr/bin/git")));
        assert!(confirms.remembered(&key("ci", "/usr/bin/git")));
        confirms.forget(None);
        assert!(confirms.remembered.lock().unwrap().is_empty());
    }

    #[test]
    fn a_lifetime_past_the_clock_s_end_runs_for_a_century() {
        let lifetimes = Lifetimes::default();
        lifetimes.start("a", Duration::MAX);
        let left = lifetimes.left("a").expect("running");
        let year = Duration::from_secs(365 * 86400);
        assert!(left > 99 * year && left <= 100 * year, "{left:?}");
        assert!(lifetimes.take_ended().is_empty());
    }
}
