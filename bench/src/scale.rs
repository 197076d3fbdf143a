//! The agent with many profiles (a team's shared config, a CI host with many
//! services): start, `list`, `status` and `add`, a cached token beside an
//! agent with one profile, resident memory with every profile holding a
//! token and after the commands, and wake-ups while idle.

use crate::{Conn, Env, Placement, Spread, median, ms, pinned, rss_kib, wait_for};
use anyhow::{Context, Result, bail};
use std::io::Write as _;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// What was measured.
pub struct Scale {
    pub profiles: usize,
    pub start: Spread,
    pub list: Spread,
    pub status: Spread,
    pub add: Spread,
    /// Kept-open p50 of a cached token: with `profiles`, and with one.
    pub token_p50: Spread,
    pub token_p50_one: Spread,
    /// Their ratio in each round (the two measured in turns).
    pub token_ratio: Spread,
    pub rss_before: u64,
    pub rss_tokens: u64,
    pub rss_after: u64,
    /// Context switches of the agent over an idle second.
    pub idle_switches: u64,
}

/// Writes a config of `n` profiles (no secret: `auth = "none"`) against
/// `url`, as a shared config would hold them.
fn write_config(env: &Env, n: usize, url: &str) -> Result<()> {
    let dir = env.dir.path().join("config/jwtagent");
    std::fs::create_dir_all(&dir)?;
    let mut text = String::from("version = 1\n");
    for i in 0..n {
        text.push_str(&format!(
            "\n[profiles.svc{i:05}]\ntoken_url = \"{url}\"\nclient_id = \"client-{i}\"\nauth = \"none\"\nscopes = [\"api:read\"]\n"
        ));
    }
    let path = dir.join("profiles.toml");
    let mut file = std::fs::File::create(&path)?;
    file.write_all(text.as_bytes())?;
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    Ok(())
}

/// Starts the agent in the foreground; returns it once its socket accepts,
/// with how long that took.
fn start(env: &Env) -> Result<(Child, Duration)> {
    let t = Instant::now();
    let child = env
        .cmd(&["agent", "-D", "--store", "keyutils"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    wait_for(&env.socket())?;
    // Serving: the first request is answered (the config is read by then).
    Conn::open(&env.socket())?.call(b"{\"id\":1,\"op\":\"hello\"}\n", r#""ok":true"#)?;
    Ok((child, t.elapsed()))
}

fn stop(env: &Env, mut agent: Child) -> Result<()> {
    env.ok(&["stop"])?;
    agent.wait()?;
    Ok(())
}

/// The wall time of `jwtagent ARGS`, median of `n`.
fn timed(env: &Env, args: &[&str], n: usize) -> Result<Vec<f64>> {
    let mut times = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        env.ok(args)?;
        times.push(t.elapsed().as_secs_f64());
    }
    Ok(times)
}

/// p50 of `n` cached `token` requests for `name` on one connection.
fn token_p50(socket: &Path, name: &str, n: usize) -> Result<f64> {
    let mut conn = Conn::open(socket)?;
    let request = format!("{{\"id\":1,\"op\":\"token\",\"name\":\"{name}\"}}\n");
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        conn.call(request.as_bytes(), r#""ok":true"#)?;
        times.push(t.elapsed().as_secs_f64());
    }
    Ok(median(times))
}

/// Every profile's token, asked on a few connections at once.
fn fetch_all(socket: &Path, n: usize) -> Result<()> {
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..4)
            .map(|w| {
                s.spawn(move || -> Result<()> {
                    let mut conn = Conn::open(socket)?;
                    for i in (w..n).step_by(4) {
                        let request =
                            format!("{{\"id\":1,\"op\":\"token\",\"name\":\"svc{i:05}\"}}\n");
                        conn.call(request.as_bytes(), r#""ok":true"#)?;
                    }
                    Ok(())
                })
            })
            .collect();
        for w in workers {
            w.join()
                .map_err(|_| anyhow::anyhow!("a worker panicked"))??;
        }
        Ok(())
    })
}

/// Voluntary and involuntary context switches of every thread of `pid`.
fn switches(pid: u32) -> Result<u64> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let status = std::fs::read_to_string(task?.path().join("status"))?;
        for line in status.lines() {
            if let Some(v) = line
                .strip_prefix("voluntary_ctxt_switches:")
                .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
            {
                total += v.trim().parse::<u64>().unwrap_or(0);
            }
        }
    }
    Ok(total)
}

