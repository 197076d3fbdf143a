//! Test harness: private temp directories, the real binary, raw protocol
//! connections, and polling with deadlines (never fixed sleeps).

#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_jwtagent")
}

/// Raises this test process's descriptor limit to the hard limit (at most
/// 65,536), once: the tests run side by side in one process, and some hold a
/// thousand connections or two hundred children's pipes while another's
/// server must still accept.
pub fn raise_fd_limit() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
        let limit = getrlimit(Resource::Nofile);
        let want = limit.maximum.map_or(65_536, |m| m.min(65_536));
        if limit.current.is_some_and(|c| c < want) {
            let raised = Rlimit {
                current: Some(want),
                maximum: limit.maximum,
            };
            if let Err(e) = setrlimit(Resource::Nofile, raised) {
                eprintln!("could not raise the descriptor limit to {want}: {e}");
            }
        }
    });
}

/// Generous: CI machines are slow, and a passing test never waits this long.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Writes `text` to `path` as a program to run (mode 0755): an askpass, a
/// browser, a hook.
pub fn write_program(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Polls `cond` until it holds, panicking with `what` at the deadline.
pub fn wait_until(what: &str, cond: impl FnMut() -> bool) {
    wait_until_within(DEADLINE, what, cond);
}

/// [`wait_until`] with a deadline of the caller's choosing, for conditions
/// the code under test takes longer than [`DEADLINE`] to reach.
pub fn wait_until_within(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A temp directory with mode 0700 (tempfile's follow the umask).
pub fn private_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("jwtagent-test.")
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()
        .expect("create temp dir")
}

/// The variables a proxy is configured with, as curl reads them.
pub const PROXY_VARS: [&str; 8] = [
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
];

/// One isolated user environment: its own runtime dir (so its own default
/// socket), home, config and state directories. Agents it started are killed
/// when it is dropped.
pub struct TestEnv {
    pub dir: tempfile::TempDir,
    /// Keyring service the agent stores secrets under: unique per test, so that
    /// tests sharing the user's kernel keyring never see each other's entries.
    pub keyring_service: String,
    /// A private D-Bus session bus (with a Secret Service on it), if started.
    pub bus: Option<String>,
}

static ENV_COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

impl TestEnv {
    pub fn new() -> TestEnv {
        raise_fd_limit();
        let n = ENV_COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let env = TestEnv {
            dir: private_dir(),
            keyring_service: format!("jwtagent-test-{}-{n}", std::process::id()),
            bus: None,
        };
        for sub in ["run", "home", "config", "state"] {
            std::fs::create_dir(env.dir.path().join(sub)).unwrap();
            std::fs::set_permissions(
                env.dir.path().join(sub),
                std::fs::Permissions::from_mode(0o700),
            )
            .unwrap();
        }
        env
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `$XDG_RUNTIME_DIR/jwtagent/agent.sock` of this environment.
    pub fn default_socket(&self) -> PathBuf {
        self.path("run/jwtagent/agent.sock")
    }

    /// The detached agent's log file.
    pub fn log_file(&self) -> PathBuf {
        self.path("state/jwtagent/agent.log")
    }

    /// `jwtagent ARGS` with this environment and no inherited JWTAGENT_* variables.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = self.command(bin());
        cmd.args(args);
        cmd
    }

    /// Any `program` with this environment (git, a shell, systemd tools, a
    /// copy of the CLI), so that the jwtagent it runs finds this agent.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.env_remove("JWTAGENT_SOCK")
            .env_remove("JWTAGENT_PID")
            .env_remove("JWTAGENT_NO_AUTOSTART")
            .env_remove("JWTAGENT_CONFIG")
            .env("JWTAGENT_KEYRING_SERVICE", &self.keyring_service)
            .env("JWTAGENT_LOG", "debug")
            // The platform trust store (rustls-native-certs reads
            // SSL_CERT_FILE on Linux) holds the test CA only; no proxy from
            // the machine's environment.
            .env("SSL_CERT_FILE", &crate::pki::pki().ca)
            .env_remove("SSL_CERT_DIR")
            .env("XDG_RUNTIME_DIR", self.path("run"))
            .env("HOME", self.path("home"))
            .env("XDG_CONFIG_HOME", self.path("config"))
            .env("XDG_STATE_HOME", self.path("state"))
            .env("SHELL", "/bin/sh")
            .stdin(Stdio::null());
        for var in PROXY_VARS {
            cmd.env_remove(var);
        }
        // No browser is opened unless a test says which.
        for var in ["BROWSER", "DISPLAY", "WAYLAND_DISPLAY"] {
            cmd.env_remove(var);
        }
        // Without a Secret Service, `auto` would choose the file store,
        // sealed until a passphrase is chosen: the tests that are not about
        // the store use the kernel keyring, which needs none.
        match &self.bus {
            Some(address) => cmd
                .env("DBUS_SESSION_BUS_ADDRESS", address)
                .env_remove("JWTAGENT_STORE"),
            None => cmd
                .env_remove("DBUS_SESSION_BUS_ADDRESS")
                .env("JWTAGENT_STORE", "keyutils"),
        };
        cmd
    }

    /// `jwtagent add NAME --token-url URL` for client `c` with `--auth auth`
    /// and `extra` options, unverified (`--no-verify`): the tests that use
    /// it are about what happens at token time.
    pub fn add_cmd(&self, name: &str, url: &str, auth: &str, extra: &[&str]) -> Command {
        let mut cmd = self.cmd(&[
            "add",
            name,
            "--no-verify",
            "--token-url",
            url,
            "--client-id",
            "c",
            "--auth",
            auth,
        ]);
        cmd.args(extra);
        cmd
    }

    /// `jwtagent add NAME` discovering from `issuer`, for `client` with
    /// `--auth auth`, and `extra` options, unverified (as `add_cmd`).
    pub fn add_issuer_cmd(
        &self,
        name: &str,
        issuer: &str,
        client: &str,
        auth: &str,
        extra: &[&str],
    ) -> Command {
        let mut cmd = self.cmd(&[
            "add",
            name,
            "--no-verify",
            "--issuer",
            issuer,
            "--client-id",
            client,
            "--auth",
            auth,
        ]);
        cmd.args(extra);
        cmd
    }

    /// `sh -eu -c SCRIPT` with this environment and the jwtagent under test
    /// first in PATH, as a user's shell runs it.
    pub fn shell(&self, script: &str) -> Command {
        let bin_dir = Path::new(bin()).parent().unwrap();
        let path = format!(
            "{}:{}",
            bin_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut cmd = self.command("sh");
        cmd.args(["-eu", "-c", script]).env("PATH", path);
        cmd
    }

    /// Adds profile `name` with `--auth none` for the token endpoint at `url`
    /// (plus `extra` options), asserting that it works.
    pub fn add_open_profile(&self, name: &str, url: &str, extra: &[&str]) {
        let out = self.add_cmd(name, url, "none", extra).output().unwrap();
        assert!(
            out.status.success(),
            "jwtagent add {name} failed ({}):\n{}",
            out.status,
            stderr_of(&out)
        );
    }

    /// Profile `name`'s entry in `jwtagent status --json`.
    /// One profile's part of the agent's `status`, asked over the socket (a
    /// poll that spawns no process).
    pub fn profile_status(&self, name: &str) -> Value {
        let status = agent_call(&self.default_socket(), r#"{"id":0,"op":"status"}"#)
            .unwrap_or_else(|| panic!("no agent answers on {}", self.default_socket().display()));
        status["profiles"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .cloned()
            .unwrap()
    }

    /// The config file of this environment.
    pub fn config_file(&self) -> PathBuf {
        self.path("config/jwtagent/profiles.toml")
    }

    /// Starts a detached agent with no JWTAGENT_STORE (which these tests
    /// set to keyutils): its store is the config's, else `auto`'s choice.
    pub fn start_agent_own_store(&self) {
        let out = self
            .cmd(&["agent"])
            .env_remove("JWTAGENT_STORE")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr_of(&out));
    }

    /// Runs with `input` on stdin.
    pub fn run_with_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        output_with_stdin(&mut self.cmd(args), input)
    }

    /// Runs `jwtagent ARGS` until it fails (`what` names the wait), and
    /// answers the stderr of the run that failed.
    pub fn run_until_refused(&self, what: &str, args: &[&str]) -> String {
        let mut refused = None;
        wait_until(what, || {
            let out = self.run(args);
            let failed = !out.status.success();
            refused = Some(out);
            failed
        });
        stderr_of(refused.as_ref().unwrap())
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run jwtagent")
    }

    /// [`TestEnv::run`] for a command that must end by itself, where a bug
    /// would leave it waiting (a sign-in that should have been refused
    /// waits ten minutes for a browser): past [`DEADLINE`] it is killed and
    /// the test fails, instead of holding up the suite.
    pub fn run_ending(&self, args: &[&str]) -> Output {
        let child = self
            .cmd(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run jwtagent");
        let pid = child.id() as libc::pid_t;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(child.wait_with_output()));
        match rx.recv_timeout(DEADLINE) {
            Ok(out) => out.expect("run jwtagent"),
            Err(_) => {
                // SAFETY: kill(2) of our own child, which its waiter had
                // not reaped at the deadline.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                let out = rx.recv().unwrap().expect("run jwtagent");
                panic!(
                    "jwtagent {args:?} still ran after {DEADLINE:?}: {}",
                    stderr_of(&out)
                );
            }
        }
    }

    /// The records of `jwtagent audit --json`, once `cond` holds of them: the
    /// agent writes its audit log off the request path, just after it answers.
    pub fn audit_until(&self, what: &str, cond: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let mut records = Vec::new();
        wait_until(what, || {
            records = self
                .ok(&["audit", "--json"])
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            cond(&records)
        });
        records
    }

    /// `jwtagent audit --json ARGS...` once its output satisfies `cond`
    /// (the agent writes records off the request path, a few milliseconds
    /// after the answer).
    pub fn audit_text_until(
        &self,
        args: &[&str],
        what: &str,
        cond: impl Fn(&str) -> bool,
    ) -> String {
        let args = [&["audit", "--json"], args].concat();
        let mut text = String::new();
        wait_until(what, || {
            text = self.ok(&args);
            cond(&text)
        });
        text
    }

    /// Runs and asserts success, returning stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "jwtagent {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Starts `jwtagent agent -D --socket SOCKET` with stderr captured in a file,
    /// and waits until the socket answers.
    pub fn foreground_agent(&self, socket: &Path) -> Foreground {
        let log = self.dir.path().join(format!(
            "fg-{}.log",
            socket.file_name().unwrap().to_string_lossy()
        ));
        let child = self
            .cmd(&["agent", "-D", "--socket", socket.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn agent");
        let agent = Foreground {
            child,
            socket: socket.to_path_buf(),
            log,
        };
        wait_until("the foreground agent answers", || {
            hello(&agent.socket).is_some()
        });
        agent
    }
}

/// The ids (hex, as `/proc/keys` lists them) of the kernel keys of keyring
/// service `service` that this user can see: what a test's agent stored.
pub fn kernel_keys_of(service: &str) -> Vec<String> {
    let suffix = format!("@{service}:");
    std::fs::read_to_string("/proc/keys")
        .unwrap_or_default()
        .lines()
        .filter(|line| line.contains(&suffix))
        .filter_map(|line| line.split_whitespace().next().map(str::to_string))
        .collect()
}

/// Unlinks the kernel keys of `service` from the persistent keyring, where
/// the agent put them (they would outlive the test by days otherwise).
fn remove_kernel_keys(service: &str) {
    let ids = kernel_keys_of(service);
    if ids.is_empty() {
        return;
    }
    let mut script = String::from("p=$(keyctl get_persistent @s) || exit 1\n");
    for id in &ids {
        script.push_str(&format!("keyctl unlink 0x{id} \"$p\" >/dev/null 2>&1\n"));
    }
    let _ = Command::new("keyctl")
        .args(["session", "-", "sh", "-c", &script])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        // Kill every agent that holds a lock file anywhere in this environment
        // (sockets may live in subdirectories, like the shell tests' awkward path).
        let mut dirs = vec![self.dir.path().to_path_buf()];
        while let Some(dir) = dirs.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let Ok(kind) = entry.file_type() else {
                    continue;
                };
                if kind.is_dir() {
                    dirs.push(path);
                    continue;
                }
                if !path.to_string_lossy().ends_with(".sock.lock") {
                    continue;
                }
                // Only a lock still held names a live agent; the pid in a
                // released one may belong to anyone by now.
                let held = std::fs::File::open(&path)
                    .is_ok_and(|f| matches!(f.try_lock(), Err(std::fs::TryLockError::WouldBlock)));
                if !held {
                    continue;
                }
                if let Some(pid) = std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|s| s.trim().parse::<i32>().ok())
                    .and_then(rustix::process::Pid::from_raw)
                {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
            }
        }
        remove_kernel_keys(&self.keyring_service);
    }
}

/// An agent in the foreground, killed on drop.
pub struct Foreground {
    pub child: Child,
    pub socket: PathBuf,
    pub log: PathBuf,
}

impl Foreground {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the process to exit and returns its status.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let mut status = None;
        wait_until("the agent exits", || {
            status = self.child.try_wait().unwrap();
            status.is_some()
        });
        status.unwrap()
    }
}

