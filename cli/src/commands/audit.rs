//! `jwtagent audit`: read the audit log the agent writes.

use crate::args::AuditFilter;
use crate::error::CliError;
use crate::output;
use anyhow::anyhow;
use jwtagent::paths::state_dir;
use jwtagent::text::escaped;
use serde_json::Value;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

pub fn run(follow: bool, json: bool, filter: &AuditFilter) -> Result<(), CliError> {
    let since = filter
        .since
        .map(|d| jwtagent::time::rfc3339(jwtagent::time::unix_now().saturating_sub(d.as_secs())));
    let path = state_dir()
        .map(|d| d.join("audit.log"))
        .ok_or_else(|| anyhow!("cannot find the state directory: set HOME or XDG_STATE_HOME"))?;
    let mut file = match std::fs::File::open(&path) {
        Ok(f) => Some(f),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && follow => None,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("jwtagent: no audit log yet at {}", path.display());
            return Ok(());
        }
        Err(e) => return Err(anyhow!("cannot read {}: {e}", path.display()).into()),
    };
    let mut pending = String::new();
    let mut inode = None;
    loop {
        if let Some(f) = file.as_mut() {
            inode = f.metadata().ok().map(|m| m.ino());
            let mut reader = BufReader::new(&mut *f);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).map_err(anyhow::Error::from)? == 0 {
                    break;
                }
                pending.push_str(&line);
                if pending.ends_with('\n') {
                    if wanted(pending.trim_end(), filter, since.as_deref()) {
                        output::print(&render(pending.trim_end(), json))?;
                    }
                    pending.clear();
                }
            }
            let pos = reader.stream_position().map_err(anyhow::Error::from)?;
            f.seek(SeekFrom::Start(pos)).map_err(anyhow::Error::from)?;
        }
        if !follow {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
        // Rotated (or created): start on the new file.
        let now = std::fs::metadata(&path).ok().map(|m| m.ino());
        if now.is_some() && now != inode {
            file = std::fs::File::open(&path).ok();
            pending.clear();
        }
    }
}

/// Whether the entry `line` passes `filter` (`since`: the oldest time
/// wanted, as the log writes times). With any filter given, a line that is
/// not an entry does not pass.
fn wanted(line: &str, filter: &AuditFilter, since: Option<&str>) -> bool {
    let any = filter.profile.is_some()
        || filter.op.is_some()
        || filter.caller.is_some()
        || since.is_some();
    if !any {
        return true;
    }
    let Ok(v) = serde_json::from_str::<Value>(line) else {
        return false;
    };
    let is = |key: &str, want: &Option<String>| {
        want.as_deref().is_none_or(|w| v[key].as_str() == Some(w))
    };
    let caller = filter
        .caller
        .as_deref()
        .is_none_or(|c| match c.parse::<u64>() {
            Ok(pid) => v["pid"].as_u64() == Some(pid),
            // The executable, or one of its parents: `--caller /usr/bin/git`
            // finds what git asked for through the CLI.
            Err(_) => {
                v["exe"].as_str() == Some(c)
                    || v["parents"]
                        .as_array()
                        .is_some_and(|ps| ps.iter().any(|p| p.as_str() == Some(c)))
            }
        });
    // RFC 3339 times in UTC, all of one width, compare as text.
    let recent = since.is_none_or(|s| v["time"].as_str().is_some_and(|t| t >= s));
    is("profile", &filter.profile) && is("op", &filter.op) && caller && recent
}

fn render(line: &str, json: bool) -> String {
    if json {
        return format!("{line}\n");
    }
    // Every field (a caller's path can hold a newline or an escape
    // sequence) is printed with its control characters escaped.
    let Ok(v) = serde_json::from_str::<Value>(line) else {
        return format!("{}\n", escaped(line));
    };
    let s = |k: &str| {
        v[k].as_str()
            .map(|s| escaped(s).into_owned())
            .unwrap_or_else(|| "-".into())
    };
    let n = |k: &str| {
        v[k].as_u64()
            .map(|n| n.to_string())
            .unwrap_or_else(|| "-".into())
    };
    let parents = v["parents"]
        .as_array()
        .map(|ps| {
            let names: Vec<String> = ps
                .iter()
                .filter_map(|p| p.as_str())
                .map(|p| escaped(p).into_owned())
                .collect();
            format!(" parents={}", names.join(","))
        })
        .unwrap_or_default();
    format!(
        "{}  {:<9} {:<7} {:<20} pid={} uid={} exe={}{parents}{}{}\n",
        s("time"),
        s("outcome"),
        s("op"),
        s("profile"),
        n("pid"),
        n("uid"),
        s("exe"),
        v["fingerprint"]
            .as_str()
            .map(|f| format!(" token={}", escaped(f)))
            .unwrap_or_default(),
        v["input"]
            .as_str()
            .map(|i| format!(" input={}", escaped(i)))
            .unwrap_or_default()
    )
}
