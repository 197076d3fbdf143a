//! Grants beyond client_credentials, against real components: the test
//! OpenID Provider with the jwt-bearer and token-exchange grants registered
//! (it verifies assertions and subject tokens itself and issues real
//! tokens), Google's service-account form checked as Google documents it,
//! and a stand-in for GitHub's installation token endpoint.

use crate::common::*;
use crate::pki::pki;
use serde_json::{Value, json};
use std::path::Path;

const SECRET: &str = "grant-test-client-secret-0123456789";
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
const ID_JAG: &str = "urn:ietf:params:oauth:token-type:id-jag";

fn token_json(env: &TestEnv, args: &[&str]) -> Value {
    let mut all = vec!["token", "--json"];
    all.extend_from_slice(args);
    serde_json::from_str(&env.ok(&all)).unwrap()
}

/// `add` with `args`, the client secret on stdin when `secret`.
fn add(env: &TestEnv, args: &[&str], secret: bool) -> std::process::Output {
    let mut all = vec!["add"];
    all.extend_from_slice(args);
    if secret {
        all.push("--secret-stdin");
    }
    output_with_stdin(&mut env.cmd(&all), SECRET.as_bytes())
}

fn add_ok(env: &TestEnv, args: &[&str], secret: bool) {
    let out = add(env, args, secret);
    assert!(out.status.success(), "add {args:?}: {}", stderr_of(&out));
}

#[test]
fn jwt_bearer_signs_an_assertion_with_the_profiles_key_and_refreshes_it() {
    let env = TestEnv::new();
    let key = gen_key(&env, "p256");
    let oidc = Oidc::start(
        &env,
        &json!({"ttl": 600, "clients": [{
            "client_id": "bearer-app", "auth": "none", "alg": "ES256",
            "public_key_pem": public_pem(&key), "grant_types": [JWT_BEARER],
        }]}),
    );
    add_ok(
        &env,
        &[
            "jb",
            "--issuer",
            &oidc.issuer,
            "--client-id",
            "bearer-app",
            "--grant",
            "jwt-bearer",
            "--key-file",
            key.to_str().unwrap(),
            "--subject",
            "alice@example.com",
            "--scope",
            "api:read",
        ],
        false,
    );
    let first = token_json(&env, &["jb"]);
    let second = token_json(&env, &["--force", "jb"]);
    assert_ne!(first["access_token"], second["access_token"]);
    let seen = oidc.events_of("jwt-bearer");
    assert_eq!(seen.len(), 2);
    let jwks: Value = serde_json::from_str(&env.ok(&["jwks", "jb"])).unwrap();
    for event in &seen {
        assert_eq!(event["sub"], "alice@example.com");
        assert_eq!(event["kid"], jwks["keys"][0]["kid"]);
        assert_eq!(event["aud"], oidc.issuer);
    }
    let jti = |e: &Value| jwt_claims(e["assertion"].as_str().unwrap())["jti"].clone();
    assert_ne!(jti(&seen[0]), jti(&seen[1]), "an assertion was reused");
}

/// A Google service-account key file for `key` (as Google's console
/// downloads it), naming the test provider's Google endpoint.
pub(crate) fn google_key_file(env: &TestEnv, oidc_issuer: &str, key: &Path) -> std::path::PathBuf {
    let path = env.path("sa.json");
    let file = json!({
        "type": "service_account",
        "project_id": "jwtagent-test",
        "private_key_id": "4f2a9c0e1b7d",
        "private_key": std::fs::read_to_string(key).unwrap(),
        "client_email": "ci@jwtagent-test.iam.gserviceaccount.com",
        "client_id": "101234567890",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": format!("{oidc_issuer}/google/token"),
    });
    std::fs::write(&path, file.to_string()).unwrap();
    path
}

