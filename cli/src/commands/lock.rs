//! `jwtagent lock` and `unlock`, and `store migrate` (whose passphrase, for
//! the file store, is the lock's).

use crate::connect;
use crate::error::{CliError, START_HINT};
use crate::output;
use anyhow::Context;
use jwtagent::config::StoreKind;
use jwtagent::paths::SocketPath;
use jwtagent::protocol::{Empty, Migrated, Request, Sealed, Status};
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
    let (mut client, _) = connect::connect_or_autostart(socket)?;
    let status = client
        .call::<Status>(&Request::Status)
        .map_err(|e| CliError::from_client(e, START_HINT))?;
    // With the file store, locking seals it: its own passphrase unlocks.
    let passphrase = if status.store_is_file {
        Secret::new(Vec::new())
    } else {
        passphrase(from_stdin, "Passphrase to lock the agent: ", true)?
    };
    client
        .call::<Empty>(&Request::Lock { passphrase })
        .map_err(|e| CliError::from_client(e, START_HINT))?;
    if status.store_is_file {
        output::print(
            "Agent locked: the file store is sealed. `jwtagent unlock` with its passphrase to use it again.\n",
        )
    } else {
        output::print("Agent locked. `jwtagent unlock` to use it again.\n")
    }
}

pub fn unlock(socket: &SocketPath, from_stdin: bool) -> Result<(), CliError> {
    let (mut client, _) = connect::connect_existing(socket)?;
    // Whether the store is a file not created yet (a new passphrase, asked
    // twice) is known once the agent has opened it: just after its start.
    let status =
        connect::settled_status(&mut client).map_err(|e| CliError::from_client(e, START_HINT))?;
    if status.unlock_with.as_deref() == Some("askpass") {
        client
            .call::<Empty>(&Request::Unlock {
                passphrase: Secret::new(Vec::new()),
            })
            .map_err(|e| CliError::from_client(e, START_HINT))?;
        return output::print("Agent unlocked (the person at the keyboard said yes).\n");
    }
    let passphrase = match status.store_sealed {
        Some(Sealed::NotCreated) => passphrase(
            from_stdin,
            "The file store does not exist yet. Choose its passphrase: ",
            true,
        )?,
        Some(Sealed::Sealed) => passphrase(from_stdin, "Passphrase of the file store: ", false)?,
        None => passphrase(from_stdin, "Passphrase to unlock the agent: ", false)?,
    };
    client
        .call::<Empty>(&Request::Unlock { passphrase })
        .map_err(|e| CliError::from_client(e, START_HINT))?;
    match status.store_sealed {
        Some(Sealed::NotCreated) => output::print("File store created; agent unlocked.\n"),
        Some(Sealed::Sealed) => output::print("File store opened; agent unlocked.\n"),
        None => output::print("Agent unlocked.\n"),
    }
}

pub fn migrate(socket: &SocketPath, to: StoreKind, from_stdin: bool) -> Result<(), CliError> {
    let (mut client, _) = connect::connect_existing(socket)?;
    let passphrase = match to {
        StoreKind::File => Some(passphrase(
            from_stdin,
            "Passphrase of the file store (a new one if it does not exist yet): ",
            true,
        )?),
        _ => None,
    };
    let moved: Migrated = client
        .call(&Request::StoreMigrate { to, passphrase })
        .map_err(|e| CliError::from_client(e, START_HINT))?;
    if let Some(warning) = &moved.warning {
        eprintln!("warning: {warning}");
    }
    output::print(&format!(
        "Moved {} entries from the {} store to the {} store; the config names {}.\n",
        moved.moved, moved.from, moved.to, moved.to
    ))
}