impl Drop for Foreground {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A raw protocol connection: lines in, JSON values out.
pub struct Conn {
    pub reader: BufReader<UnixStream>,
    pub writer: UnixStream,
}

impl Conn {
    pub fn open(socket: &Path) -> Conn {
        let stream = UnixStream::connect(socket).expect("connect to agent");
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        Conn {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        }
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("write to agent");
    }

    /// Reads one response line; `None` on EOF.
    pub fn recv(&mut self) -> Option<Value> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => None,
            Ok(_) => Some(serde_json::from_str(&line).expect("response is JSON")),
            Err(e) => panic!("reading response: {e}"),
        }
    }

    pub fn request(&mut self, line: &str) -> Value {
        self.send_raw(line.as_bytes());
        self.send_raw(b"\n");
        self.recv().expect("a response")
    }
}

/// `hello` over a fresh connection; `None` when nothing answers.
pub fn hello(socket: &Path) -> Option<Value> {
    agent_call(socket, r#"{"id":0,"op":"hello"}"#)
}

/// One request line to the agent on `socket`, and its answer.
pub fn agent_call(socket: &Path, request: &str) -> Option<Value> {
    let stream = UnixStream::connect(socket).ok()?;
    stream.set_read_timeout(Some(DEADLINE)).ok()?;
    let mut conn = Conn {
        reader: BufReader::new(stream.try_clone().ok()?),
        writer: stream,
    };
    conn.writer
        .write_all(format!("{request}\n").as_bytes())
        .ok()?;
    let mut line = String::new();
    match conn.reader.read_line(&mut line) {
        // Reset by an agent that died after it accepted (a crash being
        // waited for): nothing answered.
        Ok(0) | Err(_) => None,
        Ok(_) => Some(serde_json::from_str(&line).expect("response is JSON")),
    }
}

/// Extracts `JWTAGENT_PID` from an sh `env` script.
pub fn pid_from_env_script(script: &str) -> u32 {
    script
        .split(';')
        .find_map(|part| part.trim().strip_prefix("JWTAGENT_PID="))
        .unwrap_or_else(|| panic!("no JWTAGENT_PID in {script:?}"))
        .parse()
        .unwrap()
}

/// Whether `pid` runs (a zombie does not).
pub fn process_alive(pid: u32) -> bool {
    jwtagent::process::is_running(pid)
}

/// Kills the agent `pid` as `kill -9` does and waits until it is gone: its
/// main thread a zombie and nothing accepting on `socket` (the other threads
/// may still hold the listener open for a moment after the main one died).
pub fn kill_9(pid: u32, socket: &Path) {
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid as i32).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    wait_until("the killed agent is gone", || {
        !process_alive(pid) && UnixStream::connect(socket).is_err()
    });
}

