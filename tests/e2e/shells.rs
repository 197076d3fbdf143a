//! The `env` output is accepted by each shell it claims to support, with a socket
//! path that needs quoting.

use crate::common::*;
use std::process::Command;

/// A socket path with a space, a single quote and a `!`: all need quoting.
fn awkward_socket(env: &TestEnv) -> std::path::PathBuf {
    let dir = env.path("it's a dir!");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    dir.join("agent.sock")
}

fn check_shell(
    shell_flag: &str,
    program: &str,
    package: &str,
    args_before_script: &[&str],
    echo: &str,
) {
    let shell = require_tool(program, package);
    let env = TestEnv::new();
    let socket = awkward_socket(&env);
    let script = env.ok(&[
        "env",
        "--shell",
        shell_flag,
        "--socket",
        socket.to_str().unwrap(),
    ]);
    let pid = hello(&socket).unwrap()["pid"].as_u64().unwrap();
    let out = Command::new(shell)
        .args(args_before_script)
        .arg(format!("{script}\n{echo}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{program} rejected:\n{script}\n{}",
        stderr_of(&out)
    );
    let printed = String::from_utf8(out.stdout).unwrap();
    let mut lines = printed.lines();
    assert_eq!(
        lines.next(),
        Some(socket.to_str().unwrap()),
        "{program}: {script}"
    );
    assert_eq!(lines.next(), Some(pid.to_string().as_str()));
}

#[test]
fn sh_accepts_env_output() {
    check_shell(
        "sh",
        "sh",
        "dash",
        &["-c"],
        "printf '%s\\n' \"$JWTAGENT_SOCK\" \"$JWTAGENT_PID\"",
    );
}

#[test]
fn csh_accepts_env_output() {
    check_shell(
        "csh",
        "csh",
        "csh",
        &["-f", "-c"],
        "printf '%s\\n' \"$JWTAGENT_SOCK\" \"$JWTAGENT_PID\"",
    );
}

#[test]
fn fish_accepts_env_output() {
    check_shell(
        "fish",
        "fish",
        "fish",
        &["--no-config", "-c"],
        "printf '%s\\n' \"$JWTAGENT_SOCK\" \"$JWTAGENT_PID\"",
    );
}

#[test]
fn shell_is_guessed_from_the_shell_variable() {
    let env = TestEnv::new();
    env.ok(&["env"]);
    let out = env
        .cmd(&["env"])
        .env("SHELL", "/usr/bin/fish")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("set -gx JWTAGENT_SOCK "));
    let out = env
        .cmd(&["env"])
        .env("SHELL", "/bin/tcsh")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("setenv JWTAGENT_SOCK "));
}
