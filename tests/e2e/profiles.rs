//! Profiles end to end: the CLI, the agent, profiles.toml and the real keyrings
//! (the kernel keyutils keyring, and GNOME Keyring on a private session bus).

use crate::common::*;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;

const URL: &str = "https://idp.example/oauth2/token";

/// `status --json` once the agent's store is no longer opening.
fn opened_store_status(env: &TestEnv) -> Value {
    let mut status = Value::Null;
    wait_until("the store is opened", || {
        status = serde_json::from_str(&env.ok(&["status", "--json"])).unwrap();
        status["store"] != "opening"
    });
    status
}

fn add_basic(env: &TestEnv, name: &str, secret: &str) -> std::process::Output {
    env.run_with_stdin(
        &[
            "add",
            "--no-verify",
            name,
            "--token-url",
            URL,
            "--client-id",
            &format!("client-{name}"),
            "--secret-stdin",
        ],
        secret.as_bytes(),
    )
}

fn assert_ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "failed ({}): {}",
        out.status,
        stderr_of(out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A refusal: exit code `code` and a message containing every one of `needles`.
fn assert_refused(out: &std::process::Output, code: i32, needles: &[&str]) {
    let err = stderr_of(out);
    assert_eq!(out.status.code(), Some(code), "{err}");
    for needle in needles {
        assert!(err.contains(needle), "expected {needle:?} in: {err}");
    }
}

fn list_names(env: &TestEnv) -> Vec<String> {
    let json: Value = serde_json::from_str(&env.ok(&["list", "--json"])).unwrap();
    json.as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn add_list_show_remove_round_trip_with_keyutils() {
    let env = TestEnv::new();
    let secret = "s3cret-for-roundtrip-0001";
    let added = assert_ok(&add_basic(&env, "api", secret));
    assert!(
        added.contains("secret stored in the kernel keyring"),
        "{added}"
    );
    assert_eq!(list_names(&env), ["api"]);
    let table = env.ok(&["list"]);
    assert!(table.contains("api") && table.contains(URL) && table.contains("client-api"));

    let show: Value = serde_json::from_str(&env.ok(&["show", "api", "--json"])).unwrap();
    assert_eq!(show["name"], "api");
    assert_eq!(show["profile"]["token_url"], URL);
    assert_eq!(show["profile"]["auth"], "client_secret_basic");
    assert_eq!(show["secret_stored"], true);
    assert_eq!(show["stored_in"], "the kernel keyring");
    let text = env.ok(&["show", "api"]);
    assert!(text.contains("stored in the kernel keyring"), "{text}");
    assert!(!text.contains(secret) && !show.to_string().contains(secret));

    let stored = keyutils_lookup(&env.keyring_service, "profile/api").expect("key in keyutils");
    assert_eq!(stored, secret.as_bytes());

    assert_ok(&env.run(&["remove", "api"]));
    assert!(list_names(&env).is_empty());
    assert_eq!(keyutils_lookup(&env.keyring_service, "profile/api"), None);
    assert_refused(&env.run(&["show", "api"]), 1, &["unknown_profile", "api"]);
    assert_refused(&env.run(&["remove", "api"]), 1, &["unknown_profile"]);
}

#[test]
fn status_shows_the_store_backend_in_use() {
    let env = TestEnv::new();
    // No session bus in this environment: `auto` chooses the file store.
    let out = env
        .cmd(&["env"])
        .env_remove("JWTAGENT_STORE")
        .output()
        .unwrap();
    assert_ok(&out);
    let status = opened_store_status(&env);
    assert!(
        status["store"]
            .as_str()
            .unwrap()
            .starts_with("file (not created yet"),
        "{status}"
    );
    assert_eq!(status["locked"], true, "sealed: {status}");
    assert_eq!(status["config"], env.config_file().to_str().unwrap());
    let log = std::fs::read_to_string(env.log_file()).unwrap();
    assert!(
        log.contains("no Secret Service available; using jwtagent's encrypted file store"),
        "{log}"
    );
    // The tests' JWTAGENT_STORE (as --store would) names keyutils.
    env.ok(&["stop"]);
    env.ok(&["agent"]);
    wait_until("the kernel keyring is in use", || {
        let s: Value = serde_json::from_str(&env.ok(&["status", "--json"])).unwrap();
        s["store"] == "keyutils"
    });
}

#[test]
fn config_file_is_0600_and_never_contains_the_secret() {
    let env = TestEnv::new();
    let secret = "very-secret-value-6b2f1c";
    assert_ok(&add_basic(&env, "api", secret));
    let key = gen_key(&env, "p256");
    assert_ok(&env.run(&[
        "add",
        "--no-verify",
        "signed",
        "--token-url",
        URL,
        "--client-id",
        "c",
        "--key-file",
        key.to_str().unwrap(),
    ]));
    let config = std::fs::read(env.config_file()).unwrap();
    let text = String::from_utf8(config.clone()).unwrap();
    assert!(
        text.contains("version = 1") && text.contains("[profiles.api]"),
        "{text}"
    );
    assert!(!text.contains(secret));
    let pem = std::fs::read_to_string(&key).unwrap();
    let body_line = pem.lines().nth(1).unwrap();
    assert!(!text.contains(body_line), "no key material in the config");
    let mode = std::fs::metadata(env.config_file())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn corrupt_config_is_reported_with_its_path_and_left_byte_identical() {
    let env = TestEnv::new();
    std::fs::create_dir_all(env.config_file().parent().unwrap()).unwrap();
    let garbage = b"version = 1\n[profiles.api\ntoken_url = 3\n";
    std::fs::write(env.config_file(), garbage).unwrap();

    let out = add_basic(&env, "new", "secret-value-1234");
    assert_refused(
        &out,
        1,
        &["config", env.config_file().to_str().unwrap(), "line 2"],
    );
    assert_refused(&env.run(&["list"]), 1, &["config", "line 2"]);
    let status: Value = serde_json::from_str(&env.ok(&["status", "--json"])).unwrap();
    assert!(status["config_error"].as_str().unwrap().contains("line 2"));
    assert_eq!(std::fs::read(env.config_file()).unwrap(), garbage);
    assert_eq!(keyutils_lookup(&env.keyring_service, "profile/new"), None);

    // Fixing the file heals the running agent.
    std::fs::write(env.config_file(), b"version = 1\n").unwrap();
    assert_ok(&add_basic(&env, "new", "secret-value-1234"));
    assert_eq!(list_names(&env), ["new"]);
}

#[test]
fn twenty_concurrent_adds_give_twenty_profiles() {
    let env = TestEnv::new();
    env.ok(&["env"]);
    let children: Vec<_> = (0..20)
        .map(|i| {
            let mut child = env
                .cmd(&[
                    "add",
                    "--no-verify",
                    &format!("p{i:02}"),
                    "--token-url",
                    URL,
                    "--client-id",
                    &format!("c{i}"),
                    "--secret-stdin",
                ])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(format!("secret-number-{i}").as_bytes())
                .unwrap();
            child
        })
        .collect();
    for child in children {
        assert_ok(&child.wait_with_output().unwrap());
    }
    let names = list_names(&env);
    assert_eq!(names.len(), 20, "{names:?}");
    let config = std::fs::read_to_string(env.config_file()).unwrap();
    for i in 0..20 {
        assert!(config.contains(&format!("[profiles.p{i:02}]")));
        assert_eq!(
            keyutils_lookup(&env.keyring_service, &format!("profile/p{i:02}")).unwrap(),
            format!("secret-number-{i}").as_bytes()
        );
    }
}

#[test]
fn after_kill_9_and_restart_every_profile_is_back_with_its_secret() {
    let env = TestEnv::new();
    let pid = pid_from_env_script(&env.ok(&["env"]));
    for name in ["a", "b", "c"] {
        assert_ok(&add_basic(&env, name, &format!("secret-of-{name}-xyz")));
    }
    kill_9(pid, &env.default_socket());
    // The next command autostarts a new agent, which reads everything back.
    assert_eq!(list_names(&env), ["a", "b", "c"]);
    assert_ne!(pid_from_env_script(&env.ok(&["env"])), pid);
    for name in ["a", "b", "c"] {
        let show: Value = serde_json::from_str(&env.ok(&["show", name, "--json"])).unwrap();
        assert_eq!(show["secret_stored"], true, "{name}");
    }
}

#[test]
fn token_and_header_autostart_like_the_others_and_exit_3_when_they_may_not() {
    // `token` has a fast path of its own (no clap): it must keep the rules.
    let env = TestEnv::new();
    let server = open_provider(&env, 600);
    env.add_open_profile("api", &server.token_endpoint(), &[]);
    for command in ["token", "header"] {
        env.ok(&["stop"]);
        let out = env
            .cmd(&[command, "api"])
            .env("JWTAGENT_NO_AUTOSTART", "1")
            .output()
            .unwrap();
        assert_refused(
            &out,
            3,
            &[
                env.default_socket().to_str().unwrap(),
                "JWTAGENT_NO_AUTOSTART=1 is set, so no agent is started for you",
            ],
        );
        assert!(out.stdout.is_empty());
        assert!(
            hello(&env.default_socket()).is_none(),
            "{command} started an agent"
        );
        let explicit = env.path("explicit.sock");
        let out = env
            .cmd(&[command, "api"])
            .env("JWTAGENT_SOCK", &explicit)
            .output()
            .unwrap();
        assert_refused(&out, 3, &[explicit.to_str().unwrap()]);
        assert!(!explicit.exists());
        // Neither set: the agent starts on the default socket and serves.
        let served = env.ok(&[command, "api"]);
        assert!(!served.trim().is_empty());
        assert!(
            hello(&env.default_socket()).is_some(),
            "{command} started no agent"
        );
    }
}

#[test]
fn commands_autostart_an_agent_on_the_default_socket_only() {
    let env = TestEnv::new();
    assert!(list_names(&env).is_empty());
    assert!(
        hello(&env.default_socket()).is_some(),
        "list started an agent"
    );
    env.ok(&["stop"]);

    let out = env
        .cmd(&["list"])
        .env("JWTAGENT_NO_AUTOSTART", "1")
        .output()
        .unwrap();
    assert_refused(
        &out,
        3,
        &[
            env.default_socket().to_str().unwrap(),
            "JWTAGENT_NO_AUTOSTART=1 is set, so no agent is started for you",
        ],
    );
    assert!(hello(&env.default_socket()).is_none());

    let explicit = env.path("explicit.sock");
    let out = env
        .cmd(&["list"])
        .env("JWTAGENT_SOCK", &explicit)
        .output()
        .unwrap();
    let command = format!("jwtagent agent --socket {}", explicit.display());
    assert_refused(&out, 3, &[explicit.to_str().unwrap(), &command]);
    assert!(!explicit.exists());

    // After `eval "$(jwtagent env)"` and `jwtagent stop`, JWTAGENT_SOCK still
    // names the default path: that is no choice of the user's, and the next
    // command starts an agent there as usual.
    let out = env
        .cmd(&["list"])
        .env("JWTAGENT_SOCK", env.default_socket())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(
        hello(&env.default_socket()).is_some(),
        "no agent was started"
    );
    // And `stop` says what it stopped, besides printing the unset script.
    let out = env.run(&["stop"]);
    assert!(out.status.success());
    assert!(
        stderr_of(&out).starts_with("Stopped the agent (pid "),
        "{}",
        stderr_of(&out)
    );
}

#[test]
fn add_over_an_existing_profile_replaces_it_and_its_secret() {
    let env = TestEnv::new();
    assert_ok(&add_basic(&env, "api", "first-secret-value"));
    let out = env.run_with_stdin(
        &[
            "add",
            "--no-verify",
            "api",
            "--token-url",
            "https://other.example/token",
            "--client-id",
            "new-client",
            "--auth",
            "client_secret_post",
            "--secret-stdin",
        ],
        b"second-secret-value\n",
    );
    assert!(assert_ok(&out).contains("Replaced"));
    let show: Value = serde_json::from_str(&env.ok(&["show", "api", "--json"])).unwrap();
    assert_eq!(show["profile"]["client_id"], "new-client");
    assert_eq!(show["profile"]["auth"], "client_secret_post");
    // The replacement is the profile's next generation; the first one's
    // entry is gone.
    assert_eq!(show["profile"]["generation"], 1);
    assert_eq!(
        keyutils_lookup(&env.keyring_service, "profile/api#1").unwrap(),
        b"second-secret-value",
        "trailing newline from stdin trimmed"
    );
    assert_eq!(keyutils_lookup(&env.keyring_service, "profile/api"), None);
}

#[test]
fn secret_can_come_from_a_file_and_never_from_argv() {
    let env = TestEnv::new();
    let file = env.path("secret.txt");
    std::fs::write(&file, "file-secret-value\n").unwrap();
    assert_ok(&env.run(&[
        "add",
        "--no-verify",
        "f",
        "--token-url",
        URL,
        "--client-id",
        "c",
        "--secret-file",
        file.to_str().unwrap(),
    ]));
    assert_eq!(
        keyutils_lookup(&env.keyring_service, "profile/f").unwrap(),
        b"file-secret-value"
    );
    // There is no option that takes the secret itself.
    let out = env.run(&[
        "add",
        "--no-verify",
        "g",
        "--token-url",
        URL,
        "--client-id",
        "c",
        "--secret",
        "x",
    ]);
    assert_eq!(out.status.code(), Some(2));
    // Without a terminal and without a source, add says how to give one.
    let out = env.run(&[
        "add",
        "--no-verify",
        "g",
        "--token-url",
        URL,
        "--client-id",
        "c",
    ]);
    assert_refused(&out, 2, &["--secret-stdin", "--secret-file"]);
}

#[test]
fn private_keys_of_every_supported_kind_are_accepted_with_the_right_default_alg() {
    let env = TestEnv::new();
    for (kind, alg) in [
        ("rsa", "RS256"),
        ("rsa-pkcs1", "RS256"),
        ("p256", "ES256"),
        ("p384", "ES384"),
        ("ed25519", "EdDSA"),
    ] {
        let key = gen_key(&env, kind);
        let out = env.run(&[
            "add",
            "--no-verify",
            kind,
            "--token-url",
            URL,
            "--client-id",
            "c",
            "--key-file",
            key.to_str().unwrap(),
        ]);
        assert!(assert_ok(&out).contains(alg), "{kind}");
        let show: Value = serde_json::from_str(&env.ok(&["show", kind, "--json"])).unwrap();
        assert_eq!(show["profile"]["alg"], alg, "{kind}");
        assert_eq!(show["profile"]["auth"], "private_key_jwt");
        let stored = keyutils_lookup(&env.keyring_service, &format!("profile/{kind}")).unwrap();
        assert_eq!(
            stored,
            std::fs::read(&key).unwrap(),
            "{kind}: PEM stored as is"
        );
    }
    // An explicit alg that fits the key is kept.
    let key = env.path("rsa.pem");
    let out = env.run(&[
        "add",
        "--no-verify",
        "ps",
        "--token-url",
        URL,
        "--client-id",
        "c",
        "--key-file",
        key.to_str().unwrap(),
        "--alg",
        "PS384",
    ]);
    assert!(assert_ok(&out).contains("PS384"));
}

mod refusals {
    //! Every validation at `add` refuses with what was wrong and how to fix it,
    //! and leaves no trace.

    use super::*;

    fn refused_and_nothing_written(
        env: &TestEnv,
        out: &std::process::Output,
        code: i32,
        needles: &[&str],
    ) {
        assert_refused(out, code, needles);
        if env.config_file().exists() {
            let text = std::fs::read_to_string(env.config_file()).unwrap();
            assert!(!text.contains("[profiles.bad]"), "{text}");
        }
        assert_eq!(keyutils_lookup(&env.keyring_service, "profile/bad"), None);
    }

    #[test]
    fn http_token_endpoint_off_loopback() {
        let env = TestEnv::new();
        let out = env.run_with_stdin(
            &[
                "add",
                "--no-verify",
                "bad",
                "--token-url",
                "http://idp.example/token",
                "--client-id",
                "c",
                "--secret-stdin",
            ],
            b"secret-value",
        );
        refused_and_nothing_written(&env, &out, 2, &["token_url", "https://", "loopback"]);
        // Loopback http is fine.
        let out = env.run_with_stdin(
            &[
                "add",
                "--no-verify",
                "local",
                "--token-url",
                "http://127.0.0.1:8080/token",
                "--client-id",
                "c",
                "--secret-stdin",
            ],
            b"secret-value",
        );
        assert_ok(&out);
    }

    #[test]
    fn http_token_endpoint_sent_straight_to_the_agent() {
        // The agent checks too: a client that skips the CLI gets bad_request.
        let env = TestEnv::new();
        env.ok(&["env"]);
        let mut conn = Conn::open(&env.default_socket());
        let r = conn.request(
            r#"{"id":1,"op":"add","name":"bad","profile":{"token_url":"http://idp.example/t","client_id":"c","auth":"client_secret_basic"},"secret":"s3cr3t-value"}"#,
        );
        assert_eq!(r["error"]["code"], "bad_request");
        assert!(r["error"]["message"].as_str().unwrap().contains("https://"));
        assert!(
            !r.to_string().contains("s3cr3t-value"),
            "no secret in errors"
        );
        refused_and_nothing_written(&env, &env.run(&["show", "bad"]), 1, &["unknown_profile"]);
    }

    #[test]
    fn malformed_url() {
        let env = TestEnv::new();
        let out = env.run_with_stdin(
            &[
                "add",
                "--no-verify",
                "bad",
                "--issuer",
                "not a url",
                "--client-id",
                "c",
                "--secret-stdin",
            ],
            b"secret-value",
        );
        refused_and_nothing_written(&env, &out, 2, &["issuer", "not a valid absolute URL"]);
    }

    #[test]
    fn both_or_neither_endpoint() {
        let env = TestEnv::new();
        let out = env.run(&[
            "add",
            "--no-verify",
            "bad",
            "--client-id",
            "c",
            "--auth",
            "none",
        ]);
        assert_eq!(out.status.code(), Some(2));
        let out = env.run(&[
            "add",
            "--no-verify",
            "bad",
            "--issuer",
            "https://a.example",
            "--token-url",
            URL,
            "--client-id",
            "c",
            "--auth",
            "none",
        ]);
        assert_eq!(out.status.code(), Some(2));
    }

    #[test]
    fn auth_none_with_a_secret() {
        let env = TestEnv::new();
        let out = env.run_with_stdin(
            &[
                "add",
                "--no-verify",
                "bad",
                "--token-url",
                URL,
                "--client-id",
                "c",
                "--auth",
                "none",
                "--secret-stdin",
            ],
            b"secret-value",
        );
        refused_and_nothing_written(&env, &out, 2, &["none", "no secret"]);
        // Without one it is fine, and nothing goes to the keyring.
        assert_ok(&env.run(&[
            "add",
            "--no-verify",
            "open",
            "--token-url",
            URL,
            "--client-id",
            "c",
            "--auth",
            "none",
        ]));
        let show: Value = serde_json::from_str(&env.ok(&["show", "open", "--json"])).unwrap();
        assert!(show.get("secret_stored").is_none());
    }

    #[test]
    fn private_key_jwt_without_a_key() {
        let env = TestEnv::new();
        let out = env.run_with_stdin(
            &[
                "add",
                "--no-verify",
                "bad",
                "--token-url",
                URL,
                "--client-id",
                "c",
                "--auth",
                "private_key_jwt",
                "--secret-stdin",
            ],
            b"secret-value",
        );
        refused_and_nothing_written(&env, &out, 2, &["--key-file"]);
    }

    #[test]
    fn key_file_with_a_client_secret_method() {
        let env = TestEnv::new();
        let key = gen_key(&env, "ed25519");
        let out = env.run(&[
            "add",
            "--no-verify",
            "bad",
            "--token-url",
            URL,
            "--client-id",
            "c",
            "--auth",
            "client_secret_basic",
            "--key-file",
            key.to_str().unwrap(),
        ]);
        refused_and_nothing_written(&env, &out, 2, &["--key-file", "private_key_jwt"]);
    }

    #[test]
    fn hmac_secret_shorter_than_32_bytes() {
        let env = TestEnv::new();
        let out = env.run_with_stdin(
            &[
                "add",
                "--no-verify",
                "bad",
                "--token-url",
                URL,
                "--client-id",
                "c",
                "--auth",
                "client_secret_jwt",
                "--secret-stdin",
            ],
            b"only-31-bytes-long-secret-value",
        );
        refused_and_nothing_written(&env, &out, 1, &["at least 32 bytes", "31"]);
        let out = env.run_with_stdin(
            &[
                "add",
                "--no-verify",
                "ok",
                "--token-url",
                URL,
                "--client-id",
                "c",
                "--auth",
                "client_secret_jwt",
                "--alg",
                "HS512",
                "--secret-stdin",
            ],
            b"exactly-32-bytes-long-secret-val",
        );
        assert!(assert_ok(&out).contains("HS512"));
    }

    #[test]
    fn hmac_alg_with_private_key_jwt_and_key_alg_with_client_secret_jwt() {
        let env = TestEnv::new();
        let key = gen_key(&env, "rsa");
        let out = env.run(&[
            "add",
            "--no-verify",
            "bad",
            "--token-url",
            URL,
            "--client-id",
            "c",
            "--key-file",
            key.to_str().unwrap(),
            "--alg",
            "HS256",
        ]);
        refused_and_nothing_written(&env, &out, 2, &["alg", "private_key_jwt"]);
        let out = env.run_with_stdin(
            &[
                "add",
                "--no-verify",
                "bad",
                "--token-url",
                URL,
                "--client-id",
                "c",
                "--auth",
                "client_secret_jwt",
                "--alg",
                "RS256",
                "--secret-stdin",
            ],
            b"exactly-32-bytes-long-secret-val",
        );
        refused_and_nothing_written(&env, &out, 2, &["alg", "HS256"]);
    }

    #[test]
    fn alg_that_does_not_fit_the_key() {
        let env = TestEnv::new();
        let key = gen_key(&env, "p256");
        let out = env.run(&[
            "add",
            "--no-verify",
            "bad",
            "--token-url",
            URL,
            "--client-id",
            "c",
            "--key-file",
            key.to_str().unwrap(),
            "--alg",
            "ES384",
        ]);
        refused_and_nothing_written(&env, &out, 1, &["ES384", "P-256", "ES256"]);
        let key = gen_key(&env, "ed25519");
        let out = env.run(&[
            "add",
            "--no-verify",
            "bad",
            "--token-url",
            URL,
            "--client-id",
            "c",
            "--key-file",
            key.to_str().unwrap(),
            "--alg",
            "RS256",
        ]);
        refused_and_nothing_written(&env, &out, 1, &["RS256", "Ed25519", "EdDSA"]);
    }

    #[test]
    fn sec1_ec_key_gets_the_conversion_command() {
        let env = TestEnv::new();
        let key = gen_key(&env, "sec1");
        let out = env.run(&[
            "add",
            "--no-verify",
            "bad",
            "--token-url",
            URL,
            "--client-id",
            "c",
            "--key-file",
            key.to_str().unwrap(),
        ]);
        // The command converts the user's own file.
        let k = key.to_str().unwrap();
        let converted = key.with_file_name(format!(
            "{}-pkcs8.pem",
            key.file_stem().unwrap().to_string_lossy()
        ));
        let command = format!(
            "openssl pkcs8 -topk8 -nocrypt -in {k} -out {}",
            converted.display()
        );
        refused_and_nothing_written(&env, &out, 1, &["SEC1", &command]);
    }

    #[test]
    fn encrypted_and_unsupported_keys() {
        let env = TestEnv::new();
        let key = gen_key(&env, "encrypted");
        let out = env.run(&[
            "add",
            "--no-verify",
            "bad",
            "--token-url",
            URL,
            "--client-id",
            "c",
            "--key-file",
            key.to_str().unwrap(),
        ]);
        let command = format!("openssl pkcs8 -in {}", key.display());
        refused_and_nothing_written(&env, &out, 1, &["encrypted", &command]);
        let key = gen_key(&env, "p521");
        let out = env.run(&[
            "add",
            "--no-verify",
            "bad",
            "--token-url",
            URL,
            "--client-id",
            "c",
            "--key-file",
            key.to_str().unwrap(),
        ]);
        refused_and_nothing_written(&env, &out, 1, &["P-521"]);
        let not_pem = env.path("junk.pem");
        std::fs::write(&not_pem, "hello\n").unwrap();
        let out = env.run(&[
            "add",
            "--no-verify",
            "bad",
            "--token-url",
            URL,
            "--client-id",
            "c",
            "--key-file",
            not_pem.to_str().unwrap(),
        ]);
        refused_and_nothing_written(&env, &out, 1, &["not a PEM private key"]);
    }

    #[test]
    fn bad_names_scopes_params_and_ca_files() {
        let env = TestEnv::new();
        let base = ["--token-url", URL, "--client-id", "c", "--auth", "none"];
        let run = |extra: &[&str], name: &str| {
            let mut args = vec!["add", "--no-verify", name];
            args.extend_from_slice(&base);
            args.extend_from_slice(extra);
            env.run(&args)
        };
        assert_refused(&run(&[], "../evil"), 2, &["invalid profile name"]);
        assert_refused(&run(&["--scope", "a b"], "bad"), 2, &["scopes"]);
        assert_refused(
            &run(&["--param", "grant_type=x"], "bad"),
            2,
            &["params", "grant_type"],
        );
        assert_refused(
            &run(&["--resource", "not-absolute"], "bad"),
            2,
            &["resources", "absolute URI"],
        );
        assert_refused(
            &run(&["--refresh-before", "150%"], "bad"),
            2,
            &["1% and 99%"],
        );
        let not_ca = env.path("not-ca.pem");
        std::fs::write(&not_ca, "nothing here").unwrap();
        refused_and_nothing_written(
            &env,
            &run(&["--ca-file", not_ca.to_str().unwrap()], "bad"),
            1,
            &["ca_file", "no PEM certificate"],
        );
        refused_and_nothing_written(
            &env,
            &run(&["--ca-file", "/nonexistent/ca.pem"], "bad"),
            1,
            &["ca_file", "cannot read"],
        );
    }
}

mod secret_service {
    //! GNOME Keyring on a private session bus: the real Secret Service.

    use super::*;

    #[test]
    fn secret_is_stored_in_the_secret_service_under_service_jwtagent() {
        let mut env = TestEnv::new();
        let ss = SecretService::start(&env, true);
        env.bus = Some(ss.address.clone());
        // The spec's names, not a test-only service name.
        env.keyring_service = "jwtagent".into();
        let secret = "secret-service-secret-42";
        let added = assert_ok(&add_basic(&env, "api", secret));
        assert!(
            added.contains("secret stored in the Secret Service"),
            "{added}"
        );
        assert_eq!(
            ss.lookup(&["service", "jwtagent", "username", "profile/api"])
                .as_deref(),
            Some(secret)
        );
        let status: Value = serde_json::from_str(&env.ok(&["status", "--json"])).unwrap();
        assert_eq!(status["store"], "secret-service");
        let show: Value = serde_json::from_str(&env.ok(&["show", "api", "--json"])).unwrap();
        assert_eq!(show["secret_stored"], true);
        assert_eq!(show["stored_in"], "the Secret Service");
        assert_ok(&env.run(&["remove", "api"]));
        assert_eq!(
            ss.lookup(&["service", "jwtagent", "username", "profile/api"]),
            None
        );
    }

    #[test]
    fn a_keyring_that_does_not_answer_delays_no_other_profiles_cached_token() {
        let mut env = TestEnv::new();
        let ss = SecretService::start(&env, true);
        env.bus = Some(ss.address.clone());
        let server = FaultServer::start(Fault::Ok { lifetime: 600 });
        env.add_open_profile("cached", &server.token_url(), &[]);
        for name in ["s1", "s2", "s3", "s4"] {
            let mut cmd = env.add_cmd(
                name,
                &server.token_url(),
                "client_secret_post",
                &["--secret-stdin"],
            );
            assert_ok(&output_with_stdin(&mut cmd, b"a-secret-in-the-keyring"));
        }
        let cached = env.ok(&["token", "cached"]);
        // The keyring hangs: every token request that needs a secret waits
        // on it, more of them than the agent has async workers.
        ss.pause(true);
        let waiting: Vec<_> = ["s1", "s2", "s3", "s4"]
            .iter()
            .map(|name| {
                env.cmd(&["token", name])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        wait_until("the four requests wait for their answers", || {
            waiting.iter().all(|child| {
                std::fs::read_to_string(format!("/proc/{}/wchan", child.id()))
                    .is_ok_and(|w| w.contains("unix_stream"))
            })
        });
        let out = env
            .cmd(&["token", "--timeout", "10s", "cached"])
            .output()
            .unwrap();
        ss.pause(false);
        assert!(out.status.success(), "{}", stderr_of(&out));
        assert_eq!(String::from_utf8_lossy(&out.stdout), cached);
        for mut child in waiting {
            assert!(child.wait().unwrap().success());
        }
    }

    #[test]
    fn locked_keyring_is_a_clear_store_error_and_nothing_is_written() {
        let mut env = TestEnv::new();
        let ss = SecretService::start(&env, false);
        env.bus = Some(ss.address.clone());
        let out = add_basic(&env, "api", "secret-value-locked");
        assert_refused(&out, 1, &["store", "unlock"]);
        assert!(
            !env.config_file().exists()
                || !std::fs::read_to_string(env.config_file())
                    .unwrap()
                    .contains("api")
        );
    }

    #[test]
    fn auto_with_a_bus_but_no_secret_service_uses_the_file_store_and_says_so_once() {
        let mut env = TestEnv::new();
        // A session bus that activates nothing: no Secret Service on it.
        let bus = PrivateBus::start(&env, "bare-bus", "session");
        env.bus = Some(bus.address.clone());
        // `env` starts the agent: the warning goes to stderr, the script to
        // stdout as ever; an `env` that reuses the agent says nothing more.
        let started = env.run(&["env"]);
        let again = env.run(&["env"]);
        let sealed: Value = serde_json::from_str(&env.ok(&["status", "--json"])).unwrap();
        let refused = add_basic(&env, "api", "secret-value-bare-bus");
        let unlocked = env.run_with_stdin(&["unlock", "--passphrase-stdin"], b"store pass\n");
        let out = add_basic(&env, "api", "secret-value-bare-bus");
        let status: Value = serde_json::from_str(&env.ok(&["status", "--json"])).unwrap();
        let status_text = env.ok(&["status"]);
        let log = std::fs::read_to_string(env.log_file()).unwrap_or_default();
        drop(bus);
        assert!(started.status.success() && again.status.success());
        assert!(
            String::from_utf8_lossy(&started.stdout).contains("JWTAGENT_SOCK="),
            "{started:?}"
        );
        let said = stderr_of(&started);
        for needle in [
            "warning: no Secret Service",
            "encrypted file store",
            "run `jwtagent unlock` to choose its passphrase",
            "--store keyutils",
        ] {
            assert!(said.contains(needle), "{needle}: {said}");
        }
        assert!(
            !stderr_of(&again).contains("warning"),
            "{}",
            stderr_of(&again)
        );
        assert_eq!(sealed["store_sealed"], "not_created", "{sealed}");
        assert_eq!(sealed["locked"], true, "{sealed}");
        assert_refused(&refused, 1, &["sealed", "jwtagent unlock"]);
        assert!(unlocked.status.success(), "{}", stderr_of(&unlocked));
        assert!(out.status.success(), "{}", stderr_of(&out));
        // Said where the agent starts and in `status`, not at every `add`.
        assert!(!stderr_of(&out).contains("warning"), "{}", stderr_of(&out));
        assert_eq!(status["store"], "file", "{status}");
        let warning = status["store_warning"].as_str().unwrap_or("");
        assert!(warning.starts_with("no Secret Service"), "{status}");
        assert!(
            status_text.contains("WARNING: no Secret Service"),
            "{status_text}"
        );
        assert!(
            log.contains("no Secret Service available; using jwtagent's encrypted file store"),
            "{log}"
        );
        assert!(keyutils_lookup(&env.keyring_service, "profile/api").is_none());
        assert!(
            env.path("home/.local/share/jwtagent/secrets.sealed")
                .exists()
        );
    }

    /// A desktop whose agent starts before its Secret Service: the config's
    /// secrets are in no store the agent can reach yet, and `auto` does not
    /// make a file store for them; the Secret Service, once up, is used.
    #[test]
    fn auto_waits_for_the_secret_service_that_holds_the_configs_secrets() {
        let mut env = TestEnv::new();
        // A profile whose secret is in no store this agent can reach.
        let config = env.config_file();
        std::fs::create_dir_all(config.parent().unwrap()).unwrap();
        std::fs::write(
            &config,
            format!("version = 1\n[profiles.api]\ntoken_url = \"{URL}\"\nclient_id = \"c\"\n"),
        )
        .unwrap();
        // The agent starts with the session bus it will have, not yet up.
        let bus_address = format!("unix:path={}", env.path("bus").display());
        let out = env
            .cmd(&["agent"])
            .env_remove("JWTAGENT_STORE")
            .env("DBUS_SESSION_BUS_ADDRESS", &bus_address)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr_of(&out));
        let mut status = Value::Null;
        wait_until("the store is tried", || {
            status = serde_json::from_str(&env.ok(&["status", "--json"])).unwrap();
            status["store"] != "opening"
        });
        let store = status["store"].as_str().unwrap();
        assert!(
            store.starts_with("unavailable: no Secret Service now")
                && store.contains("start the Secret Service that holds them"),
            "{status}"
        );
        assert_eq!(status["locked"], false, "no file store was made: {status}");
        assert!(
            !env.path("home/.local/share/jwtagent/secrets.sealed")
                .exists()
        );
        // Up now: the next request finds it.
        let ss = SecretService::start(&env, true);
        env.bus = Some(ss.address.clone());
        let out = env.run(&["token", "api"]);
        assert!(!out.status.success());
        wait_until("the Secret Service is used", || {
            let s: Value = serde_json::from_str(&env.ok(&["status", "--json"])).unwrap();
            s["store"] == "secret-service"
        });
    }

    /// A machine whose secrets an earlier jwtagent put in the kernel keyring
    /// (its `auto` then chose it) keeps working, and `store migrate` moves
    /// them to the file store and back, a crash at any step losing nothing.
    #[test]
    fn secrets_in_the_kernel_keyring_keep_serving_until_moved_to_the_file_store() {
        let passphrase = b"store pass\n";
        let base = TestEnv::new();
        let oidc = open_provider(&base, 600);
        for crash in [
            None,
            Some("migrate:after-copy"),
            Some("migrate:after-config"),
        ] {
            let env = TestEnv::new();
            env.add_open_profile("api", &oidc.token_endpoint(), &[]);
            let out = add_basic(&env, "basic", "secret-value-legacy");
            assert!(out.status.success(), "{}", stderr_of(&out));
            env.ok(&["stop"]);
            // `auto`, no Secret Service, the secrets in the kernel keyring.
            env.start_agent_own_store();
            let status = opened_store_status(&env);
            assert_eq!(status["store"], "keyutils", "{status}");
            let warning = status["store_warning"].as_str().unwrap_or("");
            assert!(
                warning.contains("jwtagent store migrate --to file"),
                "{status}"
            );
            env.ok(&["token", "api"]);

            if let Some(step) = crash {
                env.ok(&["stop"]);
                let out = env
                    .cmd(&["agent"])
                    .env_remove("JWTAGENT_STORE")
                    .env("JWTAGENT_CRASH_AT", step)
                    .output()
                    .unwrap();
                assert!(out.status.success(), "{}", stderr_of(&out));
            }
            let out = env.run_with_stdin(
                &["store", "migrate", "--to", "file", "--passphrase-stdin"],
                passphrase,
            );
            if let Some(step) = crash {
                assert!(!out.status.success(), "{step}: the agent died");
                wait_until("the crashed agent is gone", || {
                    hello(&env.default_socket()).is_none()
                });
                env.start_agent_own_store();
                // The config names the file store, or (before the config
                // was written) `auto` finds the one the copy made: sealed
                // until unlocked.
                let out = env.run_with_stdin(&["unlock", "--passphrase-stdin"], passphrase);
                assert!(out.status.success(), "{step}: {}", stderr_of(&out));
                // Every secret is in the store the config names.
                let shown = env.ok(&["show", "basic"]);
                assert!(
                    shown.contains("stored in the encrypted file store"),
                    "{step}: {shown}"
                );
                continue;
            }
            assert!(out.status.success(), "{}", stderr_of(&out));
            assert!(
                String::from_utf8_lossy(&out.stdout).contains("Moved 1 entries"),
                "{out:?}"
            );
            // Every old entry deleted, no --store to override the config.
            assert!(!stderr_of(&out).contains("warning"), "{out:?}");
            let config = std::fs::read_to_string(env.config_file()).unwrap();
            assert!(config.contains("store = \"file\""), "{config}");
            assert!(keyutils_lookup(&env.keyring_service, "profile/basic").is_none());
            let shown = env.ok(&["show", "basic"]);
            assert!(
                shown.contains("stored in the encrypted file store"),
                "{shown}"
            );

            // After a reboot, the file store; then back to the kernel keyring.
            env.ok(&["stop"]);
            env.start_agent_own_store();
            assert_eq!(
                env.run(&["show", "basic"]).status.code(),
                Some(1),
                "sealed until unlocked"
            );
            let out = env.run_with_stdin(&["unlock", "--passphrase-stdin"], passphrase);
            assert!(out.status.success(), "{}", stderr_of(&out));
            let out = env.run(&["store", "migrate", "--to", "keyutils"]);
            assert!(out.status.success(), "{}", stderr_of(&out));
            assert!(!stderr_of(&out).contains("warning"), "{out:?}");
            assert_eq!(
                keyutils_lookup(&env.keyring_service, "profile/basic").unwrap(),
                b"secret-value-legacy"
            );
            let out = env.run(&["store", "migrate", "--to", "keyutils"]);
            assert_refused(&out, 1, &["already", "nothing changed"]);
        }
    }

    /// With no Secret Service and no place for a file store (no HOME, no
    /// XDG_DATA_HOME), `auto` uses the kernel keyring and says what it costs.
    #[test]
    fn with_no_home_for_a_file_store_auto_takes_the_kernel_keyring_and_says_so() {
        let env = TestEnv::new();
        let out = env
            .cmd(&["agent"])
            .env_remove("JWTAGENT_STORE")
            .env_remove("HOME")
            .env_remove("XDG_DATA_HOME")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr_of(&out));
        let status = opened_store_status(&env);
        assert_eq!(status["store"], "keyutils", "{status}");
        let warning = status["store_warning"].as_str().unwrap_or("");
        assert!(
            warning.contains("loses them at the next reboot"),
            "{status}"
        );
    }

    /// An agent started with `--store` (here the tests' JWTAGENT_STORE,
    /// which names keyutils) is told after `store migrate` that the flag
    /// overrides the config the migration wrote.
    #[test]
    fn a_migration_away_from_the_flags_store_warns_that_the_flag_wins() {
        let env = TestEnv::new();
        let out = add_basic(&env, "basic", "secret-value-flagged");
        assert!(out.status.success(), "{}", stderr_of(&out));
        let out = env.run_with_stdin(
            &["store", "migrate", "--to", "file", "--passphrase-stdin"],
            b"store pass\n",
        );
        assert!(out.status.success(), "{}", stderr_of(&out));
        let err = stderr_of(&out);
        assert!(
            err.contains("warning: this agent was started with --store keyutils")
                && err.contains("or with --store file"),
            "{err}"
        );
        assert!(!err.contains("could not be deleted"), "{err}");
        assert!(keyutils_lookup(&env.keyring_service, "profile/basic").is_none());
    }

    #[test]
    fn secret_service_without_a_session_bus_names_what_was_tried() {
        let env = TestEnv::new();
        let out = env.run(&["agent", "--store", "secret-service"]);
        assert_ok(&out);
        let out = add_basic(&env, "api", "secret-value-nobus");
        assert_refused(
            &out,
            1,
            &[
                "store",
                "no D-Bus session bus",
                "DBUS_SESSION_BUS_ADDRESS",
                "jwtagent agent --store keyutils",
            ],
        );
        let status: Value = serde_json::from_str(&env.ok(&["status", "--json"])).unwrap();
        assert!(
            status["store"].as_str().unwrap().starts_with("unavailable"),
            "{status}"
        );
        assert!(!env.config_file().exists());
    }

    /// Makes the command's process (and what it starts) see a kernel built
    /// without keyutils: keyctl, add_key and request_key fail with ENOSYS.
    fn without_keyutils(cmd: &mut std::process::Command) {
        use std::os::unix::process::CommandExt;
        fn jeq(nr: libc::c_long, to_deny: u8) -> libc::sock_filter {
            libc::sock_filter {
                code: 0x15,
                jt: to_deny,
                jf: 0,
                k: nr as u32,
            }
        }
        let filter = [
            // The syscall number (seccomp_data.nr).
            libc::sock_filter {
                code: 0x20,
                jt: 0,
                jf: 0,
                k: 0,
            },
            jeq(libc::SYS_keyctl, 3),
            jeq(libc::SYS_add_key, 2),
            jeq(libc::SYS_request_key, 1),
            libc::sock_filter {
                code: 0x06,
                jt: 0,
                jf: 0,
                k: libc::SECCOMP_RET_ALLOW,
            },
            libc::sock_filter {
                code: 0x06,
                jt: 0,
                jf: 0,
                k: libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32,
            },
        ];
        // SAFETY: between fork and exec the closure makes two prctl calls
        // (async-signal-safe) on a filter that outlives them.
        unsafe {
            cmd.pre_exec(move || {
                let program = libc::sock_fprog {
                    len: filter.len() as u16,
                    filter: filter.as_ptr() as *mut libc::sock_filter,
                };
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                    || libc::prctl(
                        libc::PR_SET_SECCOMP,
                        libc::SECCOMP_MODE_FILTER,
                        &program as *const libc::sock_fprog,
                    ) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }

    #[test]
    fn no_backend_at_all_is_a_clear_error_naming_what_was_tried_and_what_to_do() {
        // A kernel without keyutils: asked for, it has nowhere to keep a
        // secret. Nothing is written, and the user learns why. (`auto`
        // would take the file store, which needs no kernel support.)
        let env = TestEnv::new();
        let mut agent = env.cmd(&["agent", "--store", "keyutils"]);
        without_keyutils(&mut agent);
        assert_ok(&agent.output().unwrap());
        let out = add_basic(&env, "api", "secret-value-nowhere");
        assert_refused(
            &out,
            1,
            &[
                "store",
                "cannot join a session keyring",
                "keyctl allowed",
                "--store secret-service",
            ],
        );
        let status: Value = serde_json::from_str(&env.ok(&["status", "--json"])).unwrap();
        assert!(
            status["store"].as_str().unwrap().starts_with("unavailable"),
            "{status}"
        );
        assert!(!env.config_file().exists());
    }
}

#[test]
fn jwtagent_config_names_the_profiles_file() {
    let env = TestEnv::new();
    let elsewhere = env.path("elsewhere/my-profiles.toml");
    std::fs::create_dir_all(elsewhere.parent().unwrap()).unwrap();
    std::fs::set_permissions(
        elsewhere.parent().unwrap(),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    // The agent the first command starts reads it from its environment.
    let out = env
        .cmd(&[
            "add",
            "--no-verify",
            "p",
            "--token-url",
            "https://idp.example/token",
            "--client-id",
            "c",
            "--auth",
            "none",
        ])
        .env("JWTAGENT_CONFIG", &elsewhere)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let text = std::fs::read_to_string(&elsewhere).unwrap();
    assert!(text.contains("[profiles.p]"), "{text}");
    assert!(!env.config_file().exists(), "the default file was written");
    let status: serde_json::Value = serde_json::from_str(&env.ok(&["status", "--json"])).unwrap();
    assert_eq!(status["config"], elsewhere.to_str().unwrap());
}

#[test]
fn log_format_json_writes_one_json_object_per_line() {
    let env = TestEnv::new();
    let log = env.path("agent.json.log");
    let mut agent = env
        .cmd(&[
            "--log-format",
            "json",
            "agent",
            "-D",
            "--socket",
            env.path("j.sock").to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    wait_until("the agent answers", || hello(&env.path("j.sock")).is_some());
    let _ = agent.kill();
    let _ = agent.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(!lines.is_empty(), "the agent logged nothing");
    for line in lines {
        let entry: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(
            entry["level"].is_string() && entry["fields"].is_object(),
            "{line}"
        );
    }
}

#[test]
fn a_secret_is_never_taken_from_the_environment() {
    let env = TestEnv::new();
    // No terminal, no --secret-* option: a secret in any likely variable is
    // not used; the user is told where a secret may come from.
    let out = env
        .cmd(&[
            "add",
            "--no-verify",
            "api",
            "--token-url",
            "https://idp.example/token",
            "--client-id",
            "c",
        ])
        .env("JWTAGENT_SECRET", "from-the-environment")
        .env("CLIENT_SECRET", "from-the-environment")
        .env("OAUTH_CLIENT_SECRET", "from-the-environment")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains(
            "needs a client secret: pass --secret-stdin, --secret-file FILE, or run in a terminal"
        ),
        "{}",
        stderr_of(&out)
    );
    assert!(!env.config_file().exists());
}

#[test]
fn the_secret_prompt_does_not_echo() {
    // A real terminal (a pty, through python3's pty module): the prompt is
    // shown, the typed secret is not, and it reaches the keyring.
    let env = TestEnv::new();
    let out = on_a_terminal(
        &env,
        &[("Client secret for api: ", "typed-secret-value-0123")],
        &[
            "add",
            "--no-verify",
            "api",
            "--token-url",
            "https://idp.example/token",
            "--client-id",
            "c",
        ],
    );
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{shown}{}", stderr_of(&out));
    assert!(shown.contains("Client secret for api: "), "{shown}");
    assert!(
        !shown.contains("typed-secret-value-0123"),
        "the secret was echoed: {shown}"
    );
    assert_eq!(
        keyutils_lookup(&env.keyring_service, "profile/api").unwrap(),
        b"typed-secret-value-0123"
    );
}

#[test]
fn without_the_test_override_secrets_live_under_the_jwtagent_service() {
    // Every other test keeps its secrets apart with JWTAGENT_KEYRING_SERVICE;
    // users do not set it: their entries are under service "jwtagent".
    let env = TestEnv::new();
    let name = format!("default-service-{}", std::process::id());
    let account = format!("profile/{name}");
    let secret = "secret-under-the-default-service";
    let mut add = env.cmd(&[
        "add",
        "--no-verify",
        &name,
        "--token-url",
        "https://idp.example/token",
        "--client-id",
        "c",
        "--secret-stdin",
    ]);
    add.env_remove("JWTAGENT_KEYRING_SERVICE");
    let out = output_with_stdin(&mut add, secret.as_bytes());
    assert!(out.status.success(), "{}", stderr_of(&out));
    let found = keyutils_lookup("jwtagent", &account);
    let mut remove = env.cmd(&["remove", &name]);
    remove.env_remove("JWTAGENT_KEYRING_SERVICE");
    assert!(remove.output().unwrap().status.success());
    assert_eq!(found.as_deref(), Some(secret.as_bytes()));
    assert_eq!(
        keyutils_lookup("jwtagent", &account),
        None,
        "remove left the entry"
    );
}

#[test]
fn a_mistyped_profile_name_gets_the_nearest_one_suggested() {
    let env = TestEnv::new();
    env.ok(&[
        "add",
        "--no-verify",
        "github-ci",
        "--token-url",
        "https://idp.example/token",
        "--client-id",
        "c",
        "--auth",
        "none",
    ]);
    let out = env.run(&["token", "github-cl"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr_of(&out).contains("unknown_profile")
            && stderr_of(&out).contains("did you mean \"github-ci\"?"),
        "{}",
        stderr_of(&out)
    );
    let out = env.run(&["show", "something-else-entirely"]);
    assert!(
        !stderr_of(&out).contains("did you mean"),
        "{}",
        stderr_of(&out)
    );
}

#[test]
fn a_missing_file_is_named_with_the_option_that_named_it() {
    let env = TestEnv::new();
    for option in ["--secret-file", "--key-file"] {
        let out = env.run(&[
            "add",
            "--no-verify",
            "api",
            "--token-url",
            "https://idp.example/token",
            "--client-id",
            "c",
            option,
            "/nonexistent/file",
        ]);
        assert_eq!(out.status.code(), Some(2));
        let err = stderr_of(&out);
        assert!(
            err.contains(&format!(
                "{option} /nonexistent/file: cannot open it: No such file or directory"
            )),
            "{err}"
        );
    }
}

/// The agent's log, as text, after it served one token and stopped, with
/// `JWTAGENT_LOG` as given (None: unset).
fn agent_log_after_one_token(level: Option<&str>) -> String {
    let env = TestEnv::new();
    let server = FaultServer::start(Fault::Ok { lifetime: 600 });
    env.add_open_profile("p", &server.token_url(), &[]);
    let socket = env.path("l.sock");
    let log = env.path("agent.log");
    let mut cmd = env.cmd(&["agent", "-D", "--socket", socket.to_str().unwrap()]);
    match level {
        Some(level) => cmd.env("JWTAGENT_LOG", level),
        None => cmd.env_remove("JWTAGENT_LOG"),
    };
    let mut agent = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    wait_until("the agent answers", || hello(&socket).is_some());
    env.ok(&["--socket", socket.to_str().unwrap(), "token", "p"]);
    env.ok(&["--socket", socket.to_str().unwrap(), "stop"]);
    assert!(agent.wait().unwrap().success());
    std::fs::read_to_string(&log).unwrap()
}

#[test]
fn the_default_log_level_is_info() {
    // SPEC §2: JWTAGENT_LOG defaults to `info`. The same run at `debug` shows
    // what the default leaves out, so this cannot pass on an empty log.
    let default = agent_log_after_one_token(None);
    assert!(default.contains(" INFO "), "{default}");
    assert!(
        !default.contains(" DEBUG ") && !default.contains(" TRACE "),
        "{default}"
    );
    let debug = agent_log_after_one_token(Some("debug"));
    assert!(debug.contains(" DEBUG "), "{debug}");
}

#[test]
fn a_broken_profile_beside_a_good_one_is_skipped_named_and_kept() {
    let env = TestEnv::new();
    let oidc = open_provider(&env, 120);
    env.add_open_profile("good", &oidc.token_endpoint(), &[]);
    // A hand edit adds a broken profile (plain http off loopback).
    let mut text = std::fs::read_to_string(env.config_file()).unwrap();
    text.push_str(
        "\n[profiles.broken]\ntoken_url = \"http://idp.example/t\"\nclient_id = \"b\"\nauth = \"none\"\n",
    );
    std::fs::write(env.config_file(), &text).unwrap();
    let broken_line = text.lines().position(|l| l == "[profiles.broken]").unwrap() + 1;

    // The good profile is still served.
    let token = assert_ok(&env.run(&["token", "good"]));
    assert!(!token.trim().is_empty());
    // The broken one is refused, naming the file, the line and the field.
    let where_ = format!("(line {broken_line}, column 1)");
    assert_refused(
        &env.run(&["token", "broken"]),
        1,
        &[
            "\"broken\"",
            env.config_file().to_str().unwrap(),
            &where_,
            "token_url",
            "https://",
        ],
    );
    // `status` says so, in text and JSON.
    let status = assert_ok(&env.run(&["status"]));
    assert!(
        status.contains("SKIPPED") && status.contains(&where_),
        "{status}"
    );
    let json: Value = serde_json::from_str(&env.ok(&["status", "--json"])).unwrap();
    assert_eq!(json["skipped_profiles"][0]["name"], "broken");
    assert!(json["config_error"].is_null(), "{json}");

    // Another `add` keeps the broken profile's settings in the file.
    assert_ok(&add_basic(&env, "third", "secret-value-3333"));
    let written = std::fs::read_to_string(env.config_file()).unwrap();
    assert!(
        written.contains("[profiles.broken]") && written.contains("http://idp.example/t"),
        "{written}"
    );
    assert_refused(
        &env.run(&["token", "broken"]),
        1,
        &["\"broken\"", "token_url"],
    );

    // Fixed by `add`, it is served; `remove` takes it out of the file.
    env.add_open_profile("broken", &oidc.token_endpoint(), &[]);
    assert_ok(&env.run(&["token", "broken"]));
    let json: Value = serde_json::from_str(&env.ok(&["status", "--json"])).unwrap();
    assert!(json["skipped_profiles"].is_null(), "{json}");
    let written = std::fs::read_to_string(env.config_file()).unwrap();
    assert!(!written.contains("http://idp.example/t"), "{written}");
    assert_ok(&env.run(&["remove", "broken"]));
    assert!(
        !std::fs::read_to_string(env.config_file())
            .unwrap()
            .contains("[profiles.broken]")
    );
}
