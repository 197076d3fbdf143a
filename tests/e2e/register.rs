//! `add --register`: a client registered (RFC 7591) at the real test OpenID
//! Provider for a user profile, signed in with, and deleted (RFC 7592) by
//! `remove`; servers that ask for an initial access token, make every
//! client confidential, do not decode Basic credentials, or register none.

use crate::common::*;
use crate::login::{Login, browse, device_login, node_json, stored_refresh_token};
use serde_json::{Value, json};

/// The provider (over HTTPS) with `extra` settings, and no client of its own.
fn provider(env: &TestEnv, extra: Value) -> Oidc {
    let mut config = json!({
        "ttl": 600,
        "device_interval": 1,
        "scopes": ["openid", "offline_access"],
        "clients": [],
    });
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    Oidc::start(env, &config)
}

/// `add NAME --register` of a user profile with `grant`, and `extra`.
fn register_cmd(env: &TestEnv, oidc: &Oidc, name: &str, grant: &str) -> std::process::Command {
    env.cmd(&[
        "add",
        name,
        "--issuer",
        &oidc.issuer,
        "--grant",
        grant,
        "--scope",
        "openid",
        "--scope",
        "offline_access",
        "--register",
    ])
}

/// [`register_cmd`], which must succeed: what it printed.
fn registered(env: &TestEnv, oidc: &Oidc, name: &str, grant: &str) -> String {
    let out = register_cmd(env, oidc, name, grant).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `add NAME` of a device-code profile with public client `client_id`
/// given (not registered), which must succeed.
fn added_with_client(env: &TestEnv, oidc: &Oidc, name: &str, client_id: &str) {
    let out = env.run(&[
        "add",
        name,
        "--issuer",
        &oidc.issuer,
        "--grant",
        "device-code",
        "--client-id",
        client_id,
        "--auth",
        "none",
        "--scope",
        "openid",
    ]);
    assert!(out.status.success(), "{}", stderr_of(&out));
}

/// The client id profile `name` has.
fn client_id_of(env: &TestEnv, name: &str) -> String {
    shown(env, name)["profile"]["client_id"]
        .as_str()
        .unwrap()
        .to_string()
}

fn shown(env: &TestEnv, name: &str) -> Value {
    serde_json::from_str(&env.ok(&["show", name, "--json"])).unwrap()
}

fn stored_registration_token(env: &TestEnv, name: &str) -> Option<Vec<u8>> {
    keyutils_lookup(&env.keyring_service, &format!("registration/{name}"))
}

/// Whether the provider knows public client `client_id`: it starts a device
/// authorization for it.
fn client_exists(oidc: &Oidc, client_id: &str) -> bool {
    let url = format!("{}/device/auth", oidc.issuer);
    let answer = node_json("post-form.mjs", &[&url, &format!("client_id={client_id}")]);
    match answer["status"].as_u64() {
        Some(200) => true,
        Some(400 | 401) if answer["body"]["error"] == "invalid_client" => false,
        _ => panic!("unexpected answer: {answer}"),
    }
}

#[test]
fn a_registered_public_client_signs_in_is_replaced_and_is_deleted_by_remove() {
    let env = TestEnv::new();
    let oidc = provider(&env, json!({}));
    let said = registered(&env, &oidc, "me", "device-code");
    assert!(
        said.contains("Registered client") && said.contains("jwtagent login me"),
        "{said}"
    );
    let profile = &shown(&env, "me")["profile"];
    let client_id = profile["client_id"].as_str().unwrap().to_string();
    assert!(client_id.starts_with("reg-"), "{profile}");
    assert_eq!(profile["auth"], "none");
    let uri = profile["registration_uri"].as_str().unwrap();
    assert!(uri.starts_with(&format!("{}/reg/", oidc.issuer)), "{uri}");
    // The registration access token is in the store, not in the config.
    let token = stored_registration_token(&env, "me").expect("a registration access token");
    let config = std::fs::read_to_string(env.config_file()).unwrap();
    assert!(!config.contains(std::str::from_utf8(&token).unwrap()));
    assert!(client_exists(&oidc, &client_id));
    let human = env.ok(&["show", "me"]);
    assert!(
        human.contains("registered_at") && human.contains(uri),
        "{human}"
    );

    device_login(&env, "me");
    env.ok(&["token", "me"]);
    assert!(stored_refresh_token(&env, "me").is_some());

    // Registered again: a new client, and the old one is deleted.
    registered(&env, &oidc, "me", "device-code");
    let second = client_id_of(&env, "me");
    assert_ne!(second, client_id);
    assert!(!client_exists(&oidc, &client_id));
    assert!(client_exists(&oidc, &second));

    // Added again with the same client (another scope): it stays registered.
    added_with_client(&env, &oidc, "me", &second);
    assert!(shown(&env, "me")["profile"]["registration_uri"].is_string());
    assert!(client_exists(&oidc, &second));

    let out = env.run(&["remove", "me"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("registered client is deleted"), "{said}");
    assert!(!client_exists(&oidc, &second));
    assert_eq!(stored_registration_token(&env, "me"), None);
}

#[test]
fn a_registered_browser_client_signs_in_through_a_loopback_redirect() {
    let env = TestEnv::new();
    let oidc = provider(&env, json!({}));
    registered(&env, &oidc, "web", "authorization-code");
    let mut login = Login::start(&env, "web");
    let page = browse(&login.browser_url(), &[]);
    assert_eq!(page["status"], 200, "{page}");
    let (status, said) = login.finish();
    assert_eq!(status, Some(0), "{said}");
    env.ok(&["token", "web"]);
}

#[test]
fn a_server_that_asks_for_an_initial_access_token_gets_it_from_stdin() {
    let env = TestEnv::new();
    let oidc = provider(
        &env,
        json!({"registration": {"initial_token": "iat-0123456789"}}),
    );
    let out = register_cmd(&env, &oidc, "me", "device-code")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert!(err.contains("--registration-token-stdin"), "{err}");
    assert!(!env.ok(&["list"]).contains("me"));

    let out = output_with_stdin(
        register_cmd(&env, &oidc, "me", "device-code").arg("--registration-token-stdin"),
        b"wrong-token\n",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr_of(&out).contains("was refused"),
        "{}",
        stderr_of(&out)
    );

    let out = output_with_stdin(
        register_cmd(&env, &oidc, "me", "device-code").arg("--registration-token-stdin"),
        b"iat-0123456789\n",
    );
    assert!(out.status.success(), "{}", stderr_of(&out));
    device_login(&env, "me");
}

/// A server that makes every registered client confidential, with a secret
/// that form-encoding changes, and reads Basic credentials undecoded: the
/// client is used as registered, and client_secret_post once Basic fails.
#[test]
fn a_confidential_registration_is_used_and_post_replaces_basic_the_server_misreads() {
    let env = TestEnv::new();
    let oidc = provider(
        &env,
        json!({
            "registration": {"confidential": true, "awkward_secret": true},
            "basic_undecoded": true,
        }),
    );
    let said = registered(&env, &oidc, "me", "device-code");
    assert!(said.contains("confidential"), "{said}");
    let profile = &shown(&env, "me")["profile"];
    assert_eq!(profile["auth"], "client_secret_basic");
    let client_id = profile["client_id"].as_str().unwrap().to_string();

    device_login(&env, "me");
    // Basic was refused once, and the secret went in the form from then on.
    let misread = oidc.events_of("basic_undecoded").len();
    assert_eq!(misread, 1, "{:?}", oidc.events());
    env.ok(&["token", "me", "--force"]);
    // Signed in and refreshed (which Basic would not have been), without
    // trying Basic again. (The server logs the client's registered method,
    // not the one a request used.)
    let grants = oidc.grants(&client_id);
    assert!(grants.len() >= 2, "{grants:?}");
    assert_eq!(oidc.events_of("basic_undecoded").len(), misread);
}

#[test]
fn a_server_without_registration_is_a_clear_error_and_nothing_is_saved() {
    let env = TestEnv::new();
    let oidc = provider(&env, json!({"registration": false}));
    let out = register_cmd(&env, &oidc, "me", "device-code")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert!(
        err.contains("does not offer dynamic client registration") && err.contains("--client-id"),
        "{err}"
    );
    assert!(!env.ok(&["list"]).contains("me"));
    // A machine profile cannot be registered: said before anything is sent.
    let out = env
        .cmd(&[
            "add",
            "m",
            "--issuer",
            &oidc.issuer,
            "--grant",
            "client-credentials",
            "--register",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("user profiles"),
        "{}",
        stderr_of(&out)
    );
}

/// The agent itself refuses a registration that brings a client of its
/// own (a client that skips the CLI, whose flags already conflict): a
/// client id, a secret or a secret command, each alone. Nothing is
/// registered and nothing saved.
#[test]
fn a_registration_that_brings_its_own_client_is_refused_by_the_agent() {
    let env = TestEnv::new();
    let oidc = provider(&env, json!({}));
    env.ok(&["env"]);
    let mut conn = Conn::open(&env.default_socket());
    let profile = json!({
        "issuer": oidc.issuer,
        "grant": "device_code",
        "client_id": "",
        "auth": "none",
        "scopes": ["openid"],
    });
    let mut with_id = profile.clone();
    with_id["client_id"] = json!("chosen-by-me");
    let mut with_command = profile.clone();
    with_command["secret_command"] = json!(["printf", "from-a-command"]);
    let requests = [
        json!({"id": 1, "op": "add", "name": "me", "profile": with_id, "register": {}}),
        json!({"id": 2, "op": "add", "name": "me", "profile": profile,
               "secret": "s3cr3t-of-mine", "register": {}}),
        json!({"id": 3, "op": "add", "name": "me", "profile": with_command, "register": {}}),
    ];
    for request in requests {
        let answer = conn.request(&request.to_string());
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("the server chooses the client id"),
            "{request}: {answer}"
        );
        assert!(!answer.to_string().contains("s3cr3t-of-mine"), "{answer}");
    }
    assert!(!env.ok(&["list"]).contains("me"));
    let log = std::fs::read_to_string(env.log_file()).unwrap_or_default();
    assert!(!log.contains("client registered"), "{log}");
}

/// A profile replaced by one with another client (given, not registered)
/// no longer uses the registered one: its registration is deleted at the
/// server and its registration access token at home.
#[test]
fn a_registered_client_replaced_by_another_client_is_deleted() {
    let env = TestEnv::new();
    let oidc = provider(&env, json!({}));
    registered(&env, &oidc, "me", "device-code");
    let registered = client_id_of(&env, "me");
    assert!(stored_registration_token(&env, "me").is_some());
    added_with_client(&env, &oidc, "me", "another-client");
    let profile = &shown(&env, "me")["profile"];
    assert_eq!(profile["client_id"], "another-client");
    assert!(profile["registration_uri"].is_null(), "{profile}");
    assert!(!client_exists(&oidc, &registered));
    assert_eq!(stored_registration_token(&env, "me"), None);
}

/// A registered client whose profile is then not saved (the store refuses
/// it: a locked keyring) is deleted again at the server, not left behind.
#[test]
fn a_registration_whose_profile_is_not_saved_is_deleted_again() {
    let mut env = TestEnv::new();
    let ss = SecretService::start(&env, false);
    env.bus = Some(ss.address.clone());
    let oidc = provider(&env, json!({}));
    let out = register_cmd(&env, &oidc, "me", "device-code")
        .output()
        .unwrap();
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("unlock"), "{err}");
    let log = std::fs::read_to_string(env.log_file()).unwrap();
    let registered = log
        .lines()
        .find(|l| l.contains("client registered"))
        .and_then(|l| l.split("client_id=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no client registered in the log: {log}"))
        .to_string();
    assert!(
        !client_exists(&oidc, &registered),
        "{registered} left: {log}"
    );
    assert!(
        log.contains("the profile was not saved: its registration is deleted"),
        "{log}"
    );
    drop(ss);
}
