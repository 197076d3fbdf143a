//! Access control: only the agent's own uid is served.

use crate::common::*;

/// Runs `jwtagent status` against `socket` as uid/gid 65534 (nobody). The
/// process keeps CAP_DAC_OVERRIDE as an ambient capability so that it can reach
/// the socket through the 0700 directory and the 0600 file: what is tested is the
/// agent's own SO_PEERCRED check, not the file modes in front of it.
fn status_as_nobody(env: &TestEnv, socket: &std::path::Path) -> std::process::Output {
    let setpriv = require_tool("setpriv", "util-linux");
    assert!(
        rustix::process::geteuid().is_root(),
        "this test must run as root: it switches to uid 65534 with setpriv"
    );
    let mut cmd = env.command(setpriv);
    cmd.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=+dac_override",
        "--ambient-caps=+dac_override",
        "--",
        bin(),
        "status",
        "--socket",
        socket.to_str().unwrap(),
    ]);
    cmd.output().expect("run setpriv")
}

#[test]
fn another_uid_is_refused_and_logged_with_its_pid_and_uid() {
    let env = TestEnv::new();
    let agent = env.foreground_agent(&env.path("s.sock"));
    let out = status_as_nobody(&env, &agent.socket);
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    let err = stderr_of(&out);
    assert!(err.contains("denied") && err.contains("uid 65534"), "{err}");
    wait_until("the refusal is logged", || {
        agent.log_text().lines().any(|l| {
            l.contains("refused connection from another user")
                && l.contains("peer_uid=65534")
                && l.contains("peer_pid=")
        })
    });
    // The agent's own user is still served.
    assert_eq!(hello(&agent.socket).unwrap()["ok"], true);
}

/// Runs `args` as uid/gid 65534 with a private HOME and runtime dir of its own.
fn as_nobody(env: &TestEnv, program: &std::path::Path, args: &[&str]) -> std::process::Command {
    let setpriv = require_tool("setpriv", "util-linux");
    assert!(
        rustix::process::geteuid().is_root(),
        "this test must run as root"
    );
    let home = env.path("nobody");
    let _ = std::fs::create_dir(&home);
    std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&home, Some(65534), Some(65534)).unwrap();
    std::os::unix::fs::chown(env.dir.path(), Some(0), Some(0)).unwrap();
    std::fs::set_permissions(
        env.dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o711),
    )
    .unwrap();
    let mut cmd = std::process::Command::new(setpriv);
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(program)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", &home)
        .env("XDG_RUNTIME_DIR", &home)
        .env("JWTAGENT_LOG", "info");
    cmd
}

#[test]
fn a_process_of_the_same_user_cannot_ptrace_the_agent() {
    let gdb = require_tool("gdb", "gdb");
    let env = TestEnv::new();
    let socket = env.path("nobody/agent.sock");
    let mut agent = as_nobody(
        &env,
        std::path::Path::new(bin()),
        &["agent", "-D", "--socket", socket.to_str().unwrap()],
    )
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    wait_until("the agent listens", || socket.exists());
    // The control: the same user can attach to an ordinary process of its own.
    let mut sleeper = as_nobody(&env, std::path::Path::new("/bin/sleep"), &["60"])
        .spawn()
        .unwrap();
    let attach = |pid: u32| {
        as_nobody(
            &env,
            &gdb,
            &["-nx", "-batch", "-p", &pid.to_string(), "-ex", "detach"],
        )
        .output()
        .unwrap()
    };
    let control = attach(sleeper.id());
    let control_text = String::from_utf8_lossy(&control.stdout).to_string() + &stderr_of(&control);
    assert!(
        !control_text.contains("Operation not permitted"),
        "control attach failed: {control_text}"
    );
    // The agent: refused, it is not dumpable.
    // setpriv execs: the child is the agent.
    let out = attach(agent.id());
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &stderr_of(&out);
    assert!(
        text.contains("Operation not permitted"),
        "attach to the agent: {text}"
    );
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    let _ = agent.kill();
    let _ = agent.wait();
}

#[test]
fn refused_connections_are_in_the_audit_log() {
    let env = TestEnv::new();
    let agent = env.foreground_agent(&env.path("s.sock"));
    let out = status_as_nobody(&env, &agent.socket);
    assert_eq!(out.status.code(), Some(1));
    let log = env.path("state/jwtagent/audit.log");
    wait_until("the refusal is audited", || {
        std::fs::read_to_string(&log).is_ok_and(|t| {
            t.lines().any(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["op"] == "connect" && v["outcome"] == "denied" && v["uid"] == 65534
            })
        })
    });
}

