//! HTTPS to authorization servers: the platform trust store (which
//! rustls-native-certs reads from `SSL_CERT_FILE` on Linux), a profile's
//! `--ca-file`, and the certificates that must be refused, each with an error
//! that names the host, the reason and the fix.

use crate::common::*;
use crate::pki::{CA_NAME, Leaf, pki};
use serde_json::json;

const SECRET: &str = "tls-test-secret-0123456789";

fn provider(env: &TestEnv, cert: &Leaf) -> Oidc {
    Oidc::start_with_cert(
        env,
        &json!({"ttl": 600, "clients": [
            {"client_id": "app", "auth": "client_secret_post", "secret": SECRET}
        ]}),
        cert,
    )
}

/// `add NAME` for client `app` of `oidc`, with `extra` options.
fn add(env: &TestEnv, name: &str, oidc: &Oidc, extra: &[&str]) {
    let mut cmd = env.add_issuer_cmd(name, &oidc.issuer, "app", "client_secret_post", extra);
    cmd.arg("--secret-stdin");
    let out = output_with_stdin(&mut cmd, SECRET.as_bytes());
    assert!(out.status.success(), "{}", stderr_of(&out));
}

/// `add without`: the server's token endpoint given directly (no
/// discovery), with no CA file of its own.
fn add_without_ca(env: &TestEnv, oidc: &Oidc) {
    let direct = format!("{}/token", oidc.issuer);
    let mut cmd = env.cmd(&["add", "--no-verify", "without", "--token-url", &direct]);
    cmd.args([
        "--client-id",
        "app",
        "--auth",
        "client_secret_post",
        "--secret-stdin",
    ]);
    assert!(
        output_with_stdin(&mut cmd, SECRET.as_bytes())
            .status
            .success()
    );
}

/// `token NAME` run with `SSL_CERT_FILE` as given (None: unset, so the
/// system's own trust store applies).
fn token(env: &TestEnv, name: &str, cert_file: Option<&std::path::Path>) -> std::process::Output {
    // The agent reads the trust store when it starts: start a fresh one.
    let _ = env.run(&["stop"]);
    let mut cmd = env.cmd(&["token", name]);
    match cert_file {
        Some(path) => cmd.env("SSL_CERT_FILE", path),
        None => cmd.env_remove("SSL_CERT_FILE"),
    };
    cmd.output().unwrap()
}

/// The refusal a `token` printed: a network error naming the step, the
/// host, and what is wrong with its certificate.
fn refused(out: &std::process::Output, step: &str, oidc: &Oidc) -> String {
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(out));
    let err = stderr_of(out);
    let host = oidc.issuer.trim_start_matches("https://");
    assert!(
        err.contains("network: ") && err.contains(&format!("{step}: TLS with {host} failed: ")),
        "{err}"
    );
    assert!(oidc.events().is_empty(), "a refused server saw a request");
    err
}

#[test]
fn the_platform_trust_store_is_used_and_ssl_cert_file_extends_it() {
    let env = TestEnv::new();
    let oidc = provider(&env, &pki().server);
    add(&env, "api", &oidc, &[]);
    // Without the test CA in the trust store, the server is refused, and the
    // error says which CA and how to trust it.
    let err = refused(&token(&env, "api", None), "discovery", &oidc);
    assert!(
        err.contains(&format!(
            "issued by CN={CA_NAME}, a CA this machine does not trust"
        )) && err.contains("--ca-file CA.pem")
            && err.contains("SSL_CERT_FILE"),
        "{err}"
    );
    // With it in the bundle SSL_CERT_FILE names, the same server is trusted.
    let out = token(&env, "api", Some(&pki().ca));
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(oidc.grants("app").len(), 1);
}

#[test]
fn a_ca_file_is_trusted_for_its_profile_only() {
    let env = TestEnv::new();
    let oidc = provider(&env, &pki().server);
    let ca = pki().ca.to_str().unwrap();
    add(&env, "with-ca", &oidc, &["--ca-file", ca]);
    // A token endpoint given directly: the token request is refused.
    add_without_ca(&env, &oidc);
    let out = token(&env, "without", None);
    let err = refused(&out, "token request", &oidc);
    assert!(err.contains(&format!("CN={CA_NAME}")), "{err}");
    let out = token(&env, "with-ca", None);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(!String::from_utf8_lossy(&out.stdout).trim().is_empty());
}

#[test]
fn an_unknown_ca_a_wrong_name_and_an_expired_certificate_are_refused() {
    for (leaf, expected) in [
        (
            &pki().unknown_ca,
            "its certificate was issued by CN=a CA nobody trusts, a CA this machine does not trust",
        ),
        (
            &pki().wrong_name,
            "its certificate is for idp.invalid, not 127.0.0.1",
        ),
        (
            &pki().expired,
            "its certificate expired on Jan  1 00:00:00 2021 +00:00",
        ),
    ] {
        let env = TestEnv::new();
        let oidc = provider(&env, leaf);
        // The test CA is trusted (SSL_CERT_FILE) and named with --ca-file.
        add(
            &env,
            "api",
            &oidc,
            &["--ca-file", pki().ca.to_str().unwrap()],
        );
        let err = refused(&token(&env, "api", Some(&pki().ca)), "discovery", &oidc);
        assert!(err.contains(expected), "{err}");
    }
}

#[test]
fn one_agent_keeps_each_profiles_ca_file_to_that_profile() {
    let env = TestEnv::new();
    let oidc = provider(&env, &pki().server);
    let ca = pki().ca.to_str().unwrap();
    add(&env, "with-ca", &oidc, &["--ca-file", ca]);
    add_without_ca(&env, &oidc);
    // One agent, started without the test CA in its trust store, serves
    // both in turn: the client made for with-ca's CA file is not the one
    // used for `without` (the TLS test above restarts the agent each time,
    // and could not see that).
    let _ = env.run(&["stop"]);
    let run = |name: &str| {
        env.cmd(&["token", name])
            .env_remove("SSL_CERT_FILE")
            .output()
            .unwrap()
    };
    let out = run("with-ca");
    assert!(out.status.success(), "{}", stderr_of(&out));
    let pid = hello(&env.default_socket()).unwrap()["pid"].clone();
    let out = run("without");
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("a CA this machine does not trust"),
        "{}",
        stderr_of(&out)
    );
    assert!(run("with-ca").status.success());
    assert_eq!(
        hello(&env.default_socket()).unwrap()["pid"],
        pid,
        "the agent was restarted"
    );
}
