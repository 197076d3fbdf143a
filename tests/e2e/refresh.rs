//! The refresh engine end to end: faults injected by a programmable token
//! endpoint on a real socket, and the real OpenID Provider with lifetimes of a
//! few seconds.

use crate::common::*;
use serde_json::{Value, json};

fn token(env: &TestEnv, name: &str) -> String {
    env.ok(&["token", name]).trim().to_string()
}

/// Serves a 30 s token, then `fault` to every later request (in place before
/// the refresh a second later), and checks that the agent keeps serving the
/// valid token, reports the failure in `status`, and recovers once the
/// endpoint does.
fn survives(fault: Fault) {
    let env = TestEnv::new();
    let server = FaultServer::start_then(Fault::Ok { lifetime: 30 }, fault.clone());
    let out = env.run(&[
        "add",
        "--no-verify",
        "f",
        "--token-url",
        &server.token_url(),
        "--client-id",
        "c",
        "--auth",
        "none",
        "--refresh-before",
        "29s",
    ]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    // refresh-before 29 s of 30: a refresh is due a second after the fetch.
    let first = token(&env, "f");
    wait_until("a refresh attempt fails and status says so", || {
        let p = env.profile_status("f");
        p["failures"].as_u64().unwrap_or(0) >= 1 && p["last_error"].is_string()
    });
    assert_eq!(
        token(&env, "f"),
        first,
        "{fault:?}: the valid token is still served"
    );
    let p = env.profile_status("f");
    assert_eq!(p["token_state"], "failing");
    server.set(Fault::Ok { lifetime: 30 });
    wait_until("the agent recovers", || {
        env.profile_status("f")["failures"] == 0 && token(&env, "f") != first
    });
}

#[test]
fn survives_503_with_retry_after() {
    survives(Fault::Status {
        code: 503,
        retry_after: Some("1".into()),
    });
}

#[test]
fn survives_429_with_an_http_date_retry_after() {
    // An HTTP-date in the past: retry right away (after the minimum backoff).
    survives(Fault::Status {
        code: 429,
        retry_after: Some("Sun, 06 Nov 1994 08:49:37 GMT".into()),
    });
}

#[test]
fn survives_a_garbage_body() {
    survives(Fault::Garbage);
}

#[test]
fn survives_a_reset_connection() {
    survives(Fault::Reset);
}

#[test]
fn a_stalled_refresh_does_not_hold_up_callers() {
    let env = TestEnv::new();
    let server = FaultServer::start_then(Fault::Ok { lifetime: 30 }, Fault::Stall);
    env.add_open_profile("f", &server.token_url(), &["--refresh-before", "29s"]);
    let first = token(&env, "f");
    wait_until("the refresh request is stalled at the server", || {
        server.requests() >= 2
    });
    // While the refresh hangs, callers get the valid token at once: well
    // within the agent's 30 s request timeout that the stalled refresh waits
    // out (a caller held behind it would take that long).
    for _ in 0..5 {
        let asked = std::time::Instant::now();
        assert_eq!(token(&env, "f"), first);
        assert!(
            asked.elapsed() < std::time::Duration::from_secs(10),
            "a caller waited {:?} behind the stalled refresh",
            asked.elapsed()
        );
    }
    server.set(Fault::Ok { lifetime: 30 });
}

#[test]
fn a_retry_after_date_in_the_future_is_honoured() {
    let env = TestEnv::new();
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(90);
    let server = FaultServer::start(Fault::Status {
        code: 429,
        retry_after: Some(httpdate::fmt_http_date(later)),
    });
    env.add_open_profile("f", &server.token_url(), &[]);
    let out = env.run(&["token", "f"]);
    assert_eq!(out.status.code(), Some(1));
    // Asked again at once, the agent does not call the server before the
    // date it named, and says when it will.
    let out = env.run(&["token", "f"]);
    let err = stderr_of(&out);
    let secs: u64 = err
        .split("next attempt in ")
        .nth(1)
        .and_then(|rest| rest.split('s').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no next attempt in {err}"));
    assert!((60..=90).contains(&secs), "next attempt in {secs}s: {err}");
    assert_eq!(server.requests(), 1);
}

#[test]
fn unsatisfiable_request_gets_the_error_not_a_hang() {
    let env = TestEnv::new();
    let server = FaultServer::start(Fault::Status {
        code: 503,
        retry_after: Some("120".into()),
    });
    env.add_open_profile("f", &server.token_url(), &[]);
    let out = env.run(&["token", "f"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_of(&out).contains("503"), "{}", stderr_of(&out));
    // Within the Retry-After the agent answers from its last error.
    let out = env.run(&["token", "f"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr_of(&out).contains("next attempt in"),
        "{}",
        stderr_of(&out)
    );
    assert_eq!(server.requests(), 1, "the server was left alone");
}

fn oidc_with_short_tokens(env: &TestEnv, ttl: u64, port: Option<u16>) -> Oidc {
    let mut config = json!({"ttl": ttl, "clients": [
        {"client_id": "short", "auth": "client_secret_post", "secret": "short-lived-secret-0123456789"}
    ]});
    if let Some(port) = port {
        config["port"] = json!(port);
    }
    Oidc::start(env, &config)
}

fn add_short(env: &TestEnv, oidc: &Oidc) {
    let out = env.run_with_stdin(
        &[
            "add",
            "--no-verify",
            "short",
            "--token-url",
            &oidc.token_endpoint(),
            "--client-id",
            "short",
            "--auth",
            "client_secret_post",
            "--secret-stdin",
        ],
        b"short-lived-secret-0123456789",
    );
    assert!(out.status.success(), "{}", stderr_of(&out));
}

#[test]
fn two_hundred_concurrent_token_processes_cause_one_request_at_the_server() {
    let env = TestEnv::new();
    let oidc = oidc_with_short_tokens(&env, 600, None);
    add_short(&env, &oidc);
    let children: Vec<_> = (0..200)
        .map(|_| {
            env.cmd(&["token", "short"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let tokens: std::collections::HashSet<String> = children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert!(out.status.success(), "{}", stderr_of(&out));
            String::from_utf8(out.stdout).unwrap()
        })
        .collect();
    assert_eq!(tokens.len(), 1, "every process got the same token");
    assert_eq!(oidc.grants("short").len(), 1, "one request at the server");
}

#[test]
fn continuous_use_sees_refreshes_at_the_expected_cadence_and_never_a_short_token() {
    let env = TestEnv::new();
    let oidc = oidc_with_short_tokens(&env, 4, None);
    add_short(&env, &oidc);
    let started = std::time::Instant::now();
    let run_for = std::time::Duration::from_secs(12);
    let mut served = 0;
    while started.elapsed() < run_for {
        // Read before asking: the token was served later, with more than
        // 1 s left then, so it expires more than 1 s after `asked`; its
        // whole-second expires_at is then at least `asked` (floored) + 1.
        let asked = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let answer: Value =
            serde_json::from_str(&env.ok(&["token", "short", "--min-ttl", "1s", "--json"]))
                .unwrap();
        let expires_at = answer["expires_at"].as_u64().unwrap();
        assert!(
            expires_at > asked,
            "a token expiring at {expires_at} was served at {asked} for min-ttl 1s"
        );
        served += 1;
    }
    let grants = oidc.grants("short").len();
    // 4 s tokens refreshed at 70-80 % (every ~3 s) over 12 s: about 5 requests,
    // whatever the number of callers (the agent's own timers set the pace).
    assert!(served > 0);
    assert!((3..=8).contains(&grants), "{grants} token requests in 12 s");
}

#[test]
fn provider_down_the_valid_token_is_still_served_and_up_again_the_agent_recovers() {
    let env = TestEnv::new();
    let oidc = oidc_with_short_tokens(&env, 20, None);
    let port: u16 = oidc.issuer.rsplit(':').next().unwrap().parse().unwrap();
    // refresh-before 19 s: refreshes start a second after each fetch.
    let out = env.run_with_stdin(
        &[
            "add",
            "--no-verify",
            "short",
            "--token-url",
            &oidc.token_endpoint(),
            "--client-id",
            "short",
            "--auth",
            "client_secret_post",
            "--secret-stdin",
            "--refresh-before",
            "19s",
        ],
        b"short-lived-secret-0123456789",
    );
    assert!(out.status.success());
    token(&env, "short");
    drop(oidc);
    // With the provider gone no new token can come: what is served now is
    // what must go on being served.
    let first = token(&env, "short");
    wait_until("status shows the refresh failing", || {
        let p = env.profile_status("short");
        p["failures"].as_u64().unwrap_or(0) >= 1
            && p["last_error"]
                .as_str()
                .unwrap_or("")
                .contains("cannot reach 127.0.0.1")
    });
    assert_eq!(token(&env, "short"), first, "still valid, still served");
    let oidc = oidc_with_short_tokens(&env, 20, Some(port));
    wait_until("the agent recovers within its backoff", || {
        env.profile_status("short")["failures"] == 0
    });
    assert_ne!(token(&env, "short"), first);
    assert!(!oidc.grants("short").is_empty());
}

#[test]
fn a_refused_refresh_token_falls_back_to_client_credentials() {
    let env = TestEnv::new();
    let server = FaultServer::start(Fault::RefreshRefused { lifetime: 30 });
    env.add_open_profile("f", &server.token_url(), &["--refresh-before", "29s"]);
    let first = token(&env, "f");
    // The proactive refresh tries the refresh token, is refused, and gets a
    // new token with client_credentials in the same attempt.
    wait_until("a refresh happened", || token(&env, "f") != first);
    let bodies = server.bodies();
    assert!(bodies[0].contains("grant_type=client_credentials"));
    assert!(
        bodies[1].contains("grant_type=refresh_token")
            && bodies[1].contains("refresh_token=refresh-1"),
        "{bodies:?}"
    );
    assert!(
        bodies[2].contains("grant_type=client_credentials"),
        "{bodies:?}"
    );
    assert_eq!(
        env.profile_status("f")["failures"],
        0,
        "the fallback is no failure"
    );
}

#[test]
fn after_kill_9_a_restarted_agent_serves_tokens_for_every_profile() {
    let env = TestEnv::new();
    let server = FaultServer::start(Fault::Ok { lifetime: 600 });
    for name in ["a", "b"] {
        let out = env.run_with_stdin(
            &[
                "add",
                "--no-verify",
                name,
                "--token-url",
                &server.token_url(),
                "--client-id",
                name,
                "--auth",
                "client_secret_post",
                "--secret-stdin",
            ],
            format!("secret-of-{name}").as_bytes(),
        );
        assert!(out.status.success(), "{}", stderr_of(&out));
    }
    let pid = pid_from_env_script(&env.ok(&["env"]));
    kill_9(pid, &env.default_socket());
    // `token` autostarts a new agent, which reads profiles and secrets back.
    for name in ["a", "b"] {
        assert!(token(&env, name).starts_with("fault-token-"));
    }
    // The secrets it sent came back from the keyring.
    let bodies = server.bodies();
    assert_eq!(bodies.len(), 2);
    for name in ["a", "b"] {
        assert!(
            bodies
                .iter()
                .any(|b| b.contains(&format!("client_secret=secret-of-{name}"))),
            "{bodies:?}"
        );
    }
}

#[test]
fn a_server_that_never_answers_is_given_up_on_after_the_total_timeout() {
    // SPEC §5: 30 s in all. The caller's answer says so; it does not hang.
    let env = TestEnv::new();
    let server = FaultServer::start(Fault::Stall);
    env.add_open_profile("f", &server.token_url(), &[]);
    let out = env.run(&["token", "f"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert!(
        err.contains("network") && err.contains("timed out"),
        "{err}"
    );
    server.set(Fault::Ok { lifetime: 30 });
}

#[test]
fn a_server_that_never_accepts_the_connection_is_given_up_on_after_the_connect_timeout() {
    // SPEC §5: connect 10 s. A listener whose accept queue is full drops
    // further SYNs, so the agent's connect hangs as it would against a
    // firewalled host; the connect timeout ends it well before the total one.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    // Linux lets listen() be called again to shrink the backlog: one
    // connection fills the queue, and it is never accepted.
    rustix::net::listen(&listener, 0).unwrap();
    let port = listener.local_addr().unwrap().port();
    let _filler = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let env = TestEnv::new();
    env.add_open_profile("f", &format!("http://127.0.0.1:{port}/token"), &[]);
    let started = std::time::Instant::now();
    let out = env.run(&["token", "f"]);
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert!(
        err.contains("network") && err.contains("could not connect within 10s"),
        "{err}"
    );
    assert!(took < std::time::Duration::from_secs(25), "took {took:?}");
}

#[test]
fn a_server_back_from_an_outage_serves_the_next_request_not_the_next_backoff() {
    let env = TestEnv::new();
    let oidc = oidc_with_short_tokens(&env, 60, None);
    let port: u16 = oidc.issuer.rsplit(':').next().unwrap().parse().unwrap();
    add_short(&env, &oidc);
    token(&env, "short");
    drop(oidc);
    // A request the cached token cannot satisfy (it lives 60 s, not an hour).
    let ask = || env.run(&["token", "short", "--min-ttl", "1h"]);
    // Forced attempts while the server is down push the background's next
    // attempt away; asked again at once, the agent says when it is, and
    // that --force tries now.
    let next_attempt = |err: &str| -> Option<u64> {
        err.split("next attempt in ")
            .nth(1)?
            .split('s')
            .next()?
            .parse()
            .ok()
    };
    let mut waited = None;
    for _ in 0..20 {
        assert_eq!(
            env.run(&["token", "short", "--force"]).status.code(),
            Some(1)
        );
        let asked = std::time::Instant::now();
        let err = stderr_of(&ask());
        assert!(err.contains("--force"), "{err}");
        if let Some(secs) = next_attempt(&err).filter(|s| *s >= 8) {
            waited = Some((asked, secs));
            break;
        }
    }
    let (asked, secs) = waited.expect("the backoff grows to 8 s within 20 failures");
    let _oidc = oidc_with_short_tokens(&env, 60, Some(port));
    // Back: a request gets a token now (one try a second for all callers),
    // long before the background's next attempt.
    let deadline = asked + std::time::Duration::from_secs(secs - 2);
    loop {
        let out = ask();
        if out.status.success() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still refused {}s after the server came back, as the backoff said: {}",
            secs - 2,
            stderr_of(&out)
        );
    }
}

#[test]
fn an_expired_token_is_said_to_have_expired_not_to_expire_in_0s() {
    let env = TestEnv::new();
    // A token of 2 s, and no other: every later request is refused.
    let server = FaultServer::start_then(
        Fault::Ok { lifetime: 2 },
        Fault::Status {
            code: 400,
            retry_after: None,
        },
    );
    env.add_open_profile("f", &server.token_url(), &[]);
    token(&env, "f");
    wait_until("the token has expired", || {
        env.profile_status("f")["expires_in_secs"]
            .as_i64()
            .is_some_and(|s| s < 0)
    });
    let text = env.ok(&["status"]);
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("f "))
        .unwrap();
    assert!(
        line.contains(", expired ") && line.contains(" ago") && !line.contains("expires in"),
        "{line}"
    );
}
