//! Sinks: files the agent keeps holding a profile's current token, against
//! the real test OpenID Provider. Never seen half-written while the token
//! rotates; deleted when the agent locks or stops (unless kept); refused in
//! places another user could reach; unreadable by another user.

use crate::common::*;
use serde_json::{Value, json};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

const NOBODY: u32 = 65534;

/// The provider over HTTPS with client `api`, whose tokens live `ttl`
/// seconds.
fn provider(env: &TestEnv, ttl: u64) -> Oidc {
    Oidc::start(
        env,
        &json!({
            "ttl": ttl,
            "clients": [{"client_id": "api", "auth": "client_secret_post", "secret": "api-secret-0123456789"}],
        }),
    )
}

/// `add api` for the provider's client, with `extra`.
fn add_api(env: &TestEnv, oidc: &Oidc, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["--secret-stdin"];
    args.extend_from_slice(extra);
    output_with_stdin(
        &mut env.add_issuer_cmd("api", &oidc.issuer, "api", "client_secret_post", &args),
        b"api-secret-0123456789\n",
    )
}

/// The provider, and profile `api` for it.
fn setup(ttl: u64) -> (TestEnv, Oidc) {
    let env = TestEnv::new();
    let oidc = provider(&env, ttl);
    let out = add_api(&env, &oidc, &[]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    (env, oidc)
}

/// A private directory for sink files.
fn sink_dir(env: &TestEnv) -> PathBuf {
    let dir = env.path("sinks");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

fn sinks_of(env: &TestEnv, name: &str) -> Value {
    serde_json::from_str(&env.ok(&["sink", name, "--json"])).unwrap()
}

#[test]
fn a_sink_holds_the_current_token_and_is_never_seen_half_written_while_it_rotates() {
    let (env, _oidc) = setup(2);
    let dir = sink_dir(&env);
    let raw = dir.join("token");
    let json_file = dir.join("token.json");
    let said = env.ok(&["sink", "api", raw.to_str().unwrap()]);
    assert!(said.contains("rewritten before it expires"), "{said}");
    env.ok(&[
        "sink",
        "api",
        json_file.to_str().unwrap(),
        "--format",
        "json",
    ]);
    let mode = std::fs::metadata(&raw).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(
        std::fs::read_to_string(&raw).unwrap(),
        env.ok(&["token", "api"]).trim()
    );
    // Read as fast as possible while the token rotates every ~1.5 s: every
    // read is a whole token, and the JSON always parses. Both files rotate:
    // the sink added second restarted the profile's writer with both.
    let mut seen = std::collections::HashSet::new();
    let mut seen_json = std::collections::HashSet::new();
    let mut reads = 0u64;
    wait_until_within(
        Duration::from_secs(90),
        "15 rotations of the sink's token",
        || {
            for _ in 0..200 {
                let token = std::fs::read_to_string(&raw).unwrap();
                assert!(
                    !token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic()),
                    "a partial or broken token file: {token:?}"
                );
                let text = std::fs::read_to_string(&json_file).unwrap();
                let parsed: Value = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("a half-written JSON sink ({e}): {text:?}"));
                assert_eq!(parsed["token_type"], "Bearer");
                assert!(parsed["expires_at"].as_u64().is_some(), "{parsed}");
                reads += 1;
                seen.insert(token);
                seen_json.insert(parsed["access_token"].to_string());
            }
            seen.len() >= 15 && seen_json.len() >= 10
        },
    );
    assert!(reads > 1000, "{reads} reads");
    // Each write is audited as the agent's own token request.
    env.audit_text_until(&["--op", "sink"], "the writes audited", |t| {
        t.lines().count() >= 15
    });
    let listed = sinks_of(&env, "api");
    assert_eq!(listed["sinks"].as_array().unwrap().len(), 2, "{listed}");
    assert!(listed["sinks"][0]["written_at"].is_u64(), "{listed}");
}