/// Fails with install instructions when an external tool the test needs is missing.
pub fn require_tool(tool: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(tool);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "this test needs `{tool}`, which is not installed: run `apt-get install -y {package}` (or scripts/install-test-deps)"
    );
}

/// Runs `cmd` to the end with `input` on its stdin, capturing its output.
pub fn output_with_stdin(cmd: &mut Command, input: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the command");
    // The command may refuse before reading its input: a broken pipe here
    // is part of what is being tested, not a harness failure.
    let _ = child.stdin.take().unwrap().write_all(input);
    child.wait_with_output().unwrap()
}

/// Asserts that no needle (what, text) occurs in any haystack (where, bytes).
pub fn assert_absent(needles: &[(String, String)], haystacks: &[(String, Vec<u8>)]) {
    assert!(!needles.is_empty());
    for (where_, hay) in haystacks {
        let hay = String::from_utf8_lossy(hay);
        for (what, needle) in needles {
            assert!(!hay.contains(needle.as_str()), "{what} found in {where_}");
        }
    }
}

pub fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A private D-Bus session bus with GNOME Keyring's Secret Service on it, in the
/// test's own HOME: a real Secret Service that touches nothing of the user's.
pub struct SecretService {
    dbus: Child,
    keyring: Child,
    pub address: String,
}

