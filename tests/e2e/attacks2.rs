//! The second attack round (issue 26), reproduced end to end: each test
//! failed on the code before its fix. Derived profiles and forwarding have
//! their own files (chains.rs, ssh.rs).

use crate::common::*;

#[test]
fn a_callers_path_cannot_forge_an_audit_line() {
    let env = TestEnv::new();
    env.ok(&["list"]);
    // A caller whose executable's name holds a newline and a whole forged
    // record after it.
    let forged =
        "x\n2026-01-01T00:00:00Z  ok        token   prod                 pid=1 uid=0 exe=trusted";
    let dir = env.path("bin");
    std::fs::create_dir_all(&dir).unwrap();
    let exe = dir.join(forged);
    std::fs::copy(bin(), &exe).unwrap();
    let out = env
        .command(&exe)
        .args(["token", "nosuch"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    // The error names the caller only in escaped form too.
    assert!(
        !stderr_of(&out).contains("\n2026-01-01"),
        "{}",
        stderr_of(&out)
    );
    let records = env.audit_until("the request audited", |records| {
        records.iter().any(|r| r["profile"] == "nosuch")
    });
    let text = env.ok(&["audit"]);
    assert_eq!(text.lines().count(), records.len(), "{text}");
    assert!(!text.lines().any(|l| l.starts_with("2026-01-01")), "{text}");
    assert!(
        text.contains("exe=") && text.contains("x\\n2026-01-01"),
        "{text}"
    );
}

#[test]
fn a_file_a_profile_names_must_be_a_regular_file_of_bounded_size() {
    let env = TestEnv::new();
    // The agent read `--ca-file /dev/zero` until memory ran out.
    let out = env
        .add_cmd(
            "zero",
            "http://127.0.0.1:9/token",
            "none",
            &["--ca-file", "/dev/zero"],
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    let err = stderr_of(&out);
    assert!(
        err.contains("/dev/zero") && err.contains("device, not a regular file"),
        "{err}"
    );
    // The same in a hand-edited config: the token request fails, the agent lives.
    env.add_open_profile("edited", "https://127.0.0.1:9/token", &[]);
    let config = env.config_file();
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{text}ca_file = \"/dev/zero\"\n")).unwrap();
    let out = env.run(&["token", "edited"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    let err = stderr_of(&out);
    assert!(
        err.contains("/dev/zero") && err.contains("not a regular file"),
        "{err}"
    );
    assert!(hello(&env.default_socket()).is_some(), "the agent died");
    // The CLI's own reads: a FIFO (no writer: reading would wait forever), a
    // directory, an oversized file.
    let fifo = env.path("fifo.pem");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let big = env.path("big.pem");
    std::fs::write(&big, vec![b'A'; 2 << 20]).unwrap();
    let dir = env.path("");
    let key = gen_key(&env, "rsa");
    let key = key.to_str().unwrap();
    let (fifo, dir, big) = (
        fifo.to_str().unwrap(),
        dir.to_str().unwrap(),
        big.to_str().unwrap(),
    );
    let url = "http://127.0.0.1:9/token";
    for (option, args, says) in [
        (
            "--cert-file",
            vec![
                "--auth",
                "tls_client_auth",
                "--cert-file",
                fifo,
                "--key-file",
                key,
            ],
            "FIFO, not a regular file",
        ),
        (
            "--key-file",
            vec!["--auth", "private_key_jwt", "--key-file", dir],
            "directory, not a regular file",
        ),
        (
            "--key-file",
            vec!["--auth", "private_key_jwt", "--key-file", big],
            "larger than",
        ),
        (
            "--google-credentials",
            vec!["--google-credentials", fifo],
            "FIFO, not a regular file",
        ),
    ] {
        let mut cmd = env.cmd(&["add", "f", "--no-verify"]);
        if option != "--google-credentials" {
            cmd.args(["--token-url", url, "--client-id", "c"]);
        }
        cmd.args(&args);
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{option}: {}", stderr_of(&out));
        assert!(
            stderr_of(&out).contains(says),
            "{option}: {}",
            stderr_of(&out)
        );
    }
}

#[test]
fn a_locked_agent_is_not_stopped_through_its_socket() {
    let env = TestEnv::new();
    let server = open_provider(&env, 600);
    env.add_open_profile("api", &server.token_endpoint(), &[]);
    let out = env.run_with_stdin(&["lock", "--passphrase-stdin"], b"open sesame\n");
    assert!(out.status.success(), "{}", stderr_of(&out));
    // `stop` then autostart brought the agent back unlocked, serving tokens.
    let out = env.run(&["stop"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    let err = stderr_of(&out);
    assert!(
        err.contains("locked") && err.contains("jwtagent unlock") && err.contains("SIGTERM"),
        "{err}"
    );
    let out = env.run(&["token", "api"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_of(&out).contains("locked"), "{}", stderr_of(&out));
    // Unlocked, it stops as before.
    let out = env.run_with_stdin(&["unlock", "--passphrase-stdin"], b"open sesame\n");
    assert!(out.status.success(), "{}", stderr_of(&out));
    env.ok(&["stop"]);
    assert!(hello(&env.default_socket()).is_none());
}
