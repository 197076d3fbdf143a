//! The private key loader, fed whatever a key file can hold:
//! `jwtagent_agent::fuzzing::pem_loader` says what must hold (the normal test
//! run replays the seeds through it).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|pem: &[u8]| jwtagent_agent::fuzzing::pem_loader(pem));
