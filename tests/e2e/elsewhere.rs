//! Secrets kept elsewhere (`add --secret-command`): the agent runs the
//! profile's command whenever it needs the secret and keeps nothing, with
//! Debian's `pass` (and a GPG key made here) as the store; and commands that
//! fail, hang or flood.

use crate::common::*;
use serde_json::json;
use std::process::Command;

const SECRET: &str = "svc-secret-0123456789";

fn provider(env: &TestEnv) -> Oidc {
    Oidc::start(
        env,
        &json!({"ttl": 600, "clients": [
            {"client_id": "svc", "auth": "client_secret_basic", "secret": SECRET},
        ]}),
    )
}

/// A password store of its own: a GPG key with no passphrase in a private
/// GNUPGHOME, and `pass init` with it.
struct Pass {
    gnupg: std::path::PathBuf,
    store: std::path::PathBuf,
}

impl Pass {
    fn new(env: &TestEnv) -> Pass {
        let gpg = require_tool("gpg", "gnupg");
        require_tool("pass", "pass");
        let pass = Pass {
            gnupg: env.path("gnupg"),
            store: env.path("password-store"),
        };
        std::fs::create_dir(&pass.gnupg).unwrap();
        std::fs::set_permissions(
            &pass.gnupg,
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        let out = pass
            .command(&gpg)
            .args(["--batch", "--passphrase", "", "--quick-gen-key"])
            .args([
                "jwtagent test <test@example.invalid>",
                "default",
                "default",
                "never",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "gpg: {}", stderr_of(&out));
        let out = pass
            .command("pass")
            .args(["init", "test@example.invalid"])
            .output()
            .unwrap();
        assert!(out.status.success(), "pass init: {}", stderr_of(&out));
        pass
    }

    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("GNUPGHOME", &self.gnupg)
            .env("PASSWORD_STORE_DIR", &self.store);
        cmd
    }

    /// `pass insert` of `value` at `path`, replacing what is there.
    fn insert(&self, path: &str, value: &str) {
        let out = output_with_stdin(
            self.command("pass")
                .args(["insert", "--echo", "--force", path]),
            format!("{value}\n").as_bytes(),
        );
        assert!(out.status.success(), "pass insert: {}", stderr_of(&out));
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        // The gpg-agent the key generation started.
        let _ = self
            .command("gpgconf")
            .args(["--kill", "gpg-agent"])
            .output();
    }
}

#[test]
fn a_secret_in_pass_is_read_when_needed_and_never_stored() {
    let env = TestEnv::new();
    let oidc = provider(&env);
    let pass = Pass::new(&env);
    pass.insert("api/client", SECRET);
    let out = env
        .cmd(&["agent"])
        .env("GNUPGHOME", &pass.gnupg)
        .env("PASSWORD_STORE_DIR", &pass.store)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));

    // Checked against the server at `add`, like a stored secret.
    let out = env.run(&[
        "add",
        "svc",
        "--issuer",
        &oidc.issuer,
        "--client-id",
        "svc",
        "--secret-command",
        "pass show 'api/client'",
    ]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("verified") && said.contains("none stored"),
        "{said}"
    );
    env.ok(&["token", "svc"]);
    let shown = env.ok(&["show", "svc"]);
    assert!(shown.contains("from `pass show api/client`"), "{shown}");

    // Stored nowhere: not in the kernel keyring, not in the config.
    assert!(
        keyutils_lookup(&env.keyring_service, "profile/svc").is_none(),
        "nothing in the keyring"
    );
    let config = std::fs::read_to_string(env.config_file()).unwrap();
    assert!(!config.contains(SECRET), "{config}");
    assert!(
        config.contains("secret_command = [\n    \"pass\",\n    \"show\",\n    \"api/client\",\n]"),
        "{config}"
    );

    // Read again at every fetch: a secret changed in pass is used at once.
    pass.insert("api/client", "not-the-secret-any-more");
    let out = env.run(&["token", "svc", "--force"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr_of(&out).contains("invalid_client"),
        "{}",
        stderr_of(&out)
    );
    pass.insert("api/client", SECRET);
    env.ok(&["token", "svc", "--force"]);
    // `secret` has nothing to replace.
    let out = env.run_with_stdin(&["secret", "svc", "--secret-stdin"], b"x\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr_of(&out).contains("--secret-command"),
        "{}",
        stderr_of(&out)
    );
}

#[test]
fn a_secret_command_that_is_missing_fails_hangs_or_floods_is_a_clear_error() {
    let env = TestEnv::new();
    let oidc = provider(&env);
    let out = env
        .cmd(&["agent"])
        .env("JWTAGENT_SECRET_COMMAND_TIMEOUT", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let cases = [
        // Run by `sh` at token time, which says "not found" itself.
        ("/nonexistent/get-secret", "cannot run it|not found"),
        (
            r#"sh -c 'echo "vault: permission denied" >&2; exit 3'"#,
            "vault: permission denied",
        ),
        // An argument no other process on the machine has, for the check
        // at the end.
        ("sleep 60.0417", "did not finish within 1s"),
        ("head -c 10000000 /dev/zero", "more than 1 MiB"),
        ("true", "printed nothing"),
    ];
    // A profile whose command works at `add`, then stops working.
    let script = env.path("get-secret.sh");
    std::fs::write(&script, format!("echo {SECRET}\n")).unwrap();
    let out = env.run(&[
        "add",
        "later",
        "--issuer",
        &oidc.issuer,
        "--client-id",
        "svc",
        "--secret-command",
        &format!("sh {}", script.display()),
    ]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    for (i, (command, expected)) in cases.iter().enumerate() {
        // `add` gets the secret from the command to check the profile
        // with: none, nothing saved.
        let name = format!("p{i}");
        let out = env.run(&[
            "add",
            &name,
            "--issuer",
            &oidc.issuer,
            "--client-id",
            "svc",
            "--secret-command",
            command,
        ]);
        assert_eq!(out.status.code(), Some(1), "{command}");
        let (at_add, at_token) = expected.split_once('|').unwrap_or((expected, expected));
        let err = stderr_of(&out);
        assert!(
            err.contains(at_add) && err.contains("store"),
            "{command}: {err}"
        );
        assert_eq!(env.run(&["show", &name]).status.code(), Some(1));
        // At token time, the same words.
        std::fs::write(&script, format!("exec {command}\n")).unwrap();
        let out = env.run(&["token", "later", "--force"]);
        assert_eq!(out.status.code(), Some(1), "{command}");
        assert!(
            stderr_of(&out).contains(at_token),
            "{command}: {}",
            stderr_of(&out)
        );
    }
    // Nothing the commands ran is left behind.
    let out = Command::new("pgrep")
        .args(["-f", r"sleep 60\.0417"])
        .output();
    if let Ok(out) = out {
        assert!(out.stdout.is_empty(), "a hung command was left running");
    }
}