/// A private D-Bus bus of `kind` (`session`, `system`) on a socket of the
/// test's, where anyone may own any name and nothing is activated; stopped
/// when dropped.
pub struct PrivateBus {
    daemon: Child,
    pub address: String,
}

/// Whether a Unix socket accepts connections: its file appears at
/// `bind`, before the daemon listens, when a connection is refused.
fn accepts(socket: &Path) -> bool {
    UnixStream::connect(socket).is_ok()
}

impl PrivateBus {
    pub fn start(env: &TestEnv, name: &str, kind: &str) -> PrivateBus {
        let dbus_daemon = require_tool("dbus-daemon", "dbus");
        let socket = env.path(&format!("{name}.sock"));
        let config = env.path(&format!("{name}.conf"));
        std::fs::write(
            &config,
            format!(
                "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN\" \
                 \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n\
                 <busconfig><type>{kind}</type><listen>unix:path={}</listen>\
                 <auth>EXTERNAL</auth><policy context=\"default\"><allow send_destination=\"*\"/>\
                 <allow own=\"*\"/><allow receive_sender=\"*\"/></policy></busconfig>\n",
                socket.display()
            ),
        )
        .unwrap();
        let daemon = Command::new(dbus_daemon)
            .arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--nopidfile"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_until("the private bus listens", || accepts(&socket));
        PrivateBus {
            daemon,
            address: format!("unix:path={}", socket.display()),
        }
    }
}

impl Drop for PrivateBus {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

impl SecretService {
    /// Starts the bus and the keyring daemon. `unlock`: create and unlock the
    /// `login` keyring with a password, as a desktop login would; without it the
    /// keyring stays locked and every write needs a prompt nobody answers.
    pub fn start(env: &TestEnv, unlock: bool) -> SecretService {
        let dbus_daemon = require_tool("dbus-daemon", "dbus");
        let keyring_daemon = require_tool("gnome-keyring-daemon", "gnome-keyring");
        require_tool("dbus-send", "dbus");
        let socket = env.path("bus");
        let address = format!("unix:path={}", socket.display());
        let dbus = Command::new(dbus_daemon)
            .args(["--session", "--nofork", "--nopidfile"])
            .arg(format!("--address={address}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dbus-daemon");
        wait_until("the session bus listens", || accepts(&socket));
        let mut cmd = Command::new(keyring_daemon);
        cmd.args(["--foreground", "--components=secrets"])
            .env("HOME", env.path("home"))
            .env("XDG_RUNTIME_DIR", env.path("run"))
            .env("XDG_DATA_HOME", env.path("home/.local/share"))
            .env("DBUS_SESSION_BUS_ADDRESS", &address)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if unlock {
            cmd.arg("--unlock");
        }
        let mut keyring = cmd.spawn().expect("start gnome-keyring-daemon");
        let mut stdin = keyring.stdin.take().unwrap();
        if unlock {
            stdin.write_all(b"test-login-password").unwrap();
        }
        drop(stdin);
        let service = SecretService {
            dbus,
            keyring,
            address,
        };
        wait_until("the Secret Service is on the bus", || {
            service.has_secret_service()
        });
        service
    }

    /// Stops (`SIGSTOP`) or continues the keyring daemon: a Secret Service
    /// that does not answer, as a busy or hung one would not.
    pub fn pause(&self, paused: bool) {
        let pid = rustix::process::Pid::from_raw(self.keyring.id() as i32).unwrap();
        let signal = if paused {
            rustix::process::Signal::STOP
        } else {
            rustix::process::Signal::CONT
        };
        rustix::process::kill_process(pid, signal).unwrap();
    }

    fn has_secret_service(&self) -> bool {
        Command::new("dbus-send")
            .args([
                "--session",
                "--print-reply",
                "--dest=org.freedesktop.DBus",
                "/",
                "org.freedesktop.DBus.NameHasOwner",
                "string:org.freedesktop.secrets",
            ])
            .env("DBUS_SESSION_BUS_ADDRESS", &self.address)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).contains("boolean true"))
            .unwrap_or(false)
    }

