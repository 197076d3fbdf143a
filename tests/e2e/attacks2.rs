//! The second attack round (issue 26), reproduced end to end: each test
//! failed on the code before its fix. Derived profiles and forwarding have
//! their own files (chains.rs, ssh.rs).

use crate::common::*;

#[test]
fn a_callers_path_cannot_forge_an_audit_line() {
    let env = TestEnv::new();
    env.ok(&["list"]);
    // A caller whose executable's name holds a newline and a whole forged
    // record after it.
    let forged = "x\n2026-01-01T00:00:00Z  ok        token   prod                 pid=1 uid=0 exe=trusted";
    let dir = env.path("bin");
    std::fs::create_dir_all(&dir).unwrap();
    let exe = dir.join(forged);
    std::fs::copy(bin(), &exe).unwrap();
    let out = env.command(&exe).args(["token", "nosuch"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    // The error names the caller only in escaped form too.
    assert!(!stderr_of(&out).contains("\n2026-01-01"), "{}", stderr_of(&out));
    let records = env.audit_until("the request audited", |records| {
        records.iter().any(|r| r["profile"] == "nosuch")
    });
    let text = env.ok(&["audit"]);
    assert_eq!(text.lines().count(), records.len(), "{text}");
    assert!(!text.lines().any(|l| l.starts_with("2026-01-01")), "{text}");
    assert!(text.contains("exe=") && text.contains("x\\n2026-01-01"), "{text}");
}
