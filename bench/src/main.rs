//! jwtagent benchmarks (SPEC §9), against the real release binary:
//!
//!   scripts/bench            # builds with --release, runs, writes docs/performance.md
//!   scripts/layout           # the code layout the release build links with (layout.rs)
//!
//! Everything runs on loopback: a minimal token endpoint of our own (so the
//! numbers are the agent's, not a server's), an agent on a socket in a temp
//! directory, and clients on plain blocking sockets.

mod layout;
mod scale;

use anyhow::{Context, Result, anyhow, bail};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

struct Env {
    dir: tempfile::TempDir,
    bin: PathBuf,
}

impl Env {
    /// A new environment in a temp directory of its own, for `bin`.
    fn new(bin: PathBuf) -> Result<Env> {
        let dir = tempfile::Builder::new()
            .prefix("jwtagent-bench.")
            .tempdir()?;
        for sub in ["run", "config", "state"] {
            std::fs::create_dir(dir.path().join(sub))?;
        }
        std::fs::set_permissions(
            dir.path().join("run"),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )?;
        Ok(Env { dir, bin })
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        self.apply(&mut c).args(args);
        c
    }

    /// The benchmark's environment: its own home, runtime, config and state
    /// directories and keyring service.
    fn apply<'c>(&self, c: &'c mut Command) -> &'c mut Command {
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("XDG_RUNTIME_DIR", self.dir.path().join("run"))
            .env("XDG_CONFIG_HOME", self.dir.path().join("config"))
            .env("XDG_STATE_HOME", self.dir.path().join("state"))
            .env("JWTAGENT_KEYRING_SERVICE", "jwtagent-bench")
            .env("JWTAGENT_LOG", "warn")
    }

    /// A profile with no secret against the benchmark's token endpoint.
    fn add_profile(&self, name: &str, url: &str) -> Result<String> {
        self.ok(&[
            "add",
            name,
            "--no-verify",
            "--token-url",
            url,
            "--client-id",
            "bench",
            "--auth",
            "none",
        ])
    }

    /// A profile as in real use: client id `client_id` and a client secret
    /// (in the keyring), against the endpoint of JWT-size tokens that live
    /// 30 seconds under `url`, verified by a token fetched at `add`.
    fn add_with_secret(&self, name: &str, client_id: &str, url: &str) -> Result<String> {
        let secret = self.dir.path().join("secret");
        if !secret.exists() {
            std::fs::write(&secret, "bench-client-secret-0123456789")?;
        }
        self.ok(&[
            "add",
            name,
            "--token-url",
            &format!("{url}/short"),
            "--client-id",
            client_id,
            "--auth",
            "client_secret_basic",
            "--secret-file",
            secret
                .to_str()
                .context("a temporary path that is not UTF-8")?,
        ])
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("run/jwtagent/agent.sock")
    }

    fn ok(&self, args: &[&str]) -> Result<String> {
        let out = self.cmd(args).output()?;
        if !out.status.success() {
            bail!(
                "jwtagent {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8(out.stdout)?)
    }
}

/// The form of the last token request that carried a client assertion, as
/// the agent sent it: what `curl` sends in the cold path's comparison.
static ASSERTED: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());

/// A token endpoint that answers every POST with a fresh token: on
/// `/token`, a short one that lives a day (counted in `served`); on
/// `/token/short`, one of a JWT's size that lives 30 seconds, so the
/// agent refreshes it while the bench runs (counted in `refreshed`).
fn token_endpoint(served: Arc<AtomicUsize>, refreshed: Arc<AtomicUsize>) -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let served = served.clone();
            let refreshed = refreshed.clone();
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut buf = vec![0u8; 8192];
                let mut have = 0;
                loop {
                    let Ok(n) = stream.read(&mut buf[have..]) else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    have += n;
                    let text = String::from_utf8_lossy(&buf[..have]).to_string();
                    let Some(head_end) = text.find("\r\n\r\n") else {
                        continue;
                    };
                    let len: usize = text[..head_end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().to_string())
                        })
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    if have < head_end + 4 + len {
                        continue;
                    }
                    let request = &text[head_end + 4..];
                    if request.contains("client_assertion=") {
                        *ASSERTED.lock().unwrap_or_else(|e| e.into_inner()) = request.to_string();
                    }
                    let body = if text.starts_with("POST /token/short ") {
                        let n = refreshed.fetch_add(1, Ordering::SeqCst);
                        // The size of a signed JWT with a few claims.
                        let claims = "x".repeat(880);
                        format!(
                            r#"{{"access_token":"bench-jwt-{n:08}-{claims}","token_type":"Bearer","expires_in":30}}"#
                        )
                    } else {
                        let n = served.fetch_add(1, Ordering::SeqCst);
                        format!(
                            r#"{{"access_token":"bench-token-{n:08}-abcdefghijklmnopqrstuvwxyz0123456789","token_type":"Bearer","expires_in":86400}}"#
                        )
                    };
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if stream.write_all(resp.as_bytes()).is_err() {
                        return;
                    }
                    have = 0;
                }
            });
        }
    });
    Ok(port)
}

/// A kept-open connection to the agent or to the echo server.
struct Conn {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    line: String,
}

impl Conn {
    fn open(path: &Path) -> Result<Conn> {
        let s = UnixStream::connect(path)?;
        Ok(Conn {
            reader: BufReader::new(s.try_clone()?),
            writer: s,
            line: String::new(),
        })
    }

    /// Sends `request` and reads one answer line, which must hold `expect`
    /// (the agent's `"ok":true`, or the echoed request itself).
    fn call(&mut self, request: &[u8], expect: &str) -> Result<()> {
        self.writer.write_all(request)?;
        self.line.clear();
        self.reader.read_line(&mut self.line)?;
        if !self.line.contains(expect) {
            bail!("bad answer: {}", self.line);
        }
        Ok(())
    }
}

