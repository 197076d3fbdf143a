//! Man pages: jwtagent(1) and one page per command (jwtagent-add(1), ...),
//! from the clap definitions plus the sections a man page reader looks
//! for: ENVIRONMENT, FILES, EXIT STATUS, EXAMPLES, SEE ALSO.

use crate::args::Cli;
use clap::CommandFactory;
use std::io::Write;

const ENVIRONMENT: &[(&str, &str)] = &[
    (
        "JWTAGENT_SOCK",
        "The agent's socket. Set by \\fBjwtagent env\\fR; \\fB\\-\\-socket\\fR overrides it. Default: \\fI$XDG_RUNTIME_DIR/jwtagent/agent.sock\\fR, else \\fI/tmp/jwtagent\\-$UID/agent.sock\\fR.",
    ),
    (
        "JWTAGENT_PID",
        "The agent's process id. Set by \\fBjwtagent env\\fR, unset by \\fBjwtagent stop\\fR.",
    ),
    (
        "JWTAGENT_CONFIG",
        "The profiles file. Default: \\fI$XDG_CONFIG_HOME/jwtagent/profiles.toml\\fR.",
    ),
    (
        "JWTAGENT_LOG",
        "The log filter (tracing EnvFilter syntax, e.g. \\fBdebug\\fR or \\fBjwtagent=trace\\fR). Default: \\fBinfo\\fR. No level logs a secret or a token.",
    ),
    (
        "JWTAGENT_NO_AUTOSTART",
        "When \\fB1\\fR, no command starts an agent; commands that need one fail with exit status 3.",
    ),
    (
        "JWTAGENT_KEYRING_SERVICE",
        "The keyring service name secrets are kept under. Default: \\fBjwtagent\\fR.",
    ),
    (
        "https_proxy, HTTPS_PROXY, http_proxy, all_proxy, no_proxy",
        "Proxies to authorization servers, read by the agent when it starts, as curl reads them.",
    ),
    (
        "SSL_CERT_FILE, SSL_CERT_DIR",
        "On Linux, the trust store to use instead of the system bundle; read by the agent when it starts.",
    ),
    (
        "DBUS_SESSION_BUS_ADDRESS",
        "The session bus on which the agent looks for a Secret Service.",
    ),
];

const FILES: &[(&str, &str)] = &[
    (
        "$XDG_CONFIG_HOME/jwtagent/profiles.toml",
        "The profiles (never a secret): see \\fBJWTAGENT_CONFIG\\fR.",
    ),
    (
        "$XDG_RUNTIME_DIR/jwtagent/agent.sock",
        "The agent's socket, in a directory only its user can enter (mode 0700; the socket 0600).",
    ),
    (
        "$XDG_STATE_HOME/jwtagent/agent.log",
        "The log of a detached agent.",
    ),
    (
        "$XDG_STATE_HOME/jwtagent/audit.log",
        "The audit log: every token request and refusal, with the caller's pid, uid and executable (\\fBjwtagent audit\\fR).",
    ),
];

const EXIT_STATUS: &[(&str, &str)] = &[
    ("0", "Success."),
    (
        "1",
        "A request failed: the agent's error, with its stable code, is on standard error.",
    ),
    ("2", "Usage: a wrong option or argument."),
    (
        "3",
        "No agent could be reached: the socket tried and how to start one are on standard error.",
    ),
    (
        "126, 127",
        "\\fBexec\\fR: the command was found but cannot be run, or was not found. Otherwise \\fBexec\\fR exits as the command does.",
    ),
];

const EXAMPLES: &str = r#".nf
eval "$(jwtagent env)"
jwtagent add ci \-\-issuer https://idp.example.com \-\-client\-id ci \-\-secret\-stdin < secret
jwtagent token ci
curl \-H "$(jwtagent header ci)" https://api.example.com/
jwtagent exec ci \-\- ./deploy.sh
jwtagent add me \-\-issuer https://idp.example.com \-\-client\-id my\-cli \-\-auth none \e
    \-\-grant device\-code \-\-scope openid \-\-scope offline_access
jwtagent login me
.fi
"#;

