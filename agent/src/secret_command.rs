//! Secrets kept elsewhere (`add --secret-command`, `--key-command`): the
//! agent runs the profile's command whenever it needs the secret, reads it
//! from the command's output and keeps nothing. The command runs with no
//! shell, with the agent's environment, stdin closed, a timeout, and caps on
//! what it may print; what it says on stderr is shown in the error when it
//! fails.

use crate::store::{SecretStore, StoreError};
use jwtagent::config::Profile;
use jwtagent::secret::Secret;
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// How long a command may take, unless `JWTAGENT_SECRET_COMMAND_TIMEOUT`
/// (seconds) says otherwise: long enough for a password manager that asks
/// its user to confirm.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The most a command may print: a secret or a PEM key is far less.
const MAX_OUTPUT: u64 = 1024 * 1024;
/// How much of its stderr is shown in an error.
const MAX_STDERR: u64 = 2048;

/// The secret (or key) of profile `name`: from its command when it has one,
/// else from the store.
pub(crate) async fn secret_of(
    store: &SecretStore,
    name: &str,
    profile: &Profile,
) -> Result<Option<Secret>, StoreError> {
    if profile.secret_command.is_empty() {
        store.get(name, profile.generation).await
    } else {
        run(&profile.secret_command).await.map(Some)
    }
}

fn timeout() -> Duration {
    std::env::var("JWTAGENT_SECRET_COMMAND_TIMEOUT")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|&s| s > 0)
        .map_or(DEFAULT_TIMEOUT, Duration::from_secs)
}

/// Runs `argv` and answers what it printed, less one trailing newline.
pub(crate) async fn run(argv: &[String]) -> Result<Secret, StoreError> {
    let shown = jwtagent::text::escaped(&argv.join(" ")).into_owned();
    let fail = |detail: String| StoreError::Command {
        command: shown.clone(),
        detail,
    };
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| fail("it names no program".into()))?;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| fail(format!("cannot run it: {e}")))?;
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(fail("cannot read its output".into()));
    };
    let limit = timeout();
    let outcome = tokio::time::timeout(limit, async {
        // stderr is drained on its own, so that a command that writes much
        // there cannot stall on a full pipe; its first bytes are kept.
        let said = tokio::spawn(drain(stderr));
        let mut out = Vec::new();
        let read_out = stdout.take(MAX_OUTPUT + 1).read_to_end(&mut out).await;
        let mut out = Secret::new(out);
        if out.len() as u64 > MAX_OUTPUT {
            said.abort();
            return Err("it printed more than 1 MiB".to_string());
        }
        read_out.map_err(|e| format!("cannot read its output: {e}"))?;
        let err = said.await.unwrap_or_default();
        let status = child.wait().await.map_err(|e| e.to_string())?;
        let said = String::from_utf8_lossy(&err);
        let said = jwtagent::text::escaped(said.trim());
        if !status.success() {
            return Err(match said.is_empty() {
                true => format!("it failed ({status})"),
                false => format!("it failed ({status}): {said}"),
            });
        }
        out.trim_trailing_newline();
        if out.is_empty() {
            return Err("it printed nothing".into());
        }
        Ok(out)
    })
    .await;
    match outcome {
        Ok(result) => result.map_err(fail),
        // Dropped with the future: killed (kill_on_drop).
        Err(_) => Err(fail(format!(
            "it did not finish within {}s (JWTAGENT_SECRET_COMMAND_TIMEOUT sets the limit)",
            limit.as_secs()
        ))),
    }
}

/// Reads `stream` to its end, keeping its first [`MAX_STDERR`] bytes.
async fn drain(mut stream: tokio::process::ChildStderr) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = stream.read(&mut buf).await {
        let room = (MAX_STDERR as usize).saturating_sub(kept.len());
        kept.extend_from_slice(&buf[..n.min(room)]);
    }
    kept
}
