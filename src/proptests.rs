//! Property tests: the parsers that read what peers and files send never panic,
//! and keep their promises on any input.

use crate::config::{ConfigFile, RefreshBefore};
use crate::duration::{format_duration, parse_duration};
use crate::protocol::{ErrorCode, TokenAnswerOf, parse_request};
use crate::secret::Secret;
use proptest::prelude::*;
use std::path::Path;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn request_decoder_never_panics_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let parsed = parse_request(&bytes);
        if let Err(e) = parsed.request {
            prop_assert!(matches!(e.code, ErrorCode::BadRequest | ErrorCode::UnknownOp));
        }
        // What it accepts survives the client's encoding unchanged.
        crate::fuzzing::request_decoder(&bytes);
    }

    #[test]
    fn request_decoder_echoes_any_json_id_byte_for_byte(
        id in prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            any::<u64>().prop_map(|n| format!("{n}0000000000")),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| format!("{f:e}")),
            "[ -~]{0,20}".prop_map(|s| serde_json::to_string(&s).unwrap()),
            Just(r#""\u00e9\n""#.to_string()),
            Just("null".to_string()),
        ],
        op in prop_oneof!["hello", "status", "[a-z]{0,8}"],
    ) {
        let line = format!(r#"{{"id":{id},"op":"{op}"}}"#);
        let parsed = parse_request(line.as_bytes());
        prop_assert_eq!(parsed.id.as_str(), id.as_str());
    }

    #[test]
    fn request_decoder_never_panics_on_json_shaped_input(
        op in prop_oneof!["hello", "status", "token", "add", "show", "lock", "x"],
        key in "[a-z_]{1,10}",
        value in prop_oneof![
            Just("null".to_string()),
            Just("[]".to_string()),
            Just("{}".to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            "[ -~]{0,20}".prop_map(|s| serde_json::to_string(&s).unwrap()),
        ],
    ) {
        let line = format!(r#"{{"id":1,"op":"{op}","{key}":{value},"name":{value}}}"#);
        let _ = parse_request(line.as_bytes());
    }

    #[test]
    fn the_quick_token_reading_accepts_only_what_the_full_one_reads_the_same(
        id in prop_oneof![
            Just(String::new()),
            Just(r#""id":null,"#.to_string()),
            any::<i64>().prop_map(|n| format!(r#""id":{n},"#)),
            "[0-9]{17,21}".prop_map(|n| format!(r#""id":{n},"#)),
            Just(r#""id":1e400,"#.to_string()),
            Just(r#""id":1.5,"#.to_string()),
            Just(r#""id":{"a":1,"a":2},"#.to_string()),
            Just(r#""id":"x\"y","#.to_string()),
            "[ -~]{0,8}".prop_map(|s| format!(r#""id":{},"#, serde_json::to_string(&s).unwrap())),
        ],
        op in prop_oneof![Just("token"), Just("show"), Just("t\\u006fken"), Just("dpop_proof")],
        name in prop_oneof![
            "[a-z0-9-]{0,8}".prop_map(|s| format!("\"{s}\"")),
            Just(r#""a\u0062""#.to_string()),
            Just("1".to_string()),
            Just("null".to_string()),
        ],
        extra in proptest::collection::vec(prop_oneof![
            Just(r#","min_ttl":30"#),
            Just(r#","min_ttl":-1"#),
            Just(r#","min_ttl":1e3"#),
            Just(r#","min_ttl":null"#),
            Just(r#","force":true"#),
            Just(r#","force":null"#),
            Just(r#","id_token":true"#),
            Just(r#","scopes":["a"]"#),
            Just(r#","name":"other""#),
            Just(r#","op":"stop""#),
            Just(r#","bogus":{"a":1,"a":2}"#),
            Just(r#","\u006fp":"stop""#),
        ], 0..3),
    ) {
        let line = format!(r#"{{{id}"op":"{op}","name":{name}{}}}"#, extra.concat());
        if let Some(quick) = crate::protocol::quick_token(line.as_bytes()) {
            prop_assert_eq!(quick, crate::protocol::parse_any(line.as_bytes()), "{}", line);
        }
    }

    #[test]
    fn a_token_answer_s_quick_writer_writes_what_serde_writes(
        token in proptest::collection::vec(prop_oneof![
            8 => 0x20u8..0x7f,
            1 => any::<u8>(),
        ], 0..80),
        token_type in any::<String>(),
        expires_at in any::<Option<u64>>(),
        scope in any::<Option<String>>(),
        issued in any::<Option<String>>(),
        id_token in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
    ) {
        let token = Secret::new(token);
        let id_token = id_token.map(Secret::new);
        let answer = TokenAnswerOf {
            access_token: &token,
            token_type: &token_type,
            expires_at,
            scope: scope.as_deref(),
            issued_token_type: issued.as_deref(),
            id_token: id_token.as_ref(),
        };
        let mut quick = Vec::new();
        match (answer.write_json(&mut quick), serde_json::to_vec(&answer)) {
            (Ok(()), Ok(slow)) => prop_assert_eq!(quick, slow),
            (Err(_), Err(_)) => {}
            (quick, slow) => prop_assert!(false, "{:?} against {:?}", quick, slow),
        }
    }

    #[test]
    fn config_parser_never_panics(text in "[ -~\n]{0,400}") {
        let _ = ConfigFile::parse(&text, Path::new("/p.toml"));
    }

    #[test]
    fn config_parser_reports_the_path_on_every_error(text in "[ -~\n]{0,200}") {
        if let Err(e) = ConfigFile::parse(&text, Path::new("/some/dir/p.toml")) {
            prop_assert!(e.to_string().contains("/some/dir/p.toml"));
        }
    }

    #[test]
    fn durations_round_trip(secs in 1u64..10_000_000) {
        let d = std::time::Duration::from_secs(secs);
        prop_assert_eq!(parse_duration(&format_duration(d)).unwrap(), d);
    }

    #[test]
    fn duration_and_refresh_before_parsers_never_panic(text in "[0-9a-z% ]{0,12}") {
        let _ = parse_duration(&text);
        let _ = text.parse::<RefreshBefore>();
    }
}