#[test]
fn a_profile_policy_allows_one_executable_and_denies_another() {
    let env = TestEnv::new();
    let server = open_provider(&env, 600);
    // Two real, distinct executables: copies of the CLI at different paths.
    let allowed = env.path("allowed/jwtagent-a");
    let other = env.path("other/jwtagent-b");
    for copy in [&allowed, &other] {
        std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
        std::fs::copy(bin(), copy).unwrap();
    }
    env.add_open_profile(
        "guarded",
        &server.token_endpoint(),
        &["--allow-exe", allowed.to_str().unwrap()],
    );
    let run_as =
        |exe: &std::path::Path| output_of_copy(env.command(exe).args(["token", "guarded"]));
    let ok = run_as(&allowed);
    assert!(ok.status.success(), "{}", stderr_of(&ok));
    let denied = run_as(&other);
    assert_eq!(denied.status.code(), Some(1));
    let err = stderr_of(&denied);
    assert!(
        err.contains("denied") && err.contains("guarded") && err.contains(other.to_str().unwrap()),
        "{err}"
    );
    // The CLI at its usual path is another executable too.
    assert_eq!(env.run(&["token", "guarded"]).status.code(), Some(1));
    // Both outcomes are audited, with the executable.
    env.audit_until("both outcomes audited with the executable", |records| {
        records
            .iter()
            .any(|r| r["outcome"] == "ok" && r["exe"] == allowed.to_str().unwrap())
            && records
                .iter()
                .any(|r| r["outcome"] == "denied" && r["exe"] == other.to_str().unwrap())
    });
}

