//! A secret (client secret or private key PEM) that wipes its memory when dropped
//! and never prints itself.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use zeroize::Zeroizing;

/// Secret bytes. `Debug` prints `[REDACTED]`; the value is read only through
/// [`Secret::expose`], at the few places it is sent or stored. On the wire it is
/// a JSON string, so it must be UTF-8 text (client secrets and PEM keys are).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    pub fn new(bytes: Vec<u8>) -> Secret {
        Secret(Zeroizing::new(bytes))
    }

    /// The secret's bytes. Callers must not log or copy them into plain buffers.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Removes one trailing newline (`\n` or `\r\n`), as left by `echo` or an
    /// editor, in place so no unwiped copy remains.
    pub fn trim_trailing_newline(&mut self) {
        if self.0.last() == Some(&b'\n') {
            self.0.pop();
            if self.0.last() == Some(&b'\r') {
                self.0.pop();
            }
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(&self.0) {
            Ok(text) => serializer.serialize_str(text),
            Err(_) => Err(serde::ser::Error::custom("secret is not UTF-8 text")),
        }
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Ok(Secret::new(text.into_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret::new(b"hunter2".to_vec());
        assert_eq!(format!("{s:?}"), "[REDACTED]");
        assert_eq!(format!("{:?}", Some(&s)), "Some([REDACTED])");
    }

    #[test]
    fn one_trailing_newline_is_trimmed() {
        let mut s = Secret::new(b"abc\r\n".to_vec());
        s.trim_trailing_newline();
        assert_eq!(s.expose(), b"abc");
        let mut s = Secret::new(b"abc\n\n".to_vec());
        s.trim_trailing_newline();
        assert_eq!(s.expose(), b"abc\n");
    }

    #[test]
    fn round_trips_as_a_json_string() {
        let s = Secret::new(b"p@ss".to_vec());
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, "\"p@ss\"");
        assert_eq!(serde_json::from_str::<Secret>(&json).unwrap(), s);
    }
}
