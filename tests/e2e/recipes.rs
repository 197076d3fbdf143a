//! docs/recipes.md, run as written: each recipe's shell blocks against the
//! test OpenID Provider configured as that server behaves (its `aud` rule,
//! its `audience` parameter, its `kid` lookup, its certificate header).

use crate::common::*;
use serde_json::{Value, json};
use std::path::PathBuf;

const SECRET: &str = "recipe-client-secret-0123456789";

fn doc() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/recipes.md"))
        .expect("read docs/recipes.md")
}

/// The `sh` blocks of the section headed `## heading`, joined.
fn recipe(heading: &str) -> String {
    let doc = doc();
    let start = doc
        .find(&format!("\n## {heading}\n"))
        .unwrap_or_else(|| panic!("no recipe {heading:?} in docs/recipes.md"));
    let section = &doc[start + 1..];
    let section = match section[3..].find("\n## ") {
        Some(end) => &section[..end + 3],
        None => section,
    };
    let mut script = String::new();
    let mut rest = section;
    while let Some(open) = rest.find("```sh\n") {
        let body = &rest[open + 6..];
        let close = body.find("\n```").expect("closing fence");
        script.push_str(&body[..close]);
        script.push('\n');
        rest = &body[close..];
    }
    assert!(!script.is_empty(), "recipe {heading:?} has no sh block");
    script
}