/// The floor of the request path: a minimal tokio Unix-socket server that
/// answers each line with the same line, on a multi-threaded runtime like
/// the agent's. Runs in a process of its own (`jwtagent-bench --echo PATH
/// [--answer-bytes N]`), as the agent does. With `--answer-bytes`, a
/// shorter line is padded with spaces before its newline to N bytes: the
/// size of the agent's answer, so that the floor moves as many bytes back
/// as the agent does. With `--work-ns`, it spends that long on the CPU
/// (reading the clock) on each request before answering: a server as busy
/// per request as the agent, for telling the agent's work apart from how
/// the scheduler treats it.
fn echo_server(path: &Path, answer_bytes: usize, work: Duration) -> Result<()> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = tokio::net::UnixListener::bind(path)?;
        loop {
            let (stream, _) = listener.accept().await?;
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut read = tokio::io::BufReader::new(read);
                let mut line = Vec::with_capacity(512);
                loop {
                    line.clear();
                    match read.read_until(b'\n', &mut line).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    if line.len() < answer_bytes && line.last() == Some(&b'\n') {
                        line.pop();
                        line.resize(answer_bytes - 1, b' ');
                        line.push(b'\n');
                    }
                    if !work.is_zero() {
                        let start = Instant::now();
                        while start.elapsed() < work {
                            std::hint::spin_loop();
                        }
                    }
                    if write.write_all(&line).await.is_err() {
                        return;
                    }
                }
            });
        }
    })
}

/// One server under test: where it listens and what its answers hold.
#[derive(Clone)]
struct Target {
    socket: PathBuf,
    expect: &'static str,
}

/// An echo server that spends `work` on each request, started for one
/// measurement and stopped after it.
struct BusyEcho {
    socket: PathBuf,
    answer_bytes: usize,
    work: Duration,
}

impl BusyEcho {
    /// p50 of this server and of `agent`, `n` requests each, in turns
    /// (`agent_first` or not), nothing pinned: in seconds.
    fn against(
        &self,
        agent: &Target,
        request: &[u8],
        n: usize,
        agent_first: bool,
    ) -> Result<(f64, f64)> {
        let _ = std::fs::remove_file(&self.socket);
        let mut server = Command::new(std::env::current_exe()?)
            .arg("--echo")
            .arg(&self.socket)
            .args(["--answer-bytes", &self.answer_bytes.to_string()])
            .args(["--work-ns", &self.work.as_nanos().to_string()])
            .stderr(Stdio::null())
            .spawn()?;
        let measured = (|| {
            wait_for(&self.socket)?;
            let echo = Target {
                socket: self.socket.clone(),
                expect: r#""op":"token""#,
            };
            let (e, a) = if agent_first {
                let a = latency(agent, request, n)?.0;
                (latency(&echo, request, n)?.0, a)
            } else {
                let e = latency(&echo, request, n)?.0;
                (e, latency(agent, request, n)?.0)
            };
            Ok((e.as_secs_f64(), a.as_secs_f64()))
        })();
        let _ = server.kill();
        let _ = server.wait();
        measured
    }
}

/// p50 and p99.9 of `n` requests over one kept-open connection.
fn latency(target: &Target, request: &[u8], n: usize) -> Result<(Duration, Duration)> {
    let mut conn = Conn::open(&target.socket)?;
    for _ in 0..n / 10 {
        conn.call(request, target.expect)?;
    }
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        conn.call(request, target.expect)?;
        lat.push(t.elapsed());
    }
    lat.sort();
    Ok((percentile(&lat, 0.5), percentile(&lat, 0.999)))
}

/// Where the client of a latency run and the server it talks to run. On a
/// virtual machine the kept-open p50 is two figures, not one: a request
/// that wakes a server on an idle CPU costs that CPU's wake-up (some 25 µs
/// each way here), one that hands the CPU to a server on the same CPU costs
/// a context switch, and the scheduler picks either from round to round.
/// Each server is measured in the same placements (pinned), so that the
/// ratio compares the servers and not the scheduler's picks.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Placement {
    /// Client on one CPU, server on another.
    Apart(usize, usize),
    /// Both on one CPU.
    Together(usize),
}

impl Placement {
    /// The placements this machine allows: apart needs two CPUs.
    pub(crate) fn all() -> Vec<Placement> {
        let cpus = allowed_cpus();
        match cpus[..] {
            [] => Vec::new(),
            [one] => vec![Placement::Together(one)],
            [a, b, ..] => vec![Placement::Apart(a, b), Placement::Together(b)],
        }
    }

    fn cpus(self) -> (usize, usize) {
        match self {
            Placement::Apart(client, server) => (client, server),
            Placement::Together(cpu) => (cpu, cpu),
        }
    }
}

/// The CPUs this process may run on.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data (all-zero is the empty set), and
    // sched_getaffinity fills in at most its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
            .collect()
    }
}

/// Pins thread `tid` (0: the calling thread) to `cpus`.
fn pin_thread(tid: libc::pid_t, cpus: &[usize]) -> Result<()> {
    // SAFETY: as in allowed_cpus; CPU_SET only sets bits below CPU_SETSIZE,
    // which allowed_cpus' numbers are.
    let done = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &cpu in cpus {
            libc::CPU_SET(cpu, &mut set);
        }
        libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if done != 0 {
        bail!(
            "cannot pin thread {tid}: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// Pins every thread of process `pid` to `cpus` (threads it starts later
/// inherit the set of the thread that starts them).
fn pin_process(pid: u32, cpus: &[usize]) -> Result<()> {
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let tid = task?.file_name().to_string_lossy().parse()?;
        // A thread that has just ended cannot be pinned, nor needs to be.
        if let Err(e) = pin_thread(tid, cpus)
            && std::path::Path::new(&format!("/proc/{pid}/task/{tid}")).exists()
        {
            return Err(e);
        }
    }
    Ok(())
}

/// Runs `measure` with the calling thread (the client) and every thread of
/// the server processes `pids` pinned as `placement` says; everyone is free
/// again afterwards.
pub(crate) fn pinned<T>(
    placement: Placement,
    pids: &[u32],
    measure: impl FnOnce() -> Result<T>,
) -> Result<T> {
    let all = allowed_cpus();
    let (client, server) = placement.cpus();
    let measured = (|| {
        for pid in pids {
            pin_process(*pid, &[server])?;
        }
        pin_thread(0, &[client])?;
        measure()
    })();
    pin_thread(0, &all)?;
    for pid in pids {
        pin_process(*pid, &all)?;
    }
    measured
}

/// Requests per second over `clients` kept-open connections for `secs`.
fn throughput(target: &Target, clients: usize, secs: f64) -> Result<f64> {
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..clients)
        .map(|i| {
            let (stop, count, target) = (stop.clone(), count.clone(), target.clone());
            let req = format!(
                "{{\"id\":1,\"op\":\"token\",\"name\":\"p{:03}\"}}\n",
                i % 100
            )
            .into_bytes();
            std::thread::spawn(move || -> Result<()> {
                let mut c = Conn::open(&target.socket)?;
                while !stop.load(Ordering::Relaxed) {
                    c.call(&req, target.expect)?;
                    count.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            })
        })
        .collect();
    let t = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(secs));
    let done = count.load(Ordering::Relaxed);
    let elapsed = t.elapsed();
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().map_err(|_| anyhow!("client panicked"))??;
    }
    Ok(done as f64 / elapsed.as_secs_f64())
}

