//! `jwtagent lock` and `unlock`.

use crate::connect;
use crate::error::{CliError, START_HINT};
use crate::output;
use anyhow::Context;
use jwtagent::paths::SocketPath;
use jwtagent::protocol::{Empty, Request};
use jwtagent::secret::Secret;
use std::io::{IsTerminal, Read};

/// Reads the passphrase from stdin or a no-echo prompt (twice when `confirm`).
fn passphrase(from_stdin: bool, prompt: &str, confirm: bool) -> Result<Secret, CliError> {
    if from_stdin {
        let mut bytes = Vec::new();
        std::io::stdin()
            .lock()
            .take(64 * 1024)
            .read_to_end(&mut bytes)
            .context("cannot read the passphrase from standard input")?;
        let mut secret = Secret::new(bytes);
        secret.trim_trailing_newline();
        return Ok(secret);
    }
    if !std::io::stdin().is_terminal() {
        return Err(CliError::Usage(
            "no terminal to prompt on: pass the passphrase with --passphrase-stdin".into(),
        ));
    }
    let first = Secret::new(
        rpassword::prompt_password(prompt)
            .context("cannot read the passphrase")?
            .into_bytes(),
    );
    if confirm {
        let again = Secret::new(
            rpassword::prompt_password("Again: ")
                .context("cannot read the passphrase")?
                .into_bytes(),
        );
        if again != first {
            return Err(CliError::Usage(
                "the passphrases differ; nothing changed".into(),
            ));
        }
    }
    Ok(first)
}

pub fn lock(socket: &SocketPath, from_stdin: bool) -> Result<(), CliError> {
    let passphrase = passphrase(from_stdin, "Passphrase to lock the agent: ", true)?;
    let (mut client, _) = connect::connect_or_autostart(socket)?;
    client
        .call::<Empty>(&Request::Lock { passphrase })
        .map_err(|e| CliError::from_client(e, START_HINT))?;
    output::print("Agent locked. `jwtagent unlock` to use it again.\n")
}

pub fn unlock(socket: &SocketPath, from_stdin: bool) -> Result<(), CliError> {
    let (mut client, _) = connect::connect_existing(socket)?;
    let passphrase = passphrase(from_stdin, "Passphrase to unlock the agent: ", false)?;
    client
        .call::<Empty>(&Request::Unlock { passphrase })
        .map_err(|e| CliError::from_client(e, START_HINT))?;
    output::print("Agent unlocked.\n")
}