#[test]
fn a_google_service_account_key_file_is_imported_and_used_in_googles_form() {
    let env = TestEnv::new();
    let key = gen_key(&env, "rsa");
    let oidc = google_provider(&env, &key);
    let file = google_key_file(&env, &oidc.issuer, &key);
    let scope = "https://www.googleapis.com/auth/cloud-platform";
    add_ok(
        &env,
        &[
            "gcp",
            "--google-credentials",
            file.to_str().unwrap(),
            "--scope",
            scope,
            "--subject",
            "admin@example.com",
        ],
        false,
    );
    let shown = env.ok(&["show", "gcp"]);
    assert!(
        shown.contains("jwt-bearer (Google service account)")
            && shown.contains("subject         admin@example.com")
            && shown.contains("ci@jwtagent-test.iam.gserviceaccount.com"),
        "{shown}"
    );
    // The file is not needed afterwards; the key is in the keyring.
    std::fs::remove_file(&file).unwrap();
    let config = std::fs::read_to_string(env.path("config/jwtagent/profiles.toml")).unwrap();
    assert!(!config.contains("PRIVATE KEY"));
    let token = token_json(&env, &["gcp"]);
    assert!(
        token["access_token"].as_str().unwrap().starts_with("ya29."),
        "{token}"
    );
    token_json(&env, &["--force", "gcp"]);
    let seen = oidc.events_of("google");
    assert_eq!(seen.len(), 2, "{:?}", oidc.events());
    assert_eq!(seen[0]["scope"], scope);
    assert_eq!(seen[0]["sub"], "admin@example.com");
    assert_eq!(seen[0]["alg"], "RS256");
    assert!(oidc.events_of("error").is_empty());
}

#[test]
fn other_google_credential_files_and_broken_ones_are_refused_clearly() {
    let env = TestEnv::new();
    for (body, expected) in [
        (
            json!({"type": "authorized_user", "refresh_token": "x"}).to_string(),
            "holds a user's refresh token (type authorized_user",
        ),
        (
            json!({"type": "external_account"}).to_string(),
            "is a \"external_account\" credentials file; jwtagent imports service-account keys",
        ),
        (
            json!({"type": "service_account", "client_email": "a@b"}).to_string(),
            "has no \"private_key\"",
        ),
        (
            "{not json".to_string(),
            "is not a Google credentials JSON file",
        ),
    ] {
        let path = env.path("bad.json");
        std::fs::write(&path, body).unwrap();
        let out = add(
            &env,
            &["gcp", "--google-credentials", path.to_str().unwrap()],
            false,
        );
        assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
        assert!(stderr_of(&out).contains(expected), "{}", stderr_of(&out));
    }
}

fn exchange_provider(env: &TestEnv, grants: bool) -> Oidc {
    Oidc::start(
        env,
        &json!({"ttl": 600, "grants": grants, "clients": [
            {"client_id": "subject-app", "auth": "client_secret_post", "secret": SECRET},
            {"client_id": "actor-app", "auth": "client_secret_post", "secret": SECRET},
            {"client_id": "exchanger", "auth": "client_secret_post", "secret": SECRET,
             "grant_types": ["client_credentials", TOKEN_EXCHANGE]},
        ]}),
    )
}

fn add_client(env: &TestEnv, name: &str, oidc: &Oidc, client: &str, extra: &[&str]) {
    let mut args = vec![
        name,
        "--issuer",
        &oidc.issuer,
        "--client-id",
        client,
        "--auth",
        "client_secret_post",
    ];
    args.extend_from_slice(extra);
    add_ok(env, &args, true);
}

