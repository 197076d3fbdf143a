//! Users' tokens: `jwtagent login` with the device flow and the browser flow
//! against the real test OpenID Provider, whose login and consent forms a
//! scripted browser (tests/oidc/browser.mjs) fills in; refresh tokens in the
//! keyring, rotation, restarts, `logout`.

use crate::common::*;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Instant;

const DEVICE: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// The provider with a public native client `cli` and a confidential one
/// `conf` that may sign users in, and `extra` settings.
fn provider(env: &TestEnv, extra: Value) -> Oidc {
    let user_client = |id: &str, auth: &str| {
        let mut c = json!({
            "client_id": id, "auth": auth,
            "grant_types": [DEVICE, "authorization_code", "refresh_token"],
            "redirect_uris": ["http://127.0.0.1/callback"],
            "application_type": "native",
            "scope": "openid offline_access api:read",
        });
        if auth != "none" {
            c["secret"] = json!("conf-secret-0123456789");
        }
        c
    };
    let mut config = json!({
        "ttl": 600,
        "device_interval": 1,
        "scopes": ["openid", "offline_access"],
        "clients": [user_client("cli", "none"), user_client("conf", "client_secret_basic")],
    });
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    Oidc::start(env, &config)
}

/// Adds user profile `name` for client `cli` with `grant`.
fn add_user(env: &TestEnv, oidc: &Oidc, name: &str, grant: &str) {
    let out = add_user_with(env, oidc, name, grant, &[]);
    assert!(out.status.success(), "{}", stderr_of(&out));
}

/// `add` of user profile `name` for client `cli` with `grant` and `extra`.
fn add_user_with(
    env: &TestEnv,
    oidc: &Oidc,
    name: &str,
    grant: &str,
    extra: &[&str],
) -> std::process::Output {
    let mut args = vec![
        "--grant",
        grant,
        "--scope",
        "openid",
        "--scope",
        "offline_access",
    ];
    args.extend_from_slice(extra);
    env.add_issuer_cmd(name, &oidc.issuer, "cli", "none", &args)
        .output()
        .unwrap()
}

/// A `jwtagent login` running (or a script that runs one), its stderr read
/// line by line.
pub struct Login {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Drop for Login {
    /// A test that fails leaves no sign-in process behind.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Login {
    pub fn start(env: &TestEnv, name: &str) -> Login {
        Login::spawn(env.cmd(&["login", name, "--no-browser"]))
    }

    /// Runs `cmd` (its stdout discarded).
    pub fn spawn(mut cmd: std::process::Command) -> Login {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Login {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The first line (seen or to come) that `pred` picks something out of.
    fn find<T>(&mut self, what: &str, pred: impl Fn(&str) -> Option<T>) -> T {
        if let Some(found) = self.seen.iter().find_map(|l| pred(l)) {
            return found;
        }
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = pred(&line);
                    self.seen.push(line);
                    if let Some(found) = found {
                        return found;
                    }
                }
                Err(_) => panic!("login printed no {what}: {:?}", self.seen),
            }
        }
    }

    /// The device flow's verification URI and user code.
    pub fn device_prompt(&mut self) -> (String, String) {
        let uri = self.find("verification URI", |l| {
            l.strip_prefix("To sign in, open ")
                .and_then(|r| r.split_whitespace().next())
                .map(str::to_string)
        });
        let code = self.find("user code", |l| {
            let t = l.trim();
            (l.starts_with("    ") && !t.is_empty() && !t.contains(' ')).then(|| t.to_string())
        });
        (uri, code)
    }

    /// The browser flow's authorization URL.
    pub fn browser_url(&mut self) -> String {
        self.find("authorization URL", |l| {
            l.trim()
                .starts_with("https://")
                .then(|| l.trim().to_string())
        })
    }

    /// Waits for the command to end; its exit code and all it printed.
    pub fn finish(mut self) -> (Option<i32>, String) {
        let mut status = None;
        wait_until("login exits", || {
            status = self.child.try_wait().unwrap();
            status.is_some()
        });
        while let Ok(line) = self.lines.recv_timeout(std::time::Duration::from_secs(5)) {
            self.seen.push(line);
        }
        (status.unwrap().code(), self.seen.join("\n"))
    }
}

