//! Starting a detached agent and waiting for it to be ready.
//!
//! The parent runs the daemon's binary as `jwtagent-agent agent -D --detached-child` with
//! its stdout on a pipe. The child claims the socket and then writes exactly one
//! line — `READY <pid>` or `ERROR <message>` — and closes the pipe. The parent
//! waits for that line instead of polling or sleeping (the sccache pattern), so it
//! returns exactly when the socket accepts connections, or with the real error.

use crate::args::LogFormat;
use anyhow::{Context, anyhow};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

/// Outcome of starting a detached agent.
#[derive(Debug)]
pub enum Started {
    Ready {
        pid: u32,
    },
    /// The child reported a startup error (its message), e.g. "already running".
    Failed(String),
}

/// The daemon's own binary, installed beside `jwtagent`.
const DAEMON_BINARY: &str = "jwtagent-agent";

/// The daemon's binary: this one when it is `jwtagent-agent`, else the one
/// installed beside this `jwtagent`.
pub fn daemon_binary() -> anyhow::Result<std::path::PathBuf> {
    let exe = std::env::current_exe().context("cannot find the jwtagent executable")?;
    if exe.file_name().is_some_and(|n| n == DAEMON_BINARY) {
        return Ok(exe);
    }
    let daemon = exe.with_file_name(DAEMON_BINARY);
    if !daemon.is_file() {
        return Err(anyhow!(
            "{} is missing: the agent is a second binary, {DAEMON_BINARY}, installed beside {} \
             (`cargo install --locked --path cli` installs both); install it there",
            daemon.display(),
            exe.display()
        ));
    }
    Ok(daemon)
}

/// Spawns a detached agent on `socket` and waits for its readiness line.
/// `options`: the agent's own options (`--store ...`), passed on as given.
pub fn spawn_detached(
    socket: &Path,
    log_file: Option<&Path>,
    log_format: LogFormat,
    options: &[std::ffi::OsString],
) -> anyhow::Result<Started> {
    let exe = daemon_binary()?;
    let mut cmd = Command::new(&exe);
    cmd.arg("agent")
        .arg("-D")
        .arg("--detached-child")
        .arg("--socket")
        .arg(socket)
        .arg("--log-format")
        .arg(match log_format {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        });
    if let Some(log) = log_file {
        cmd.arg("--log-file").arg(log);
    }
    cmd.args(options);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot run {}", exe.display()))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow!("no pipe to the agent"))?;
    let mut line = String::new();
    // The child writes its line right after binding (or failing), so this read
    // returns within the time the agent needs to start.
    let n = BufReader::new(stdout.take(4096))
        .read_line(&mut line)
        .context("cannot read the agent's startup report")?;
    if n == 0 {
        let status = child.wait().context("cannot wait for the agent")?;
        return Ok(Started::Failed(format!(
            "the agent exited during startup ({status}) without saying why; run `jwtagent agent -D` to see its output"
        )));
    }
    let line = line.trim_end();
    if let Some(pid) = line.strip_prefix("READY ") {
        let pid = pid
            .parse()
            .with_context(|| format!("bad readiness line from the agent: {line:?}"))?;
        // The agent lives on in its own session; it is nobody's zombie to reap
        // once we exit.
        return Ok(Started::Ready { pid });
    }
    if let Some(message) = line.strip_prefix("ERROR ") {
        let _ = child.wait();
        return Ok(Started::Failed(message.to_string()));
    }
    Err(anyhow!(
        "unexpected startup report from the agent: {line:?}"
    ))
}

/// Child side: report readiness (or the startup error) on stdout, then point
/// stdout at /dev/null so the parent sees EOF and the pipe is not held open.
pub fn report(result: Result<u32, String>) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match result {
        Ok(pid) => writeln!(out, "READY {pid}")?,
        Err(message) => writeln!(out, "ERROR {}", message.replace('\n', " "))?,
    }
    out.flush()?;
    let devnull = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .context("cannot open /dev/null")?;
    rustix::stdio::dup2_stdout(&devnull).context("cannot detach stdout")?;
    Ok(())
}

pub use jwtagent::paths::default_log_file;
