//! The agent on a remote host over SSH: `ssh -R REMOTE_SOCKET:LOCAL_SOCKET`
//! (OpenSSH stream-local forwarding) against a real OpenSSH server on
//! loopback, with its own host key and an authorized key for this user.

use crate::common::*;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// A running sshd, and the key that logs in to it.
struct Sshd {
    child: Child,
    port: u16,
    user_key: PathBuf,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn keygen(path: &std::path::Path) {
    let keygen = require_tool("ssh-keygen", "openssh-client");
    let out = Command::new(keygen)
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
}

fn start_sshd(env: &TestEnv) -> Sshd {
    // sbin may be missing from a user's PATH.
    let sbin = std::path::Path::new("/usr/sbin/sshd");
    let sshd = if sbin.is_file() {
        sbin.to_path_buf()
    } else {
        require_tool("sshd", "openssh-server")
    };
    assert!(
        rustix::process::geteuid().is_root(),
        "this test must run as root: sshd changes to the user it logs in"
    );
    let dir = env.path("ssh");
    std::fs::create_dir(&dir).unwrap();
    let (host_key, user_key) = (dir.join("host_key"), dir.join("user_key"));
    keygen(&host_key);
    keygen(&user_key);
    let authorized = dir.join("authorized_keys");
    std::fs::copy(dir.join("user_key.pub"), &authorized).unwrap();
    // sshd's privilege separation needs its empty directory.
    std::fs::create_dir_all("/run/sshd").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\n\
             PidFile {}\nStrictModes no\nUsePAM no\nPermitRootLogin prohibit-password\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             AllowStreamLocalForwarding yes\nStreamLocalBindUnlink yes\nStreamLocalBindMask 0177\n\
             LogLevel ERROR\n",
            host_key.display(),
            authorized.display(),
            dir.join("sshd.pid").display(),
        ),
    )
    .unwrap();
    let child = Command::new(sshd)
        .args(["-D", "-e", "-f"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("sshd listens", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    Sshd {
        child,
        port,
        user_key,
    }
}

/// `ssh -R remote:local` to `sshd`, as the README's recipe runs it, held
/// open (`-N`) until dropped.
struct Forward(Child);

impl Drop for Forward {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn forward(env: &TestEnv, sshd: &Sshd, remote: &std::path::Path) -> Forward {
    let ssh = require_tool("ssh", "openssh-client");
    let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
    let child = env
        .command(ssh)
        .args(["-F", "/dev/null", "-N", "-T"])
        .args(["-o", "BatchMode=yes", "-o", "ExitOnForwardFailure=yes"])
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
        ])
        .args(["-o", "LogLevel=ERROR", "-i"])
        .arg(&sshd.user_key)
        .args(["-p", &sshd.port.to_string()])
        .arg("-R")
        .arg(format!(
            "{}:{}",
            remote.display(),
            env.default_socket().display()
        ))
        .arg(format!("{user}@127.0.0.1"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the forwarded socket exists on the remote side", || {
        remote.exists()
    });
    Forward(child)
}

#[test]
fn a_forwarded_agent_serves_remote_commands_but_not_no_forward_profiles() {
    let env = TestEnv::new();
    let oidc = open_provider(&env, 600);
    env.add_open_profile("shared", &oidc.token_endpoint(), &[]);
    env.add_open_profile("laptop-only", &oidc.token_endpoint(), &["--no-forward"]);
    let local = env.ok(&["token", "shared"]);
    env.ok(&["token", "laptop-only"]);

    let sshd = start_sshd(&env);
    let remote_dir = private_dir();
    let remote = remote_dir.path().join("jwtagent.sock");
    let _forward = forward(&env, &sshd, &remote);
    let remote_arg = remote.to_str().unwrap();

    // On the remote side: `env` points at the forwarded socket and starts
    // nothing; tokens come from the laptop's agent (the same cached one).
    // The laptop agent's pid means nothing there, and it is not stopped
    // from there.
    let script = env.ok(&["env", "--socket", remote_arg, "--no-start"]);
    assert!(script.contains(remote_arg), "{script}");
    assert!(!script.contains("JWTAGENT_PID"), "{script}");
    let out = env.run(&["--socket", remote_arg, "stop"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert!(
        err.contains("`stop` is refused over SSH forwarding"),
        "{err}"
    );
    assert!(hello(&env.default_socket()).is_some(), "the agent stopped");
    assert_eq!(env.ok(&["--socket", remote_arg, "token", "shared"]), local);
    // A --no-forward profile stays on the laptop.
    let out = env.run(&["--socket", remote_arg, "token", "laptop-only"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert!(
        err.contains("denied") && err.contains("--no-forward") && err.contains("/ssh"),
        "{err}"
    );
    env.ok(&["token", "laptop-only"]);
    // The audit log says who asked: ssh, for the forwarded requests.
    env.audit_until("the forwarded requests audited as ssh's", |records| {
        let forwarded = |profile: &str, outcome: &str| {
            records.iter().any(|r| {
                r["exe"].as_str().is_some_and(|e| e.ends_with("/ssh"))
                    && r["profile"] == profile
                    && r["outcome"] == outcome
            })
        };
        forwarded("shared", "ok") && forwarded("laptop-only", "denied")
    });
}

#[test]
fn a_forwarded_connection_reads_and_cannot_launder_or_administer() {
    let env = TestEnv::new();
    let oidc = open_provider(&env, 600);
    env.add_open_profile("laptop-only", &oidc.token_endpoint(), &["--no-forward"]);
    // Made from it on the laptop: served there, and never over forwarding.
    let evil = FaultServer::start(Fault::Ok { lifetime: 600 });
    env.add_open_profile(
        "derived",
        &evil.token_url(),
        &[
            "--grant",
            "token-exchange",
            "--subject-profile",
            "laptop-only",
        ],
    );
    let sshd = start_sshd(&env);
    let remote_dir = private_dir();
    let remote = remote_dir.path().join("jwtagent.sock");
    let _forward = forward(&env, &sshd, &remote);
    let remote_arg = remote.to_str().unwrap();
    let remote_run = |args: &[&str]| {
        let mut all = vec!["--socket", remote_arg];
        all.extend_from_slice(args);
        env.run(&all)
    };
    // From the remote side: a profile fed by the protected one, whose token
    // endpoint is the attacker's.
    let evil_url = evil.token_url();
    let add_launder = || {
        remote_run(&[
            "add",
            "launder",
            "--no-verify",
            "--token-url",
            &evil_url,
            "--client-id",
            "c",
            "--auth",
            "none",
            "--grant",
            "token-exchange",
            "--subject-profile",
            "laptop-only",
        ])
    };

    // Reading works.
    assert!(remote_run(&["list"]).status.success());
    assert!(remote_run(&["status"]).status.success());
    // A derived profile does not carry the --no-forward token over.
    let out = remote_run(&["token", "derived"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert!(
        err.contains("profile \"laptop-only\"") && err.contains("--no-forward"),
        "{err}"
    );
    assert_eq!(evil.requests(), 0);

    // Nothing that changes the agent: not a profile fed by the protected
    // one, not a removal, not the lock.
    let launder = add_launder();
    let remove = remote_run(&["remove", "laptop-only"]);
    let lock = env.run_with_stdin(
        &["--socket", remote_arg, "lock", "--passphrase-stdin"],
        b"remote-pass\n",
    );
    for (what, out) in [("add", &launder), ("remove", &remove), ("lock", &lock)] {
        assert_eq!(out.status.code(), Some(1), "{what}: {}", stderr_of(out));
        let err = stderr_of(out);
        assert!(
            err.contains("refused over SSH forwarding") && err.contains("read-only"),
            "{what}: {err}"
        );
    }
    let list = env.ok(&["list"]);
    assert!(
        list.contains("laptop-only") && !list.contains("launder"),
        "{list}"
    );
    env.ok(&["token", "laptop-only"]);
    assert_eq!(evil.requests(), 0);
    // Each refusal is audited with the profile it was for.
    env.audit_until("the refused remove audited with its profile", |records| {
        records.iter().any(|r| {
            r["op"] == "remove" && r["profile"] == "laptop-only" && r["outcome"] == "denied"
        })
    });

    // An agent started to allow more over forwarding still refuses the
    // laundering profile: its input does not serve forwarded callers.
    env.ok(&["stop"]);
    let mut admin = env.cmd(&["agent", "--allow-forwarded-admin"]);
    let out = admin.output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let launder = add_launder();
    assert_eq!(launder.status.code(), Some(1));
    let err = stderr_of(&launder);
    assert!(
        err.contains("profile \"laptop-only\"") && err.contains("--no-forward"),
        "{err}"
    );
    env.audit_until("the refused add audited naming its input", |records| {
        records
            .iter()
            .any(|r| r["op"] == "add" && r["profile"] == "launder" && r["input"] == "laptop-only")
    });
}
