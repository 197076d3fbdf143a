//! `jwtagent-bench --layout DIR`: which functions of the two binaries run,
//! written as linker symbol-ordering files (`DIR/jwtagent-agent.order`,
//! `DIR/jwtagent.order`) that cli/build.rs hands to the linker, so that the
//! code that runs sits together.
//!
//! Why: the kernel maps the pages around each page of code first touched
//! (fault-around, 64 KiB), so code that runs, spread thinly over 12 MiB of
//! text, kept most of the text resident. Laid out together it takes a few
//! hundred pages.
//!
//! How: the agent runs under valgrind's callgrind through a workload like
//! the benchmark's (start-up, 100 profiles, tokens, kept-open and new
//! connections, bursts, a thundering herd, status), and the CLI for the
//! commands scripts run; every function callgrind saw run in the binary
//! goes into its file. What counts is that they sit together; the files
//! list them sorted, so that a new profile changes only the names that
//! changed (callgrind meets them in an order that varies from run to run,
//! with the threads' interleaving). Symbol names are the
//! build's own (v0 mangling, with the crate's hash), so the files fit the
//! build they were made from, and builds of the same sources, lock file and
//! toolchain; a name the linker does not find is skipped. scripts/layout
//! regenerates them, and scripts/bench reports how many still match.
//!
//! valgrind 3.19 does not know `pidfd_open`: under it, the agent takes the
//! path it takes on kernels without pidfds, and the few functions that use
//! a pidfd are left where the linker puts them.

use crate::{Env, Target, latency, throughput, thundering_herd, token_endpoint, wait_for_within};
use anyhow::{Context, Result, bail};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const CALLGRIND: [&str; 6] = [
    "--tool=callgrind",
    "--demangle=no",
    "--compress-strings=no",
    "--compress-pos=no",
    "--dump-instr=no",
    "--quiet",
];

pub fn run(env: &Env, out: &Path) -> Result<()> {
    let valgrind = Command::new("valgrind").arg("--version").output();
    if !valgrind.is_ok_and(|o| o.status.success()) {
        bail!("valgrind is missing: install it (Debian: apt-get install valgrind)");
    }
    let agent_bin = env.bin.with_file_name("jwtagent-agent");
    let profiles = env.dir.path().join("profiles");
    std::fs::create_dir(&profiles)?;

    // The agent, under callgrind, through the benchmark's workload.
    let refreshed = Arc::new(AtomicUsize::new(0));
    let port = token_endpoint(Arc::new(AtomicUsize::new(0)), refreshed.clone())?;
    let url = format!("http://127.0.0.1:{port}/token");
    let mut agent: Child = env
        .apply(&mut Command::new("valgrind"))
        .args(CALLGRIND)
        .arg(format!(
            "--callgrind-out-file={}",
            profiles.join("agent").display()
        ))
        // The tunable set already: the agent does not run itself again
        // (agent/src/sys.rs), which would leave callgrind behind.
        .env("GLIBC_TUNABLES", "glibc.malloc.tcache_count=1")
        .arg(&agent_bin)
        .args(["agent", "-D", "--store", "keyutils"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()?;
    wait_for_within(&env.socket(), Duration::from_secs(120))?;
    eprintln!("layout: the agent runs under callgrind");
    for i in 0..100 {
        env.add_profile(&format!("p{i:03}"), &url)?;
        env.ok(&["token", &format!("p{i:03}")])?;
    }
    // And as in real use (the bench's memory workload): profiles with a
    // secret in the keyring, verified at add, whose tokens the agent
    // refreshes (they live 30 seconds; under callgrind the rounds below
    // take longer than that).
    for i in 0..10 {
        env.add_with_secret(&format!("s{i:03}"), &format!("bench-{i}"), &url)?;
        env.ok(&["token", &format!("s{i:03}")])?;
    }
    let target = Target {
        socket: env.socket(),
        expect: r#""ok":true"#,
    };
    let request = b"{\"id\":1,\"op\":\"token\",\"name\":\"p000\"}\n";
    latency(&target, request, 2_000)?;
    for clients in [1, 8, 64, 256] {
        throughput(&target, clients, 2.0)?;
    }
    env.add_profile("herd", &url)?;
    // As many at once as the bench sends: past what a worker's own queue
    // holds, so that the code for the overflow runs too.
    thundering_herd(&env.socket(), "herd", 1000, None)?;
    thundering_herd(&env.socket(), "herd", 1000, Some(86_400))?;
    // Each of the ten short-lived tokens refreshed in the background once
    // (the bench's memory rows run that code: a layout without it left the
    // background refresh's path where the linker put it, and the bench's
    // quick run found the mapped part 0.2 MiB larger after its requests).
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    while refreshed.load(Ordering::SeqCst) < 20 {
        if std::time::Instant::now() > deadline {
            bail!("the agent under callgrind refreshed no token in 5 minutes");
        }
        std::thread::sleep(Duration::from_millis(200));
    }

    // The CLI, each command once under callgrind (after the agent has seen
    // them, they are answered from its cache).
    let commands: [&[&str]; 8] = [
        &["token", "p000"],
        &["header", "p000"],
        &["token", "p001", "--json"],
        &["status"],
        &["list"],
        &["show", "p000"],
        &["env", "--no-start"],
        &["--help"],
    ];
    for (i, args) in commands.iter().enumerate() {
        let status = env
            .apply(&mut Command::new("valgrind"))
            .args(CALLGRIND)
            .arg(format!(
                "--callgrind-out-file={}",
                profiles.join(format!("cli-{i}")).display()
            ))
            .arg(&env.bin)
            .args(*args)
            .stdout(Stdio::null())
            .status()?;
        if !status.success() {
            bail!("jwtagent {args:?} under callgrind failed");
        }
    }
    env.ok(&["status"])?;
    for i in 0..10 {
        env.ok(&["remove", &format!("s{i:03}")])?;
    }
    env.ok(&["stop"])?;
    let status = agent.wait()?;
    if !status.success() {
        bail!("the agent under callgrind exited with {status}");
    }

    std::fs::create_dir_all(out)?;
    let agent_profiles = [profiles.join("agent")];
    let cli_profiles: Vec<PathBuf> = (0..commands.len())
        .map(|i| profiles.join(format!("cli-{i}")))
        .collect();
    for (bin, files) in [
        (&agent_bin, &agent_profiles[..]),
        (&env.bin, &cli_profiles[..]),
    ] {
        let mut names = functions_run(bin, files)?;
        names.sort_unstable();
        let name = bin
            .file_name()
            .context("a binary's name")?
            .to_string_lossy();
        let path = out.join(format!("{name}.order"));
        let mut text = format!(
            "# The functions of {name} that ran in `jwtagent-bench --layout`, sorted:\n\
             # the linker lays them out first, together (cli/build.rs).\n\
             # Generated by scripts/layout for one build; do not edit.\n"
        );
        for n in &names {
            text.push_str(n);
            text.push('\n');
        }
        std::fs::write(&path, text)?;
        eprintln!("layout: {} functions in {}", names.len(), path.display());
    }
    Ok(())
}

/// Every function of `bin` that ran in the callgrind profiles `files`, in
/// the order first met. In an uncompressed profile, `ob=` names the object
/// of the `fn=` lines after it; `cob=`, that of the next `cfn=` (a callee),
/// else it is the caller's. Callgrind marks recursion levels as `'2`.
pub fn functions_run(bin: &Path, files: &[PathBuf]) -> Result<Vec<String>> {
    let bin = std::fs::canonicalize(bin)?;
    let bin = bin.to_string_lossy();
    let mut seen = HashSet::new();
    let mut names = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("reading the profile {}", file.display()))?;
        let mut object = String::new();
        let mut callee_object: Option<String> = None;
        for line in text.lines() {
            let (name, from) = if let Some(o) = line.strip_prefix("ob=") {
                object = o.to_string();
                continue;
            } else if let Some(o) = line.strip_prefix("cob=") {
                callee_object = Some(o.to_string());
                continue;
            } else if let Some(f) = line.strip_prefix("fn=") {
                (f, object.clone())
            } else if let Some(f) = line.strip_prefix("cfn=") {
                (f, callee_object.take().unwrap_or_else(|| object.clone()))
            } else {
                continue;
            };
            let name = match name.rsplit_once('\'') {
                Some((base, level)) if level.bytes().all(|b| b.is_ascii_digit()) => base,
                _ => name,
            };
            if from == bin
                && !name.starts_with("0x")
                && !name.contains(' ')
                && seen.insert(name.to_string())
            {
                names.push(name.to_string());
            }
        }
    }
    if names.is_empty() {
        bail!("callgrind saw no function of {bin} run");
    }
    Ok(names)
}

