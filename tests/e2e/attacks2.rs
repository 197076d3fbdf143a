//! The second attack round (issue 26), reproduced end to end: each test
//! failed on the code before its fix. Derived profiles and forwarding have
//! their own files (chains.rs, ssh.rs).

use crate::common::*;
use std::io::Write;

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
    let out = output_of_copy(env.command(&exe).args(["token", "nosuch"]));
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

/// Connects to the agent, sends the request `argv[2]` (one for a token),
/// then (before the answer) execs `/bin/sh`, which hands the connection to
/// `head`: the answer goes to a program the profile does not allow.
const EXEC_AFTER_WRITE: &str = r#"
import os, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
# Once hello is answered, the agent has looked at who connected: python.
s.sendall(b'{"id":6,"op":"hello"}\n')
answer = b""
while not answer.endswith(b"\n"):
    answer += s.recv(1)
s.sendall(sys.argv[2].encode() + b"\n")
os.dup2(s.fileno(), 9)
os.set_inheritable(9, True)
os.execv("/bin/sh", ["sh", "-c", "exec head -n 1 <&9"])
"#;

#[test]
fn an_exec_between_request_and_answer_gets_nothing() {
    exec_between_request_and_answer(r#"{"id":7,"op":"token","name":"guarded"}"#, &[]);
}

/// The same for a DPoP proof: its answer holds the token too.
#[test]
fn an_exec_between_a_dpop_proof_request_and_its_answer_gets_nothing() {
    exec_between_request_and_answer(
        r#"{"id":7,"op":"dpop_proof","name":"guarded","method":"GET","url":"https://api.example/"}"#,
        &["--dpop"],
    );
}

fn exec_between_request_and_answer(request: &str, extra: &[&str]) {
    let env = TestEnv::new();
    let python = std::path::Path::new("/usr/bin/python3");
    assert!(
        python.exists(),
        "this test needs /usr/bin/python3: apt-get install -y python3"
    );
    let server = FaultServer::start(Fault::Held { lifetime: 600 });
    let args = [&["--allow-exe", "/usr/bin/python3"], extra].concat();
    env.add_open_profile("guarded", &server.token_url(), &args);
    let child = env
        .command(python)
        .args(["-c", EXEC_AFTER_WRITE])
        .arg(env.default_socket())
        .arg(request)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    // The agent admitted python and asks the server; python has exec'd.
    wait_until(
        "the token request reached the server and python exec'd",
        || {
            server.requests() == 1
                && std::fs::read_link(format!("/proc/{pid}/exe"))
                    .is_ok_and(|exe| !exe.to_string_lossy().contains("python"))
        },
    );
    server.set(Fault::Ok { lifetime: 600 });
    let out = child.wait_with_output().unwrap();
    let answer = String::from_utf8_lossy(&out.stdout);
    assert!(
        !answer.contains("fault-token"),
        "the token reached the exec'd program: {answer}"
    );
    assert!(
        answer.contains(r#""id":7"#) && answer.contains("denied") && answer.contains("exec"),
        "{answer}"
    );
    env.audit_until("the withheld answer audited", |records| {
        records
            .iter()
            .any(|r| r["op"] == "answer" && r["profile"] == "guarded" && r["outcome"] == "denied")
    });
    // python itself, which stays python, is served.
    let asked = env
        .command(python)
        .args(["-c", "import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(sys.argv[2].encode() + b'\\n'); print(s.makefile().readline())"])
        .arg(env.default_socket())
        .arg(request)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&asked.stdout).contains("fault-token"),
        "{asked:?}"
    );
}

#[test]
fn the_allowed_executable_is_a_file_not_a_path_and_not_a_name() {
    let env = TestEnv::new();
    let server = FaultServer::start(Fault::Ok { lifetime: 600 });
    let unshare = require_tool("unshare", "util-linux");
    assert!(
        rustix::process::geteuid().is_root(),
        "this test must run as root (it bind-mounts)"
    );
    // Two copies of the CLI with the same name; one of them allowed.
    let allowed = env.path("allowed/jwtagent");
    let other = env.path("other/jwtagent");
    for copy in [&allowed, &other] {
        std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
        std::fs::copy(bin(), copy).unwrap();
    }
    let allowed_arg = allowed.to_str().unwrap();
    env.add_open_profile(
        "guarded",
        &server.token_url(),
        &["--allow-exe", allowed_arg],
    );
    env.add_open_profile(
        "contained",
        &server.token_url(),
        &["--allow-exe", allowed_arg, "--allow-exe-any-namespace"],
    );
    let run = |exe: &std::path::Path, profile: &str| {
        output_of_copy(env.command(exe).args(["token", profile]))
    };
    assert!(run(&allowed, "guarded").status.success());
    let out = run(&other, "guarded");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr_of(&out).contains("runs none of the files"),
        "{}",
        stderr_of(&out)
    );
    // In a mount namespace of its own, the other copy bind-mounted over the
    // allowed path: /proc/PID/exe names the allowed path.
    let in_namespace = |profile: &str, bind: bool| {
        let script = format!(
            "{}exec {allowed_arg} token {profile}",
            if bind {
                format!("mount --bind {} {allowed_arg} && ", other.display())
            } else {
                String::new()
            }
        );
        env.command(&unshare)
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .output()
            .unwrap()
    };
    let out = in_namespace("guarded", true);
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("another mount or user namespace"),
        "{}",
        stderr_of(&out)
    );
    let out = in_namespace("contained", true);
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("runs none of the files"),
        "{}",
        stderr_of(&out)
    );
    // The real file, from another namespace, where the profile allows that.
    let out = in_namespace("contained", false);
    assert!(out.status.success(), "{}", stderr_of(&out));

    // A content pin: the file as it is passes; changed in place (same
    // inode), it no longer does.
    let digest = std::process::Command::new("sha256sum")
        .arg(&allowed)
        .output()
        .unwrap();
    let digest = String::from_utf8(digest.stdout).unwrap();
    let digest = digest.split_whitespace().next().unwrap().to_string();
    env.add_open_profile(
        "pinned",
        &server.token_url(),
        &["--allow-exe", allowed_arg, "--allow-exe-sha256", &digest],
    );
    assert!(run(&allowed, "pinned").status.success());
    std::fs::OpenOptions::new()
        .append(true)
        .open(&allowed)
        .unwrap()
        .write_all(b"\0")
        .unwrap();
    let out = run(&allowed, "pinned");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_of(&out).contains("SHA-256"), "{}", stderr_of(&out));
}
