//! ssh-agent's controls: a profile's lifetime (`--lifetime`, `renew`) and
//! confirmation on use (`--confirm`, through an askpass program).

use crate::common::*;
use serde_json::Value;

fn status_of(env: &TestEnv, name: &str) -> Value {
    env.profile_status(name)
}

fn audit_ops(env: &TestEnv, op: &str, outcome: &str) -> usize {
    let out = env.ok(&["audit", "--json"]);
    out.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["op"] == op && r["outcome"] == outcome)
        .count()
}

#[test]
fn a_lifetime_runs_out_then_the_profile_is_refused_until_renewed() {
    let env = TestEnv::new();
    let server = open_provider(&env, 600);
    env.add_open_profile("api", &server.token_endpoint(), &["--lifetime", "3s"]);
    env.ok(&["token", "api"]);
    let left = status_of(&env, "api")["lifetime_left_secs"]
        .as_u64()
        .unwrap();
    assert!((1..=3).contains(&left), "{left}");
    assert!(env.ok(&["show", "api"]).contains("lifetime        3s ("));

    // Run out: refused with its own code, and its tokens are gone.
    let err = env.run_until_refused("the lifetime runs out", &["token", "api"]);
    assert!(
        err.contains("expired_lifetime") && err.contains("jwtagent renew api"),
        "{err}"
    );
    wait_until("the lifetime's end is recorded", || {
        audit_ops(&env, "lifetime_expired", "ok") == 1
    });
    let status = status_of(&env, "api");
    assert_eq!(status["lifetime_left_secs"], 0, "{status}");
    assert!(status["tokens"].as_array().unwrap().is_empty(), "{status}");
    assert!(
        env.ok(&["status"])
            .contains("LIFETIME RAN OUT (jwtagent renew api)")
    );

    // Renewed: served again, for the lifetime.
    let out = env.ok(&["renew", "api"]);
    assert!(out.contains("served for 3s"), "{out}");
    env.ok(&["token", "api"]);
    // An agent started since does not serve it until renewed.
    env.ok(&["stop"]);
    let out = env.run(&["token", "api"]);
    assert!(
        stderr_of(&out).contains("expired_lifetime"),
        "{}",
        stderr_of(&out)
    );
    env.ok(&["renew", "api"]);
    env.ok(&["token", "api"]);
    // A profile without a lifetime has none to renew.
    env.add_open_profile("plain", &server.token_endpoint(), &[]);
    let out = env.run(&["renew", "plain"]);
    assert!(
        stderr_of(&out).contains("no lifetime"),
        "{}",
        stderr_of(&out)
    );
}

