//! Writing to stdout, where a closed pipe (`jwtagent status | head -1`) is not an
//! error, and small formatting helpers.

use crate::error::CliError;
use std::io::Write;

/// Writes `text` to stdout. A broken pipe counts as success, like ripgrep does.
pub fn print(text: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(anyhow::Error::from(e)
            .context("cannot write to stdout")
            .into()),
    }
}

/// Like [`print`], for text holding a token: the buffer is wiped afterwards.
pub fn print_secret(text: String) -> Result<(), CliError> {
    let text = zeroize::Zeroizing::new(text);
    print(&text)
}

/// `3725` → `1h 2m 5s`.
pub fn duration(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m {s}s"),
        _ => format!("{h}h {m}m {s}s"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_read_naturally() {
        assert_eq!(super::duration(5), "5s");
        assert_eq!(super::duration(65), "1m 5s");
        assert_eq!(super::duration(3725), "1h 2m 5s");
    }
}