    /// `secret-tool lookup ATTR VALUE ...` on this bus: the stored secret, if any.
    pub fn lookup(&self, attributes: &[&str]) -> Option<String> {
        let tool = require_tool("secret-tool", "libsecret-tools");
        let out = Command::new(tool)
            .arg("lookup")
            .args(attributes)
            .env("DBUS_SESSION_BUS_ADDRESS", &self.address)
            .output()
            .unwrap();
        if out.status.success() {
            return Some(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        // Not found is a silent exit 1; anything said on stderr is a failed
        // lookup, which must not pass for "nothing was stored".
        assert!(
            out.stderr.is_empty(),
            "secret-tool lookup failed: {}",
            stderr_of(&out)
        );
        None
    }
}

impl Drop for SecretService {
    fn drop(&mut self) {
        let _ = self.keyring.kill();
        let _ = self.keyring.wait();
        let _ = self.dbus.kill();
        let _ = self.dbus.wait();
    }
}

/// The secret of a keyutils entry, read with `keyctl` the way a user would: in a
/// fresh session keyring with the persistent keyring linked in.
pub fn keyutils_lookup(service: &str, account: &str) -> Option<Vec<u8>> {
    let keyctl = require_tool("keyctl", "keyutils");
    let script = format!(
        "keyctl get_persistent @s >/dev/null && id=$(keyctl search @s user 'keyring:{account}@{service}') && keyctl pipe \"$id\""
    );
    let out = Command::new(keyctl)
        .args(["session", "-", "sh", "-c", &script])
        .output()
        .unwrap();
    if out.status.success() {
        return Some(out.stdout);
    }
    // Only ENOKEY from the search means absent, or EKEYREVOKED: a deleted
    // key is revoked and found as such until the kernel's garbage collector
    // unlinks it. Any other failure (no persistent keyring, keyctl missing a
    // permission) must not pass for "nothing was stored".
    let err = stderr_of(&out);
    assert!(
        err.contains("keyctl_search: Required key not available")
            || err.contains("keyctl_search: Key has been revoked"),
        "keyctl lookup of {account} failed: {err}"
    );
    None
}

/// Generates a private key with openssl: `kind` is `rsa`, `rsa-pkcs1`, `p256`,
/// `p384`, `p521`, `ed25519`, `sec1` or `encrypted`.
pub fn gen_key(env: &TestEnv, kind: &str) -> PathBuf {
    let openssl = require_tool("openssl", "openssl");
    let path = env.path(&format!("{kind}.pem"));
    let p = path.to_str().unwrap().to_string();
    let script = match kind {
        "rsa" => format!("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out '{p}'"),
        "rsa-pkcs1" => format!(
            "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 | openssl rsa -traditional -out '{p}'"
        ),
        "p256" => {
            format!("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out '{p}'")
        }
        "p384" => {
            format!("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out '{p}'")
        }
        "p521" => {
            format!("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-521 -out '{p}'")
        }
        "ed25519" => format!("openssl genpkey -algorithm ed25519 -out '{p}'"),
        "sec1" => format!("openssl ecparam -name prime256v1 -genkey -noout -out '{p}'"),
        "encrypted" => {
            format!("openssl genpkey -algorithm ed25519 -aes-128-cbc -pass pass:pw -out '{p}'")
        }
        other => panic!("unknown key kind {other}"),
    };
    let _ = openssl;
    let out = Command::new("sh").arg("-c").arg(&script).output().unwrap();
    assert!(out.status.success(), "openssl failed: {}", stderr_of(&out));
    path
}

/// The directory of the test OpenID Provider (tests/oidc).
/// Runs a node script of tests/oidc with `input` on stdin (trusting the
/// test CA: the scripts reach the provider over HTTPS).
pub fn node(script: &str, args: &[&str], input: &str) -> Output {
    let node = require_tool("node", "nodejs");
    output_with_stdin(
        Command::new(node)
            .arg(oidc_dir().join(script))
            .args(args)
            .env("NODE_EXTRA_CA_CERTS", &crate::pki::pki().ca),
        input.as_bytes(),
    )
}

pub fn oidc_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/oidc")
}

/// A real OpenID Provider (npm `oidc-provider`, pinned in tests/oidc) on a free
/// loopback port, with the clients `config` lists. Stopped on drop.
pub struct Oidc {
    child: Child,
    pub issuer: String,
    events: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
    /// The server's stdin: `sync N` makes it log `{"event":"sync","n":N}`
    /// after everything it logged before.
    control: std::sync::Mutex<(std::process::ChildStdin, u64)>,
}

impl Oidc {
    /// The provider over HTTPS, with a certificate for 127.0.0.1 from the
    /// test CA (which `TestEnv` commands trust through `SSL_CERT_FILE`).
    pub fn start(env: &TestEnv, config: &Value) -> Oidc {
        Oidc::start_with_cert(env, config, &crate::pki::pki().server)
    }

