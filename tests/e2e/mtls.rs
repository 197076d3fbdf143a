//! Mutual TLS (RFC 8705): client authentication with a certificate from a CA
//! (tls_client_auth) or a self-signed one (self_signed_tls_client_auth), and
//! access tokens bound to it (`cnf.x5t#S256`), against the test OpenID
//! Provider's mTLS feature behind a node TLS server that asks for client
//! certificates.

use crate::common::*;
use crate::pki::{Leaf, pki};
use serde_json::{Value, json};

const RESOURCE: &str = "https://api.example/";

fn provider(env: &TestEnv, alias: bool) -> Oidc {
    let self_signed = std::fs::read_to_string(&pki().self_signed_client.cert).unwrap();
    Oidc::start(
        env,
        &json!({
            "ttl": 600,
            "mtls": {"ca": pki().ca, "alias": alias},
            "clients": [
                {"client_id": "pki", "auth": "tls_client_auth", "subject_dn": "CN=pki-client"},
                {"client_id": "self", "auth": "self_signed_tls_client_auth", "cert_pem": self_signed},
            ],
        }),
    )
}

/// `add NAME` for `client` of `oidc` with `auth`, the certificate of
/// `leaf` and its key.
fn add(
    env: &TestEnv,
    name: &str,
    oidc: &Oidc,
    auth: &str,
    client: &str,
    leaf: &Leaf,
) -> std::process::Output {
    add_with_key(env, name, oidc, auth, client, leaf, &leaf.key)
}

fn add_with_key(
    env: &TestEnv,
    name: &str,
    oidc: &Oidc,
    auth: &str,
    client: &str,
    leaf: &Leaf,
    key: &std::path::Path,
) -> std::process::Output {
    env.add_issuer_cmd(name, &oidc.issuer, client, auth, &["--resource", RESOURCE])
        .arg("--key-file")
        .arg(key)
        .arg("--cert-file")
        .arg(&leaf.cert)
        .output()
        .unwrap()
}

/// base64url(SHA-256(DER of the PEM certificate at `path`)), via openssl.
fn cert_thumbprint(path: &std::path::Path) -> String {
    require_tool("openssl", "openssl");
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl x509 -in '{}' -outform DER | openssl dgst -sha256 -binary | openssl base64 -A | tr '+/' '-_' | tr -d '='",
            path.display()
        ))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn token_json(env: &TestEnv, name: &str) -> Value {
    serde_json::from_str(&env.ok(&["token", "--json", name])).unwrap()
}

#[test]
fn both_mtls_methods_get_tokens_bound_to_the_client_certificate() {
    let env = TestEnv::new();
    let oidc = provider(&env, false);
    for (name, auth, client, leaf) in [
        ("pki", "tls_client_auth", "pki", &pki().client),
        (
            "self",
            "self_signed_tls_client_auth",
            "self",
            &pki().self_signed_client,
        ),
    ] {
        let out = add(&env, name, &oidc, auth, client, leaf);
        assert!(out.status.success(), "{}", stderr_of(&out));
        let answer = token_json(&env, name);
        let claims = jwt_claims(answer["access_token"].as_str().unwrap());
        assert_eq!(
            claims["cnf"]["x5t#S256"],
            cert_thumbprint(&leaf.cert),
            "{name}: {claims}"
        );
        let shown = env.ok(&["show", name]);
        assert!(
            shown.contains(&format!("x5t#S256 {}", cert_thumbprint(&leaf.cert))),
            "{shown}"
        );
        let grants = oidc.grants(client);
        assert_eq!(grants.len(), 1);
        assert_eq!(grants[0]["auth_method"], auth);
        assert!(!grants[0]["via_mtls_alias"].as_bool().unwrap());
    }
    // The key is in the keyring, not in the config; the certificate is.
    let config = std::fs::read_to_string(env.path("config/jwtagent/profiles.toml")).unwrap();
    assert!(config.contains("BEGIN CERTIFICATE"));
    assert!(!config.contains("PRIVATE KEY"));
}

#[test]
fn an_mtls_client_uses_the_servers_mtls_endpoint_alias() {
    let env = TestEnv::new();
    let oidc = provider(&env, true);
    let leaf = &pki().client;
    let out = add(&env, "pki", &oidc, "tls_client_auth", "pki", leaf);
    assert!(out.status.success(), "{}", stderr_of(&out));
    token_json(&env, "pki");
    assert!(oidc.grants("pki")[0]["via_mtls_alias"].as_bool().unwrap());
}

