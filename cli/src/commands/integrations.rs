//! Integrations: `exec`, the kubectl and git credential helpers, completions and
//! the man page.

use crate::args::{ExecArgs, GitOperation, TokenArgs};
use crate::commands::token::{fetch, not_an_access_token, text};
use crate::error::CliError;
use crate::output;
use anyhow::{Context, anyhow};
use jwtagent::paths::SocketPath;
use jwtagent::protocol::{EndpointKind, EndpointStarted, Request, TokenAnswer};
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;

/// Runs `command` with the token in `var`, replacing this process, so the
/// command's exit status (or its death by a signal) is what the caller sees.
pub fn exec(socket: &SocketPath, args: &ExecArgs) -> Result<(), CliError> {
    let var = args.var.as_str();
    let valid_var = var
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid_var {
        return Err(CliError::Usage(format!(
            "--env {var:?} is not a valid environment variable name"
        )));
    }
    let Some((program, rest)) = args.command.split_first() else {
        return Err(CliError::Usage("no command given after --".into()));
    };
    let mut command = std::process::Command::new(program);
    command.args(rest);
    if let Some(name) = &args.name {
        let token_args = TokenArgs {
            name: name.clone(),
            ask: args.ask.clone(),
        };
        let answer = fetch(socket, &token_args)?;
        command.env(var, text(&answer.access_token)?);
    }
    // The endpoints live as long as this process, which becomes the command.
    if let Some(name) = &args.gcp_metadata {
        let started = endpoint(socket, name, EndpointKind::GcpMetadata)?;
        let host = format!("127.0.0.1:{}", started.port);
        command
            .env("GCE_METADATA_HOST", &host)
            .env("GCE_METADATA_IP", &host)
            .env_remove("GOOGLE_APPLICATION_CREDENTIALS");
    }
    if let Some(name) = &args.azure_identity {
        let started = endpoint(socket, name, EndpointKind::AzureIdentity)?;
        let secret = started.secret.as_ref().map(text).transpose()?;
        command
            .env(
                "IDENTITY_ENDPOINT",
                format!("http://127.0.0.1:{}/msi/token", started.port),
            )
            .env("IDENTITY_HEADER", secret.unwrap_or_default());
    }
    let error = command.exec();
    // exec only returns on failure; exit like a shell would.
    let code = if error.kind() == std::io::ErrorKind::NotFound {
        127
    } else {
        126
    };
    Err(CliError::Exit {
        code,
        message: format!("cannot run {}: {error}", program.to_string_lossy()),
    })
}

/// Asks the agent to serve profile `name` on an endpoint of `kind` for as
/// long as this process (and the command it becomes) lives.
fn endpoint(
    socket: &SocketPath,
    name: &str,
    kind: EndpointKind,
) -> Result<EndpointStarted, CliError> {
    let (mut client, _) = crate::connect::connect_or_autostart(socket)?;
    client
        .call(&Request::Endpoint {
            name: name.to_string(),
            kind,
        })
        .map_err(|e| CliError::from_client(e, crate::error::START_HINT))
}

/// kubectl and git send what they get as a Bearer token and cannot add a
/// DPoP proof to each request: a DPoP-bound token would only be refused.
fn bearer_only(answer: TokenAnswer, args: &TokenArgs, tool: &str) -> Result<TokenAnswer, CliError> {
    not_an_access_token(&answer, &args.name)?;
    if answer.token_type.eq_ignore_ascii_case("dpop") {
        return Err(CliError::Usage(format!(
            "profile {:?} has DPoP-bound tokens, which {tool} cannot use (it sends no DPoP proofs); use a profile without --dpop",
            args.name
        )));
    }
    Ok(answer)
}

/// A kubectl `ExecCredential` (client.authentication.k8s.io/v1).
pub fn kubectl(socket: &SocketPath, args: &TokenArgs) -> Result<(), CliError> {
    let answer = bearer_only(fetch(socket, args)?, args, "kubectl")?;
    let mut status = serde_json::Map::new();
    status.insert("token".into(), text(&answer.access_token)?.into());
    if let Some(at) = answer.expires_at {
        status.insert(
            "expirationTimestamp".into(),
            jwtagent::time::rfc3339(at).into(),
        );
    }
    let credential = serde_json::json!({
        "apiVersion": "client.authentication.k8s.io/v1",
        "kind": "ExecCredential",
        "status": status,
    });
    let mut out = serde_json::to_string(&credential).map_err(anyhow::Error::from)?;
    out.push('\n');
    output::print_secret(out)
}

