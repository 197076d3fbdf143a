//! The token-response parser, fed whatever an authorization server (or
//! something posing as one) can answer. It must never panic, and an error made
//! from a 200 answer must never carry the body: it may hold a token. A token
//! it accepts can go into a header.
#![no_main]

use jwtagent_agent::fuzzing::{OAuthError, parse_token_response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u16, &[u8])| {
    let (status, body) = input;
    let url = url::Url::parse("https://idp.example/token").expect("static URL");
    match parse_token_response(&url, status, None, body) {
        Ok(response) => {
            let token = response.access_token.expose();
            assert!(!token.is_empty() && token.iter().all(u8::is_ascii_graphic));
            assert!(["Bearer", "DPoP"].contains(&response.token_type.as_str()));
        }
        // Only what the parser chose to show, never the body itself: the
        // lifetime it refused, or the token_type it cannot serve.
        Err(OAuthError::BadResponse { excerpt, .. }) if status == 200 => {
            assert!(
                excerpt == "(body not shown)"
                    || excerpt.starts_with("expires_in is ")
                    || excerpt.starts_with("token_type "),
                "a 200 answer's error shows {excerpt:?}"
            );
            assert!(!excerpt.chars().any(char::is_control), "{excerpt:?}");
        }
        Err(e) => assert!(status != 200, "a 200 answer gave {e:?}"),
    }
});
