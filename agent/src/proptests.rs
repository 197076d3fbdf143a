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

/// Text for an audit record's member: mostly plain, sometimes with what
/// serde_json escapes or what is not ASCII.
fn record_text() -> impl Strategy<Value = String> {
    prop_oneof![4 => "[ -~]{0,24}", 1 => any::<String>()]
}

/// A path's bytes, not always UTF-8.
fn record_path() -> impl Strategy<Value = std::path::PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    proptest::collection::vec(prop_oneof![8 => 0x20u8..0x7f, 1 => any::<u8>()], 0..40)
        .prop_map(|bytes| std::ffi::OsString::from_vec(bytes).into())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn an_audit_record_s_quick_writer_writes_what_serde_writes(
        time in any::<u64>(),
        pid in any::<Option<u32>>(),
        uid in any::<u32>(),
        exe in proptest::option::of(record_path()),
        parents in proptest::collection::vec(record_path(), 0..3),
        op in record_text(),
        profile in proptest::option::of(record_text()),
        outcome in record_text(),
        fingerprint in proptest::option::of(record_text()),
        input in proptest::option::of(record_text()),
    ) {
        let record = crate::audit::Record {
            time: jwtagent::time::Rfc3339(time),
            pid,
            uid,
            exe: exe.as_deref(),
            parents: &parents,
            op: &op,
            profile: profile.as_deref(),
            outcome: &outcome,
            fingerprint: fingerprint.as_deref(),
            input: input.as_deref(),
        };
        let mut quick = Vec::new();
        record.write_json(&mut quick).unwrap();
        let slow = serde_json::to_vec(&record).unwrap();
        prop_assert_eq!(String::from_utf8_lossy(&quick), String::from_utf8_lossy(&slow));
    }

    #[test]
    fn token_response_parser_keeps_its_promises(status in 100u16..600, body in proptest::collection::vec(any::<u8>(), 0..600)) {
        // Never a panic; an accepted token can go in a header; an error made
        // of a 200 answer never shows its body.
        let mut data = status.to_be_bytes().to_vec();
        data.extend_from_slice(&body);
        crate::fuzzing::token_response(&data);
    }

    #[test]
    fn token_response_fields_come_through_and_lifetimes_stay_bounded(
        token in "[!-~]{1,80}",
        token_type in prop_oneof!["bearer", "Bearer", "BEARER", "dpop", "DPoP", "n_a"],
        expires_in in prop_oneof![
            (1u64..10_000_000).prop_map(|n| n.to_string()),
            Just("1e30".to_string()),
            Just("\"3600\"".to_string()),
        ],
    ) {
        let expires: serde_json::Value = serde_json::from_str(&expires_in).unwrap();
        let body = serde_json::json!({
            "access_token": token, "token_type": token_type, "expires_in": expires,
        })
        .to_string();
        let r = parse_token_response(&url(), 200, None, body.as_bytes()).unwrap();
        prop_assert_eq!(r.access_token.expose(), token.as_bytes());
        prop_assert!(["Bearer", "DPoP", "N_A"].contains(&r.token_type.as_str()));
        prop_assert!(r.token_type.eq_ignore_ascii_case(&token_type));
        let secs = r.expires_in.unwrap();
        prop_assert!((1..=crate::oauth::token::MAX_LIFETIME.as_secs()).contains(&secs));
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
    fn pem_loader_never_panics_and_what_it_accepts_signs(bytes in proptest::collection::vec(any::<u8>(), 0..800)) {
        crate::fuzzing::pem_loader(&bytes);
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
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..20),
        // Sometimes a line at, or just over, the 64 KiB limit.
        long in prop_oneof![Just(0usize), Just(MAX_LINE), Just(MAX_LINE + 1), 0..MAX_LINE + 100],
    ) {
        let mut input: Vec<u8> = chunks.concat();
        input.extend(std::iter::repeat_n(b'x', long));
        input.push(b'\n');
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
                    Frame::TooLarge => {
                        // Only a line over the limit is too large.
                        let longest = input.split(|b| *b == b'\n').map(<[u8]>::len).max().unwrap_or(0);
                        assert!(longest > MAX_LINE, "too large at {longest} bytes");
                        break;
                    }
                    Frame::Eof => break,
                }
                assert!(lines <= input.len() + 1);
            }
        });
    }
}
