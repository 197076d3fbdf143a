//! jwtagent benchmarks (SPEC §9), against the real release binary:
//!
//!   scripts/bench            # builds with --release, runs, writes docs/performance.md
//!
//! Everything runs on loopback: a minimal token endpoint of our own (so the
//! numbers are the agent's, not a server's), an agent on a socket in a temp
//! directory, and clients on plain blocking sockets.

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
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("XDG_RUNTIME_DIR", self.dir.path().join("run"))
            .env("XDG_CONFIG_HOME", self.dir.path().join("config"))
            .env("XDG_STATE_HOME", self.dir.path().join("state"))
            .env("JWTAGENT_KEYRING_SERVICE", "jwtagent-bench")
            .env("JWTAGENT_LOG", "warn");
        c
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

/// A token endpoint that answers every POST with a fresh long-lived token.
fn token_endpoint(served: Arc<AtomicUsize>) -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let served = served.clone();
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
                    let n = served.fetch_add(1, Ordering::SeqCst);
                    let body = format!(
                        r#"{{"access_token":"bench-token-{n:08}-abcdefghijklmnopqrstuvwxyz0123456789","token_type":"Bearer","expires_in":86400}}"#
                    );
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

    fn token(&mut self, request: &[u8]) -> Result<()> {
        self.writer.write_all(request)?;
        self.line.clear();
        self.reader.read_line(&mut self.line)?;
        if !self.line.contains(r#""ok":true"#) {
            bail!("bad answer: {}", self.line);
        }
        Ok(())
    }
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

fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| anyhow!("no VmRSS"))
}

