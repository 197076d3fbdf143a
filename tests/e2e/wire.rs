//! The wire protocol against the real agent: framing, error codes, and
//! isolation between clients.

use crate::common::*;
use jwtagent::protocol::{MAX_LINE, PROTOCOL_VERSION};
use serde_json::json;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

#[test]
fn hello_echoes_the_id_and_reports_the_protocol_version() {
    let env = TestEnv::new();
    let agent = env.foreground_agent(&env.path("w.sock"));
    let mut conn = Conn::open(&agent.socket);
    let r = conn.request(r#"{"id":"abc","op":"hello"}"#);
    assert_eq!(r["id"], "abc");
    assert_eq!(r["ok"], true);
    assert_eq!(r["protocol"], PROTOCOL_VERSION);
    assert_eq!(r["pid"], agent.pid());
}

#[test]
fn a_request_naming_a_member_twice_is_refused_and_does_nothing() {
    let env = TestEnv::new();
    let agent = env.foreground_agent(&env.path("w.sock"));
    let mut conn = Conn::open(&agent.socket);
    // serde_json alone keeps the last `op`: this stopped the agent.
    let r = conn.request(r#"{"id":1,"op":"hello","op":"stop"}"#);
    assert_eq!(r["error"]["code"], "bad_request", "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("\"op\" appears twice"),
        "{r}"
    );
    assert_eq!(conn.request(r#"{"id":2,"op":"hello"}"#)["ok"], true);
    assert!(hello(&agent.socket).is_some(), "the agent stopped");
}

#[test]
fn one_connection_carries_many_requests_answered_in_order() {
    let env = TestEnv::new();
    let agent = env.foreground_agent(&env.path("w.sock"));
    let mut conn = Conn::open(&agent.socket);
    // Pipelined: all written before any is read.
    let mut batch = String::new();
    for i in 0..100 {
        batch.push_str(&format!("{{\"id\":{i},\"op\":\"hello\"}}\n"));
    }
    conn.send_raw(batch.as_bytes());
    for i in 0..100 {
        assert_eq!(conn.recv().unwrap()["id"], i);
    }
}

#[test]
fn invalid_json_is_bad_request_and_the_connection_stays_usable() {
    let env = TestEnv::new();
    let agent = env.foreground_agent(&env.path("w.sock"));
    let mut conn = Conn::open(&agent.socket);
    let r = conn.request("this is not json");
    assert_eq!(r["ok"], false);
    assert_eq!(r["error"]["code"], "bad_request");
    assert!(r["id"].is_null());
    let r = conn.request(r#"{"id":2,"op":["hello"]}"#);
    assert_eq!(r["error"]["code"], "bad_request");
    assert_eq!(r["id"], 2);
    assert_eq!(conn.request(r#"{"id":3,"op":"hello"}"#)["ok"], true);
}

#[test]
fn unknown_ops_are_unknown_op_and_malformed_known_ops_bad_request() {
    let env = TestEnv::new();
    let agent = env.foreground_agent(&env.path("w.sock"));
    let mut conn = Conn::open(&agent.socket);
    let r = conn.request(r#"{"id":1,"op":"teleport"}"#);
    assert_eq!(r["error"]["code"], "unknown_op");
    assert_eq!(r["id"], 1);
    // A known op with a missing field is a bad request, not an unknown op.
    let r = conn.request(r#"{"id":2,"op":"token"}"#);
    assert_eq!(r["error"]["code"], "bad_request", "{r}");
}

#[test]
fn oversized_line_gets_too_large_and_the_connection_is_closed() {
    let env = TestEnv::new();
    let agent = env.foreground_agent(&env.path("w.sock"));
    let mut conn = Conn::open(&agent.socket);
    let mut line = vec![b'x'; MAX_LINE + 1];
    line.push(b'\n');
    conn.send_raw(&line);
    let r = conn.recv().expect("an error response before close");
    assert_eq!(r["error"]["code"], "too_large");
    assert!(conn.recv().is_none(), "connection closed after too_large");
}

#[test]
fn endless_line_without_newline_is_cut_off_at_the_limit() {
    let env = TestEnv::new();
    let agent = env.foreground_agent(&env.path("w.sock"));
    let stream = UnixStream::connect(&agent.socket).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream.set_write_timeout(Some(DEADLINE)).unwrap();
    // The answer is read while the line is still being written, as it comes.
    let mut reading = stream.try_clone().unwrap();
    let reader = std::thread::spawn(move || {
        let mut answer = Vec::new();
        let mut byte = [0u8; 1];
        while reading.read(&mut byte).unwrap_or(0) == 1 && byte[0] != b'\n' {
            answer.push(byte[0]);
        }
        // Then the connection is closed: end of stream, or a reset (it
        // closed on data it would not read).
        let closed = match reading.read(&mut byte) {
            Ok(0) => true,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
            Ok(_) => false,
        };
        (answer, closed)
    });
    // Keep writing until the agent hangs up. An agent that buffered more
    // than a line's worth would take all 16 MiB; this one stops reading at
    // the limit and closes, so the writes fail long before (what it had not
    // read yet sits in the socket buffers, a few hundred KiB at most).
    let mut writing = stream;
    let chunk = vec![b'y'; 16 * 1024];
    let mut sent = 0;
    let mut refused = false;
    while sent <= 16 * 1024 * 1024 {
        if writing.write_all(&chunk).is_err() {
            refused = true;
            break;
        }
        sent += chunk.len();
    }
    assert!(refused, "the agent took {sent} bytes of one line");
    assert!(
        sent < 8 * 1024 * 1024,
        "the agent took {sent} bytes of one line"
    );
    let (answer, closed) = reader.join().unwrap();
    let r: serde_json::Value = serde_json::from_slice(&answer).expect("a JSON answer");
    assert_eq!(r["error"]["code"], "too_large");
    assert!(closed, "connection closed after too_large");
}

#[test]
fn misbehaving_clients_do_not_hold_up_a_well_behaved_one() {
    let env = TestEnv::new();
    let agent = env.foreground_agent(&env.path("w.sock"));

    // A half line that never ends.
    let mut half = UnixStream::connect(&agent.socket).unwrap();
    half.write_all(br#"{"id":1,"op":"hel"#).unwrap();
    // Garbage.
    let mut garbage = Conn::open(&agent.socket);
    garbage.send_raw(b"\x00\x01\x02\xff\xfe garbage\n");
    // A client that sends many requests and never reads an answer, until the
    // agent's writes to it block.
    let mut deaf = UnixStream::connect(&agent.socket).unwrap();
    deaf.set_nonblocking(true).unwrap();
    let req = b"{\"id\":1,\"op\":\"status\"}\n";
    let mut written = 0usize;
    while written < 8 * 1024 * 1024 {
        match deaf.write(req) {
            Ok(n) => written += n,
            Err(_) => break,
        }
    }
    // An oversized line.
    let mut big = Conn::open(&agent.socket);
    let mut line = vec![b'z'; MAX_LINE + 10];
    line.push(b'\n');
    big.send_raw(&line);

    // Meanwhile the well-behaved client gets every answer.
    let mut good = Conn::open(&agent.socket);
    for i in 0..200 {
        let r = good.request(&format!(r#"{{"id":{i},"op":"hello"}}"#));
        assert_eq!(r["id"], i);
        assert_eq!(r["ok"], true);
    }
    // And so do fresh connections.
    for _ in 0..20 {
        assert_eq!(hello(&agent.socket).unwrap()["ok"], true);
    }
    assert_eq!(garbage.recv().unwrap()["error"]["code"], "bad_request");
    assert_eq!(big.recv().unwrap()["error"]["code"], "too_large");
    drop(half);
    // The half line is not a request; nothing is answered on it.
}

#[test]
fn a_request_ending_at_eof_without_newline_is_still_answered() {
    let env = TestEnv::new();
    let agent = env.foreground_agent(&env.path("w.sock"));
    let mut s = UnixStream::connect(&agent.socket).unwrap();
    s.write_all(br#"{"id":5,"op":"hello"}"#).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["id"], 5);
}

#[test]
fn stop_op_answers_ok_and_the_agent_exits_cleanly() {
    let env = TestEnv::new();
    let mut agent = env.foreground_agent(&env.path("w.sock"));
    let mut conn = Conn::open(&agent.socket);
    assert_eq!(
        conn.request(r#"{"id":1,"op":"stop"}"#),
        json!({"id":1,"ok":true})
    );
    assert!(agent.wait_exit().success());
    assert!(!agent.socket.exists());
}

#[test]
fn open_idle_connections_do_not_delay_shutdown() {
    let env = TestEnv::new();
    let mut agent = env.foreground_agent(&env.path("w.sock"));
    let idle: Vec<Conn> = (0..10).map(|_| Conn::open(&agent.socket)).collect();
    Conn::open(&agent.socket).request(r#"{"id":"s","op":"stop"}"#);
    assert!(agent.wait_exit().success());
    // The idle clients see their connections closed.
    for mut conn in idle {
        assert!(conn.recv().is_none());
    }
}

#[test]
fn ids_come_back_as_the_exact_bytes_sent() {
    let env = TestEnv::new();
    let agent = env.foreground_agent(&env.path("s.sock"));
    let mut conn = Conn::open(&agent.socket);
    for id in [
        "18446744073709551616",
        "-123456789012345678901234567890",
        "0.10000000000000000000000001",
        r#""\u00e9""#,
    ] {
        conn.send_raw(format!("{{\"id\":{id},\"op\":\"hello\"}}\n").as_bytes());
        let mut line = String::new();
        std::io::BufRead::read_line(&mut conn.reader, &mut line).unwrap();
        assert!(
            line.starts_with(&format!("{{\"id\":{id},\"ok\":true")),
            "sent id {id}, got {line}"
        );
    }
}

/// An agent asked to stop while a token request (`id` 7, on the returned
/// connection) is held at a token endpoint until the test says.
fn stop_with_a_request_in_flight() -> (TestEnv, Foreground, FaultServer, Conn) {
    let env = TestEnv::new();
    let agent = env.foreground_agent(&env.default_socket());
    let server = FaultServer::start(Fault::Held { lifetime: 600 });
    env.add_open_profile("p", &server.token_url(), &[]);
    let mut waiting = Conn::open(&agent.socket);
    waiting.send_raw(b"{\"id\":7,\"op\":\"token\",\"name\":\"p\"}\n");
    wait_until("the token request is at the server", || {
        server.requests() == 1
    });
    Conn::open(&agent.socket).request(r#"{"id":"s","op":"stop"}"#);
    (env, agent, server, waiting)
}

#[test]
fn a_request_in_flight_is_waited_for_a_bounded_time_at_shutdown() {
    let (_env, mut agent, server, mut waiting) = stop_with_a_request_in_flight();
    // Released within the grace period, the request in flight is answered
    // before the agent exits.
    server.set(Fault::Ok { lifetime: 600 });
    let r = waiting.recv().expect("an answer before the agent exits");
    assert_eq!(r["id"], 7);
    assert_eq!(r["ok"], true, "{r}");
    assert!(agent.wait_exit().success());
}

#[test]
fn a_request_that_never_finishes_does_not_keep_the_agent_from_exiting() {
    let (_env, mut agent, _server, mut waiting) = stop_with_a_request_in_flight();
    // Never released: after its grace period (10 s, within the wait's
    // deadline) the agent exits anyway, and the client sees the close.
    assert!(agent.wait_exit().success());
    assert!(waiting.recv().is_none());
}

#[test]
fn the_cli_refuses_an_agent_that_speaks_another_protocol_version() {
    let env = TestEnv::new();
    // Something of ours on the socket that answers hello with protocol 99.
    let dir = private_dir();
    let socket = dir.path().join("future.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
        let request: serde_json::Value = serde_json::from_str(&line).unwrap();
        let answer =
            json!({"id": request["id"], "ok": true, "protocol": 99, "version": "9.0.0", "pid": 1});
        let mut writer = stream;
        writer.write_all(format!("{answer}\n").as_bytes()).unwrap();
    });
    let out = env.run(&["--socket", socket.to_str().unwrap(), "token", "p"]);
    server.join().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    let err = stderr_of(&out);
    assert!(err.contains("99") && err.contains("9.0.0"), "{err}");
}

#[test]
fn an_agent_that_closes_the_connection_is_reported_once_and_plainly() {
    let env = TestEnv::new();
    // Something of ours on the socket that reads the request and hangs up.
    let dir = private_dir();
    let socket = dir.path().join("closing.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut line = String::new();
        let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(&stream), &mut line);
    });
    let out = env.run(&["--socket", socket.to_str().unwrap(), "token", "p"]);
    server.join().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert_eq!(err.matches("closed the connection").count(), 1, "{err}");
    assert!(err.contains(socket.to_str().unwrap()), "{err}");
}

#[test]
fn token_sends_hello_and_its_request_in_one_round_trip() {
    let env = TestEnv::new();
    // Something of ours on the socket that answers only once it has both
    // lines: a client that waits for hello's answer before sending its
    // request would wait for ever (here: --timeout 5s).
    let dir = private_dir();
    let socket = dir.path().join("pipelined.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
        let mut lines = Vec::new();
        for _ in 0..2 {
            let mut line = String::new();
            std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
            lines.push(serde_json::from_str::<serde_json::Value>(&line).unwrap());
        }
        let hello =
            json!({"id": lines[0]["id"], "ok": true, "protocol": 1, "version": "x", "pid": 1});
        let token = json!({"id": lines[1]["id"], "ok": true, "access_token": "pipelined-token",
            "token_type": "Bearer", "expires_at": null, "scope": null});
        let mut writer = stream;
        writer
            .write_all(format!("{hello}\n{token}\n").as_bytes())
            .unwrap();
        (lines[0]["op"].clone(), lines[1]["op"].clone())
    });
    let out = env.run(&[
        "--socket",
        socket.to_str().unwrap(),
        "--timeout",
        "5s",
        "token",
        "p",
    ]);
    let ops = server.join().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "pipelined-token\n");
    assert_eq!(ops, (json!("hello"), json!("token")));
}

#[test]
fn an_answer_is_not_held_back_while_the_next_request_is_still_coming() {
    // Answers to requests that came together go out together; one whose
    // successor is only partly here must not wait for the rest of it.
    let env = TestEnv::new();
    let agent = env.foreground_agent(&env.path("w.sock"));
    let mut conn = Conn::open(&agent.socket);
    conn.send_raw(b"{\"id\":1,\"op\":\"hello\"}\n{\"id\":2,\"op\":\"hello\"}\n{\"id\":3,");
    assert_eq!(conn.recv().unwrap()["id"], 1);
    assert_eq!(conn.recv().unwrap()["id"], 2);
    conn.send_raw(b"\"op\":\"hello\"}\n");
    assert_eq!(conn.recv().unwrap()["id"], 3);
}

#[test]
fn answers_held_for_a_following_blank_line_are_sent() {
    // The last line of the batch is blank: it gets no answer, and the
    // answers before it must not wait for a request after it.
    let env = TestEnv::new();
    let agent = env.foreground_agent(&env.path("w.sock"));
    let mut conn = Conn::open(&agent.socket);
    conn.send_raw(b"{\"id\":1,\"op\":\"hello\"}\n{\"id\":2,\"op\":\"hello\"}\n \n");
    assert_eq!(conn.recv().unwrap()["id"], 1);
    assert_eq!(conn.recv().unwrap()["id"], 2);
}
