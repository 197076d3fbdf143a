//! Keys that never leave the agent: `keygen` (its JWKS registered with the real
//! provider yields tokens) and DPoP (RFC 9449) against the real provider, with
//! and without required nonces; proofs checked by an independent JOSE
//! implementation (panva/jose); private key material searched for everywhere.

use crate::common::*;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::path::Path;
use std::process::Stdio;

/// Verifies a proof with jose; returns what it read (jkt, jti, header, payload).
fn verify_proof(
    proof: &str,
    method: &str,
    url: &str,
    token: Option<&str>,
    nonce: Option<&str>,
) -> Value {
    let mut input = json!({"proof": proof, "method": method, "url": url});
    if let Some(token) = token {
        input["access_token"] = json!(token);
    }
    if let Some(nonce) = nonce {
        input["nonce"] = json!(nonce);
    }
    let out = node("verify-dpop.mjs", &[], &input.to_string());
    assert!(
        out.status.success(),
        "jose refused the proof: {}",
        stderr_of(&out)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Registers `client_id` with the provider for private_key_jwt with `jwks`.
fn register(oidc: &Oidc, client_id: &str, alg: &str, jwks: &Value) {
    let metadata = json!({
        "client_id": client_id,
        "token_endpoint_auth_method": "private_key_jwt",
        "token_endpoint_auth_signing_alg": alg,
        "jwks": jwks,
        "grant_types": ["client_credentials"],
        "response_types": [],
        "redirect_uris": [],
        "scope": "api:read",
    });
    let out = node("register.mjs", &[&oidc.issuer], &metadata.to_string());
    assert!(
        out.status.success(),
        "registration of {client_id} refused: {}{}",
        String::from_utf8_lossy(&out.stdout),
        stderr_of(&out)
    );
}

fn token_json(env: &TestEnv, args: &[&str]) -> Value {
    let mut full = vec!["token"];
    full.extend_from_slice(args);
    full.push("--json");
    serde_json::from_str(&env.ok(&full)).unwrap()
}

/// The agent in the foreground at trace level, its log in `log`.
fn trace_agent(env: &TestEnv, log: &Path) -> std::process::Child {
    let agent = env
        .cmd(&["agent", "-D"])
        .env("JWTAGENT_LOG", "trace")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    wait_until("the agent answers", || {
        hello(&env.default_socket()).is_some()
    });
    agent
}

/// What a private key looks like in every form it could leak in: each line
/// of its PEM body, and each private member of its JWK.
fn private_needles(what: &str, pem: &str) -> Vec<(String, String)> {
    let mut needles: Vec<(String, String)> = pem
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() >= 16)
        .enumerate()
        .map(|(i, l)| (format!("{what} PEM line {i}"), l.to_string()))
        .collect();
    let out = node("private-jwk.mjs", &[], pem);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let jwk: Value = serde_json::from_slice(&out.stdout).unwrap();
    for member in ["d", "p", "q", "dp", "dq", "qi"] {
        if let Some(v) = jwk[member].as_str() {
            needles.push((format!("{what} private JWK member {member}"), v.to_string()));
        }
    }
    assert!(needles.iter().any(|(w, _)| w.ends_with("member d")));
    needles
}

/// Every file under `dir`, with its path.
fn files_under(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file() {
                found.push((path.display().to_string(), std::fs::read(&path).unwrap()));
            }
        }
    }
    found
}

