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

/// Runs `argv` and answers what it printed, less one trailing newline.
pub(crate) async fn run(argv: &[String]) -> Result<Secret, StoreError> {
    let setting = std::env::var("JWTAGENT_SECRET_COMMAND_TIMEOUT").ok();
    let limit = jwtagent::time::whole_seconds(setting.as_deref()).unwrap_or(DEFAULT_TIMEOUT);
    run_within(argv, limit).await
}

/// [`run`], killing the command after `limit`.
async fn run_within(argv: &[String], limit: Duration) -> Result<Secret, StoreError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(script: &str) -> Vec<String> {
        ["sh", "-c", script].map(String::from).to_vec()
    }

    async fn sh(script: &str) -> Result<Vec<u8>, String> {
        run_within(&argv(script), Duration::from_secs(20))
            .await
            .map(|s| s.expose().to_vec())
            .map_err(|e| e.to_string())
    }

    #[tokio::test]
    async fn the_secret_is_what_the_command_printed_less_one_newline() {
        assert_eq!(sh("printf 's3cret\\n'").await.unwrap(), b"s3cret");
        assert_eq!(sh("printf 's3cret\\r\\n'").await.unwrap(), b"s3cret");
        assert_eq!(sh("printf 'a\\n\\n'").await.unwrap(), b"a\n");
        assert_eq!(sh("printf 'no newline'").await.unwrap(), b"no newline");
        // Exactly the most it may print is taken whole.
        let most = sh("head -c 1048576 /dev/zero").await.unwrap();
        assert_eq!(most.len(), 1024 * 1024);
    }

    #[tokio::test]
    async fn a_command_that_fails_floods_or_prints_nothing_is_refused_with_why() {
        let err = sh("head -c 1048577 /dev/zero").await.unwrap_err();
        assert!(err.contains("more than 1 MiB"), "{err}");
        let err = sh("echo 'no such entry' >&2; exit 3").await.unwrap_err();
        assert!(err.contains("the secret command `sh -c echo"), "{err}");
        assert!(
            err.contains("it failed (exit status: 3): no such entry"),
            "{err}"
        );
        let err = sh("exit 4").await.unwrap_err();
        assert!(err.ends_with("it failed (exit status: 4)"), "{err}");
        let err = sh("true").await.unwrap_err();
        assert!(err.ends_with("it printed nothing"), "{err}");
        let err = sh("printf '\\n'").await.unwrap_err();
        assert!(err.ends_with("it printed nothing"), "{err}");
        // Its stderr is shown escaped, and only its first 2 KiB.
        let err = sh("printf '\\033[31mbad' >&2; head -c 9000 /dev/zero | tr '\\0' e >&2; exit 1")
            .await
            .unwrap_err();
        assert!(!err.contains('\u{1b}'), "{err:?}");
        assert!(err.contains("\\u{1b}[31mbad"), "{err}");
        let shown = err.rsplit("bad").next().unwrap();
        assert_eq!(shown.len(), 2048 - "\u{1b}[31mbad".len(), "{err}");
        let err = run_within(&[], DEFAULT_TIMEOUT)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.ends_with("it names no program"), "{err}");
        let none = ["/nonexistent/pass".to_string()];
        let err = run_within(&none, DEFAULT_TIMEOUT)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot run it: "), "{err}");
    }

    #[tokio::test]
    async fn a_command_past_its_time_is_killed_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let script = format!("echo $$ > {}; exec sleep 60.0419", pid_file.display());
        let err = run_within(&argv(&script), Duration::from_secs(1))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("did not finish within 1s"), "{err}");
        assert!(err.contains("JWTAGENT_SECRET_COMMAND_TIMEOUT"), "{err}");
        let pid = std::fs::read_to_string(&pid_file).unwrap();
        // Killed when the future was dropped: gone, or a zombie until reaped.
        let stat = format!("/proc/{}/stat", pid.trim());
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match std::fs::read_to_string(&stat) {
                Err(_) => break,
                Ok(s) if s.rsplit(')').next().unwrap().trim_start().starts_with('Z') => break,
                Ok(_) => assert!(std::time::Instant::now() < deadline, "still running"),
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
