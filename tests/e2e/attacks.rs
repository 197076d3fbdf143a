//! Attacks from issue 13, reproduced end to end: another user's listener on
//! the predictable socket path, hostile token endpoints, crashes at chosen
//! moments. Each test failed on the code before its fix.

use crate::common::*;
use std::io::BufRead;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;
use std::process::{Child, Command, Stdio};

const NOBODY: u32 = 65534;

/// A Unix-socket listener run by uid 65534 that answers `hello` as an agent
/// would and records every byte it receives (reported on its stdout).
struct AttackerListener {
    child: Child,
}

const LISTENER: &str = r#"
import json, os, socket, sys
path = sys.argv[1]
s = socket.socket(socket.AF_UNIX)
s.bind(path)
os.chmod(path, 0o777)
s.listen(16)
print("listening", flush=True)
while True:
    c, _ = s.accept()
    c.settimeout(5)
    buf = b""
    try:
        while True:
            d = c.recv(65536)
            if not d:
                break
            buf += d
            print("received", d.hex(), flush=True)
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                req = json.loads(line)
                ans = {"id": req.get("id"), "ok": True, "protocol": 1, "version": "evil", "pid": 1,
                       "access_token": "attacker-token", "token_type": "Bearer"}
                c.sendall(json.dumps(ans).encode() + b"\n")
    except Exception:
        pass
    c.close()
"#;

impl AttackerListener {
    fn start(socket: &Path) -> AttackerListener {
        let setpriv = require_tool("setpriv", "util-linux");
        // Debian's python3: one under root's home (pyenv) is not reachable by
        // uid 65534.
        let python = Path::new("/usr/bin/python3");
        assert!(
            python.is_file(),
            "this test needs /usr/bin/python3: run `apt-get install -y python3`"
        );
        assert!(
            rustix::process::geteuid().is_root(),
            "this test must run as root: the attacker is uid 65534, started with setpriv"
        );
        let mut child = Command::new(setpriv)
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(python)
            .args(["-c", LISTENER])
            .arg(socket)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut first = String::new();
        std::io::BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut first)
            .unwrap();
        assert_eq!(
            first.trim(),
            "listening",
            "the attacker's listener did not start"
        );
        AttackerListener { child }
    }

    /// Stops the listener and returns every line it printed about data it got.
    fn received(mut self) -> Vec<String> {
        let _ = self.child.kill();
        let out = std::mem::replace(&mut self.child, Command::new("true").spawn().unwrap())
            .wait_with_output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with("received"))
            .map(str::to_string)
            .collect()
    }
}

