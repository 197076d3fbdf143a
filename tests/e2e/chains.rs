//! Derived profiles (token exchange, JWT-bearer fed by another profile)
//! under attack, from issue 26: a caller that a profile refuses must not get
//! its token carried to a server of the caller's choice through a profile
//! made from it, at any depth; and a config of chained profiles, however
//! long, never takes the agent down.

use crate::common::*;
use std::path::{Path, PathBuf};

/// `jwtagent add NAME`, a token-exchange profile fed by `subject` whose
/// token endpoint is `url`, run as `exe`.
fn add_exchange(
    env: &TestEnv,
    exe: &Path,
    name: &str,
    url: &str,
    subject: &str,
) -> std::process::Output {
    output_of_copy(
        env.command(exe)
            .args(["add", name, "--no-verify", "--token-url", url])
            .args(["--client-id", "c", "--auth", "none"])
            .args(["--grant", "token-exchange", "--subject-profile", subject]),
    )
}

/// A copy of the CLI at `rel` in the environment: an executable of its own.
fn cli_copy(env: &TestEnv, rel: &str) -> PathBuf {
    let copy = env.path(rel);
    std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
    std::fs::copy(bin(), &copy).unwrap();
    copy
}

#[test]
fn a_derived_profile_does_not_launder_a_token_its_caller_is_refused() {
    let env = TestEnv::new();
    let oidc = open_provider(&env, 600);
    let allowed = cli_copy(&env, "allowed/jwtagent-a");
    env.add_open_profile(
        "guarded",
        &oidc.token_endpoint(),
        &["--allow-exe", allowed.to_str().unwrap()],
    );
    // The attacker's own token endpoint, which would receive the subject token.
    let evil = FaultServer::start(Fault::Ok { lifetime: 600 });
    let evil_url = evil.token_url();

    // Adding a profile fed by `guarded` is refused to a caller `guarded`
    // refuses, and audited naming the input.
    let out = add_exchange(&env, Path::new(bin()), "launder", &evil_url, "guarded");
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    let err = stderr_of(&out);
    assert!(
        err.contains("denied") && err.contains("\"guarded\"") && err.contains("does not serve"),
        "{err}"
    );
    assert!(!env.ok(&["list"]).contains("launder"));
    // keygen makes profiles too: the same rule.
    let out = env
        .cmd(&[
            "keygen",
            "launder-key",
            "--token-url",
            &evil_url,
            "--client-id",
            "c",
        ])
        .args([
            "--alg",
            "ES256",
            "--grant",
            "token-exchange",
            "--subject-profile",
            "guarded",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("profile \"guarded\""),
        "{}",
        stderr_of(&out)
    );
    assert!(!env.ok(&["list"]).contains("launder"));

    // Added by the allowed program, the derived profile (and one made from
    // it in turn) is still served only to callers `guarded` serves.
    for (name, subject) in [("launder", "guarded"), ("launder2", "launder")] {
        let out = add_exchange(&env, &allowed, name, &evil_url, subject);
        assert!(out.status.success(), "{}", stderr_of(&out));
    }
    for name in ["launder", "launder2"] {
        let out = env.run(&["token", name]);
        assert_eq!(out.status.code(), Some(1), "{name}: {}", stderr_of(&out));
        let err = stderr_of(&out);
        assert!(
            err.contains("denied") && err.contains("profile \"guarded\""),
            "{err}"
        );
    }
    assert_eq!(
        evil.requests(),
        0,
        "the refused caller's request reached the server"
    );
    let token = output_of_copy(env.command(&allowed).args(["token", "launder2"]));
    assert!(token.status.success(), "{}", stderr_of(&token));
    assert!(evil.requests() > 0);

    env.audit_until("each refusal audited naming the input", |records| {
        let refused = |op: &str, profile: &str| {
            records.iter().any(|r| {
                r["op"] == op
                    && r["profile"] == profile
                    && r["outcome"] == "denied"
                    && r["input"] == "guarded"
                    && r["exe"] == bin()
            })
        };
        refused("add", "launder")
            && refused("keygen", "launder-key")
            && refused("token", "launder")
            && refused("token", "launder2")
    });
}

/// A config with `links` token-exchange profiles chained to a plain one:
/// `p0` fed by `p1` ... fed by `p{links}`.
fn chained_config(links: usize) -> String {
    let mut text = String::from("version = 1\n");
    let plain = "token_url = \"http://127.0.0.1:9/token\"\nclient_id = \"c\"\nauth = \"none\"\n";
    for i in 0..links {
        text.push_str(&format!(
            "\n[profiles.p{i}]\n{plain}grant = \"token_exchange\"\nsubject_profile = \"p{}\"\n",
            i + 1
        ));
    }
    text.push_str(&format!("\n[profiles.p{links}]\n{plain}"));
    text
}

#[test]
fn a_long_chain_in_the_config_is_refused_by_name_and_the_agent_stays_up() {
    let env = TestEnv::new();
    let config = env.config_file();
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    std::fs::write(&config, chained_config(400)).unwrap();
    // Before the fix, the first `token` overflowed the agent's stack, and
    // every restart with this config did again.
    let out = env.run(&["token", "p0"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    let err = stderr_of(&out);
    assert!(
        err.contains("longer than 8 links") && err.contains("p0 -> p1 -> p2"),
        "{err}"
    );
    assert!(hello(&env.default_socket()).is_some(), "the agent died");
    // The file is the user's to fix: untouched.
    assert_eq!(
        std::fs::read_to_string(&config).unwrap(),
        chained_config(400)
    );

    // Eight links are served; `add` refuses a ninth, naming the chain.
    std::fs::write(&config, chained_config(8)).unwrap();
    let list = env.ok(&["list"]);
    assert!(list.contains("p8"), "{list}");
    let out = env
        .add_cmd("p9", "http://127.0.0.1:9/token", "none", &[])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let out = env
        .add_cmd(
            "p8",
            "http://127.0.0.1:9/token",
            "none",
            &["--grant", "token-exchange", "--subject-profile", "p9"],
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert!(
        err.contains("longer than 8 links") && err.contains("p0 -> p1") && err.contains("p8 -> p9"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&config)
            .unwrap()
            .matches("[profiles.")
            .count(),
        10
    );
}

/// A derived profile is served only while every profile it is made from
/// would be: the lifetime of its input runs out, and it is refused too,
/// naming the input, until that is renewed.
#[test]
fn a_derived_profile_stops_when_the_lifetime_of_its_input_runs_out() {
    let env = TestEnv::new();
    let server = FaultServer::start(Fault::Ok { lifetime: 600 });
    env.add_open_profile("api", &server.token_url(), &["--lifetime", "2s"]);
    let out = add_exchange(&env, Path::new(bin()), "ex", &server.token_url(), "api");
    assert!(out.status.success(), "{}", stderr_of(&out));
    env.ok(&["token", "ex"]);
    let err = env.run_until_refused("the input's lifetime runs out", &["token", "ex"]);
    assert!(
        err.contains("expired_lifetime") && err.contains("jwtagent renew api"),
        "{err}"
    );
    env.ok(&["renew", "api"]);
    env.ok(&["token", "ex"]);
}