#[test]
fn sink_files_go_when_the_agent_locks_stops_or_the_profile_goes_unless_kept() {
    let (env, _oidc) = setup(600);
    let dir = sink_dir(&env);
    let gone = dir.join("gone");
    let kept = dir.join("kept");
    env.ok(&["sink", "api", gone.to_str().unwrap()]);
    env.ok(&["sink", "api", kept.to_str().unwrap(), "--keep"]);
    assert!(gone.is_file() && kept.is_file());

    let out = output_with_stdin(
        &mut env.cmd(&["lock", "--passphrase-stdin"]),
        b"lock-passphrase\n",
    );
    assert!(out.status.success(), "{}", stderr_of(&out));
    wait_until("the sink file goes with the lock", || !gone.exists());
    assert!(kept.is_file());
    let out = output_with_stdin(
        &mut env.cmd(&["unlock", "--passphrase-stdin"]),
        b"lock-passphrase\n",
    );
    assert!(out.status.success(), "{}", stderr_of(&out));
    wait_until("the sink file comes back with the unlock", || {
        gone.is_file()
    });

    env.ok(&["stop"]);
    assert!(!gone.exists(), "deleted before the agent stopped");
    assert!(kept.is_file());

    // Started again (by the next command): written again.
    env.ok(&["list"]);
    wait_until("the sink is written by the new agent", || gone.is_file());
    // Removed from the profile: deleted, kept or not.
    env.ok(&["sink", "api", kept.to_str().unwrap(), "--remove"]);
    assert!(!kept.exists());
    // The profile removed: its sinks go.
    env.ok(&["remove", "api"]);
    wait_until("the removed profile's sink goes", || !gone.exists());
}

#[test]
fn sinks_in_places_another_user_could_reach_are_refused_and_nothing_is_written() {
    let (env, _oidc) = setup(600);
    let dir = sink_dir(&env);
    let refused = |path: &Path, why: &str| {
        let out = env.run(&["sink", "api", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{}", path.display());
        let err = stderr_of(&out);
        assert!(err.contains(why), "{}: {err}", path.display());
    };
    // A directory others can write to (as /tmp).
    let open = env.path("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
    refused(&open.join("t"), "other users can write");
    assert!(!open.join("t").exists());
    // A symbolic link, to a file it would overwrite.
    let target = dir.join("precious");
    std::fs::write(&target, "precious").unwrap();
    std::os::unix::fs::symlink(&target, dir.join("link")).unwrap();
    refused(&dir.join("link"), "symbolic link");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious");
    // Another user's directory.
    let theirs = env.path("theirs");
    std::fs::create_dir(&theirs).unwrap();
    std::os::unix::fs::chown(&theirs, Some(NOBODY), Some(NOBODY)).unwrap();
    std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o755)).unwrap();
    refused(&theirs.join("t"), "owned by uid 65534");
    // A directory that is not there.
    refused(&dir.join("missing/t"), "create it first");
    // None of them was kept.
    assert_eq!(sinks_of(&env, "api")["sinks"], json!([]));
    // A profile only some programs may use cannot have one.
    let out = output_with_stdin(
        &mut env.add_issuer_cmd(
            "pinned",
            "https://127.0.0.1:1",
            "api",
            "client_secret_post",
            &[
                "--secret-stdin",
                "--allow-exe",
                "/usr/bin/curl",
                "--sink",
                dir.join("p").to_str().unwrap(),
            ],
        ),
        b"x\n",
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("--allow-exe"),
        "{}",
        stderr_of(&out)
    );
}

#[test]
fn another_user_cannot_read_a_sink() {
    let (env, _oidc) = setup(600);
    // The way in is open to others (as a home directory often is); the
    // sink directory is the user's and not writable by others.
    std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let dir = env.path("public");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let file = dir.join("token");
    env.ok(&["sink", "api", file.to_str().unwrap()]);
    assert!(file.is_file());
    let setpriv = require_tool("setpriv", "util-linux");
    let out = std::process::Command::new(setpriv)
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--",
            "/bin/cat",
        ])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success(), "uid 65534 read the sink");
    assert!(out.stdout.is_empty());
}

