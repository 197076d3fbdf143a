//! `jwtagent token`, `header` and `dpop`: a token (or a DPoP proof) from the
//! agent, on stdout.

use crate::args::{ProofArgs, TokenArgs};
use crate::connect;
use crate::error::{CliError, START_HINT};
use crate::output;
use jwtagent::client::TokenOptions;
use jwtagent::paths::SocketPath;
use jwtagent::protocol::{DpopAnswer, TokenAnswer};
use jwtagent::secret::Secret;

/// Asks the agent for a token as `args` say.
pub fn fetch(socket: &SocketPath, args: &TokenArgs) -> Result<TokenAnswer, CliError> {
    fetch_with(socket, args, false)
}

fn fetch_with(
    socket: &SocketPath,
    args: &TokenArgs,
    id_token: bool,
) -> Result<TokenAnswer, CliError> {
    let mut client = connect::autostart_unchecked(socket)?;
    let mut options = options(args);
    options.id_token = id_token;
    let answer = client
        .token_after_hello(&args.name, &options)
        .map_err(|e| CliError::from_client(e, START_HINT))?;
    short_of_min_ttl(args, answer.expires_at)?;
    Ok(answer)
}

/// A token that lives less than `--min-ttl` (the server issues shorter
/// ones than asked): a warning, or with `--strict` a failure.
fn short_of_min_ttl(args: &TokenArgs, expires_at: Option<u64>) -> Result<(), CliError> {
    let (Some(min_ttl), Some(at)) = (args.ask.min_ttl, expires_at) else {
        return Ok(());
    };
    let left = at.saturating_sub(jwtagent::time::unix_now());
    if left >= min_ttl.as_secs() {
        return Ok(());
    }
    let what = format!(
        "profile {:?}: the token has {} left, less than --min-ttl {}: the server issues tokens that live no longer",
        args.name,
        output::duration(left),
        output::duration(min_ttl.as_secs())
    );
    if args.ask.strict {
        return Err(CliError::Other(anyhow::anyhow!(
            "{what} (--strict); lower --min-ttl, or ask the server for longer-lived tokens"
        )));
    }
    eprintln!("jwtagent: warning: {what}");
    Ok(())
}

fn options(args: &TokenArgs) -> TokenOptions {
    TokenOptions {
        min_ttl: args.ask.min_ttl,
        scopes: args.ask.scopes.clone(),
        resources: args.ask.resources.clone(),
        force: args.ask.force,
        id_token: false,
    }
}

pub fn text(secret: &Secret) -> Result<&str, CliError> {
    std::str::from_utf8(secret.expose())
        .map_err(|_| CliError::Other(anyhow::anyhow!("the agent sent a token that is not text")))
}

pub fn token(
    socket: &SocketPath,
    args: &TokenArgs,
    json: bool,
    id_token: bool,
) -> Result<(), CliError> {
    let answer = fetch_with(socket, args, id_token)?;
    if id_token && !json {
        let id = answer
            .id_token
            .as_ref()
            .ok_or_else(|| CliError::Other(anyhow::anyhow!("the agent sent no ID token")))?;
        return output::print_secret(format!("{}\n", text(id)?));
    }
    if json {
        let mut json = serde_json::to_string(&answer).map_err(anyhow::Error::from)?;
        json.push('\n');
        return output::print_secret(json);
    }
    output::print_secret(format!("{}\n", text(&answer.access_token)?))
}

/// `header`: `Authorization` for the profile's token; for a DPoP profile,
/// with a `DPoP` proof header for the request `proof` names. A bearer token
/// needs no proof: `--url` is then not needed, and ignored when given (a
/// script need not know which kind of profile it asks).
pub fn header(socket: &SocketPath, args: &TokenArgs, proof: &ProofArgs) -> Result<(), CliError> {
    let answer = fetch(socket, args)?;
    if answer.token_type.eq_ignore_ascii_case("dpop") {
        if proof.url.is_none() {
            return Err(CliError::Usage(format!(
                "profile {:?} has DPoP-bound tokens, which need a proof per request: give the request's --url (and --method, default GET)",
                args.name
            )));
        }
        let answer = dpop(socket, args, proof)?;
        return output::print_secret(format!(
            "Authorization: DPoP {}\nDPoP: {}\n",
            text(&answer.access_token)?,
            text(&answer.proof)?
        ));
    }
    not_an_access_token(&answer, &args.name)?;
    // RFC 6750 names the scheme "Bearer" whatever case the server used.
    output::print_secret(format!(
        "Authorization: Bearer {}\n",
        text(&answer.access_token)?
    ))
}

/// Asks the agent for a DPoP proof for the request `proof` names.
fn dpop(socket: &SocketPath, args: &TokenArgs, proof: &ProofArgs) -> Result<DpopAnswer, CliError> {
    let url = proof.url.clone().ok_or_else(|| {
        CliError::Usage("a DPoP proof is for one request: give its --url (and --method)".into())
    })?;
    let (mut client, _) = connect::connect_or_autostart(socket)?;
    client
        .dpop_proof(
            &args.name,
            &proof.method,
            &url,
            proof.nonce.as_deref(),
            &options(args),
        )
        .map_err(|e| CliError::from_client(e, START_HINT))
}

/// `dpop`: a proof for one request, on stdout.
pub fn dpop_proof(
    socket: &SocketPath,
    args: &TokenArgs,
    proof: &ProofArgs,
) -> Result<(), CliError> {
    let answer = dpop(socket, args, proof)?;
    output::print_secret(format!("{}\n", text(&answer.proof)?))
}

/// A token exchange's answer that is not an access token (`token_type`
/// N_A: an ID-JAG, say) goes in no Authorization header.
pub fn not_an_access_token(answer: &TokenAnswer, name: &str) -> Result<(), CliError> {
    if answer.token_type == "N_A" {
        return Err(CliError::Usage(format!(
            "profile {name:?} gets a token that is not an access token ({}), for another profile's grant (--assertion-profile, --subject-profile), not for an Authorization header; `jwtagent token {name}` prints it",
            answer
                .issued_token_type
                .as_deref()
                .unwrap_or("token_type N_A")
        )));
    }
    Ok(())
}
