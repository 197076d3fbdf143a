//! Conformance: jwtagent against a real OpenID Provider (panva/oidc-provider),
//! one client per authentication method and key type.

use crate::common::*;
use serde_json::{Value, json};
use std::process::Command;

const HS_SECRET: &str = "hs-shared-secret-0123456789-abcdefghij";

/// A provider with clients for every method and key type, and the profiles
/// that use them.
struct Setup {
    env: TestEnv,
    oidc: Oidc,
}

/// (profile/client id, auth, key kind or None, alg)
const CLIENTS: &[(&str, &str, Option<&str>, &str)] = &[
    ("basic", "client_secret_basic", None, ""),
    ("post", "client_secret_post", None, ""),
    ("hs256", "client_secret_jwt", None, "HS256"),
    ("hs384", "client_secret_jwt", None, "HS384"),
    ("hs512", "client_secret_jwt", None, "HS512"),
    ("rsa", "private_key_jwt", Some("rsa"), "RS256"),
    ("rsa-rs384", "private_key_jwt", Some("rsa"), "RS384"),
    ("rsa-rs512", "private_key_jwt", Some("rsa"), "RS512"),
    ("rsa-ps256", "private_key_jwt", Some("rsa"), "PS256"),
    ("rsa-ps384", "private_key_jwt", Some("rsa"), "PS384"),
    ("rsa-ps512", "private_key_jwt", Some("rsa"), "PS512"),
    ("p256", "private_key_jwt", Some("p256"), "ES256"),
    ("p384", "private_key_jwt", Some("p384"), "ES384"),
    ("ed25519", "private_key_jwt", Some("ed25519"), "EdDSA"),
    ("public", "none", None, ""),
];

fn secret_of(client: &str) -> String {
    match client {
        "basic" => "basic secret with spaces & symbols:/%".into(),
        "post" => "post-secret-0123456789".into(),
        _ => HS_SECRET.into(),
    }
}

fn setup(ttl: u64) -> Setup {
    let env = TestEnv::new();
    let mut keys = std::collections::HashMap::new();
    for kind in ["rsa", "p256", "p384", "ed25519"] {
        keys.insert(kind, gen_key(&env, kind));
    }
    let clients: Vec<Value> = CLIENTS
        .iter()
        .map(|(id, auth, key, alg)| {
            let mut c = json!({"client_id": id, "auth": auth});
            match *auth {
                "client_secret_basic" | "client_secret_post" => c["secret"] = json!(secret_of(id)),
                "client_secret_jwt" => {
                    c["secret"] = json!(HS_SECRET);
                    c["alg"] = json!(alg);
                }
                "private_key_jwt" => {
                    c["alg"] = json!(alg);
                    c["public_key_pem"] = json!(public_pem(&keys[key.unwrap()]));
                }
                _ => {}
            }
            c
        })
        .collect();
    let oidc = Oidc::start(&env, &json!({"ttl": ttl, "clients": clients}));
    for (id, auth, key, alg) in CLIENTS {
        let mut args = vec![
            "add".to_string(),
            "--no-verify".to_string(),
            id.to_string(),
            "--issuer".into(),
            oidc.issuer.clone(),
            "--client-id".into(),
            id.to_string(),
            "--auth".into(),
            auth.to_string(),
            "--scope".into(),
            "api:read".into(),
        ];
        if !alg.is_empty() {
            args.extend(["--alg".into(), alg.to_string()]);
        }
        let out = match (auth, key) {
            (_, Some(kind)) => {
                args.extend([
                    "--key-file".into(),
                    keys[kind].to_str().unwrap().to_string(),
                ]);
                env.run(&args.iter().map(String::as_str).collect::<Vec<_>>())
            }
            (&"none", None) => env.run(&args.iter().map(String::as_str).collect::<Vec<_>>()),
            _ => {
                args.push("--secret-stdin".into());
                env.run_with_stdin(
                    &args.iter().map(String::as_str).collect::<Vec<_>>(),
                    secret_of(id).as_bytes(),
                )
            }
        };
        assert!(out.status.success(), "add {id}: {}", stderr_of(&out));
    }
    Setup { env, oidc }
}