#[test]
fn token_exchange_exchanges_the_subject_profiles_token_once_for_many_callers() {
    let env = TestEnv::new();
    let oidc = exchange_provider(&env, true);
    add_client(&env, "user", &oidc, "subject-app", &[]);
    add_client(&env, "robot", &oidc, "actor-app", &[]);
    add_client(
        &env,
        "ex",
        &oidc,
        "exchanger",
        &[
            "--grant",
            "token-exchange",
            "--subject-profile",
            "user",
            "--actor-profile",
            "robot",
            "--audience",
            "https://api.example",
        ],
    );
    // Twenty callers at once, nothing cached: one subject fetch, one actor
    // fetch, one exchange.
    let children: Vec<_> = (0..20)
        .map(|_| {
            env.cmd(&["token", "--json", "ex"])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let answers: Vec<Value> = children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert!(out.status.success(), "{}", stderr_of(&out));
            serde_json::from_slice(&out.stdout).unwrap()
        })
        .collect();
    assert!(
        answers
            .iter()
            .all(|a| a["access_token"] == answers[0]["access_token"])
    );
    assert_eq!(answers[0]["issued_token_type"], ACCESS_TOKEN_TYPE);
    assert_eq!(answers[0]["token_type"], "Bearer");
    assert_eq!(oidc.grants("subject-app").len(), 1);
    assert_eq!(oidc.grants("actor-app").len(), 1);
    let exchanges = oidc.events_of("token-exchange");
    assert_eq!(exchanges.len(), 1, "{exchanges:?}");
    assert_eq!(exchanges[0]["subject"], "subject-app");
    assert_eq!(exchanges[0]["actor"], "actor-app");
    assert_eq!(exchanges[0]["actor_token_type"], ACCESS_TOKEN_TYPE);
    assert_eq!(exchanges[0]["audience"], "https://api.example");
    // A forced refresh of the exchanged profile exchanges again.
    let forced = token_json(&env, &["--force", "ex"]);
    assert_eq!(oidc.events_of("token-exchange").len(), 2);
    // Its subject's token is refreshed: the exchanged one is replaced too,
    // made from the new subject, at the next request.
    token_json(&env, &["--force", "user"]);
    let after = token_json(&env, &["ex"]);
    assert_ne!(after["access_token"], forced["access_token"]);
    assert_eq!(oidc.events_of("token-exchange").len(), 3);
    // And served from the cache after that.
    assert_eq!(
        token_json(&env, &["ex"])["access_token"],
        after["access_token"]
    );
    assert_eq!(oidc.events_of("token-exchange").len(), 3);
}

#[test]
fn a_circle_of_profiles_is_refused_and_so_is_a_missing_one() {
    let env = TestEnv::new();
    let oidc = exchange_provider(&env, true);
    add_client(&env, "a", &oidc, "subject-app", &[]);
    add_client(
        &env,
        "b",
        &oidc,
        "exchanger",
        &["--grant", "token-exchange", "--subject-profile", "a"],
    );
    // Replacing a with an exchange of b would close the circle.
    let out = add(
        &env,
        &[
            "a",
            "--issuer",
            &oidc.issuer,
            "--client-id",
            "exchanger",
            "--auth",
            "client_secret_post",
            "--grant",
            "token-exchange",
            "--subject-profile",
            "b",
        ],
        true,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr_of(&out).contains("would feed each other tokens in a circle: a -> b -> a"),
        "{}",
        stderr_of(&out)
    );
    let out = add(
        &env,
        &[
            "c",
            "--issuer",
            &oidc.issuer,
            "--client-id",
            "exchanger",
            "--grant",
            "token-exchange",
            "--subject-profile",
            "nobody",
        ],
        true,
    );
    assert!(
        stderr_of(&out).contains("takes tokens from profile \"nobody\", which does not exist"),
        "{}",
        stderr_of(&out)
    );
    // The old a is intact and serves tokens.
    env.ok(&["token", "a"]);
}