    /// The provider over HTTPS with `cert`.
    pub fn start_with_cert(env: &TestEnv, config: &Value, cert: &crate::pki::Leaf) -> Oidc {
        let mut config = config.clone();
        config["tls"] = serde_json::json!({"cert": cert.cert, "key": cert.key});
        Oidc::start_plain(env, &config)
    }

    /// The provider as `config` says: plain HTTP unless it names a `tls`
    /// certificate (for tests where TLS is beside the point).
    pub fn start_plain(env: &TestEnv, config: &Value) -> Oidc {
        Oidc::start_script(env, "server.mjs", config)
    }

    /// The node server `script` of tests/oidc with `config` (server.mjs, or
    /// github-standin.mjs, the stand-in for GitHub's one endpoint).
    pub fn start_script(env: &TestEnv, script: &str, config: &Value) -> Oidc {
        let node = require_tool("node", "nodejs");
        let dir = oidc_dir();
        assert!(
            dir.join("node_modules/oidc-provider").is_dir(),
            "the test OpenID Provider is not installed: run `npm ci --prefix tests/oidc` (scripts/test does)"
        );
        let config_path = env.path(&format!("{script}.json"));
        std::fs::write(&config_path, config.to_string()).unwrap();
        let mut child = Command::new(node)
            .arg(dir.join(script))
            .arg(&config_path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start node");
        let stdout = child.stdout.take().unwrap();
        let control = std::sync::Mutex::new((child.stdin.take().unwrap(), 0));
        let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let sink = events.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(issuer) = line.strip_prefix("READY ") {
                    let _ = ready_tx.send(issuer.to_string());
                } else if let Ok(event) = serde_json::from_str::<Value>(&line) {
                    sink.lock().unwrap().push(event);
                }
            }
        });
        let issuer = match ready_rx.recv_timeout(DEADLINE) {
            Ok(issuer) => issuer,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "node tests/oidc/{script} did not start (run it with {} to see why)",
                    config_path.display()
                );
            }
        };
        Oidc {
            child,
            issuer,
            events,
            control,
        }
    }

    pub fn token_endpoint(&self) -> String {
        format!("{}/token", self.issuer)
    }

    /// Everything the provider has logged so far: it logs a request before
    /// answering it, so every request answered before this call is in. (A
    /// sync marker makes sure the reader thread has caught up.)
    pub fn events(&self) -> Vec<Value> {
        let n = {
            let mut control = self.control.lock().unwrap();
            control.1 += 1;
            let n = control.1;
            writeln!(control.0, "sync {n}").expect("write to the server's stdin");
            n
        };
        let synced = |e: &Value| e["event"] == "sync" && e["n"] == n;
        wait_until("the server's log is read up to now", || {
            self.events.lock().unwrap().iter().any(synced)
        });
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e["event"] != "sync")
            .cloned()
            .collect()
    }

    /// The events of one kind (`token`, `error`, `jwt-bearer`, ...).
    pub fn events_of(&self, kind: &str) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| e["event"] == kind)
            .collect()
    }

    /// Token events (successful grants) for `client_id`.
    pub fn grants(&self, client_id: &str) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| e["event"] == "token" && e["client_id"] == client_id)
            .collect()
    }

    /// Waits for the provider's record of the `n`th event matching `pred`.
    pub fn wait_event(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let mut found = None;
        wait_until(what, || {
            found = self.events().into_iter().rfind(|e| pred(e));
            found.is_some()
        });
        found.unwrap()
    }
}

impl Drop for Oidc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The real provider with one public client, `c` (auth none), for the tests
/// where nothing is faulted: `add_open_profile` profiles get tokens from it.
pub fn open_provider(env: &TestEnv, ttl: u64) -> Oidc {
    Oidc::start(
        env,
        &serde_json::json!({"ttl": ttl, "clients": [{"client_id": "c", "auth": "none"}]}),
    )
}

/// The decoded payload (claims) of a JWT, unverified.
pub fn jwt_claims(jwt: &str) -> Value {
    jwt_part(jwt, 1)
}

