//! Proxies: the agent reaches authorization servers through the proxy its
//! environment names, as curl reads it (a real tinyproxy on loopback), for
//! discovery and token requests alike; NO_PROXY hosts go direct; the proxy's
//! credentials are used and never shown or logged.

use crate::common::*;
use serde_json::json;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

const SECRET: &str = "proxy-test-client-secret-0123";
const PROXY_USER: &str = "proxyuser";
const PROXY_PASSWORD: &str = "pr0xy-pa55word-never-shown";

/// tinyproxy on a free loopback port, requiring Basic credentials; stopped
/// on drop.
struct Tinyproxy {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Tinyproxy {
    fn start(env: &TestEnv) -> Tinyproxy {
        let tinyproxy = require_tool("tinyproxy", "tinyproxy");
        // tinyproxy takes a fixed port: take a free one and hand it over.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = env.path("tinyproxy.log");
        let conf = env.path("tinyproxy.conf");
        std::fs::write(
            &conf,
            format!(
                "Port {port}\nListen 127.0.0.1\nTimeout 30\nLogFile \"{}\"\nLogLevel Info\n\
                 MaxClients 20\nAllow 127.0.0.1\nBasicAuth {PROXY_USER} {PROXY_PASSWORD}\n",
                log.display()
            ),
        )
        .unwrap();
        let mut child = Command::new(tinyproxy)
            .args(["-d", "-c"])
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tinyproxy");
        wait_until("tinyproxy accepts connections", || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "tinyproxy exited ({status}); see {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Tinyproxy { child, port, log }
    }

    fn url(&self, password: &str) -> String {
        format!("http://{PROXY_USER}:{password}@127.0.0.1:{}", self.port)
    }

    /// The CONNECT requests it has logged, by target (host:port).
    fn connects(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split("): CONNECT ").nth(1))
            .filter_map(|rest| rest.split_whitespace().next())
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn provider(env: &TestEnv) -> Oidc {
    Oidc::start(
        env,
        &json!({"ttl": 600, "clients": [
            {"client_id": "app", "auth": "client_secret_post", "secret": SECRET}
        ]}),
    )
}

/// Adds profile `api` (discovery from `oidc.issuer`) with the agent this
/// command starts running under `vars`.
fn add_with_env(env: &TestEnv, oidc: &Oidc, vars: &[(&str, &str)]) {
    let mut cmd = env.add_issuer_cmd("api", &oidc.issuer, "app", "client_secret_post", &[]);
    cmd.arg("--secret-stdin").env("JWTAGENT_LOG", "trace");
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = output_with_stdin(&mut cmd, SECRET.as_bytes());
    assert!(out.status.success(), "{}", stderr_of(&out));
}

fn oidc_host(oidc: &Oidc) -> String {
    oidc.issuer.trim_start_matches("https://").to_string()
}

/// Nothing the user or the log sees holds the proxy's password.
fn assert_password_nowhere(env: &TestEnv, outputs: &[&std::process::Output]) {
    for out in outputs {
        assert!(
            !stderr_of(out).contains(PROXY_PASSWORD),
            "{}",
            stderr_of(out)
        );
        assert!(!String::from_utf8_lossy(&out.stdout).contains(PROXY_PASSWORD));
    }
    let log = std::fs::read_to_string(env.log_file()).unwrap();
    assert!(!log.is_empty());
    assert!(
        !log.contains(PROXY_PASSWORD),
        "the agent log holds the proxy password"
    );
    let status = env.ok(&["status", "--json"]);
    assert!(!status.contains(PROXY_PASSWORD));
}

#[test]
fn discovery_and_token_requests_go_through_https_proxy_with_its_credentials() {
    let env = TestEnv::new();
    let oidc = provider(&env);
    let proxy = Tinyproxy::start(&env);
    add_with_env(&env, &oidc, &[("https_proxy", &proxy.url(PROXY_PASSWORD))]);
    let out = env.run(&["token", "api"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(oidc.grants("app").len(), 1);
    // Every connection to the server was a tunnel through the proxy.
    let connects = proxy.connects();
    assert!(!connects.is_empty(), "the proxy saw no CONNECT");
    assert!(
        connects.iter().all(|c| *c == oidc_host(&oidc)),
        "{connects:?}"
    );
    assert_password_nowhere(&env, &[&out]);
}

#[test]
fn a_refusing_proxy_is_named_without_its_credentials_and_no_proxy_goes_direct() {
    let env = TestEnv::new();
    let oidc = provider(&env);
    let proxy = Tinyproxy::start(&env);
    // Upper-case, with a wrong password: the proxy refuses the tunnel
    // (407), so discovery, the first request, fails and says where.
    add_with_env(
        &env,
        &oidc,
        &[("HTTPS_PROXY", &proxy.url("wrong-password"))],
    );
    let out = env.run(&["token", "api"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    let shown = format!(
        "discovery: cannot reach {} through proxy http://127.0.0.1:{} (from HTTPS_PROXY)",
        oidc_host(&oidc),
        proxy.port
    );
    assert!(
        err.contains("network: ")
            && err.contains(&shown)
            && err.contains("the proxy refused to open a tunnel: check the user and password"),
        "{err}"
    );
    assert!(
        !err.contains("wrong-password") && !err.contains(PROXY_USER),
        "{err}"
    );
    assert!(oidc.events().is_empty());
    assert!(!proxy.connects().is_empty());
    assert_password_nowhere(&env, &[&out]);

    // NO_PROXY names the server: the request goes direct, the proxy sees
    // nothing more.
    env.ok(&["stop"]);
    let before = proxy.connects().len();
    add_with_env(
        &env,
        &oidc,
        &[
            ("HTTPS_PROXY", &proxy.url("wrong-password")),
            ("NO_PROXY", "localhost,127.0.0.1"),
        ],
    );
    let out = env.run(&["token", "api"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(proxy.connects().len(), before);
}

#[test]
fn a_proxy_that_is_down_is_named() {
    let env = TestEnv::new();
    let oidc = provider(&env);
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = format!("http://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:{port}");
    add_with_env(&env, &oidc, &[("all_proxy", &dead)]);
    let out = env.run(&["token", "api"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert!(
        err.contains(&format!(
            "through proxy http://127.0.0.1:{port} (from all_proxy)"
        )),
        "{err}"
    );
    // Down is not a refusal: no hint about the tunnel's credentials.
    assert!(!err.contains("refused to open a tunnel"), "{err}");
    assert_password_nowhere(&env, &[&out]);
}

#[test]
fn a_plain_http_loopback_endpoint_is_never_reached_through_a_proxy() {
    let env = TestEnv::new();
    let proxy = Tinyproxy::start(&env);
    let server = FaultServer::start(Fault::Ok { lifetime: 600 });
    // With http_proxy (and all_proxy) set, the secret went to the proxy in
    // clear text, and the proxy could answer with a token of its own.
    let mut cmd = env.add_cmd(
        "plain",
        &server.token_url(),
        "client_secret_post",
        &["--secret-stdin"],
    );
    cmd.env("http_proxy", proxy.url(PROXY_PASSWORD))
        .env("all_proxy", proxy.url(PROXY_PASSWORD));
    let out = output_with_stdin(&mut cmd, SECRET.as_bytes());
    assert!(out.status.success(), "{}", stderr_of(&out));
    env.ok(&["token", "plain"]);
    assert_eq!(server.requests(), 1);
    assert!(server.bodies()[0].contains(SECRET));
    let log = std::fs::read_to_string(&proxy.log).unwrap_or_default();
    let target = format!("127.0.0.1:{}", server.port);
    assert!(
        !log.contains(&target),
        "the request went through the proxy:\n{log}"
    );
}