/// How long one run of a command takes, started as the benchmark starts
/// every process (output piped, waited for).
fn process_time(cmd: &mut Command) -> Result<Duration> {
    let t = Instant::now();
    let out = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).output()?;
    let took = t.elapsed();
    if !out.status.success() {
        bail!(
            "{:?} failed: {}",
            cmd.get_program(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(took)
}

/// [`process_time`] and the CPU time the process used (user and system,
/// from the rusage of waited-for children), both in seconds.
fn process_cpu(cmd: &mut Command) -> Result<(f64, f64)> {
    let before = cpu_of(libc::RUSAGE_CHILDREN);
    let wall = process_time(cmd)?;
    Ok((wall.as_secs_f64(), cpu_of(libc::RUSAGE_CHILDREN) - before))
}

/// One request on a new connection, as a short-lived client makes it:
/// connect, send, read the answer; its wall time and the CPU time of this
/// thread, in seconds.
fn round_trip(target: &Target, request: &[u8]) -> Result<(f64, f64)> {
    let before = cpu_of(libc::RUSAGE_THREAD);
    let t = Instant::now();
    Conn::open(&target.socket)?.call(request, target.expect)?;
    let wall = t.elapsed().as_secs_f64();
    Ok((wall, cpu_of(libc::RUSAGE_THREAD) - before))
}

/// User and system CPU time of `who` (`RUSAGE_CHILDREN`, `RUSAGE_THREAD`),
/// in seconds.
fn cpu_of(who: libc::c_int) -> f64 {
    // SAFETY: getrusage writes one rusage into the zeroed struct given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(who, &mut usage) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// Issue 33's cold path: `rounds` pairs of a `jwtagent token --force` for
/// a keygen profile at `url` and `curl` sending the same form there, each
/// a process; the median wall time of each, in seconds.
fn first_token_vs_curl(env: &Env, url: &str, rounds: usize) -> Result<(f64, f64)> {
    env.ok(&[
        "keygen",
        "cold-jwt",
        "--alg",
        "ES256",
        "--token-url",
        url,
        "--client-id",
        "bench-cold",
    ])?;
    env.ok(&["token", "cold-jwt", "--force"])?;
    let form = ASSERTED.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if form.is_empty() {
        bail!("the token endpoint saw no assertion of cold-jwt");
    }
    let form_file = env.dir.path().join("form");
    std::fs::write(&form_file, &form)?;
    let mut curl = Command::new("curl");
    curl.args(["-sS", "--fail", "-o", "/dev/null", "-H"])
        .arg("content-type: application/x-www-form-urlencoded")
        .arg("--data-binary")
        .arg(format!("@{}", form_file.display()))
        .arg(url);
    let (mut token, mut direct) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        token.push(process_time(&mut env.cmd(&["token", "cold-jwt", "--force"]))?.as_secs_f64());
        direct.push(process_time(&mut curl)?.as_secs_f64());
    }
    env.ok(&["remove", "cold-jwt"])?;
    Ok((median(token), median(direct)))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One figure over the rounds: its median and its range.
pub(crate) struct Spread(pub(crate) Vec<f64>);

impl Spread {
    fn median(&self) -> f64 {
        median(self.0.clone())
    }
    fn show(&self, unit: impl Fn(f64) -> String) -> String {
        let min = self.0.iter().copied().fold(f64::INFINITY, f64::min);
        let max = self.0.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        format!("{} ({}–{})", unit(self.median()), unit(min), unit(max))
    }
}

fn ratio(x: f64) -> String {
    format!("{x:.2}×")
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "missed" }
}

/// `clients` connections that start together and each ask once for `name`
/// (with `min_ttl`, if given); every answer must be a token.
fn thundering_herd(socket: &Path, name: &str, clients: usize, min_ttl: Option<u64>) -> Result<()> {
    let start = Arc::new(std::sync::Barrier::new(clients));
    let min_ttl = min_ttl
        .map(|t| format!(",\"min_ttl\":{t}"))
        .unwrap_or_default();
    let request = format!("{{\"id\":1,\"op\":\"token\",\"name\":\"{name}\"{min_ttl}}}\n");
    let handles: Vec<_> = (0..clients)
        .map(|_| {
            let (start, socket, request) = (start.clone(), socket.to_path_buf(), request.clone());
            std::thread::spawn(move || -> Result<()> {
                let conn = Conn::open(&socket);
                start.wait();
                conn?.call(request.as_bytes(), "\"ok\":true")
            })
        })
        .collect();
    for h in handles {
        h.join().map_err(|_| anyhow!("client panicked"))??;
    }
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// The heading of docs/performance.md's hand-written part, which a run
/// keeps as it is.
const NOTES: &str = "## Notes";

fn rss_kib(pid: u32) -> Result<u64> {
    status_kib(pid, "VmRSS")
}

/// A size from /proc/PID/status (`VmRSS`, `RssFile`, `RssAnon`), in KiB.
fn status_kib(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| anyhow!("no {field} in /proc/{pid}/status"))
}

fn wait_for(path: &Path) -> Result<()> {
    wait_for_within(path, Duration::from_secs(20))
}

/// Waits until `path` accepts a connection, for at most `limit`.
fn wait_for_within(path: &Path, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    while UnixStream::connect(path).is_err() {
        if Instant::now() > deadline {
            bail!("the agent did not start");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

fn arg_value(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

const USAGE: &str = "usage: jwtagent-bench [--bin PATH] [--write FILE] [--quick | --check] [--rounds N] [--scale N] [--scale-only]
       jwtagent-bench --layout DIR          (scripts/layout)
       jwtagent-bench --echo SOCKET [--answer-bytes N] [--work-ns N]
       jwtagent-bench --load SOCKET CLIENTS SECONDS
       jwtagent-bench --latency SOCKET REQUESTS

Runs the benchmarks of SPEC §9 against the release binary (default
target/release/jwtagent) and prints the table of docs/performance.md;
--write FILE writes it there, keeping the file's hand-written notes.
--quick: fewer and shorter rounds; --check: a quick run that fails when a
ratio is past CI's limits. scripts/bench builds and runs it.";

/// Refuses what the bench does not take, before a run of minutes starts.
fn check_args(args: &[String]) -> Result<bool> {
    const VALUED: [&str; 8] = [
        "--bin",
        "--write",
        "--rounds",
        "--scale",
        "--layout",
        "--echo",
        "--answer-bytes",
        "--work-ns",
    ];
    const FLAGS: [&str; 3] = ["--quick", "--check", "--scale-only"];
    let mut rest = args.iter().skip(1);
    while let Some(a) = rest.next() {
        match a.as_str() {
            "-h" | "--help" => return Ok(false),
            "--load" | "--latency" => return Ok(true),
            a if VALUED.contains(&a) => {
                if rest.next().is_none() {
                    bail!("{a} takes a value\n\n{USAGE}");
                }
            }
            a if FLAGS.contains(&a) => {}
            a => bail!("unknown argument {a:?}\n\n{USAGE}"),
        }
    }
    Ok(true)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if !check_args(&args)? {
        println!("{USAGE}");
        return Ok(());
    }
    if let Some(path) = arg_value(&args, "--echo") {
        let answer_bytes = arg_value(&args, "--answer-bytes")
            .map(|n| n.parse().context("--answer-bytes takes a number of bytes"))
            .transpose()?
            .unwrap_or(0);
        let work = arg_value(&args, "--work-ns")
            .map(|n| n.parse().context("--work-ns takes a number of nanoseconds"))
            .transpose()?
            .unwrap_or(0);
        return echo_server(Path::new(&path), answer_bytes, Duration::from_nanos(work));
    }
    // `--load SOCKET CLIENTS SECONDS`: one throughput run against a running
    // agent (profiles p000 to p099) or echo server, for profiling one side
    // of it.
    if let Some(i) = args.iter().position(|a| a == "--load") {
        let Some([socket, clients, secs]) = args.get(i + 1..i + 4) else {
            bail!("--load SOCKET CLIENTS SECONDS");
        };
        let target = Target {
            socket: socket.into(),
            expect: r#""id":1"#,
        };
        let rps = throughput(&target, clients.parse()?, secs.parse()?)?;
        println!("{rps:.0} requests/s");
        return Ok(());
    }
    // `--latency SOCKET REQUESTS`: p50 and p99.9 over one kept-open
    // connection, as the bench's latency row measures them.
    if let Some(i) = args.iter().position(|a| a == "--latency") {
        let Some([socket, n]) = args.get(i + 1..i + 3) else {
            bail!("--latency SOCKET REQUESTS");
        };
        let target = Target {
            socket: socket.into(),
            expect: r#""id":1"#,
        };
        let request = b"{\"id\":1,\"op\":\"token\",\"name\":\"p000\"}\n";
        let (p50, p999) = latency(&target, request, n.parse()?)?;
        println!("p50 {p50:?} p99.9 {p999:?}");
        return Ok(());
    }
    let bin = arg_value(&args, "--bin")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/release/jwtagent"));
    let write = arg_value(&args, "--write").map(PathBuf::from);
    // --check: a quick run that fails when a ratio is past its limit (CI).
    let check = args.iter().any(|a| a == "--check");
    let quick = check || args.iter().any(|a| a == "--quick");
    let rounds: usize = arg_value(&args, "--rounds")
        .map(|r| r.parse().context("--rounds takes a number"))
        .transpose()?
        .unwrap_or(5)
        .max(1);
    let bin =
        std::fs::canonicalize(&bin).with_context(|| format!("no binary at {}", bin.display()))?;
    let scale_n: usize = arg_value(&args, "--scale")
        .map(|n| n.parse().context("--scale takes a number of profiles"))
        .transpose()?
        .unwrap_or(if quick { 1_000 } else { 10_000 });
    let env = Env::new(bin.clone())?;
    if args.iter().any(|a| a == "--scale-only") {
        let served = Arc::new(AtomicUsize::new(0));
        let port = token_endpoint(served, Arc::new(AtomicUsize::new(0)))?;
        let url = format!("http://127.0.0.1:{port}/token");
        let scale = scale::run(&env, scale_n, &url, rounds)?;
        for l in scale.lines() {
            println!("{l}");
        }
        return Ok(());
    }
    if let Some(out) = arg_value(&args, "--layout") {
        return layout::run(&env, Path::new(&out));
    }
    let mut report = String::new();
    let mut line = |s: String| {
        println!("{s}");
        report.push_str(&s);
        report.push('\n');
    };

    // Startup: `jwtagent agent` (detached) returns once the socket accepts.
    let mut startups = Vec::new();
    for i in 0..20 {
        let sock = env.dir.path().join(format!("run/start-{i}.sock"));
        let t = Instant::now();
        env.ok(&["agent", "--socket", sock.to_str().unwrap()])?;
        startups.push(t.elapsed());
        UnixStream::connect(&sock).context("socket accepts at once")?;
        env.ok(&["--socket", sock.to_str().unwrap(), "stop"])?;
    }
    startups.sort();

    let served = Arc::new(AtomicUsize::new(0));
    let refreshed = Arc::new(AtomicUsize::new(0));
    let port = token_endpoint(served.clone(), refreshed.clone())?;
    let url = format!("http://127.0.0.1:{port}/token");
    let mut agent: Child = env
        .cmd(&["agent", "-D", "--store", "keyutils"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    wait_for(&env.socket())?;
    let pid = agent.id();
    let rss_empty = rss_kib(pid)?;
    let add = |name: &str| env.add_profile(name, &url);
    // The workload of real use: 100 profiles added through the CLI, each
    // with a client secret (in the keyring) and verified by a token fetched
    // at add, served tokens of a JWT's size that live 30 seconds (so each
    // is refreshed in the background while the rounds below run), then
    // each asked for once.
    for i in 0..100 {
        env.add_with_secret(&format!("p{i:03}"), &format!("bench-{i}"), &url)?;
    }
    for i in 0..100 {
        env.ok(&["token", &format!("p{i:03}")])?;
    }
    let fetched_at_start = refreshed.load(Ordering::SeqCst);
    // What it is made of: mapped pages of the binary and its libraries
    // (code touched, with the kernel's fault-around) and the heap and stacks.
    let split =
        || -> Result<(u64, u64)> { Ok((status_kib(pid, "RssFile")?, status_kib(pid, "RssAnon")?)) };
    // Resident memory right after the requests, and once the agent has
    // fallen quiet (a second without a request) and handed back what the
    // allocator kept.
    let settled = || -> Result<(u64, u64, (u64, u64))> {
        let busy = rss_kib(pid)?;
        std::thread::sleep(Duration::from_millis(1_500));
        Ok((busy, rss_kib(pid)?, split()?))
    };
    let (busy_100, rss_100, split_100) = settled()?;
    let request = b"{\"id\":1,\"op\":\"token\",\"name\":\"p000\"}\n".to_vec();
    // The echo server answers with as many bytes as the agent does.
    let answer_bytes = {
        let mut conn = Conn::open(&env.socket())?;
        conn.call(&request, r#""ok":true"#)?;
        conn.line.len()
    };
    let echo_socket = env.dir.path().join("run/echo.sock");
    let mut echo: Child = Command::new(std::env::current_exe()?)
        .args(["--echo", echo_socket.to_str().unwrap()])
        .args(["--answer-bytes", &answer_bytes.to_string()])
        .stderr(Stdio::null())
        .spawn()?;
    wait_for(&echo_socket)?;
    let agent_target = Target {
        socket: env.socket(),
        expect: r#""ok":true"#,
    };
    let echo_target = Target {
        socket: echo_socket.clone(),
        expect: r#""op":"token""#,
    };
    let oidc_token = std::env::var("JWTAGENT_BENCH_OIDC_ACCOUNT")
        .ok()
        .filter(|_| {
            Command::new("oidc-token")
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        });

    // Rounds, each measuring a floor and jwtagent side by side.
    let (n_proc, n_latency, secs) = if quick {
        (30, 5_000, 0.5)
    } else {
        (100, 20_000, 1.5)
    };
    let mut proc_true = Vec::new();
    let mut proc_token = Vec::new();
    let mut proc_oidc = Vec::new();
    let mut proc_ratio = Vec::new();
    let (mut proc_floor, mut floor_ratio) = (Vec::new(), Vec::new());
    let (mut cpu_floors, mut cpu_token, mut cpu_ratio) = (Vec::new(), Vec::new(), Vec::new());
    let mut oidc_ratio = Vec::new();
    let mut lat_echo = Vec::new();
    let mut lat_agent = Vec::new();
    let mut lat_ratio = Vec::new();
    let placements = Placement::all();
    // Per placement: the echo server's p50s, the agent's, their ratios.
    type Pinned = (Placement, Vec<f64>, Vec<f64>, Vec<f64>);
    let mut placed: Vec<Pinned> = placements
        .iter()
        .map(|&p| (p, vec![], vec![], vec![]))
        .collect();
    let mut p999_agent = Vec::new();
    let mut p999_echo = Vec::new();
    let (mut busy_work, mut busy_echo) = (Vec::new(), Vec::new());
    let (mut busy_agent, mut busy_ratio) = (Vec::new(), Vec::new());
    // Per concurrency: the echo server's rates, the agent's, their ratios.
    type Rates = (usize, Vec<f64>, Vec<f64>, Vec<f64>);
    let mut tput: Vec<Rates> = [1, 8, 64, 256].map(|c| (c, vec![], vec![], vec![])).into();
    for _ in 0..20 {
        env.ok(&["token", "p000"])?;
    }
    for round in 0..rounds {
        eprintln!("round {}/{rounds}", round + 1);
        // Processes, interleaved one by one: /bin/true, jwtagent token,
        // oidc-token.
        // With them, issue 33's floor: /bin/true plus one round trip on a
        // new Unix-socket connection (to the echo server), in wall time and
        // in CPU (the CPU of the process, or of the bench's own thread for
        // the round trip).
        let (mut t, mut j, mut o) = (Vec::new(), Vec::new(), Vec::new());
        let (mut rt, mut t_cpu, mut j_cpu, mut rt_cpu) = (vec![], vec![], vec![], vec![]);
        for _ in 0..n_proc {
            let (wall, cpu) = process_cpu(&mut Command::new("/bin/true"))?;
            t.push(wall);
            t_cpu.push(cpu);
            let (wall, cpu) = process_cpu(&mut env.cmd(&["token", "p000"]))?;
            j.push(wall);
            j_cpu.push(cpu);
            let (wall, cpu) = round_trip(&echo_target, &request)?;
            rt.push(wall);
            rt_cpu.push(cpu);
            if let Some(account) = &oidc_token {
                let mut cmd = Command::new("oidc-token");
                cmd.arg(account);
                o.push(process_time(&mut cmd)?.as_secs_f64());
            }
        }
        let (t, j) = (median(t), median(j));
        proc_true.push(t);
        proc_token.push(j);
        proc_ratio.push(j / t);
        let floor = t + median(rt);
        proc_floor.push(floor);
        floor_ratio.push(j / floor);
        let cpu_floor = median(t_cpu) + median(rt_cpu);
        let j_cpu = median(j_cpu);
        cpu_floors.push(cpu_floor);
        cpu_token.push(j_cpu);
        cpu_ratio.push(j_cpu / cpu_floor);
        if !o.is_empty() {
            let o = median(o);
            proc_oidc.push(o);
            oidc_ratio.push(j / o);
        }
        // The request path: the echo server and the agent, in alternating
        // order from round to round.
        let order = if round % 2 == 0 {
            [&echo_target, &agent_target]
        } else {
            [&agent_target, &echo_target]
        };
        let mut measured = Vec::new();
        for target in order {
            measured.push((
                target.socket == echo_socket,
                latency(target, &request, n_latency)?,
            ));
        }
        let (echo_p50, echo_p999) = measured.iter().find(|m| m.0).map(|m| m.1).unwrap();
        p999_echo.push(echo_p999.as_secs_f64());
        let (agent_p50, agent_p999) = measured.iter().find(|m| !m.0).map(|m| m.1).unwrap();
        lat_echo.push(echo_p50.as_secs_f64());
        lat_agent.push(agent_p50.as_secs_f64());
        lat_ratio.push(agent_p50.as_secs_f64() / echo_p50.as_secs_f64());
        p999_agent.push(agent_p999.as_secs_f64());
        for (placement, echo_p50s, agent_p50s, ratios) in &mut placed {
            let p50s = pinned(*placement, &[echo.id(), pid], || {
                order
                    .iter()
                    .map(|target| latency(target, &request, n_latency))
                    .collect::<Result<Vec<_>>>()
            })?;
            let (e, a) = match order[0].socket == echo_socket {
                true => (p50s[0].0, p50s[1].0),
                false => (p50s[1].0, p50s[0].0),
            };
            echo_p50s.push(e.as_secs_f64());
            agent_p50s.push(a.as_secs_f64());
            ratios.push(a.as_secs_f64() / e.as_secs_f64());
        }
        // The cause of the unpinned row, measured: an echo server made as
        // busy per request as the agent (by this round's difference pinned
        // together), both where the scheduler puts them.
        let together = placed
            .iter()
            .find(|p| matches!(p.0, Placement::Together(_)));
        if let (false, Some((_, e, a, _))) = (quick, together) {
            let work = (a.last().unwrap_or(&0.0) - e.last().unwrap_or(&0.0)).clamp(0.0, 1e-3);
            let busy = BusyEcho {
                socket: env.dir.path().join("run/busy-echo.sock"),
                answer_bytes,
                work: Duration::from_secs_f64(work),
            };
            let (e, a) = busy.against(&agent_target, &request, n_latency, round % 2 == 1)?;
            busy_work.push(work);
            busy_echo.push(e);
            busy_agent.push(a);
            busy_ratio.push(a / e);
        }
        for (clients, echo_rps, agent_rps, ratios) in &mut tput {
            let mut e = 0.0;
            let mut a = 0.0;
            for target in order {
                let rps = throughput(target, *clients, secs)?;
                if target.socket == echo_socket {
                    e = rps;
                } else {
                    a = rps;
                }
            }
            echo_rps.push(e);
            agent_rps.push(a);
            ratios.push(a / e);
        }
    }

    // Single flight: 1,000 clients at once on a cold cache, then again when
    // every one of them needs a newer token than the one cached.
    add("cold")?;
    let before = served.load(Ordering::SeqCst);
    thundering_herd(&env.socket(), "cold", 1000, None)?;
    let cold_fetches = served.load(Ordering::SeqCst) - before;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status: serde_json::Value = serde_json::from_str(&env.ok(&["status", "--json"])?)?;
        let left = status["profiles"]
            .as_array()
            .and_then(|p| p.iter().find(|p| p["name"] == "cold"))
            .and_then(|p| p["expires_in_secs"].as_i64())
            .unwrap_or(i64::MAX);
        if left < 86_399 {
            break;
        }
        if Instant::now() > deadline {
            bail!("the cold profile's token never aged");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let before = served.load(Ordering::SeqCst);
    thundering_herd(&env.socket(), "cold", 1000, Some(86_399))?;
    let refresh_fetches = served.load(Ordering::SeqCst) - before;

    // Memory after a million requests, and after a second million: flat
    // means the second million adds nothing (the first may still grow the
    // allocator's pools to the load's working set).
    let million = if quick { 100_000 } else { 1_000_000 };
    let hammer = || -> Result<()> {
        let per = million / 8;
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let path = env.socket();
                let req = format!("{{\"id\":1,\"op\":\"token\",\"name\":\"p{:03}\"}}\n", i * 7)
                    .into_bytes();
                std::thread::spawn(move || -> Result<()> {
                    let mut c = Conn::open(&path)?;
                    for _ in 0..per {
                        c.call(&req, r#""ok":true"#)?;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join().map_err(|_| anyhow!("client panicked"))??;
        }
        Ok(())
    };
    hammer()?;
    let (busy_million, rss_million, split_million) = settled()?;
    hammer()?;
    let (busy_two_million, rss_two_million, split_two_million) = settled()?;
    let refreshes = refreshed.load(Ordering::SeqCst) - fetched_at_start;

    // The same request straight at the token endpoint (what each script
    // would do without the agent), over a fresh HTTP connection each time
    // like `curl`.
    // Interleaved with it, the cold path: a token the agent does not hold
    // (`force`), for a profile with a secret, fetched and answered over a
    // kept-open connection to the agent (whose own connection to the
    // server is kept alive, as between refreshes).
    let mut direct = Vec::new();
    let mut cold = Vec::new();
    let mut cold_conn = Conn::open(&env.socket())?;
    let forced = b"{\"id\":1,\"op\":\"token\",\"name\":\"p050\",\"force\":true}\n";
    for _ in 0..2_000 {
        let t = Instant::now();
        cold_conn.call(forced, r#""ok":true"#)?;
        cold.push(t.elapsed());
        let t = Instant::now();
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
        // As the agent sends it for p050: its client id and secret in Basic.
        let body = "grant_type=client_credentials";
        write!(
            s,
            "POST /token/short HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Basic YmVuY2gtNTA6YmVuY2gtY2xpZW50LXNlY3JldC0wMTIzNDU2Nzg5\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )?;
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf)?;
        if !buf[..n].starts_with(b"HTTP/1.1 200") {
            bail!("direct request failed");
        }
        direct.push(t.elapsed());
    }
    direct.sort();
    cold.sort();

    // Issue 33's cold path as it names it: the first `jwtagent token` of a
    // profile that signs its client assertion (keygen's ES256 key, in the
    // keyring), a process as any script's, interleaved with `curl` making
    // the same request (the form the agent sent, assertion and all) on a
    // new connection.
    let first_token = match Command::new("curl").arg("--version").output() {
        Ok(out) if out.status.success() => Some(first_token_vs_curl(
            &env,
            &format!("{url}/short"),
            if quick { 30 } else { 200 },
        )?),
        _ => None,
    };

    // The secrets go with their profiles: none is left in the keyring.
    for i in 0..100 {
        let _ = env.ok(&["remove", &format!("p{i:03}")]);
    }
    let _ = env.ok(&["stop"]);
    let _ = agent.wait();
    let _ = echo.kill();
    let _ = echo.wait();

    // Many profiles, in an environment of their own.
    eprintln!("{scale_n} profiles");
    let scale = scale::run(&Env::new(env.bin.clone())?, scale_n, &url, rounds)?;

    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load = load.split_whitespace().next().unwrap_or("?");
    line(format!(
        "Machine: {cpu}, {cores} cores, load average {load} at the end; jwtagent {} (release build). {rounds} rounds, each measuring the floor and jwtagent side by side; figures are the median over the rounds, with the range in brackets.",
        env!("CARGO_PKG_VERSION")
    ));
    line(String::new());
    let s_ms = |x: f64| format!("{:.2} ms", x * 1e3);
    let s_us = |x: f64| format!("{:.1} µs", x * 1e6);
    let s_rps = |x: f64| format!("{x:.0}/s");
    let (proc_ratio, lat_ratio) = (Spread(proc_ratio), Spread(lat_ratio));
    let p999 = Spread(p999_agent);
    line("| measurement | floor | jwtagent | ratio | SPEC §9 target | |".into());
    line("| --- | --- | --- | --- | --- | --- |".into());
    line(format!(
        "| `jwtagent token NAME` as a process, cached ({n_proc} runs a round, interleaved) | `/bin/true` {} | {} | {} | ≤ 1.35× (raised: 1.15×, against the floor below) | {} |",
        Spread(proc_true).show(s_ms),
        Spread(proc_token.clone()).show(s_ms),
        proc_ratio.show(ratio),
        met(proc_ratio.median() <= 1.35)
    ));
    let (floor_ratio, cpu_ratio) = (Spread(floor_ratio), Spread(cpu_ratio));
    line(format!(
        "| the same beside `/bin/true` plus one round trip on a new Unix-socket connection (to the echo server) | {} | {} | {} | ≤ 1.15× (raised; issue 33 names this floor) | {} |",
        Spread(proc_floor).show(s_ms),
        Spread(proc_token.clone()).show(s_ms),
        floor_ratio.show(ratio),
        met(floor_ratio.median() <= 1.15)
    ));
    line(format!(
        "| the same in CPU time (the process's user and system time; the round trip's, of the client's thread) | {} | {} | {} | ≤ 1.05× (raised) | {} |",
        Spread(cpu_floors).show(s_us),
        Spread(cpu_token).show(s_us),
        cpu_ratio.show(ratio),
        met(cpu_ratio.median() <= 1.05)
    ));
    if oidc_ratio.is_empty() {
        line("| the same beside oidc-agent's `oidc-token` | not measured: set JWTAGENT_BENCH_OIDC_ACCOUNT to an oidc-agent account, with oidc-token on PATH | | | below 1× | |".into());
    } else {
        let oidc_ratio = Spread(oidc_ratio);
        line(format!(
            "| the same beside oidc-agent's `oidc-token` | `oidc-token` {} | | {} | < 1× | {} |",
            Spread(proc_oidc).show(s_ms),
            oidc_ratio.show(ratio),
            met(oidc_ratio.median() < 1.0)
        ));
    }
    line(format!(
        "| cached token, kept-open connection, p50 ({n_latency} requests a round), client and servers where the scheduler puts them | echo server {} | {} | {} | ≤ 1.0× (raised from 1.3×) | {} |",
        Spread(lat_echo).show(s_us),
        Spread(lat_agent).show(s_us),
        lat_ratio.show(ratio),
        met(lat_ratio.median() <= 1.0)
    ));
    for (placement, echo_p50s, agent_p50s, ratios) in placed {
        let ratios = Spread(ratios);
        let place = match placement {
            Placement::Apart(client, server) => {
                format!("the client pinned to CPU {client}, each server to CPU {server}")
            }
            Placement::Together(cpu) => format!("the client and each server pinned to CPU {cpu}"),
        };
        line(format!(
            "| the same, {place} | echo server {} | {} | {} | ≤ 1.0× | {} |",
            Spread(echo_p50s).show(s_us),
            Spread(agent_p50s).show(s_us),
            ratios.show(ratio),
            met(ratios.median() <= 1.0)
        ));
    }
    if !busy_ratio.is_empty() {
        line(format!(
            "| the same, where the scheduler puts them, beside an echo server made as busy as the agent: {} more on each request (the agent's extra time in the row pinned together, round by round) | busy echo server {} | {} | {} | none: the first row's miss, measured | |",
            Spread(busy_work).show(s_us),
            Spread(busy_echo).show(s_us),
            Spread(busy_agent).show(s_us),
            Spread(busy_ratio).show(ratio),
        ));
    }
    line(format!(
        "| the same, p99.9 | echo server {} | {} | | ≤ 1 ms | {} |",
        Spread(p999_echo).show(s_us),
        p999.show(s_us),
        met(p999.median() <= 1e-3)
    ));
    let proc_median = proc_ratio.median();
    let mut tput_64 = 0.0;
    for (clients, echo_rps, agent_rps, ratios) in tput {
        let ratios = Spread(ratios);
        if clients == 64 {
            tput_64 = ratios.median();
        }
        let (target, verdict) = if clients == 64 {
            ("≥ 0.9× (raised from 0.8×)", met(ratios.median() >= 0.9))
        } else if clients == 256 {
            ("≥ 0.8×", met(ratios.median() >= 0.8))
        } else {
            ("", "")
        };
        line(format!(
            "| throughput, {clients} concurrent connections | echo server {} | {} | {} | {target} | {verdict} |",
            Spread(echo_rps).show(s_rps),
            Spread(agent_rps).show(s_rps),
            ratios.show(ratio)
        ));
    }
    line(format!(
        "| 1,000 clients at once on a cold cache / again while a refresh is due: requests the token endpoint saw | | {cold_fetches} / {refresh_fetches} | | 1 / 1 | {} |",
        met(cold_fetches == 1 && refresh_fetches == 1)
    ));
    let mib = |k: u64| k as f64 / 1024.0;
    line(format!(
        "| agent RSS: empty / 100 profiles added through the CLI (a secret each, verified at add) with tokens / after {million} more requests / after another {million} ({refreshes} background refreshes of tokens that live 30 s, over the whole run); each once the agent has been quiet for 1.5 s | | {:.1} / {:.1} / {:.1} / {:.1} MiB | | ≤ 8 MiB with 100 profiles, within 256 KiB over the second {million} | {} |",
        mib(rss_empty),
        mib(rss_100),
        mib(rss_million),
        mib(rss_two_million),
        met(mib(rss_100.max(rss_two_million)) <= 8.0 && rss_two_million <= rss_million + 256)
    ));
    line(format!(
        "| the same right after the last request: 100 profiles / {million} / another {million} | | {:.1} / {:.1} / {:.1} MiB | | | |",
        mib(busy_100),
        mib(busy_million),
        mib(busy_two_million)
    ));
    let show_split = |(file, anon): (u64, u64)| format!("{:.1} / {:.1}", mib(file), mib(anon));
    line(format!(
        "| the same split into mapped files (the binary's code and data, libc) / heap and stacks: 100 profiles; after {million}; after another {million} | | {}; {}; {} MiB | | | |",
        show_split(split_100),
        show_split(split_million),
        show_split(split_two_million)
    ));
    line(format!(
        "| `jwtagent agent` until the socket accepts, 20 starts | | median {}, max {} | | | |",
        ms(percentile(&startups, 0.5)),
        ms(*startups.last().unwrap())
    ));
    line(format!(
        "| token endpoint hit directly (new HTTP connection each, like curl; the JWT-size answer), 2,000 requests | | median {}, p99 {} | | | |",
        us(percentile(&direct, 0.5)),
        us(percentile(&direct, 0.99))
    ));
    let cold_ratio = percentile(&cold, 0.5).as_secs_f64() / percentile(&direct, 0.5).as_secs_f64();
    line(format!(
        "| cold path: a token not held (`force`, a client secret, a JWT-size answer) over a kept-open connection, interleaved with the direct request above | the direct request | median {}, p99 {} | {cold_ratio:.2}× | ≤ 1.0× | {} |",
        us(percentile(&cold, 0.5)),
        us(percentile(&cold, 0.99)),
        met(cold_ratio <= 1.0)
    ));
    line(match &first_token {
        Some((token, curl)) => {
            let r = token / curl;
            format!(
                "| the first token as issue 33 names it: `jwtagent token NAME` for a token not held (`--force`; a private_key_jwt profile: its ES256 key in the keyring, an assertion signed, the request, the answer), interleaved with `curl` sending the same form on a new connection | `curl` {} | {} | {r:.2}× | ≤ 1.0× | {} |",
                ms(Duration::from_secs_f64(*curl)),
                ms(Duration::from_secs_f64(*token)),
                met(r <= 1.0)
            )
        }
        None => {
            "| the first token against `curl` | not measured: install curl | | | ≤ 1.0× | |".into()
        }
    });
    for l in scale.lines() {
        line(l);
    }
    line(String::new());
    line(format!(
        "\"Flat\" is within 256 KiB between the first and the second million. The echo server is `jwtagent-bench --echo`: a multi-threaded tokio runtime answering each line with itself, padded with spaces to the size of the agent's answer (the token's answer, {answer_bytes} bytes), in a process of its own, as the agent is. The busy echo server is the same started with `--work-ns`: it spins on the clock for that long on each request before answering."
    ));
    line(String::new());
    line(layout::coverage(&env.bin));

    if check {
        // CI's guard against a regression, with room for a noisy machine.
        let mut failed = Vec::new();
        if proc_median > 1.6 {
            failed.push(format!(
                "`jwtagent token` took {proc_median:.2}× /bin/true (limit 1.6×)"
            ));
        }
        if tput_64 < 0.5 {
            failed.push(format!(
                "64 connections served {tput_64:.2}× the echo server's requests (limit 0.5×)"
            ));
        }
        if cold_fetches != 1 || refresh_fetches != 1 {
            failed.push(format!("1,000 clients made {cold_fetches} and {refresh_fetches} token requests (not 1 and 1)"));
        }
        for (what, s) in [
            ("list", &scale.list),
            ("status", &scale.status),
            ("add", &scale.add),
        ] {
            if s.median() > 0.1 {
                failed.push(format!(
                    "{what} with {scale_n} profiles took {:.0} ms (limit 100 ms)",
                    s.median() * 1e3
                ));
            }
        }
        if !failed.is_empty() {
            bail!("performance regressed:\n  {}", failed.join("\n  "));
        }
        println!("\nscripts/bench --check: within the limits");
    }
    if let Some(path) = write {
        // The hand-written part of the file (what was done about each
        // target, and why one is missed) outlives the figures.
        let notes = std::fs::read_to_string(&path)
            .ok()
            .and_then(|old| Some(format!("\n{}", &old[old.find(NOTES)?..])))
            .unwrap_or_default();
        let doc = format!(
            "# Performance\n\nMeasured with `scripts/bench` (the `jwtagent-bench` tool in `bench/`) against the release binary, all on loopback. Targets are SPEC §9: each a ratio to a floor measured in the same run.\n\n{report}{notes}"
        );
        std::fs::write(&path, doc)?;
        println!("\nwritten to {}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_arguments_are_checked_before_a_run() {
        let args = |a: &[&str]| -> Vec<String> {
            std::iter::once("jwtagent-bench")
                .chain(a.iter().copied())
                .map(String::from)
                .collect()
        };
        assert!(!check_args(&args(&["--help"])).unwrap());
        assert!(!check_args(&args(&["--quick", "-h"])).unwrap());
        assert!(check_args(&args(&[])).unwrap());
        assert!(check_args(&args(&["--bin", "x", "--check", "--rounds", "3"])).unwrap());
        assert!(check_args(&args(&["--load", "s", "64", "1"])).unwrap());
        let err = check_args(&args(&["--quick", "--bogus"])).unwrap_err();
        assert!(
            err.to_string().contains("unknown argument \"--bogus\""),
            "{err}"
        );
        let err = check_args(&args(&["--rounds"])).unwrap_err();
        assert!(err.to_string().contains("--rounds takes a value"), "{err}");
        assert!(check_args(&args(&["--echo", "s", "--work-ns", "1"])).unwrap());
    }

    #[test]
    fn a_busy_echo_server_spends_its_work_on_every_request_and_pads_its_answer() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("echo.sock");
        let work = Duration::from_millis(20);
        let path = socket.clone();
        std::thread::spawn(move || echo_server(&path, 64, work));
        wait_for(&socket).unwrap();
        let mut conn = Conn::open(&socket).unwrap();
        for _ in 0..3 {
            let start = Instant::now();
            conn.call(b"{\"op\":\"token\"}\n", r#""op":"token""#)
                .unwrap();
            // A lower bound only: the server spins until `work` has passed.
            assert!(start.elapsed() >= work, "{:?}", start.elapsed());
            assert_eq!(conn.line.len(), 64, "{:?}", conn.line);
        }
    }
}
