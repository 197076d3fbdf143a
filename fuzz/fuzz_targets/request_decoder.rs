//! The agent's request decoder, fed whatever a local process can write on the
//! socket: `jwtagent::fuzzing::request_decoder` says what must hold (the
//! normal test run replays the seeds through it).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|line: &[u8]| jwtagent::fuzzing::request_decoder(line));
