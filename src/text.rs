//! Text from outside (a peer's executable path, a log line, a server's
//! message) made safe to print on a terminal: a control character could
//! forge a line (newline) or drive the terminal (escape sequences).

use std::borrow::Cow;

/// `text` with every control character written as its escape (`\n`, `\t`,
/// `\u{1b}`); everything else, including non-ASCII letters, as it is.
pub fn escaped(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::escaped;

    #[test]
    fn control_characters_are_written_as_escapes_and_the_rest_kept() {
        assert_eq!(escaped("/usr/bin/jq"), "/usr/bin/jq");
        assert_eq!(escaped("/tmp/a\nb"), "/tmp/a\\nb");
        assert_eq!(
            escaped("x\u{1b}[2Jy\r\t\u{7f}"),
            "x\\u{1b}[2Jy\\r\\t\\u{7f}"
        );
        assert_eq!(escaped("/home/zoë/bin"), "/home/zoë/bin");
    }
}
