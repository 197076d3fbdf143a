//! Property tests over the agent's parsers of untrusted input: token endpoint
//! answers, PEM keys, and request framing.

use crate::connection::{Frame, read_frame};
use crate::keys::parse_private_key;
use crate::oauth::parse_token_response;
use jwtagent::protocol::MAX_LINE;
use jwtagent::secret::Secret;
use proptest::prelude::*;

fn url() -> url::Url {
    url::Url::parse("https://idp.example/token").unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn token_response_parser_never_panics(status in 100u16..600, body in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = parse_token_response(&url(), status, None, &body);
    }

    #[test]
    fn a_success_body_never_reaches_an_error_message(token in "[A-Za-z0-9]{16,40}", junk in "[ -~]{0,40}") {
        // A 200 with a token but something else wrong must not echo the token.
        let body = format!(r#"{{"refresh_token":"{token}","x":"{junk}"}}"#);
        if let Err(e) = parse_token_response(&url(), 200, None, body.as_bytes()) {
            prop_assert!(!e.to_string().contains(&token));
        }
    }

    #[test]
    fn pem_loader_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..800)) {
        let _ = parse_private_key(&Secret::new(bytes));
    }

    #[test]
    fn pem_loader_never_panics_on_pem_shaped_garbage(
        label in prop_oneof!["PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", "PUBLIC KEY", "X"],
        body in "[A-Za-z0-9+/=\n]{0,300}",
    ) {
        let pem = format!("-----BEGIN {label}-----\n{body}\n-----END {label}-----\n");
        prop_assert!(parse_private_key(&Secret::new(pem.into_bytes())).is_err());
    }

    #[test]
    fn framing_splits_any_stream_into_bounded_lines(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..20)
    ) {
        let input: Vec<u8> = chunks.concat();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let mut reader = tokio::io::BufReader::with_capacity(64, &input[..]);
            let mut buf = Vec::new();
            let mut lines = 0;
            loop {
                match read_frame(&mut reader, &mut buf).await.unwrap() {
                    Frame::Line => {
                        assert!(buf.len() <= MAX_LINE && !buf.contains(&b'\n'));
                        lines += 1;
                    }
                    Frame::TooLarge | Frame::Eof => break,
                }
                assert!(lines <= input.len() + 1);
            }
        });
    }
}