#[test]
fn a_server_without_the_grant_says_so_verbatim() {
    let env = TestEnv::new();
    let oidc = exchange_provider(&env, false);
    add_client(&env, "user", &oidc, "subject-app", &[]);
    add_client(
        &env,
        "ex",
        &oidc,
        "subject-app",
        &["--grant", "token-exchange", "--subject-profile", "user"],
    );
    let out = env.run(&["token", "ex"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr_of(&out).contains("idp_error") && stderr_of(&out).contains("unsupported_grant_type"),
        "{}",
        stderr_of(&out)
    );
}

/// A provider for an ID-JAG chain: `user-app`, whose token is exchanged,
/// and `agent-app`, which exchanges it and presents the ID-JAG; both with
/// client secret `secret`.
pub(crate) fn id_jag_provider(env: &TestEnv, secret: &str) -> Oidc {
    Oidc::start(
        env,
        &json!({"ttl": 600, "clients": [
            {"client_id": "user-app", "auth": "client_secret_post", "secret": secret},
            {"client_id": "agent-app", "auth": "client_secret_post", "secret": secret,
             "grant_types": ["client_credentials", TOKEN_EXCHANGE, JWT_BEARER]},
        ]}),
    )
}

/// A provider with Google's service-account endpoint, for the account
/// whose key is `key`.
pub(crate) fn google_provider(env: &TestEnv, key: &Path) -> Oidc {
    Oidc::start(
        env,
        &json!({"ttl": 600, "clients": [], "google": {
            "client_email": "ci@jwtagent-test.iam.gserviceaccount.com",
            "private_key_id": "4f2a9c0e1b7d",
            "public_key_pem": public_pem(key),
        }}),
    )
}

#[test]
fn an_id_jag_chain_token_exchange_then_jwt_bearer() {
    // draft-ietf-oauth-identity-assertion-authz-grant: the IdP exchanges the
    // user's token for an ID-JAG; the resource's authorization server takes
    // it as a jwt-bearer assertion. One provider plays both roles here.
    let env = TestEnv::new();
    let oidc = id_jag_provider(&env, SECRET);
    add_client(&env, "user", &oidc, "user-app", &[]);
    add_client(
        &env,
        "idjag",
        &oidc,
        "agent-app",
        &[
            "--grant",
            "token-exchange",
            "--subject-profile",
            "user",
            "--requested-token-type",
            ID_JAG,
            "--audience",
            &oidc.issuer,
            "--scope",
            "api:read",
        ],
    );
    add_client(
        &env,
        "api",
        &oidc,
        "agent-app",
        &[
            "--grant",
            "jwt-bearer",
            "--assertion-profile",
            "idjag",
            "--scope",
            "api:read",
        ],
    );
    let token = token_json(&env, &["api"]);
    assert_eq!(token["token_type"], "Bearer");
    let jag = token_json(&env, &["idjag"]);
    assert_eq!(jag["issued_token_type"], ID_JAG);
    assert_eq!(jag["token_type"], "N_A");
    // Not an access token: no Authorization header is made of it.
    let out = env.run(&["header", "idjag"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr_of(&out).contains("not an access token (urn:ietf:params:oauth:token-type:id-jag)"),
        "{}",
        stderr_of(&out)
    );
    let bearer = oidc.events_of("jwt-bearer");
    assert_eq!(bearer.len(), 1);
    assert_eq!(bearer[0]["typ"], "oauth-id-jag+jwt");
    assert_eq!(bearer[0]["sub"], "user-app");
    assert_eq!(bearer[0]["assertion"], jag["access_token"]);
    assert_eq!(oidc.events_of("token-exchange")[0]["requested"], ID_JAG);
}

pub(crate) fn github(env: &TestEnv, key: &Path) -> Oidc {
    Oidc::start_script(
        env,
        "github-standin.mjs",
        &json!({
            "app_id": 4242,
            "installations": [77],
            "public_key_pem": public_pem(key),
            "tls": {"cert": pki().server.cert, "key": pki().server.key},
        }),
    )
}

fn add_github(env: &TestEnv, standin: &Oidc, app: &str, key: &Path) -> std::process::Output {
    add(
        env,
        &[
            "gh",
            "--github-app",
            app,
            "--installation",
            "77",
            "--key-file",
            key.to_str().unwrap(),
            "--api-url",
            &standin.issuer,
            "--repository",
            "web",
            "--permission",
            "contents=read",
        ],
        false,
    )
}

#[test]
fn a_github_app_gets_installation_tokens_and_git_can_use_them() {
    let env = TestEnv::new();
    let key = gen_key(&env, "rsa");
    let standin = github(&env, &key);
    let out = add_github(&env, &standin, "4242", &key);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let token = token_json(&env, &["gh"]);
    let value = token["access_token"].as_str().unwrap().to_string();
    assert!(value.starts_with("ghs_"), "{token}");
    let issued = standin.wait_event("the stand-in issued a token", |e| e["event"] == "token");
    assert_eq!(issued["token"], value);
    assert_eq!(issued["repositories"], json!(["web"]));
    assert_eq!(issued["permissions"], json!({"contents": "read"}));
    assert_eq!(issued["iss"], "4242");
    let (iat, exp) = (
        issued["iat"].as_u64().unwrap(),
        issued["exp"].as_u64().unwrap(),
    );
    assert!(exp - iat <= 600, "app JWT lives {}s", exp - iat);
    // git's credential helper hands it out as x-access-token.
    let mut git = env.cmd(&["git-credential", "gh", "get"]);
    let out = output_with_stdin(&mut git, b"protocol=https\nhost=github.com\n\n");
    let printed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        printed.contains("username=x-access-token")
            && printed.contains(&format!("password={value}")),
        "{printed}{}",
        stderr_of(&out)
    );
    // Refreshed like any token.
    let again = token_json(&env, &["--force", "gh"]);
    assert_ne!(again["access_token"], token["access_token"]);
}

#[test]
fn a_wrong_app_id_or_a_key_that_is_not_rsa_gets_a_clear_error() {
    let env = TestEnv::new();
    let key = gen_key(&env, "rsa");
    let standin = github(&env, &key);
    // Found at `add`, which gets a token first: nothing is saved.
    let out = add_github(&env, &standin, "999", &key);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr_of(&out).contains("(HTTP 401): 'Issuer' claim ('iss') must be the app's id"),
        "{}",
        stderr_of(&out)
    );
    assert!(
        !env.config_file().exists()
            || !std::fs::read_to_string(env.config_file())
                .unwrap()
                .contains("[profiles.gh]")
    );
    let ec = gen_key(&env, "p256");
    let out = add_github(&env, &standin, "4242", &ec);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr_of(&out).contains("GitHub signs app JWTs with RS256 only"),
        "{}",
        stderr_of(&out)
    );
    let junk = env.path("junk.pem");
    std::fs::write(&junk, "not a key").unwrap();
    let out = add_github(&env, &standin, "4242", &junk);
    assert!(
        stderr_of(&out).contains("not a PEM private key"),
        "{}",
        stderr_of(&out)
    );
}

