//! `--lock-on-sleep`: systemd-logind's signals on the system bus, which
//! say the machine is about to suspend (`Manager.PrepareForSleep(true)`)
//! or a session is to be locked (`Session.Lock`, sent by `loginctl
//! lock-session` and by desktops when the screen locks).
//!
//! Read on a thread of its own with zbus's blocking API (which must not run
//! on the agent's async workers): the signals are rare.

use zbus::blocking::{Connection, MessageIterator};
use zbus::message::Type;

const LOGIND: &str = "org.freedesktop.login1";
const SLEEP: &str = "the machine went to sleep";
const SESSION_LOCK: &str = "the session was locked";

/// Follows logind from a thread that lives as long as the agent, calling
/// `on` with why (`the machine went to sleep`, `the session was locked`) at
/// each signal. Logs that it follows logind, or a warning that it cannot
/// (no system bus) and so will not lock.
pub(crate) fn watch(on: impl Fn(&'static str) + Send + 'static) {
    let spawned = std::thread::Builder::new()
        .name("jwtagent-logind".into())
        .spawn(move || match signals() {
            Ok(signals) => {
                tracing::info!(
                    "--lock-on-sleep: locking when the machine sleeps or the session locks"
                );
                for message in signals {
                    if let Some(why) = message.ok().as_ref().and_then(reason) {
                        on(why);
                    }
                }
            }
            Err(why) => warn(&why),
        });
    if let Err(e) = spawned {
        warn(&e.to_string());
    }
}

fn warn(why: &str) {
    tracing::warn!(
        "--lock-on-sleep: cannot follow systemd-logind ({why}): the agent will NOT lock when the machine sleeps or the session locks; use --lock-idle, or `jwtagent lock`"
    );
}

/// logind's signals on the system bus (`DBUS_SYSTEM_BUS_ADDRESS`, else the
/// standard one).
fn signals() -> Result<MessageIterator, String> {
    let conn = Connection::system().map_err(|e| format!("no system bus: {e}"))?;
    let rule = zbus::MatchRule::builder()
        .msg_type(Type::Signal)
        .sender(LOGIND)
        .map_err(|e| e.to_string())?
        .build();
    MessageIterator::for_match_rule(rule, &conn, Some(16))
        .map_err(|e| format!("cannot listen to logind: {e}"))
}

/// Why a signal locks the agent, if it does.
fn reason(message: &zbus::Message) -> Option<&'static str> {
    let header = message.header();
    let interface = header.interface()?.as_str();
    let member = header.member()?.as_str();
    match (interface, member) {
        // PrepareForSleep(false) is the resume.
        ("org.freedesktop.login1.Manager", "PrepareForSleep") => message
            .body()
            .deserialize::<bool>()
            .unwrap_or(false)
            .then_some(SLEEP),
        ("org.freedesktop.login1.Session", "Lock") => Some(SESSION_LOCK),
        _ => None,
    }
}