#[test]
fn keygen_keys_registered_with_the_provider_yield_tokens_and_never_leave_the_agent() {
    let env = TestEnv::new();
    let oidc = Oidc::start(&env, &json!({"ttl": 600, "clients": []}));
    let log = env.path("agent-trace.log");
    let mut agent = trace_agent(&env, &log);
    let mut outputs: Vec<(String, Vec<u8>)> = Vec::new();
    let mut record = |what: &str, out: &std::process::Output| {
        outputs.push((format!("stdout of {what}"), out.stdout.clone()));
        outputs.push((format!("stderr of {what}"), out.stderr.clone()));
    };

    let mut needles = Vec::new();
    for (alg, kty) in [
        ("ES256", "EC"),
        ("ES384", "EC"),
        ("EdDSA", "OKP"),
        ("RS256", "RSA"),
    ] {
        let name = format!("gen-{}", alg.to_lowercase());
        let out = env.run(&[
            "keygen",
            &name,
            "--alg",
            alg,
            "--issuer",
            &oidc.issuer,
            "--client-id",
            &name,
            "--scope",
            "api:read",
        ]);
        record(&format!("keygen {name}"), &out);
        assert!(out.status.success(), "keygen {alg}: {}", stderr_of(&out));
        let jwks: Value = serde_json::from_slice(&out.stdout).unwrap();
        let key = &jwks["keys"][0];
        assert_eq!(jwks["keys"].as_array().unwrap().len(), 1, "{jwks}");
        assert_eq!(key["kty"], kty, "{jwks}");
        assert_eq!(key["alg"], alg);
        assert_eq!(key["use"], "sig");
        for private in ["d", "p", "q", "dp", "dq", "qi"] {
            assert!(key.get(private).is_none(), "{alg}: {private} in {jwks}");
        }
        // The kid defaults to the key's RFC 7638 thumbprint, as jose computes it.
        let kid = key["kid"].as_str().unwrap().to_string();
        let out = node("thumbprint.mjs", &[], &key.to_string());
        assert!(out.status.success(), "{}", stderr_of(&out));
        let thumbprint = String::from_utf8(out.stdout).unwrap();
        assert_eq!(kid, thumbprint, "{alg}: kid is the RFC 7638 thumbprint");

        // `jwks` prints the same key again.
        let out = env.run(&["jwks", &name]);
        record(&format!("jwks {name}"), &out);
        let again: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(again, jwks);

        // Registered with the provider, the key gets tokens.
        register(&oidc, &name, alg, &jwks);
        let answer = token_json(&env, &[&name]);
        assert_eq!(answer["token_type"], "Bearer");
        let grant = oidc.wait_event("the grant", |e| {
            e["event"] == "token" && e["client_id"] == name.as_str()
        });
        assert_eq!(grant["auth_method"], "private_key_jwt");
        let assertion = grant["assertion"].as_str().unwrap();
        assert_eq!(jwt_header(assertion)["kid"], kid.as_str());
        assert_eq!(jwt_header(assertion)["alg"], alg);

        let pem = keyutils_lookup(&env.keyring_service, &format!("profile/{name}"))
            .expect("the generated key is in the keyring");
        let pem = String::from_utf8(pem).unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "PKCS#8 PEM");
        needles.extend(private_needles(&name, &pem));
    }

    // keygen never replaces a profile (and the key registered for it) silently.
    let out = env.run(&[
        "keygen",
        "gen-es256",
        "--alg",
        "ES256",
        "--issuer",
        &oidc.issuer,
        "--client-id",
        "gen-es256",
    ]);
    record("keygen over an existing profile", &out);
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("--force"), "{}", stderr_of(&out));
    env.ok(&["token", "gen-es256", "--force"]);

    // jwks of a profile without a key pair says what to do.
    env.add_open_profile("open", &oidc.token_endpoint(), &[]);
    let out = env.run(&["jwks", "open"]);
    assert!(!out.status.success());
    assert!(stderr_of(&out).contains("keygen"), "{}", stderr_of(&out));

    for args in [
        vec!["show", "gen-rs256"],
        vec!["show", "gen-rs256", "--json"],
        vec!["list", "--json"],
        vec!["status", "--json"],
        vec!["audit", "--json"],
    ] {
        let out = env.run(&args);
        record(&args.join(" "), &out);
    }
    let pid = agent.id();
    outputs.push((
        "agent argv".into(),
        std::fs::read(format!("/proc/{pid}/cmdline")).unwrap(),
    ));
    outputs.push((
        "agent environment".into(),
        std::fs::read(format!("/proc/{pid}/environ")).unwrap(),
    ));
    env.ok(&["stop"]);
    let _ = agent.wait();
    assert!(
        String::from_utf8_lossy(&std::fs::read(&log).unwrap()).contains("TRACE"),
        "the log really is at trace level"
    );
    // Every file the test environment holds: config, logs, audit log, sockets' dirs.
    outputs.extend(files_under(env.dir.path()));
    assert_absent(&needles, &outputs);
}

/// A provider with one client_secret_basic client and one private_key_jwt
/// client, and DPoP on (nonces required or not).
fn dpop_provider(env: &TestEnv, require_nonce: bool) -> (Oidc, std::path::PathBuf) {
    let key = gen_key(env, "p256");
    let oidc = Oidc::start(
        env,
        &json!({"ttl": 600, "dpop_require_nonce": require_nonce, "clients": [
            {"client_id": "svc", "auth": "client_secret_basic", "secret": "svc-secret-0123456789"},
            {"client_id": "pk", "auth": "private_key_jwt", "alg": "ES256", "public_key_pem": public_pem(&key)},
        ]}),
    );
    (oidc, key)
}