fn wait_for(path: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while UnixStream::connect(path).is_err() {
        if Instant::now() > deadline {
            bail!("the agent did not start");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let bin = args
        .iter()
        .position(|a| a == "--bin")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/release/jwtagent"));
    let write = args
        .iter()
        .position(|a| a == "--write")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from);
    let quick = args.iter().any(|a| a == "--quick");
    let bin =
        std::fs::canonicalize(&bin).with_context(|| format!("no binary at {}", bin.display()))?;
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
    let env = Env { dir, bin };
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
    let port = token_endpoint(served.clone())?;
    let url = format!("http://127.0.0.1:{port}/token");
    let mut agent: Child = env
        .cmd(&["agent", "-D", "--store", "keyutils"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    wait_for(&env.socket())?;
    let pid = agent.id();
    let rss_empty = rss_kib(pid)?;
    for i in 0..100 {
        env.ok(&[
            "add",
            &format!("p{i:03}"),
            "--token-url",
            &url,
            "--client-id",
            "bench",
            "--auth",
            "none",
        ])?;
    }
    // One token per profile, so 100 are cached.
    for i in 0..100 {
        env.ok(&["token", &format!("p{i:03}")])?;
    }
    std::thread::sleep(Duration::from_millis(200));
    let rss_100 = rss_kib(pid)?;
    let request = b"{\"id\":1,\"op\":\"token\",\"name\":\"p000\"}\n".to_vec();

    // Latency over one kept-open connection.
    let n_latency = if quick { 20_000 } else { 200_000 };
    let mut conn = Conn::open(&env.socket())?;
    for _ in 0..2_000 {
        conn.token(&request)?;
    }
    let mut lat = Vec::with_capacity(n_latency);
    for _ in 0..n_latency {
        let t = Instant::now();
        conn.token(&request)?;
        lat.push(t.elapsed());
    }
    lat.sort();

    // Throughput at several concurrencies.
    let mut throughput = Vec::new();
    let secs = if quick { 1.0 } else { 3.0 };
    for clients in [1usize, 8, 64, 256] {
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..clients)
            .map(|i| {
                let (stop, count, path) = (stop.clone(), count.clone(), env.socket());
                let req = format!(
                    "{{\"id\":1,\"op\":\"token\",\"name\":\"p{:03}\"}}\n",
                    i % 100
                )
                .into_bytes();
                std::thread::spawn(move || -> Result<()> {
                    let mut c = Conn::open(&path)?;
                    while !stop.load(Ordering::Relaxed) {
                        c.token(&req)?;
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
        throughput.push((clients, done as f64 / elapsed.as_secs_f64()));
    }

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
                        c.token(&req)?;
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
    let rss_million = rss_kib(pid)?;
    hammer()?;
    let rss_two_million = rss_kib(pid)?;

    // The whole CLI process, cached token.
    let mut cli = Vec::new();
    for _ in 0..20 {
        env.ok(&["token", "p000"])?;
    }
    for _ in 0..300 {
        let t = Instant::now();
        let out = env
            .cmd(&["token", "p000"])
            .stdout(Stdio::piped())
            .output()?;
        cli.push(t.elapsed());
        if !out.status.success() {
            bail!("token failed");
        }
    }
    cli.sort();
    // Where that time goes: the same harness running a process that does
    // nothing (the machine's floor), and jwtagent doing no request.
    let mut floor = Vec::new();
    let mut version = Vec::new();
    for _ in 0..300 {
        for (program, args, into) in [
            (Path::new("/bin/true"), &[][..], &mut floor),
            (env.bin.as_path(), &["--version"][..], &mut version),
        ] {
            let t = Instant::now();
            let out = Command::new(program)
                .args(args)
                .stdout(Stdio::piped())
                .output()?;
            into.push(t.elapsed());
            if !out.status.success() {
                bail!("{} failed", program.display());
            }
        }
    }
    floor.sort();
    version.sort();
    let fetches = served.load(Ordering::SeqCst);

    // The same loop straight at the token endpoint (what each script would do
    // without the agent), over a fresh HTTP connection each time like `curl`.
    let mut direct = Vec::new();
    for _ in 0..2_000 {
        let t = Instant::now();
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
        let body = "grant_type=client_credentials&client_id=bench";
        write!(
            s,
            "POST /token HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: {}\r\n\r\n{body}",
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

    let _ = env.ok(&["stop"]);
    let _ = agent.wait();

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
    line(format!(
        "Machine: {cpu}, {cores} cores; jwtagent {} (release build).",
        env!("CARGO_PKG_VERSION")
    ));
    line(String::new());
    line("| measurement | result | SPEC §9 target |".into());
    line("| --- | --- | --- |".into());
    line(format!(
        "| cached token, kept-open connection, {n_latency} requests | p50 {}, p99 {}, p99.9 {} | p50 ≤ 30 µs, p99 ≤ 200 µs |",
        us(percentile(&lat, 0.5)),
        us(percentile(&lat, 0.99)),
        us(percentile(&lat, 0.999))
    ));
    for (clients, rps) in &throughput {
        let target = if *clients == 64 {
            "≥ 50,000 req/s"
        } else {
            ""
        };
        line(format!(
            "| throughput, {clients} concurrent connections | {:.0} req/s | {target} |",
            rps
        ));
    }
    line(format!(
        "| `jwtagent token NAME` as a process, cached, 300 runs | median {}, p95 {} | median ≤ 1 ms |",
        ms(percentile(&cli, 0.5)),
        ms(percentile(&cli, 0.95))
    ));
    line(format!(
        "| for comparison: `/bin/true` / `jwtagent --version` as a process, 300 runs each | median {} / {} | |",
        ms(percentile(&floor, 0.5)),
        ms(percentile(&version, 0.5))
    ));
    line(format!(
        "| agent RSS: empty / 100 profiles with tokens / after the runs above and {million} more requests / after another {million} | {:.1} / {:.1} / {:.1} / {:.1} MiB | ≤ 15 MiB, flat |",
        rss_empty as f64 / 1024.0,
        rss_100 as f64 / 1024.0,
        rss_million as f64 / 1024.0,
        rss_two_million as f64 / 1024.0
    ));
    line(format!(
        "| `jwtagent agent` until the socket accepts, 20 starts | median {}, max {} | |",
        ms(percentile(&startups, 0.5)),
        ms(*startups.last().unwrap())
    ));
    line(format!(
        "| token endpoint hit directly (new HTTP connection each, like curl), 2,000 requests | median {}, p99 {} | |",
        us(percentile(&direct, 0.5)),
        us(percentile(&direct, 0.99))
    ));
    line(format!(
        "| requests the token endpoint saw during all of the above | {fetches} (one per profile) | one per profile per refresh |"
    ));
    line(String::new());
    line(format!(
        "Asking the agent instead of the server: {:.1}× faster per request (p50 {} vs {}) against a token endpoint on loopback that does no work at all; a real authorization server signs tokens and sits across a network.",
        percentile(&direct, 0.5).as_secs_f64() / percentile(&lat, 0.5).as_secs_f64(),
        us(percentile(&lat, 0.5)),
        us(percentile(&direct, 0.5))
    ));

    if let Some(path) = write {
        let doc = format!(
            "# Performance\n\nMeasured with `scripts/bench` (the `jwtagent-bench` tool in `bench/`) against the release binary, all on loopback. Targets are SPEC §9.\n\n{report}"
        );
        std::fs::write(&path, doc)?;
        println!("\nwritten to {}", path.display());
    }
    Ok(())
}
