//! Proof that nothing leaks: a full run at JWTAGENT_LOG=trace, then every known
//! secret, private key, passphrase, assertion and access token is searched for
//! in everything the agent wrote or exposes.

use crate::common::*;
use serde_json::json;
use std::process::Stdio;

const BASIC: &str = "leak-test-basic-secret-7f3a9c";
const POST: &str = "leak-test-post-secret-51d2e8";
const HMAC: &str = "leak-test-hmac-secret-0123456789abcdef";
const PASSPHRASE: &str = "leak-test-lock-passphrase-4411";

fn base64(bytes: &[u8]) -> String {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(alphabet[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn no_secret_key_assertion_or_token_appears_in_logs_audit_config_argv_or_environment() {
    let env = TestEnv::new();
    let key = gen_key(&env, "p256");
    let oidc = Oidc::start(
        &env,
        &json!({"ttl": 600, "clients": [
            {"client_id": "basic", "auth": "client_secret_basic", "secret": BASIC},
            {"client_id": "post", "auth": "client_secret_post", "secret": POST},
            {"client_id": "hs", "auth": "client_secret_jwt", "secret": HMAC, "alg": "HS256"},
            {"client_id": "pk", "auth": "private_key_jwt", "alg": "ES256", "public_key_pem": public_pem(&key)},
        ]}),
    );
    // The agent in the foreground at trace level, its stderr captured.
    let log_path = env.path("agent-trace.log");
    let mut agent = env
        .cmd(&["agent", "-D"])
        .env("JWTAGENT_LOG", "trace")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    wait_until("the agent answers", || {
        hello(&env.default_socket()).is_some()
    });

    let add = |name: &str, auth: &str, secret: &str| {
        let out = env.run_with_stdin(
            &[
                "add",
                name,
                "--issuer",
                &oidc.issuer,
                "--client-id",
                name,
                "--auth",
                auth,
                "--secret-stdin",
            ],
            secret.as_bytes(),
        );
        assert!(out.status.success(), "{}", stderr_of(&out));
    };
    add("basic", "client_secret_basic", BASIC);
    add("post", "client_secret_post", POST);
    add("hs", "client_secret_jwt", HMAC);
    let out = env.run(&[
        "add",
        "pk",
        "--issuer",
        &oidc.issuer,
        "--client-id",
        "pk",
        "--key-file",
        key.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr_of(&out));

    let mut tokens = Vec::new();
    for name in ["basic", "post", "hs", "pk"] {
        tokens.push(env.ok(&["token", name]).trim().to_string());
        tokens.push(env.ok(&["token", name, "--force"]).trim().to_string());
    }
    tokens.push(
        env.ok(&["token", "pk", "--resource", "https://api.example/"])
            .trim()
            .to_string(),
    );
    let out = env.run_with_stdin(&["lock", "--passphrase-stdin"], PASSPHRASE.as_bytes());
    assert!(out.status.success());
    let out = env.run_with_stdin(&["unlock", "--passphrase-stdin"], PASSPHRASE.as_bytes());
    assert!(out.status.success());
    env.ok(&["status", "--json"]);
    let _ = env.run(&["token", "missing"]);

    // Everything the agent exposes, while it runs.
    let pid = agent.id();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    env.ok(&["stop"]);
    let _ = agent.wait();

    let mut needles: Vec<(String, String)> = vec![
        ("basic secret".into(), BASIC.into()),
        ("post secret".into(), POST.into()),
        ("hmac secret".into(), HMAC.into()),
        ("lock passphrase".into(), PASSPHRASE.into()),
        (
            "basic credentials".into(),
            base64(format!("basic:{BASIC}").as_bytes()),
        ),
    ];
    let pem = std::fs::read_to_string(&key).unwrap();
    for (i, line) in pem.lines().filter(|l| !l.starts_with("-----")).enumerate() {
        needles.push((format!("private key line {i}"), line.to_string()));
    }
    for (i, t) in tokens.iter().enumerate() {
        assert!(t.len() > 20);
        needles.push((format!("access token {i}"), t.clone()));
    }
    let assertions: Vec<String> = oidc
        .events()
        .iter()
        .filter_map(|e| e["assertion"].as_str().map(str::to_string))
        .collect();
    assert!(assertions.len() >= 4, "assertions seen by the provider");
    for (i, a) in assertions.iter().enumerate() {
        needles.push((format!("assertion {i}"), a.clone()));
        // The signature alone, too.
        needles.push((
            format!("assertion {i} signature"),
            a.rsplit('.').next().unwrap().to_string(),
        ));
    }

    let trace = std::fs::read(&log_path).unwrap();
    assert!(
        String::from_utf8_lossy(&trace).contains("TRACE"),
        "the log really is at trace level"
    );
    let haystacks: Vec<(String, Vec<u8>)> = vec![
        ("the agent log at trace".into(), trace),
        (
            "the audit log".into(),
            std::fs::read(env.path("state/jwtagent/audit.log")).unwrap(),
        ),
        (
            "the config".into(),
            std::fs::read(env.config_file()).unwrap(),
        ),
        ("the agent argv".into(), cmdline),
        ("the agent environment".into(), environ),
    ];
    assert_absent(&needles, &haystacks);
}