fn token_json(env: &TestEnv, args: &[&str]) -> Value {
    let mut full = vec!["token"];
    full.extend_from_slice(args);
    full.push("--json");
    serde_json::from_str(&env.ok(&full)).unwrap()
}

#[test]
fn every_client_authentication_method_and_key_type_gets_a_token() {
    let s = setup(600);
    for (id, auth, _, alg) in CLIENTS {
        let before = s.oidc.grants(id).len();
        let answer = token_json(&s.env, &[id]);
        let token = answer["access_token"].as_str().unwrap();
        assert!(token.len() > 20, "{id}: {answer}");
        assert_eq!(answer["token_type"], "Bearer");
        assert_eq!(answer["scope"], "api:read", "{id}");
        let expires_in = answer["expires_at"].as_u64().unwrap() as i64
            - std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64;
        assert!((590..=600).contains(&expires_in), "{id}: {expires_in}");
        // The provider's own record: the method it authenticated the client with.
        let grant = s
            .oidc
            .wait_event(&format!("the grant for {id} is recorded"), |e| {
                e["event"] == "token" && e["client_id"] == *id
            });
        assert_eq!(s.oidc.grants(id).len(), before + 1);
        assert_eq!(grant["auth_method"], *auth, "{id}");
        if !alg.is_empty() {
            let assertion = grant["assertion"].as_str().expect("an assertion was sent");
            assert_eq!(jwt_header(assertion)["alg"], *alg, "{id}");
        }
    }
}

