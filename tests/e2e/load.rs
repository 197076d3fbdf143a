//! Load and abuse, on loopback, bounded in count and time: well-behaved clients
//! all get answers while others misbehave, and the agent gives back every file
//! descriptor and keeps its memory bounded.

use crate::common::*;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

#[test]
fn a_thousand_clients_are_served_while_a_hundred_misbehave() {
    // The test process itself needs more than the default 1024 descriptors.
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let _ = rustix::process::setrlimit(
        rustix::process::Resource::Nofile,
        rustix::process::Rlimit {
            current: limit.maximum.map(|m| m.min(8192)),
            maximum: limit.maximum,
        },
    );
    let env = TestEnv::new();
    let server = FaultServer::start(Fault::Ok { lifetime: 3600 });
    let agent = env.foreground_agent(&env.default_socket());
    env.add_open_profile("api", &server.token_url(), &[]);
    env.ok(&["token", "api"]);
    let pid = agent.pid();
    wait_until("the agent is idle", || open_fds(pid) > 0);
    let fds_before = open_fds(pid);
    let rss_before = rss_kib(pid);

    let socket = Arc::new(env.default_socket());
    let answered = Arc::new(AtomicUsize::new(0));
    const GOOD: usize = 1000;
    const REQUESTS: usize = 10;
    let mut misbehaving = Vec::new();
    // The slowloris clients hold their half lines until every well-behaved
    // client is done.
    let released = Arc::new(std::sync::Barrier::new(25 + 1));
    // 100 misbehaving clients, 25 of each kind.
    for i in 0..100 {
        let (socket, released) = (socket.clone(), released.clone());
        misbehaving.push(std::thread::spawn(move || {
            let Ok(mut s) = UnixStream::connect(&*socket) else {
                if i % 4 == 2 {
                    released.wait();
                }
                return;
            };
            match i % 4 {
                // Garbage.
                0 => {
                    for _ in 0..20 {
                        let _ = s.write_all(b"\x00\xff{{{ not json at all\n");
                    }
                }
                // Oversized lines.
                1 => {
                    let _ = s.write_all(&vec![b'x'; 200 * 1024]);
                }
                // Slowloris: half a line, then silence.
                2 => {
                    let _ = s.write_all(br#"{"id":1,"op":"tok"#);
                    released.wait();
                }
                // Disconnect in the middle of a request.
                _ => {
                    let _ = s.write_all(br#"{"id":1,"op":"token","na"#);
                }
            }
        }));
    }
    let mut good = Vec::new();
    for _ in 0..GOOD {
        let (socket, answered) = (socket.clone(), answered.clone());
        good.push(std::thread::spawn(move || {
            let mut conn = Conn::open(&socket);
            for i in 0..REQUESTS {
                let r = conn.request(&format!(r#"{{"id":{i},"op":"token","name":"api"}}"#));
                assert_eq!(r["ok"], true, "{r}");
                assert_eq!(r["id"], i);
                answered.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in good {
        t.join().expect("a well-formed request failed");
    }
    released.wait();
    for t in misbehaving {
        t.join().unwrap();
    }
    assert_eq!(answered.load(Ordering::Relaxed), GOOD * REQUESTS);
    assert_eq!(server.requests(), 1, "one token request for all of them");
    // Every connection's descriptor is given back (the slowloris ones once the
    // clients close them, which they have).
    wait_until("descriptors return to their baseline", || {
        open_fds(pid) <= fds_before
    });
    let rss_after = rss_kib(pid);
    assert!(
        rss_after < rss_before + 64 * 1024,
        "memory grew from {rss_before} KiB to {rss_after} KiB"
    );
    assert_eq!(hello(&env.default_socket()).unwrap()["ok"], true);
}