/// How the binaries match their layout files: for each, how many of the
/// functions its file names it has, of how many; a sentence for the report.
pub fn coverage(bin: &Path) -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../cli/layout");
    let mut parts = Vec::new();
    for bin in [bin.with_file_name("jwtagent-agent"), bin.to_path_buf()] {
        let Some(name) = bin.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            continue;
        };
        let order = dir.join(format!("{name}.order"));
        let Ok(text) = std::fs::read_to_string(&order) else {
            parts.push(format!("{name} has no layout file"));
            continue;
        };
        let wanted: HashSet<&str> = text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        let Ok(out) = Command::new("nm").arg("--defined-only").arg(&bin).output() else {
            return "Code layout: not checked (nm, from binutils, is missing).".into();
        };
        let symbols = String::from_utf8_lossy(&out.stdout);
        let found = symbols
            .lines()
            .filter_map(|l| l.split_whitespace().nth(2))
            .filter(|s| wanted.contains(s))
            .collect::<HashSet<_>>()
            .len();
        parts.push(format!(
            "{found} of the {} functions in {name}.order are in {name}",
            wanted.len()
        ));
    }
    format!(
        "Code layout (cli/layout, written by scripts/layout; a function the binary no longer has is laid out anywhere): {}.",
        parts.join("; ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn functions_are_read_from_the_binary_s_lines_only() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::write(&bin, "").unwrap();
        let bin_path = std::fs::canonicalize(&bin).unwrap();
        let b = bin_path.display();
        let profile = dir.path().join("p");
        std::fs::write(
            &profile,
            format!(
                "ob=/lib/libc.so.6\nfn=malloc\n1 2\nob={b}\nfn=_RNvCs1_3foo4main\n1 2\n\
                 cob=/lib/libc.so.6\ncfn=free\ncalls=1 0\n1 2\ncfn=_RNvCs1_3foo3run'2\ncalls=1 0\n\
                 fn=_RNvCs1_3foo3run\nfn=0x0000000000001050\nfn=(below main)\n"
            ),
        )
        .unwrap();
        assert_eq!(
            functions_run(&bin, &[profile]).unwrap(),
            ["_RNvCs1_3foo4main", "_RNvCs1_3foo3run"]
        );
    }
}
