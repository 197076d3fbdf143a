//! Framing: reading one bounded request line from a connection.
//!
//! A line is capped at [`MAX_LINE`] bytes whatever the client sends, so a client
//! that never sends a newline costs the agent at most that much memory.

use jwtagent::protocol::MAX_LINE;
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// What one read produced.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Frame {
    /// A complete line is in the buffer (without its newline or a trailing `\r`).
    /// A last line the client ended with EOF instead of a newline counts too.
    Line,
    /// The line grew past [`MAX_LINE`]; the rest of the connection is not trusted.
    TooLarge,
    /// The client closed the connection between lines.
    Eof,
}

/// Reads the next line into `buf`, which it clears first.
pub(crate) async fn read_frame<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
) -> std::io::Result<Frame> {
    buf.clear();
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(if buf.is_empty() {
                Frame::Eof
            } else {
                Frame::Line
            });
        }
        match available.iter().position(|&b| b == b'\n') {
            Some(i) => {
                if buf.len() + i > MAX_LINE {
                    reader.consume(i + 1);
                    return Ok(Frame::TooLarge);
                }
                buf.extend_from_slice(&available[..i]);
                reader.consume(i + 1);
                if buf.last() == Some(&b'\r') {
                    buf.pop();
                }
                return Ok(Frame::Line);
            }
            None => {
                let n = available.len();
                if buf.len() + n > MAX_LINE {
                    reader.consume(n);
                    return Ok(Frame::TooLarge);
                }
                buf.extend_from_slice(available);
                reader.consume(n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::BufReader;

    async fn frames(input: &[u8]) -> Vec<(Frame, Vec<u8>)> {
        let mut reader = BufReader::with_capacity(7, input);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        loop {
            let f = read_frame(&mut reader, &mut buf).await.unwrap();
            let done = matches!(f, Frame::Eof | Frame::TooLarge);
            out.push((f, buf.clone()));
            if done {
                return out;
            }
        }
    }

    #[tokio::test]
    async fn lines_are_split_across_small_reads() {
        let got = frames(b"{\"op\":\"hello\"}\r\nsecond\n").await;
        assert_eq!(got[0], (Frame::Line, b"{\"op\":\"hello\"}".to_vec()));
        assert_eq!(got[1], (Frame::Line, b"second".to_vec()));
        assert_eq!(got[2].0, Frame::Eof);
    }

    #[tokio::test]
    async fn last_line_without_newline_is_still_a_line() {
        let got = frames(b"abc").await;
        assert_eq!(got[0], (Frame::Line, b"abc".to_vec()));
    }

    #[tokio::test]
    async fn line_of_exactly_max_is_accepted_and_one_more_byte_is_too_large() {
        let mut ok = vec![b'a'; MAX_LINE];
        ok.push(b'\n');
        assert_eq!(frames(&ok).await[0].0, Frame::Line);
        let mut big = vec![b'a'; MAX_LINE + 1];
        big.push(b'\n');
        assert_eq!(frames(&big).await[0].0, Frame::TooLarge);
    }

    #[tokio::test]
    async fn endless_line_without_newline_stops_at_the_cap() {
        let big = vec![b'x'; MAX_LINE * 4];
        let got = frames(&big).await;
        assert_eq!(got[0].0, Frame::TooLarge);
        assert!(got[0].1.len() <= MAX_LINE);
    }
}