/// The decoded header of a JWT, unverified.
pub fn jwt_header(jwt: &str) -> Value {
    jwt_part(jwt, 0)
}

fn jwt_part(jwt: &str, index: usize) -> Value {
    let part = jwt.split('.').nth(index).expect("a JWT");
    let bytes = base64url_decode(part);
    serde_json::from_slice(&bytes).expect("JWT part is JSON")
}

fn base64url_decode(text: &str) -> Vec<u8> {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = Vec::new();
    let (mut buf, mut bits) = (0u32, 0u32);
    for c in text.bytes().filter(|&c| c != b'=') {
        let v = alphabet.iter().position(|&a| a == c).expect("base64url") as u32;
        buf = (buf << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
            buf &= (1 << bits) - 1;
        }
    }
    out
}

/// The public key (SPKI PEM) of a private key file, via openssl.
pub fn public_pem(private: &Path) -> String {
    require_tool("openssl", "openssl");
    let out = Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(private)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    String::from_utf8(out.stdout).unwrap()
}

/// What the fault-injection token endpoint does with the next request.
#[derive(Debug, Clone)]
pub enum Fault {
    /// A good token response with this `expires_in`.
    Ok { lifetime: u64 },
    /// An error status, optionally with Retry-After, and an RFC 6749 body.
    Status {
        code: u16,
        retry_after: Option<String>,
    },
    /// 200 with a body that is not JSON.
    Garbage,
    /// The connection is closed without an answer.
    Reset,
    /// The request is read and never answered (until the mode changes).
    Stall,
    /// Like `Ok`, with a refresh token; a `refresh_token` grant is refused with
    /// `invalid_grant`.
    RefreshRefused { lifetime: u64 },
    /// A hostile answer: this status, extra header lines, and this JSON body.
    Raw {
        code: u16,
        headers: String,
        body: String,
    },
    /// The request is held until the test changes the mode, then answered
    /// with a good token of this lifetime.
    Held { lifetime: u64 },
    /// A server that reflects what it got (form body and Authorization
    /// header) in an error page with this status.
    Echo { code: u16 },
}

/// A token endpoint on a real loopback socket whose behaviour the test sets:
/// for the faults a real authorization server cannot produce on demand.
pub struct FaultServer {
    pub port: u16,
    /// The current fault, and a signal for threads waiting on it to change.
    mode: std::sync::Arc<(std::sync::Mutex<Fault>, std::sync::Condvar)>,
    requests: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    bodies: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    /// What the first request gets, when it differs from the rest.
    first: std::sync::Arc<std::sync::Mutex<Option<Fault>>>,
}

impl FaultServer {
    /// Answers the first request with `first` and every later one with
    /// `then`: a fault that is in place before any refresh can happen.
    pub fn start_then(first: Fault, then: Fault) -> FaultServer {
        let server = FaultServer::start(then);
        *server.first.lock().unwrap() = Some(first);
        server
    }

