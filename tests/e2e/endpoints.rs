//! `jwtagent exec --gcp-metadata` and `--azure-identity`: the cloud SDKs'
//! own client libraries (Python's google-auth and azure-identity, from
//! tests/python/requirements.txt) take a profile's token from the agent's
//! loopback endpoints unchanged; other users' connections are refused; the
//! endpoint lives as long as the command.

use crate::common::*;
use serde_json::{Value, json};
use std::path::PathBuf;

/// The venv scripts/install-test-deps makes, with google-auth and
/// azure-identity.
fn python() -> PathBuf {
    let python = oidc_dir().join("../../target/test-python/bin/python");
    let ok = std::process::Command::new(&python)
        .args(["-c", "import google.auth, azure.identity"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "the cloud SDKs' Python libraries are not installed: run scripts/install-test-deps (it makes target/test-python from tests/python/requirements.txt)"
    );
    python
}

/// The provider (HTTPS) with client `api`, and profiles `gcp` (scope
/// api:read) and `az` (resource https://api.example) for it.
fn setup() -> (TestEnv, Oidc) {
    let env = TestEnv::new();
    let oidc = Oidc::start(
        &env,
        &json!({
            "ttl": 600,
            "clients": [{"client_id": "api", "auth": "client_secret_post", "secret": "api-secret-0123456789"}],
        }),
    );
    for (name, extra) in [
        ("gcp", ["--scope", "api:read"]),
        ("az", ["--resource", "https://api.example"]),
    ] {
        let mut args = vec!["--secret-stdin"];
        args.extend(extra);
        let out = output_with_stdin(
            &mut env.add_issuer_cmd(name, &oidc.issuer, "api", "client_secret_post", &args),
            b"api-secret-0123456789\n",
        );
        assert!(out.status.success(), "{}", stderr_of(&out));
    }
    (env, oidc)
}

/// `jwtagent exec FLAGS -- python -c SCRIPT`: its stdout as JSON.
fn exec_python(env: &TestEnv, flags: &[&str], script: &str) -> Value {
    let python = python();
    let mut args = vec!["exec"];
    args.extend_from_slice(flags);
    args.extend(["--", python.to_str().unwrap(), "-c", script]);
    let out = env.run(&args);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        stderr_of(&out)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

const GOOGLE: &str = r#"
import datetime, json, google.auth, google.auth.transport.requests as transport
from google.auth import compute_engine
from google.auth.compute_engine import _metadata
request = transport.Request()
creds = compute_engine.Credentials()
creds.refresh(request)
found, project = google.auth.default()
found.refresh(request)
info = _metadata.get_service_account_info(request)
left = (creds.expiry - datetime.datetime.utcnow()).total_seconds()
print(json.dumps({"token": creds.token, "email": creds.service_account_email,
                  "left": left, "default": type(found).__name__,
                  "default_token": found.token, "info": info}))
"#;

#[test]
fn googles_client_library_takes_the_token_from_the_metadata_endpoint() {
    let (env, _oidc) = setup();
    let got = exec_python(&env, &["--gcp-metadata", "gcp"], GOOGLE);
    let token = env.ok(&["token", "gcp"]);
    assert_eq!(got["token"], token.trim(), "{got}");
    assert_eq!(got["default_token"], token.trim(), "{got}");
    assert_eq!(got["default"], "Credentials", "{got}");
    assert_eq!(got["email"], "api", "{got}");
    // What the library reads of the account: the profile's client id and
    // scopes; and the token's life as the agent holds it (600 s).
    assert_eq!(got["info"]["email"], "api", "{got}");
    assert_eq!(got["info"]["scopes"], json!(["api:read"]), "{got}");
    let left = got["left"].as_f64().unwrap();
    assert!(left > 500.0 && left <= 600.0, "{got}");
    // Audited as the gcp_metadata op, the caller the Python process.
    let audit: Vec<Value> = env
        .audit_text_until(&["--op", "gcp_metadata"], "the request audited", |t| {
            !t.is_empty()
        })
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!audit.is_empty());
    assert!(
        audit.iter().all(
            |r| r["outcome"] == "ok" && r["exe"].as_str().is_some_and(|e| e.contains("python"))
        ),
        "{audit:?}"
    );
}

const AZURE: &str = r#"
import json
from azure.identity import ManagedIdentityCredential, DefaultAzureCredential
mi = ManagedIdentityCredential().get_token("https://api.example/.default")
default = DefaultAzureCredential().get_token("https://api.example/.default")
print(json.dumps({"token": mi.token, "expires_on": mi.expires_on, "default": default.token}))
"#;

#[test]
fn azures_client_library_takes_the_token_from_the_managed_identity_endpoint() {
    let (env, _oidc) = setup();
    let got = exec_python(&env, &["--azure-identity", "az"], AZURE);
    let answer: Value = serde_json::from_str(&env.ok(&[
        "token",
        "az",
        "--json",
        "--resource",
        "https://api.example",
    ]))
    .unwrap();
    let token = env.ok(&["token", "az"]);
    assert_eq!(got["token"], token.trim(), "{got} {answer}");
    assert_eq!(got["default"], token.trim(), "{got}");
    assert!(
        got["expires_on"]
            .as_u64()
            .is_some_and(|e| e > jwtagent_now()),
        "{got}"
    );
}

/// What the endpoints answer a request that is not what they serve.
const PROBES: &str = r#"
import json, os, urllib.request, urllib.error
def get(url, headers):
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
gce = "http://" + os.environ["GCE_METADATA_HOST"] + "/computeMetadata/v1/instance/service-accounts/default/token"
az = os.environ["IDENTITY_ENDPOINT"] + "?api-version=2019-08-01&resource="
secret = os.environ["IDENTITY_HEADER"]
print(json.dumps({
    "gce_no_flavor": get(gce, {}),
    "gce_forwarded": get(gce, {"Metadata-Flavor": "Google", "X-Forwarded-For": "10.0.0.1"}),
    "gce_ok": get(gce, {"Metadata-Flavor": "Google"}),
    "az_no_secret": get(az + "https://api.example", {}),
    "az_wrong_secret": get(az + "https://api.example", {"X-IDENTITY-HEADER": secret[:-1] + "x"}),
    "az_other_resource": get(az + "https://vault.azure.net", {"X-IDENTITY-HEADER": secret}),
    "az_ok": get(az + "https://api.example", {"X-IDENTITY-HEADER": secret}),
}))
"#;

#[test]
fn the_endpoints_refuse_requests_without_their_headers_or_for_another_resource() {
    let (env, _oidc) = setup();
    let got = exec_python(
        &env,
        &["--gcp-metadata", "gcp", "--azure-identity", "az"],
        PROBES,
    );
    assert_eq!(
        got,
        json!({
            "gce_no_flavor": 403, "gce_forwarded": 403, "gce_ok": 200,
            "az_no_secret": 401, "az_wrong_secret": 401, "az_other_resource": 400, "az_ok": 200,
        })
    );
}

#[test]
fn a_profile_the_caller_may_not_have_is_refused_through_the_endpoint_too() {
    let (env, oidc) = setup();
    let out = output_with_stdin(
        &mut env.add_issuer_cmd(
            "pinned",
            &oidc.issuer,
            "api",
            "client_secret_post",
            &["--secret-stdin", "--allow-exe", "/usr/bin/true"],
        ),
        b"api-secret-0123456789\n",
    );
    assert!(out.status.success(), "{}", stderr_of(&out));
    let python = python();
    let out = env.run(&[
        "exec",
        "--gcp-metadata",
        "pinned",
        "--",
        python.to_str().unwrap(),
        "-c",
        GOOGLE,
    ]);
    assert!(!out.status.success());
    assert!(stderr_of(&out).contains("403"), "{}", stderr_of(&out));
    env.audit_text_until(&["--op", "gcp_metadata"], "the refusal audited", |t| {
        t.contains("\"denied\"")
    });
}

/// The service account's paths besides `token`, as the metadata server
/// answers them (text, one entry a line), by alias and by email.
const PATHS: &str = r#"
import json, os, urllib.request, urllib.error
base = "http://" + os.environ["GCE_METADATA_HOST"] + "/computeMetadata/v1/instance/service-accounts/"
def get(path):
    request = urllib.request.Request(base + path, headers={"Metadata-Flavor": "Google"})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            body = r.read().decode()
            if r.headers["Content-Type"] == "application/json":
                body = json.loads(body)
            return [r.status, body]
    except urllib.error.HTTPError as e:
        return [e.code, ""]
paths = ["", "default/", "default/?recursive=true", "default/?recursive=false",
         "default/email", "default/scopes", "default/aliases", "api/email",
         "other/email", "default/identity"]
print(json.dumps({p: get(p) for p in paths}))
"#;

#[test]
fn the_metadata_endpoint_answers_each_path_of_the_service_account() {
    let (env, _oidc) = setup();
    let got = exec_python(&env, &["--gcp-metadata", "gcp"], PATHS);
    let account = json!({"email": "api", "scopes": ["api:read"], "aliases": ["default"]});
    assert_eq!(
        got,
        json!({
            "": [200, "default/\napi/\n"],
            "default/": [200, "aliases\nemail\nscopes\ntoken\n"],
            "default/?recursive=true": [200, account],
            "default/?recursive=false": [200, "aliases\nemail\nscopes\ntoken\n"],
            "default/email": [200, "api"],
            "default/scopes": [200, "api:read\n"],
            "default/aliases": [200, "default\n"],
            "api/email": [200, "api"],
            "other/email": [404, ""],
            "default/identity": [404, ""],
        })
    );
}

/// Connects as uid 65534 to both endpoints, with every header right (the
/// secret too): the connection is closed unanswered.
const NOBODY: &str = r#"
import json, os, socket, sys
def probe(host, port, request):
    s = socket.create_connection((host, port), timeout=10)
    s.sendall(request.encode())
    try:
        data = s.recv(65536)
    except OSError as e:
        data = b""
    return data.decode(errors="replace")
gh, gp = os.environ["GCE_METADATA_HOST"].split(":")
az = os.environ["IDENTITY_ENDPOINT"].split("/")[2]
ah, ap = az.split(":")
print(json.dumps({
    "gce": probe(gh, int(gp), "GET /computeMetadata/v1/instance/service-accounts/default/token HTTP/1.1\r\nHost: x\r\nMetadata-Flavor: Google\r\n\r\n"),
    "azure": probe(ah, int(ap), "GET /msi/token?api-version=2019-08-01&resource=https://api.example HTTP/1.1\r\nHost: x\r\nX-IDENTITY-HEADER: " + os.environ["IDENTITY_HEADER"] + "\r\n\r\n"),
}))
"#;

#[test]
fn another_user_cannot_get_a_token_from_either_endpoint() {
    let (env, _oidc) = setup();
    let setpriv = require_tool("setpriv", "util-linux");
    let python = std::path::Path::new("/usr/bin/python3");
    assert!(
        python.is_file(),
        "this test needs /usr/bin/python3: run `apt-get install -y python3`"
    );
    let out = env.run(&[
        "exec",
        "--gcp-metadata",
        "gcp",
        "--azure-identity",
        "az",
        "--",
        setpriv.to_str().unwrap(),
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--",
        python.to_str().unwrap(),
        "-c",
        NOBODY,
    ]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got, json!({"gce": "", "azure": ""}), "answered another uid");
    env.audit_text_until(&["--op", "connect"], "both refusals audited", |t| {
        t.lines()
            .filter(|l| l.contains("\"uid\":65534") && l.contains("denied"))
            .count()
            >= 2
    });
}

/// `jwtagent exec --gcp-metadata gcp -- sh -c SCRIPT`.
fn exec_sh(env: &TestEnv, script: &str) -> std::process::Output {
    env.run(&[
        "exec",
        "--gcp-metadata",
        "gcp",
        "--",
        "/bin/sh",
        "-c",
        script,
    ])
}

#[test]
fn the_endpoint_ends_with_the_command() {
    let (env, _oidc) = setup();
    let out = exec_sh(&env, "echo $GCE_METADATA_HOST");
    assert!(out.status.success(), "{}", stderr_of(&out));
    let host = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(host.starts_with("127.0.0.1:"), "{host}");
    wait_until("the endpoint closes once its command has exited", || {
        std::net::TcpStream::connect(&host).is_err()
    });
}

fn jwtagent_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Locked, the agent hands out nothing through an endpoint, and fetches
/// nothing for it either (a lock drops every token; none may come back
/// before the unlock).
#[test]
fn a_locked_agent_neither_serves_nor_fetches_through_an_endpoint() {
    let (env, oidc) = setup();
    let passphrase = env.path("passphrase");
    std::fs::write(&passphrase, "lock-passphrase\n").unwrap();
    let jwtagent = std::path::PathBuf::from(bin());
    let script = format!(
        r#"{} lock --passphrase-stdin < {} >&2 && exec {} -c '{}'"#,
        jwtagent.display(),
        passphrase.display(),
        python().display(),
        r#"
import json, os, urllib.request, urllib.error
url = "http://" + os.environ["GCE_METADATA_HOST"] + "/computeMetadata/v1/instance/service-accounts/default/token"
try:
    status = urllib.request.urlopen(urllib.request.Request(url, headers={"Metadata-Flavor": "Google"}), timeout=10).status
except urllib.error.HTTPError as e:
    status = e.code
print(json.dumps({"status": status}))
"#
    );
    let before = oidc.grants("api").len();
    let out = exec_sh(&env, &script);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["status"], 503, "{got}");
    assert_eq!(
        oidc.grants("api").len(),
        before,
        "a token was fetched while locked"
    );
    env.audit_text_until(&["--op", "gcp_metadata"], "the refusal audited", |t| {
        t.contains("\"locked\"")
    });
}
