//! The examples in docs/protocol.md run against the real agent, so the document
//! cannot drift from the protocol.

use crate::common::*;
use std::process::Command;

fn doc() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/protocol.md"))
        .expect("read docs/protocol.md")
}

/// The body of the first fenced block of `lang` after the `after` heading.
fn code_block(doc: &str, after: &str, lang: &str) -> String {
    let start = doc
        .find(after)
        .unwrap_or_else(|| panic!("no {after:?} in doc"));
    let fence = format!("```{lang}\n");
    let body = &doc[start..];
    let open = body.find(&fence).expect("code block") + fence.len();
    let close = body[open..].find("\n```").expect("closing fence");
    body[open..open + close].to_string()
}

#[test]
fn python_example_in_protocol_doc_runs_against_the_agent() {
    let python = require_tool("python3", "python3");
    let env = TestEnv::new();
    let agent = env.foreground_agent(&env.path("doc.sock"));
    let script = code_block(&doc(), "## Example: Python", "python");
    let out = Command::new(python)
        .arg("-c")
        .arg(&script)
        .env("JWTAGENT_SOCK", &agent.socket)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python example failed: {}",
        stderr_of(&out)
    );
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(
        printed.starts_with(&format!(
            "agent {} (pid {}), up ",
            env!("CARGO_PKG_VERSION"),
            agent.pid()
        )),
        "{printed}"
    );
}

#[test]
fn socat_example_in_protocol_doc_runs_against_the_agent() {
    require_tool("socat", "socat");
    let env = TestEnv::new();
    // The example starts the agent itself with `jwtagent env`.
    let script = code_block(&doc(), "## Example: a shell with socat", "sh");
    let out = env.shell(&script).output().unwrap();
    assert!(
        out.status.success(),
        "socat example failed: {}",
        stderr_of(&out)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["id"], 1);
    assert_eq!(lines[0]["protocol"], 1);
    assert_eq!(lines[1]["id"], 2);
    assert_eq!(lines[1]["socket"], env.default_socket().to_str().unwrap());
}

#[test]
fn request_response_example_in_protocol_doc_matches_the_agent() {
    // The documented case: secrets in a Secret Service (with only the kernel
    // keyring, `add` answers with a warning besides).
    let mut env = TestEnv::new();
    let secret_service = SecretService::start(&env, true);
    env.bus = Some(secret_service.address.clone());
    env.ok(&["env"]);
    let block = code_block(&doc(), "### Example: a profile over the wire", "text");
    let mut conn = Conn::open(&env.default_socket());
    let mut pending = None;
    for line in block.lines() {
        if let Some(request) = line.strip_prefix("> ") {
            pending = Some(conn.request(request));
        } else if let Some(expected) = line.strip_prefix("< ") {
            let expected: serde_json::Value = serde_json::from_str(expected).unwrap();
            assert_eq!(pending.take().expect("a request first"), expected);
        }
    }
}
