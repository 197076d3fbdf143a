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
    let mut cmd = env.cmd(&[]);
    let inner = std::mem::replace(&mut cmd, std::process::Command::new(setpriv));
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
    for (k, v) in inner.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
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