/// Revokes `token` of `client` at the provider (RFC 7009), as its owner
/// could at any time. The token goes in the environment: after `-e`, node
/// would take one that starts with `-` for an option of its own.
fn revoke(oidc: &Oidc, client: &str, token: &str) {
    let script = format!(
        "const r = await fetch('{}/token/revocation', {{method: 'POST', headers: {{'content-type': 'application/x-www-form-urlencoded'}}, body: new URLSearchParams({{token: process.env.TOKEN, client_id: '{client}', client_secret: '{SECRET}'}})}}); process.exit(r.ok ? 0 : 1);",
        oidc.issuer
    );
    let node = require_tool("node", "nodejs");
    let out = std::process::Command::new(node)
        .args(["--input-type=module", "-e", &script])
        .env("TOKEN", token)
        .env("NODE_EXTRA_CA_CERTS", &pki().ca)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "revocation failed: {}",
        stderr_of(&out)
    );
}

#[test]
fn an_exchanged_token_never_outlives_its_subject_and_a_dead_subject_is_reported() {
    let env = TestEnv::new();
    let oidc = Oidc::start(
        &env,
        &json!({"ttl": 3600, "ttls": {"subject-app": 120}, "clients": [
            {"client_id": "subject-app", "auth": "client_secret_post", "secret": SECRET},
            {"client_id": "exchanger", "auth": "client_secret_post", "secret": SECRET,
             "grant_types": ["client_credentials", TOKEN_EXCHANGE]},
        ]}),
    );
    add_client(&env, "user", &oidc, "subject-app", &[]);
    add_client(
        &env,
        "ex",
        &oidc,
        "exchanger",
        &["--grant", "token-exchange", "--subject-profile", "user"],
    );
    let exchanged = token_json(&env, &["ex"]);
    let subject = token_json(&env, &["user"]);
    // The server gave the exchanged token an hour; its subject has two
    // minutes, and so has it.
    let (ex_at, subject_at) = (
        exchanged["expires_at"].as_u64().unwrap(),
        subject["expires_at"].as_u64().unwrap(),
    );
    assert!(
        ex_at <= subject_at,
        "exchanged {ex_at} outlives subject {subject_at}"
    );
    // The subject's token is revoked at the server: the exchange is refused,
    // and the server's words reach the user.
    revoke(
        &oidc,
        "subject-app",
        subject["access_token"].as_str().unwrap(),
    );
    let out = env.run(&["token", "--force", "ex"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr_of(&out).contains("invalid_grant")
            && stderr_of(&out).contains("the subject_token is invalid or expired"),
        "{}",
        stderr_of(&out)
    );
}