impl Drop for AttackerListener {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory like /tmp: root's, mode 1777. The test environment's own
/// directory is opened to others (0711) so that uid 65534 can reach it.
fn shared_tmp(env: &TestEnv) -> std::path::PathBuf {
    std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let shared = env.path("shared-tmp");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    shared
}

/// Makes a directory as uid 65534, with `mode`.
fn nobody_dir(path: &Path, mode: u32) {
    std::fs::create_dir(path).unwrap();
    std::os::unix::fs::chown(path, Some(NOBODY), Some(NOBODY)).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// `jwtagent add NAME` with `auth` and the secret on stdin; `extra` are more
/// arguments.
fn add_cmd(env: &TestEnv, name: &str, url: &str, auth: &str, extra: &[&str]) -> Command {
    let mut cmd = env.add_cmd(name, url, auth, &["--secret-stdin"]);
    cmd.args(extra);
    cmd
}

fn add_with_secret(env: &TestEnv, runtime_dir: &Path, extra: &[&str]) -> std::process::Output {
    let url = "https://idp.example/token";
    let mut cmd = add_cmd(env, "victim", url, "client_secret_basic", extra);
    cmd.env("XDG_RUNTIME_DIR", runtime_dir);
    output_with_stdin(&mut cmd, b"the-victims-client-secret\n")
}

#[test]
fn cli_refuses_a_default_socket_directory_another_user_made() {
    let env = TestEnv::new();
    let shared = shared_tmp(&env);
    // The attacker got there first: /tmp/jwtagent-$UID, theirs, open to all.
    let dir = shared.join("jwtagent");
    nobody_dir(&dir, 0o777);
    let listener = AttackerListener::start(&dir.join("agent.sock"));
    let out = add_with_secret(&env, &shared, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    let err = stderr_of(&out);
    assert!(err.contains("owned by uid 65534"), "{err}");
    let token = env
        .cmd(&["token", "victim"])
        .env("XDG_RUNTIME_DIR", &shared)
        .output()
        .unwrap();
    assert!(!token.status.success());
    assert!(!String::from_utf8_lossy(&token.stdout).contains("attacker-token"));
    assert_eq!(listener.received(), Vec::<String>::new());
}

#[test]
fn cli_refuses_a_default_socket_directory_that_is_a_symlink_to_another_users() {
    let env = TestEnv::new();
    let shared = shared_tmp(&env);
    let theirs = shared.join("attacker");
    nobody_dir(&theirs, 0o700);
    let listener = AttackerListener::start(&theirs.join("agent.sock"));
    std::os::unix::fs::symlink(&theirs, shared.join("jwtagent")).unwrap();
    let out = add_with_secret(&env, &shared, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("symbolic link"),
        "{}",
        stderr_of(&out)
    );
    assert_eq!(listener.received(), Vec::<String>::new());
}

#[test]
fn cli_and_agent_refuse_a_runtime_dir_others_can_write_without_the_sticky_bit() {
    let env = TestEnv::new();
    std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let runtime = env.path("open-run");
    std::fs::create_dir(&runtime).unwrap();
    std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o777)).unwrap();
    // Our own, private socket directory inside it: still unsafe, since another
    // user can rename it away and put theirs in its place.
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(runtime.join("jwtagent"))
        .unwrap();
    let out = add_with_secret(&env, &runtime, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    let err = stderr_of(&out);
    assert!(
        err.contains("can be changed by other users") && err.contains("chmod"),
        "{err}"
    );
    // The agent refuses it as well.
    let agent = env
        .cmd(&["agent"])
        .env("XDG_RUNTIME_DIR", &runtime)
        .output()
        .unwrap();
    assert!(!agent.status.success());
    assert!(
        stderr_of(&agent).contains("can be changed by other users"),
        "{}",
        stderr_of(&agent)
    );
}

#[test]
fn cli_refuses_an_explicit_socket_served_by_another_user_before_sending_anything() {
    let env = TestEnv::new();
    std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let theirs = env.path("theirs");
    nobody_dir(&theirs, 0o755);
    let socket = theirs.join("agent.sock");
    let listener = AttackerListener::start(&socket);
    for (how, extra) in [
        ("flag", vec!["--socket", socket.to_str().unwrap()]),
        ("env", vec![]),
    ] {
        let mut cmd = env.cmd(&["token", "victim"]);
        cmd.args(&extra);
        if how == "env" {
            cmd.env("JWTAGENT_SOCK", &socket);
        }
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{how}: {}", stderr_of(&out));
        let err = stderr_of(&out);
        assert!(
            err.contains("uid 65534") && err.contains("Nothing was sent"),
            "{how}: {err}"
        );
        assert!(!String::from_utf8_lossy(&out.stdout).contains("attacker-token"));
    }
    let out = add_with_secret(
        &env,
        &env.path("run"),
        &["--socket", socket.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    assert_eq!(listener.received(), Vec::<String>::new());
}

fn hostile(body: &str) -> Fault {
    Fault::Raw {
        code: 200,
        headers: String::new(),
        body: body.to_string(),
    }
}

#[test]
fn a_huge_expires_in_is_clamped_and_the_agent_keeps_serving() {
    let env = TestEnv::new();
    for (i, huge) in ["1e30", "9223372036854775808", "1.7e308"]
        .iter()
        .enumerate()
    {
        let server = FaultServer::start(hostile(&format!(
            r#"{{"access_token":"tok-{i}","token_type":"Bearer","expires_in":{huge}}}"#
        )));
        let name = format!("huge{i}");
        env.add_open_profile(&name, &server.token_url(), &[]);
        for _ in 0..2 {
            let out = env.run(&["token", "--json", &name]);
            assert!(out.status.success(), "{huge}: {}", stderr_of(&out));
            let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(answer["access_token"], format!("tok-{i}"));
            // Clamped to a year, not "never".
            let left = answer["expires_at"].as_u64().unwrap() - jwtagent::time::unix_now();
            assert!(left <= 366 * 24 * 3600, "{huge}: {left}");
        }
        assert_eq!(server.requests(), 1, "{huge}");
    }
}

#[test]
fn a_token_expired_on_arrival_is_an_error_not_a_request_storm() {
    let env = TestEnv::new();
    for (i, expired) in ["0", "-5", "\"-1\""].iter().enumerate() {
        let server = FaultServer::start(hostile(&format!(
            r#"{{"access_token":"tok","token_type":"Bearer","expires_in":{expired}}}"#
        )));
        let name = format!("expired{i}");
        env.add_open_profile(&name, &server.token_url(), &[]);
        let out = env.run(&["token", &name]);
        assert_eq!(out.status.code(), Some(1), "{expired}");
        let err = stderr_of(&out);
        assert!(
            err.contains("idp_error") && err.contains("already expired"),
            "{expired}: {err}"
        );
        // Nothing is held, so nothing is refreshed in the background: the
        // status says why and the server saw the one request.
        let status = env.profile_status(&name);
        assert!(
            status["last_error"]
                .as_str()
                .unwrap_or_default()
                .contains("already expired"),
            "{status}"
        );
        assert_eq!(server.requests(), 1, "{expired}");
    }
}

#[test]
fn a_server_that_reflects_the_request_never_gets_the_secret_shown() {
    let env = TestEnv::new();
    let server = FaultServer::start(Fault::Echo { code: 500 });
    let secret = "reflected-secret+/=%-0123456789";
    for (name, auth) in [
        ("post", "client_secret_post"),
        ("basic", "client_secret_basic"),
    ] {
        let mut cmd = add_cmd(&env, name, &server.token_url(), auth, &[]);
        let out = output_with_stdin(&mut cmd, secret.as_bytes());
        assert!(out.status.success(), "{}", stderr_of(&out));
        let out = env.run(&["token", name]);
        assert_eq!(out.status.code(), Some(1));
        let err = stderr_of(&out);
        assert!(
            err.contains("HTTP 500") && err.contains("[REDACTED]"),
            "{err}"
        );
        let status = env.ok(&["status", "--json"]);
        let log = std::fs::read(env.log_file()).unwrap_or_default();
        use base64::Engine;
        let basic =
            base64::engine::general_purpose::STANDARD.encode(format!("c:{}", url_form(secret)));
        let needles: Vec<(String, String)> = [secret.to_string(), url_form(secret), basic]
            .into_iter()
            .map(|n| (n.clone(), n))
            .collect();
        assert_absent(
            &needles,
            &[
                ("stderr".into(), err.into_bytes()),
                ("status".into(), status.into_bytes()),
                ("agent log".into(), log),
            ],
        );
    }
    // The server did get it: the echo is real.
    assert!(server.bodies()[0].contains(&url_form(secret)));
}

fn url_form(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[test]
fn a_huge_retry_after_is_capped_and_force_tries_now() {
    let env = TestEnv::new();
    let server = FaultServer::start(Fault::Status {
        code: 429,
        retry_after: Some("999999".into()),
    });
    env.add_open_profile("limited", &server.token_url(), &[]);
    assert_eq!(env.run(&["token", "limited"]).status.code(), Some(1));
    let again = env.run(&["token", "limited"]);
    let err = stderr_of(&again);
    let secs: u64 = err
        .split("next attempt in ")
        .nth(1)
        .and_then(|t| t.split('s').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no next attempt in: {err}"));
    assert!(secs <= 300, "{err}");
    assert_eq!(server.requests(), 1);
    server.set(Fault::Ok { lifetime: 600 });
    let forced = env.ok(&["token", "--force", "limited"]);
    assert_eq!(forced.trim(), "fault-token-2");
}

#[test]
fn tokens_that_would_inject_a_header_are_refused() {
    let env = TestEnv::new();
    for (i, body) in [
        r#"{"access_token":"abc\ndef","token_type":"Bearer","expires_in":600}"#,
        r#"{"access_token":"abc\r\nX-Evil: 1","token_type":"Bearer","expires_in":600}"#,
        r#"{"access_token":"abc","token_type":"Bearer\nX-Evil: 1","expires_in":600}"#,
    ]
    .iter()
    .enumerate()
    {
        let server = FaultServer::start(hostile(body));
        let name = format!("inject{i}");
        env.add_open_profile(&name, &server.token_url(), &[]);
        let out = env.run(&["header", &name]);
        assert_eq!(out.status.code(), Some(1), "{body}");
        assert!(out.stdout.is_empty(), "{body}");
        let err = stderr_of(&out);
        assert!(err.contains("idp_error"), "{err}");
        assert!(
            !err.contains("X-Evil: 1\n") && !err.contains("def"),
            "{err}"
        );
    }
    // A lower-case token_type is served in its canonical case.
    let server = FaultServer::start(hostile(
        r#"{"access_token":"abc","token_type":"bearer","expires_in":600}"#,
    ));
    env.add_open_profile("lower", &server.token_url(), &[]);
    let answer: serde_json::Value =
        serde_json::from_str(&env.ok(&["token", "--json", "lower"])).unwrap();
    assert_eq!(answer["token_type"], "Bearer");
}

#[test]
fn per_request_scopes_and_resources_are_validated_like_add() {
    let env = TestEnv::new();
    let server = FaultServer::start(Fault::Ok { lifetime: 600 });
    env.add_open_profile("api", &server.token_url(), &[]);
    let mut conn = Conn::open(&env.default_socket());
    for (field, value) in [
        ("scopes", r#"["x\u0000y"]"#),
        ("scopes", r#"["a b"]"#),
        ("resources", r#"["not a uri"]"#),
        ("resources", r#"["https://api.example/#frag"]"#),
    ] {
        let r = conn.request(&format!(
            r#"{{"id":1,"op":"token","name":"api","{field}":{value}}}"#
        ));
        assert_eq!(r["ok"], false, "{value}");
        assert_eq!(r["error"]["code"], "bad_request", "{r}");
    }
    assert_eq!(server.requests(), 0);
    let out = env.run(&["token", "api", "--scope", "a\u{7}b"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    assert_eq!(server.requests(), 0);
}

#[test]
fn a_token_request_in_flight_when_the_agent_is_locked_gets_locked() {
    let env = TestEnv::new();
    let server = FaultServer::start(Fault::Held { lifetime: 600 });
    env.add_open_profile("api", &server.token_url(), &[]);
    let pending = env
        .cmd(&["token", "api"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the token request reaches the server", || {
        server.requests() == 1
    });
    let out = env.run_with_stdin(&["lock", "--passphrase-stdin"], b"open sesame\n");
    assert!(out.status.success(), "{}", stderr_of(&out));
    // The server answers only now, after the lock.
    server.set(Fault::Ok { lifetime: 600 });
    let out = pending.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    assert!(out.stdout.is_empty(), "a token was handed out after lock");
    assert!(stderr_of(&out).contains("locked"), "{}", stderr_of(&out));
    // Nothing was kept either: once unlocked, the next token is a new one.
    let out = env.run_with_stdin(&["unlock", "--passphrase-stdin"], b"open sesame\n");
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(env.ok(&["token", "api"]).trim(), "fault-token-2");
}

/// Adds a client_secret_basic profile for `url` whose secret the test knows.
fn add_basic(env: &TestEnv, name: &str, url: &str) {
    let mut cmd = add_cmd(env, name, url, "client_secret_basic", &[]);
    let out = output_with_stdin(&mut cmd, b"basic-secret-0123456789");
    assert!(out.status.success(), "{}", stderr_of(&out));
}

#[test]
fn a_config_others_can_write_or_own_is_refused_and_no_secret_is_sent() {
    let env = TestEnv::new();
    let ours = FaultServer::start(Fault::Ok { lifetime: 600 });
    let theirs = FaultServer::start(Fault::Ok { lifetime: 600 });
    add_basic(&env, "api", &ours.token_url());
    let config = env.config_file();
    let redirected = std::fs::read_to_string(&config)
        .unwrap()
        .replace(&ours.token_url(), &theirs.token_url());
    let refused = |how: &str, expect: &str| {
        let out = env.run(&["token", "--force", "api"]);
        assert_eq!(out.status.code(), Some(1), "{how}: {}", stderr_of(&out));
        let err = stderr_of(&out);
        assert!(
            err.contains("refusing config") && err.contains(expect),
            "{how}: {err}"
        );
        assert_eq!(
            theirs.requests(),
            0,
            "{how}: the secret went to the other server"
        );
    };
    // 1. World-writable: another user rewrote token_url.
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o666)).unwrap();
    std::fs::write(&config, &redirected).unwrap();
    refused("mode 0666", "chmod go-w");
    // 2. Private, but another user's file.
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::chown(&config, Some(NOBODY), Some(NOBODY)).unwrap();
    refused("owned by 65534", "owned by uid 65534");
    // 3. A symlink to another user's file.
    let elsewhere = env.path("their-profiles.toml");
    std::fs::rename(&config, &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &config).unwrap();
    refused("symlink to 65534's file", "owned by uid 65534");
    // 4. A directory others can write.
    std::fs::remove_file(&config).unwrap();
    std::fs::write(&config, &redirected).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    let dir = config.parent().unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    refused("directory 0777", "directory has mode 0777");
    // Made private again, the (now redirected) file is used: the checks are
    // what stood in the way.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    env.ok(&["token", "--force", "api"]);
    assert_eq!(theirs.requests(), 1);
}

#[test]
fn an_agent_whose_log_pipe_closed_keeps_serving_and_stops_cleanly() {
    for how in ["stop", "SIGTERM"] {
        let env = TestEnv::new();
        let socket = env.path("s.sock");
        // `jwtagent agent -D 2>&1 | head -1`: the reader goes away after a line.
        let mut agent = env
            .cmd(&["agent", "-D", "--socket", socket.to_str().unwrap()])
            .env("JWTAGENT_LOG", "trace")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        std::io::BufReader::new(agent.stderr.as_mut().unwrap())
            .read_line(&mut first)
            .unwrap();
        drop(agent.stderr.take());
        wait_until("the agent listens", || hello(&socket).is_some());
        // Every request logs: each write now fails with EPIPE.
        for _ in 0..5 {
            env.ok(&["status", "--socket", socket.to_str().unwrap()]);
        }
        if how == "stop" {
            env.ok(&["stop", "--socket", socket.to_str().unwrap()]);
        } else {
            rustix::process::kill_process(
                rustix::process::Pid::from_raw(agent.id() as i32).unwrap(),
                rustix::process::Signal::TERM,
            )
            .unwrap();
        }
        let status = agent.wait().unwrap();
        assert!(status.success(), "{how}: the agent exited with {status}");
        assert!(!socket.exists(), "{how}: the socket file was left behind");
    }
}

#[test]
fn idle_connections_cannot_lock_out_new_clients() {
    let env = TestEnv::new();
    let agent = env.foreground_agent(&env.path("s.sock"));
    // 1,024 descriptors of our own, beside the test harness's: raise the soft
    // limit to the hard one (the agent raises its own the same way).
    let mut nofile = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    nofile.current = nofile.maximum;
    let _ = rustix::process::setrlimit(rustix::process::Resource::Nofile, nofile);
    let nofile = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    assert!(
        nofile.current.unwrap_or(u64::MAX) > 1100,
        "this test opens 1,024 connections: raise the open-file limit (ulimit -Hn 2048)"
    );
    // Fill every slot the agent has (1,024) with connections that say nothing.
    let idle: Vec<std::os::unix::net::UnixStream> = (0..1024)
        .map(|_| std::os::unix::net::UnixStream::connect(&agent.socket).unwrap())
        .collect();
    // The first one is being served (a hello answered), so the agent saw them.
    let mut first = Conn::open(&agent.socket);
    assert_eq!(first.request(r#"{"id":1,"op":"hello"}"#)["ok"], true);
    // A new client is served at once, not after the 5-minute idle timeout.
    let out = env.run(&[
        "status",
        "--timeout",
        "20s",
        "--socket",
        agent.socket.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    // Room was made by closing the longest-idle connection: the oldest.
    let mut oldest = idle[0].try_clone().unwrap();
    oldest
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let mut buf = [0u8; 1];
    assert_eq!(std::io::Read::read(&mut oldest, &mut buf).unwrap(), 0);
}

#[test]
fn the_cli_gives_up_on_an_agent_that_does_not_answer() {
    let env = TestEnv::new();
    let agent = env.foreground_agent(&env.path("s.sock"));
    let pid = rustix::process::Pid::from_raw(agent.pid() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::STOP).unwrap();
    // SIGSTOP takes effect on each thread in turn: a worker still running
    // could answer (this test failed about once in 60 runs under load).
    wait_until("every thread of the agent is stopped", || {
        all_threads_stopped(agent.pid())
    });
    let out = env.run(&[
        "status",
        "--timeout",
        "1s",
        "--socket",
        agent.socket.to_str().unwrap(),
    ]);
    rustix::process::kill_process(pid, rustix::process::Signal::CONT).unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert!(
        err.contains("did not answer within 1s") && err.contains("--timeout"),
        "{err}"
    );
}

/// Whether every thread of process `pid` is stopped (state `T` in
/// `/proc/PID/task/TID/stat`).
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().all(|task| {
        std::fs::read_to_string(task.path().join("stat")).is_ok_and(|stat| {
            // The state follows the command name's closing parenthesis.
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                == Some("T")
        })
    })
}

fn add_post(
    env: &TestEnv,
    url: &str,
    secret: &str,
    crash_at: Option<&str>,
) -> std::process::Output {
    let mut cmd = add_cmd(env, "api", url, "client_secret_post", &[]);
    if let Some(step) = crash_at {
        cmd.env("JWTAGENT_CRASH_AT", step);
    }
    output_with_stdin(&mut cmd, secret.as_bytes())
}

/// The stale temp files the config writer may leave next to the config.
fn temp_files(env: &TestEnv) -> Vec<String> {
    std::fs::read_dir(env.config_file().parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp."))
        .collect()
}

#[test]
fn a_crash_at_any_step_of_a_replace_leaves_one_complete_profile() {
    // (step, whether the new profile is the one in force after the crash)
    for (step, new_wins) in [
        ("add:before-keyring", false),
        ("add:after-keyring", false),
        ("config:before-rename", false),
        ("add:after-config", true),
    ] {
        let env = TestEnv::new();
        let old = FaultServer::start(Fault::Ok { lifetime: 600 });
        let new = FaultServer::start(Fault::Ok { lifetime: 600 });
        let out = add_post(&env, &old.token_url(), "old-secret-value", None);
        assert!(out.status.success(), "{}", stderr_of(&out));
        env.ok(&["stop"]);
        // The agent this add starts dies at `step`, as under kill -9.
        let out = add_post(&env, &new.token_url(), "new-secret-value", Some(step));
        assert!(!out.status.success(), "{step}: the add did not crash");
        // The client may see the reset before the dying agent's listener is
        // closed: wait until nothing accepts there any more.
        wait_until("the crashed agent is gone", || {
            std::os::unix::net::UnixStream::connect(env.default_socket()).is_err()
        });
        // The next command starts a new agent, which serves one complete
        // profile: the old one with the old secret, or the new with the new.
        let token = env.run(&["token", "--force", "api"]);
        assert!(token.status.success(), "{step}: {}", stderr_of(&token));
        let (used, unused, secret) = if new_wins {
            (&new, &old, "new-secret-value")
        } else {
            (&old, &new, "old-secret-value")
        };
        assert_eq!(unused.requests(), 0, "{step}");
        let bodies = used.bodies();
        assert!(
            bodies
                .last()
                .unwrap()
                .contains(&format!("client_secret={secret}")),
            "{step}: {bodies:?}"
        );
        // What the crash left behind is cleaned up at start: temp files, and
        // the keyring entry of the generation not in force.
        wait_until("stale temp files are removed", || {
            temp_files(&env).is_empty()
        });
        let stray = if new_wins {
            "profile/api"
        } else {
            "profile/api#1"
        };
        wait_until("the stray keyring entry is deleted", || {
            keyutils_lookup(&env.keyring_service, stray).is_none()
        });
        // And a replace after the crash works as usual.
        let out = add_post(&env, &new.token_url(), "third-secret-value", None);
        assert!(out.status.success(), "{step}: {}", stderr_of(&out));
        env.ok(&["token", "--force", "api"]);
        assert!(
            new.bodies()
                .last()
                .unwrap()
                .contains("client_secret=third-secret-value")
        );
    }
}

/// Which of `needles` occur anywhere in the readable memory of `pid` (read as
/// root through /proc/PID/mem, as a core dump would see it).
fn in_memory(pid: u32, needles: &[&str]) -> Vec<String> {
    use std::os::unix::fs::FileExt;
    assert!(
        rustix::process::geteuid().is_root(),
        "this test must run as root: it reads the agent's memory through /proc/PID/mem"
    );
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let mem = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    let mut found = Vec::new();
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            continue;
        };
        let name = line.split_whitespace().nth(5).unwrap_or("");
        if !perms.starts_with('r')
            || name == "[vvar]"
            || name == "[vsyscall]"
            || name == "[vvar_vclock]"
        {
            continue;
        }
        let (start, end) = range.split_once('-').unwrap();
        let (start, end) = (
            u64::from_str_radix(start, 16).unwrap(),
            u64::from_str_radix(end, 16).unwrap(),
        );
        let mut region = vec![0u8; (end - start) as usize];
        if mem.read_exact_at(&mut region, start).is_err() {
            continue;
        }
        for needle in needles {
            if region.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                found.push(format!("{needle} in {name:?} ({perms})"));
            }
        }
    }
    found
}

#[test]
fn removed_tokens_and_the_lock_passphrase_are_wiped_from_the_agents_memory() {
    let env = TestEnv::new();
    let unique = format!("{:x}{:x}", std::process::id(), jwtagent::time::unix_now());
    let token = format!("memtok-{unique}-0123456789abcdef");
    let passphrase = format!("mempass-{unique}-fedcba9876543210");
    let server = FaultServer::start(hostile(&format!(
        r#"{{"access_token":"{token}","token_type":"Bearer","expires_in":600}}"#
    )));
    let agent = env.foreground_agent(&env.default_socket());
    env.add_open_profile("mem", &server.token_url(), &[]);
    assert_eq!(env.ok(&["token", "mem"]).trim(), token);
    // The scan sees a token the agent holds: it can fail.
    assert_ne!(in_memory(agent.pid(), &[&token]), Vec::<String>::new());
    env.ok(&["remove", "mem"]);
    wait_until("the removed profile's token is gone from memory", || {
        in_memory(agent.pid(), &[&token]).is_empty()
    });
    let out = env.run_with_stdin(
        &["lock", "--passphrase-stdin"],
        format!("{passphrase}\n").as_bytes(),
    );
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(in_memory(agent.pid(), &[&passphrase]), Vec::<String>::new());
}

/// Connects to the socket, forks; the parent execs `allowed` (so the pid
/// that connected now runs the allowed binary) while the child, still
/// python, writes a token request on the inherited socket.
const HAND_OFF: &str = r#"
import os, socket, sys, time
sock_path, allowed, profile = sys.argv[1], sys.argv[2], sys.argv[3]
s = socket.socket(socket.AF_UNIX)
s.connect(sock_path)
parent = os.getpid()
if os.fork() != 0:
    os.execv(allowed, [allowed, "30"])
deadline = time.time() + 20
while os.readlink(f"/proc/{parent}/exe") != allowed:
    if time.time() > deadline:
        sys.exit("the parent did not exec")
    time.sleep(0.001)
s.sendall(('{"id":1,"op":"token","name":"%s"}\n' % profile).encode())
print("sent", flush=True)
print(s.makefile().readline(), flush=True)
"#;

#[test]
fn a_caller_policy_judges_who_writes_not_only_who_connected() {
    let env = TestEnv::new();
    let server = FaultServer::start(Fault::Ok { lifetime: 600 });
    let allowed = env.path("allowed/sleep");
    std::fs::create_dir_all(allowed.parent().unwrap()).unwrap();
    std::fs::copy("/bin/sleep", &allowed).unwrap();
    let agent = env.foreground_agent(&env.path("s.sock"));
    let socket = agent.socket.to_str().unwrap().to_string();
    env.add_open_profile(
        "guarded",
        &server.token_url(),
        &[
            "--socket",
            &socket,
            "--allow-exe",
            allowed.to_str().unwrap(),
        ],
    );
    // The agent is held so that it accepts only after the exec: then the
    // connecting pid already runs the allowed binary.
    let pid = rustix::process::Pid::from_raw(agent.pid() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::STOP).unwrap();
    let python = require_tool("python3", "python3");
    let mut attacker = Command::new(python)
        .args([
            "-c",
            HAND_OFF,
            &socket,
            allowed.to_str().unwrap(),
            "guarded",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(attacker.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "sent");
    rustix::process::kill_process(pid, rustix::process::Signal::CONT).unwrap();
    line.clear();
    out.read_line(&mut line).unwrap();
    // The attacker is now `sleep 30`.
    let _ = attacker.kill();
    let _ = attacker.wait();
    let answer: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(answer["ok"], false, "{answer}");
    assert_eq!(answer["error"]["code"], "denied", "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("written to by pid"),
        "{answer}"
    );
    assert_eq!(server.requests(), 0);
}

#[test]
fn a_client_secret_is_wiped_from_the_agents_memory_once_the_token_request_is_done() {
    let env = TestEnv::new();
    let unique = format!("{:x}{:x}", std::process::id(), jwtagent::time::unix_now());
    let secret = format!("memsecret-{unique}-0123456789abcdef");
    // Held at the server: the agent has read the secret and sent the form.
    let server = FaultServer::start(Fault::Held { lifetime: 600 });
    let agent = env.foreground_agent(&env.default_socket());
    let out = add_post(&env, &server.token_url(), &secret, None);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let mut token = env
        .cmd(&["token", "api"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the token request is at the server", || {
        server.requests() == 1
    });
    assert!(server.bodies()[0].contains(&secret));
    // The scan sees the secret while the request is in flight: it can fail.
    assert_ne!(in_memory(agent.pid(), &[&secret]), Vec::<String>::new());
    server.set(Fault::Ok { lifetime: 600 });
    assert!(token.wait().unwrap().success());
    // The keyring read, the form and the request body are all wiped.
    wait_until("the secret is gone from memory", || {
        in_memory(agent.pid(), &[&secret]).is_empty()
    });
}

#[test]
fn tokens_are_wiped_from_the_agents_memory_by_the_time_it_exits() {
    let gdb = require_tool("gdb", "gdb");
    let env = TestEnv::new();
    let unique = format!("{:x}{:x}", std::process::id(), jwtagent::time::unix_now());
    let token = format!("exittok-{unique}-0123456789abcdef");
    let server = FaultServer::start(hostile(&format!(
        r#"{{"access_token":"{token}","token_type":"Bearer","expires_in":600}}"#
    )));
    let mut agent = env.foreground_agent(&env.default_socket());
    env.add_open_profile("mem", &server.token_url(), &[]);
    assert_eq!(env.ok(&["token", "mem"]).trim(), token);
    assert_ne!(in_memory(agent.pid(), &[&token]), Vec::<String>::new());
    // gdb (as root: the agent is not dumpable) holds the agent at its exit,
    // after every drop, with its memory still there to read; the test lets
    // it go on once it has looked.
    let (stopped, go_on) = (env.path("at-exit"), env.path("go-on"));
    let hold = format!(
        "shell touch {}; while [ ! -e {} ]; do sleep 0.05; done",
        stopped.display(),
        go_on.display()
    );
    let mut held = Command::new(gdb)
        .args(["-nx", "-batch", "-p", &agent.pid().to_string()])
        .args(["-ex", "catch syscall exit_group", "-ex", "continue"])
        .args(["-ex", &hold, "-ex", "continue"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut said = std::io::BufReader::new(held.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("Catchpoint 1") {
        line.clear();
        assert_ne!(said.read_line(&mut line).unwrap(), 0, "gdb did not attach");
    }
    // Asked over the socket: `jwtagent stop` would wait for an exit that
    // gdb holds.
    let stop = agent_call(&env.default_socket(), r#"{"id":1,"op":"stop"}"#).unwrap();
    assert_eq!(stop["ok"], true, "{stop}");
    wait_until("the agent is at its exit", || stopped.exists());
    let left = in_memory(agent.pid(), &[&token]);
    std::fs::write(&go_on, b"").unwrap();
    let _ = held.wait();
    assert!(agent.wait_exit().success());
    assert_eq!(
        left,
        Vec::<String>::new(),
        "the token outlived the agent's shutdown"
    );
}