#[test]
fn lock_refuses_service_delays_wrong_passphrases_and_unlock_restores_it() {
    let env = TestEnv::new();
    let server = open_provider(&env, 600);
    env.add_open_profile("api", &server.token_endpoint(), &[]);
    let before = env.ok(&["token", "api"]);
    let out = env.run_with_stdin(&["lock", "--passphrase-stdin"], b"open sesame\n");
    assert!(out.status.success(), "{}", stderr_of(&out));

    let out = env.run(&["token", "api"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_of(&out).contains("locked"), "{}", stderr_of(&out));
    assert_eq!(env.run(&["list"]).status.code(), Some(1));
    let status: serde_json::Value = serde_json::from_str(&env.ok(&["status", "--json"])).unwrap();
    assert_eq!(status["locked"], true);
    assert!(
        status["profiles"][0]["tokens"]
            .as_array()
            .unwrap()
            .is_empty(),
        "cached tokens dropped"
    );

    let started = std::time::Instant::now();
    let out = env.run_with_stdin(&["unlock", "--passphrase-stdin"], b"guess\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_of(&out).contains("wrong passphrase"));
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(250),
        "answered only after a delay"
    );
    let out = env.run_with_stdin(&["unlock", "--passphrase-stdin"], b"open sesame\n");
    assert!(out.status.success(), "{}", stderr_of(&out));
    let after = env.ok(&["token", "api"]);
    assert_ne!(before, after, "a fresh token: nothing survived the lock");
    // The audit log saw the refusal while locked.
    env.audit_until("the refusal while locked audited", |records| {
        records.iter().any(|r| r["outcome"] == "locked")
    });
}

#[test]
fn audit_follow_prints_new_entries() {
    let env = TestEnv::new();
    let server = open_provider(&env, 600);
    env.add_open_profile("api", &server.token_endpoint(), &[]);
    /// `audit --follow`, killed however the test ends.
    struct Follow(std::process::Child);
    impl Drop for Follow {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut follow = Follow(
        env.cmd(&["audit", "--follow"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = follow.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let token = env.ok(&["token", "api"]);
    // The token's entry (the `add`'s may come first: it is written just
    // after its answer, maybe after --follow began).
    let line = std::iter::from_fn(|| rx.recv_timeout(DEADLINE).ok())
        .find(|l| l.contains(" token "))
        .expect("a new audit entry");
    assert!(
        line.contains("ok") && line.contains("token") && line.contains("api"),
        "{line}"
    );
    assert!(line.contains("token="), "fingerprint shown: {line}");
    assert!(!line.contains(token.trim()), "never the token");
}

#[test]
fn a_lock_and_unlock_during_a_token_request_still_withholds_its_answer() {
    let env = TestEnv::new();
    let server = FaultServer::start(Fault::Held { lifetime: 600 });
    env.add_open_profile("api", &server.token_url(), &[]);
    let mut conn = Conn::open(&env.default_socket());
    conn.send_raw(b"{\"id\":1,\"op\":\"token\",\"name\":\"api\"}\n");
    wait_until("the token request reached the server", || {
        server.requests() == 1
    });
    // Locked and unlocked while the request was in flight: what it fetched
    // belongs to before the lock, and is not handed out.
    let out = env.run_with_stdin(&["lock", "--passphrase-stdin"], b"pw\n");
    assert!(out.status.success(), "{}", stderr_of(&out));
    let out = env.run_with_stdin(&["unlock", "--passphrase-stdin"], b"pw\n");
    assert!(out.status.success(), "{}", stderr_of(&out));
    server.set(Fault::Ok { lifetime: 600 });
    let answer = conn.recv().unwrap();
    assert_eq!(answer["error"]["code"], "locked", "{answer}");
    // Asked again now, it is served.
    env.ok(&["token", "api"]);
}

#[test]
fn the_lock_passphrase_prompts_do_not_echo() {
    let env = TestEnv::new();
    let server = open_provider(&env, 600);
    env.add_open_profile("api", &server.token_endpoint(), &[]);
    let out = on_a_terminal(
        &env,
        &[
            ("Passphrase to lock the agent: ", "typed-lock-passphrase"),
            ("Again: ", "typed-lock-passphrase"),
        ],
        &["lock"],
    );
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{shown}{}", stderr_of(&out));
    assert!(!shown.contains("typed-lock-passphrase"), "echoed: {shown}");
    assert_eq!(env.run(&["token", "api"]).status.code(), Some(1));
    let out = on_a_terminal(
        &env,
        &[("Passphrase to unlock the agent: ", "typed-lock-passphrase")],
        &["unlock"],
    );
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{shown}{}", stderr_of(&out));
    assert!(!shown.contains("typed-lock-passphrase"), "echoed: {shown}");
    env.ok(&["token", "api"]);
}

#[test]
fn every_change_to_the_agent_is_in_the_audit_log_once_with_its_outcome() {
    let env = TestEnv::new();
    let oidc = open_provider(&env, 600);
    env.add_open_profile("api", &oidc.token_endpoint(), &[]);
    let out = env.run_with_stdin(&["lock", "--passphrase-stdin"], b"pw\n");
    assert!(out.status.success(), "{}", stderr_of(&out));
    let out = env.run_with_stdin(&["unlock", "--passphrase-stdin"], b"guess\n");
    assert_eq!(out.status.code(), Some(1));
    let out = env.run_with_stdin(&["unlock", "--passphrase-stdin"], b"pw\n");
    assert!(out.status.success(), "{}", stderr_of(&out));
    env.ok(&["remove", "api"]);
    let out = env.run(&["remove", "api"]);
    assert_eq!(out.status.code(), Some(1));
    let expected: [(&str, Option<&str>, &str); 6] = [
        ("add", Some("api"), "ok"),
        ("lock", None, "ok"),
        ("unlock", None, "denied"),
        ("unlock", None, "ok"),
        ("remove", Some("api"), "ok"),
        ("remove", Some("api"), "unknown_profile"),
    ];
    let records = env.audit_until("every change is recorded", |records| {
        records
            .iter()
            .filter(|r| r["op"] != "token" && r["op"] != "status")
            .count()
            >= expected.len()
    });
    let seen: Vec<(String, Option<String>, String)> = records
        .iter()
        .filter(|r| r["op"] != "token" && r["op"] != "status")
        .map(|r| {
            // Each names the caller the agent resolved.
            assert!(r["pid"].is_u64() && r["exe"].is_string(), "{r}");
            (
                r["op"].as_str().unwrap().to_string(),
                r["profile"].as_str().map(str::to_string),
                r["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected: Vec<(String, Option<String>, String)> = expected
        .iter()
        .map(|(op, p, o)| (op.to_string(), p.map(str::to_string), o.to_string()))
        .collect();
    assert_eq!(seen, expected);
    // `audit` filters by event, profile, caller and time.
    let count = |args: &[&str]| {
        let mut all = vec!["audit", "--json"];
        all.extend_from_slice(args);
        env.ok(&all).lines().count()
    };
    assert_eq!(count(&["--op", "unlock"]), 2);
    assert_eq!(count(&["--op", "remove", "--profile", "api"]), 2);
    assert_eq!(count(&["--profile", "nobody"]), 0);
    let pid = records[0]["pid"].as_u64().unwrap().to_string();
    assert_eq!(
        count(&["--caller", &pid]),
        records
            .iter()
            .filter(|r| r["pid"].as_u64().map(|p| p.to_string()) == Some(pid.clone()))
            .count()
    );
    let exe = records[0]["exe"].as_str().unwrap();
    assert!(count(&["--caller", exe]) >= 1);
    assert_eq!(count(&["--since", "1h"]), records.len());
    let out = env.run(&["audit", "--since", "soon"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
}