/// Runs recipe `heading` with `vars`, the client secret on stdin; returns
/// its standard output.
fn run(env: &TestEnv, heading: &str, vars: &[(&str, &str)]) -> String {
    let mut cmd = env.shell(&recipe(heading));
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = output_with_stdin(&mut cmd, SECRET.as_bytes());
    assert!(
        out.status.success(),
        "recipe {heading:?} failed: {}",
        stderr_of(&out)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The last line a recipe printed: the token of its last `jwtagent token`.
fn last_token(stdout: &str) -> &str {
    let token = stdout.lines().last().unwrap_or_default();
    assert!(token.len() > 20, "no token in {stdout:?}");
    token
}

#[test]
fn auth0_recipe_sends_the_audience() {
    let env = TestEnv::new();
    let oidc = Oidc::start(
        &env,
        &json!({"ttl": 600, "require_audience": true, "clients": [
            {"client_id": "auth0-app", "auth": "client_secret_post", "secret": SECRET}
        ]}),
    );
    // Auth0 refuses a request without an audience, as configured here.
    let out = run(
        &env,
        "Auth0",
        &[
            ("ISSUER", &oidc.issuer),
            ("CLIENT_ID", "auth0-app"),
            ("API", "https://api.example.com"),
        ],
    );
    last_token(&out);
    assert_eq!(
        oidc.grants("auth0-app")[0]["audience"],
        "https://api.example.com"
    );
    assert!(oidc.events_of("error").is_empty());
    // Without --audience the same server refuses, as Auth0 does.
    env.ok(&["remove", "auth0"]);
    let mut cmd = env.add_issuer_cmd("bare", &oidc.issuer, "auth0-app", "client_secret_post", &[]);
    let added = output_with_stdin(cmd.arg("--secret-stdin"), SECRET.as_bytes());
    assert!(added.status.success());
    let refused = env.run(&["token", "bare"]);
    assert!(
        stderr_of(&refused).contains("No audience parameter was provided"),
        "{}",
        stderr_of(&refused)
    );
}

#[test]
fn entra_id_secret_recipe_asks_for_resource_default_scope() {
    let env = TestEnv::new();
    let scope = "https://graph.microsoft.com/.default";
    let oidc = Oidc::start(
        &env,
        &json!({"ttl": 600, "scopes": [scope], "clients": [
            {"client_id": "entra-app", "auth": "client_secret_post", "secret": SECRET, "scope": scope}
        ]}),
    );
    let out = run(
        &env,
        "Entra ID (Azure AD): client secret",
        &[
            ("TOKEN_URL", &oidc.token_endpoint()),
            ("CLIENT_ID", "entra-app"),
        ],
    );
    last_token(&out);
    assert_eq!(oidc.grants("entra-app")[0]["scope"], scope);
}

/// An RSA key and a self-signed certificate for it, as an Entra ID app
/// registration takes them (openssl req -x509).
fn rsa_certificate(env: &TestEnv) -> (PathBuf, PathBuf) {
    let openssl = require_tool("openssl", "openssl");
    let (key, cert) = (env.path("app.key"), env.path("app.crt"));
    let out = std::process::Command::new(openssl)
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
        ])
        .args(["-subj", "/CN=entra-app", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    (key, cert)
}

#[test]
fn entra_id_certificate_recipe_names_the_certificate_and_sends_ps256() {
    let env = TestEnv::new();
    let scope = "https://graph.microsoft.com/.default";
    let (key, cert) = rsa_certificate(&env);
    let oidc = Oidc::start(
        &env,
        &json!({
            "ttl": 600,
            "scopes": [scope],
            "assertion_aud": "token_endpoint",
            "require_x5t_s256": true,
            "clients": [{
                "client_id": "entra-app",
                "auth": "private_key_jwt",
                "alg": "PS256",
                "public_key_pem": public_pem(&key),
                "kid": null,
                "scope": scope,
            }],
        }),
    );
    let out = run(
        &env,
        "Entra ID: certificate credentials",
        &[
            ("TOKEN_URL", &oidc.token_endpoint()),
            ("CLIENT_ID", "entra-app"),
            ("KEY", key.to_str().unwrap()),
            ("CERT", cert.to_str().unwrap()),
        ],
    );
    last_token(&out);
    let grant = &oidc.grants("entra-app")[0];
    let header = jwt_header(grant["assertion"].as_str().unwrap());
    assert_eq!(header["alg"], "PS256");
    assert!(header["x5t#S256"].is_string(), "{header}");
    assert!(header.get("kid").is_none(), "{header}");
    assert_eq!(
        jwt_claims(grant["assertion"].as_str().unwrap())["aud"],
        oidc.token_endpoint()
    );
    assert!(oidc.events_of("error").is_empty());
}

#[test]
fn okta_recipe_sends_the_token_endpoint_aud_and_the_thumbprint_kid() {
    let env = TestEnv::new();
    let key = gen_key(&env, "rsa");
    // Registered as `jwtagent jwks` prints it: kid = the key's thumbprint.
    let oidc = Oidc::start(
        &env,
        &json!({"ttl": 600, "assertion_aud": "token_endpoint", "clients": [{
            "client_id": "okta-app",
            "auth": "private_key_jwt",
            "alg": "RS256",
            "public_key_pem": public_pem(&key),
        }]}),
    );
    let out = run(
        &env,
        "Okta: private_key_jwt",
        &[
            ("ISSUER", &oidc.issuer),
            ("CLIENT_ID", "okta-app"),
            ("KEY", key.to_str().unwrap()),
        ],
    );
    last_token(&out);
    // `jwtagent jwks okta` printed the JWKS to register, with the kid sent.
    let json = &out[out.find('{').unwrap()..=out.rfind('}').unwrap()];
    let jwks: Value = serde_json::from_str(json).unwrap();
    let grant = &oidc.grants("okta-app")[0];
    let assertion = grant["assertion"].as_str().unwrap();
    assert_eq!(jwt_header(assertion)["kid"], jwks["keys"][0]["kid"]);
    assert_eq!(jwt_claims(assertion)["aud"], oidc.token_endpoint());
    assert!(
        oidc.events_of("error").is_empty(),
        "the first request was refused"
    );
}

#[test]
fn keycloak_recipe_uses_a_secret_and_a_signed_jwt_with_the_issuer_as_aud() {
    let env = TestEnv::new();
    let key = gen_key(&env, "p256");
    // Keycloak's strict mode: the issuer (the realm URL) only.
    let oidc = Oidc::start(
        &env,
        &json!({"ttl": 600, "assertion_aud": "issuer", "clients": [
            {"client_id": "kc-app", "auth": "client_secret_basic", "secret": SECRET},
            {"client_id": "kc-jwt-app", "auth": "private_key_jwt", "alg": "ES256",
             "public_key_pem": public_pem(&key)},
        ]}),
    );
    let out = run(
        &env,
        "Keycloak",
        &[
            ("ISSUER", &oidc.issuer),
            ("CLIENT_ID", "kc-app"),
            ("JWT_CLIENT_ID", "kc-jwt-app"),
            ("KEY", key.to_str().unwrap()),
        ],
    );
    let tokens: Vec<_> = out.lines().filter(|l| !l.starts_with("Added")).collect();
    assert_eq!(tokens.len(), 2, "{out}");
    assert_eq!(
        oidc.grants("kc-app")[0]["auth_method"],
        "client_secret_basic"
    );
    let assertion = oidc.grants("kc-jwt-app")[0]["assertion"].clone();
    assert_eq!(jwt_claims(assertion.as_str().unwrap())["aud"], oidc.issuer);
    assert!(oidc.events_of("error").is_empty());
}

#[test]
fn google_recipe_imports_the_key_file_and_needs_it_no_more() {
    let env = TestEnv::new();
    let key = gen_key(&env, "rsa");
    let oidc = crate::grants::google_provider(&env, &key);
    let file = crate::grants::google_key_file(&env, &oidc.issuer, &key);
    let out = run(
        &env,
        "Google Cloud: a service account",
        &[("KEY_FILE", file.to_str().unwrap())],
    );
    assert!(last_token(&out).starts_with("ya29."));
    assert!(!file.exists(), "the recipe removes the key file");
    let seen: Vec<_> = oidc
        .events()
        .into_iter()
        .filter(|e| e["event"] == "google")
        .collect();
    assert_eq!(
        seen[0]["scope"],
        "https://www.googleapis.com/auth/cloud-platform"
    );
}

#[test]
fn github_app_recipe_gets_an_installation_token_and_sets_up_git() {
    let env = TestEnv::new();
    let key = gen_key(&env, "rsa");
    let standin = crate::grants::github(&env, &key);
    let out = run(
        &env,
        "GitHub App: installation tokens",
        &[
            ("APP_ID", "4242"),
            ("INSTALLATION_ID", "77"),
            ("KEY", key.to_str().unwrap()),
            ("API_URL", &standin.issuer),
        ],
    );
    assert!(last_token(&out).starts_with("ghs_"));
    let issued = standin.wait_event("a token", |e| e["event"] == "token");
    assert_eq!(issued["permissions"], json!({"contents": "read"}));
    let gitconfig = std::fs::read_to_string(env.path("home/.gitconfig")).unwrap();
    assert!(
        gitconfig.contains("jwtagent git-credential gh"),
        "{gitconfig}"
    );
}

#[test]
fn id_jag_chain_recipe_exchanges_then_presents_the_assertion() {
    let env = TestEnv::new();
    let oidc = crate::grants::id_jag_provider(&env, SECRET);
    let secret_file = env.path("agent-app.secret");
    std::fs::write(&secret_file, SECRET).unwrap();
    let out = run(
        &env,
        "Cross-app access: an ID-JAG chain",
        &[
            ("IDP", &oidc.issuer),
            ("AS", &oidc.issuer),
            ("CLIENT_ID", "agent-app"),
            ("USER_CLIENT_ID", "user-app"),
            ("SECRET_FILE", secret_file.to_str().unwrap()),
        ],
    );
    last_token(&out);
    let bearer: Vec<_> = oidc
        .events()
        .into_iter()
        .filter(|e| e["event"] == "jwt-bearer")
        .collect();
    assert_eq!(bearer.len(), 1);
    assert_eq!(bearer[0]["typ"], "oauth-id-jag+jwt");
    assert_eq!(bearer[0]["sub"], "user-app");
}

#[test]
fn entra_device_code_recipe_signs_in_and_serves_the_users_token() {
    use crate::login::{Login, browse};
    let env = TestEnv::new();
    let oidc = Oidc::start(
        &env,
        &json!({"ttl": 600, "device_interval": 1,
        "scopes": ["openid", "offline_access", "User.Read"],
        "clients": [{
            "client_id": "entra-cli", "auth": "none",
            "grant_types": ["urn:ietf:params:oauth:grant-type:device_code", "refresh_token"],
            "scope": "openid offline_access User.Read",
        }]}),
    );
    let mut cmd = env.shell(&recipe("Entra ID: sign in as yourself (device code)"));
    cmd.env("ISSUER", &oidc.issuer)
        .env("CLIENT_ID", "entra-cli");
    let mut session = Login::spawn(cmd);
    let (uri, code) = session.device_prompt();
    assert_eq!(browse(&uri, &["--user-code", &code])["status"], 200);
    let (status, said) = session.finish();
    assert_eq!(status, Some(0), "{said}");
    let grants = oidc.events_of("token");
    let device = grants
        .iter()
        .find(|e| e["grant_type"] == "urn:ietf:params:oauth:grant-type:device_code")
        .expect("a device-code grant");
    assert_eq!(device["client_id"], "entra-cli");
    assert!(crate::login::stored_refresh_token(&env, "me").is_some());
}