/// Runs the scenario with `n` profiles against the token endpoint `url`,
/// `rounds` times for the timings.
pub fn run(env: &Env, n: usize, url: &str, rounds: usize) -> Result<Scale> {
    // The floor: an agent with one profile, in an environment of its own,
    // running beside the one with many so that the two are measured in
    // turns.
    let one_env = Env::new(env.bin.clone())?;
    write_config(&one_env, 1, url)?;
    let (one_agent, _) = start(&one_env)?;
    one_env.ok(&["token", "svc00000"])?;

    write_config(env, n, url)?;
    let mut starts = Vec::new();
    for _ in 0..rounds.max(3) {
        let (agent, took) = start(env)?;
        starts.push(took.as_secs_f64());
        stop(env, agent)?;
    }
    let (agent, _) = start(env)?;
    let pid = agent.id();
    // Settled: the first requests load the config.
    env.ok(&["list"]).context("list")?;
    let rss_before = rss_kib(pid)?;
    fetch_all(&env.socket(), n)?;
    let rss_tokens = rss_kib(pid)?;
    let (mut many, mut one, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    // Both agents pinned alike in each placement (see `Placement`: on a
    // virtual machine where the scheduler puts a client and its server
    // decides the p50 more than either server does).
    let pids = [one_agent.id(), pid];
    for round in 0..rounds {
        for placement in Placement::all() {
            let measure_one = || token_p50(&one_env.socket(), "svc00000", 5_000);
            let measure_many = || token_p50(&env.socket(), "svc00042", 5_000);
            // Which goes first alternates from round to round.
            let (one_p50, many_p50) = pinned(placement, &pids, || {
                Ok(if round % 2 == 0 {
                    let first = measure_one()?;
                    (first, measure_many()?)
                } else {
                    let first = measure_many()?;
                    (measure_one()?, first)
                })
            })?;
            one.push(one_p50);
            many.push(many_p50);
            ratios.push(many_p50 / one_p50);
        }
    }
    stop(&one_env, one_agent)?;
    let list = timed(env, &["list"], rounds)?;
    let status = timed(env, &["status"], rounds)?;
    let mut add = Vec::new();
    for i in 0..rounds {
        let name = format!("extra{i}");
        let t = Instant::now();
        env.add_profile(&name, url)?;
        add.push(t.elapsed().as_secs_f64());
    }
    // Time for the allocator to give back what the commands used.
    std::thread::sleep(Duration::from_secs(2));
    let rss_after = rss_kib(pid)?;
    let before = switches(pid)?;
    std::thread::sleep(Duration::from_secs(1));
    let idle_switches = switches(pid)? - before;
    stop(env, agent)?;
    if many.is_empty() || one.is_empty() {
        bail!("no rounds");
    }
    Ok(Scale {
        profiles: n,
        start: Spread(starts),
        list: Spread(list),
        status: Spread(status),
        add: Spread(add),
        token_p50: Spread(many),
        token_p50_one: Spread(one),
        token_ratio: Spread(ratios),
        rss_before,
        rss_tokens,
        rss_after,
        idle_switches,
    })
}

impl Scale {
    /// The report's lines: each figure with its target.
    pub fn lines(&self) -> Vec<String> {
        let n = self.profiles;
        let secs = |s: &Spread| s.show(|x| ms(Duration::from_secs_f64(x)));
        let target = |s: &Spread, limit: f64| crate::met(s.median() <= limit);
        let ratio = self.token_ratio.median();
        let mib = |k: u64| format!("{:.1} MiB", k as f64 / 1024.0);
        vec![
            format!(
                "| {n} profiles: `jwtagent agent -D` until it answers | | {} | | ≤ 150 ms | {} |",
                secs(&self.start),
                target(&self.start, 0.150)
            ),
            format!(
                "| {n} profiles: `jwtagent list` | | {} | | ≤ 50 ms | {} |",
                secs(&self.list),
                target(&self.list, 0.050)
            ),
            format!(
                "| {n} profiles: `jwtagent status` | | {} | | ≤ 50 ms | {} |",
                secs(&self.status),
                target(&self.status, 0.050)
            ),
            format!(
                "| {n} profiles: one more `add` (--no-verify) | | {} | | ≤ 50 ms | {} |",
                secs(&self.add),
                target(&self.add, 0.050)
            ),
            format!(
                "| {n} profiles: cached token, kept-open p50 (5,000 requests a round, in turns with the agent of one profile, both pinned alike: apart and together, as the rows above) | one profile {} | {} | {} | ≤ 1.1× | {} |",
                self.token_p50_one
                    .show(|x| crate::us(Duration::from_secs_f64(x))),
                self.token_p50
                    .show(|x| crate::us(Duration::from_secs_f64(x))),
                self.token_ratio.show(crate::ratio),
                crate::met(ratio <= 1.1)
            ),
            format!(
                "| {n} profiles: agent RSS before any token / all {n} holding tokens / after list, status and add | | {} / {} / {} | | ≤ 30 MiB with all tokens, and after | {} |",
                mib(self.rss_before),
                mib(self.rss_tokens),
                mib(self.rss_after),
                crate::met(self.rss_tokens <= 30 * 1024 && self.rss_after <= 30 * 1024)
            ),
            format!(
                "| {n} profiles: the agent's context switches over an idle second | | {} | | none | {} |",
                self.idle_switches,
                crate::met(self.idle_switches == 0)
            ),
        ]
    }
}
