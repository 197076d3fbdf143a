//! Servers we did not write: the test OpenID Provider configured the way
//! other servers behave (the client assertion `aud` they accept, the `kid`
//! they find a key by), and what the agent does about it.

use crate::common::*;
use serde_json::{Value, json};

/// A provider accepting only `aud_rule` ("issuer" or "token_endpoint") as
/// assertion audience, with one private_key_jwt client `app` whose key is
/// `key` (registered with `kid`: its thumbprint when None in `kid`, none when
/// Some(None)).
fn provider(
    env: &TestEnv,
    aud_rule: &str,
    key: &std::path::Path,
    kid: Option<Option<&str>>,
) -> Oidc {
    let mut client = json!({
        "client_id": "app",
        "auth": "private_key_jwt",
        "alg": "ES256",
        "public_key_pem": public_pem(key),
    });
    if let Some(kid) = kid {
        client["kid"] = json!(kid);
    }
    Oidc::start(
        env,
        &json!({"ttl": 600, "assertion_aud": aud_rule, "clients": [client]}),
    )
}

fn add(env: &TestEnv, name: &str, oidc: &Oidc, key: &std::path::Path, extra: &[&str]) {
    let mut cmd = env.add_issuer_cmd(name, &oidc.issuer, "app", "private_key_jwt", extra);
    let out = cmd.arg("--key-file").arg(key).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
}

fn show(env: &TestEnv, name: &str) -> Value {
    serde_json::from_str(&env.ok(&["show", name, "--json"])).unwrap()
}

#[test]
fn assertion_aud_auto_retries_with_the_token_endpoint_once_and_remembers_it() {
    let env = TestEnv::new();
    let key = gen_key(&env, "p256");
    let oidc = provider(&env, "token_endpoint", &key, None);
    add(&env, "api", &oidc, &key, &[]);
    env.ok(&["token", "api"]);
    // The issuer first (draft-ietf-oauth-rfc7523bis), refused; then the token
    // endpoint, with a fresh assertion.
    let refused = oidc.events_of("error");
    assert_eq!(refused.len(), 1, "{refused:?}");
    let first = jwt_claims(refused[0]["assertion"].as_str().unwrap());
    assert_eq!(first["aud"], oidc.issuer);
    let granted = oidc.grants("app");
    assert_eq!(granted.len(), 1);
    let second = jwt_claims(granted[0]["assertion"].as_str().unwrap());
    assert_eq!(second["aud"], oidc.token_endpoint());
    assert_ne!(first["jti"], second["jti"]);
    // Said where the user looks.
    assert_eq!(show(&env, "api")["assertion_aud_worked"], "token-endpoint");
    assert!(
        env.ok(&["show", "api"])
            .contains("auto (the server accepted token-endpoint)")
    );
    let status: Value = serde_json::from_str(&env.ok(&["status", "--json"])).unwrap();
    assert_eq!(
        status["profiles"][0]["assertion_aud_worked"],
        "token-endpoint"
    );
    // Remembered: the next request goes straight to what worked.
    env.ok(&["token", "--force", "api"]);
    assert_eq!(oidc.events_of("error").len(), 1);
    assert_eq!(oidc.grants("app").len(), 2);
}

#[test]
fn an_explicit_assertion_aud_is_never_second_guessed() {
    let env = TestEnv::new();
    let key = gen_key(&env, "p256");
    let oidc = provider(&env, "token_endpoint", &key, None);
    add(&env, "api", &oidc, &key, &["--assertion-aud", "issuer"]);
    let out = env.run(&["token", "api"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr_of(&out).contains("invalid_client"),
        "{}",
        stderr_of(&out)
    );
    assert_eq!(oidc.events_of("error").len(), 1, "retried an explicit aud");
    assert!(show(&env, "api").get("assertion_aud_worked").is_none());
}

#[test]
fn assertion_aud_auto_sends_the_issuer_to_a_server_that_wants_it() {
    let env = TestEnv::new();
    let key = gen_key(&env, "p256");
    let oidc = provider(&env, "issuer", &key, None);
    add(&env, "api", &oidc, &key, &["--assertion-aud", "auto"]);
    env.ok(&["token", "api"]);
    assert!(oidc.events_of("error").is_empty());
    let claims = jwt_claims(oidc.grants("app")[0]["assertion"].as_str().unwrap());
    assert_eq!(claims["aud"], oidc.issuer);
    assert_eq!(show(&env, "api")["assertion_aud_worked"], "issuer");
}

/// The RFC 7638 thumbprint of `jwk`, as jose computes it.
fn jose_thumbprint(jwk: &Value) -> String {
    let out = node("thumbprint.mjs", &[], &jwk.to_string());
    assert!(out.status.success(), "{}", stderr_of(&out));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_key_file_gets_its_thumbprint_as_kid_unless_told_otherwise() {
    let env = TestEnv::new();
    let key = gen_key(&env, "p256");
    // Registered as `jwtagent jwks` prints it: kid = thumbprint.
    let oidc = provider(&env, "issuer", &key, None);
    add(&env, "api", &oidc, &key, &[]);
    let jwks: Value = serde_json::from_str(&env.ok(&["jwks", "api"])).unwrap();
    let jwk = &jwks["keys"][0];
    let thumbprint = jose_thumbprint(jwk);
    assert_eq!(jwk["kid"], thumbprint);
    assert_eq!(show(&env, "api")["profile"]["kid"], thumbprint);
    env.ok(&["token", "api"]);
    let header = jwt_header(oidc.grants("app")[0]["assertion"].as_str().unwrap());
    assert_eq!(header["kid"], thumbprint);

    // `--kid none`: no kid, for a server that registered the key without one.
    let bare = provider(&env, "issuer", &key, Some(None));
    add(&env, "bare", &bare, &key, &["--kid", "none"]);
    assert!(show(&env, "bare")["profile"].get("kid").is_none());
    env.ok(&["token", "bare"]);
    let header = jwt_header(bare.grants("app")[0]["assertion"].as_str().unwrap());
    assert!(header.get("kid").is_none(), "{header}");

    // A kid of the user's own is sent as given, and `jwks` prints it.
    let named = provider(&env, "issuer", &key, Some(Some("key-2026")));
    add(&env, "named", &named, &key, &["--kid", "key-2026"]);
    let jwks: Value = serde_json::from_str(&env.ok(&["jwks", "named"])).unwrap();
    assert_eq!(jwks["keys"][0]["kid"], "key-2026");
    env.ok(&["token", "named"]);
    let header = jwt_header(named.grants("app")[0]["assertion"].as_str().unwrap());
    assert_eq!(header["kid"], "key-2026");
}
