//! The encrypted file store (`store = "file"`): secrets that outlive a
//! reboot on a machine without a desktop keyring, sealed by a passphrase
//! that is also the agent's lock; and `jwtagent secret`, which replaces only
//! a profile's secret.

use crate::common::*;
use serde_json::{Value, json};

const SECRET: &str = "svc-secret-0123456789";
const PASSPHRASE: &[u8] = b"correct horse battery staple\n";

/// A provider with one client_secret_basic client, `svc`, whose secret is
/// `secret`.
fn provider(env: &TestEnv, secret: &str) -> Oidc {
    Oidc::start(
        env,
        &json!({"ttl": 600, "clients": [
            {"client_id": "svc", "auth": "client_secret_basic", "secret": secret},
        ]}),
    )
}

/// A config that picks the file store, so that an autostarted agent uses it.
fn use_file_store(env: &TestEnv) {
    let config = env.config_file();
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    std::fs::write(&config, "version = 1\nstore = \"file\"\n").unwrap();
}

fn store_file(env: &TestEnv) -> std::path::PathBuf {
    env.path("home/.local/share/jwtagent/secrets.sealed")
}

fn status(env: &TestEnv) -> Value {
    serde_json::from_str(&env.ok(&["status", "--json"])).unwrap()
}

fn add_svc(env: &TestEnv, oidc: &Oidc, secret: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "add",
        "svc",
        "--issuer",
        &oidc.issuer,
        "--client-id",
        "svc",
        "--secret-stdin",
    ];
    args.extend_from_slice(extra);
    env.run_with_stdin(&args, secret.as_bytes())
}