#[test]
fn a_profile_added_with_sink_keeps_it_from_the_start() {
    let env = TestEnv::new();
    let oidc = provider(&env, 600);
    let dir = sink_dir(&env);
    let file = dir.join("t");
    let out = add_api(&env, &oidc, &["--sink", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    wait_until("the sink is written", || file.is_file());
    let first = std::fs::read_to_string(&file).unwrap();
    assert_eq!(first, env.ok(&["token", "api"]).trim());
    let config = std::fs::read_to_string(env.config_file()).unwrap();
    assert!(config.contains("sinks"), "{config}");
    // Added again with the same sink: a new profile (a new generation of
    // its secret), whose writer starts again and writes its own token long
    // before the first one expires.
    let out = add_api(&env, &oidc, &["--sink", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let second = env.ok(&["token", "api"]).trim().to_string();
    assert_ne!(first, second);
    wait_until("the new profile's token in its sink", || {
        std::fs::read_to_string(&file).is_ok_and(|t| t == second)
    });
}

#[test]
fn a_user_profiles_sink_follows_its_sign_in() {
    let env = TestEnv::new();
    let oidc = Oidc::start(
        &env,
        &json!({
            "ttl": 600,
            "device_interval": 1,
            "scopes": ["openid", "offline_access"],
            "clients": [{
                "client_id": "cli", "auth": "none",
                "grant_types": ["urn:ietf:params:oauth:grant-type:device_code", "refresh_token"],
                "application_type": "native", "scope": "openid offline_access",
            }],
        }),
    );
    let out = env
        .add_issuer_cmd(
            "me",
            &oidc.issuer,
            "cli",
            "none",
            &[
                "--grant",
                "device-code",
                "--scope",
                "openid",
                "--scope",
                "offline_access",
            ],
        )
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let dir = sink_dir(&env);
    let file = dir.join("me");
    // Not signed in: the sink is kept, and says why it holds nothing.
    env.ok(&["sink", "me", file.to_str().unwrap()]);
    assert!(!file.exists());
    let listed = sinks_of(&env, "me");
    assert!(
        listed["sinks"][0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("login")),
        "{listed}"
    );
    crate::login::device_login(&env, "me");
    wait_until("the sink is written once signed in", || file.is_file());
    let first = std::fs::read_to_string(&file).unwrap();
    assert_eq!(first, env.ok(&["token", "me"]).trim());
    // Signed in again: the new sign-in's token is written at once, not when
    // the first one (ten minutes) is near its end.
    crate::login::device_finish(crate::login::Login::spawn(env.cmd(&[
        "login",
        "me",
        "--no-browser",
        "--force",
    ])));
    let again = env.ok(&["token", "me"]).trim().to_string();
    assert_ne!(first, again);
    wait_until("the new sign-in's token in the sink", || {
        std::fs::read_to_string(&file).is_ok_and(|t| t == again)
    });
    env.ok(&["logout", "me"]);
    wait_until("the sink goes with the sign-out", || !file.exists());
}

/// Two profiles never write one file: a sink another profile has is
/// refused, and the profile's own is not.
#[test]
fn a_file_is_the_sink_of_one_profile_only() {
    let (env, oidc) = setup(600);
    let out = output_with_stdin(
        &mut env.add_issuer_cmd(
            "other",
            &oidc.issuer,
            "api",
            "client_secret_post",
            &["--secret-stdin"],
        ),
        b"api-secret-0123456789\n",
    );
    assert!(out.status.success(), "{}", stderr_of(&out));
    let file = sink_dir(&env).join("t");
    let file = file.to_str().unwrap();
    env.ok(&["sink", "api", file]);
    let out = env.run(&["sink", "other", file]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert!(err.contains("is already profile \"api\"'s sink"), "{err}");
    env.ok(&["sink", "api", file]);
    // --remove takes that one sink away, its file with it, and no other.
    let second = sink_dir_file(&env, "u");
    env.ok(&["sink", "api", &second]);
    let written = |records: &[Value]| records.iter().filter(|r| r["op"] == "sink").count();
    let before = written(&env.audit_until("the sinks' writes", |_| true));
    env.ok(&["sink", "api", file, "--remove"]);
    let listed = sinks_of(&env, "api").to_string();
    assert!(
        listed.contains(&second) && !listed.contains(&format!("{file}\"")),
        "{listed}"
    );
    assert!(!std::path::Path::new(file).exists());
    // The writer started again with the sink left, which it writes; the
    // file it keeps was not deleted on the way.
    env.audit_until("the writer's write after --remove", |r| written(r) > before);
    let log = std::fs::read_to_string(env.log_file()).unwrap();
    assert!(!log.contains("sink deleted"), "{log}");
    assert!(std::path::Path::new(&second).is_file());
    let out = env.run(&["sink", "api", file, "--remove"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr_of(&out).contains("has no sink"),
        "{}",
        stderr_of(&out)
    );
}

/// A file named `name` in the sink directory (made by [`sink_dir`]).
fn sink_dir_file(env: &TestEnv, name: &str) -> String {
    env.path("sinks").join(name).to_str().unwrap().to_string()
}
