//! Starting, finding, reusing and stopping the agent.

use crate::common::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

#[test]
fn env_starts_an_agent_and_a_second_env_reuses_it() {
    let env = TestEnv::new();
    let first = env.ok(&["env"]);
    let pid = pid_from_env_script(&first);
    assert!(process_alive(pid));
    assert!(first.contains(&format!(
        "JWTAGENT_SOCK='{}'; export JWTAGENT_SOCK;",
        env.default_socket().display()
    )));
    let second = env.ok(&["env"]);
    assert_eq!(
        pid_from_env_script(&second),
        pid,
        "the live agent is reused"
    );
}

#[test]
fn concurrent_env_commands_start_exactly_one_agent() {
    let env = TestEnv::new();
    let children: Vec<_> = (0..8)
        .map(|_| {
            env.cmd(&["env"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let pids: Vec<u32> = children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert!(out.status.success(), "env failed: {}", stderr_of(&out));
            pid_from_env_script(&String::from_utf8(out.stdout).unwrap())
        })
        .collect();
    assert!(
        pids.iter().all(|&p| p == pids[0]),
        "all env commands must report one agent: {pids:?}"
    );
}

#[test]
fn after_kill_9_env_starts_a_new_agent_on_the_same_path() {
    let env = TestEnv::new();
    let old = pid_from_env_script(&env.ok(&["env"]));
    kill_9(old, &env.default_socket());
    assert!(
        env.default_socket().exists(),
        "kill -9 leaves a stale socket file behind"
    );
    let new = pid_from_env_script(&env.ok(&["env"]));
    assert_ne!(new, old);
    assert_eq!(hello(&env.default_socket()).unwrap()["pid"], new);
}

#[test]
fn env_no_start_without_agent_exits_3_and_starts_nothing() {
    let env = TestEnv::new();
    let out = env.run(&["env", "--no-start"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr_of(&out));
    assert!(!env.default_socket().exists());
}

#[test]
fn second_agent_on_a_live_socket_fails_and_the_first_keeps_serving() {
    let env = TestEnv::new();
    let socket = env.path("a.sock");
    let first = env.foreground_agent(&socket);
    let out = env.run(&["agent", "-D", "--socket", socket.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr_of(&out);
    assert!(
        err.contains("already running") && err.contains(&format!("pid {}", first.pid())),
        "{err}"
    );
    // Detached start reports the same and fails too.
    let out = env.run(&["agent", "--socket", socket.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr_of(&out).contains("already running"));
    assert_eq!(hello(&socket).unwrap()["pid"], first.pid());
}

#[test]
fn detached_agent_accepts_connections_as_soon_as_the_command_returns() {
    let env = TestEnv::new();
    let socket = env.path("d.sock");
    let out = env.run(&["agent", "--socket", socket.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    // No polling: the parent returned only once the socket was listening.
    let hello = hello(&socket).expect("the agent answers immediately");
    assert_eq!(hello["ok"], true);
    assert!(stderr_of(&out).contains(&format!("pid {}", hello["pid"])));
}

#[test]
fn detached_agent_reports_its_startup_error_and_exits_non_zero() {
    let env = TestEnv::new();
    let socket = env.path("missing-parent/deeper/a.sock");
    let out = env.run(&["agent", "--socket", socket.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert!(
        err.contains("cannot create socket directory") && err.contains("missing-parent"),
        "{err}"
    );
}

#[test]
fn socket_directory_is_0700_and_socket_is_0600() {
    let env = TestEnv::new();
    env.ok(&["env"]);
    let dir = env.default_socket().parent().unwrap().to_path_buf();
    let dmeta = std::fs::symlink_metadata(&dir).unwrap();
    assert!(dmeta.is_dir());
    assert_eq!(dmeta.permissions().mode() & 0o777, 0o700);
    assert_eq!(dmeta.uid(), rustix::process::geteuid().as_raw());
    let smeta = std::fs::symlink_metadata(env.default_socket()).unwrap();
    assert_eq!(smeta.permissions().mode() & 0o777, 0o600);
}

#[test]
fn group_or_world_accessible_socket_directory_is_refused() {
    let env = TestEnv::new();
    let dir = env.path("open");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let socket = dir.join("a.sock");
    let out = env.run(&["agent", "-D", "--socket", socket.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert!(
        err.contains(dir.to_str().unwrap()) && err.contains("0755") && err.contains("chmod 700"),
        "{err}"
    );
    assert!(!socket.exists());
}

#[test]
fn symlinked_socket_directory_is_refused() {
    let env = TestEnv::new();
    let real = env.path("real");
    std::fs::create_dir(&real).unwrap();
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o700)).unwrap();
    let link = env.path("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let out = env.run(&[
        "agent",
        "-D",
        "--socket",
        link.join("a.sock").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert!(
        err.contains("symbolic link") && err.contains("link"),
        "{err}"
    );
}

#[test]
fn socket_directory_owned_by_another_user_is_refused() {
    if !rustix::process::geteuid().is_root() {
        panic!("this test must run as root (it chowns a directory to uid 65534)");
    }
    let env = TestEnv::new();
    let dir = env.path("theirs");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
    let out = env.run(&[
        "agent",
        "-D",
        "--socket",
        dir.join("a.sock").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert!(err.contains("owned by uid 65534"), "{err}");
}

#[test]
fn sigterm_shuts_down_cleanly_and_removes_the_socket() {
    let env = TestEnv::new();
    let socket = env.path("t.sock");
    let mut agent = env.foreground_agent(&socket);
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(agent.pid() as i32).unwrap(),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let status = agent.wait_exit();
    assert!(status.success(), "clean exit on SIGTERM, got {status}");
    assert!(!socket.exists(), "socket file removed");
    assert!(agent.log_text().contains("SIGTERM"));
}

#[test]
fn sigint_shuts_down_cleanly_and_removes_the_socket() {
    let env = TestEnv::new();
    let socket = env.path("i.sock");
    let mut agent = env.foreground_agent(&socket);
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(agent.pid() as i32).unwrap(),
        rustix::process::Signal::INT,
    )
    .unwrap();
    assert!(agent.wait_exit().success());
    assert!(!socket.exists());
}

#[test]
fn stop_ends_the_agent_and_prints_unset_lines() {
    let env = TestEnv::new();
    let pid = pid_from_env_script(&env.ok(&["env"]));
    let out = env.ok(&["stop"]);
    assert_eq!(out, "unset JWTAGENT_SOCK;\nunset JWTAGENT_PID;\n");
    // `stop` returns once the agent is gone.
    assert!(!process_alive(pid));
    assert!(!env.default_socket().exists());
}

#[test]
fn stop_prints_unset_lines_for_csh_and_fish() {
    let env = TestEnv::new();
    env.ok(&["env"]);
    assert_eq!(
        env.ok(&["stop", "--shell", "csh"]),
        "unsetenv JWTAGENT_SOCK;\nunsetenv JWTAGENT_PID;\n"
    );
    env.ok(&["env"]);
    assert_eq!(
        env.ok(&["stop", "--shell", "fish"]),
        "set -e JWTAGENT_SOCK;\nset -e JWTAGENT_PID;\n"
    );
}

#[test]
fn stop_then_env_starts_a_fresh_agent() {
    let env = TestEnv::new();
    let old = pid_from_env_script(&env.ok(&["env"]));
    env.ok(&["stop"]);
    let new = pid_from_env_script(&env.ok(&["env"]));
    assert_ne!(old, new);
}

#[test]
fn status_without_an_agent_exits_3_naming_the_socket_and_how_to_start_one() {
    let env = TestEnv::new();
    let out = env.run(&["status"]);
    assert_eq!(out.status.code(), Some(3));
    let err = stderr_of(&out);
    assert!(
        err.contains(env.default_socket().to_str().unwrap()),
        "{err}"
    );
    assert!(err.contains("jwtagent env"), "{err}");
    assert!(
        !env.default_socket().exists(),
        "status never starts an agent"
    );
}

#[test]
fn stop_without_an_agent_exits_3() {
    let env = TestEnv::new();
    assert_eq!(env.run(&["stop"]).status.code(), Some(3));
}

#[test]
fn status_reports_pid_version_socket_and_uptime() {
    let env = TestEnv::new();
    let pid = pid_from_env_script(&env.ok(&["env"]));
    let json: serde_json::Value = serde_json::from_str(&env.ok(&["status", "--json"])).unwrap();
    assert_eq!(json["pid"], pid);
    assert_eq!(json["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(json["socket"], env.default_socket().to_str().unwrap());
    assert!(json["uptime_secs"].is_u64());
    assert_eq!(json["locked"], false);
    let text = env.ok(&["status"]);
    assert!(text.contains(&format!("pid {pid}")), "{text}");
    assert!(text.contains(env.default_socket().to_str().unwrap()));
}

#[test]
fn explicit_socket_that_does_not_answer_exits_3_and_is_not_started() {
    let env = TestEnv::new();
    let socket = env.path("nobody.sock");
    let out = env
        .cmd(&["status"])
        .env("JWTAGENT_SOCK", &socket)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr_of(&out).contains(socket.to_str().unwrap()));
    assert!(!socket.exists());
}

#[test]
fn env_honours_jwtagent_sock_and_socket_flag() {
    let env = TestEnv::new();
    let via_env = env.path("e.sock");
    let out = env
        .cmd(&["env"])
        .env("JWTAGENT_SOCK", &via_env)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(hello(&via_env).is_some());
    let via_flag = env.path("f.sock");
    env.ok(&["env", "--socket", via_flag.to_str().unwrap()]);
    assert!(hello(&via_flag).is_some());
    assert!(!env.default_socket().exists());
}

#[test]
fn agent_is_not_dumpable_and_has_no_core_limit() {
    let env = TestEnv::new();
    let agent = env.foreground_agent(&env.path("n.sock"));
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", agent.pid())).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    let fields: Vec<&str> = core.split_whitespace().collect();
    assert_eq!(&fields[4..6], ["0", "0"], "{core}");
    // Not dumpable: a process of the same uid and capabilities cannot read
    // its memory or environment, while it can read those of an ordinary
    // process (the control). All three run without capabilities: the
    // kernel lets a process read another's only when it holds every
    // capability the other has, unless the other is not dumpable.
    let setpriv = require_tool("setpriv", "util-linux");
    let capless = |program: &str| {
        let mut cmd = env.command(&setpriv);
        cmd.args(["--inh-caps=-all", "--bounding-set=-all", program]);
        cmd
    };
    let read_environ = |pid: u32| {
        capless("cat")
            .arg(format!("/proc/{pid}/environ"))
            .output()
            .unwrap()
    };
    let mut control = capless("sleep").arg("30").spawn().unwrap();
    let socket = env.path("capless.sock");
    let mut capless_agent = capless(bin())
        .args(["agent", "-D", "--socket", socket.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the capless agent answers", || hello(&socket).is_some());
    let readable = read_environ(control.id());
    let agent_environ = read_environ(capless_agent.id());
    for child in [&mut control, &mut capless_agent] {
        let _ = child.kill();
        let _ = child.wait();
    }
    assert!(
        readable.status.success(),
        "control: {}",
        stderr_of(&readable)
    );
    assert!(
        !agent_environ.status.success() && stderr_of(&agent_environ).contains("Permission denied"),
        "the agent's environment was readable: {}",
        stderr_of(&agent_environ)
    );
}

/// An ELF file's type (2: fixed-position executable, 3: position-independent)
/// and whether it names a program interpreter (the dynamic loader). Reads
/// the header and the program headers only (the debug binaries are 200 MB).
fn elf_kind(path: &std::path::Path) -> (u16, bool) {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path).unwrap();
    let mut head = [0u8; 64];
    file.read_exact(&mut head).unwrap();
    assert_eq!(&head[..4], b"\x7fELF", "{} is not ELF", path.display());
    let u16_at = |b: &[u8], at: usize| u16::from_le_bytes([b[at], b[at + 1]]);
    let offset = u64::from_le_bytes(head[0x20..0x28].try_into().unwrap());
    let (size, count) = (
        usize::from(u16_at(&head, 0x36)),
        usize::from(u16_at(&head, 0x38)),
    );
    let mut table = vec![0u8; size * count];
    file.seek(SeekFrom::Start(offset)).unwrap();
    file.read_exact(&mut table).unwrap();
    const PT_INTERP: u32 = 3;
    let interpreter = table
        .chunks_exact(size)
        .any(|entry| u32::from_le_bytes(entry[..4].try_into().unwrap()) == PT_INTERP);
    (u16_at(&head, 16), interpreter)
}

#[test]
fn the_agent_runs_from_its_position_independent_binary_and_the_cli_is_static() {
    let env = TestEnv::new();
    // Started by `env` (detached) and in the foreground: both run
    // jwtagent-agent, with the pid the caller was told.
    let detached = pid_from_env_script(&env.ok(&["env"]));
    let foreground = env.foreground_agent(&env.path("fg.sock"));
    for pid in [detached, foreground.pid()] {
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
        assert!(exe.ends_with("jwtagent-agent"), "{}", exe.display());
        assert_eq!(
            elf_kind(&exe),
            (3, true),
            "the agent is position-independent"
        );
        // Nor does it load the C math library: its `pow` is its own
        // (agent/src/sys.rs), and libm.so would cost 0.55 MiB resident.
        let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
        assert!(!maps.contains("/libm.so"), "{maps}");
    }
    assert_eq!(hello(&env.path("fg.sock")).unwrap()["ok"], true);
    assert_eq!(
        elf_kind(std::path::Path::new(bin())),
        (2, false),
        "the CLI is a static, fixed-position executable (cli/build.rs; needs libc6-dev's libc.a)"
    );
}

#[test]
fn without_jwtagent_agent_beside_it_jwtagent_says_what_to_install() {
    let env = TestEnv::new();
    let alone = env.path("alone/jwtagent");
    std::fs::create_dir(alone.parent().unwrap()).unwrap();
    std::fs::copy(bin(), &alone).unwrap();
    let missing = env.path("alone/jwtagent-agent");
    for args in [&["env"][..], &["agent"], &["agent", "-D"], &["token", "p"]] {
        let out = output_of_copy(env.command(&alone).args(args));
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = stderr_of(&out);
        assert!(
            err.contains(&format!("{} is missing", missing.display()))
                && err.contains("cargo install --locked --path cli"),
            "{args:?}: {err}"
        );
    }
    assert!(!env.default_socket().exists());
}

#[test]
fn the_cli_opens_dev_null_on_closed_standard_descriptors() {
    // Else the first descriptor it opens (the agent's socket) would become
    // its stdout. `exec` shows what the CLI's stdout is: its command
    // inherits it.
    let env = TestEnv::new();
    let server = open_provider(&env, 600);
    env.add_open_profile("p", &server.token_endpoint(), &[]);
    let out = env
        .command("sh")
        .args([
            "-c",
            r#""$0" exec p -- sh -c 'fd=$(readlink /proc/$$/fd/1); echo "$fd" >&2' >&-"#,
            bin(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(stderr_of(&out).trim(), "/dev/null");
}

#[test]
fn a_closed_pipe_on_stdout_is_not_the_cli_s_death() {
    // Shells start commands with SIGPIPE at its default (death), as the
    // test's own process does not have it.
    let env = TestEnv::new();
    let server = open_provider(&env, 600);
    env.add_open_profile("p", &server.token_endpoint(), &[]);
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut cmd = env.cmd(&["token", "p"]);
    cmd.stdout(writer);
    // SAFETY: between fork and exec, one async-signal-safe call.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    // A broken pipe counts as success (output.rs), like `jwtagent status | head -1`.
    assert_eq!(
        out.status.code(),
        Some(0),
        "{:?} {}",
        out.status,
        stderr_of(&out)
    );
}

#[test]
fn without_home_the_config_is_found_through_xdg_or_named_by_the_error() {
    let env = TestEnv::new();
    // XDG_CONFIG_HOME alone is enough: an agent started without HOME keeps
    // its profiles there.
    pid_from_env_script(&{
        let out = env.cmd(&["env"]).env_remove("HOME").output().unwrap();
        assert!(out.status.success(), "{}", stderr_of(&out));
        String::from_utf8(out.stdout).unwrap()
    });
    env.ok(&[
        "add",
        "p",
        "--no-verify",
        "--token-url",
        "https://idp.example/t",
        "--client-id",
        "c",
        "--auth",
        "none",
    ]);
    assert!(env.path("config/jwtagent/profiles.toml").is_file());
    // Neither: the error says what to set (the user database is not asked).
    // Detached, so that an agent that does start is reported at once, not
    // waited for.
    let out = env
        .cmd(&["agent", "--socket"])
        .arg(env.path("none.sock"))
        .env_remove("HOME")
        .env_remove("XDG_CONFIG_HOME")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr_of(&out).contains("set HOME or JWTAGENT_CONFIG"),
        "{}",
        stderr_of(&out)
    );
}

#[test]
fn status_points_out_a_jwtagent_pid_that_names_another_agent() {
    let env = TestEnv::new();
    env.ok(&["env"]);
    let status: serde_json::Value = serde_json::from_str(&env.ok(&["status", "--json"])).unwrap();
    let pid = status["pid"].as_u64().unwrap().to_string();
    let with_pid = |named: &str| {
        let out = env
            .cmd(&["status"])
            .env("JWTAGENT_PID", named)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr_of(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    assert!(!with_pid(&pid).contains("JWTAGENT_PID"));
    // The shell's variable is from an agent since replaced.
    let stale = with_pid("1");
    assert!(
        stale.contains("JWTAGENT_PID in this shell is 1") && stale.contains("jwtagent env"),
        "{stale}"
    );
}
