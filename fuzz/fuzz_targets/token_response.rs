//! The token-response parser, fed whatever an authorization server (or
//! something posing as one) can answer. It must never panic, and an error made
//! from a 200 answer must never carry the body: it may hold a token.
#![no_main]

use jwtagent_agent::oauth::{OAuthError, parse_token_response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u16, &[u8])| {
    let (status, body) = input;
    let url = url::Url::parse("https://idp.example/token").expect("static URL");
    match parse_token_response(&url, status, None, body) {
        Ok(response) => assert!(!response.access_token.expose().is_empty()),
        Err(OAuthError::BadResponse { excerpt, .. }) if status == 200 => {
            assert_eq!(excerpt, "(body not shown)");
        }
        Err(e) => assert!(status != 200, "a 200 answer gave {e:?}"),
    }
});