#[test]
fn the_file_stores_secrets_outlive_a_reboot_and_open_only_with_its_passphrase() {
    let env = TestEnv::new();
    let oidc = provider(&env, SECRET);
    use_file_store(&env);

    // A new agent starts sealed, with no file yet, and says what to run.
    env.start_agent_own_store();
    let s = status(&env);
    assert_eq!(s["locked"], true, "{s}");
    assert_eq!(s["store_sealed"], "not_created", "{s}");
    assert!(env.ok(&["status"]).contains("jwtagent unlock"));
    let out = env.run_with_stdin(&["unlock", "--passphrase-stdin"], PASSPHRASE);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("created"));

    let out = add_svc(&env, &oidc, SECRET, &[]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("secret stored in the encrypted file store"),
        "{said}"
    );
    let shown = env.ok(&["show", "svc"]);
    assert!(
        shown.contains("stored in the encrypted file store"),
        "{shown}"
    );
    let first = env.ok(&["token", "svc"]);

    // On disk: one file, 0600 in a 0700 directory, holding no secret.
    use std::os::unix::fs::PermissionsExt;
    let file = store_file(&env);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mode(file.parent().unwrap()), 0o700);
    let sealed = std::fs::read(&file).unwrap();
    let text = String::from_utf8_lossy(&sealed);
    assert!(
        !text.contains(SECRET) && !text.contains(first.trim()),
        "{text}"
    );
    assert!(text.contains("\"kdf\":{\"alg\":\"argon2id\""), "{text}");
    // Nothing went to the kernel keyring.
    assert!(kernel_keys_of(&env.keyring_service).is_empty());

    // The reboot: the agent is gone, and with it every key in memory.
    env.ok(&["stop"]);
    env.start_agent_own_store();
    let s = status(&env);
    assert_eq!(s["store_sealed"], "sealed", "{s}");
    let out = env.run(&["token", "svc"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert!(
        err.contains("sealed: ") && err.contains("jwtagent unlock"),
        "{err}"
    );

    // A wrong passphrase: refused after the delay, and the file unchanged.
    let started = std::time::Instant::now();
    let out = env.run_with_stdin(&["unlock", "--passphrase-stdin"], b"guess\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr_of(&out).contains("wrong passphrase"),
        "{}",
        stderr_of(&out)
    );
    assert!(started.elapsed() >= std::time::Duration::from_millis(250));
    assert_eq!(std::fs::read(&file).unwrap(), sealed);

    // The right one: the profile serves again, with no `add`.
    let out = env.run_with_stdin(&["unlock", "--passphrase-stdin"], PASSPHRASE);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let second = env.ok(&["token", "svc"]);
    assert_ne!(first, second, "a new token, with the secret read back");

    // `lock` is the store's: no passphrase of its own, and the store's opens it.
    env.ok(&["lock"]);
    assert_eq!(status(&env)["store_sealed"], "sealed");
    // Stopped while sealed, it comes back sealed: `stop` is not refused.
    env.ok(&["stop"]);
    env.start_agent_own_store();
    assert_eq!(status(&env)["store_sealed"], "sealed");
    let out = env.run_with_stdin(&["unlock", "--passphrase-stdin"], PASSPHRASE);
    assert!(out.status.success(), "{}", stderr_of(&out));
    env.ok(&["token", "svc"]);
}

#[test]
fn a_damaged_or_exposed_store_file_is_refused_named_and_left_as_it_is() {
    let env = TestEnv::new();
    use_file_store(&env);
    env.start_agent_own_store();
    let out = env.run_with_stdin(&["unlock", "--passphrase-stdin"], PASSPHRASE);
    assert!(out.status.success(), "{}", stderr_of(&out));
    env.ok(&["stop"]);
    env.start_agent_own_store();
    let file = store_file(&env);
    let good = std::fs::read(&file).unwrap();

    let cut = &good[..good.len() / 2];
    std::fs::write(&file, cut).unwrap();
    let out = env.run_with_stdin(&["unlock", "--passphrase-stdin"], PASSPHRASE);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert!(
        err.contains("is damaged") && err.contains(file.to_str().unwrap()),
        "{err}"
    );
    assert_eq!(std::fs::read(&file).unwrap(), cut, "never overwritten");

    std::fs::write(&file, &good).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = env.run_with_stdin(&["unlock", "--passphrase-stdin"], PASSPHRASE);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert!(
        err.contains("mode 0644") && err.contains("chmod 600"),
        "{err}"
    );

    // Another user's file (this suite runs as root, as the attack tests do).
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::chown(&file, Some(65534), Some(65534))
        .expect("this test must run as root: it gives the store file to uid 65534");
    let out = env.run_with_stdin(&["unlock", "--passphrase-stdin"], PASSPHRASE);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert!(err.contains("owned by uid 65534"), "{err}");
    assert_eq!(status(&env)["locked"], true);
}

#[test]
fn an_agent_started_with_a_passphrase_file_serves_unattended() {
    let env = TestEnv::new();
    let oidc = provider(&env, SECRET);
    use_file_store(&env);
    env.start_agent_own_store();
    let out = env.run_with_stdin(&["unlock", "--passphrase-stdin"], PASSPHRASE);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let out = add_svc(&env, &oidc, SECRET, &[]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    env.ok(&["stop"]);

    // As systemd's LoadCredential= hands it over: a file in
    // $CREDENTIALS_DIRECTORY named jwtagent-store-passphrase.
    let credentials = env.path("credentials");
    std::fs::create_dir(&credentials).unwrap();
    std::fs::write(credentials.join("jwtagent-store-passphrase"), PASSPHRASE).unwrap();
    let out = env
        .cmd(&["agent"])
        .env_remove("JWTAGENT_STORE")
        .env("CREDENTIALS_DIRECTORY", &credentials)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(status(&env)["locked"], false);
    env.ok(&["token", "svc"]);
    env.ok(&["stop"]);

    // A wrong one leaves it sealed, and says so in the log.
    let wrong = env.path("wrong");
    std::fs::write(&wrong, "guess\n").unwrap();
    let out = env
        .cmd(&["agent", "--store-passphrase-file", wrong.to_str().unwrap()])
        .env_remove("JWTAGENT_STORE")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(status(&env)["store_sealed"], "sealed");
    wait_until("the log says why the store stayed sealed", || {
        std::fs::read_to_string(env.log_file())
            .unwrap_or_default()
            .contains("stays sealed")
    });
}

#[test]
fn secret_replaces_only_the_secret_and_keeps_the_old_one_when_the_server_refuses() {
    let env = TestEnv::new();
    let new = "rotated-secret-9876543210";
    let oidc = provider(&env, new);
    // The old secret, which the server no longer takes (rotated there first).
    let out = add_svc(&env, &oidc, SECRET, &["--no-verify"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let before = std::fs::read_to_string(env.config_file()).unwrap();
    assert_eq!(env.run(&["token", "svc"]).status.code(), Some(1));

    // A secret the server refuses is not saved.
    let out = env.run_with_stdin(
        &["secret", "svc", "--secret-stdin"],
        b"wrong-secret-000000\n",
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("invalid_client"),
        "{}",
        stderr_of(&out)
    );
    assert_eq!(std::fs::read_to_string(env.config_file()).unwrap(), before);

    // The right one is, and every setting stays as it was.
    let out = env.run_with_stdin(&["secret", "svc", "--secret-stdin"], new.as_bytes());
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("checked"));
    env.ok(&["token", "svc"]);
    let after = std::fs::read_to_string(env.config_file()).unwrap();
    let settings = |text: &str| {
        text.lines()
            .filter(|l| !l.starts_with("generation"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(settings(&after), settings(&before));

    // A profile with nothing to replace, and one that does not exist.
    env.add_open_profile("open", &oidc.token_endpoint(), &[]);
    let out = env.run_with_stdin(&["secret", "open", "--secret-stdin"], b"x\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr_of(&out).contains("no secret or key to replace"),
        "{}",
        stderr_of(&out)
    );
    let out = env.run_with_stdin(&["secret", "nope", "--secret-stdin"], b"x\n");
    assert!(
        stderr_of(&out).contains("no profile named"),
        "{}",
        stderr_of(&out)
    );
    env.audit_until("the secret replacements audited", |records| {
        records.iter().filter(|r| r["op"] == "secret").count() == 4
    });
}