fn add_svc(env: &TestEnv, oidc: &Oidc, name: &str, extra: &[&str]) {
    let mut args = vec![
        "add",
        name,
        "--issuer",
        &oidc.issuer,
        "--client-id",
        "svc",
        "--secret-stdin",
        "--scope",
        "api:read",
        "--resource",
        "https://api.example/",
    ];
    args.extend_from_slice(extra);
    let out = env.run_with_stdin(&args, b"svc-secret-0123456789");
    assert!(out.status.success(), "add {name}: {}", stderr_of(&out));
}

#[test]
fn dpop_tokens_are_bound_to_the_agents_key_and_proofs_verify_independently() {
    let env = TestEnv::new();
    let (oidc, _) = dpop_provider(&env, false);
    let log = env.path("agent-trace.log");
    let mut agent = trace_agent(&env, &log);
    let mut needles = Vec::new();
    let mut outputs: Vec<(String, Vec<u8>)> = Vec::new();

    // A bearer profile of the same client first: its token is not bound.
    add_svc(&env, &oidc, "bearer", &[]);
    let bearer = token_json(&env, &["bearer"]);
    assert_eq!(bearer["token_type"], "Bearer");
    assert!(
        jwt_claims(bearer["access_token"].as_str().unwrap())
            .get("cnf")
            .is_none()
    );
    let out = env.run(&["dpop", "bearer", "--url", "https://api.example/x"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("--dpop"), "{}", stderr_of(&out));

    for (name, alg) in [
        ("dp", None),
        ("dp-es384", Some("ES384")),
        ("dp-ed", Some("EdDSA")),
        ("dp-rsa", Some("RS256")),
    ] {
        let mut extra = vec!["--dpop"];
        if let Some(alg) = alg {
            extra.extend(["--dpop-alg", alg]);
        }
        add_svc(&env, &oidc, name, &extra);
        let shown: Value = serde_json::from_str(&env.ok(&["show", name, "--json"])).unwrap();
        assert_eq!(shown["profile"]["dpop"], true);
        assert_eq!(shown["profile"]["dpop_alg"], alg.unwrap_or("ES256"));

        let answer = token_json(&env, &[name]);
        assert_eq!(answer["token_type"], "DPoP", "{name}");
        let token = answer["access_token"].as_str().unwrap().to_string();
        let grant = oidc.wait_event("the DPoP grant", |e| {
            e["event"] == "token" && e["dpop"] == true && e["token_type"] == "DPoP"
        });
        assert_eq!(grant["client_id"], "svc");
        let jkt = jwt_claims(&token)["cnf"]["jkt"]
            .as_str()
            .expect("the JWT access token has cnf.jkt")
            .to_string();

        // Proofs for resource requests: verified by jose, bound to the same
        // key (thumbprint = cnf.jkt), to the request, and to this token.
        let mut jtis = HashSet::new();
        for i in 0..10 {
            let url = format!("https://api.example/items/{i}?page=2#frag");
            let proof = env.ok(&["dpop", name, "--method", "post", "--url", &url]);
            let proof = proof.trim();
            let seen = verify_proof(proof, "POST", &url, Some(&token), None);
            assert_eq!(
                seen["jkt"],
                jkt.as_str(),
                "{name}: proof key = token's cnf.jkt"
            );
            assert_eq!(
                seen["payload"]["htu"],
                format!("https://api.example/items/{i}")
            );
            assert_eq!(seen["header"]["alg"], alg.unwrap_or("ES256"));
            assert!(
                jtis.insert(seen["jti"].as_str().unwrap().to_string()),
                "jti reused"
            );
            needles.push((
                format!("{name} proof {i} signature"),
                proof.rsplit('.').next().unwrap().to_string(),
            ));
        }
        let out = env.run(&[
            "dpop",
            name,
            "--url",
            "https://api.example/n",
            "--nonce",
            "rs-nonce-1",
        ]);
        let proof = String::from_utf8(out.stdout).unwrap();
        verify_proof(
            proof.trim(),
            "GET",
            "https://api.example/n",
            Some(&token),
            Some("rs-nonce-1"),
        );

        // `header` prints both headers, for the same token.
        let out = env.ok(&[
            "header",
            name,
            "--method",
            "DELETE",
            "--url",
            "https://api.example/items/1",
        ]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert_eq!(lines[0], format!("Authorization: DPoP {token}"));
        let proof = lines[1].strip_prefix("DPoP: ").expect("a DPoP header");
        verify_proof(
            proof,
            "DELETE",
            "https://api.example/items/1",
            Some(&token),
            None,
        );
        // Without a URL there is nothing to make a proof for.
        let out = env.run(&["header", name]);
        assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
        assert!(stderr_of(&out).contains("--url"), "{}", stderr_of(&out));
        // kubectl and git would send the bound token as Bearer: refused.
        let out = env.run(&["kubectl", name]);
        assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
        assert!(stderr_of(&out).contains("DPoP"), "{}", stderr_of(&out));
        assert!(out.stdout.is_empty());
        let out = env.run_with_stdin(
            &["git-credential", name, "get"],
            b"protocol=https\nhost=git.example\n\n",
        );
        assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
        assert!(out.stdout.is_empty());

        let pem = keyutils_lookup(&env.keyring_service, &format!("dpop/{name}"))
            .expect("the DPoP key is in the keyring");
        needles.extend(private_needles(
            &format!("{name} DPoP key"),
            &String::from_utf8(pem).unwrap(),
        ));
    }

    // Bearer and DPoP tokens of one client are cached apart: the bearer
    // profile still has its own token, and its cached one is served.
    let grants = oidc.grants("svc").len();
    assert_eq!(
        token_json(&env, &["bearer"])["access_token"],
        bearer["access_token"]
    );
    assert_eq!(oidc.grants("svc").len(), grants);

    // Turning DPoP off for a profile drops its key and its bound token.
    add_svc(&env, &oidc, "dp-ed", &[]);
    assert!(keyutils_lookup(&env.keyring_service, "dpop/dp-ed").is_none());
    assert_eq!(token_json(&env, &["dp-ed"])["token_type"], "Bearer");
    env.ok(&["remove", "dp-rsa"]);
    assert!(keyutils_lookup(&env.keyring_service, "dpop/dp-rsa").is_none());

    for args in [
        vec!["show", "dp", "--json"],
        vec!["status", "--json"],
        vec!["audit", "--json"],
    ] {
        let out = env.run(&args);
        outputs.push((format!("stdout of {}", args.join(" ")), out.stdout));
    }
    env.ok(&["stop"]);
    let _ = agent.wait();
    outputs.extend(files_under(env.dir.path()));
    assert_absent(&needles, &outputs);
}

#[test]
fn required_dpop_nonces_are_answered_with_a_new_assertion_and_cached_per_server() {
    let env = TestEnv::new();
    let (oidc, key) = dpop_provider(&env, true);
    let out = env.run(&[
        "add",
        "pk",
        "--issuer",
        &oidc.issuer,
        "--client-id",
        "pk",
        "--key-file",
        key.to_str().unwrap(),
        "--resource",
        "https://api.example/",
        "--dpop",
    ]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    add_svc(&env, &oidc, "svc", &["--dpop"]);

    let nonce_errors = |client: &str| {
        oidc.events()
            .iter()
            .filter(|e| {
                e["event"] == "error" && e["client_id"] == client && e["error"] == "use_dpop_nonce"
            })
            .count()
    };
    // The first request has no nonce: refused with use_dpop_nonce, retried
    // once with the server's nonce and a new client assertion (the first
    // one's jti is spent).
    let answer = token_json(&env, &["pk"]);
    assert_eq!(answer["token_type"], "DPoP");
    assert_eq!(nonce_errors("pk"), 1);
    let grant = oidc.wait_event("the grant", |e| {
        e["event"] == "token" && e["client_id"] == "pk"
    });
    assert_eq!(grant["dpop"], true);

    // The nonce is kept per server: the next requests, for this profile and
    // for another client of the same server, carry it from the start.
    token_json(&env, &["pk", "--force"]);
    let answer = token_json(&env, &["svc"]);
    assert_eq!(answer["token_type"], "DPoP");
    assert_eq!(nonce_errors("pk"), 1, "no second use_dpop_nonce for pk");
    assert_eq!(nonce_errors("svc"), 0, "the nonce is shared per server");
    assert_eq!(oidc.grants("pk").len(), 2);
    let token = answer["access_token"].as_str().unwrap();
    let jkt = jwt_claims(token)["cnf"]["jkt"]
        .as_str()
        .unwrap()
        .to_string();
    let proof = env.ok(&["dpop", "svc", "--url", "https://api.example/r"]);
    assert_eq!(
        verify_proof(
            proof.trim(),
            "GET",
            "https://api.example/r",
            Some(token),
            None
        )["jkt"],
        jkt.as_str()
    );
}