#[test]
fn assertions_are_verified_claims_and_all_by_an_independent_implementation() {
    let s = setup(600);
    let node = require_tool("node", "nodejs");
    let hs_file = s.env.path("hs.secret");
    std::fs::write(&hs_file, HS_SECRET).unwrap();
    for (id, _, key, alg) in CLIENTS.iter().filter(|c| !c.3.is_empty()) {
        token_json(&s.env, &[id]);
        let grant = s
            .oidc
            .wait_event("the grant is recorded", |e| e["client_id"] == *id);
        let assertion = grant["assertion"].as_str().unwrap();
        let key_file = match key {
            Some(kind) => {
                let path = s.env.path(&format!("{kind}.pub.pem"));
                std::fs::write(&path, public_pem(&s.env.path(&format!("{kind}.pem")))).unwrap();
                path
            }
            None => hs_file.clone(),
        };
        let out = Command::new(&node)
            .arg(oidc_dir().join("verify-assertion.mjs"))
            .args([
                assertion,
                key_file.to_str().unwrap(),
                alg,
                id,
                &s.oidc.issuer,
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{id}: {}", stderr_of(&out));
        let verified: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(verified["header"]["typ"], "JWT");
        assert_eq!(
            verified["claims"]["aud"], s.oidc.issuer,
            "aud defaults to the issuer"
        );
    }
}

#[test]
fn every_assertion_has_a_fresh_jti() {
    let s = setup(600);
    token_json(&s.env, &["p256"]);
    token_json(&s.env, &["p256", "--force"]);
    token_json(&s.env, &["p256", "--force"]);
    wait_until("three grants", || s.oidc.grants("p256").len() == 3);
    let jtis: std::collections::HashSet<String> = s
        .oidc
        .grants("p256")
        .iter()
        .map(|g| {
            jwt_claims(g["assertion"].as_str().unwrap())["jti"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(jtis.len(), 3);
}

#[test]
fn assertion_audience_can_be_the_token_endpoint() {
    let s = setup(600);
    let key = s.env.path("p256.pem");
    let out = s.env.run(&[
        "add",
        "--no-verify",
        "p256",
        "--issuer",
        &s.oidc.issuer,
        "--client-id",
        "p256",
        "--key-file",
        key.to_str().unwrap(),
        "--assertion-aud",
        "token-endpoint",
    ]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    token_json(&s.env, &["p256"]);
    let grant = s.oidc.wait_event("the grant", |e| e["client_id"] == "p256");
    let claims = jwt_claims(grant["assertion"].as_str().unwrap());
    assert_eq!(claims["aud"], s.oidc.token_endpoint());

    // And with a token_url instead of discovery, the default aud is the endpoint.
    let out = s.env.run(&[
        "add",
        "--no-verify",
        "p256",
        "--token-url",
        &s.oidc.token_endpoint(),
        "--client-id",
        "p256",
        "--key-file",
        key.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let before = s.oidc.grants("p256").len();
    token_json(&s.env, &["p256"]);
    wait_until("a second grant", || s.oidc.grants("p256").len() > before);
    let grant = s.oidc.grants("p256").pop().unwrap();
    assert_eq!(
        jwt_claims(grant["assertion"].as_str().unwrap())["aud"],
        s.oidc.token_endpoint()
    );
}

#[test]
fn wrong_secret_or_key_is_idp_error_with_invalid_client_and_no_secret_in_it() {
    let s = setup(600);
    let wrong = "this-is-the-wrong-secret-but-long-enough";
    // A P-256 key the provider has never seen.
    let elsewhere = TestEnv::new();
    let wrong_key = gen_key(&elsewhere, "p256");
    for (name, client, auth) in [
        ("bad-basic", "basic", "client_secret_basic"),
        ("bad-hs", "hs256", "client_secret_jwt"),
        ("bad-key", "p256", "private_key_jwt"),
    ] {
        let out = if auth == "private_key_jwt" {
            s.env.run(&[
                "add",
                "--no-verify",
                name,
                "--issuer",
                &s.oidc.issuer,
                "--client-id",
                client,
                "--key-file",
                wrong_key.to_str().unwrap(),
            ])
        } else {
            s.env.run_with_stdin(
                &[
                    "add",
                    "--no-verify",
                    name,
                    "--issuer",
                    &s.oidc.issuer,
                    "--client-id",
                    client,
                    "--auth",
                    auth,
                    "--secret-stdin",
                ],
                wrong.as_bytes(),
            )
        };
        assert!(out.status.success(), "{}", stderr_of(&out));
        let out = s.env.run(&["token", name]);
        assert_eq!(out.status.code(), Some(1), "{name}");
        let err = stderr_of(&out);
        assert!(
            err.contains("idp_error") && err.contains("invalid_client") && err.contains("401"),
            "{err}"
        );
        assert!(!err.contains(wrong));
        // Over the wire the server's error is passed on as data.
        let mut conn = Conn::open(&s.env.default_socket());
        let r = conn.request(&json!({"id": 1, "op": "token", "name": name}).to_string());
        assert_eq!(r["error"]["code"], "idp_error");
        assert_eq!(r["error"]["idp"]["error"], "invalid_client");
        assert_eq!(r["error"]["idp"]["status"], 401);
        // With the server's own description, verbatim.
        assert_eq!(
            r["error"]["idp"]["error_description"], "client authentication failed",
            "{r}"
        );
        assert!(!r.to_string().contains(wrong));
        // The provider saw the wrong credential, and said why in its own log.
        s.oidc.wait_event("the provider logs the failure", |e| {
            e["event"] == "error" && e["client_id"] == client
        });
    }
}

#[test]
fn resource_request_yields_a_jwt_access_token_for_that_audience() {
    let s = setup(600);
    let answer = token_json(&s.env, &["rsa", "--resource", "https://api.example.com/"]);
    let claims = jwt_claims(answer["access_token"].as_str().unwrap());
    assert_eq!(claims["aud"], "https://api.example.com/");
    assert_eq!(claims["client_id"], "rsa");
    let grant = s.oidc.wait_event("the grant", |e| e["client_id"] == "rsa");
    assert_eq!(grant["resource"], "https://api.example.com/");
}

#[test]
fn discovery_document_naming_another_issuer_is_refused() {
    let s = setup(600);
    // Same server, but configured as "localhost": its document says 127.0.0.1.
    let port = s.oidc.issuer.rsplit(':').next().unwrap();
    let other = format!("https://localhost:{port}");
    let out = s.env.run(&[
        "add",
        "--no-verify",
        "lie",
        "--issuer",
        &other,
        "--client-id",
        "public",
        "--auth",
        "none",
    ]);
    assert!(out.status.success());
    let out = s.env.run(&["token", "lie"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert!(
        err.contains("idp_error") && err.contains("names issuer") && err.contains(&s.oidc.issuer),
        "{err}"
    );
    assert!(
        s.oidc.grants("public").is_empty(),
        "no token request was made"
    );
}

#[test]
fn cached_token_is_served_until_force_or_min_ttl_asks_for_a_new_one() {
    let s = setup(600);
    let first = token_json(&s.env, &["basic"]);
    let again = token_json(&s.env, &["basic"]);
    assert_eq!(first["access_token"], again["access_token"]);
    assert_eq!(s.oidc.grants("basic").len(), 1, "served from the cache");
    let forced = token_json(&s.env, &["basic", "--force"]);
    assert_ne!(forced["access_token"], first["access_token"]);
    let longer = token_json(&s.env, &["basic", "--min-ttl", "20m"]);
    assert_ne!(longer["access_token"], forced["access_token"]);
    wait_until("three grants", || s.oidc.grants("basic").len() == 3);
    // Other scopes are another cache entry.
    let write = token_json(&s.env, &["basic", "--scope", "api:write"]);
    assert_eq!(write["scope"], "api:write");
    // status tells which profiles hold a token, and for how long.
    let status: Value = serde_json::from_str(&s.env.ok(&["status", "--json"])).unwrap();
    let basic = status["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "basic")
        .unwrap();
    assert_eq!(basic["token_state"], "valid");
    assert!(
        (590..=600).contains(&basic["expires_in_secs"].as_i64().unwrap()),
        "{basic}"
    );
    let post = status["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "post")
        .unwrap();
    assert_eq!(post["token_state"], "none");
}

#[test]
fn header_prints_an_authorization_header() {
    let s = setup(600);
    let token = token_json(&s.env, &["post"])["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        s.env.ok(&["header", "post"]),
        format!("Authorization: Bearer {token}\n")
    );
    // A bearer token needs no proof: a request's --url changes nothing.
    assert_eq!(
        s.env.ok(&[
            "header",
            "post",
            "--url",
            "https://api.example/x",
            "--method",
            "POST"
        ]),
        format!("Authorization: Bearer {token}\n")
    );
    assert_eq!(s.env.ok(&["token", "post"]), format!("{token}\n"));
}

#[test]
fn unreachable_token_endpoint_is_a_network_error_naming_the_host() {
    let env = TestEnv::new();
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = env.run(&[
        "add",
        "--no-verify",
        "down",
        "--token-url",
        &format!("http://127.0.0.1:{port}/token"),
        "--client-id",
        "c",
        "--auth",
        "none",
    ]);
    assert!(out.status.success());
    let out = env.run(&["token", "down"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert!(
        err.contains("network") && err.contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
}

#[test]
fn unknown_profile_and_removed_profile_give_unknown_profile() {
    let s = setup(600);
    let out = s.env.run(&["token", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_of(&out).contains("unknown_profile"));
    token_json(&s.env, &["basic"]);
    let config = std::fs::read_to_string(s.env.config_file()).unwrap();
    s.env.ok(&["remove", "basic"]);
    let out = s.env.run(&["token", "basic"]);
    assert!(stderr_of(&out).contains("unknown_profile"));
    // The profile written back by hand (its keyring secret is gone with the
    // remove): a token cached under the old profile would be served as it
    // is; none is, so the agent tries to fetch and finds no secret.
    std::fs::write(s.env.config_file(), config).unwrap();
    let mut err = String::new();
    wait_until("the agent reads the restored profile", || {
        err = stderr_of(&s.env.run(&["token", "basic"]));
        !err.contains("unknown_profile")
    });
    assert!(
        err.contains("has no secret in the keyring"),
        "a cached token outlived its profile: {err}"
    );
}

#[test]
fn audience_params_kid_and_an_explicit_assertion_aud_reach_the_server_as_given() {
    let env = TestEnv::new();
    let key = gen_key(&env, "p256");
    let oidc = Oidc::start(
        &env,
        &json!({"ttl": 600, "clients": [{
            "client_id": "svc", "auth": "private_key_jwt", "alg": "ES256",
            "public_key_pem": public_pem(&key), "kid": "my-key-1",
        }]}),
    );
    let aud = oidc.token_endpoint();
    env.ok(&[
        "add",
        "--no-verify",
        "svc",
        "--issuer",
        &oidc.issuer,
        "--client-id",
        "svc",
        "--key-file",
        key.to_str().unwrap(),
        "--kid",
        "my-key-1",
        "--assertion-aud",
        &aud,
        "--audience",
        "https://api.example",
        "--param",
        "tenant=blue",
    ]);
    env.ok(&["token", "svc"]);
    let grant = &oidc.grants("svc")[0];
    let assertion = grant["assertion"].as_str().unwrap();
    assert_eq!(jwt_claims(assertion)["aud"], aud);
    assert_eq!(jwt_header(assertion)["kid"], "my-key-1");
    assert_eq!(grant["params"]["audience"], "https://api.example");
    assert_eq!(grant["params"]["tenant"], "blue");
}

#[test]
fn rfc8414_metadata_is_found_when_there_is_no_openid_configuration() {
    let env = TestEnv::new();
    let oidc = Oidc::start(
        &env,
        &json!({"ttl": 600, "rfc8414_only": true, "clients": [
            {"client_id": "c", "auth": "none"}
        ]}),
    );
    env.add_issuer_cmd("p", &oidc.issuer, "c", "none", &[])
        .output()
        .unwrap();
    env.ok(&["token", "p"]);
    assert_eq!(oidc.grants("c").len(), 1);
    assert!(
        oidc.events().iter().any(|e| e["event"] == "rfc8414"),
        "the RFC 8414 document was not asked for"
    );
}

#[test]
fn a_token_without_expires_in_is_served_and_kept_as_of_unknown_lifetime() {
    // A real server always says; this one (a fault) does not.
    let env = TestEnv::new();
    let server = FaultServer::start(Fault::Raw {
        code: 200,
        headers: String::new(),
        body: r#"{"access_token":"no-lifetime-token","token_type":"bearer"}"#.into(),
    });
    env.add_open_profile("p", &server.token_url(), &[]);
    let answer = token_json(&env, &["p"]);
    assert_eq!(answer["access_token"], "no-lifetime-token");
    assert_eq!(answer["token_type"], "Bearer");
    assert!(answer["expires_at"].is_null(), "{answer}");
    // Kept (refreshed after five minutes, SPEC §6), not fetched per request.
    token_json(&env, &["p"]);
    assert_eq!(server.requests(), 1);
    let status = env.profile_status("p");
    assert_eq!(status["token_state"], "valid", "{status}");
    let next = status["next_refresh_in_secs"].as_i64().unwrap();
    assert!((200..=300).contains(&next), "next refresh in {next}s");
}

#[test]
fn a_min_ttl_the_servers_tokens_cannot_meet_is_a_warning_or_with_strict_a_failure() {
    let env = TestEnv::new();
    let oidc = open_provider(&env, 120);
    env.add_open_profile("short", &oidc.token_endpoint(), &[]);
    let out = env.run(&["token", "short", "--min-ttl", "10m"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(!out.stdout.is_empty());
    let err = stderr_of(&out);
    assert!(
        err.contains("warning") && err.contains("less than --min-ttl 10m"),
        "{err}"
    );
    let out = env.run(&["token", "short", "--min-ttl", "10m", "--strict"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "a token was printed");
    assert!(stderr_of(&out).contains("--strict"), "{}", stderr_of(&out));
    // A min_ttl the token meets: no word of it.
    let out = env.run(&["token", "short", "--min-ttl", "30s", "--strict"]);
    assert!(out.status.success());
    assert!(!stderr_of(&out).contains("warning"), "{}", stderr_of(&out));
}

#[test]
fn add_verifies_a_profile_with_a_token_and_a_refused_one_leaves_the_old_profile() {
    let env = TestEnv::new();
    let good = "the-right-secret-0123456789";
    let wrong = "the-wrong-secret-0123456789";
    let oidc = Oidc::start(
        &env,
        &json!({"ttl": 600, "clients": [
            {"client_id": "app", "auth": "client_secret_post", "secret": good}
        ]}),
    );
    let add = |secret: &str, extra: &[&str]| {
        let mut args = vec![
            "add",
            "app",
            "--issuer",
            &oidc.issuer,
            "--client-id",
            "app",
            "--auth",
            "client_secret_post",
            "--secret-stdin",
        ];
        args.extend_from_slice(extra);
        env.run_with_stdin(&args, secret.as_bytes())
    };
    // Verified; the token that proved it is the first one served.
    let out = add(good, &[]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("verified"),
        "{out:?}"
    );
    assert_eq!(oidc.grants("app").len(), 1);
    env.ok(&["token", "app"]);
    assert_eq!(oidc.grants("app").len(), 1);
    // Refused by the server: not saved, and the profile it would have
    // replaced still works with its own secret.
    let out = add(wrong, &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert!(
        err.contains("idp_error") && err.contains("invalid_client"),
        "{err}"
    );
    assert!(!err.contains(wrong));
    env.ok(&["token", "app", "--force"]);
    assert_eq!(oidc.grants("app").len(), 2);
    // --no-verify saves it as it is; the server refuses it at token time.
    let out = add(wrong, &["--no-verify"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("verified"));
    assert!(stderr_of(&env.run(&["token", "app", "--force"])).contains("invalid_client"));
    // A server that cannot be reached: not saved, and the error says how
    // to save it unchecked.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://127.0.0.1:{}/token",
        closed.local_addr().unwrap().port()
    );
    drop(closed);
    let away = |extra: &[&str]| {
        let mut args = vec![
            "add",
            "away",
            "--token-url",
            &url,
            "--client-id",
            "c",
            "--auth",
            "none",
        ];
        args.extend_from_slice(extra);
        env.run(&args)
    };
    let out = away(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    let err = stderr_of(&out);
    assert!(
        err.contains("\"away\" is not saved")
            && err.contains("could not be reached")
            && err.contains("--no-verify"),
        "{err}"
    );
    assert!(!env.ok(&["list"]).contains("away"));
    let out = away(&["--no-verify"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(env.ok(&["list"]).contains("away"));
}

#[test]
fn add_saves_nothing_unchecked_when_the_server_is_overloaded_or_refuses() {
    let env = TestEnv::new();
    let add = |name: &str, url: &str| {
        env.run(&[
            "add",
            name,
            "--token-url",
            url,
            "--client-id",
            "c",
            "--auth",
            "none",
        ])
    };
    // 503: the server cannot answer now; nothing says the profile is
    // right or wrong: not saved, and the error says how to save it anyway.
    let busy = FaultServer::start(Fault::Status {
        code: 503,
        retry_after: None,
    });
    let out = add("busy", &busy.token_url());
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("not saved")
            && stderr_of(&out).contains("503")
            && stderr_of(&out).contains("--no-verify"),
        "{}",
        stderr_of(&out)
    );
    // 400: the server says no to this profile: it is not saved.
    let no = FaultServer::start(Fault::Status {
        code: 400,
        retry_after: None,
    });
    let out = add("refused", &no.token_url());
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    assert!(!env.ok(&["list"]).contains("refused"));
    assert!(!env.ok(&["list"]).contains("busy"));
}

#[test]
fn a_connection_closed_before_any_answer_is_tried_once_more_with_a_new_assertion() {
    let env = TestEnv::new();
    // The first request's connection closes unanswered (as a pooled one
    // a proxy had closed does), the next is answered.
    let server = FaultServer::start_then(Fault::Reset, Fault::Ok { lifetime: 600 });
    let out = env
        .add_cmd(
            "hs",
            &server.token_url(),
            "client_secret_jwt",
            &["--secret-stdin"],
        )
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(b"a-client-secret-of-at-least-32-bytes!!")?;
            child.wait_with_output()
        })
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let token = env.run(&["token", "hs"]);
    assert!(token.status.success(), "{}", stderr_of(&token));
    let bodies = server.bodies();
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    let assertion = |body: &str| {
        url::form_urlencoded::parse(body.as_bytes())
            .find(|(k, _)| k == "client_assertion")
            .map(|(_, v)| v.into_owned())
            .unwrap()
    };
    let jti = |body: &str| jwt_claims(&assertion(body))["jti"].clone();
    assert_ne!(
        jti(&bodies[0]),
        jti(&bodies[1]),
        "an assertion was sent twice"
    );
}