    pub fn start(initial: Fault) -> FaultServer {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = FaultServer {
            port,
            mode: std::sync::Arc::new((std::sync::Mutex::new(initial), std::sync::Condvar::new())),
            requests: Default::default(),
            stop: Default::default(),
            bodies: Default::default(),
            first: Default::default(),
        };
        let (mode, requests, stop) = (
            server.mode.clone(),
            server.requests.clone(),
            server.stop.clone(),
        );
        let bodies = server.bodies.clone();
        let first = server.first.clone();
        std::thread::spawn(move || {
            // Blocking accept: Drop wakes it with a connection of its own.
            while !stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok(_) if stop.load(Ordering::SeqCst) => return,
                    Ok((stream, _)) => {
                        let (mode, requests, stop) = (mode.clone(), requests.clone(), stop.clone());
                        let bodies = bodies.clone();
                        let first = first.clone();
                        std::thread::spawn(move || {
                            serve_fault(stream, &mode, &requests, &stop, &bodies, &first)
                        });
                    }
                    // A failed accept (out of descriptors while another
                    // test holds hundreds) leaves the connection queued: say
                    // so, and take it once the descriptors are back, rather
                    // than drop the listener and reset what is queued.
                    Err(e) => {
                        eprintln!("fault server on port {port}: accept failed: {e}");
                        std::thread::sleep(std::time::Duration::from_millis(10));
                    }
                }
            }
        });
        server
    }

    pub fn token_url(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }

    pub fn set(&self, fault: Fault) {
        *self.mode.0.lock().unwrap() = fault;
        self.mode.1.notify_all();
    }

    /// The form bodies of the requests received so far.
    pub fn bodies(&self) -> Vec<String> {
        self.bodies.lock().unwrap().clone()
    }

    /// Token requests received so far.
    pub fn requests(&self) -> usize {
        self.requests.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.mode.1.notify_all();
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve_fault(
    mut stream: std::net::TcpStream,
    mode: &(std::sync::Mutex<Fault>, std::sync::Condvar),
    requests: &std::sync::atomic::AtomicUsize,
    stop: &std::sync::atomic::AtomicBool,
    bodies: &std::sync::Mutex<Vec<String>>,
    first: &std::sync::Mutex<Option<Fault>>,
) {
    use std::io::Read;
    use std::sync::atomic::Ordering;
    stream.set_nonblocking(false).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    // Read the request head and its body.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    // A request cut short is reported: an early return closes the connection
    // without an answer, which the agent sees as a server fault.
    let cut_short = |read: std::io::Result<usize>| {
        if !stop.load(Ordering::SeqCst) {
            eprintln!("fault server: request cut short: {read:?}");
        }
    };
    let head_end = loop {
        match stream.read(&mut chunk) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            read @ (Ok(0) | Err(_)) => return cut_short(read),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        match stream.read(&mut chunk) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            read @ (Ok(0) | Err(_)) => return cut_short(read),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let form = String::from_utf8_lossy(&buf[head_end..]).into_owned();
    let is_refresh = form.contains("grant_type=refresh_token");
    bodies.lock().unwrap().push(form.clone());
    let n = requests.fetch_add(1, Ordering::SeqCst) + 1;
    let current = first.lock().unwrap().take();
    let fault = match current.unwrap_or_else(|| mode.0.lock().unwrap().clone()) {
        Fault::RefreshRefused { .. } if is_refresh => Fault::Status {
            code: 400,
            retry_after: None,
        },
        other => other,
    };
    let response = match fault {
        Fault::RefreshRefused { lifetime } => {
            let body = format!(
                r#"{{"access_token":"fault-token-{n}","token_type":"Bearer","expires_in":{lifetime},"refresh_token":"refresh-{n}"}}"#
            );
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )
        }
        Fault::Ok { lifetime } => {
            let body = format!(
                r#"{{"access_token":"fault-token-{n}","token_type":"Bearer","expires_in":{lifetime}}}"#
            );
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )
        }
        Fault::Status { code, retry_after } => {
            let body = if code == 400 {
                r#"{"error":"invalid_grant","error_description":"refresh token revoked"}"#
            } else {
                r#"{"error":"temporarily_unavailable","error_description":"injected fault"}"#
            };
            let retry = retry_after
                .map(|r| format!("retry-after: {r}\r\n"))
                .unwrap_or_default();
            format!(
                "HTTP/1.1 {code} Injected\r\ncontent-type: application/json\r\n{retry}content-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )
        }
        Fault::Garbage => {
            let body = "{this is not json";
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )
        }
        Fault::Raw {
            code,
            headers,
            body,
        } => format!(
            "HTTP/1.1 {code} Hostile\r\ncontent-type: application/json\r\n{headers}content-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        ),
        Fault::Echo { code } => {
            let authorization = String::from_utf8_lossy(&buf[..head_end])
                .lines()
                .find(|l| l.to_ascii_lowercase().starts_with("authorization:"))
                .unwrap_or_default()
                .to_string();
            let body = format!("<pre>you sent: {form} with {authorization}</pre>");
            format!(
                "HTTP/1.1 {code} Echo\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )
        }
        Fault::Held { lifetime } => {
            let (lock, changed) = mode;
            let _released = changed
                .wait_while(lock.lock().unwrap(), |f| {
                    matches!(f, Fault::Held { .. }) && !stop.load(Ordering::SeqCst)
                })
                .unwrap();
            let body = format!(
                r#"{{"access_token":"fault-token-{n}","token_type":"Bearer","expires_in":{lifetime}}}"#
            );
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )
        }
        Fault::Reset => return,
        Fault::Stall => {
            // Hold the request until the test changes the mode (or drops us).
            let (lock, changed) = mode;
            let _unstalled = changed
                .wait_while(lock.lock().unwrap(), |f| {
                    matches!(f, Fault::Stall) && !stop.load(Ordering::SeqCst)
                })
                .unwrap();
            return;
        }
    };
    let _ = stream.write_all(response.as_bytes());
}

/// Runs `jwtagent ARGS` on a pseudo-terminal (tests/pty/answer.py) and
/// types each answer once its prompt has appeared and echo is off, as a
/// person would. Its output is what the terminal showed.
pub fn on_a_terminal(env: &TestEnv, answers: &[(&str, &str)], args: &[&str]) -> Output {
    let python = require_tool("python3", "python3");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/pty/answer.py");
    let mut cmd = env.command(python);
    cmd.arg(script);
    for (prompt, answer) in answers {
        cmd.args([prompt, answer]);
    }
    cmd.arg("--").arg(bin()).args(args);
    cmd.output().unwrap()
}

/// `cmd.output()` for a program the test has just copied: while another
/// test's thread forks, the child holds the copy's write descriptor until it
/// execs, and running the copy fails with "Text file busy" (ETXTBSY) for
/// that moment. Tried again until it runs, within the deadline.
pub fn output_of_copy(cmd: &mut Command) -> Output {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match cmd.output() {
            Err(e)
                if e.kind() == std::io::ErrorKind::ExecutableFileBusy
                    && Instant::now() < deadline =>
            {
                std::thread::yield_now();
            }
            result => return result.unwrap(),
        }
    }
}
