//! `sink`: the files the agent keeps holding a profile's current token.

use crate::args::SinkArgs;
use crate::connect;
use crate::error::{CliError, START_HINT};
use crate::output;
use jwtagent::paths::SocketPath;
use jwtagent::protocol::{Request, SinkList};

pub fn sink(socket: &SocketPath, args: SinkArgs) -> Result<(), CliError> {
    // The agent resolves nothing against its own working directory.
    let path = match &args.path {
        Some(p) => Some(
            std::path::absolute(p)
                .map_err(|e| CliError::Usage(format!("cannot resolve {}: {e}", p.display())))?,
        ),
        None => None,
    };
    let (mut client, _) = connect::connect_or_autostart(socket)?;
    let list: SinkList = client
        .call(&Request::Sink {
            name: args.name.clone(),
            path: path.clone(),
            format: args.format,
            keep: args.keep,
            remove: args.remove,
        })
        .map_err(|e| CliError::from_client(e, START_HINT))?;
    if args.json {
        let mut text = serde_json::to_string_pretty(&list).map_err(anyhow::Error::from)?;
        text.push('\n');
        return output::print(&text);
    }
    let mut out = String::new();
    match (&path, args.remove) {
        (Some(p), true) => out.push_str(&format!("Removed sink {} (file deleted).\n", p.display())),
        (Some(p), false) => out.push_str(&format!(
            "Profile {}'s current token is kept in {} ({}), rewritten before it expires{}.\n",
            args.name,
            p.display(),
            args.format,
            if args.keep {
                "; left in place when the agent stops or locks"
            } else {
                "; deleted when the agent stops or locks, or the profile goes"
            }
        )),
        (None, _) if list.sinks.is_empty() => {
            out.push_str(&format!("Profile {} has no sinks.\n", args.name))
        }
        (None, _) => {}
    }
    if path.is_none() {
        for s in &list.sinks {
            let state = match (&s.error, s.written_at) {
                (Some(e), _) => format!("not current: {}", jwtagent::text::escaped(e)),
                (None, Some(at)) => format!("written {}", jwtagent::time::rfc3339(at)),
                (None, None) => "not written yet".into(),
            };
            let keep = if s.keep { ", kept" } else { "" };
            out.push_str(&format!(
                "{} ({}{keep}): {state}\n",
                jwtagent::text::escaped(&s.path.display().to_string()),
                s.format
            ));
        }
    }
    output::print(&out)
}