/// One command's examples, for its own page.
fn examples_of(command: &str) -> Option<&'static str> {
    Some(match command {
        "add" => {
            ".nf\njwtagent add ci \\-\\-token\\-url https://idp.example.com/token \\-\\-client\\-id ci\npass show idp/ci | jwtagent add ci \\-\\-issuer https://idp.example.com \\-\\-client\\-id ci \\-\\-secret\\-stdin\njwtagent add svc \\-\\-issuer https://idp.example.com \\-\\-client\\-id svc \\-\\-key\\-file svc.pem\n.fi\n"
        }
        "token" => {
            ".nf\njwtagent token ci\njwtagent token ci \\-\\-min\\-ttl 10m \\-\\-json\nTOKEN=$(jwtagent token ci)\n.fi\n"
        }
        "env" => {
            ".nf\neval \"$(jwtagent env)\"            # sh, bash, zsh\njwtagent env \\-\\-shell fish | source  # fish\n.fi\n"
        }
        "login" => ".nf\njwtagent login me\njwtagent token me \\-\\-id\\-token\n.fi\n",
        "header" => ".nf\ncurl \\-H \"$(jwtagent header api)\" https://api.example.com/\n.fi\n",
        "exec" => ".nf\njwtagent exec ci \\-\\-env GITHUB_TOKEN \\-\\- gh api /user\n.fi\n",
        _ => return None,
    })
}

fn definitions(roff: &mut String, heading: &str, items: &[(&str, &str)]) {
    roff.push_str(&format!(".SH {heading}\n"));
    for (term, text) in items {
        roff.push_str(&format!(".TP\n\\fB{term}\\fR\n{text}\n"));
    }
}

/// The page of `cmd`: clap's sections, without its odd EXTRA section, then ours.
fn page(cmd: clap::Command, main: bool, see_also: &[String]) -> std::io::Result<Vec<u8>> {
    let name = cmd.get_name().to_string();
    let man = clap_mangen::Man::new(cmd.clone()).manual("jwtagent manual");
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut out)?;
    }
    if main {
        man.render_subcommands_section(&mut out)?;
    }
    let mut roff = String::new();
    if main {
        definitions(&mut roff, "ENVIRONMENT", ENVIRONMENT);
        definitions(&mut roff, "FILES", FILES);
    }
    definitions(&mut roff, "EXIT STATUS", EXIT_STATUS);
    let examples = if main {
        Some(EXAMPLES)
    } else {
        examples_of(name.trim_start_matches("jwtagent-"))
    };
    if let Some(examples) = examples {
        roff.push_str(".SH EXAMPLES\n");
        roff.push_str(examples);
    }
    roff.push_str(".SH SEE ALSO\n");
    roff.push_str(&see_also.join(",\n"));
    roff.push('\n');
    if main {
        roff.push_str(".PP\nThe wire protocol, the profile fields and the security model are described in the project's docs/protocol.md, docs/config.md and docs/security.md.\n");
    }
    out.write_all(roff.as_bytes())?;
    Ok(out)
}

/// The commands that get a page of their own.
fn commands() -> (clap::Command, Vec<clap::Command>) {
    let mut cmd = Cli::command()
        .disable_help_subcommand(true)
        .subcommand_help_heading("COMMANDS");
    cmd.build();
    let subs = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .cloned()
        .collect();
    (cmd, subs)
}

fn reference(page: &str) -> String {
    format!(".BR {page} (1)")
}

/// jwtagent(1), or with `command` that command's page.
pub fn render(command: Option<&str>) -> Result<Vec<u8>, String> {
    let (main, subs) = commands();
    let all: Vec<String> = subs
        .iter()
        .map(|s| format!("jwtagent-{}", s.get_name()))
        .collect();
    let outside = [
        "ssh-agent",
        "gpg-agent",
        "curl",
        "git-credential",
        "kubectl",
    ]
    .map(reference);
    match command {
        None => {
            let mut see: Vec<String> = all.iter().map(|p| reference(p)).collect();
            see.extend(outside);
            page(main, true, &see).map_err(|e| e.to_string())
        }
        Some(name) => {
            let sub = subs
                .into_iter()
                .find(|s| s.get_name() == name || s.get_all_aliases().any(|a| a == name))
                .ok_or_else(|| format!("no command {name:?}: `jwtagent man` lists them"))?;
            page(sub, false, &[reference("jwtagent")]).map_err(|e| e.to_string())
        }
    }
}

/// Writes jwtagent.1 and a page for every command into `dir`; the files
/// written.
pub fn write_all(dir: &std::path::Path) -> Result<Vec<std::path::PathBuf>, String> {
    let (_, subs) = commands();
    let mut written = Vec::new();
    let mut write = |file: String, bytes: Vec<u8>| -> Result<(), String> {
        let path = dir.join(file);
        std::fs::write(&path, bytes)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        written.push(path);
        Ok(())
    };
    write("jwtagent.1".into(), render(None)?)?;
    for sub in subs {
        let name = sub.get_name().to_string();
        write(format!("jwtagent-{name}.1"), render(Some(&name))?)?;
    }
    Ok(written)
}
