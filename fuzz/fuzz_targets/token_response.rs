//! The token-response parser, fed whatever an authorization server (or
//! something posing as one) can answer: `jwtagent_agent::fuzzing::token_response`
//! says what must hold (the normal test run replays the seeds through it).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| jwtagent_agent::fuzzing::token_response(data));
