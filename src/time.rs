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

impl Rfc3339 {
    /// The date and time of day: (year, month, day, hour, minute, second).
    fn civil(self) -> (i64, i64, i64, u64, u64, u64) {
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
        (year, month, day, secs / 3600, secs / 60 % 60, secs % 60)
    }

    /// The text, written digit by digit (an audit record's time is on the
    /// request path: `fmt`'s padding took longer than the rest of the
    /// record); `None` past the year 9999, which [`fmt::Display`] writes.
    ///
    /// [`fmt::Display`]: std::fmt::Display
    fn digits(self) -> Option<[u8; 20]> {
        let (year, month, day, hour, minute, second) = self.civil();
        let year = u64::try_from(year).ok().filter(|y| *y <= 9999)?;
        let mut out = *b"0000-00-00T00:00:00Z";
        let mut put = |at: usize, n: u64, width: usize| {
            let mut n = n;
            for i in (at..at + width).rev() {
                out[i] = b'0' + (n % 10) as u8;
                n /= 10;
            }
        };
        put(0, year, 4);
        put(5, month as u64, 2);
        put(8, day as u64, 2);
        put(11, hour, 2);
        put(14, minute, 2);
        put(17, second, 2);
        Some(out)
    }
}

impl std::fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(digits) = self.digits() {
            // ASCII digits and separators only.
            return f.write_str(std::str::from_utf8(&digits).map_err(|_| std::fmt::Error)?);
        }
        let (year, month, day, hour, minute, second) = self.civil();
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z"
        )
    }
}

impl serde::Serialize for Rfc3339 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let digits = self.digits();
        match digits.as_ref().and_then(|d| std::str::from_utf8(d).ok()) {
            Some(text) => s.serialize_str(text),
            None => s.collect_str(self),
        }
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
        // Past the year 9999, and at the end of u64: written, no panic.
        assert_eq!(rfc3339(253_402_300_800), "10000-01-01T00:00:00Z");
        assert!(rfc3339(u64::MAX).ends_with('Z'));
    }

    #[test]
    fn the_digit_by_digit_time_is_the_formatted_one_and_is_what_serde_writes() {
        use super::Rfc3339;
        let mut unix = 0u64;
        while unix < 253_402_300_800 {
            let (year, month, day, hour, minute, second) = Rfc3339(unix).civil();
            let formatted =
                format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z");
            assert_eq!(Rfc3339(unix).to_string(), formatted);
            let json = serde_json::to_string(&Rfc3339(unix)).unwrap();
            assert_eq!(json, format!("\"{formatted}\""));
            unix += 7_919_113;
        }
    }
}
