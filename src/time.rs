//! Time formatting shared by the agent (audit log) and the CLI (kubectl), and
//! the time limits the agent's environment sets.

/// Unix seconds as RFC 3339 UTC (`2026-11-23T23:48:39Z`).
pub fn rfc3339(unix: u64) -> String {
    Rfc3339(unix).to_string()
}

/// Unix seconds, displayed as RFC 3339 UTC: written where it goes (an
/// audit record, say) without a string made for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rfc3339(pub u64);

impl std::fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let unix = self.0;
        let days = (unix / 86400) as i64;
        let secs = unix % 86400;
        // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        )
    }
}

impl serde::Serialize for Rfc3339 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Now, in Unix seconds.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A time limit set in the environment (`JWTAGENT_SECRET_COMMAND_TIMEOUT`,
/// `JWTAGENT_CONFIRM_TIMEOUT`): a whole number of seconds above zero;
/// anything else is no setting.
pub fn whole_seconds(setting: Option<&str>) -> Option<std::time::Duration> {
    setting
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|&s| s > 0)
        .map(std::time::Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::{rfc3339, whole_seconds};
    use std::time::Duration;

    #[test]
    fn a_time_limit_is_whole_seconds_above_zero() {
        assert_eq!(whole_seconds(None), None);
        assert_eq!(whole_seconds(Some("1")), Some(Duration::from_secs(1)));
        assert_eq!(whole_seconds(Some("90")), Some(Duration::from_secs(90)));
        for bad in ["0", "", "-1", "1.5", "soon", " 5"] {
            assert_eq!(whole_seconds(Some(bad)), None, "{bad:?}");
        }
    }

    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_476_337), "2026-11-23T23:25:37Z");
    }
}