#[test]
fn a_certificate_that_does_not_fit_is_refused_at_add() {
    let env = TestEnv::new();
    let oidc = provider(&env, false);
    // The key of another certificate.
    let out = add_with_key(
        &env,
        "api",
        &oidc,
        "tls_client_auth",
        "pki",
        &pki().client,
        &pki().self_signed_client.key,
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("the private key does not belong to the client certificate"),
        "{}",
        stderr_of(&out)
    );
    // An expired certificate.
    let expired = &pki().expired;
    let out = add(&env, "api", &oidc, "tls_client_auth", "pki", expired);
    assert!(
        stderr_of(&out).contains("the client certificate expired on Jan  1 00:00:00 2021"),
        "{}",
        stderr_of(&out)
    );
    // No certificate at all.
    let out = env.run(&[
        "add",
        "api",
        "--issuer",
        &oidc.issuer,
        "--client-id",
        "pki",
        "--auth",
        "tls_client_auth",
        "--key-file",
        pki().client.key.to_str().unwrap(),
    ]);
    assert!(
        stderr_of(&out).contains(
            "auth tls_client_auth needs the client certificate: add --cert-file CERT.pem"
        ),
        "{}",
        stderr_of(&out)
    );
    assert!(env.ok(&["list"]).trim().is_empty() || !env.ok(&["list"]).contains("api"));
    assert!(oidc.events().is_empty());
}

#[test]
fn a_private_key_jwt_assertion_names_its_certificate_by_x5t_s256() {
    let env = TestEnv::new();
    // Entra ID certificate credentials: a private_key_jwt client whose key
    // comes with a certificate, named in the assertion header.
    let leaf = &pki().self_signed_client;
    let public = {
        let out = std::process::Command::new("openssl")
            .args(["x509", "-pubkey", "-noout", "-in"])
            .arg(&leaf.cert)
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let oidc = Oidc::start(
        &env,
        &json!({"ttl": 600, "clients": [
            {"client_id": "entra", "auth": "private_key_jwt", "alg": "ES256", "public_key_pem": public}
        ]}),
    );
    env.ok(&[
        "add",
        "entra",
        "--issuer",
        &oidc.issuer,
        "--client-id",
        "entra",
        "--key-file",
        leaf.key.to_str().unwrap(),
        "--cert-file",
        leaf.cert.to_str().unwrap(),
    ]);
    env.ok(&["token", "entra"]);
    let header = jwt_header(oidc.grants("entra")[0]["assertion"].as_str().unwrap());
    assert_eq!(header["x5t#S256"], cert_thumbprint(&leaf.cert), "{header}");
}

#[test]
fn jwks_prints_what_a_self_signed_client_registers() {
    let env = TestEnv::new();
    let oidc = provider(&env, false);
    let leaf = &pki().self_signed_client;
    let out = add(
        &env,
        "reg",
        &oidc,
        "self_signed_tls_client_auth",
        "reg",
        leaf,
    );
    assert!(out.status.success(), "{}", stderr_of(&out));
    let jwks: Value = serde_json::from_str(&env.ok(&["jwks", "reg"])).unwrap();
    let key = &jwks["keys"][0];
    assert_eq!(key["x5t#S256"], cert_thumbprint(&leaf.cert));
    assert_eq!(key["x5c"].as_array().unwrap().len(), 1);
    assert!(key.get("d").is_none(), "a private member in {key}");
    register_self_signed(&oidc, "reg", &jwks);
    let answer = token_json(&env, "reg");
    let claims = jwt_claims(answer["access_token"].as_str().unwrap());
    assert_eq!(claims["cnf"]["x5t#S256"], cert_thumbprint(&leaf.cert));
}

/// Registers `client` for self_signed_tls_client_auth with `jwks` exactly as
/// `jwtagent jwks` printed it (RFC 7591).
fn register_self_signed(oidc: &Oidc, client: &str, jwks: &Value) {
    let metadata = json!({
        "client_id": client,
        "token_endpoint_auth_method": "self_signed_tls_client_auth",
        "tls_client_certificate_bound_access_tokens": true,
        "jwks": jwks,
        "grant_types": ["client_credentials"],
        "response_types": [],
        "redirect_uris": [],
    });
    let out = node("register.mjs", &[&oidc.issuer], &metadata.to_string());
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        stderr_of(&out)
    );
}

#[test]
fn keygen_makes_a_self_signed_client_certificate_to_register() {
    let env = TestEnv::new();
    let oidc = provider(&env, false);
    for alg in ["ES256", "EdDSA", "RS256"] {
        let name = format!("gen-{alg}");
        let out = env.run(&[
            "keygen",
            &name,
            "--auth",
            "self_signed_tls_client_auth",
            "--alg",
            alg,
            "--issuer",
            &oidc.issuer,
            "--client-id",
            &name,
            "--resource",
            RESOURCE,
        ]);
        assert!(out.status.success(), "{alg}: {}", stderr_of(&out));
        assert!(
            stderr_of(&out).contains("a self-signed certificate for it"),
            "{}",
            stderr_of(&out)
        );
        let jwks: Value = serde_json::from_slice(&out.stdout).unwrap();
        let key = &jwks["keys"][0];
        assert!(key.get("d").is_none(), "a private member in {key}");
        let x5t = key["x5t#S256"].as_str().unwrap().to_string();
        register_self_signed(&oidc, &name, &jwks);
        let answer = token_json(&env, &name);
        let claims = jwt_claims(answer["access_token"].as_str().unwrap());
        assert_eq!(claims["cnf"]["x5t#S256"], x5t, "{alg}");
        assert_eq!(
            oidc.grants(&name)[0]["auth_method"],
            "self_signed_tls_client_auth"
        );
    }
}
