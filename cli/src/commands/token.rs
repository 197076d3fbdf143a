//! `jwtagent token` and `jwtagent header`: a token from the agent, on stdout.

use crate::args::TokenArgs;
use crate::connect;
use crate::error::{CliError, START_HINT};
use crate::output;
use jwtagent::paths::SocketPath;
use jwtagent::protocol::{Request, TokenAnswer};

/// Asks the agent for a token as `args` say.
pub fn fetch(socket: &SocketPath, args: &TokenArgs) -> Result<TokenAnswer, CliError> {
    let (mut client, _) = connect::connect_or_autostart(socket)?;
    client
        .call(&Request::Token {
            name: args.name.clone(),
            min_ttl: args.min_ttl.map(|d| d.as_secs()),
            scopes: (!args.scopes.is_empty()).then(|| args.scopes.clone()),
            resources: (!args.resources.is_empty()).then(|| args.resources.clone()),
            force: args.force,
        })
        .map_err(|e| CliError::from_client(e, START_HINT))
}

pub fn text(answer: &TokenAnswer) -> Result<&str, CliError> {
    std::str::from_utf8(answer.access_token.expose())
        .map_err(|_| CliError::Other(anyhow::anyhow!("the agent sent a token that is not text")))
}

pub fn token(socket: &SocketPath, args: &TokenArgs, json: bool) -> Result<(), CliError> {
    let answer = fetch(socket, args)?;
    if json {
        let mut json = serde_json::to_string(&answer).map_err(anyhow::Error::from)?;
        json.push('\n');
        return output::print_secret(json);
    }
    output::print_secret(format!("{}\n", text(&answer)?))
}

pub fn header(socket: &SocketPath, args: &TokenArgs) -> Result<(), CliError> {
    let answer = fetch(socket, args)?;
    // RFC 6750 names the scheme "Bearer" whatever case the server used.
    let scheme = if answer.token_type.eq_ignore_ascii_case("dpop") {
        "DPoP"
    } else {
        "Bearer"
    };
    output::print_secret(format!("Authorization: {scheme} {}\n", text(&answer)?))
}