/// Longest credential description git sends that we read.
const MAX_GIT_INPUT: u64 = 64 * 1024;

/// A git credential helper: reads git's request on stdin and, for `get`,
/// answers with the token.
pub fn git_credential(
    socket: &SocketPath,
    args: &TokenArgs,
    operation: GitOperation,
    username: &str,
) -> Result<(), CliError> {
    let mut input = String::new();
    std::io::stdin()
        .lock()
        .take(MAX_GIT_INPUT)
        .read_to_string(&mut input)
        .context("cannot read git's request")?;
    if operation != GitOperation::Get {
        // Tokens are the agent's to keep fresh; nothing to store or erase.
        return Ok(());
    }
    let mut bearer = false;
    for line in input.lines() {
        if line.is_empty() {
            break;
        }
        if line == "capability[]=authtype" {
            bearer = true;
        }
    }
    let answer = bearer_only(fetch(socket, args)?, args, "git")?;
    let token = text(&answer.access_token)?;
    if token.contains('\n') || token.contains('\0') {
        return Err(anyhow!("the token contains a newline or NUL; git cannot take it").into());
    }
    let mut out = String::new();
    if bearer {
        out.push_str("capability[]=authtype\nauthtype=Bearer\n");
        out.push_str(&format!("credential={token}\n"));
        // Do not let other helpers store a token that expires.
        out.push_str("ephemeral=true\n");
    } else {
        out.push_str(&format!("username={username}\npassword={token}\n"));
        if let Some(at) = answer.expires_at {
            out.push_str(&format!("password_expiry_utc={at}\n"));
        }
    }
    output::print_secret(out)
}

pub fn completions(shell: clap_complete::Shell) -> Result<(), CliError> {
    write_stdout(&crate::complete::script(shell))
}

pub fn man(command: Option<&str>, dir: Option<&std::path::Path>) -> Result<(), CliError> {
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir)
            .map_err(|e| CliError::Usage(format!("cannot create {}: {e}", dir.display())))?;
        let written = crate::man::write_all(dir).map_err(CliError::Usage)?;
        eprintln!(
            "Wrote {} pages to {} (jwtagent.1 and jwtagent-COMMAND.1).",
            written.len(),
            dir.display()
        );
        if let Some(hint) = manpath_hint(dir) {
            eprintln!("{hint}");
        }
        return Ok(());
    }
    let page = crate::man::render(command).map_err(CliError::Usage)?;
    write_stdout(&page)
}

/// What to do for `man jwtagent` to find the pages written to `dir`, when
/// MANPATH does not already lead there: man looks in ROOT/man1 for each
/// ROOT on MANPATH (and, when MANPATH ends with `:`, in its defaults too).
fn manpath_hint(dir: &std::path::Path) -> Option<String> {
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    if dir.file_name() != Some(std::ffi::OsStr::new("man1")) {
        return Some(format!(
            "man reads pages from a man1 directory: to read them with `man jwtagent`, write them to {}, or read one with `man -l {}`.",
            crate::shell::word(&dir.join("man1").display().to_string()),
            crate::shell::word(&dir.join("jwtagent.1").display().to_string())
        ));
    }
    let root = dir.parent()?;
    let on_path = std::env::var_os("MANPATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|entry| entry == root));
    (!on_path).then(|| {
        let root = crate::shell::word(&root.display().to_string());
        format!(
            "To read them with `man jwtagent`, put {root} on MANPATH (in your shell's profile): export MANPATH={root}:\"$MANPATH\""
        )
    })
}

fn write_stdout(bytes: &[u8]) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(anyhow::Error::from(e)
            .context("cannot write to stdout")
            .into()),
        _ => Ok(()),
    }
}
