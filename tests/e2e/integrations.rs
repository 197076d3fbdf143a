//! Integrations: `exec`, the kubectl and git credential helpers (driven by real
//! git), completions, the man page, and systemd socket activation.

use crate::common::*;
use serde_json::Value;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

/// An environment with profile `api`, whose tokens come from the real
/// provider.
fn with_profile(lifetime: u64) -> (TestEnv, Oidc) {
    let env = TestEnv::new();
    let oidc = open_provider(&env, lifetime);
    env.add_open_profile("api", &oidc.token_endpoint(), &[]);
    (env, oidc)
}

fn token(env: &TestEnv) -> String {
    env.ok(&["token", "api"]).trim().to_string()
}

#[test]
fn exec_runs_the_command_with_the_token_in_its_environment() {
    let (env, _server) = with_profile(600);
    let t = token(&env);
    let out = env.ok(&[
        "exec",
        "api",
        "--",
        "sh",
        "-c",
        "printf %s \"$JWTAGENT_TOKEN\"",
    ]);
    assert_eq!(out, t);
    let out = env.ok(&[
        "exec",
        "api",
        "--env",
        "API_TOKEN",
        "--",
        "sh",
        "-c",
        "printf %s \"$API_TOKEN\"",
    ]);
    assert_eq!(out, t);
    // stdin is the command's own.
    let out = env.run_with_stdin(&["exec", "api", "--", "cat"], b"piped through");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "piped through");
}

