//! tracing setup: `JWTAGENT_LOG` is the filter (default `info`), `--log-format`
//! picks text or JSON. Nothing logged anywhere may contain a secret or a token;
//! that is enforced where values are logged, not here.

use crate::args::LogFormat;
use anyhow::Context;
use std::fs::{DirBuilder, OpenOptions};
use std::io::IsTerminal;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use tracing_subscriber::EnvFilter;

pub const LOG_ENV: &str = "JWTAGENT_LOG";

fn filter() -> EnvFilter {
    EnvFilter::try_from_env(LOG_ENV).unwrap_or_else(|_| EnvFilter::new("info"))
}

/// stderr that never fails: a log line that cannot be written (the pipe
/// closed: `jwtagent agent -D 2>&1 | head`, a full disk) is dropped. Logging
/// must never stop, block or crash the agent.
struct Stderr;

impl std::io::Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

/// Logs to stderr.
pub fn init_stderr(format: LogFormat) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(|| Stderr)
        // Its own report of a failed write is an eprintln!, which panics
        // when stderr is a closed pipe.
        .log_internal_errors(false);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// For a detached agent: points stderr at the log file (0600, appended), so
/// both tracing and anything else written to stderr land there; with no file,
/// stderr stays /dev/null.
pub fn init_file(format: LogFormat, file: Option<&Path>) -> anyhow::Result<()> {
    if let Some(path) = file {
        if let Some(dir) = path.parent() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .with_context(|| format!("cannot create log directory {}", dir.display()))?;
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("cannot open log file {}", path.display()))?;
        rustix::stdio::dup2_stderr(&log).context("cannot redirect stderr to the log file")?;
    }
    init_stderr(format);
    Ok(())
}