#[test]
fn lifetime_remove_deletes_the_secret_and_the_agents_lifetime_is_the_default() {
    let env = TestEnv::new();
    let out = env.cmd(&["agent", "--lifetime", "1h"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let out = output_with_stdin(
        &mut env.add_cmd(
            "svc",
            "https://127.0.0.1:1/token",
            "client_secret_basic",
            &["--secret-stdin", "--lifetime", "1s", "--lifetime-remove"],
        ),
        b"s3cret-value",
    );
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(keyutils_lookup(&env.keyring_service, "profile/svc").is_some());
    // Without --lifetime-remove the secret outlives the lifetime.
    let out = output_with_stdin(
        &mut env.add_cmd(
            "keep",
            "https://127.0.0.1:1/token",
            "client_secret_basic",
            &["--secret-stdin", "--lifetime", "1s"],
        ),
        b"kept-s3cret-value",
    );
    assert!(out.status.success(), "{}", stderr_of(&out));
    // Watched in /proc/keys: a key being deleted cannot be read meanwhile.
    wait_until("the secret is deleted when the lifetime runs out", || {
        audit_ops(&env, "lifetime_expired", "ok") == 2
            && kernel_keys_of(&env.keyring_service).len() == 1
    });
    assert!(keyutils_lookup(&env.keyring_service, "profile/svc").is_none());
    assert!(keyutils_lookup(&env.keyring_service, "profile/keep").is_some());
    let out = env.run(&["renew", "svc"]);
    assert!(
        stderr_of(&out).contains("add it again"),
        "{}",
        stderr_of(&out)
    );

    // The agent's --lifetime, for a profile added without one.
    env.add_open_profile("api", "https://127.0.0.1:1/token", &[]);
    let shown = env.ok(&["show", "api"]);
    assert!(shown.contains("lifetime        1h ("), "{shown}");
}

/// An askpass program that answers as the file `answer` says (`yes`, `no`,
/// `hang`), after `delay` seconds, and logs each prompt to `asked.log`.
fn askpass(env: &TestEnv) -> std::path::PathBuf {
    let script = env.path("askpass.sh");
    let answer = env.path("answer");
    let log = env.path("asked.log");
    std::fs::write(&answer, "yes").unwrap();
    write_program(
        &script,
        &format!(
            "#!/bin/sh\nprintf '%s|%s\\n' \"$SSH_ASKPASS_PROMPT\" \"$1\" >> '{log}'\n\
             sleep \"$(cat '{delay}' 2>/dev/null || echo 0)\"\n\
             case \"$(cat '{answer}')\" in yes) exit 0 ;; hang) exec sleep 60 ;; *) exit 1 ;; esac\n",
            log = log.display(),
            delay = env.path("delay").display(),
            answer = answer.display(),
        ),
    );
    script
}

fn asked(env: &TestEnv) -> Vec<String> {
    std::fs::read_to_string(env.path("asked.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn confirm_asks_through_askpass_and_a_no_a_hang_or_no_askpass_refuses() {
    let env = TestEnv::new();
    let server = open_provider(&env, 600);
    let script = askpass(&env);
    let out = env
        .cmd(&["agent"])
        .env("JWTAGENT_ASKPASS", &script)
        .env("JWTAGENT_CONFIRM_TIMEOUT", "2")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    env.add_open_profile("api", &server.token_endpoint(), &["--confirm"]);

    // Yes: served, once asked, the prompt naming the profile and the caller
    // (the process that ran the CLI: this test), as ssh-add -c does.
    env.ok(&["token", "api"]);
    let prompts = asked(&env);
    assert_eq!(prompts.len(), 1, "{prompts:?}");
    let me = std::env::current_exe().unwrap();
    let me = me.file_name().unwrap().to_str().unwrap();
    assert!(prompts[0].starts_with("confirm|Allow "), "{prompts:?}");
    assert!(
        prompts[0].contains(me),
        "names the caller {me}: {prompts:?}"
    );
    assert!(prompts[0].contains("jwtagent profile api?"), "{prompts:?}");

    // No, and no answer: refused, with its own code.
    std::fs::write(env.path("answer"), "no").unwrap();
    let out = env.run(&["token", "api"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr_of(&out).contains("confirm_denied"),
        "{}",
        stderr_of(&out)
    );
    std::fs::write(env.path("answer"), "hang").unwrap();
    let out = env.run(&["token", "api"]);
    assert!(
        stderr_of(&out).contains("nobody answered within 2s"),
        "{}",
        stderr_of(&out)
    );

    // Concurrent requests of one caller share one question.
    std::fs::write(env.path("answer"), "yes").unwrap();
    std::fs::write(env.path("delay"), "1").unwrap();
    let before = asked(&env).len();
    let children: Vec<_> = (0..4)
        .map(|_| {
            env.cmd(&["token", "api"])
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        assert!(child.wait_with_output().unwrap().status.success());
    }
    assert_eq!(asked(&env).len(), before + 1, "{:?}", asked(&env));
    std::fs::write(env.path("delay"), "0").unwrap();

    // Every question and answer is in the audit log.
    env.audit_until("confirmations audited", |records| {
        let count = |outcome: &str| {
            records
                .iter()
                .filter(|r| r["op"] == "confirm" && r["outcome"] == outcome)
                .count()
        };
        count("asked") == 4 && count("allowed") == 5 && count("confirm_denied") == 2
    });

    // --confirm-for: a yes holds for the same caller.
    env.add_open_profile(
        "held",
        &server.token_endpoint(),
        &["--confirm", "--confirm-for", "1h"],
    );
    let before = asked(&env).len();
    env.ok(&["token", "held"]);
    env.ok(&["token", "held", "--force"]);
    assert_eq!(asked(&env).len(), before + 1);

    // No askpass program: no.
    env.ok(&["stop"]);
    let out = env.run(&["token", "api"]);
    let err = stderr_of(&out);
    assert!(
        err.contains("confirm_denied") && err.contains("JWTAGENT_ASKPASS"),
        "{err}"
    );
}

/// An agent started with `options` and the askpass program of
/// [`askpass`] (which answers yes unless told otherwise).
fn agent_with_askpass(env: &TestEnv, options: &[&str], extra_env: &[(&str, &std::path::Path)]) {
    let script = askpass(env);
    let mut cmd = env.cmd(&["agent"]);
    cmd.args(options).env("JWTAGENT_ASKPASS", &script);
    for (var, value) in extra_env {
        cmd.env(var, value);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
}

fn locked(env: &TestEnv) -> Value {
    serde_json::from_str(&env.ok(&["status", "--json"])).unwrap()
}

#[test]
fn an_idle_agent_locks_itself_and_a_yes_through_askpass_unlocks_it() {
    let env = TestEnv::new();
    let server = open_provider(&env, 600);
    let started = std::time::Instant::now();
    agent_with_askpass(&env, &["--lock-idle", "2s"], &[]);
    env.add_open_profile("api", &server.token_endpoint(), &[]);
    // Requests keep it unlocked past its idle time.
    while started.elapsed() < std::time::Duration::from_secs(3) {
        env.ok(&["token", "api"]);
    }
    // `status` watches the agent without keeping it awake.
    wait_until("the idle agent locks itself", || {
        locked(&env)["locked"] == true
    });
    let status = locked(&env);
    assert_eq!(status["unlock_with"], "askpass", "{status}");
    let text = env.ok(&["status"]);
    assert!(text.contains("locked    yes (it locked itself;"), "{text}");
    assert!(
        status["profiles"][0]["tokens"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let out = env.run(&["token", "api"]);
    assert!(stderr_of(&out).contains("locked"), "{}", stderr_of(&out));
    env.audit_until("the idle lock recorded", |records| {
        records.iter().filter(|r| r["op"] == "lock_idle").count() == 1
    });

    // No from the person at the keyboard: still locked.
    std::fs::write(env.path("answer"), "no").unwrap();
    let out = env.run(&["unlock"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_of(&out).contains("denied"), "{}", stderr_of(&out));
    std::fs::write(env.path("answer"), "yes").unwrap();
    let out = env.ok(&["unlock"]);
    assert!(out.contains("said yes"), "{out}");
    env.ok(&["token", "api"]);
    assert!(
        asked(&env)
            .iter()
            .any(|p| p.contains("Unlock the jwtagent agent")),
        "{:?}",
        asked(&env)
    );

    // With nothing to unlock with, the agent does not start so.
    env.ok(&["stop"]);
    let out = env.run(&["agent", "--lock-idle", "1m"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert!(
        err.contains("--lock-idle")
            && err.contains("--store file")
            && err.contains("JWTAGENT_ASKPASS"),
        "{err}"
    );
}

#[test]
fn logind_signals_on_the_system_bus_lock_the_agent() {
    let env = TestEnv::new();
    let server = open_provider(&env, 600);
    let bus = PrivateBus::start(&env, "system-bus", "system");
    let address = bus.address.clone();
    // The stand-in logind: owns logind's name, and sends its signals.
    let logind = zbus::blocking::connection::Builder::address(address.as_str())
        .unwrap()
        .name("org.freedesktop.login1")
        .unwrap()
        .build()
        .unwrap();
    let address_path = std::path::PathBuf::from(&address);
    agent_with_askpass(
        &env,
        &["--lock-on-sleep"],
        &[("DBUS_SYSTEM_BUS_ADDRESS", &address_path)],
    );
    wait_until("the agent follows logind", || {
        std::fs::read_to_string(env.log_file())
            .unwrap_or_default()
            .contains("--lock-on-sleep: locking when")
    });
    env.add_open_profile("api", &server.token_endpoint(), &[]);
    env.ok(&["token", "api"]);

    let manager = "org.freedesktop.login1.Manager";
    let session = "org.freedesktop.login1.Session";
    for (path, interface, member, body) in [
        (
            "/org/freedesktop/login1",
            manager,
            "PrepareForSleep",
            Some(true),
        ),
        ("/org/freedesktop/login1/session/_31", session, "Lock", None),
    ] {
        match body {
            Some(going) => logind.emit_signal(None::<()>, path, interface, member, &(going,)),
            None => logind.emit_signal(None::<()>, path, interface, member, &()),
        }
        .unwrap();
        wait_until(member, || locked(&env)["locked"] == true);
        let out = env.run(&["token", "api"]);
        assert!(stderr_of(&out).contains("locked"), "{}", stderr_of(&out));
        env.ok(&["unlock"]);
        env.ok(&["token", "api"]);
    }
    env.audit_until("both locks recorded", |records| {
        records.iter().filter(|r| r["op"] == "lock_sleep").count() == 2
    });

    // No system bus: a warning says the agent will not lock.
    env.ok(&["stop"]);
    let missing = env.path("no-such-bus");
    agent_with_askpass(
        &env,
        &["--lock-on-sleep"],
        &[(
            "DBUS_SYSTEM_BUS_ADDRESS",
            &std::path::PathBuf::from(format!("unix:path={}", missing.display())),
        )],
    );
    wait_until("the agent warns it will not lock", || {
        std::fs::read_to_string(env.log_file())
            .unwrap_or_default()
            .contains("will NOT lock when the machine sleeps")
    });
}

/// The daemon runs with glibc's per-thread cache cut to one block a size
/// (it pins what a burst of connections freed: agent/src/sys.rs), set by running itself again
/// with the same pid; the programs it starts (here the askpass) see the
/// user's own `GLIBC_TUNABLES`, not ours.
#[test]
fn the_agent_runs_with_the_allocators_cache_cut_and_its_children_see_the_users_tunables() {
    let env = TestEnv::new();
    let server = open_provider(&env, 600);
    let script = env.path("askpass-env.sh");
    let seen = env.path("seen");
    write_program(
        &script,
        &format!(
            "#!/bin/sh\nprintf '%s|%s\\n' \"${{GLIBC_TUNABLES-unset}}\" \"${{JWTAGENT_TUNED_FROM-unset}}\" > '{}'\n",
            seen.display()
        ),
    );
    let users = "glibc.malloc.arena_max=2";
    let out = env
        .cmd(&["env"])
        .env("JWTAGENT_ASKPASS", &script)
        .env("GLIBC_TUNABLES", users)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let pid = pid_from_env_script(&String::from_utf8_lossy(&out.stdout));
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    // The environment it was run again with (glibc's loader may have cut
    // GLIBC_TUNABLES up in place as it read it).
    let has = |text: &[u8]| environ.windows(text.len()).any(|w| w == text);
    assert!(
        has(b"JWTAGENT_TUNED_FROM=glibc.malloc.arena_max=2\0")
            && has(b"glibc.malloc.tcache_count=1"),
        "the agent (pid {pid}) runs with the cache cut, after the user's own: {}",
        String::from_utf8_lossy(&environ)
    );
    env.add_open_profile("api", &server.token_endpoint(), &["--confirm"]);
    env.ok(&["token", "api"]);
    assert_eq!(
        std::fs::read_to_string(&seen).unwrap(),
        format!("{users}|unset\n"),
        "what the askpass saw"
    );
}