#[test]
fn exec_passes_the_exit_status_and_a_signal_death_through() {
    let (env, _server) = with_profile(600);
    let out = env.run(&["exec", "api", "--", "sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7));
    let out = env.run(&["exec", "api", "--", "sh", "-c", "kill -TERM $$"]);
    assert_eq!(
        out.status.signal(),
        Some(15),
        "killed by SIGTERM, like the command"
    );
    // As a shell reports it: 128 + signal.
    let script = format!("'{}' exec api -- sh -c 'kill -TERM $$'; echo $?", bin());
    let out = env.command("sh").arg("-c").arg(script).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "143");
    let out = env.run(&["exec", "api", "--", "/nonexistent/cmd"]);
    assert_eq!(out.status.code(), Some(127));
    assert!(stderr_of(&out).contains("/nonexistent/cmd"));
    let out = env.run(&["exec", "api", "--env", "1BAD", "--", "true"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn kubectl_prints_an_exec_credential() {
    let (env, _server) = with_profile(600);
    let t = token(&env);
    let cred: Value = serde_json::from_str(&env.ok(&["kubectl", "api"])).unwrap();
    assert_eq!(cred["apiVersion"], "client.authentication.k8s.io/v1");
    assert_eq!(cred["kind"], "ExecCredential");
    assert_eq!(cred["status"]["token"], t);
    let ts = cred["status"]["expirationTimestamp"].as_str().unwrap();
    // RFC 3339 in UTC, about 600 s from now.
    assert_eq!(ts.len(), 20, "{ts}");
    assert!(ts.ends_with('Z') && &ts[10..11] == "T", "{ts}");
    let out = Command::new("date")
        .args(["-u", "-d", ts, "+%s"])
        .output()
        .unwrap();
    let at: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!((now + 590..=now + 600).contains(&at), "{ts}");
}

/// `git credential fill` with jwtagent as the configured helper.
fn git_fill(env: &TestEnv, input: &str) -> String {
    let git = require_tool("git", "git");
    let mut cmd = env.command(git);
    cmd.env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .arg("-c")
        .arg(format!("credential.helper=!'{}' git-credential api", bin()))
        .args(["credential", "fill"]);
    let out = output_with_stdin(&mut cmd, input.as_bytes());
    assert!(
        out.status.success(),
        "git credential fill: {}",
        stderr_of(&out)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn git_credential_helper_answers_real_git_with_a_password() {
    let (env, _server) = with_profile(600);
    let t = token(&env);
    let out = git_fill(&env, "protocol=https\nhost=git.example.com\n\n");
    assert!(out.contains("username=x-access-token\n"), "{out}");
    assert!(out.contains(&format!("password={t}\n")), "{out}");

    // The audit log names git as what asked: the caller is the CLI, and its
    // parents (read by the agent from /proc) start with git.
    let git = std::fs::canonicalize(require_tool("git", "git")).unwrap();
    let git = git.to_str().unwrap();
    let records = env.audit_until("git's request audited", |records| {
        records.iter().any(|r| {
            r["op"] == "token"
                && r["parents"]
                    .as_array()
                    .is_some_and(|ps| ps.iter().any(|p| p == git))
        })
    });
    let by_git = records
        .iter()
        .filter(|r| r["op"] == "token" && r["parents"].to_string().contains(git))
        .count();
    assert_eq!(by_git, 1, "{records:?}");
    // `audit --caller` finds it by git's path, and the text names it.
    let shown = env.ok(&["audit", "--caller", git]);
    assert_eq!(shown.lines().count(), 1, "{shown}");
    assert!(
        shown.contains(" parents=") && shown.contains(git),
        "{shown}"
    );
}

#[test]
fn git_credential_helper_answers_a_bearer_credential_when_git_can_take_one() {
    let (env, _server) = with_profile(600);
    let t = token(&env);
    let out = git_fill(
        &env,
        "capability[]=authtype\nprotocol=https\nhost=git.example.com\n\n",
    );
    assert!(out.contains("authtype=Bearer\n"), "{out}");
    assert!(out.contains(&format!("credential={t}\n")), "{out}");
    assert!(!out.contains("password="), "{out}");
}

#[test]
fn git_credential_store_and_erase_are_accepted_and_do_nothing() {
    let (env, server) = with_profile(600);
    for op in ["store", "erase"] {
        let out = env.run_with_stdin(
            &["git-credential", "api", op],
            b"protocol=https\nhost=x\nusername=u\npassword=p\n\n",
        );
        assert!(out.status.success());
        assert!(out.stdout.is_empty());
    }
    assert!(server.grants("c").is_empty());
}

#[test]
fn completions_are_valid_scripts_for_their_shells() {
    let env = TestEnv::new();
    for (shell, checker, args) in [
        ("bash", "bash", vec!["-n"]),
        ("fish", "fish", vec!["--no-execute"]),
    ] {
        let tool = require_tool(checker, checker);
        let script = env.ok(&["completions", shell]);
        assert!(
            script.contains("jwtagent") && script.contains("git-credential"),
            "{shell}"
        );
        let file = env.path(&format!("completions.{shell}"));
        std::fs::write(&file, &script).unwrap();
        let out = Command::new(tool).args(&args).arg(&file).output().unwrap();
        assert!(out.status.success(), "{shell}: {}", stderr_of(&out));
    }
    // zsh's script: a completion function zsh loads by its tag, naming
    // every command and the options of one, with profile names from the agent.
    let zsh = env.ok(&["completions", "zsh"]);
    assert!(zsh.starts_with("#compdef jwtagent"), "{zsh}");
    for word in [
        "token",
        "header",
        "git-credential",
        "--min-ttl",
        "--allow-exe",
        "list",
    ] {
        assert!(zsh.contains(word), "zsh completion lacks {word}");
    }
}

#[test]
fn man_pages_cover_every_command_with_the_sections_a_reader_looks_for() {
    let man = require_tool("man", "man-db");
    require_tool("groff", "groff-base");
    let env = TestEnv::new();
    // A directory that is not there yet is made, and the answer says how
    // to put it where man looks.
    let root = env.path("share/man");
    let dir = root.join("man1");
    let out = env.run(&["man", "--dir", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let err = stderr_of(&out);
    assert!(
        err.contains(&format!("export MANPATH={}:", root.display())),
        "{err}"
    );
    let on_path = env
        .cmd(&["man", "--dir", dir.to_str().unwrap()])
        .env("MANPATH", format!("{}:", root.display()))
        .output()
        .unwrap();
    assert!(
        !stderr_of(&on_path).contains("MANPATH"),
        "{}",
        stderr_of(&on_path)
    );
    // One page per command `--help` lists, and jwtagent(1).
    let help = env.ok(&["--help"]);
    let listed: Vec<String> = help
        .split("Commands:")
        .nth(1)
        .unwrap()
        .lines()
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        // A command's line; wrapped descriptions are indented further.
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(|c| c.trim_end_matches(',').to_string())
        .collect();
    assert!(listed.len() > 20, "{help}");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut expected: Vec<String> = listed.iter().map(|c| format!("jwtagent-{c}.1")).collect();
    expected.push("jwtagent.1".into());
    expected.sort();
    assert_eq!(files, expected);
    let render = |file: &str| {
        let out = std::process::Command::new(&man)
            .args(["--warnings", "-l"])
            .arg(dir.join(file))
            .env("MANWIDTH", "100")
            .output()
            .unwrap();
        assert!(out.status.success(), "{file}: {}", stderr_of(&out));
        assert_eq!(stderr_of(&out), "", "{file} renders with warnings");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let main = render("jwtagent.1");
    for section in [
        "NAME",
        "SYNOPSIS",
        "DESCRIPTION",
        "OPTIONS",
        "COMMANDS",
        "ENVIRONMENT",
        "FILES",
        "EXIT STATUS",
        "EXAMPLES",
        "SEE ALSO",
    ] {
        assert!(
            main.lines().any(|l| l.trim_end() == section),
            "jwtagent(1) has no {section} section"
        );
    }
    assert!(!main.contains("EXTRA"));
    for var in [
        "JWTAGENT_SOCK",
        "JWTAGENT_PID",
        "JWTAGENT_CONFIG",
        "JWTAGENT_LOG",
        "JWTAGENT_NO_AUTOSTART",
        "HTTPS_PROXY",
    ] {
        assert!(main.contains(var), "ENVIRONMENT lacks {var}");
    }
    // Every page jwtagent(1) refers to exists.
    for c in &listed {
        assert!(
            main.contains(&format!("jwtagent-{c}(1)")),
            "no reference to {c}"
        );
    }
    // A command's page: its options, exit status and a way back.
    let token = render("jwtagent-token.1");
    for needle in [
        "--min-ttl",
        "--id-token",
        "EXIT STATUS",
        "EXAMPLES",
        "jwtagent(1)",
    ] {
        assert!(token.contains(needle), "jwtagent-token(1) lacks {needle}");
    }
    // `jwtagent man add` prints the page `--dir` wrote.
    assert_eq!(
        env.ok(&["man", "add"]),
        std::fs::read_to_string(dir.join("jwtagent-add.1")).unwrap()
    );
    let out = env.run(&["man", "teleport"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr_of(&out).contains("no command \"teleport\""),
        "{}",
        stderr_of(&out)
    );
}

#[test]
fn systemd_units_pass_systemd_analyze_verify() {
    let analyze = require_tool("systemd-analyze", "systemd");
    let env = TestEnv::new();
    // ExecStart points at ~/.cargo/bin/jwtagent (where `cargo install` puts it).
    let home = env.path("home");
    std::fs::create_dir_all(home.join(".cargo/bin")).unwrap();
    std::os::unix::fs::symlink(bin(), home.join(".cargo/bin/jwtagent")).unwrap();
    let units = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd");
    let out = Command::new(analyze)
        .args(["--user", "verify"])
        .arg(units.join("jwtagent.socket"))
        .arg(units.join("jwtagent.service"))
        .env("HOME", &home)
        .env("XDG_RUNTIME_DIR", env.path("run"))
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}",
        stderr_of(&out)
    );
}

#[test]
fn socket_activation_serves_the_first_connection_and_leaves_the_socket_to_systemd() {
    let activate = require_tool("systemd-socket-activate", "systemd");
    let (env, server) = with_profile(600);
    let socket = env.path("activated.sock");
    // Readiness reaches systemd through NOTIFY_SOCKET: listen there ourselves.
    let notify_path = env.path("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    notify.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut activator = env
        .command(activate)
        .arg("-l")
        .arg(&socket)
        .arg(format!("--setenv=NOTIFY_SOCKET={}", notify_path.display()))
        // systemd-socket-activate passes on only what it is told to.
        .args(
            [
                "HOME",
                "XDG_RUNTIME_DIR",
                "XDG_CONFIG_HOME",
                "XDG_STATE_HOME",
                "JWTAGENT_KEYRING_SERVICE",
                "JWTAGENT_STORE",
                "JWTAGENT_LOG",
                // The provider's certificate comes from the test CA.
                "SSL_CERT_FILE",
            ]
            .map(|var| format!("--setenv={var}")),
        )
        .args([bin(), "agent", "-D"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The very first connection starts the agent and is answered by it.
    // (The socket file exists a moment before systemd-socket-activate
    // listens on it: a connect in between is refused, and is no connection.)
    let mut first = None;
    wait_until("the first connection is served", || {
        first = hello(&socket);
        first.is_some()
    });
    let first = first.unwrap();
    let pid = first["pid"].as_u64().unwrap() as u32;
    // An inherited socket has no lock file for TestEnv to find the agent by:
    // make sure it does not outlive a failing assertion below.
    let _agent = KillOnDrop::new(pid);
    let mut buf = [0u8; 256];
    let n = notify
        .recv(&mut buf)
        .expect("READY=1 sent to NOTIFY_SOCKET");
    assert!(String::from_utf8_lossy(&buf[..n]).contains("READY=1"));

    // The CLI works through it.
    let sock = socket.to_str().unwrap();
    let status: Value =
        serde_json::from_str(&env.ok(&["--socket", sock, "status", "--json"])).unwrap();
    assert_eq!(status["pid"], pid);
    assert_eq!(status["socket"], sock);
    let out = env.ok(&["--socket", sock, "token", "api"]);
    assert!(!out.trim().is_empty());
    assert_eq!(server.grants("c").len(), 1);

    // Stopped, it says so to systemd and leaves the socket file alone.
    env.ok(&["--socket", sock, "stop"]);
    let n = notify.recv(&mut buf).expect("STOPPING=1 sent");
    assert!(String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1"));
    assert!(
        socket.exists(),
        "an inherited socket is systemd's to remove"
    );
    let _ = activator.kill();
    let _ = activator.wait();
}

/// Kills a process when dropped, through a pidfd taken while it was known to be
/// ours, so a reused pid is never hit.
struct KillOnDrop(Option<rustix::fd::OwnedFd>);

impl KillOnDrop {
    fn new(pid: u32) -> KillOnDrop {
        KillOnDrop(rustix::process::Pid::from_raw(pid as i32).and_then(|pid| {
            rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()
        }))
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(fd) = &self.0 {
            let _ = rustix::process::pidfd_send_signal(fd, rustix::process::Signal::KILL);
        }
    }
}

#[test]
fn every_profile_name_argument_has_help_text() {
    let env = TestEnv::new();
    for command in ["show", "remove", "jwks"] {
        let help = env.ok(&[command, "--help"]);
        let line = help
            .lines()
            .find(|l| l.trim_start().starts_with("<NAME>"))
            .unwrap_or_else(|| panic!("no <NAME> in {command} --help:\n{help}"));
        assert!(
            line.trim_start().trim_start_matches("<NAME>").trim().len() > 3,
            "{command}: <NAME> has no help text: {line:?}"
        );
    }
}

#[test]
fn completions_offer_profile_names_in_bash_zsh_and_fish_on_a_terminal() {
    let python = require_tool("python3", "python3");
    let env = TestEnv::new();
    for name in ["alpha", "beta"] {
        env.add_open_profile(name, "https://idp.example/token", &[]);
    }
    let bin_dir = std::path::Path::new(bin()).parent().unwrap().to_owned();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap());
    for (shell, args, setup) in [
        (
            "bash",
            vec!["--norc", "--noprofile", "-i"],
            "source <(jwtagent completions bash); echo RE''ADY",
        ),
        (
            "zsh",
            vec!["-f", "-i"],
            "autoload -U compinit && compinit -u && source <(jwtagent completions zsh); echo RE''ADY",
        ),
        (
            "fish",
            vec!["--no-config", "-i"],
            "jwtagent completions fish | source; echo RE''ADY",
        ),
    ] {
        let tool = require_tool(shell, shell);
        let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        args.insert(0, tool.to_string_lossy().into_owned());
        let typed = |keys: &str, expect: &str| {
            env.command(&python)
                .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/pty/type.py"))
                .args(&args)
                .env("PATH", &path)
                .env("TERM", "xterm")
                .env("SETUP", setup)
                .env("KEYS", keys)
                .env("EXPECT", expect)
                .output()
                .unwrap()
        };
        // The profile name is completed from what was typed of it.
        let out = typed("jwtagent token al\t", "jwtagent token alpha");
        assert!(
            out.status.success(),
            "{shell} did not complete the profile name:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        // After options with a value too.
        let out = typed("jwtagent show --socket /x be\t", "--socket /x beta");
        assert!(
            out.status.success(),
            "{shell} did not complete after an option:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}