/// Runs node script `script` of tests/oidc with `args`; its one JSON line.
pub fn node_json(script: &str, args: &[&str]) -> Value {
    let out = node(script, args, "");
    assert!(out.status.success(), "{}", stderr_of(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The scripted browser: opens `url` and does what a user would.
pub fn browse(url: &str, extra: &[&str]) -> Value {
    let mut args = vec![url];
    args.extend_from_slice(extra);
    node_json("browser.mjs", &args)
}

/// What the provider says to a refresh request with `rt` from client `cli`.
fn refresh_at_server(oidc: &Oidc, rt: &[u8]) -> Value {
    let rt = format!("refresh_token={}", std::str::from_utf8(rt).unwrap());
    let url = oidc.token_endpoint();
    node_json(
        "post-form.mjs",
        &[&url, "grant_type=refresh_token", &rt, "client_id=cli"],
    )
}

/// What the provider's introspection (RFC 7662) says of `token`, asked by
/// client `cli`.
fn introspect(oidc: &Oidc, token: &[u8]) -> Value {
    let token = format!("token={}", std::str::from_utf8(token).unwrap());
    let url = format!("{}/token/introspection", oidc.issuer);
    node_json("post-form.mjs", &[&url, &token, "client_id=cli"])
}

pub fn stored_refresh_token(env: &TestEnv, name: &str) -> Option<Vec<u8>> {
    keyutils_lookup(&env.keyring_service, &format!("refresh/{name}"))
}

fn grants_of(oidc: &Oidc, grant_type: &str) -> usize {
    oidc.events_of("token")
        .iter()
        .filter(|e| e["grant_type"] == grant_type)
        .count()
}

/// Signs profile `name` in with the device flow, as user `alice`.
pub fn device_login(env: &TestEnv, name: &str) {
    device_finish(Login::start(env, name));
}

/// Completes the device sign-in `login` started, at the provider's page.
pub fn device_finish(mut login: Login) {
    let (uri, code) = login.device_prompt();
    let page = browse(&uri, &["--user-code", &code]);
    assert_eq!(page["status"], 200, "{page}");
    let (status, said) = login.finish();
    assert_eq!(status, Some(0), "{said}");
    assert!(said.contains("Signed in"), "{said}");
}

#[test]
fn device_flow_signs_in_and_the_agent_serves_the_users_tokens() {
    let env = TestEnv::new();
    let oidc = provider(&env, json!({}));
    add_user(&env, &oidc, "me", "device-code");
    // Before signing in: login_required, with the command to run.
    let out = env.run(&["token", "me"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert!(
        err.contains("login_required") && err.contains("jwtagent login me"),
        "{err}"
    );
    let status: Value = serde_json::from_str(&env.ok(&["status", "--json"])).unwrap();
    assert_eq!(status["profiles"][0]["login_required"], true, "{status}");

    device_login(&env, "me");
    assert_eq!(grants_of(&oidc, DEVICE), 1);
    // The refresh token is in the keyring, nowhere on disk.
    let rt = stored_refresh_token(&env, "me").expect("a refresh token in the keyring");
    assert!(!rt.is_empty());
    // The sign-in's own access token is served: no further request.
    env.ok(&["token", "me"]);
    assert_eq!(grants_of(&oidc, "refresh_token"), 0);
    let id_token = env.ok(&["token", "me", "--id-token"]);
    let claims = jwt_claims(id_token.trim());
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["aud"], "cli");
    let status: Value = serde_json::from_str(&env.ok(&["status", "--json"])).unwrap();
    assert!(
        status["profiles"][0].get("login_required").is_none(),
        "{status}"
    ); // Replaced, the profile is signed out: the sign-in belonged to the old
    // settings, and so did its tokens and ID token.
    add_user(&env, &oidc, "me", "device-code");
    assert_eq!(stored_refresh_token(&env, "me"), None);
    for args in [&["token", "me"][..], &["token", "me", "--id-token"]] {
        let err = stderr_of(&env.run(args));
        assert!(err.contains("login_required"), "{err}");
    }
}

/// Where no browser can be opened (no display, no `$BROWSER`), a browser
/// profile signs in with the device flow when its server offers it to the
/// client; a client the server keeps to the browser flow gets its address.
#[test]
fn a_headless_login_of_a_browser_profile_uses_the_device_flow() {
    let env = TestEnv::new();
    let oidc = provider(&env, json!({}));
    add_user(&env, &oidc, "me", "authorization-code");
    // (`--no-browser` would ask for the browser flow's address.)
    let mut login = Login::spawn(env.cmd(&["login", "me"]));
    let (uri, code) = login.device_prompt();
    let page = browse(&uri, &["--user-code", &code]);
    assert_eq!(page["status"], 200, "{page}");
    let (status, said) = login.finish();
    assert_eq!(status, Some(0), "{said}");
    assert_eq!(grants_of(&oidc, DEVICE), 1);
    assert_eq!(grants_of(&oidc, "authorization_code"), 0);
    env.ok(&["token", "me"]);

    // A client without the device grant: the browser flow, as before.
    let env = TestEnv::new();
    let only_browser = Oidc::start(
        &env,
        &json!({"ttl": 600, "scopes": ["openid", "offline_access"], "clients": [{
            "client_id": "cli", "auth": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "redirect_uris": ["http://127.0.0.1/callback"],
            "application_type": "native",
            "scope": "openid offline_access",
        }]}),
    );
    add_user(&env, &only_browser, "me", "authorization-code");
    let mut login = Login::spawn(env.cmd(&["login", "me"]));
    let url = login.browser_url();
    assert!(url.starts_with(&only_browser.issuer), "{url}");
}

/// A server that says how long its refresh tokens last (Keycloak's
/// `refresh_expires_in`): `whoami` says until when the sign-in lasts.
#[test]
fn whoami_says_until_when_the_sign_in_lasts_when_the_server_says() {
    let env = TestEnv::new();
    let oidc = provider(&env, json!({"refresh_expires_in": 86400}));
    add_user(&env, &oidc, "me", "device-code");
    let before = jwtagent::time::unix_now();
    device_login(&env, "me");
    let who: Value = serde_json::from_str(&env.ok(&["whoami", "me", "--json"])).unwrap();
    let until = who["until"].as_u64().unwrap_or_else(|| panic!("{who}"));
    assert!(
        (before + 86400..=jwtagent::time::unix_now() + 86400).contains(&until),
        "{until} {who}"
    );
    let text = env.ok(&["whoami", "me"]);
    let when = jwtagent::time::rfc3339(until);
    assert!(
        text.contains(&format!("until {when} (when its refresh token expires)")),
        "{text}"
    );
    // `show` and `status` say it too.
    assert!(
        env.ok(&["show", "me"])
            .contains(&format!("signed_in_until {when}"))
    );
    assert_eq!(env.profile_status("me")["signed_in_until"], until);
    assert!(env.ok(&["status"]).contains(&format!(" until {when}")));
    // A server that does not say: nothing is claimed.
    let env = TestEnv::new();
    let oidc = provider(&env, json!({}));
    add_user(&env, &oidc, "me", "device-code");
    device_login(&env, "me");
    let who: Value = serde_json::from_str(&env.ok(&["whoami", "me", "--json"])).unwrap();
    assert!(who.get("until").is_none(), "{who}");
}

#[test]
fn a_confidential_client_signs_in_with_its_secret() {
    let env = TestEnv::new();
    let oidc = provider(&env, json!({}));
    let out = env.run_with_stdin(
        &[
            "add",
            "work",
            "--issuer",
            &oidc.issuer,
            "--client-id",
            "conf",
            "--auth",
            "client_secret_basic",
            "--grant",
            "device-code",
            "--scope",
            "openid",
            "--scope",
            "offline_access",
            "--secret-stdin",
        ],
        b"conf-secret-0123456789",
    );
    assert!(out.status.success(), "{}", stderr_of(&out));
    device_login(&env, "work");
    let grants = oidc.events_of("token");
    assert!(
        grants
            .iter()
            .any(|e| e["grant_type"] == DEVICE && e["auth_method"] == "client_secret_basic"),
        "{grants:?}"
    );
    env.ok(&["token", "work", "--force"]);
    assert_eq!(grants_of(&oidc, "refresh_token"), 1);
}

#[test]
fn browser_flow_with_pkce_refuses_a_forged_state_and_signs_in() {
    let env = TestEnv::new();
    let oidc = provider(&env, json!({}));
    add_user(&env, &oidc, "web", "authorization-code");
    let mut login = Login::start(&env, "web");
    let url = login.browser_url();
    let query: Vec<(String, String)> = url::Url::parse(&url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    let get = |k: &str| {
        query
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(get("code_challenge_method").as_deref(), Some("S256"));
    assert!(
        get("redirect_uri")
            .unwrap()
            .starts_with("http://127.0.0.1:")
    );
    let page = browse(&url, &["--forge-state"]);
    // The forged redirect is answered and ignored; the real one signs in.
    assert_eq!(page["forged"]["status"], 400, "{page}");
    assert!(
        page["forged"]["body"]
            .as_str()
            .unwrap()
            .contains("does not belong"),
        "{page}"
    );
    assert_eq!(page["status"], 200, "{page}");
    assert!(
        page["body"].as_str().unwrap().contains("Signed in"),
        "{page}"
    );
    let (status, said) = login.finish();
    assert_eq!(status, Some(0), "{said}");
    assert!(said.contains("The sign-in expires in 10m 0s."), "{said}");
    assert_eq!(grants_of(&oidc, "authorization_code"), 1);
    assert!(stored_refresh_token(&env, "web").is_some());
    env.ok(&["token", "web"]);
}

/// The redirect listener reads a request head as long as a browser's can
/// be (cookies and all: here 6 KiB; it stops reading at 8 KiB), and
/// answers another path than the redirect's as not found.
#[test]
fn the_redirect_listener_reads_a_long_request_head_and_knows_its_path() {
    let env = TestEnv::new();
    let oidc = provider(&env, json!({}));
    add_user(&env, &oidc, "web", "authorization-code");
    let mut login = Login::start(&env, "web");
    let url = login.browser_url();
    let cookie = format!("Cookie: {}\r\n", "c".repeat(6 * 1024));
    let page = ask_redirect_listener(&url, "/callback?code=x&state=forged", &cookie);
    // Read to its end: its state is then found not to be this sign-in's.
    assert!(
        page.starts_with("HTTP/1.1 400") && page.contains("does not belong"),
        "{page}"
    );
    // What a browser also asks for is not found, not a bad request.
    let page = ask_redirect_listener(&url, "/favicon.ico", "");
    assert!(page.starts_with("HTTP/1.1 404 Not Found\r\n"), "{page}");
}

/// Parameter `key` of the authorization request `url`.
fn query_param(url: &url::Url, key: &str) -> String {
    let found = url.query_pairs().find(|(k, _)| k == key);
    found.unwrap().1.into_owned()
}

/// Sends `GET target` with `headers` to the redirect listener of the
/// sign-in whose authorization request is `url`; the page it answers.
fn ask_redirect_listener(url: &str, target: &str, headers: &str) -> String {
    use std::io::{Read, Write};
    let url = url::Url::parse(url).unwrap();
    let redirect = url::Url::parse(&query_param(&url, "redirect_uri")).unwrap();
    let port = redirect.port().unwrap();
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{headers}\r\n"
    )
    .unwrap();
    let mut page = String::new();
    stream.read_to_string(&mut page).unwrap();
    page
}

/// Sends the browser's redirect for the sign-in at `url` itself, with
/// `query` after its own `state`; the page the listener answers.
fn redirect(url: &str, query: &str) -> String {
    let state = query_param(&url::Url::parse(url).unwrap(), "state");
    let state: String = url::form_urlencoded::byte_serialize(state.as_bytes()).collect();
    ask_redirect_listener(url, &format!("/callback?state={state}&{query}"), "")
}

/// A redirect that says the user refused ends the sign-in as denied; one
/// with another error, as what the server said.
#[test]
fn a_redirect_with_an_error_ends_the_browser_sign_in_saying_which() {
    let env = TestEnv::new();
    let oidc = provider(&env, json!({}));
    add_user(&env, &oidc, "web", "authorization-code");
    for (error, says) in [
        (
            "access_denied",
            "was denied at the server (access_denied: no thanks)",
        ),
        ("temporarily_unavailable", "temporarily_unavailable"),
    ] {
        let mut login = Login::start(&env, "web");
        let url = login.browser_url();
        let page = redirect(&url, &format!("error={error}&error_description=no+thanks"));
        assert!(
            page.starts_with("HTTP/1.1 200 OK\r\n") && page.contains("Sign-in failed"),
            "{page}"
        );
        let (status, said) = login.finish();
        assert_eq!(status, Some(1), "{said}");
        assert!(said.contains(says), "{said}");
        if error != "access_denied" {
            assert!(!said.contains("denied"), "{said}");
        }
    }
}

#[test]
fn refresh_tokens_rotate_survive_a_restart_and_a_rejected_one_means_login_required() {
    let env = TestEnv::new();
    let oidc = provider(&env, json!({}));
    add_user(&env, &oidc, "me", "device-code");
    device_login(&env, "me");
    // Every refresh rotates the refresh token (a public client), and the
    // keyring follows.
    let mut seen = vec![stored_refresh_token(&env, "me").unwrap()];
    for _ in 0..3 {
        env.ok(&["token", "me", "--force"]);
        let rt = stored_refresh_token(&env, "me").unwrap();
        assert!(!seen.contains(&rt), "the refresh token was not replaced");
        seen.push(rt);
    }
    assert_eq!(grants_of(&oidc, "refresh_token"), 3);
    // A new agent signs in with what the keyring holds.
    env.ok(&["stop"]);
    env.ok(&["token", "me"]);
    assert_eq!(grants_of(&oidc, "refresh_token"), 4);
    let current = stored_refresh_token(&env, "me").unwrap();
    // The first refresh token is refused by the server now; replaying it
    // makes the server revoke the whole grant (reuse detection).
    let replay = refresh_at_server(&oidc, &seen[0]);
    assert_eq!(replay["body"]["error"], "invalid_grant", "{replay}");
    let out = env.run(&["token", "me", "--force"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert!(
        err.contains("login_required")
            && err.contains("rejected its refresh token")
            && err.contains("jwtagent login me"),
        "{err}"
    );
    assert_eq!(
        refresh_at_server(&oidc, &current)["body"]["error"],
        "invalid_grant"
    );
    let status = env.ok(&["status"]);
    assert!(
        status.contains("LOGIN REQUIRED (jwtagent login me)"),
        "{status}"
    );
}

#[test]
fn an_agent_that_dies_right_after_a_rotation_has_already_kept_the_new_refresh_token() {
    let env = TestEnv::new();
    let oidc = provider(&env, json!({}));
    add_user(&env, &oidc, "me", "device-code");
    device_login(&env, "me");
    let before = stored_refresh_token(&env, "me").unwrap();
    env.ok(&["stop"]);
    // The agent this starts aborts once the rotated refresh token is
    // stored, before the access token is served or anything else is done.
    let out = env
        .cmd(&["token", "me"])
        .env("JWTAGENT_CRASH_AT", "refresh:after-store")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let after = stored_refresh_token(&env, "me").unwrap();
    assert!(after != before, "the rotated refresh token was not stored");
    assert_eq!(grants_of(&oidc, "refresh_token"), 1);
    // The server has retired `before`; the next agent signs in with `after`.
    env.ok(&["token", "me"]);
    assert_eq!(grants_of(&oidc, "refresh_token"), 2);
}

#[test]
fn logout_revokes_the_refresh_token_at_the_server_and_deletes_it() {
    let env = TestEnv::new();
    let oidc = provider(&env, json!({}));
    add_user(&env, &oidc, "me", "device-code");
    device_login(&env, "me");
    let rt = stored_refresh_token(&env, "me").unwrap();
    let seen = introspect(&oidc, &rt);
    assert_eq!(seen["body"]["active"], true, "{seen}");
    let out = env.run(&["logout", "me"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("revoked"), "{}", stderr_of(&out));
    assert_eq!(stored_refresh_token(&env, "me"), None);
    assert_eq!(
        refresh_at_server(&oidc, &rt)["body"]["error"],
        "invalid_grant"
    );
    let out = env.run(&["token", "me"]);
    assert!(
        stderr_of(&out).contains("login_required"),
        "{}",
        stderr_of(&out)
    );
    // `remove` signs out too.
    device_login(&env, "me");
    let rt = stored_refresh_token(&env, "me").unwrap();
    env.ok(&["remove", "me"]);
    assert_eq!(stored_refresh_token(&env, "me"), None);
    assert_eq!(
        refresh_at_server(&oidc, &rt)["body"]["error"],
        "invalid_grant"
    );
}

#[test]
fn a_denied_device_sign_in_ends_with_a_clear_message() {
    let env = TestEnv::new();
    let oidc = provider(&env, json!({}));
    add_user(&env, &oidc, "me", "device-code");
    let mut login = Login::start(&env, "me");
    let (uri, code) = login.device_prompt();
    browse(&uri, &["--user-code", &code, "--deny"]);
    let (status, said) = login.finish();
    assert_eq!(status, Some(1), "{said}");
    assert!(
        said.contains("denied") && said.contains("jwtagent login me"),
        "{said}"
    );
    assert_eq!(stored_refresh_token(&env, "me"), None);
}

#[test]
fn an_expired_device_code_ends_the_sign_in_with_a_clear_message() {
    let env = TestEnv::new();
    let oidc = provider(&env, json!({"device_ttl": 2}));
    add_user(&env, &oidc, "me", "device-code");
    // Expired, not denied (the server's expired_token is not access_denied).
    ends_expired(Login::start(&env, "me"));
}

/// The sign-in ends in failure, said to have expired, not been denied.
fn ends_expired(login: Login) {
    let (status, said) = login.finish();
    assert_eq!(status, Some(1), "{said}");
    assert!(
        said.contains("expired before it was completed") && !said.contains("denied"),
        "{said}"
    );
}

/// A server that ends a device code before the time it gave (its poll
/// answered with expired_token): the sign-in ends, said to have expired.
#[test]
fn a_device_code_the_server_ends_early_ends_the_sign_in_as_expired() {
    let env = TestEnv::new();
    let oidc = provider(
        &env,
        json!({"device_ttl": 1, "device_expires_in": 600, "device_interval": 2}),
    );
    add_user(&env, &oidc, "me", "device-code");
    ends_expired(Login::start(&env, "me"));
}

/// A poll refused for a reason of the server's own (not pending, slower,
/// denied or expired): the sign-in ends with the server's error, not taken
/// for one of those.
#[test]
fn a_device_poll_refused_otherwise_ends_the_sign_in_with_the_servers_error() {
    let env = TestEnv::new();
    let oidc = provider(&env, json!({"device_poll_error": "invalid_grant"}));
    add_user(&env, &oidc, "me", "device-code");
    let (status, said) = Login::start(&env, "me").finish();
    assert_eq!(status, Some(1), "{said}");
    assert!(
        said.contains("invalid_grant")
            && said.contains("the test provider refuses this poll")
            && !said.contains("expired")
            && !said.contains("denied"),
        "{said}"
    );
}

#[test]
fn slow_down_makes_the_agent_poll_five_seconds_slower() {
    let env = TestEnv::new();
    let oidc = provider(&env, json!({"slow_down_once": true}));
    add_user(&env, &oidc, "me", "device-code");
    let mut login = Login::start(&env, "me");
    let (uri, code) = login.device_prompt();
    let slowed = oidc.wait_event("the server says slow_down", |e| e["error"] == "slow_down");
    let next = oidc.wait_event("the next poll", |e| {
        e["grant_type"] == DEVICE && e["at"].as_u64() > slowed["at"].as_u64()
    });
    // interval 1 s + 5 s (RFC 8628 §3.5); a loaded machine only adds.
    let gap = next["at"].as_u64().unwrap() - slowed["at"].as_u64().unwrap();
    assert!(gap >= 5_500, "polled again after {gap} ms");
    browse(&uri, &["--user-code", &code]);
    assert_eq!(login.finish().0, Some(0));
}

#[test]
fn a_second_login_joins_the_first_and_token_does_not_start_one() {
    let env = TestEnv::new();
    let oidc = provider(&env, json!({}));
    add_user(&env, &oidc, "me", "device-code");
    let mut first = Login::start(&env, "me");
    let (uri, code) = first.device_prompt();
    // Another terminal: `token` fails at once, `login` follows the same one.
    let out = env.run(&["token", "me"]);
    assert!(
        stderr_of(&out).contains("login_required"),
        "{}",
        stderr_of(&out)
    );
    let mut second = Login::start(&env, "me");
    let (_, same) = second.device_prompt();
    assert_eq!(same, code);
    assert!(
        second.seen.iter().any(|l| l.contains("already under way")),
        "{:?}",
        second.seen
    );
    browse(&uri, &["--user-code", &code]);
    assert_eq!(first.finish().0, Some(0));
    assert_eq!(second.finish().0, Some(0));
    assert_eq!(grants_of(&oidc, DEVICE), 1);
}

#[test]
fn an_interrupted_login_is_abandoned_by_the_agent() {
    let env = TestEnv::new();
    let oidc = provider(&env, json!({}));
    add_user(&env, &oidc, "me", "authorization-code");
    let mut cmd = env.cmd(&["login", "me", "--no-browser"]);
    // Ctrl-C at a terminal: SIGINT at its default action, even when the suite
    // runs where it is ignored (a background job of a script inherits that).
    // SAFETY: between fork and exec, one async-signal-safe call.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            Ok(())
        });
    }
    let mut login = Login::spawn(cmd);
    let url = login.browser_url();
    let redirect = url::Url::parse(&url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "redirect_uri")
        .unwrap()
        .1
        .into_owned();
    let logging_in = || {
        let status: Value = serde_json::from_str(&env.ok(&["status", "--json"])).unwrap();
        status["profiles"][0]["logging_in"] == true
    };
    assert!(logging_in());
    // Ctrl-C.
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(login.child.id() as i32).unwrap(),
        rustix::process::Signal::INT,
    )
    .unwrap();
    wait_until("the login ends on Ctrl-C", || {
        login.child.try_wait().unwrap().is_some()
    });
    // Something keeps asking the listener for a page, at every look at the
    // agent (many times a second): that keeps no sign-in alive.
    let port = url::Url::parse(&redirect).unwrap().port().unwrap();
    let ask = || {
        use std::io::{Read, Write};
        if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = stream.write_all(b"GET /favicon.ico HTTP/1.1\r\nHost: x\r\n\r\n");
            let _ = stream.read_to_end(&mut Vec::new());
        }
    };
    // The CLI's last wait may run on for its 5 s, then the lease's 15 s.
    wait_until_within(
        std::time::Duration::from_secs(45),
        "the agent abandons the sign-in",
        || {
            ask();
            !logging_in()
        },
    );
    // Its loopback listener is closed.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn login_refuses_a_profile_that_is_not_a_users() {
    let env = TestEnv::new();
    let oidc = open_provider(&env, 600);
    env.add_open_profile("svc", &oidc.token_endpoint(), &[]);
    let out = env.run(&["login", "svc"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert!(
        err.contains("client-credentials") && err.contains("--grant device-code"),
        "{err}"
    );
}

#[test]
fn no_refresh_access_or_id_token_reaches_a_log_at_trace_level_or_any_file() {
    let env = TestEnv::new();
    let oidc = provider(&env, json!({}));
    let out = env
        .cmd(&["agent"])
        .env("JWTAGENT_LOG", "trace")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    add_user(&env, &oidc, "me", "device-code");
    device_login(&env, "me");
    let mut secrets = vec![String::from_utf8(stored_refresh_token(&env, "me").unwrap()).unwrap()];
    for _ in 0..2 {
        secrets.push(env.ok(&["token", "me", "--force"]).trim().to_string());
        secrets.push(String::from_utf8(stored_refresh_token(&env, "me").unwrap()).unwrap());
    }
    secrets.push(env.ok(&["token", "me", "--id-token"]).trim().to_string());
    env.ok(&["logout", "me"]);
    env.ok(&["stop"]);
    let log = std::fs::read_to_string(env.log_file()).unwrap();
    assert!(log.contains("TRACE"), "the log is not at trace level");
    assert!(log.contains("signed in"), "{log}");
    // Nor any file of the user's: logs, audit log, config, runtime dir.
    let mut files = vec![env.path("")];
    let mut read = 0;
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        read += 1;
        for secret in &secrets {
            assert!(secret.len() > 20);
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "a token is in {}",
                path.display()
            );
        }
    }
    assert!(read >= 3, "only {read} files were searched");
}

#[test]
fn redirect_port_fixes_the_loopback_port_and_a_busy_one_is_a_clear_error() {
    let env = TestEnv::new();
    let oidc = provider(&env, json!({}));
    // A port below the kernel's ephemeral range: no other test's socket
    // (all bound to port 0) can take it between the two logins.
    let busy = (20000..32000u16)
        .map(|p| 20000 + (p - 20000 + std::process::id() as u16 % 12000) % 12000)
        .find_map(|p| std::net::TcpListener::bind(("127.0.0.1", p)).ok())
        .expect("a free port below 32000");
    let port = busy.local_addr().unwrap().port().to_string();
    let extra = ["--redirect-port", port.as_str()];
    let out = add_user_with(&env, &oidc, "web", "authorization-code", &extra);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let out = env.run_ending(&["login", "web", "--no-browser"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert!(
        err.contains(&format!("127.0.0.1:{port}")) && err.contains("--redirect-port"),
        "{err}"
    );
    drop(busy);
    let mut login = Login::start(&env, "web");
    let url = login.browser_url();
    assert!(
        url.contains(&format!("127.0.0.1%3A{port}%2Fcallback")),
        "{url}"
    );
    assert_eq!(browse(&url, &[])["status"], 200);
    assert_eq!(login.finish().0, Some(0));
}

/// Connects `count` times to `addr` as uid 65534 and, when `request` is
/// given, sends it on each; prints one line per connection: `closed` when
/// the agent closed it unanswered, else the status line it got. Stays until
/// its stdin closes, holding the connections that are still open.
const NOBODY_CLIENT: &str = r#"
import socket, sys
host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
request = sys.argv[4].encode() if len(sys.argv) > 4 else b""
held = []
for _ in range(count):
    s = socket.create_connection((host, port))
    held.append(s)
    if request:
        s.sendall(request)
        s.settimeout(10)
        try:
            answer = s.recv(4096)
        except OSError:
            answer = b""
        print(answer.split(b"\r\n")[0].decode() or "closed", flush=True)
print("holding", flush=True)
sys.stdin.read()
"#;

fn nobody_client(addr: &str, count: usize, request: Option<&str>) -> std::process::Child {
    let setpriv = require_tool("setpriv", "util-linux");
    assert!(
        rustix::process::geteuid().is_root(),
        "this test must run as root (it acts as uid 65534 too)"
    );
    let (host, port) = addr.rsplit_once(':').unwrap();
    let count = count.to_string();
    let mut args = vec![
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--",
        "/usr/bin/python3",
        "-c",
        NOBODY_CLIENT,
        host,
        port,
        &count,
    ];
    args.extend(request);
    std::process::Command::new(setpriv)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

#[test]
fn another_user_can_neither_complete_nor_hold_up_a_browser_sign_in() {
    let env = TestEnv::new();
    let oidc = provider(&env, json!({}));
    add_user(&env, &oidc, "web", "authorization-code");
    let mut login = Login::start(&env, "web");
    let url = login.browser_url();
    let query: std::collections::HashMap<String, String> = url::Url::parse(&url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    let redirect = url::Url::parse(&query["redirect_uri"]).unwrap();
    let addr = format!("127.0.0.1:{}", redirect.port().unwrap());
    // Another user knows `state` (it is in the browser's command line):
    // their redirect, with a code of theirs, was taken for the user's.
    let forged = format!(
        "GET /callback?state={}&code=the-attackers-code HTTP/1.1\r\nHost: {addr}\r\n\r\n",
        query["state"]
    );
    let mut attacker = nobody_client(&addr, 1, Some(&forged));
    let mut said = String::new();
    BufReader::new(attacker.stdout.as_mut().unwrap())
        .read_line(&mut said)
        .unwrap();
    assert_eq!(
        said.trim(),
        "closed",
        "the attacker's redirect was answered"
    );
    drop(attacker.stdin.take());
    attacker.wait().unwrap();
    // This user's redirect without a state, or with a code and an empty
    // one, is not this sign-in's either.
    for target in ["/callback?code=c", "/callback?state=&code=c"] {
        let mut stream = std::net::TcpStream::connect(&addr).unwrap();
        use std::io::{Read, Write};
        write!(stream, "GET {target} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
        let mut page = String::new();
        stream.read_to_string(&mut page).unwrap();
        assert!(
            page.starts_with("HTTP/1.1 400") && page.contains("does not belong"),
            "{target}: {page}"
        );
    }
    // Idle connections, theirs and this user's, hold nothing up.
    let mut holder = nobody_client(&addr, 10, None);
    let mut line = String::new();
    BufReader::new(holder.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "holding");
    let idle: Vec<_> = (0..10)
        .map(|_| std::net::TcpStream::connect(&addr).unwrap())
        .collect();
    let (tx, rx) = mpsc::channel();
    let browsing = url.clone();
    std::thread::spawn(move || tx.send(browse(&browsing, &[])));
    let page = rx.recv_timeout(DEADLINE).expect("the browser was held up");
    assert_eq!(page["status"], 200, "{page}");
    assert!(
        page["body"].as_str().unwrap().contains("Signed in"),
        "{page}"
    );
    drop(idle);
    drop(holder.stdin.take());
    holder.wait().unwrap();
    let (status, said) = login.finish();
    assert_eq!(status, Some(0), "{said}");
    assert_eq!(grants_of(&oidc, "authorization_code"), 1);
    let log = std::fs::read_to_string(env.log_file()).unwrap();
    assert!(
        log.contains("refused a connection that is not this user's"),
        "{log}"
    );
    assert!(!log.contains(&query["state"]), "the state was logged");
}

#[test]
fn replacing_a_signed_in_profile_revokes_its_refresh_token_and_says_so() {
    let env = TestEnv::new();
    let oidc = provider(&env, json!({}));
    add_user(&env, &oidc, "me", "device-code");
    device_login(&env, "me");
    let rt = stored_refresh_token(&env, "me").unwrap();
    assert_eq!(introspect(&oidc, &rt)["body"]["active"], true);
    // The same profile added again (say, with another scope): the old
    // sign-in was deleted here and stayed valid at the server.
    let out = add_user_with(&env, &oidc, "me", "device-code", &["--scope", "api:read"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("sign-in was revoked at the server"), "{said}");
    assert_eq!(stored_refresh_token(&env, "me"), None);
    assert_eq!(
        refresh_at_server(&oidc, &rt)["body"]["error"],
        "invalid_grant"
    );
    // A failed replacement leaves the sign-in as it was (the profile is in
    // its second generation now: its keyring entries say so).
    device_login(&env, "me");
    let second = || keyutils_lookup(&env.keyring_service, "refresh/me#1");
    let rt = second().unwrap();
    let out = add_user_with(
        &env,
        &oidc,
        "me",
        "device-code",
        &["--ca-file", "/dev/null"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    assert_eq!(second().as_deref(), Some(&rt[..]));
    assert_eq!(introspect(&oidc, &rt)["body"]["active"], true);
}

#[test]
fn the_browser_gets_the_address_in_a_private_page_not_on_its_command_line() {
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::new();
    let oidc = provider(&env, json!({}));
    let out = add_user_with(&env, &oidc, "web", "authorization-code", &[]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    // $BROWSER as git reads it: the first command is missing, the second
    // records what it was given.
    let seen = env.path("browser-args");
    let script = env.path("fake-browser");
    write_program(
        &script,
        &format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > {0}.tmp && mv {0}.tmp {0}\n",
            seen.display()
        ),
    );
    let mut cmd = env.cmd(&["login", "web"]);
    cmd.env(
        "BROWSER",
        format!("/nonexistent/browser:{} --new-window %s", script.display()),
    );
    let mut login = Login::spawn(cmd);
    let url = login.browser_url();
    wait_until("the browser was started", || seen.exists());
    let args: Vec<String> = std::fs::read_to_string(&seen)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(args.len(), 2, "{args:?}");
    assert_eq!(args[0], "--new-window");
    assert!(
        !args[1].contains("state=") && !args[1].starts_with("https://"),
        "{args:?}"
    );
    let page = std::path::PathBuf::from(&args[1]);
    let mode = std::fs::metadata(&page).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains(&url.replace('&', "&amp;")), "{html}");
    assert!(
        login
            .seen
            .iter()
            .any(|l| l.starts_with("Opened this address"))
    );
    // The page's address signs in; the page goes with the sign-in.
    assert_eq!(browse(&url, &[])["status"], 200);
    assert_eq!(login.finish().0, Some(0));
    assert!(!page.exists(), "{} is left", page.display());
}

#[test]
fn add_of_a_user_profile_says_the_next_step_and_a_machine_profile_says_what_it_is() {
    let env = TestEnv::new();
    let oidc = provider(&env, json!({}));
    let out = add_user_with(&env, &oidc, "me", "device-code", &[]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("Next: `jwtagent login me`"), "{said}");
    // A machine profile has no sign-in to start or end, and is told so.
    let machine = open_provider(&env, 600);
    env.add_open_profile("ci", &machine.token_endpoint(), &[]);
    for op in ["login", "logout"] {
        let out = env.run(&[op, "ci"]);
        assert_eq!(out.status.code(), Some(1), "{op}");
        let err = stderr_of(&out);
        assert!(
            err.contains("machine profile")
                && err.contains("client-credentials")
                && !err.contains("LOGIN"),
            "{op}: {err}"
        );
    }
}

#[test]
fn whoami_says_whether_a_profile_is_signed_in_and_as_whom() {
    let env = TestEnv::new();
    let oidc = provider(&env, json!({}));
    add_user(&env, &oidc, "me", "device-code");
    let said = env.ok(&["whoami", "me"]);
    assert!(
        said.contains("not signed in") && said.contains("jwtagent login me"),
        "{said}"
    );
    let before = jwtagent_now();
    device_login(&env, "me");
    let who: Value = serde_json::from_str(&env.ok(&["whoami", "me", "--json"])).unwrap();
    assert_eq!(who["signed_in"], true, "{who}");
    // The subject of the ID token the provider issued for alice.
    assert_eq!(who["subject"], "alice", "{who}");
    assert!(who["since"].as_u64().is_some_and(|t| t >= before), "{who}");
    let said = env.ok(&["whoami", "me"]);
    assert!(
        said.contains("is signed in as") && said.contains("alice"),
        "{said}"
    );
    let status = env.ok(&["status"]);
    assert!(status.contains("signed in as alice"), "{status}");
    assert!(env.ok(&["list"]).contains("signed in as alice"));
    assert!(env.ok(&["show", "me"]).contains("signed_in_as    alice"));
    // Signing in again takes --force, and says as whom it is signed in now.
    let out = env.run(&["login", "me", "--no-browser"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr_of(&out);
    assert!(err.contains("alice") && err.contains("--force"), "{err}");
    assert!(
        !err.contains("To sign in"),
        "no second sign-in began: {err}"
    );
    env.ok(&["logout", "me"]);
    let who: Value = serde_json::from_str(&env.ok(&["whoami", "me", "--json"])).unwrap();
    assert_eq!(who["signed_in"], false, "{who}");
    assert!(who["subject"].is_null(), "{who}");
}

/// Unix seconds now.
fn jwtagent_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}
